"""DevServer, MemorySocket and ScriptedUAS own their tasks through one lexical nursery.

Before, each entered a nursery by hand in ``__aenter__`` and left it in ``__aexit__``
(``OwnedNursery.open()``/``close()`` for the testing peers). The split open/close could be
called from different cancel scopes (trio: "Cancel scope stack corrupted"), and errors of
the owned tasks came out wrong: a failing DevServer task was only logged and a bare
``Cancelled`` escaped the ``async with``; a failing ScriptedUAS script came out wrapped in
an ExceptionGroup. These tests pin the lexical behaviour.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ParamSpec

import pytest
import trio
import trio.testing

import sipx.testing
from sipx._core.parser import parse_message
from sipx._serve import DevServer
from sipx._trio.transport import Transport
from sipx.testing import MemoryNetwork, MemorySocket, ScriptedUAS

if TYPE_CHECKING:
    from trio_typing import TaskStatus

Address = tuple[str, int]
P = ParamSpec("P")

SERVER = ("127.0.0.1", 5060)
UAS = ("127.0.0.1", 5080)
PEER = ("127.0.0.1", 6000)


class Boom(Exception):
    pass


class MemoryDevServer(DevServer):
    """``DevServer`` with its transports on a MemoryNetwork instead of real sockets."""

    def __init__(self, network: MemoryNetwork, **kwargs: Any) -> None:
        super().__init__(*SERVER, transports=("UDP",), **kwargs)
        self.network = network

    def _make_transport(self, name: str) -> Transport:
        transport: Transport = self.network.transport(self._on_message, name)
        return transport


class FailingTransport:
    """Binds (reports an address), then dies with :class:`Boom` once ``fail`` is set."""

    name = "UDP"
    reliable = False

    def __init__(self) -> None:
        self.fail = trio.Event()
        self.local_address: Address = ("0.0.0.0", 0)

    async def serve(
        self, host: str, port: int, *, task_status: TaskStatus[Address] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self.local_address = (host, port)
        task_status.started(self.local_address)
        await self.fail.wait()
        raise Boom("the transport died")

    def send_nowait(self, data: bytes, address: Address) -> None:
        pass


class FailingDevServer(MemoryDevServer):
    def _make_transport(self, name: str) -> Transport:
        self.failing = FailingTransport()
        return self.failing  # type: ignore[return-value]


def finishes(test: Callable[P, Awaitable[None]]) -> Callable[P, Awaitable[None]]:
    """Fail the test when a ``Cancelled`` escapes it: pytest-trio would let such a test pass
    without running the rest of it (the old DevServer let one escape its ``async with``)."""

    @functools.wraps(test)
    async def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            await test(*args, **kwargs)
        except trio.Cancelled as exc:
            raise AssertionError("a Cancelled escaped the test body") from exc

    return run


def options(to: Address, branch: str = "z9hG4bKlex1") -> bytes:
    host, port = PEER
    return (
        f"OPTIONS sip:uas@{to[0]}:{to[1]} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:{port};branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:peer@{host}:{port}>;tag=p1\r\n"
        f"To: <sip:uas@{to[0]}:{to[1]}>\r\n"
        f"Call-ID: {branch}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


# -- the split lifecycle is gone ---------------------------------------------------------------


def test_no_split_open_close_lifecycle() -> None:
    assert not hasattr(sipx.testing, "OwnedNursery")
    assert "OwnedNursery" not in sipx.testing.__all__
    for cls in (DevServer, MemorySocket, ScriptedUAS):
        assert not hasattr(cls, "open"), cls
    network = MemoryNetwork()
    for owner in (MemoryDevServer(network), network.socket(PEER), ScriptedUAS(network)):
        assert not any(hasattr(value, "open") for value in vars(owner).values()), owner


# -- DevServer -----------------------------------------------------------------------------------


@finishes
async def test_dev_server_task_error_comes_out_as_itself(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Before: the error was only logged, and the body's ``Cancelled`` escaped."""
    server = FailingDevServer(MemoryNetwork())
    outcome: list[BaseException] = []
    try:
        async with server:
            server.failing.fail.set()
            await trio.sleep_forever()
    except BaseException as exc:
        outcome.append(exc)
    assert [type(exc) for exc in outcome] == [Boom], outcome
    with pytest.raises(RuntimeError):
        server.address  # noqa: B018 - not running any more


@finishes
async def test_dev_server_in_cancel_scopes_and_nested_nurseries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    server = MemoryDevServer(network)

    with trio.CancelScope() as scope:  # cancelled from inside the block
        async with server:
            assert network.is_bound(SERVER)
            scope.cancel()
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert not network.is_bound(SERVER)

    with trio.move_on_after(5):  # a deadline around the block
        async with server:
            await trio.sleep_forever()
    assert not network.is_bound(SERVER)

    async with trio.open_nursery() as outer, server:  # the enclosing nursery is cancelled
        outer.cancel_scope.cancel()
        await trio.sleep_forever()
    assert not network.is_bound(SERVER)

    async def close_soon() -> None:
        await trio.sleep(1)
        server.close()

    async with server:  # close() from a nested nursery and from a cancel scope
        async with trio.open_nursery() as nursery:
            nursery.start_soon(close_soon)
        with trio.CancelScope():
            server.close()
        await trio.sleep(1)
        assert not network.is_bound(SERVER)
    async with server:  # the same object and port once more
        assert network.is_bound(SERVER)
        with pytest.raises(RuntimeError, match="already"):
            async with server:
                pass  # pragma: no cover
    assert not network.is_bound(SERVER)


@finishes
async def test_dev_server_body_error_comes_out_unchanged(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    with pytest.raises(ValueError, match="from the body") as caught:
        async with MemoryDevServer(network):
            raise ValueError("from the body") from KeyError("cause")
    assert isinstance(caught.value.__cause__, KeyError)
    assert not network.is_bound(SERVER)


@finishes
async def test_dev_server_on_real_sockets_releases_its_port() -> None:
    with trio.CancelScope() as scope:
        async with DevServer("127.0.0.1", 0, transports=("udp",)) as server:
            port = server.address[1]
            scope.cancel()
            await trio.sleep_forever()
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with probe:
        probe.bind(("127.0.0.1", port))  # free again: the transport task has ended


# -- MemorySocket --------------------------------------------------------------------------------


@finishes
async def test_memory_socket_in_cancel_scopes_and_nested_nurseries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    sock = network.socket(PEER)

    with trio.CancelScope() as scope:
        async with sock:
            assert network.is_bound(PEER)
            scope.cancel()
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert not network.is_bound(PEER)

    async with trio.open_nursery() as outer, sock:
        outer.cancel_scope.cancel()
        await sock.receive()
    assert not network.is_bound(PEER)

    async with sock, network.socket(("127.0.0.1", 6001)) as other:  # still works
        other.send(b"hello", PEER)
        assert await sock.receive() == (b"hello", ("127.0.0.1", 6001))
        with pytest.raises(RuntimeError, match="already open"):
            async with sock:
                pass  # pragma: no cover
    assert network.bound_addresses == []


@finishes
async def test_memory_socket_errors(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    sock = network.socket(PEER)
    with pytest.raises(ValueError, match="from the body") as caught:
        async with sock:
            raise ValueError("from the body") from KeyError("cause")
    assert isinstance(caught.value.__cause__, KeyError)
    assert not network.is_bound(PEER)

    failing = FailingTransport()
    sock.transport = failing  # type: ignore[assignment]
    with pytest.raises(Boom):
        async with sock:
            failing.fail.set()
            await trio.sleep_forever()

    async with network.socket(PEER):  # the address is in use: entering fails, cleanly
        with pytest.raises(sipx.TransportError, match="already in use"):
            async with network.socket(PEER):
                pass  # pragma: no cover


# -- ScriptedUAS ---------------------------------------------------------------------------------


@finishes
async def test_scripted_uas_script_error_comes_out_as_itself(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Before: ExceptionGroup([Boom]) (only one of two nested groups was unwrapped)."""
    network = MemoryNetwork()

    def script(request: sipx.Request) -> None:
        raise Boom("the script failed")

    with pytest.raises(Boom, match="the script failed"):
        async with ScriptedUAS(network, UAS, script) as uas, network.socket(PEER) as peer:
            peer.send(options(uas.address), uas.address)
            await trio.sleep_forever()
    assert network.bound_addresses == []


@finishes
async def test_scripted_uas_in_cancel_scopes_and_nested_nurseries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    uas = ScriptedUAS(network, UAS, ring=5.0)

    with trio.CancelScope() as scope:
        async with uas:
            assert network.is_bound(UAS)
            scope.cancel()
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert not network.is_bound(UAS)

    async with trio.open_nursery() as outer, uas, network.socket(PEER) as peer:
        peer.send(options(uas.address), uas.address)
        await uas.wait_for("OPTIONS")
        outer.cancel_scope.cancel()
        await trio.sleep_forever()
    assert network.bound_addresses == []

    async with uas, network.socket(PEER) as peer:  # still works, same object and address
        peer.send(options(uas.address, "z9hG4bKlex2"), uas.address)
        response = parse_message((await peer.receive())[0])
        assert isinstance(response, sipx.Response) and response.status_code == 200
        with pytest.raises(RuntimeError, match="already"):
            async with uas:
                pass  # pragma: no cover
    assert network.bound_addresses == []

    async with trio.open_nursery() as nursery:  # run() under nursery.start() as before
        assert await nursery.start(uas.run) == UAS
        nursery.cancel_scope.cancel()
    assert not network.is_bound(UAS)
