"""Tests for sipx._core.transaction and sipx._core.timers: RFC 3261 section 17 + RFC 6026.

Every test drives the layer with explicit times; ``advance`` fires timers one deadline at a
time and records when each event happened.
"""

from __future__ import annotations

import gc
from typing import Any

import pytest

from sipx._core.message import Message, Request, Response
from sipx._core.parser import parse_message
from sipx._core.timers import DEFAULT_TIMERS, TimerConfig
from sipx._core.transaction import (
    AckReceived,
    ClientTransaction,
    Event,
    RequestReceived,
    Resend,
    ResponseReceived,
    Send,
    ServerTransaction,
    StrayResponse,
    TransactionLayer,
    TransactionState,
    TransactionTerminated,
    TransactionTimeout,
    TransportFailed,
    make_ack_for_non2xx,
    make_response,
)

S = TransactionState


# -- helpers ---------------------------------------------------------------------------------


def request(
    method: str = "MESSAGE",
    *,
    branch: str | None = "z9hG4bK-1",
    cseq: int = 1,
    sent_by: str = "uac.example.com:5060",
    uri: str = "sip:bob@uas.example.com",
    from_tag: str = "ft1",
    to_tag: str | None = None,
    call_id: str = "call-1",
    routes: tuple[str, ...] = (),
) -> Request:
    via = f"SIP/2.0/UDP {sent_by}" + (f";branch={branch}" if branch is not None else "")
    headers = [("Via", via), ("Max-Forwards", "70")]
    headers += [("Route", route) for route in routes]
    to = "<sip:bob@uas.example.com>" + (f";tag={to_tag}" if to_tag else "")
    headers += [
        ("From", f"Alice <sip:alice@uac.example.com>;tag={from_tag}"),
        ("To", to),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} {method}"),
    ]
    return Request(method, uri, headers)


def response(req: Request, code: int, to_tag: str | None = "tt1") -> Response:
    return make_response(req, code, to_tag=None if code == 100 else to_tag)


def advance(layer: TransactionLayer, until: float) -> list[tuple[float, Event]]:
    """Fire timers deadline by deadline up to ``until``; (time, event) for each event."""
    timeline: list[tuple[float, Event]] = []
    while (deadline := layer.next_deadline()) is not None and deadline <= until:
        layer.handle_timers(deadline)
        timeline.extend((deadline, event) for event in layer.pop_events())
    return timeline


def times(timeline: list[tuple[float, Event]], kind: type) -> list[float]:
    return [at for at, event in timeline if isinstance(event, kind)]


def sent(events: list[Event]) -> list[Request | Response]:
    return [event.message for event in events if isinstance(event, Send)]


def last(tx: ServerTransaction) -> Response:
    assert tx.last_response is not None
    return tx.last_response


def state(tx: ClientTransaction | ServerTransaction) -> TransactionState:
    return tx.state  # a call, so mypy does not narrow tx.state across assertions


def kinds(events: list[Event]) -> list[str]:
    return [type(event).__name__ for event in events]


def started(
    method: str = "MESSAGE", *, reliable: bool = False, **kw: Any
) -> tuple[TransactionLayer, Request, ClientTransaction]:
    layer = TransactionLayer()
    req = request(method, **kw)
    tx = layer.send_request(req, 0.0, reliable=reliable, destination=("10.0.0.2", 5060))
    assert layer.pop_events() == [Send(tx, req)]
    return layer, req, tx


def served(
    method: str = "INVITE", *, reliable: bool = False, **kw: Any
) -> tuple[TransactionLayer, Request, ServerTransaction, list[Event]]:
    layer = TransactionLayer()
    req = request(method, **kw)
    tx = layer.receive_request(req, 0.0, reliable=reliable, destination=("10.0.0.1", 5060))
    assert tx is not None
    return layer, req, tx, layer.pop_events()


INVITE_RETRANSMITS = [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
NON_INVITE_RETRANSMITS = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]


# -- timers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timer", "reliable", "expected"),
    [
        ("timer_a", None, 0.5),
        ("timer_b", None, 32.0),
        ("timer_d", False, 32.0),
        ("timer_d", True, 0.0),
        ("timer_e", None, 0.5),
        ("timer_f", None, 32.0),
        ("timer_g", None, 0.5),
        ("timer_h", None, 32.0),
        ("timer_i", False, 5.0),
        ("timer_i", True, 0.0),
        ("timer_j", False, 32.0),
        ("timer_j", True, 0.0),
        ("timer_k", False, 5.0),
        ("timer_k", True, 0.0),
        ("timer_l", None, 32.0),
        ("timer_m", None, 32.0),
    ],
)
def test_default_timer_values(timer: str, reliable: bool | None, expected: float) -> None:
    value = getattr(DEFAULT_TIMERS, timer)
    assert (value if reliable is None else value(reliable)) == expected


def test_timers_scale_with_t1_and_timer_d_is_at_least_32s() -> None:
    slow = TimerConfig(t1=1.0, t2=8.0, t4=10.0)
    assert (slow.timer_b, slow.timer_f, slow.timer_h, slow.timer_m) == (64.0, 64.0, 64.0, 64.0)
    assert slow.timer_d(False) == 64.0
    assert slow.timer_k(False) == 10.0
    fast = TimerConfig(t1=0.1)
    assert fast.timer_d(False) == 32.0
    assert fast.timer_b == pytest.approx(6.4)


@pytest.mark.parametrize("kw", [{"t1": 0.0}, {"t1": -1.0}, {"t1": 5.0, "t2": 4.0}, {"t4": -1.0}])
def test_bad_timer_config_is_rejected(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        TimerConfig(**kw)


def test_layer_uses_its_own_config() -> None:
    layer = TransactionLayer(TimerConfig(t1=0.25, t2=2.0))
    layer.send_request(request(), 0.0, reliable=False)
    layer.pop_events()
    timeline = advance(layer, 100.0)
    assert times(timeline, Send) == [0.25, 0.75, 1.75, 3.75, 5.75, 7.75, 9.75, 11.75, 13.75, 15.75]
    assert times(timeline, TransactionTimeout) == [16.0]


# -- client non-INVITE (figure 6) ------------------------------------------------------------


def test_non_invite_udp_retransmissions_then_timer_f() -> None:
    layer, req, tx = started()
    assert state(tx) is S.TRYING and not tx.is_invite
    timeline = advance(layer, 100.0)
    assert times(timeline, Send) == NON_INVITE_RETRANSMITS
    assert all(event.message is req for _, event in timeline if isinstance(event, Send))
    assert [(at, type(e).__name__) for at, e in timeline if not isinstance(e, Send)] == [
        (32.0, "TransactionTimeout"),
        (32.0, "TransactionTerminated"),
    ]
    assert state(tx) is S.TERMINATED
    assert len(layer) == 0


@pytest.mark.parametrize(
    ("provisional_at", "expected"),
    [
        # Timer E keeps its pending deadline; each firing in Proceeding re-arms it with T2.
        (0.2, [0.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5]),
        (1.0, [0.5, 1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5]),
        (2.0, [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]),
    ],
)
def test_non_invite_proceeding_retransmits_at_t2(
    provisional_at: float, expected: list[float]
) -> None:
    layer, req, tx = started()
    timeline = advance(layer, provisional_at)
    trying = response(req, 100)
    assert layer.receive_response(trying, provisional_at) is tx
    assert state(tx) is S.PROCEEDING
    events = layer.pop_events()
    assert events == [ResponseReceived(tx, trying)]
    timeline += advance(layer, 100.0)
    assert times(timeline, Send) == expected
    assert times(timeline, TransactionTimeout) == [32.0]


@pytest.mark.parametrize("code", [200, 202, 404, 503, 603])
@pytest.mark.parametrize("via_proceeding", [False, True])
def test_non_invite_final_response_completes_then_timer_k(code: int, via_proceeding: bool) -> None:
    layer, req, tx = started()
    if via_proceeding:
        layer.receive_response(response(req, 180), 0.1)
        layer.pop_events()
    final = response(req, code)
    layer.receive_response(final, 1.0)
    # Completed over UDP, the transaction only absorbs retransmissions: the layer keeps its
    # key until Timer K and the object ends, letting go of its messages (the TU got the
    # response in the event).
    assert layer.pop_events() == [ResponseReceived(tx, final), TransactionTerminated(tx)]
    assert state(tx) is S.TERMINATED
    assert tx.last_response is None
    with pytest.raises(RuntimeError, match="released its request"):
        tx.request  # noqa: B018
    assert layer.next_deadline() == 6.0  # Timer K = T4; E and F are cancelled
    # Retransmitted finals and late provisionals are absorbed.
    assert layer.receive_response(response(req, code), 2.0) is None
    assert layer.receive_response(response(req, 180), 2.5) is None
    assert layer.pop_events() == []
    assert len(layer) == 1
    assert advance(layer, 100.0) == []  # Timer K ends the record: nothing to tell the TU
    assert len(layer) == 0 and layer.next_deadline() is None
    layer.receive_response(response(req, code), 7.0)
    assert kinds(layer.pop_events()) == ["StrayResponse"]


def test_non_invite_reliable_no_retransmissions_timer_f_fires() -> None:
    layer, _, _tx = started(reliable=True)
    assert layer.next_deadline() == 32.0
    timeline = advance(layer, 100.0)
    assert [(at, type(e).__name__) for at, e in timeline] == [
        (32.0, "TransactionTimeout"),
        (32.0, "TransactionTerminated"),
    ]


def test_non_invite_reliable_final_terminates_at_once() -> None:
    layer, req, tx = started(reliable=True)
    final = response(req, 200)
    layer.receive_response(final, 1.0)
    assert layer.pop_events() == [ResponseReceived(tx, final), TransactionTerminated(tx)]
    assert state(tx) is S.TERMINATED and len(layer) == 0
    assert layer.next_deadline() is None


# -- client INVITE (figure 5 + RFC 6026) -----------------------------------------------------


def test_invite_udp_retransmissions_double_without_cap_then_timer_b() -> None:
    layer, _, tx = started("INVITE")
    assert state(tx) is S.CALLING and tx.is_invite
    timeline = advance(layer, 100.0)
    assert times(timeline, Send) == INVITE_RETRANSMITS
    assert times(timeline, TransactionTimeout) == [32.0]
    assert times(timeline, TransactionTerminated) == [32.0]
    assert len(layer) == 0


@pytest.mark.parametrize("code", [100, 180, 183])
def test_provisional_stops_invite_retransmissions(code: int) -> None:
    layer, req, tx = started("INVITE")
    timeline = advance(layer, 2.0)
    assert times(timeline, Send) == [0.5, 1.5]
    provisional = response(req, code)
    layer.receive_response(provisional, 2.0)
    assert state(tx) is S.PROCEEDING
    assert layer.pop_events() == [ResponseReceived(tx, provisional)]
    assert layer.next_deadline() is None  # A and B cancelled: no timeout in Proceeding
    assert advance(layer, 1000.0) == []
    ringing = response(req, 180)
    layer.receive_response(ringing, 50.0)
    assert layer.pop_events() == [ResponseReceived(tx, ringing)]
    assert len(layer) == 1


@pytest.mark.parametrize("code", [300, 404, 486, 500, 603])
@pytest.mark.parametrize("provisional_first", [False, True])
def test_invite_non2xx_is_acked_by_the_transaction(code: int, provisional_first: bool) -> None:
    routes = ("<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>")
    layer, invite, tx = started("INVITE", branch="z9hG4bK-inv", cseq=7, routes=routes)
    if provisional_first:
        layer.receive_response(response(invite, 180), 0.2)
        layer.pop_events()
    final = response(invite, code, to_tag="xyz")
    layer.receive_response(final, 1.0)
    assert state(tx) is S.COMPLETED
    events = layer.pop_events()
    assert kinds(events) == ["ResponseReceived", "Send"]
    ack = sent(events)[0]
    assert isinstance(ack, Request) and ack is tx.ack
    assert ack.method == "ACK"
    assert ack.uri == invite.uri
    assert [via.branch for via in ack.via] == ["z9hG4bK-inv"]
    assert ack.headers["Via"] == invite.headers["Via"]
    assert ack.call_id == invite.call_id
    assert ack.headers["From"] == invite.headers["From"]
    assert ack.to.tag == "xyz"
    assert (ack.cseq.seq, ack.cseq.method) == (7, "ACK")
    assert ack.headers.get_list("Route") == list(routes)
    assert ack.max_forwards == 70
    assert ack.headers["Content-Length"] == "0" and ack.content == b""
    # A retransmitted final is ACKed again and not passed up.
    layer.receive_response(response(invite, code, to_tag="xyz"), 2.0)
    assert [(type(e).__name__, getattr(e, "message", None)) for e in layer.pop_events()] == [
        ("Send", ack)
    ]
    assert layer.next_deadline() == 33.0  # Timer D = 32 s from the first final response
    timeline = advance(layer, 100.0)
    assert [(at, type(e).__name__) for at, e in timeline] == [(33.0, "TransactionTerminated")]
    layer.receive_response(response(invite, code, to_tag="xyz"), 40.0)
    assert kinds(layer.pop_events()) == ["StrayResponse"]


def test_make_ack_for_non2xx_uses_only_the_top_via() -> None:
    invite = request("INVITE", branch="z9hG4bK-top")
    invite.headers.add("Via", "SIP/2.0/UDP proxy.example.com;branch=z9hG4bK-lower")
    invite.headers["Content-Type"] = "application/sdp"
    invite.content = b"v=0\r\n"
    ack = make_ack_for_non2xx(invite, response(invite, 486, to_tag="t9"))
    assert [via.branch for via in ack.via] == ["z9hG4bK-top"]
    assert ack.route == []
    assert "Content-Type" not in ack.headers and ack.content == b""
    assert parse_message(ack.to_bytes()).cseq.method == "ACK"


@pytest.mark.parametrize("provisional_first", [False, True])
def test_invite_2xx_is_passed_up_not_acked_and_timer_m_ends_it(provisional_first: bool) -> None:
    layer, invite, tx = started("INVITE")
    if provisional_first:
        layer.receive_response(response(invite, 180), 0.2)
        layer.pop_events()
    ok = response(invite, 200)
    layer.receive_response(ok, 1.0)
    assert state(tx) is S.ACCEPTED and tx.ack is None
    assert layer.pop_events() == [ResponseReceived(tx, ok)]  # no Send: the TU ACKs a 2xx
    again = response(invite, 200)
    assert layer.receive_response(again, 2.0) is tx
    assert layer.pop_events() == [ResponseReceived(tx, again)]
    forked = response(invite, 200, to_tag="other-fork")
    layer.receive_response(forked, 3.0)
    assert layer.pop_events() == [ResponseReceived(tx, forked)]
    layer.receive_response(response(invite, 486), 3.5)  # non-2xx in Accepted: absorbed
    assert layer.pop_events() == []
    timeline = advance(layer, 100.0)
    assert [(at, type(e).__name__) for at, e in timeline] == [(33.0, "TransactionTerminated")]
    late = response(invite, 200)
    assert layer.receive_response(late, 40.0) is None
    assert layer.pop_events() == [StrayResponse(late)]


def test_invite_reliable_no_retransmissions_timer_b_and_no_timer_d() -> None:
    layer, _, _ = started("INVITE", reliable=True)
    timeline = advance(layer, 100.0)
    assert [(at, type(e).__name__) for at, e in timeline] == [
        (32.0, "TransactionTimeout"),
        (32.0, "TransactionTerminated"),
    ]
    layer, invite, _tx = started("INVITE", reliable=True)
    layer.receive_response(response(invite, 486), 1.0)
    assert kinds(layer.pop_events()) == ["ResponseReceived", "Send", "TransactionTerminated"]
    assert len(layer) == 0


def test_invite_reliable_accepted_still_waits_timer_m() -> None:
    layer, invite, tx = started("INVITE", reliable=True)
    layer.receive_response(response(invite, 200), 1.0)
    layer.pop_events()
    assert state(tx) is S.ACCEPTED
    assert layer.next_deadline() == 33.0


# -- server INVITE (figure 7 + RFC 6026) -----------------------------------------------------


def test_server_invite_sends_100_trying_at_once() -> None:
    layer = TransactionLayer()
    invite = request("INVITE", routes=("<sip:p.example.com;lr>",))
    invite.headers.add("Via", "SIP/2.0/UDP proxy.example.com;branch=z9hG4bK-p")
    invite.headers["Timestamp"] = "54"
    tx = layer.receive_request(invite, 0.0, reliable=False, destination="peer")
    assert isinstance(tx, ServerTransaction) and tx.is_invite and tx.state is S.PROCEEDING
    events = layer.pop_events()
    assert kinds(events) == ["Send", "RequestReceived"]
    assert events[1] == RequestReceived(tx, invite)
    trying = sent(events)[0]
    assert isinstance(trying, Response) and trying.status_code == 100
    assert events[0] == Send(tx, trying)
    assert events[0].destination == tx.destination == "peer"
    assert trying.headers.get_list("Via") == invite.headers.get_list("Via")
    for name in ("From", "To", "Call-ID", "CSeq", "Timestamp"):
        assert trying.headers[name] == invite.headers[name]
    assert trying.to.tag is None
    assert "Route" not in trying.headers
    assert tx.last_response is trying
    assert layer.next_deadline() is None


def test_server_invite_retransmission_resends_the_last_provisional() -> None:
    layer, invite, tx, events = served()
    trying = sent(events)[0]
    assert layer.receive_request(request("INVITE"), 0.4, reliable=False) is tx
    assert sent(layer.pop_events()) == [trying]
    ringing = response(invite, 180)
    assert tx.respond(ringing, 1.0) is True
    assert layer.pop_events() == [Send(tx, ringing)]
    assert state(tx) is S.PROCEEDING
    assert layer.receive_request(request("INVITE"), 1.5, reliable=False) is tx
    assert layer.pop_events() == [Send(tx, ringing)]  # no second RequestReceived


@pytest.mark.parametrize("code", [300, 404, 486, 500, 603])
def test_server_invite_non2xx_timer_g_retransmits_and_timer_h_times_out(code: int) -> None:
    layer, invite, tx, _ = served()
    final = response(invite, code)
    tx.respond(final, 0.0)
    assert state(tx) is S.COMPLETED
    assert layer.pop_events() == [Send(tx, final)]
    timeline = advance(layer, 5.0)
    assert layer.receive_request(request("INVITE"), 5.0, reliable=False) is tx
    assert sent(layer.pop_events()) == [final]  # retransmitted INVITE: final sent again
    timeline += advance(layer, 100.0)
    assert times(timeline, Send) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert all(e.message is final for _, e in timeline if isinstance(e, Send))
    assert [(at, type(e).__name__) for at, e in timeline if not isinstance(e, Send)] == [
        (32.0, "TransactionTimeout"),
        (32.0, "TransactionTerminated"),
    ]
    assert len(layer) == 0


def test_server_invite_later_responses_are_discarded_in_completed() -> None:
    layer, invite, tx, _ = served()
    tx.respond(response(invite, 486), 0.0)
    layer.pop_events()
    assert tx.respond(response(invite, 200), 0.1) is False
    assert tx.respond(response(invite, 180), 0.1) is False
    assert layer.pop_events() == []
    with pytest.raises(ValueError):
        tx.respond(Response(700), 0.2)


@pytest.mark.parametrize(("reliable", "timer_i"), [(False, 7.0), (True, None)])
def test_server_invite_ack_confirms_and_timer_i_ends(reliable: bool, timer_i: float | None) -> None:
    layer, invite, tx, _ = served(reliable=reliable)
    tx.respond(response(invite, 486, to_tag="u1"), 0.0)
    layer.pop_events()
    timeline = advance(layer, 2.0)
    assert times(timeline, Send) == ([] if reliable else [0.5, 1.5])
    ack = make_ack_for_non2xx(invite, last(tx))
    assert layer.receive_request(ack, 2.0, reliable=reliable) is tx
    events = layer.pop_events()
    if timer_i is None:
        assert events == [TransactionTerminated(tx)]
        assert len(layer) == 0
        return
    assert events == []  # absorbed: not an AckReceived
    assert state(tx) is S.CONFIRMED
    assert layer.receive_request(ack, 3.0, reliable=reliable) is tx  # ACK retransmission
    assert layer.receive_request(request("INVITE"), 3.0, reliable=reliable) is tx
    assert layer.pop_events() == []
    timeline = advance(layer, 100.0)
    assert [(at, type(e).__name__) for at, e in timeline] == [(timer_i, "TransactionTerminated")]


def test_server_invite_reliable_no_timer_g_but_timer_h() -> None:
    layer, invite, tx, _ = served(reliable=True)
    tx.respond(response(invite, 486), 0.0)
    layer.pop_events()
    timeline = advance(layer, 100.0)
    assert [(at, type(e).__name__) for at, e in timeline] == [
        (32.0, "TransactionTimeout"),
        (32.0, "TransactionTerminated"),
    ]


@pytest.mark.parametrize("reliable", [False, True])
def test_server_invite_2xx_accepted_absorbs_retransmissions_timer_l(reliable: bool) -> None:
    layer, invite, tx, _ = served(reliable=reliable)
    ok = response(invite, 200)
    assert tx.respond(ok, 1.0) is True
    assert state(tx) is S.ACCEPTED
    assert layer.pop_events() == [Send(tx, ok)]
    assert layer.next_deadline() == 33.0  # Timer L, whatever the transport
    # Absorbed by the layer's record of the transaction: the TU retransmits the 2xx itself.
    assert layer.receive_request(request("INVITE"), 1.5, reliable=reliable) is None
    assert layer.pop_events() == [] and len(layer) == 1
    assert tx.respond(ok, 1.5) is True  # ... through the transaction (RFC 6026)
    assert layer.pop_events() == [Send(tx, ok)]
    assert tx.respond(response(invite, 486), 1.6) is False
    assert tx.respond(response(invite, 180), 1.6) is False
    assert layer.pop_events() == []
    # The ACK for a 2xx is a transaction of its own (new branch): passed to the TU.
    ack = request("ACK", branch="z9hG4bK-ack2xx", to_tag="tt1")
    assert layer.receive_request(ack, 2.0, reliable=reliable) is None
    assert layer.pop_events() == [AckReceived(ack, None)]
    # One reusing the INVITE's branch matches the Accepted record, still goes up.
    same_branch_ack = request("ACK", to_tag="tt1")
    assert layer.receive_request(same_branch_ack, 2.1, reliable=reliable) is None
    assert layer.pop_events() == [AckReceived(same_branch_ack, None)]
    assert state(tx) is S.ACCEPTED
    assert layer.receive_request(request("INVITE"), 32.9, reliable=reliable) is None
    assert layer.pop_events() == []
    timeline = advance(layer, 100.0)
    assert timeline == [] and len(layer) == 0  # Timer L at 33: the record is gone
    assert tx.respond(ok, 40.0) is False and state(tx) is S.TERMINATED
    assert layer.pop_events() == []
    # The INVITE is new again once Timer L has passed.
    again = request("INVITE")
    new = layer.receive_request(again, 40.0, reliable=reliable)
    assert new is not None and new is not tx
    assert RequestReceived(new, again) in layer.pop_events()


def test_server_invite_ack_in_proceeding_is_dropped() -> None:
    layer, _, tx, _ = served()
    assert layer.receive_request(request("ACK"), 0.1, reliable=False) is tx
    assert layer.pop_events() == []
    assert state(tx) is S.PROCEEDING


# -- server non-INVITE (figure 8) ------------------------------------------------------------


@pytest.mark.parametrize("code", [200, 404, 500])
def test_server_non_invite_full_cycle(code: int) -> None:
    layer, req, tx, events = served("MESSAGE")
    assert events == [RequestReceived(tx, req)]  # no automatic 100 for non-INVITE
    assert state(tx) is S.TRYING and not tx.is_invite
    assert layer.receive_request(request("MESSAGE"), 0.5, reliable=False) is tx
    assert layer.pop_events() == []  # Trying: absorbed, nothing to resend
    trying = response(req, 100)
    tx.respond(trying, 1.0)
    assert state(tx) is S.PROCEEDING
    layer.receive_request(request("MESSAGE"), 1.5, reliable=False)
    assert layer.pop_events() == [Send(tx, trying), Send(tx, trying)]
    final = response(req, code)
    assert tx.respond(final, 2.0) is True
    # Completed over UDP, the transaction is a record of the layer now; the object ends.
    assert state(tx) is S.TERMINATED
    events = layer.pop_events()
    assert events == [Send(tx, final), TransactionTerminated(tx)]
    # Serialised once: the bytes the record keeps for retransmissions go out with the Send.
    assert isinstance(events[0], Send) and events[0].data == final.to_bytes()
    assert events[0].to_bytes() == final.to_bytes()
    assert tx.last_response is None
    assert len(layer) == 1 and layer.next_deadline() == 34.0  # Timer J
    # The record answers a retransmission with the same bytes, to the same destination.
    assert layer.receive_request(request("MESSAGE"), 3.0, reliable=False) is None
    assert layer.pop_events() == [Resend(final.to_bytes(), ("10.0.0.1", 5060), None)]
    assert tx.respond(response(req, 500), 3.0) is False
    assert layer.pop_events() == []
    assert advance(layer, 33.9) == [] and len(layer) == 1
    assert advance(layer, 100.0) == []  # Timer J ends the record: nothing to tell the TU
    assert len(layer) == 0 and layer.next_deadline() is None
    # After Timer J a retransmission is a new request again.
    again = request("MESSAGE")
    new = layer.receive_request(again, 40.0, reliable=False)
    assert new is not None and new is not tx
    assert layer.pop_events() == [RequestReceived(new, again)]


def test_server_non_invite_reliable_timer_j_is_zero() -> None:
    layer, req, tx, _ = served("OPTIONS", reliable=True)
    final = response(req, 200)
    tx.respond(final, 1.0)
    assert layer.pop_events() == [Send(tx, final), TransactionTerminated(tx)]
    assert len(layer) == 0


# -- matching (17.1.3, 17.2.3, 9.2) ----------------------------------------------------------


def test_server_matching_branch_sent_by_and_method() -> None:
    layer = TransactionLayer()
    first = layer.receive_request(request("INVITE"), 0.0, reliable=False)
    # other calls (the same call by another path would be a merged request, 8.2.2.2)
    other_branch = layer.receive_request(
        request("INVITE", branch="z9hG4bK-2", call_id="call-2"), 0.0, reliable=False
    )
    other_host = layer.receive_request(
        request("INVITE", sent_by="elsewhere.example.com", call_id="call-3"), 0.0, reliable=False
    )
    cancel = request("CANCEL")
    cancel_tx = layer.receive_request(cancel, 0.1, reliable=False)
    assert len({id(first), id(other_branch), id(other_host), id(cancel_tx)}) == 4
    assert len(layer) == 4
    received = [e for e in layer.pop_events() if isinstance(e, RequestReceived)]
    assert [e.request.method for e in received] == ["INVITE", "INVITE", "INVITE", "CANCEL"]
    assert layer.find_transaction_to_cancel(cancel) is first
    assert layer.find_transaction_to_cancel(request("CANCEL", branch="z9hG4bK-2")) is other_branch
    assert layer.find_transaction_to_cancel(request("CANCEL", branch="z9hG4bK-none")) is None
    assert layer.find_transaction_to_cancel(request("CANCEL", sent_by="x.example.com")) is None


def test_sent_by_default_port_matches_explicit_5060() -> None:
    layer = TransactionLayer()
    tx = layer.receive_request(request("INVITE", sent_by="uac.example.com"), 0.0, reliable=False)
    assert (
        layer.receive_request(
            request("INVITE", sent_by="UAC.example.com:5060"), 0.1, reliable=False
        )
        is tx
    )


def test_find_transaction_to_cancel_targets_non_invite_too() -> None:
    layer = TransactionLayer()
    tx = layer.receive_request(request("SUBSCRIBE"), 0.0, reliable=False)
    assert layer.find_transaction_to_cancel(request("CANCEL")) is tx


def test_rfc2543_fallback_matching() -> None:
    layer = TransactionLayer()
    old: dict[str, Any] = {"branch": None, "sent_by": "old.example.com"}
    invite = request("INVITE", **old)
    tx = layer.receive_request(invite, 0.0, reliable=False)
    assert isinstance(tx, ServerTransaction)
    layer.pop_events()
    # Identical retransmission matches.
    assert layer.receive_request(request("INVITE", **old), 0.5, reliable=False) is tx
    assert kinds(layer.pop_events()) == ["Send"]
    # Any differing field makes another transaction.
    for change in (
        {"cseq": 2},
        {"from_tag": "x"},
        {"call_id": "c2"},
        {"uri": "sip:carol@uas.example.com"},
        {"to_tag": "t"},
    ):
        other = layer.receive_request(request("INVITE", **old, **change), 0.6, reliable=False)
        assert other is not None and other is not tx, change
    assert layer.find_transaction_to_cancel(request("CANCEL", **old)) is tx
    # An RFC 2543 branch that is not a magic cookie is just part of the top Via.
    tx.respond(response(invite, 486, to_tag="srv"), 1.0)
    layer.pop_events()
    wrong_tag = make_ack_for_non2xx(invite, response(invite, 486, to_tag="nope"))
    assert layer.receive_request(wrong_tag, 1.1, reliable=False) is None
    assert layer.pop_events() == [AckReceived(wrong_tag, None)]
    ack = make_ack_for_non2xx(invite, last(tx))
    assert layer.receive_request(ack, 1.2, reliable=False) is tx
    assert state(tx) is S.CONFIRMED


def test_rfc2543_ack_for_reinvite_with_to_tag() -> None:
    layer = TransactionLayer()
    reinvite = request("INVITE", branch="1234", to_tag="dlg", cseq=5)
    tx = layer.receive_request(reinvite, 0.0, reliable=False)
    assert tx is not None
    tx.respond(response(reinvite, 488, to_tag="ignored"), 0.1)
    ack = make_ack_for_non2xx(reinvite, last(tx))
    assert ack.to.tag == "dlg"
    assert layer.receive_request(ack, 0.2, reliable=False) is tx
    assert state(tx) is S.CONFIRMED


def test_rfc2543_non_invite_retransmission() -> None:
    layer = TransactionLayer()
    tx = layer.receive_request(request("OPTIONS", branch=None), 0.0, reliable=False)
    assert tx is not None
    final = response(tx.request, 200)
    tx.respond(final, 0.1)
    layer.pop_events()
    assert layer.receive_request(request("OPTIONS", branch=None), 0.2, reliable=False) is None
    assert layer.pop_events() == [Resend(final.to_bytes(), None, None)]


def test_client_matching_branch_and_cseq_method() -> None:
    layer = TransactionLayer()
    invite = request("INVITE")
    invite_tx = layer.send_request(invite, 0.0, reliable=False)
    cancel = request("CANCEL")
    cancel_tx = layer.send_request(cancel, 1.0, reliable=False)
    assert invite_tx is not cancel_tx and len(layer) == 2
    layer.pop_events()
    ok = response(cancel, 200)
    assert layer.receive_response(ok, 1.1) is cancel_tx
    assert layer.pop_events() == [ResponseReceived(cancel_tx, ok), TransactionTerminated(cancel_tx)]
    assert invite_tx.state is S.CALLING
    terminated = response(invite, 487)
    assert layer.receive_response(terminated, 1.2) is invite_tx
    stray = response(request("INVITE", branch="z9hG4bK-unknown"), 200)
    no_branch = response(request("INVITE", branch=None), 200)
    assert layer.receive_response(stray, 1.3) is None
    assert layer.receive_response(no_branch, 1.3) is None
    assert layer.pop_events()[-2:] == [StrayResponse(stray), StrayResponse(no_branch)]


@pytest.mark.parametrize(
    ("req", "message"),
    [
        (request("ACK"), "ACK"),
        (request("INVITE", branch="1234"), "z9hG4bK"),
        (request("INVITE", branch=None), "z9hG4bK"),
    ],
)
def test_send_request_rejects(req: Request, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TransactionLayer().send_request(req, 0.0, reliable=False)


def test_send_request_rejects_a_duplicate_branch() -> None:
    layer = TransactionLayer()
    layer.send_request(request("INVITE"), 0.0, reliable=False)
    with pytest.raises(ValueError, match="exists"):
        layer.send_request(request("INVITE"), 0.0, reliable=False)
    layer.send_request(request("CANCEL"), 0.0, reliable=False)  # same branch, other method


# -- transport errors, terminate, deadlines, memory ------------------------------------------


@pytest.mark.parametrize(
    "side", ["client-invite", "client-message", "server-invite", "server-message"]
)
def test_transport_error_terminates(side: str) -> None:
    role, method = side.split("-")
    layer = TransactionLayer()
    req = request(method.upper())
    tx: ClientTransaction | ServerTransaction | None
    if role == "client":
        tx = layer.send_request(req, 0.0, reliable=True)
    else:
        tx = layer.receive_request(req, 0.0, reliable=True)
    assert tx is not None
    layer.pop_events()
    layer.transport_error(tx, 0.5)
    assert layer.pop_events() == [TransportFailed(tx), TransactionTerminated(tx)]
    assert state(tx) is S.TERMINATED and len(layer) == 0
    assert layer.next_deadline() is None
    layer.transport_error(tx, 0.6)  # already gone: nothing more
    assert layer.pop_events() == []


def test_terminate_abandons_a_proceeding_invite() -> None:
    layer, invite, tx = started("INVITE")
    layer.receive_response(response(invite, 180), 0.1)
    layer.pop_events()
    layer.terminate(tx)
    assert layer.pop_events() == [TransactionTerminated(tx)]
    assert len(layer) == 0
    layer.terminate(tx)
    assert layer.pop_events() == []


def test_next_deadline_values() -> None:
    layer = TransactionLayer()
    assert layer.next_deadline() is None
    layer.send_request(request("MESSAGE", branch="z9hG4bK-a"), 10.0, reliable=True)
    assert layer.next_deadline() == 42.0  # Timer F only
    layer.send_request(request("INVITE", branch="z9hG4bK-b"), 11.0, reliable=False)
    assert layer.next_deadline() == 11.5  # Timer A
    layer.pop_events()
    layer.handle_timers(11.4)
    assert layer.pop_events() == []
    layer.handle_timers(11.5)
    assert kinds(layer.pop_events()) == ["Send"]
    assert layer.next_deadline() == 12.5
    layer.receive_response(response(request("INVITE", branch="z9hG4bK-b"), 180), 12.0)
    assert layer.next_deadline() == 42.0  # A and B gone, F of the MESSAGE left
    server = layer.receive_request(request("OPTIONS", branch="z9hG4bK-c"), 20.0, reliable=False)
    assert server is not None
    assert layer.next_deadline() == 42.0  # no timer until the TU answers
    server.respond(response(server.request, 200), 20.0)
    assert layer.next_deadline() == 42.0
    layer.handle_timers(42.0)
    assert layer.next_deadline() == 52.0  # Timer J


def test_late_handle_timers_catches_up_without_a_burst() -> None:
    layer, _, _ = started()
    layer.handle_timers(10.0)  # E was due at 0.5: fires once, re-armed from now
    assert kinds(layer.pop_events()) == ["Send"]
    assert layer.next_deadline() == 11.0
    layer.handle_timers(40.0)  # both E (11.0) and F (32.0) overdue
    assert kinds(layer.pop_events()) == [
        "Send",
        "TransactionTimeout",
        "TransactionTerminated",
    ]


def test_memory_is_bounded_terminated_transactions_are_dropped() -> None:
    layer = TransactionLayer()
    for n in range(1000):
        client = layer.send_request(request("MESSAGE", branch=f"z9hG4bK-c{n}"), 0.0, reliable=False)
        layer.receive_response(response(client.request, 200), 0.1)
        server = layer.receive_request(
            request("MESSAGE", branch=f"z9hG4bK-s{n}", call_id=f"s{n}"), 0.0, reliable=False
        )
        assert server is not None
        server.respond(response(server.request, 200), 0.1)
        invite = layer.receive_request(
            request("INVITE", branch=f"z9hG4bK-i{n}", call_id=f"i{n}"), 0.0, reliable=False
        )
        assert invite is not None
        invite.respond(response(invite.request, 486), 0.1)
        layer.receive_request(
            make_ack_for_non2xx(invite.request, last(invite)), 0.2, reliable=False
        )
    assert len(layer) == 3000
    events = layer.pop_events()
    layer.handle_timers(100.0)
    events += layer.pop_events()
    assert sum(isinstance(e, TransactionTerminated) for e in events) == 3000
    assert len(layer) == 0
    assert layer.next_deadline() is None
    assert layer._heap == [] and layer._clients == {} and layer._servers == {}
    assert layer._records == {} and not layer._record_deadlines
    assert not layer._recent


# -- make_response ---------------------------------------------------------------------------


def test_make_response_copies_headers_and_adds_to_tag() -> None:
    req = request("INVITE")
    req.headers.add("Via", "SIP/2.0/TCP p.example.com;branch=z9hG4bK-x, SIP/2.0/UDP q.example.com")
    req.headers["Subject"] = "not copied"
    resp = make_response(req, 180, to_tag="abc")
    assert resp.reason_phrase == "Ringing"
    assert resp.headers.get_list("Via") == req.headers.get_list("Via")
    assert len(resp.via) == 3
    assert resp.to.tag == "abc" and resp.to.uri == req.to.uri
    assert resp.from_ == req.from_ and resp.call_id == req.call_id and resp.cseq == req.cseq
    assert "Subject" not in resp.headers
    tagged = request("INVITE", to_tag="keep")
    assert make_response(tagged, 200, "Fine", to_tag="abc").to.tag == "keep"
    assert make_response(tagged, 200, "Fine").reason_phrase == "Fine"
    bare = Request("OPTIONS", "sip:x@y", [("Via", "SIP/2.0/UDP h;branch=z9hG4bK-1")])
    assert make_response(bare, 400).headers.multi_items() == [
        ("Via", "SIP/2.0/UDP h;branch=z9hG4bK-1")
    ]
    with pytest.raises(ValueError):
        make_response(req, 99)


# -- two layers back to back -----------------------------------------------------------------


class Wire:
    """An in-memory datagram network with fixed latency.

    With ``drop`` = 0 the 2nd, 4th, 6th... datagram of each direction is lost, with 1 the
    1st, 3rd, 5th... (one counter for both directions could lose every response to a
    retransmitted request).
    """

    def __init__(self, drop: int | None, latency: float = 0.01) -> None:
        self.drop = drop
        self.latency = latency
        self.queue: list[tuple[float, int, str, bytes]] = []
        self.count = 0
        self.per_direction = {"uac": 0, "uas": 0}
        self.sent: list[str] = []
        self.dropped = 0

    def send(self, now: float, to: str, message: Request | Response) -> None:
        self.count += 1
        self.per_direction[to] += 1
        self.sent.append(str(message).split("\r\n", 1)[0])
        if self.drop is not None and self.per_direction[to] % 2 == self.drop:
            self.dropped += 1
            return
        self.queue.append((now + self.latency, self.count, to, message.to_bytes()))
        self.queue.sort()

    def next_arrival(self) -> float | None:
        return self.queue[0][0] if self.queue else None

    def due(self, now: float) -> list[tuple[str, bytes]]:
        ready = [(to, data) for at, _, to, data in self.queue if at <= now]
        self.queue = [item for item in self.queue if item[0] > now]
        return ready


class BackToBack:
    """A UAC and a UAS, each a TransactionLayer plus a minimal TU (13.3.1.4 2xx resends).

    The UAC sends the INVITE at 0 and, once that call has settled, the MESSAGE at
    ``message_at`` (run concurrently, the 2xx/ACK and MESSAGE/200 flows lock into the
    deterministic loss pattern: every ACK and every 200 to the MESSAGE lost).
    """

    def __init__(self, drop: int | None, reliable: bool, message_at: float = 40.0) -> None:
        self.message_at: float | None = message_at
        self.wire = Wire(drop)
        self.reliable = reliable
        self.uac = TransactionLayer()
        self.uas = TransactionLayer()
        self.log: list[tuple[float, str, str]] = []
        self.invite = request("INVITE", branch="z9hG4bK-inv", sent_by="uac.example.com")
        self.message = request("MESSAGE", branch="z9hG4bK-msg", sent_by="uac.example.com", cseq=2)
        self.uac_finals: dict[str, list[int]] = {"INVITE": [], "MESSAGE": []}
        self.uas_requests: list[str] = []
        self.acks_sent = 0
        self.acks_received = 0
        # UAS core: 2xx retransmission until the ACK arrives (RFC 3261 13.3.1.4).
        self.ok: Response | None = None
        self.ok_tx: ServerTransaction | None = None
        self.ok_interval = DEFAULT_TIMERS.t1
        self.ok_next: float | None = None
        self.ok_until = 0.0

    def deadlines(self) -> list[float]:
        found = [
            self.wire.next_arrival(),
            self.uac.next_deadline(),
            self.uas.next_deadline(),
            self.ok_next,
            self.message_at,
        ]
        return [d for d in found if d is not None]

    def run(self, until: float = 200.0) -> None:
        self.uac.send_request(self.invite, 0.0, reliable=self.reliable, destination="uas")
        self.pump(0.0)
        while (deadlines := self.deadlines()) and (now := min(deadlines)) <= until:
            for to, data in self.wire.due(now):
                message = parse_message(data)
                self.log.append((now, to, data.split(b"\r\n", 1)[0].decode()))
                if to == "uas":
                    assert isinstance(message, Request)
                    self.uas.receive_request(
                        message, now, reliable=self.reliable, destination="uac"
                    )
                else:
                    assert isinstance(message, Response)
                    self.uac.receive_response(message, now)
            self.uac.handle_timers(now)
            self.uas.handle_timers(now)
            if self.ok_next is not None and self.ok_next <= now:
                self.resend_ok(now)
            if self.message_at is not None and self.message_at <= now:
                self.message_at = None
                self.uac.send_request(self.message, now, reliable=self.reliable, destination="uas")
            self.pump(now)

    def resend_ok(self, now: float) -> None:
        assert self.ok is not None and self.ok_tx is not None
        if now >= self.ok_until:
            self.ok_next = None
            return
        if not self.ok_tx.respond(self.ok, now):
            self.wire.send(now, "uac", self.ok)
        self.ok_interval = min(2 * self.ok_interval, DEFAULT_TIMERS.t2)
        self.ok_next = now + self.ok_interval

    def pump(self, now: float) -> None:
        while True:
            uac_events, uas_events = self.uac.pop_events(), self.uas.pop_events()
            if not uac_events and not uas_events:
                return
            for event in uac_events:
                self.on_uac(event, now)
            for event in uas_events:
                self.on_uas(event, now)

    def on_uac(self, event: Event, now: float) -> None:
        if isinstance(event, Send):
            assert event.destination == "uas"
            self.wire.send(now, "uas", event.message)
        elif isinstance(event, ResponseReceived) and event.response.status_code >= 200:
            method = event.transaction.method
            self.uac_finals[method].append(event.response.status_code)
            if method == "INVITE":
                self.send_ack_for_2xx(event.response, now)
        elif isinstance(event, TransactionTimeout | TransportFailed):
            raise AssertionError(f"UAC: {event}")

    def send_ack_for_2xx(self, ok: Response, now: float) -> None:
        ack = Request(
            "ACK",
            self.invite.uri,
            [
                ("Via", "SIP/2.0/UDP uac.example.com;branch=z9hG4bK-ack"),
                ("Max-Forwards", "70"),
                ("From", self.invite.headers["From"]),
                ("To", ok.headers["To"]),
                ("Call-ID", self.invite.call_id),
                ("CSeq", f"{self.invite.cseq.seq} ACK"),
            ],
        )
        self.acks_sent += 1
        self.wire.send(now, "uas", ack)

    def on_uas(self, event: Event, now: float) -> None:
        if isinstance(event, Send):
            assert event.destination == "uac"
            self.wire.send(now, "uac", event.message)
        elif isinstance(event, Resend):
            assert event.destination == "uac"
            resent = parse_message(event.data)
            assert isinstance(resent, Response)
            self.wire.send(now, "uac", resent)
        elif isinstance(event, RequestReceived):
            self.uas_requests.append(event.request.method)
            tx, req = event.transaction, event.request
            if req.method == "INVITE":
                tx.respond(make_response(req, 180, to_tag="uas-tag"), now)
                self.ok = make_response(req, 200, to_tag="uas-tag")
                self.ok_tx = tx
                tx.respond(self.ok, now)
                if not self.reliable:
                    self.ok_next = now + self.ok_interval
                    self.ok_until = now + 64 * DEFAULT_TIMERS.t1
            else:
                tx.respond(make_response(req, 200, to_tag="uas-tag"), now)
        elif isinstance(event, AckReceived):
            assert event.request.to.tag == "uas-tag"
            self.acks_received += 1
            self.ok_next = None
        elif isinstance(event, TransactionTimeout | TransportFailed):
            raise AssertionError(f"UAS: {event}")


INVITE_LINE = "INVITE sip:bob@uas.example.com SIP/2.0"
MESSAGE_LINE = "MESSAGE sip:bob@uas.example.com SIP/2.0"


@pytest.mark.parametrize(
    ("drop", "reliable"), [(None, False), (0, False), (1, False), (None, True)]
)
def test_back_to_back_invite_and_message_complete(drop: int | None, reliable: bool) -> None:
    pair = BackToBack(drop, reliable)
    pair.run()
    assert pair.uas_requests == ["INVITE", "MESSAGE"]  # retransmissions never reach the TU twice
    assert pair.uac_finals["MESSAGE"] == [200]
    assert pair.uac_finals["INVITE"] and set(pair.uac_finals["INVITE"]) == {200}
    assert pair.acks_received >= 1 and pair.acks_sent >= pair.acks_received
    assert pair.ok_next is None  # the ACK stopped the 2xx retransmissions
    assert len(pair.uac) == 0 and len(pair.uas) == 0  # everything ended by its timers
    assert pair.uac.next_deadline() is None and pair.uas.next_deadline() is None
    if drop is None:
        assert pair.wire.dropped == 0
        assert pair.uac_finals["INVITE"] == [200] and pair.acks_received == 1
        assert pair.wire.sent.count(INVITE_LINE) == pair.wire.sent.count(MESSAGE_LINE) == 1
    else:
        assert pair.wire.dropped >= 4
        assert pair.wire.sent.count(MESSAGE_LINE) >= 2  # Timer E retransmissions
        assert pair.wire.sent.count("SIP/2.0 200 OK") >= 3  # 2xx resends and Completed resends
    if drop == 1:
        assert pair.wire.sent.count(INVITE_LINE) >= 2  # the first INVITE was lost: Timer A


def test_back_to_back_without_loss_sends_no_retransmission() -> None:
    pair = BackToBack(None, False)
    pair.run()
    assert pair.wire.sent == [
        INVITE_LINE,
        "SIP/2.0 100 Trying",
        "SIP/2.0 180 Ringing",
        "SIP/2.0 200 OK",
        "ACK sip:bob@uas.example.com SIP/2.0",
        MESSAGE_LINE,
        "SIP/2.0 200 OK",
    ]


def test_transactions_are_hashable_by_identity() -> None:
    # The trio layer keys its waiters by transaction.
    layer = TransactionLayer()
    first = layer.send_request(request("MESSAGE", branch="z9hG4bK-a"), 0.0, reliable=False)
    second = layer.send_request(request("MESSAGE", branch="z9hG4bK-b"), 0.0, reliable=False)
    waiters = {first: "a", second: "b"}
    assert waiters[first] == "a" and waiters[second] == "b"
    assert first != second and not first.terminated


def test_terminated_transactions_do_not_linger_in_the_timer_heap() -> None:
    # Transactions that end early (a final response stops Timer F) leave dead heap entries;
    # the layer compacts them rather than keeping the transactions until F would have fired.
    layer = TransactionLayer()
    for n in range(1000):
        client = layer.send_request(request("OPTIONS", branch=f"z9hG4bK-o{n}"), 0.0, reliable=True)
        layer.receive_response(response(client.request, 200), 0.01)
    layer.pop_events()
    assert len(layer) == 0
    live = sum(1 for entry in layer._heap if entry[3]._timers.get(entry[2]) == entry[1])
    assert live == 0
    assert len(layer._heap) <= 130  # compacted: not one dead F entry per transaction


# -- memory ------------------------------------------------------------------------------------


def _held_by(message: Message, holder: object) -> bool:
    return any(referrer is holder for referrer in gc.get_referrers(message))


def test_completed_non_invite_server_transaction_releases_its_messages() -> None:
    layer, req, tx, _ = served("OPTIONS")
    final = response(req, 200)
    tx.respond(final, 0.1)
    layer.pop_events()
    assert len(layer) == 1  # its record is there for Timer J, to absorb retransmissions
    assert not _held_by(req, tx) and not _held_by(final, tx)
    assert not any(_held_by(tx, holder) for holder in (layer._servers, layer._heap))
    # An INVITE server transaction keeps both (ACK matching, CANCEL, Timer G).
    layer, invite, itx, _ = served("INVITE")
    busy = response(invite, 486)
    itx.respond(busy, 0.1)
    assert _held_by(invite, itx) and _held_by(busy, itx)


def test_completed_non_invite_client_transaction_releases_its_messages() -> None:
    layer, req, tx = started("OPTIONS")
    final = response(req, 200)
    layer.receive_response(final, 0.1)
    assert layer.pop_events() == [ResponseReceived(tx, final), TransactionTerminated(tx)]
    assert len(layer) == 1  # its key is there for Timer K
    assert not _held_by(req, tx) and not _held_by(final, tx)
    assert not any(_held_by(tx, holder) for holder in (layer._clients, layer._heap))
    gc.collect()
    gc.collect()
    assert not gc.is_tracked(layer._client_records) and not layer._clients
    # Reliable transports end the transaction at once; nothing is held either way.
    layer, req, tx = started("OPTIONS", reliable=True)
    layer.receive_response(response(req, 200), 0.1)
    assert len(layer) == 0 and tx.terminated


def test_client_records_hold_no_object_the_garbage_collector_tracks() -> None:
    """Requests waiting for Timer K leave nothing the collector walks (no key or deadline
    tuples, made per request and kept 5 s): seen without any collection in between."""
    gc.disable()
    try:
        layer = TransactionLayer()
        requests = []
        for n in range(3):
            req = request("OPTIONS", branch=f"z9hG4bKrec{n}")
            layer.send_request(req, 0.0, reliable=False, destination=("10.0.0.2", 5060))
            layer.receive_response(response(req, 200), 0.1 * n)
            requests.append(req)
        layer.pop_events()
        assert len(layer) == 3 and not layer._clients
        assert not gc.is_tracked(layer._client_records)
        kept = [*layer._client_records, *layer._client_record_keys, *layer._client_deadlines]
        assert len(kept) == 9 and not any(gc.is_tracked(item) for item in kept)
    finally:
        gc.enable()
    # Still the same records: a retransmitted final is absorbed; each leaves at Timer K,
    # in order, and a same-branch request of another method is no clash.
    assert layer.receive_response(response(requests[2], 200), 1.0) is None
    assert layer.pop_events() == []
    assert layer.next_deadline() == 5.0
    with pytest.raises(ValueError, match="exists"):
        layer.send_request(requests[0], 1.0, reliable=False)
    other = request("MESSAGE", branch="z9hG4bKrec1")
    layer.send_request(other, 1.0, reliable=True, destination=("10.0.0.2", 5060))
    layer.receive_response(response(other, 200), 1.0)
    assert kinds(layer.pop_events()) == ["Send", "ResponseReceived", "TransactionTerminated"]
    layer.handle_timers(5.05)
    assert len(layer) == 2 and layer.next_deadline() == pytest.approx(5.1)
    layer.handle_timers(6.0)
    assert len(layer) == 0 and layer.next_deadline() is None
    layer.receive_response(response(requests[2], 200), 6.0)
    assert kinds(layer.pop_events()) == ["StrayResponse"]


# -- records: Completed non-INVITE server transactions over UDP --------------------------------

SIPP_OPTIONS = (
    b"OPTIONS sip:uas@127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-%d\r\n"
    b"From: sipp <sip:sipp@127.0.0.1:5061>;tag=%dSIPpTag00\r\n"
    b"To: sut <sip:uas@127.0.0.1:5060>\r\n"
    b"Call-ID: %d-sipp@127.0.0.1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Max-Forwards: 70\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def options_from_sipp(n: int) -> Request:
    message = parse_message(SIPP_OPTIONS % (n, n, n))
    assert isinstance(message, Request)
    return message


def answered_options(layer: TransactionLayer, n: int, now: float = 0.0) -> bytes:
    """Receive SIPp's OPTIONS number ``n`` over UDP, answer 200; the bytes sent."""
    req = options_from_sipp(n)
    tx = layer.receive_request(
        req, now, reliable=False, destination=("127.0.0.1", 5061), route="UDP"
    )
    assert tx is not None and tx.route == "UDP"
    assert layer.pop_events() == [RequestReceived(tx, req)]
    tx.respond(make_response(req, 200, to_tag=f"t{n}"), now)
    events = layer.pop_events()
    assert events[1:] == [TransactionTerminated(tx)]
    assert isinstance(events[0], Send) and events[0].data is not None
    return events[0].data


def test_a_retransmitted_options_gets_the_same_200_from_the_record() -> None:
    layer = TransactionLayer()
    first = answered_options(layer, 1, 0.0)
    assert len(layer) == 1 and not layer._servers  # the object has left: a record remains
    for at in (0.5, 1.5, 31.9):
        assert layer.receive_request(options_from_sipp(1), at, reliable=False) is None
        assert layer.pop_events() == [Resend(first, ("127.0.0.1", 5061), "UDP")]
    # another OPTIONS is a new transaction, not answered from that record
    other = options_from_sipp(2)
    tx = layer.receive_request(other, 2.0, reliable=False)
    assert tx is not None and layer.pop_events() == [RequestReceived(tx, other)]


def test_timer_j_removes_the_record() -> None:
    layer = TransactionLayer()
    answered_options(layer, 1, 0.0)
    answered_options(layer, 2, 1.0)
    assert len(layer) == 2 and layer.next_deadline() == 32.0
    layer.handle_timers(32.0)
    assert len(layer) == 1 and layer.next_deadline() == 33.0
    layer.handle_timers(33.0)
    assert len(layer) == 0 and layer.next_deadline() is None
    assert layer.pop_events() == []
    assert layer._records == {} and not layer._record_deadlines and not layer._recent
    # the same request after Timer J: a new transaction that reaches the TU
    again = options_from_sipp(1)
    tx = layer.receive_request(again, 40.0, reliable=False)
    assert tx is not None and layer.pop_events() == [RequestReceived(tx, again)]


def test_records_are_not_tracked_by_the_garbage_collector() -> None:
    layer = TransactionLayer()
    answered_options(layer, 0)  # the layer's dicts and queue exist and have grown once
    gc.collect()
    before = len(gc.get_objects())
    for n in range(1, 2001):
        answered_options(layer, n, n / 1000)
    gc.collect()
    gc.collect()  # a tuple is untracked once what it holds is: nested ones take two passes
    assert len(layer) == 2001
    # Not one tracked object per waiting transaction (it was 3: the object, its
    # {method: transaction} dict and its timer-heap entry); a few dict tables may grow.
    assert len(gc.get_objects()) - before < 20
    records = layer._records[("3261", "z9hG4bK-7", "127.0.0.1", 5061)]
    assert not gc.is_tracked(records) and not any(gc.is_tracked(r) for r in records)
    assert not any(gc.is_tracked(entry) for entry in layer._record_deadlines)
    assert not any(gc.is_tracked(key) for key in layer._recent)
    assert not any(gc.is_tracked(value) for value in layer._recent.values())
    assert layer._heap == [] and layer._servers == {}


def test_a_merged_request_gets_482_while_the_original_is_a_record() -> None:
    layer = TransactionLayer()
    answered_options(layer, 1)
    # the same request (From tag, Call-ID, CSeq) by another path: another branch
    merged = options_from_sipp(1)
    merged.headers["Via"] = "SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-other"
    tx = layer.receive_request(merged, 1.0, reliable=False, destination=("127.0.0.1", 5062))
    assert tx is not None
    events = layer.pop_events()
    assert not any(isinstance(e, RequestReceived) for e in events)  # the TU never sees it
    assert [m.status_code for m in sent(events) if isinstance(m, Response)] == [482]
    # once the original's record is gone, the same request is new again
    layer.handle_timers(32.0)
    later = options_from_sipp(1)
    later.headers["Via"] = "SIP/2.0/UDP 127.0.0.1:5063;branch=z9hG4bK-later"
    new = layer.receive_request(later, 40.0, reliable=False)
    assert new is not None and layer.pop_events() == [RequestReceived(new, later)]


def test_max_server_transactions_counts_records() -> None:
    layer = TransactionLayer(max_server_transactions=1)
    first = answered_options(layer, 1)
    refused = options_from_sipp(2)
    assert layer.receive_request(refused, 1.0, reliable=False, destination=("h", 1)) is None
    assert kinds(layer.pop_events()) == ["RequestRefused"] and layer.requests_refused == 1
    # the record's own retransmission is still answered at the bound
    assert layer.receive_request(options_from_sipp(1), 1.5, reliable=False) is None
    assert layer.pop_events() == [Resend(first, ("127.0.0.1", 5061), "UDP")]
    layer.handle_timers(32.0)  # Timer J: room again
    assert layer.receive_request(options_from_sipp(3), 33.0, reliable=False) is not None
    assert layer.requests_refused == 1


def test_a_cancel_of_a_record_finds_its_completed_transaction() -> None:
    # RFC 3261 9.2: the transaction exists (Completed), so the CANCEL gets a 200 and has
    # no effect; the layer hands the TU a Terminated stand-in carrying the final response.
    layer = TransactionLayer()
    answered_options(layer, 1)
    cancel = options_from_sipp(1)
    cancel.method = "CANCEL"
    cancel.headers["CSeq"] = "1 CANCEL"
    target = layer.find_transaction_to_cancel(cancel)
    assert target is not None and target.method == "OPTIONS"
    assert target.last_response is not None and target.last_response.status_code == 200
    assert target.terminated and target.route == "UDP"
    assert target.respond(make_response(cancel, 487), 1.0) is False
    assert layer.pop_events() == [] and len(layer) == 1
    layer.handle_timers(32.0)
    assert layer.find_transaction_to_cancel(cancel) is None


def test_accepted_invite_server_transaction_lets_go_of_the_invite() -> None:
    # RFC 2543 ACK matching needs the 2xx's To tag, which the transaction keeps.
    layer, invite, tx, _ = served("INVITE", branch=None)
    ok = response(invite, 200, to_tag="srv")
    tx.respond(ok, 1.0)
    assert state(tx) is S.ACCEPTED and not _held_by(invite, tx)
    with pytest.raises(RuntimeError):
        tx.request  # noqa: B018
    assert tx.respond(ok, 1.5) is True  # the TU's 2xx retransmissions still pass
    layer.pop_events()
    ack = request("ACK", branch=None, to_tag="srv")
    assert layer.receive_request(ack, 2.0, reliable=False) is None
    assert layer.pop_events() == [AckReceived(ack, None)]  # to the TU, as RFC 6026 asks
    # The RFC 2543 INVITE's retransmission still matches its record: absorbed.
    assert layer.receive_request(request("INVITE", branch=None), 2.5, reliable=False) is None
    assert layer.pop_events() == [] and len(layer) == 1


def test_accepted_invite_server_transaction_keeps_only_the_status_and_to_of_its_2xx() -> None:
    # Timer L keeps the transaction 32 s after the call is answered: not the 2xx's body,
    # Contact and the rest, which the TU holds (or has let go of) itself.
    layer, invite, tx, _ = served("INVITE")
    ok = response(invite, 200, to_tag="srv")
    ok.headers["Contact"] = "<sip:bob@10.0.0.2>"
    ok.headers["Content-Type"] = "application/sdp"
    ok.content = b"v=0\r\n" * 40
    tx.respond(ok, 1.0)
    assert layer.pop_events() == [Send(tx, ok)]  # the whole 2xx went out
    kept = last(tx)
    assert not _held_by(ok, tx) and kept is not ok
    assert (kept.status_code, kept.reason_phrase, kept.to.tag) == (200, "OK", "srv")
    assert list(kept.headers.keys()) == ["To"] and kept.content == b""
    assert tx.respond(ok, 1.5) is True  # a retransmission by the TU: sent, not kept
    assert layer.pop_events() == [Send(tx, ok)] and not _held_by(ok, tx)


def test_the_soonest_armed_deadline_is_told_once() -> None:
    """What wakes the engine's timer loop: the earliest deadline armed since last asked
    (Timer E before F; then Timer K's record), never one a disarm would make earlier."""
    layer, req, _ = started()  # a non-INVITE over UDP at 0: Timer E at 0.5, F at 32
    assert layer.take_soonest_armed() == 0.5
    assert layer.take_soonest_armed() == float("inf")
    layer.receive_response(response(req, 200), 1.0)  # E and F disarmed, Timer K at 6
    assert layer.take_soonest_armed() == 6.0
    assert layer.next_deadline() == 6.0
    advance(layer, 100.0)
    assert layer.take_soonest_armed() == float("inf")
