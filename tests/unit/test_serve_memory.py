"""``sipx serve`` keeps no per-call state once a call has ended and its timers have run.

Many calls go to extension 100 (the echo UA) of a DevServer on a MemoryNetwork, on trio's
autojump clock: answered and hung up (INVITE/200/ACK/BYE), cancelled while ringing
(INVITE/180/CANCEL/487/ACK) and answered but never acknowledged. While the transactions'
timers run (Timer J and L: 64*T1) the server holds state for them; afterwards every dict,
list, set and deque reachable from the server's sans-I/O objects must be empty again, and
no parsed message of those calls may still be alive.
"""

from __future__ import annotations

import gc
import itertools
from collections import deque
from collections.abc import Iterator
from typing import Any

import pytest
import trio
import trio.testing

from sipx._core.message import Request, Response
from sipx._core.parser import parse_message
from sipx._serve import DevServer
from sipx._trio.transport import Transport
from sipx.testing import MemoryNetwork, MemorySocket

Address = tuple[str, int]

SERVER = ("127.0.0.1", 5060)
CALLER = ("127.0.0.1", 6000)
T1 = 0.5  # the default timers: 64*T1 = 32 s
ANSWER_DELAY = 1.0  # ringing long enough to be cancelled
CALLS_PER_KIND = 40

# Containers that are not per call: the server's transports and the configured users.
NOT_PER_CALL = {"_transports", "users"}

SDP = (
    "v=0\r\n"
    "o=caller 1 1 IN IP4 127.0.0.1\r\n"
    "s=-\r\n"
    "c=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\n"
    "m=audio 9000 RTP/AVP 0\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
)


class MemoryDevServer(DevServer):
    """``DevServer`` with its transport on a MemoryNetwork instead of real sockets."""

    def __init__(self, network: MemoryNetwork, transport: str, **kwargs: Any) -> None:
        super().__init__(*SERVER, transports=(transport,), **kwargs)
        self.network = network

    def _make_transport(self, name: str) -> Transport:
        transport: Transport = self.network.transport(self._on_message, name)
        return transport


class Caller:
    """A raw endpoint that places calls to extension 100, byte by byte."""

    def __init__(self, sock: MemorySocket, transport: str) -> None:
        self.sock = sock
        self.transport = transport
        self._branches = itertools.count(1)
        self._early: list[Response] = []  # received, not yet asked for

    def request(
        self,
        method: str,
        n: int,
        *,
        cseq: int,
        to_tag: str | None = None,
        branch: str | None = None,
        body: str = "",
    ) -> str:
        """Send a request of call ``n``; returns its branch."""
        branch = branch or f"z9hG4bKmem{next(self._branches)}"
        host, port = CALLER
        lines = [
            f"{method} sip:100@{SERVER[0]}:{SERVER[1]} SIP/2.0",
            f"Via: SIP/2.0/{self.transport} {host}:{port};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: <sip:caller@{host}:{port}>;tag=from{n}",
            f"To: <sip:100@{SERVER[0]}:{SERVER[1]}>" + (f";tag={to_tag}" if to_tag else ""),
            f"Call-ID: memory-call-{n}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:caller@{host}:{port}>",
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        data = "\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n{body}"
        self.sock.send(data.encode(), SERVER)
        return branch

    async def response(self, n: int, method: str, status: int) -> Response:
        """The first response of call ``n`` to ``method`` with ``status``, whenever it came
        (the 487 may overtake the 200 for the CANCEL); the others are skipped."""
        while True:
            for index, response in enumerate(self._early):
                if (response.call_id, response.cseq.method, response.status_code) == (
                    f"memory-call-{n}",
                    method,
                    status,
                ):
                    del self._early[index]
                    return response
            message = parse_message((await self.sock.receive())[0])
            if isinstance(message, Response):
                self._early.append(message)
                del self._early[:-8]

    async def answered_and_hung_up(self, n: int) -> None:
        self.request("INVITE", n, cseq=1, body=SDP)
        tag = (await self.response(n, "INVITE", 200)).to.tag
        self.request("ACK", n, cseq=1, to_tag=tag)
        self.request("BYE", n, cseq=2, to_tag=tag)
        await self.response(n, "BYE", 200)

    async def cancelled(self, n: int) -> None:
        branch = self.request("INVITE", n, cseq=1, body=SDP)
        await self.response(n, "INVITE", 180)
        self.request("CANCEL", n, cseq=1, branch=branch)
        await self.response(n, "CANCEL", 200)
        tag = (await self.response(n, "INVITE", 487)).to.tag
        self.request("ACK", n, cseq=1, to_tag=tag, branch=branch)

    async def never_acknowledged(self, n: int) -> None:
        self.request("INVITE", n, cseq=1, body=SDP)
        await self.response(n, "INVITE", 200)


def _attributes(obj: object) -> Iterator[tuple[str, object]]:
    names = set(getattr(obj, "__dict__", {}))
    for cls in type(obj).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        names.update((slots,) if isinstance(slots, str) else slots)
    for name in sorted(names):
        try:
            yield name, getattr(obj, name)
        except AttributeError:
            continue


def leftovers(server: DevServer) -> dict[str, int]:
    """Non-empty dicts, lists, sets and deques reachable from ``server`` through the
    objects of ``sipx._serve`` and ``sipx._core`` (transaction layer, echo UA, proxy,
    registrar, retransmitter, ...), by path; the containers' contents are not followed."""
    found: dict[str, int] = {}
    seen: set[int] = set()

    def visit(obj: object, path: str) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        for name, value in _attributes(obj):
            where = f"{path}.{name}"
            if isinstance(value, dict | list | set | deque):
                if value and name not in NOT_PER_CALL:
                    found[where] = len(value)
            elif type(value).__module__.startswith(("sipx._serve", "sipx._core")):
                visit(value, where)

    visit(server, "server")
    return found


def live_messages() -> int:
    gc.collect()
    return sum(isinstance(obj, Request | Response) for obj in gc.get_objects())


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
async def test_finished_calls_leave_nothing_behind(
    transport: str, autojump_clock: trio.testing.MockClock
) -> None:
    network = MemoryNetwork()
    server = MemoryDevServer(network, transport, echo_answer_delay=ANSWER_DELAY)
    async with server, MemorySocket(network, CALLER, transport) as sock:
        caller = Caller(sock, transport)
        await caller.answered_and_hung_up(0)  # warm up before counting objects
        await trio.sleep(64 * T1 + 1)
        assert leftovers(server) == {}
        before = live_messages()

        for n in range(1, 1 + CALLS_PER_KIND):
            await caller.answered_and_hung_up(n)
            await caller.cancelled(n + CALLS_PER_KIND)
        assert leftovers(server)  # the transactions are still in their timers
        await trio.sleep(64 * T1 + 1)

        assert leftovers(server) == {}
        assert server.echo is not None and server.echo.calls == []
        assert server.proxy.next_deadline() is None  # no timer armed any more
        assert live_messages() - before <= 4


async def test_unacknowledged_calls_leave_nothing_behind_over_udp(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The 2xx is retransmitted until 64*T1, then the call is dropped."""
    network = MemoryNetwork()
    server = MemoryDevServer(network, "UDP")
    async with server, MemorySocket(network, CALLER, "UDP") as sock:
        caller = Caller(sock, "UDP")
        before = live_messages()
        for n in range(CALLS_PER_KIND):
            await caller.never_acknowledged(n)
        assert server.echo is not None and len(server.echo.calls) == CALLS_PER_KIND
        await trio.sleep(64 * T1 + 1)

        assert leftovers(server) == {}
        assert server.echo.calls == []
        assert server.proxy.next_deadline() is None
        caller._early.clear()  # the retransmitted 2xx the test itself holds
        while True:
            try:
                sock.receive_nowait()
            except trio.WouldBlock:
                break
        assert live_messages() - before <= 4


async def test_unacknowledged_calls_leave_nothing_behind_over_tcp(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    server = MemoryDevServer(network, "TCP")
    async with server, MemorySocket(network, CALLER, "TCP") as sock:
        caller = Caller(sock, "TCP")
        for n in range(CALLS_PER_KIND):
            await caller.never_acknowledged(n)
        await trio.sleep(64 * T1 + 1)
        assert server.echo is not None and server.echo.calls == []
        assert leftovers(server) == {}
