"""Requests whose answer needs no await are served without a task of their own, in the
order they came (sipx/_uas.py ``serve_at_once``, sipx/_engine.py ``Engine._serve``)."""

from __future__ import annotations

import socket

import trio
import trio.testing

import sipx
from sipx.testing import MemoryNetwork

PEER = ("127.0.0.1", 5999)


def _request(method: str, host: str, port: int, i: int, peer: socket.socket | None = None) -> bytes:
    sent_by = f"127.0.0.1:{peer.getsockname()[1] if peer is not None else PEER[1]}"
    return (
        f"{method} sip:uas@{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {sent_by};branch=z9hG4bK-{i}\r\n"
        f"From: <sip:peer@{sent_by}>;tag=f{i}\r\n"
        f"To: <sip:uas@{host}:{port}>\r\n"
        f"Call-ID: {i}@peer\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


class SpawnCounter(trio.abc.Instrument):
    def __init__(self) -> None:
        self.spawned = 0

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.spawned += 1


async def _options_round(handler: bool) -> tuple[int, list[int]]:
    network = MemoryNetwork(seed=1)
    counter = SpawnCounter()
    codes: list[int] = []
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(PEER) as peer,
    ):
        if handler:
            client.on_request("OPTIONS", lambda request: None)
        host, port = next(a for a in network.bound_addresses if a != PEER)
        await trio.testing.wait_all_tasks_blocked()
        trio.lowlevel.add_instrument(counter)
        try:
            for i in range(20):
                peer.send(_request("OPTIONS", host, port, i), (host, port))
            for _ in range(20):
                data, _ = await peer.receive()
                codes.append(sipx.parse_message(data).status_code)  # type: ignore[union-attr]
        finally:
            trio.lowlevel.remove_instrument(counter)
    return counter.spawned, codes


async def test_options_without_a_handler_cost_no_task() -> None:
    spawned, codes = await _options_round(handler=False)
    assert codes == [200] * 20
    assert spawned == 0


async def test_a_users_handler_still_runs_in_a_task() -> None:
    spawned, codes = await _options_round(handler=True)
    assert codes == [200] * 20
    assert spawned >= 20


async def test_a_cancel_right_behind_its_invite_finds_the_call() -> None:
    """An INVITE for a handler, then its CANCEL in the same burst (over real UDP, so that one
    pass of the receive loop reads both): the INVITE's Call is made on the spot, so the
    CANCEL finds it and ends it (487) before the handler's task runs; the handler then gets
    a Call that is already ended, and nothing answers the INVITE twice."""
    seen: list[tuple[bool, str | None]] = []
    async with sipx.AsyncClient("127.0.0.1", 0) as client:

        async def on_invite(call: sipx.Call) -> None:
            seen.append((call.ended, call.ended_by))
            if not call.ended:
                call.ring()

        client.on_request("INVITE", on_invite)
        host, port = client.local_address.host, client.local_address.port
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.bind(("127.0.0.1", 0))
            peer.setblocking(False)
            peer.sendto(_request("INVITE", host, port, 1, peer), (host, port))
            peer.sendto(_request("CANCEL", host, port, 1, peer), (host, port))
            codes: list[tuple[int, str]] = []
            with trio.fail_after(5):
                while (487, "INVITE") not in codes:
                    await trio.lowlevel.wait_readable(peer)
                    response = sipx.parse_message(peer.recv(65535))
                    assert isinstance(response, sipx.Response)
                    codes.append((response.status_code, response.cseq.method))
            await trio.testing.wait_all_tasks_blocked()
    # The INVITE is answered (487) within 200 ms: no 100 Trying (RFC 3261 17.2.1).
    assert sorted(codes) == [(200, "CANCEL"), (487, "INVITE")]
    assert seen == [(True, "cancel")]


async def test_the_capabilities_of_a_200_to_options_follow_the_handlers() -> None:
    """The Allow of a 200 to OPTIONS is made once and kept, but made again when a handler
    is added: a REFER handler puts REFER in it."""
    network = MemoryNetwork(seed=1)
    allows: list[str] = []
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(PEER) as peer,
    ):
        host, port = next(a for a in network.bound_addresses if a != PEER)
        for i in range(3):
            if i == 2:
                client.on_request("REFER", lambda request: None)
            peer.send(_request("OPTIONS", host, port, i), (host, port))
            data, _ = await peer.receive()
            allows.append(sipx.parse_message(data).headers["Allow"])
    assert allows[0] == allows[1] and "REFER" not in allows[0]
    assert "REFER" in allows[2]
