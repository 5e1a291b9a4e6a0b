"""The call path of issue 14's seventh pass, pinned as behaviour.

* A call that ends stops the 2xx retransmissions of its dialog through an index by dialog
  id: the engine does not scan every call's pending 2xx (a scan per ended call grows with
  the calls in flight). The other calls' 2xx are still resent; ACKs and ends leave
  nothing behind.
* ``SessionExpires`` is written without the generic parameter writer, and the UAS's
  ``supports_timer`` reads Supported and Require as before.

Each test checks what went on the wire or the values, and fails if the change is
reverted. Nothing here measures a time.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import trio
import trio.testing

import sipx
import sipx._core.session_timer
from sipx._core.message import Request, Response
from sipx._core.parser import parse_message
from sipx._core.session_timer import SessionExpires, choose_as_uas, supports_timer
from sipx.testing import MemoryNetwork

PEER = ("127.0.0.1", 5999)
OFFER = (
    "v=0\r\no=peer 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
ANSWER = (
    "v=0\r\no=uas 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=inactive\r\n"
)


def _request(
    method: str,
    target: str,
    i: int,
    *,
    to_tag: str = "",
    cseq: int = 1,
    body: str = "",
    extra: tuple[str, ...] = (),
) -> bytes:
    lines = [
        f"{method} sip:uas@{target} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-{method}{i}-{cseq};rport",
        f"From: <sip:peer@127.0.0.1:5999>;tag=f{i}",
        f"To: <sip:uas@{target}>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {i}@peer",
        f"CSeq: {cseq} {method}",
        "Contact: <sip:peer@127.0.0.1:5999>",
        "Max-Forwards: 70",
        *extra,
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


class _NoScan(dict[Any, Any]):
    """The engine's pending 2xx: iterating over them all is what the index avoids."""

    def __iter__(self) -> Any:
        raise AssertionError("every pending 2xx scanned to end one call")


def _responses(log: list[Any], address: tuple[str, int]) -> list[Response]:
    out = []
    for datagram in log:
        if datagram.source == address:
            message = parse_message(datagram.data)
            assert isinstance(message, Response)
            out.append(message)
    return out


async def test_an_ended_call_stops_only_its_own_2xx_without_a_scan(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(seed=1)
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(PEER) as peer,
        trio.open_nursery() as nursery,
    ):
        address = next(a for a in network.bound_addresses if a != PEER)
        target = f"{address[0]}:{address[1]}"
        calls: list[sipx.Call] = []

        async def answer_all() -> None:
            async for call in client.calls():
                calls.append(call)
                call.answer(ANSWER)

        nursery.start_soon(answer_all)
        await trio.testing.wait_all_tasks_blocked()
        for i in range(3):
            peer.send(_request("INVITE", target, i, body=OFFER), address)
        tags = {}
        while len(tags) < 3:
            data, _ = await peer.receive()
            response = parse_message(data)
            assert isinstance(response, Response) and response.status_code == 200
            tags[response.call_id] = response.to.tag or ""
        engine = client._engine
        no_scan = engine._retransmits = _NoScan(engine._retransmits)
        network.clear_log()
        # No ACK comes; the peer hangs up the first call.
        peer.send(_request("BYE", target, 0, to_tag=tags["0@peer"], cseq=2), address)
        await trio.testing.wait_all_tasks_blocked()
        engine._retransmits = dict(dict.items(no_scan))  # (what a scan would have met)
        await trio.sleep(3)  # T1 = 0.5 s: the 2xx of an unACKed call goes again at 0.5, 1.5
        resent = Counter(
            r.call_id for r in _responses(network.log, address) if r.cseq.method == "INVITE"
        )
        assert calls[0].ended and calls[0].ended_by == "remote"
        assert resent["0@peer"] == 0  # stopped by the BYE
        assert resent["1@peer"] >= 2 and resent["2@peer"] >= 2  # the others still resent
        # The ACKs stop the others; nothing is left pending for any of the three.
        for i in (1, 2):
            peer.send(_request("ACK", target, i, to_tag=tags[f"{i}@peer"]), address)
        await trio.testing.wait_all_tasks_blocked()
        assert dict(engine._retransmits) == {} and engine._retransmit_keys == {}
        assert len(engine.retransmitter) == 0
        network.clear_log()
        await trio.sleep(5)
        assert not [r for r in _responses(network.log, address) if r.cseq.method == "INVITE"]
        nursery.cancel_scope.cancel()


async def test_a_2xx_never_acked_ends_its_call_and_leaves_no_index_entry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(seed=1)
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(PEER) as peer,
        trio.open_nursery() as nursery,
    ):
        address = next(a for a in network.bound_addresses if a != PEER)
        calls: list[sipx.Call] = []

        async def answer_all() -> None:
            async for call in client.calls():
                calls.append(call)
                call.answer(ANSWER)

        nursery.start_soon(answer_all)
        await trio.testing.wait_all_tasks_blocked()
        peer.send(_request("INVITE", f"{address[0]}:{address[1]}", 7, body=OFFER), address)
        await trio.sleep(40)  # 64·T1 = 32 s without an ACK
        assert calls[0].ended and calls[0].ended_by == "timeout"
        engine = client._engine
        assert engine._retransmits == {} and engine._retransmit_keys == {}
        nursery.cancel_scope.cancel()


def test_session_expires_is_written_without_the_generic_parameter_writer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_writer(params: object) -> str:
        raise AssertionError("render_params used for Session-Expires")

    monkeypatch.setattr(sipx._core.session_timer, "render_params", no_writer, raising=False)
    assert str(SessionExpires(1800, "uac")) == "1800;refresher=uac"
    assert str(SessionExpires(90)) == "90"
    assert SessionExpires.parse(str(SessionExpires(600, "uas"))) == SessionExpires(600, "uas")
    invite = _invite(("Supported: timer", "Session-Expires: 1800"))
    choice = choose_as_uas(invite, interval=1800, min_se=90)
    assert choice.status == 200
    assert choice.headers == {
        "Supported": "timer",
        "Session-Expires": "1800;refresher=uac",
        "Require": "timer",
    }


def _invite(extra: tuple[str, ...]) -> Request:
    message = parse_message(_request("INVITE", "127.0.0.1:5060", 1, extra=extra))
    assert isinstance(message, Request)
    return message


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ((), False),
        (("Supported: 100rel, replaces",), False),
        (("Supported: 100rel, Timer ",), True),
        (("Supported: 100rel", "Supported: timer"), True),
        (("Require: timer",), True),
        (("Supported: replaces", "Require: 100rel"), False),
    ],
)
def test_supports_timer_reads_supported_and_require(extra: tuple[str, ...], expected: bool) -> None:
    assert supports_timer(_invite(extra)) is expected
