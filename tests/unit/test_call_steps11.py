"""The UAS call path of issue 14's eleventh pass, pinned as behaviour (nothing here times).

* ``SDPBody.create_answer`` remembers an answer without our ports (nor the caller's, but
  for a refused 0): calls answered with sipx media, each on its own RTP port, get a copy
  of the same answer with their port, byte for byte what working it out gives.
* The 200 to an INVITE gets its Content-Type with the fields made for it (no
  ``Headers.add`` and no second order check when written): the same bytes for every shape
  of INVITE (Record-Route, several Vias, session timers, the user's fields).
* The 2xx is keyed for its retransmissions by the INVITE's CSeq (the 200's is not parsed)
  and ``answer()`` reads the clock once; the 2xx is still resent at T1, 2·T1... until the
  ACK.
* The engine's pump ends without taking an empty event list and asks the 2xx
  retransmitter for its next deadline only from the timer loop (the retransmitter tells
  what it started since, the layer what it armed, each read in place).
* ``choose_as_uas`` reads the four timer fields of an INVITE from its first values at
  once (no ``first_of_key`` call for each).

Each test checks what went on the wire or what the call holds, and fails if the change is
reverted.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import trio
import trio.testing
from test_uas_call_path import OFFER, PEER, Counter, _receive, _request

import sipx
import sipx._core.message
import sipx._core.sdp
import sipx._core.transaction
from sipx import SDPBody
from sipx._core.headers import Headers
from sipx._core.ids import counter_token
from sipx._core.parser import parse_message
from sipx._core.retransmit import TwoXXRetransmitter
from sipx._core.session_timer import choose_as_uas
from sipx._core.transaction import TransactionLayer
from sipx._engine import Engine
from sipx.testing import MemoryNetwork

ANSWER_SDP = OFFER.replace("6000", "9").replace("o=peer", "o=uas")


# -- the SDP answer without our port --------------------------------------------------------

TWO_STREAMS = (
    "v=0\r\no=peer 5 5 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    "m=audio 6000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
    "a=ptime:20\r\na=sendonly\r\n"
    "m=video 6002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    "m=audio 0 RTP/AVP 0\r\n"
    "m=audio 6004 RTP/AVP 8\r\n"
)


def _fresh(offer: str, **kw: Any) -> bytes:
    """The answer worked out from scratch (no remembered answer), as bytes."""
    kept = dict(sipx._core.sdp._ANSWERS)
    sipx._core.sdp._ANSWERS.clear()
    try:
        return SDPBody.create_answer(offer, "uas", "127.0.0.1", "127.0.0.1", **kw).to_bytes()
    finally:
        sipx._core.sdp._ANSWERS.clear()
        sipx._core.sdp._ANSWERS.update(kept)


def _not_worked_out(*args: Any) -> Any:
    raise AssertionError("called: this step should have been skipped")


@pytest.mark.parametrize(
    "first, second",
    [
        ({"port": 7000}, {"port": 7002}),
        ({"ports": [7000, 7002, 7004, 7006]}, {"ports": [9000, 9002, 9004, 9006]}),
        ({}, {"port": 40000}),
        ({"port": 0}, {"port": 5004}),  # an accepted stream on port 0, then on 5004
    ],
)
def test_the_same_offer_on_other_ports_is_answered_from_the_remembered_answer(
    monkeypatch: pytest.MonkeyPatch, first: dict[str, Any], second: dict[str, Any]
) -> None:
    """The second answer, on other ports of ours and to the caller's other ports, is not
    worked out, and is byte for byte the answer worked out: the accepted streams (the
    first and last) on our ports, the refused ones (a codec we lack, a port 0) on 0."""
    session = {"session_id": 77}
    offer = TWO_STREAMS.replace("m=audio 6000", "m=audio 6100")  # not remembered yet
    expected = [_fresh(offer, **first, **session), _fresh(offer, **second, **session)]
    answered = [SDPBody.create_answer(offer, "uas", "127.0.0.1", "127.0.0.1", **first, **session)]
    monkeypatch.setattr(sipx._core.sdp, "_answer_codecs", _not_worked_out)
    other_ports = offer.replace("6100", "6200").replace("6002", "6202").replace("6004", "6204")
    kw = {**second, **session}
    answer = SDPBody.create_answer(other_ports, "uas", "127.0.0.1", "127.0.0.1", **kw)
    answered.append(answer)
    assert [a.to_bytes() for a in answered] == expected
    assert [m.port for m in answer.media][1:3] == [0, 0]
    answer.media[0].port = 1  # the caller's copy: the remembered answer is not changed
    again = SDPBody.create_answer(offer, "uas", "127.0.0.1", "127.0.0.1", **second, **session)
    assert again.to_bytes() == expected[1]


def test_an_offer_port_of_zero_is_not_answered_from_an_accepted_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The caller's ports are not in the key, but a port 0 (a refused stream) is."""
    offer = OFFER.replace("6000", "6300")
    accepted = SDPBody.create_answer(offer, "uas", "127.0.0.1", "127.0.0.1", port=7000)
    refused = SDPBody.create_answer(
        offer.replace("6300", "0"), "uas", "127.0.0.1", "127.0.0.1", port=7000
    )
    assert (accepted.media[0].port, refused.media[0].port) == (7000, 0)
    assert refused.to_bytes() == _fresh(offer.replace("6300", "0"), port=7000)


def test_answers_after_the_remembered_ones_were_dropped_are_the_same() -> None:
    """Forty other offers push the first out of the 32 remembered; each answer, first,
    again after the others and copied while remembered, is the one worked out."""
    offers = [OFFER.replace("RTP/AVP 0", f"RTP/AVP 0 {96 + i}") for i in range(40)]
    for port, offer in enumerate(offers):
        made = SDPBody.create_answer(offer, "uas", "127.0.0.1", "127.0.0.1", port=2 * port)
        assert made.to_bytes() == _fresh(offer, port=2 * port)
    assert len(sipx._core.sdp._ANSWERS) <= 32
    for port, offer in enumerate(reversed(offers)):
        made = SDPBody.create_answer(offer, "uas", "127.0.0.1", "127.0.0.1", port=9000 + port)
        assert made.to_bytes() == _fresh(offer, port=9000 + port)


async def test_calls_with_sipx_media_share_the_answer_on_their_own_ports(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """Two calls answered with sipx media (``answer()`` without a body): the second
    answer is not worked out; each 200 offers the call's own RTP port, and the two are
    the same SDP but for that port and the o= line."""
    network = MemoryNetwork(seed=1)
    bodies: list[SDPBody] = []
    calls: list[sipx.Call] = []
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(PEER) as peer,
    ):
        address = next(a for a in network.bound_addresses if a != PEER)
        target = f"{address[0]}:{address[1]}"
        for i in (1, 2):
            if i == 2:
                monkeypatch.setattr(sipx._core.sdp, "_answer_codecs", _not_worked_out)
            async with trio.open_nursery() as nursery:

                async def answer_one() -> None:
                    async for call in client.calls():
                        calls.append(call)
                        call.answer()
                        return

                nursery.start_soon(answer_one)
                await trio.testing.wait_all_tasks_blocked()
                peer.send(_request("INVITE", target, i, body=OFFER), address)
                (ok,) = await _receive(peer, 1)
            bodies.append(SDPBody.parse(ok.content))
    ports = [body.media[0].port for body in bodies]
    assert ports == [call.local_sdp.media[0].port for call in calls]  # type: ignore[union-attr]
    assert ports[0] != ports[1] and 0 not in ports
    bodies[1].media[0].port = ports[0]
    bodies[1].origin = bodies[0].origin
    assert bodies[1].to_bytes() == bodies[0].to_bytes()


# -- the 200 to INVITE ---------------------------------------------------------------------


def _invite(target: str, shape: str) -> bytes:
    data = _request("INVITE", target, 7, body="" if shape == "late offer" else OFFER)
    head, _, rest = data.partition(b"\r\n")
    if shape == "record-route":
        rest = (
            b"Record-Route: <sip:p1.example.com;lr>\r\n"
            b"Record-Route: <sip:p2.example.com;lr>\r\n" + rest
        )
    elif shape == "three vias":
        rest = rest.replace(
            b";rport\r\n",
            b";rport\r\nVia: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK-x, "
            b"SIP/2.0/TCP 10.0.0.2;branch=z9hG4bK-y\r\n",
            1,
        )
    elif shape == "two vias in one":
        rest = rest.replace(
            b";rport\r\n", b";rport, SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK-z\r\n", 1
        )
    elif shape == "session timer":
        rest = b"Supported: timer\r\nSession-Expires: 900;refresher=uac\r\nMin-SE: 90\r\n" + rest
    return head + b"\r\n" + rest


# sha256 (first 16 hex digits) of the 200 each shape got on the parent commit (d9f1b11),
# with the same client and ids; "SDP as text", "late offer": the same bytes as "plain".
PARENT_200 = {
    "plain": "611b9247429b58ad",
    "record-route": "f43a4f2d0c6d99f7",
    "three vias": "89019cf94c368ad3",
    "two vias in one": "28cc600a08b07cdc",
    "session timer": "c9aeedb323cd5fa4",
    "user's field": "77b868ad29d29fac",
    "SDP as text": "611b9247429b58ad",
    "late offer": "611b9247429b58ad",
    "user's Allow": "cd603bf049ab73a1",
}

RECORD_ROUTED_200 = (
    "SIP/2.0 200 OK\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-INVITE7;rport=5999\r\n"
    "Record-Route: <sip:p1.example.com;lr>\r\n"
    "Record-Route: <sip:p2.example.com;lr>\r\n"
    "From: <sip:peer@127.0.0.1:5999>;tag=f7\r\n"
    "To: <sip:uas@127.0.0.1:40000>;tag=0000000000000001\r\n"
    "Call-ID: 7@peer\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:uas@127.0.0.1:40000>\r\n"
    "Supported: timer\r\n"
    "Session-Expires: 1800;refresher=uas\r\n"
    "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE, NOTIFY, INFO, PRACK, UPDATE\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 108\r\n\r\n" + ANSWER_SDP
).encode()


@pytest.mark.parametrize("shape", list(PARENT_200))
async def test_the_200_to_invite_is_the_same_bytes_with_its_content_type_made_in(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock, shape: str
) -> None:
    """The 200 of each INVITE shape is byte for byte the parent's; without the user's
    fields its Content-Type is not added to a made response (``Headers.add``), nor are
    its fields checked for order again when written (``in_conventional_order`` once, when
    made; twice with Record-Route, whose copies ``to_bytes()`` moves before From); the
    INVITE's header index is not built for its Contact and Record-Route."""
    network = MemoryNetwork(seed=1)
    added = Counter(monkeypatch, Headers, "add")
    ordered = Counter(monkeypatch, sipx._core.message, "in_conventional_order")  # to_bytes
    made = Counter(monkeypatch, sipx._core.transaction, "in_conventional_order")
    looked = Counter(monkeypatch, Headers, "lookup")
    user = {"user's field": {"X-Served-By": "w1"}, "user's Allow": {"Allow": "INVITE, BYE"}}
    counts: list[tuple[int, int]] = []
    indexes: list[int] = []
    async with (
        sipx.AsyncClient(
            "127.0.0.1", 0, network=network, id_token=counter_token(), session_expires=1800
        ) as client,
        network.socket(PEER) as peer,
    ):
        address = next(a for a in network.bound_addresses if a != PEER)
        async with trio.open_nursery() as nursery:

            async def answer_one() -> None:
                async for call in client.calls():
                    body = ANSWER_SDP if shape == "SDP as text" else SDPBody.parse(ANSWER_SDP)
                    added.calls = ordered.calls = made.calls = looked.calls = 0
                    call.answer(body, headers=user.get(shape))
                    counts.append((added.calls, ordered.calls + made.calls))
                    indexes.append(looked.calls)
                    return

            nursery.start_soon(answer_one)
            await trio.testing.wait_all_tasks_blocked()
            peer.send(_invite(f"{address[0]}:{address[1]}", shape), address)
            data, _ = await peer.receive()
            while not data.startswith(b"SIP/2.0 200"):  # a 100 Trying first, if late
                data, _ = await peer.receive()
    assert hashlib.sha256(data).hexdigest()[:16] == PARENT_200[shape]
    if shape == "record-route":
        assert data == RECORD_ROUTED_200
    if shape in user:  # the user's fields: set on the response made, as before
        assert counts[0][0] == 1
        return
    if shape == "record-route":  # the copies go before From: to_bytes() sorts, as before
        assert counts == [(0, 2)]
    else:
        assert counts == [(0, 1)]
    if "vias" not in shape:  # (make_response copies several Vias through the index)
        assert indexes == [0]  # the dialog's Contact, the Record-Route copies: as parsed


class _PropertyReads:
    """Counts the reads of a class's property."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, owner: type, name: str) -> None:
        self.reads = 0
        getter = getattr(owner, name).fget

        def read(message: Any) -> Any:
            self.reads += 1
            return getter(message)

        monkeypatch.setattr(owner, name, property(read))


class _ClockReads:
    """Counts the reads of a MockClock (a final class: its instance's method wrapped)."""

    def __init__(self, clock: trio.testing.MockClock) -> None:
        self.reads = 0
        read = clock.current_time

        def current_time() -> float:
            self.reads += 1
            return read()

        clock.current_time = current_time  # type: ignore[method-assign]


def test_the_2xx_is_keyed_by_the_invites_cseq_and_answer_reads_the_clock_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``answer()`` parses no CSeq (the INVITE's is parsed already), reads the Call-ID
    once (the dialog's; the call has it) and the clock once for the 200 sent, its
    retransmissions and the session timer (the memory network reads it once more to
    send); the 200 is resent at T1, 3·T1, 7·T1 from its first
    sending until the ACK, which stops it (the key matched)."""
    network = MemoryNetwork(seed=1)
    parsed = Counter(monkeypatch, sipx._core.message, "parse_cseq")
    call_ids = _PropertyReads(monkeypatch, sipx._core.message.Message, "call_id")
    seen: list[tuple[float, int]] = []
    clock = trio.testing.MockClock(autojump_threshold=0)
    counted = _ClockReads(clock)

    async def run() -> None:
        async with (
            sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
            network.socket(PEER) as peer,
        ):
            address = next(a for a in network.bound_addresses if a != PEER)
            target = f"{address[0]}:{address[1]}"
            answered: list[tuple[float, int, int, int]] = []
            async with trio.open_nursery() as nursery:

                async def answer_one() -> None:
                    async for call in client.calls():
                        await trio.sleep(0.3)  # a 100 Trying goes first
                        at = trio.current_time()
                        parsed.calls = counted.reads = call_ids.reads = 0
                        call.answer(SDPBody.parse(ANSWER_SDP))
                        answered.append((at, counted.reads, parsed.calls, call_ids.reads))
                        return

                nursery.start_soon(answer_one)
                await trio.testing.wait_all_tasks_blocked()
                peer.send(_request("INVITE", target, 3, body=OFFER), address)
                while len(seen) < 4:
                    data, _ = await peer.receive()
                    response = parse_message(data)
                    if response.status_code == 200:  # type: ignore[union-attr]
                        seen.append((trio.current_time(), len(data)))
                ok = parse_message(data)
                peer.send(_request("ACK", target, 3, to_tag=ok.to.tag or ""), address)
                with trio.move_on_after(40):
                    data, _ = await peer.receive()
                    seen.append((trio.current_time(), -1))
            at, reads, cseqs, ids = answered[0]
            assert (reads, cseqs, ids) == (2, 0, 1)  # the Call-ID: the new dialog's
            assert [round(t - at, 3) for t, _ in seen] == [0.0, 0.5, 1.5, 3.5]
            assert len({size for _, size in seen}) == 1  # the same 200 each time

    trio.run(run, clock=clock)


# -- the engine's pump ---------------------------------------------------------------------


async def test_a_call_takes_no_empty_event_list_nor_asks_for_resend_deadlines_per_message(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """INVITE, 200, ACK, BYE, 200: every ``pop_events()`` hands over events (the pump
    reads the queue before taking it), the 2xx retransmitter's next deadline is asked
    only by the timer loop (``Engine._next_deadline``), not by each pump, and what the
    layer armed is read without a call."""
    network = MemoryNetwork(seed=1)
    taken: list[int] = []
    original = TransactionLayer.pop_events

    def pop_events(self: TransactionLayer) -> Any:
        events = original(self)
        taken.append(len(events))
        return events

    monkeypatch.setattr(TransactionLayer, "pop_events", pop_events)
    asked = Counter(monkeypatch, TwoXXRetransmitter, "next_deadline")
    took = Counter(monkeypatch, TransactionLayer, "take_soonest_armed")
    looped = Counter(monkeypatch, Engine, "_next_deadline")
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(PEER) as peer,
    ):
        address = next(a for a in network.bound_addresses if a != PEER)
        target = f"{address[0]}:{address[1]}"
        await trio.testing.wait_all_tasks_blocked()
        taken.clear()
        asked.calls = looped.calls = 0
        async with trio.open_nursery() as nursery:

            async def serve_one() -> None:
                async for call in client.calls():
                    call.answer(SDPBody.parse(ANSWER_SDP))
                    assert await call.wait_ended() == "remote"
                    return

            nursery.start_soon(serve_one)
            await trio.testing.wait_all_tasks_blocked()
            peer.send(_request("INVITE", target, 4, body=OFFER), address)
            (ok,) = await _receive(peer, 1)
            tag = ok.to.tag or ""
            peer.send(_request("ACK", target, 4, to_tag=tag), address)
            peer.send(_request("BYE", target, 4, to_tag=tag, cseq=2), address)
            (bye_ok,) = await _receive(peer, 1)
    assert (ok.status_code, bye_ok.status_code) == (200, 200)
    assert taken and 0 not in taken
    assert asked.calls == looped.calls
    assert took.calls == 0  # what the layer armed is read in place


def test_the_session_choice_reads_the_timer_fields_without_a_call_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An INVITE silent about timers gets the shared plain choice with ``first_of_key``
    made to raise; one asking for timers, also after a change to its fields (its first
    values made again), gets the general answer."""
    silent = parse_message(_request("INVITE", "127.0.0.1:5060", 8, body=OFFER))
    asking = parse_message(
        _request("INVITE", "127.0.0.1:5060", 9, body=OFFER).replace(
            b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\nSession-Expires: 900\r\n"
        )
    )
    expected = choose_as_uas(asking, interval=1800, min_se=90)  # type: ignore[arg-type]
    changed = parse_message(_request("INVITE", "127.0.0.1:5060", 10, body=OFFER))
    changed.headers.add("Supported", "timer")
    monkeypatch.setattr(Headers, "first_of_key", _not_worked_out)
    plain = choose_as_uas(silent, interval=1800, min_se=90)  # type: ignore[arg-type]
    assert plain is choose_as_uas(silent, interval=1800, min_se=90)  # type: ignore[arg-type]
    assert plain.headers == {"Supported": "timer", "Session-Expires": "1800;refresher=uas"}
    assert choose_as_uas(asking, interval=1800, min_se=90) == expected  # type: ignore[arg-type]
    assert expected.headers["Session-Expires"] == "900;refresher=uas"  # no Supported: timer
    timer = choose_as_uas(changed, interval=1800, min_se=90)  # type: ignore[arg-type]
    assert timer is not plain and timer.headers["Session-Expires"] == "1800;refresher=uac"


@pytest.mark.parametrize(
    "fields",
    [
        'Contact: <sip:a@h1>\r\nContact: "B, Jr" <sip:b@h2>, <sip:c@h3>\r\n',
        "m: <sip:a@h1>;expires=5\r\nRecord-Route: <sip:p1;lr>,<sip:p2;lr>\r\n",
        "Subject: one, two\r\nSubject: three\r\nRecord-Route: <sip:p1;lr>\r\n",
        "",
    ],
)
def test_a_parsed_section_lists_its_values_without_building_its_index(
    monkeypatch: pytest.MonkeyPatch, fields: str
) -> None:
    """``get_list`` on a section as parsed reads its first values and repeated keys (the
    index made to raise): the same lists as from the index, for list headers given in
    several fields or comma-joined, compact names, other headers given twice, absent ones."""
    data = (
        "OPTIONS sip:uas@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        "From: <sip:p@h>;tag=1\r\nTo: <sip:uas@h>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n"
        + fields
        + "Content-Length: 0\r\n\r\n"
    ).encode()
    names = ("Contact", "Record-Route", "Subject", "Via", "Route", "call-id")
    indexed = parse_message(data)
    indexed.headers.lookup()
    expected = {name: indexed.headers.get_list(name) for name in names}
    monkeypatch.setattr(Headers, "lookup", _not_worked_out)
    assert {name: parse_message(data).headers.get_list(name) for name in names} == expected
