"""The sipx pytest plugin: fixtures to test SIP applications, and the SIP ladder of failures.

Registered through the ``pytest11`` entry point ``sipx`` (``-p no:sipx`` turns it off).
Importing it imports only pytest and the standard library; sipx and trio are loaded by the
fixtures and hooks that need them. Fixtures (async tests; they run under pytest-trio):

* ``sipx_network``: a :class:`sipx.testing.MemoryNetwork`; the test runs on trio's
  autojump clock (pytest-trio's ``autojump_clock`` fixture).
* ``sipx_server``: a running :class:`sipx.testing.DevServer` on 127.0.0.1, on a free port.
* ``sipx_client``: ``async with sipx_client("1111") as client``: an :class:`sipx.AsyncClient`
  on 127.0.0.1, a free port, on the memory network if the test uses ``sipx_network``.

Markers ``sipx_network(**kwargs)`` and ``sipx_server(**kwargs)`` configure those two. Every
SIP message sent or received in the process during a test that uses these fixtures (or is
marked ``sipx_ladder``, or any test with ``--sipx-ladder=all``) is recorded from the
``sipx.wire`` and ``sipx.serve.wire`` loggers; when the test fails they are shown, one
line each, in a "SIP ladder" section of its report.
"""

from __future__ import annotations

import inspect
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from textwrap import indent
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    from sipx import AsyncClient
    from sipx.testing import DevServer, MemoryNetwork

FIXTURES = ("sipx_network", "sipx_server", "sipx_client")
WIRE_LOGGERS = ("sipx.wire", "sipx.serve.wire")
MODES = ("auto", "all", "full", "off")
HEAD, TAIL = 100, 300  # a longer ladder shows its first and last messages only

Address = tuple[str, int]

_mode_key = pytest.StashKey[str]()
_recorder_key = pytest.StashKey["_Recorder"]()
_server_key = pytest.StashKey["DevServer"]()


class ClientFactory(Protocol):
    """The ``sipx_client`` fixture: ``sipx_client(user=None, /, **options)``."""

    def __call__(self, user: str | None = None, /, **options: Any) -> AsyncClient: ...


# -- configuration --------------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    help = (
        "which tests record the SIP messages shown when they fail: auto (those using the"
        " sipx fixtures or marked sipx_ladder), all, full (all, whole messages), off"
    )
    group = parser.getgroup("sipx", "sipx: SIP testing")
    group.addoption("--sipx-ladder", choices=MODES, metavar="MODE", help=help + " (auto)")
    parser.addini("sipx_ladder", help, default="auto")


def pytest_configure(config: pytest.Config) -> None:
    for line in (
        "sipx_server(**kwargs): arguments of the sipx_server fixture's DevServer"
        " (users=, realm=, algorithm=, ...)",
        "sipx_network(**kwargs): arguments of the sipx_network fixture's MemoryNetwork"
        " (seed=, loss=, delay=, ...)",
        "sipx_ladder(full=False): record the SIP messages of this test, shown if it fails",
    ):
        config.addinivalue_line("markers", line)
    mode = config.getoption("sipx_ladder") or config.getini("sipx_ladder")
    if mode not in MODES:
        raise pytest.UsageError(f"sipx_ladder is one of {', '.join(MODES)}, not {mode!r}")
    config.stash[_mode_key] = mode


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Async tests using the fixtures run under pytest-trio (on the memory network, on the
    autojump clock), whether or not trio mode is on."""
    for item in items:
        if not (
            isinstance(item, pytest.Function)
            and any(name in item.fixturenames for name in FIXTURES)
            and inspect.iscoroutinefunction(item.obj)
        ):
            continue
        if not any(map(config.pluginmanager.hasplugin, ("trio", "pytest_trio.plugin"))):
            raise pytest.UsageError(f"{item.nodeid}: the sipx fixtures need pytest-trio")
        if "sipx_network" in item.fixturenames:
            item.add_marker(pytest.mark.trio(run=_AutojumpRun(item)), append=False)
        elif item.get_closest_marker("trio") is None:
            item.add_marker(pytest.mark.trio)


class _AutojumpRun:
    """pytest-trio's ``run`` for a test on the memory network.

    pytest-trio runs a test on a clock only when the test function itself takes it as an
    argument; a clock among the fixtures' own dependencies is ignored. This gives the run
    the ``autojump_clock`` fixture (a dependency of ``sipx_network``) unless the test chose
    a clock, then hands over to the runner pytest-trio would have used.
    """

    def __init__(self, item: pytest.Function) -> None:
        self.item = item

    def __call__(self, fn: Callable[[], Any], *, clock: Any = None, instruments: Any = ()) -> Any:
        if clock is None:
            clock = self.item.funcargs.get("autojump_clock")
        return self._next_run()(fn, clock=clock, instruments=instruments)

    def _next_run(self) -> Callable[..., Any]:
        for mark in self.item.iter_markers("trio"):
            run = mark.kwargs.get("run")
            if run is not None and not isinstance(run, _AutojumpRun):
                return run  # type: ignore[no-any-return]
        import trio

        return trio.run


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture
def sipx_network(request: pytest.FixtureRequest, autojump_clock: Any) -> MemoryNetwork:
    """A :class:`sipx.testing.MemoryNetwork` (marker ``sipx_network(**kwargs)``); the test
    runs on trio's autojump clock."""
    from sipx.testing import MemoryNetwork

    marker = request.node.get_closest_marker("sipx_network")
    return MemoryNetwork(**(marker.kwargs if marker else {}))


@pytest.fixture
async def sipx_server(request: pytest.FixtureRequest) -> AsyncIterator[DevServer]:
    """A running :class:`sipx.testing.DevServer` on 127.0.0.1, a free port, real sockets
    (marker ``sipx_server(**kwargs)``: its arguments, e.g. ``users={"alice": "secret"}``)."""
    from sipx.testing import DevServer

    if "sipx_network" in request.fixturenames:
        pytest.fail(
            "sipx_server runs on real sockets and the real clock: not with sipx_network",
            pytrace=False,
        )
    marker = request.node.get_closest_marker("sipx_server")
    options: dict[str, Any] = {"host": "127.0.0.1", "port": 0, **(marker.kwargs if marker else {})}
    async with DevServer(**options) as server:
        request.node.stash[_server_key] = server
        try:
            yield server
        finally:
            del request.node.stash[_server_key]


@pytest.fixture
def sipx_client(request: pytest.FixtureRequest) -> ClientFactory:
    """``sipx_client(user=None, /, **options)``: a new :class:`sipx.AsyncClient`, to enter
    with ``async with``.

    It listens on 127.0.0.1, a free port (``local_host``/``local_port`` change that), on
    the ``sipx_network`` when the test uses it. ``user``: authenticate as that user of
    ``sipx_server``, with its password. Other options go to :class:`sipx.AsyncClient`.
    """
    network = (
        request.getfixturevalue("sipx_network") if "sipx_network" in request.fixturenames else None
    )

    def make(user: str | None = None, /, **options: Any) -> AsyncClient:
        import sipx

        if user is not None and "auth" not in options:
            server = request.node.stash.get(_server_key, None)
            if server is None or user not in server.users:
                where = "sipx_server's users" if server is not None else "no sipx_server"
                raise ValueError(f"sipx_client({user!r}): {where}; pass auth= instead")
            options["auth"] = sipx.Auth.Digest(user, server.users[user])
        if network is not None:
            options.setdefault("network", network)
        host = options.pop("local_host", "127.0.0.1")
        port = options.pop("local_port", 0)
        return sipx.AsyncClient(host, port, **options)

    return make


# -- the SIP ladder -----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Message:
    time: float  # seconds since the test started (trio's clock: virtual when it jumps)
    name: str  # who sent or received it: its local address, "serve ..." for a DevServer
    direction: str
    data: bytes
    peer: Address
    transport: str


class _Recorder(logging.Filter):
    """Keeps one test's wire log records as ladder messages.

    A filter on the wire loggers, which it sets to DEBUG for the test. A record that only
    the recorder asked for (the logger was below DEBUG, and pytest's ``log_level`` too)
    stops there: it would fill pytest's "Captured log" with whole messages. The level set
    is DEBUG - 1, so that a later change (``caplog.set_level``) is noticed and honoured.
    """

    QUIET_LEVEL = logging.DEBUG - 1

    def __init__(self, full: bool) -> None:
        super().__init__()
        self.full = full
        self.started = time.perf_counter()
        self.head: list[_Message] = []
        self.tail: deque[_Message] = deque(maxlen=TAIL)
        self.count = 0
        self.reported = False
        self._runs: dict[object, tuple[float, float]] = {}  # trio run -> (wall, trio) at first
        self._quiet: dict[str, logging.Logger] = {}
        self._lock = threading.Lock()  # a blocking Client logs from its own thread

    @contextmanager
    def attached(self, config: pytest.Config) -> Iterator[None]:
        setting = str(config.getoption("log_level", None) or config.getini("log_level") or "")
        level = int(setting) if setting.isdigit() else logging.getLevelNamesMapping().get(setting)
        captured = level is not None and level <= logging.DEBUG
        saved = []
        for name in WIRE_LOGGERS:
            logger = logging.getLogger(name)
            saved.append((logger, logger.level))
            if not logger.isEnabledFor(logging.DEBUG):
                logger.setLevel(logging.DEBUG if captured else self.QUIET_LEVEL)
                if not captured:
                    self._quiet[name] = logger
            logger.filters.insert(0, self)  # first: an outer recorder may stop the record
        try:
            yield
        finally:
            for logger, level in saved:
                logger.removeFilter(self)
                logger.setLevel(level)

    def filter(self, record: logging.LogRecord) -> bool:
        data = getattr(record, "sip_data", None)
        if isinstance(data, bytes) and data.strip():  # not a keep-alive
            self._record(record, data)
        quiet = self._quiet.get(record.name)
        return quiet is None or quiet.level != self.QUIET_LEVEL

    def _record(self, record: logging.LogRecord, data: bytes) -> None:
        local = getattr(record, "sip_local", ("?", 0))
        name = f"{local[0]}:{local[1]}"
        if record.name == "sipx.serve.wire":
            name = f"serve {name}"
        with self._lock:
            message = _Message(
                self._now(),
                name,
                getattr(record, "sip_direction", "?"),
                data,
                getattr(record, "sip_peer", ("?", 0)),
                getattr(record, "sip_transport", "?"),
            )
            self.count += 1
            (self.head.append if len(self.head) < HEAD else self.tail.append)(message)

    def _now(self) -> float:
        """Seconds since the test started: trio's time, counted from the run's first
        message, so that autojump clock tests show their virtual seconds."""
        wall = time.perf_counter()
        trio = sys.modules.get("trio")
        if trio is not None:
            try:
                run, now = trio.lowlevel.current_root_task(), float(trio.current_time())
            except RuntimeError:  # not in a trio run
                pass
            else:
                first_wall, first_now = self._runs.setdefault(run, (wall, now))
                return first_wall - self.started + now - first_now
        return wall - self.started

    def text(self) -> str:
        from sipx._ladder import arrow

        messages = [*self.head, *self.tail]
        width = max((len(m.name) for m in messages), default=0)
        lines = []
        for index, message in enumerate(messages):
            if index == len(self.head) and self.count > len(messages):
                lines.append(f"... {self.count - len(messages)} messages not shown ...")
            name = message.name.rjust(width)
            line = arrow(name, message.direction, message.data, message.peer, message.transport)
            lines.append(f"{message.time:8.3f}  {line}")
            if self.full:
                text = message.data.decode("utf-8", "replace").rstrip()
                lines.append(indent(text, " " * 12) + "\n")
        return "\n".join(lines)


def _recording(item: pytest.Item) -> bool | None:
    """None if ``item`` is not recorded, else whether its ladder shows whole messages."""
    mode = item.config.stash.get(_mode_key, "auto")
    marker = item.get_closest_marker("sipx_ladder")
    names = getattr(item, "fixturenames", ())
    if mode == "off" or (
        mode == "auto" and marker is None and not any(name in names for name in FIXTURES)
    ):
        return None
    return mode == "full" or bool(marker is not None and marker.kwargs.get("full"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    full = _recording(item)
    if full is None:
        return (yield)
    recorder = _Recorder(full)
    item.stash[_recorder_key] = recorder
    try:
        with recorder.attached(item.config):
            return (yield)
    finally:
        del item.stash[_recorder_key]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    recorder = item.stash.get(_recorder_key, None)
    if recorder is not None and report.failed and not recorder.reported and recorder.count:
        recorder.reported = True
        report.sections.append(("SIP ladder", recorder.text()))
    return report


__all__ = ["ClientFactory", "sipx_client", "sipx_network", "sipx_server"]
