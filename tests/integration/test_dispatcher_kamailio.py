"""Scale-out: Kamailio's dispatcher spreading calls over several sipx processes.

Each worker is ``examples/dispatcher_worker.py`` run as a subprocess, exactly as the
example's docstring tells a user to run it: an ``AsyncClient`` on its own port answering
every call. Kamailio (peers/kamailio-dispatcher.cfg) sends each new call to one of them,
round robin, record-routes it, and probes every worker with OPTIONS once a second.

* calls placed by a sipx client are spread over all the workers (the 200's Contact and
  the workers' own output say which one answered), the BYE goes through Kamailio to it;
* a worker stopped with SIGTERM is taken out by the probes (``dispatcher.list`` says
  ``IP``); an idle socket bound to its port then receives probes but no INVITE while the
  next calls all succeed on the other workers; restarted, it is probed back in and gets
  calls again; a worker drained by hand (``kamcmd dispatcher.set_state d 1 URI``) gets no
  new call and is not probed back in;
* a worker that answers the probes but never the INVITE (a hung process) costs one call
  ``FR_TIMER``: the failure route marks it down and the INVITE goes to the next worker.

No time is asserted; the waits are bounded so that a broken setup fails instead of hanging.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio
from peers import HOST, Kamailio, free_port, require_binary

from sipx import AsyncClient, Call

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "examples" / "dispatcher_worker.py"
#: bound on any single wait (a worker start, a probe cycle, a call)
WAIT = 15.0


# --------------------------------------------------------------------------------------- #
# the workers (examples/dispatcher_worker.py) and a socket that never answers calls
# --------------------------------------------------------------------------------------- #
class Worker:
    """``dispatcher_worker.py`` in a subprocess; its stdout collected line by line."""

    def __init__(self, port: int, name: str, *args: str) -> None:
        self.port, self.name = port, name
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIPX_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        self.args = [
            sys.executable,
            str(WORKER),
            *("--local-host", HOST, "--local-port", str(port), "--name", name),
            *args,
        ]
        self.proc = subprocess.Popen(
            self.args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def uri(self) -> str:
        return f"sip:{HOST}:{self.port}"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while not any(re.search(pattern, line) for line in list(self.lines)):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.proc.kill()
                raise AssertionError(f"{self.name}: {pattern!r} never printed\n{self.report()}")
            time.sleep(0.02)

    def answered(self) -> set[str]:
        """Call-IDs of the calls this worker answered (from its output)."""
        found = (
            re.fullmatch(rf"{self.name}: call \d+ from .* answered \((.+)\)", line)
            for line in self.lines
        )
        return {m[1] for m in found if m}

    def stop(self) -> int:
        """SIGTERM; wait for the exit; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)
        return self.proc.returncode

    def report(self) -> str:
        stderr = (
            self.proc.stderr.read() if self.proc.poll() is not None and self.proc.stderr else ""
        )
        return f"$ {' '.join(self.args)}\n" + "\n".join(self.lines) + f"\n--- stderr ---\n{stderr}"


class SilentPeer:
    """A UDP socket on a worker's port: records every request; answers OPTIONS with 200
    when ``answer_options`` (a hung worker that still passes health checks), else nothing."""

    def __init__(self, port: int, *, answer_options: bool) -> None:
        self.port = port
        self.answer_options = answer_options
        self.received: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, port))
        self.sock.settimeout(0.1)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def uri(self) -> str:
        return f"sip:{HOST}:{self.port}"

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                data, address = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            text = data.decode("utf-8", "replace")
            self.received.append(text)
            if self.answer_options and text.startswith("OPTIONS "):
                self.sock.sendto(ok_response(text), address)

    def methods(self) -> list[str]:
        return [text.split(" ", 1)[0] for text in list(self.received)]

    def call_ids(self, method: str) -> set[str]:
        return {header(t, "Call-ID") for t in list(self.received) if t.startswith(method + " ")}

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        self.sock.close()


def header(message: str, name: str) -> str:
    found = re.search(rf"^{name}\s*:\s*(.*?)\s*$", message, re.M | re.I)
    assert found, f"no {name} in\n{message}"
    return found[1]


def ok_response(request: str) -> bytes:
    """200 OK to ``request`` (copies Via, From, To, Call-ID, CSeq; adds a To tag)."""
    head = request.split("\r\n\r\n", 1)[0].split("\r\n")
    keep = [line for line in head[1:] if re.match(r"(?i)(via|from|call-id|cseq)\s*:", line)]
    to = header(request, "To")
    lines = ["SIP/2.0 200 OK", *keep, f"To: {to};tag=silent" if "tag=" not in to else f"To: {to}"]
    return ("\r\n".join([*lines, "Content-Length: 0"]) + "\r\n\r\n").encode()


@pytest.fixture
def cleanup() -> Iterator[list[Callable[[], object]]]:
    """Stop functions run at teardown, last registered first (workers, sockets)."""
    stops: list[Callable[[], object]] = []
    yield stops
    for stop in reversed(stops):
        stop()


def start_workers(cleanup: list[Callable[[], object]], *names: str) -> list[Worker]:
    workers = [Worker(free_port(), name) for name in names]  # all start at once
    for worker in workers:
        cleanup.append(worker.stop)
    for worker in workers:
        worker.wait_for(rf"^{worker.name}: listening on {HOST}:{worker.port}$")
    return workers


def start_dispatcher(
    cleanup: list[Callable[[], object]], uris: list[str], **kwargs: object
) -> Kamailio:
    require_binary("kamcmd")
    kamailio = Kamailio.start_dispatcher(uris, **kwargs)  # type: ignore[arg-type]
    cleanup.append(kamailio.stop)
    return kamailio


async def wait_flags(kamailio: Kamailio, uri: str, prefix: str) -> None:
    """Poll ``dispatcher.list`` until ``uri``'s FLAGS start with ``prefix`` (A, I, T)."""
    flags: dict[str, str] = {}
    with trio.move_on_after(WAIT):
        while (
            not (flags := await trio.to_thread.run_sync(kamailio.dispatcher_flags))
            .get(uri, "")
            .startswith(prefix)
        ):
            await trio.sleep(0.1)
        return
    raise AssertionError(f"{uri} never got flags {prefix}*: {flags}\n{kamailio.log_tail()}")


# --------------------------------------------------------------------------------------- #
# placing calls through the dispatcher
# --------------------------------------------------------------------------------------- #
class Caller:
    """A sipx client calling ``sip:service@<dispatcher>``; keeps what it sent."""

    def __init__(
        self, client: AsyncClient, kamailio: Kamailio, sent: list[tuple[str, tuple[str, int]]]
    ) -> None:
        self.client, self.kamailio, self.sent = client, kamailio, sent

    async def call(self) -> tuple[Call, int]:
        """One call, answered, then hung up by us; (the call, the answering worker's port)."""
        with trio.fail_after(WAIT):
            call = await self.client.call(f"sip:service@{self.kamailio.hostport}")
        assert call.established, call.final_response
        assert call.final_response is not None
        worker_port = call.final_response.contact[0].uri.port
        assert worker_port is not None
        # record-routed: the dialog's requests go through the dispatcher
        assert [str(r.uri) for r in call.dialog.route_set] == [f"sip:{self.kamailio.hostport};lr"]
        with trio.fail_after(WAIT):
            bye = await call.bye()
        assert bye.status_code == 200, bye
        return call, worker_port

    def sent_to(self, method: str, call_id: str) -> list[tuple[str, tuple[str, int]]]:
        return [
            (text, address)
            for text, address in self.sent
            if text.startswith(method + " ") and header(text, "Call-ID") == call_id
        ]


def open_caller(kamailio: Kamailio) -> tuple[AsyncClient, list[tuple[str, tuple[str, int]]]]:
    sent: list[tuple[str, tuple[str, int]]] = []

    def trace(direction: str, data: bytes, address: tuple[str, int], transport: str) -> None:
        if direction == "out" and data.strip():
            sent.append((data.decode("utf-8", "replace"), (address[0], address[1])))

    return AsyncClient(HOST, 0, "UDP", trace=trace), sent


# --------------------------------------------------------------------------------------- #
# the tests
# --------------------------------------------------------------------------------------- #
async def test_calls_spread_and_a_stopped_worker_is_taken_out(
    cleanup: list[Callable[[], object]],
) -> None:
    workers = start_workers(cleanup, "w0", "w1", "w2")
    kamailio = start_dispatcher(cleanup, [w.uri for w in workers], ping_interval=1)
    for worker in workers:
        await wait_flags(kamailio, worker.uri, "A")
    client, sent = open_caller(kamailio)
    async with client:
        caller = Caller(client, kamailio, sent)

        # 1. round robin over three live workers
        first: list[tuple[Call, int]] = [await caller.call() for _ in range(6)]
        assert Counter(port for _, port in first) == {w.port: 2 for w in workers}
        for call, port in first:
            # the BYE went to the dispatcher, addressed to the worker's Contact
            [(bye, address)] = caller.sent_to("BYE", call.call_id)
            assert address == (HOST, kamailio.port), address
            assert call.final_response is not None
            contact = call.final_response.contact[0].uri
            assert (contact.host, contact.port) == (HOST, port)
            assert bye.startswith(f"BYE {contact} SIP/2.0"), bye
            assert header(bye, "Route") == f"<sip:{kamailio.hostport};lr>", bye
        for worker in workers:  # each worker's own account agrees with the caller's
            await trio.to_thread.run_sync(
                worker.wait_for, rf"^{worker.name}: call 2 ended \(remote\)$"
            )
            assert worker.answered() == {c.call_id for c, p in first if p == worker.port}

        # 2. stop w1: the probes take it out; its port stays bound but never answers
        stopped = workers[1]
        assert await trio.to_thread.run_sync(stopped.stop) == 0, stopped.report()
        assert stopped.lines[-1] == "w1: 2 call(s) answered", stopped.report()
        idle = SilentPeer(stopped.port, answer_options=False)
        cleanup.append(idle.close)
        await wait_flags(kamailio, stopped.uri, "I")
        second = [await caller.call() for _ in range(6)]
        # round robin skips the inactive one (its turn goes to the next worker)
        spread = Counter(port for _, port in second)
        assert set(spread) == {workers[0].port, workers[2].port}, spread
        assert idle.call_ids("INVITE") == set(), idle.received
        assert "OPTIONS" in idle.methods()  # still probed, to be brought back
        assert "worker down: " + stopped.uri in kamailio.log_text()

        # 3. started again on the same port: probed back in, and it gets calls again
        idle.close()
        restarted = Worker(stopped.port, "w1b")
        cleanup.append(restarted.stop)
        await trio.to_thread.run_sync(restarted.wait_for, r"^w1b: listening on ")
        await wait_flags(kamailio, stopped.uri, "A")
        third = [await caller.call() for _ in range(3)]
        assert Counter(port for _, port in third) == {w.port: 1 for w in workers}
        await trio.to_thread.run_sync(restarted.wait_for, r"^w1b: call 1 ended \(remote\)$")
        assert restarted.answered() == {c.call_id for c, p in third if p == restarted.port}

        # 4. drained by hand (state "d"): no new calls, and the probes leave it out
        drained = workers[2]
        await trio.to_thread.run_sync(kamailio.rpc, "dispatcher.set_state", "d", "1", drained.uri)
        await trio.sleep(1.5)  # more than a probe interval: a probe would bring it back
        assert (await trio.to_thread.run_sync(kamailio.dispatcher_flags))[drained.uri][0] == "D"
        fourth = [await caller.call() for _ in range(4)]
        assert {port for _, port in fourth} == {workers[0].port, restarted.port}

    # every worker ends cleanly and counts what the caller saw it answer (w1, stopped
    # above, answered the first 2 on the port that w1b took over)
    everything = Counter(port for _, port in first + second + third + fourth)
    for worker, answered in (
        (workers[0], everything[workers[0].port]),
        (workers[2], everything[workers[2].port]),
        (restarted, Counter(port for _, port in third + fourth)[restarted.port]),
    ):
        assert worker.stop() == 0, worker.report()
        assert worker.lines[-1] == f"{worker.name}: {answered} call(s) answered", worker.report()


async def test_a_worker_that_answers_no_invite_is_failed_over(
    cleanup: list[Callable[[], object]],
) -> None:
    """A hung worker passes the OPTIONS probes but sends nothing back to an INVITE: the call
    sent there waits FR_TIMER, is marked down by the failure route and goes to the next."""
    [live] = start_workers(cleanup, "live")
    hung = SilentPeer(free_port(), answer_options=True)
    cleanup.append(hung.close)
    # probes far apart: only the failure route can take the hung worker out here
    kamailio = start_dispatcher(cleanup, [hung.uri, live.uri], ping_interval=60)
    client, sent = open_caller(kamailio)
    async with client:
        caller = Caller(client, kamailio, sent)
        calls = [await caller.call() for _ in range(3)]
    assert [port for _, port in calls] == [live.port] * 3
    # exactly one of the calls was tried on the hung worker first (round robin), then
    # never again: it is marked inactive until a probe brings it back
    [tried] = hung.call_ids("INVITE")
    assert tried in {call.call_id for call, _ in calls}
    assert kamailio.dispatcher_flags()[hung.uri].startswith("I")
    assert re.search(
        rf"worker {re.escape(hung.uri)} failed \(408\) for INVITE {re.escape(tried)}",
        kamailio.log_text(),
    ), kamailio.log_tail()
    assert live.stop() == 0, live.report()
    assert live.answered() == {call.call_id for call, _ in calls}
