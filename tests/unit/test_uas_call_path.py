"""The UAS path of issue 14's third pass: what an OPTIONS or a call costs, pinned as behaviour.

Each test counts work that the optimisation removed (coroutines, header checks, SDP
serialisations, list building) and checks what went on the wire, so that it fails if the
change is reverted and if the behaviour changes. Nothing here measures a time.
"""

from __future__ import annotations

import socket
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
import trio
import trio.testing

import sipx
import sipx._call
import sipx._uas
from sipx._core.headers import Headers
from sipx._core.message import Request, Response
from sipx._core.parser import parse_message
from sipx._core.received import stamp_received
from sipx._core.sdp import SDPBody
from sipx._core.transaction import TRYING_DELAY, Send, TransactionLayer, make_response
from sipx._errors import TransportError
from sipx._media_stream import bind_rtp_socket
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
    method: str, target: str, i: int, *, to_tag: str = "", cseq: int = 1, body: str = ""
) -> bytes:
    lines = [
        f"{method} sip:uas@{target} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-{method}{i};rport",
        f"From: <sip:peer@127.0.0.1:5999>;tag=f{i}",
        f"To: <sip:uas@{target}>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {i}@peer",
        f"CSeq: {cseq} {method}",
        "Contact: <sip:peer@127.0.0.1:5999>",
        "Max-Forwards: 70",
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


class Counter:
    """Wraps a function of a module or class and counts its calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> None:
        self.calls = 0
        original = getattr(owner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)


async def _receive(peer: Any, count: int) -> list[Response]:
    responses = []
    for _ in range(count):
        data, _ = await peer.receive()
        response = parse_message(data)
        assert isinstance(response, Response)
        responses.append(response)
    return responses


async def _one_call(
    client: sipx.AsyncClient, peer: Any, address: tuple[str, int], i: int
) -> tuple[list[Response], sipx.Call]:
    """INVITE with an offer, answered by ``client.calls()``'s consumer; ACK; BYE."""
    target = f"{address[0]}:{address[1]}"
    calls: list[sipx.Call] = []
    async with trio.open_nursery() as nursery:

        async def answer_one() -> None:
            async for call in client.calls():
                calls.append(call)
                call.answer(ANSWER)
                return

        nursery.start_soon(answer_one)
        await trio.testing.wait_all_tasks_blocked()
        peer.send(_request("INVITE", target, i, body=OFFER), address)
        responses = await _receive(peer, 1)
    tag = responses[0].to.tag or ""
    peer.send(_request("ACK", target, i, to_tag=tag), address)
    await trio.testing.wait_all_tasks_blocked()
    peer.send(_request("BYE", target, i, to_tag=tag, cseq=2), address)
    responses += await _receive(peer, 1)
    return responses, calls[0]


@pytest.fixture
def network() -> Iterator[MemoryNetwork]:
    yield MemoryNetwork(seed=1)


async def test_options_invite_and_bye_are_served_without_the_coroutine_path(
    monkeypatch: pytest.MonkeyPatch, network: MemoryNetwork
) -> None:
    """Served at once, an OPTIONS, a new INVITE and a BYE never go through ``serve`` (the
    coroutine chain a request in a task needs); their answers are the same."""
    serve = Counter(monkeypatch, sipx._uas.UserAgentServer, "serve")
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(PEER) as peer,
    ):
        address = next(a for a in network.bound_addresses if a != PEER)
        peer.send(_request("OPTIONS", f"{address[0]}:{address[1]}", 0), address)
        (options,) = await _receive(peer, 1)
        responses, call = await _one_call(client, peer, address, 1)
        await trio.testing.wait_all_tasks_blocked()
    assert options.status_code == 200
    assert options.headers["Accept"] == "application/sdp, text/plain"
    assert "INVITE" in options.headers["Allow"] and options.to.tag
    # Answered at once: no 100 Trying (RFC 3261 17.2.1).
    assert [(r.status_code, r.cseq.method) for r in responses] == [(200, "INVITE"), (200, "BYE")]
    assert responses[0].headers["Allow"] == options.headers["Allow"]
    assert call.ended_by == "remote"
    assert serve.calls == 0


async def test_a_200_to_options_copies_the_cached_capabilities_unchecked(
    monkeypatch: pytest.MonkeyPatch, network: MemoryNetwork
) -> None:
    """The capabilities are checked once, when made; each 200 to OPTIONS then copies them
    without a ``Headers.__setitem__`` per field, and still carries all of them."""
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network),
        network.socket(PEER) as peer,
    ):
        address = next(a for a in network.bound_addresses if a != PEER)
        target = f"{address[0]}:{address[1]}"
        peer.send(_request("OPTIONS", target, 0), address)
        (first,) = await _receive(peer, 1)  # makes the cache
        setitem = Counter(monkeypatch, Headers, "__setitem__")
        for i in range(1, 4):
            peer.send(_request("OPTIONS", target, i), address)
        later = await _receive(peer, 3)
    assert setitem.calls == 0
    for response in later:
        for name in ("Allow", "Accept", "Supported"):
            assert response.headers[name] == first.headers[name]
        assert response.to.tag and response.to.tag != first.to.tag


async def test_a_provisional_and_the_final_answer_to_a_request_share_the_to_tag(
    network: MemoryNetwork,
) -> None:
    """A final answer to a non-INVITE takes the To tag a provisional one used; a request
    answered at once draws a tag of its own each time."""

    async def on_message(request: sipx.IncomingRequest) -> None:
        request.respond(183)
        request.respond(200)

    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(PEER) as peer,
    ):
        client.on_request("MESSAGE", on_message)
        address = next(a for a in network.bound_addresses if a != PEER)
        peer.send(_request("MESSAGE", f"{address[0]}:{address[1]}", 0), address)
        provisional, final = await _receive(peer, 2)
    assert (provisional.status_code, final.status_code) == (183, 200)
    assert provisional.to.tag and final.to.tag == provisional.to.tag


async def test_an_acked_call_keeps_the_bodies_sent_as_its_sdps(
    monkeypatch: pytest.MonkeyPatch, network: MemoryNetwork
) -> None:
    """Once ACKed, a call keeps the INVITE's offer and its 200's answer as the bytes that
    went on the wire, without writing either SDP out again; read back, they are those."""
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(PEER) as peer,
    ):
        address = next(a for a in network.bound_addresses if a != PEER)
        written = Counter(monkeypatch, SDPBody, "to_bytes")
        responses, call = await _one_call(client, peer, address, 1)
    answered = responses[0]
    assert written.calls == 1  # the 200's body, once
    assert call.local_sdp == SDPBody.parse(answered.content)
    assert call.answer_sdp == call.local_sdp
    assert call.remote_sdp == SDPBody.parse(OFFER) == call.offer


async def test_the_session_interval_of_a_call_is_chosen_once(
    monkeypatch: pytest.MonkeyPatch, network: MemoryNetwork
) -> None:
    """The session-interval choice made when the INVITE came is the one answer() uses: the
    200 carries it (RFC 4028), and it was made once."""
    chosen = Counter(monkeypatch, sipx._call, "choose_as_uas")
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network, session_expires=1800) as client,
        network.socket(PEER) as peer,
    ):
        address = next(a for a in network.bound_addresses if a != PEER)
        responses, _ = await _one_call(client, peer, address, 1)
    assert responses[0].headers["Session-Expires"].startswith("1800")
    assert chosen.calls == 1


async def test_an_invite_not_answered_in_200_ms_gets_its_100_trying(
    autojump_clock: trio.testing.MockClock, network: MemoryNetwork
) -> None:
    """RFC 3261 17.2.1: a 100 Trying 200 ms after the INVITE when the TU has not answered
    by then; then the 180, and a retransmitted INVITE gets the latest provisional (180)."""
    calls: list[sipx.Call] = []
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(PEER) as peer,
    ):
        client.on_request("INVITE", calls.append)  # leaves the call unanswered
        address = next(a for a in network.bound_addresses if a != PEER)
        invite = _request("INVITE", f"{address[0]}:{address[1]}", 1, body=OFFER)
        start = trio.current_time()
        peer.send(invite, address)
        (trying,) = await _receive(peer, 1)
        assert trying.status_code == 100 and trying.to.tag is None
        assert trio.current_time() - start == pytest.approx(TRYING_DELAY)
        [call] = calls
        call.ring()
        (ringing,) = await _receive(peer, 1)
        peer.send(invite, address)  # retransmitted
        (again,) = await _receive(peer, 1)
        assert (ringing.status_code, again.status_code) == (180, 180)
        assert again.to.tag == ringing.to.tag
        call.reject(486)
        assert [r.status_code for r in await _receive(peer, 1)] == [486]


async def test_a_retransmitted_invite_gets_the_100_at_once(
    autojump_clock: trio.testing.MockClock, network: MemoryNetwork
) -> None:
    """The client retransmits before anything was answered: the 100 Trying goes at once,
    and only once (the 200 ms timer does not send a second one)."""
    calls: list[sipx.Call] = []
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(PEER) as peer,
    ):
        client.on_request("INVITE", calls.append)
        address = next(a for a in network.bound_addresses if a != PEER)
        invite = _request("INVITE", f"{address[0]}:{address[1]}", 1, body=OFFER)
        start = trio.current_time()
        peer.send(invite, address)
        peer.send(invite, address)
        (trying,) = await _receive(peer, 1)
        assert trying.status_code == 100 and trio.current_time() == start
        await trio.sleep(1)
        calls[0].reject(486)
        assert [r.status_code for r in await _receive(peer, 1)] == [486]
    assert len(network.responses(100)) == 1


def test_the_transaction_layer_sends_the_100_only_when_the_tu_is_late() -> None:
    """The layer with a ``trying_delay``: no Send for a new INVITE; at the delay, the 100;
    answered before it, never a 100. Without one (the default), the 100 goes at once."""
    data = _request("INVITE", "127.0.0.1:5060", 1, body=OFFER)

    def sent(layer: TransactionLayer) -> list[int]:
        return [
            event.message.status_code
            for event in layer.pop_events()
            if isinstance(event, Send) and isinstance(event.message, Response)
        ]

    late = TransactionLayer(trying_delay=TRYING_DELAY)
    invite = parse_message(data)
    assert isinstance(invite, Request)
    late.receive_request(invite, 0.0, reliable=False, destination=PEER)
    assert sent(late) == []
    late.handle_timers(TRYING_DELAY)
    assert sent(late) == [100]

    in_time = TransactionLayer(trying_delay=TRYING_DELAY)
    invite = parse_message(data)
    assert isinstance(invite, Request)
    transaction = in_time.receive_request(invite, 0.0, reliable=False, destination=PEER)
    assert transaction is not None
    assert transaction.respond(make_response(invite, 180, to_tag="t"), 0.1)
    in_time.handle_timers(10.0)
    assert sent(in_time) == [180]

    at_once = TransactionLayer()
    invite = parse_message(data)
    assert isinstance(invite, Request)
    at_once.receive_request(invite, 0.0, reliable=False, destination=PEER)
    assert sent(at_once) == [100]

    # Over a connection the 100 goes at once: the connection may be gone 200 ms later.
    reliable = TransactionLayer(trying_delay=TRYING_DELAY)
    invite = parse_message(data)
    assert isinstance(invite, Request)
    reliable.receive_request(invite, 0.0, reliable=True, destination=PEER)
    assert sent(reliable) == [100]


def test_a_single_top_via_is_stamped_in_place() -> None:
    """``received``/``rport`` go into the one Via field as parsed: the other fields and the
    typed views already read stay the same objects (nothing is parsed again)."""
    request = parse_message(_request("OPTIONS", "127.0.0.1:5060", 1))
    assert isinstance(request, Request)
    first, from_ = request.headers.first, request.from_
    stamp_received(request, ("10.0.0.9", 4000))
    assert request.headers.first is first
    assert request.from_ is from_
    assert request.top_via.received == "10.0.0.9" and request.top_via.rport == 4000
    data = request.to_bytes()
    assert b";received=10.0.0.9" in data and b"rport=4000" in data
    assert parse_message(data).headers.get_first("From") == first["from"]


def test_several_vias_are_still_stamped_on_the_top_one_only() -> None:
    top, second = (
        "SIP/2.0/UDP 127.0.0.1:5999;rport;branch=z9hG4bK-a",
        "SIP/2.0/UDP p;branch=z9hG4bK-b",
    )
    for vias in (f"Via: {top}, {second}", f"Via: {top}\r\nVia: {second}"):
        data = _request("OPTIONS", "127.0.0.1:5060", 1).replace(
            b"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-OPTIONS1;rport", vias.encode()
        )
        request = parse_message(data)
        assert isinstance(request, Request)
        stamp_received(request, ("10.0.0.9", 4000))
        again = parse_message(request.to_bytes())
        assert [via.branch for via in again.via] == ["z9hG4bK-a", "z9hG4bK-b"]
        assert again.via[0].received == "10.0.0.9" and again.via[0].rport == 4000
        assert again.via[1].received is None


def test_an_rtp_port_is_chosen_without_listing_the_range() -> None:
    """Over the widest range, choosing an even port allocates no list of the ports."""
    tracemalloc.start()
    try:
        sock = bind_rtp_socket("127.0.0.1", (2, 65534))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    with sock:
        assert sock.getsockname()[1] % 2 == 0
    assert peak < 32 * 1024


def test_every_even_port_of_the_range_is_tried() -> None:
    """A range whose one even port is taken: it is tried, then the range is exhausted."""
    held = []
    try:
        while True:  # a port the kernel picks, until an even one (kept bound: taken)
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            held.append(probe)
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
            if port % 2 == 0:
                break
        with pytest.raises(TransportError, match="no free RTP port"):
            bind_rtp_socket("127.0.0.1", (port, port + 1))
    finally:
        for probe in held:
            probe.close()
