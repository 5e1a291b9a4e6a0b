"""Merged requests (RFC 3261 8.2.2.2): the transaction layer answers them 482 itself.

A request without a To tag whose From tag, Call-ID and CSeq match a request that created a
live server transaction, on another branch (a forked request that arrived by two paths).
"""

from __future__ import annotations

import pytest

from sipx._core.message import Request, Response
from sipx._core.transaction import (
    MERGE_RECORDS,
    AckReceived,
    Event,
    RequestReceived,
    Send,
    TransactionLayer,
    TransactionState,
    TransactionTerminated,
    make_ack_for_non2xx,
    make_response,
)

S = TransactionState


def request(
    method: str = "INVITE",
    *,
    branch: str = "z9hG4bK-a",
    sent_by: str = "proxy-a.example.com:5060",
    cseq: int = 1,
    cseq_method: str | None = None,
    from_tag: str = "ft1",
    to_tag: str | None = None,
    call_id: str = "call-1",
    from_header: str | None = None,
) -> Request:
    to = "<sip:bob@uas.example.com>" + (f";tag={to_tag}" if to_tag else "")
    headers = [
        ("Via", f"SIP/2.0/UDP {sent_by};branch={branch}"),
        ("Max-Forwards", "70"),
        ("From", from_header or f"Alice <sip:alice@uac.example.com>;tag={from_tag}"),
        ("To", to),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} {cseq_method or method}"),
    ]
    return Request(method, "sip:bob@uas.example.com", headers)


def receive(layer: TransactionLayer, req: Request, now: float = 0.0) -> list[Event]:
    layer.receive_request(req, now, reliable=False, destination=("10.0.0.1", 5060))
    return layer.pop_events()


def received(events: list[Event]) -> list[Request]:
    return [e.request for e in events if isinstance(e, RequestReceived)]


def codes(events: list[Event]) -> list[int]:
    return [
        e.message.status_code
        for e in events
        if isinstance(e, Send) and isinstance(e.message, Response)
    ]


def sends(events: list[Event]) -> list[Send]:
    return [e for e in events if isinstance(e, Send)]


def advance(layer: TransactionLayer, until: float) -> list[Event]:
    events: list[Event] = []
    while (deadline := layer.next_deadline()) is not None and deadline <= until:
        layer.handle_timers(deadline)
        events += layer.pop_events()
    return events


@pytest.mark.parametrize("method", ["INVITE", "MESSAGE", "OPTIONS", "REGISTER"])
def test_second_copy_on_another_branch_gets_482_and_the_tu_sees_one(method: str) -> None:
    layer = TransactionLayer()
    first = receive(layer, request(method))
    assert len(received(first)) == 1
    merged = request(method, branch="z9hG4bK-b", sent_by="proxy-b.example.com")
    events = receive(layer, merged, 0.1)
    assert received(events) == []
    (send,) = sends(events)  # no 100 Trying: the 482 at once
    loop = send.message
    assert isinstance(loop, Response) and loop.status_code == 482
    assert loop.reason_phrase == "Loop Detected"
    assert loop.top_via.branch == "z9hG4bK-b"  # to the copy, not to the original
    assert send.transaction.branch == "z9hG4bK-b" and send.destination == ("10.0.0.1", 5060)
    assert loop.to.tag  # 8.2.6.2: a final response outside a dialog carries a To tag
    assert (loop.call_id, loop.cseq.seq, loop.cseq.method) == ("call-1", 1, method)
    assert len(layer) == 2


def test_retransmissions_are_absorbed_by_their_own_transactions() -> None:
    layer = TransactionLayer()
    original = request("INVITE")
    merged = request("INVITE", branch="z9hG4bK-b")
    assert codes(receive(layer, original)) == [100]
    assert codes(receive(layer, merged, 0.1)) == [482]
    again = receive(layer, request("INVITE"), 0.2)  # the original, retransmitted
    assert received(again) == [] and codes(again) == [100]
    again = receive(layer, request("INVITE", branch="z9hG4bK-b"), 0.3)  # the merged copy
    assert received(again) == [] and codes(again) == [482]
    assert len(layer) == 2


def test_482_to_an_invite_is_retransmitted_and_its_ack_absorbed() -> None:
    layer = TransactionLayer()
    receive(layer, request("INVITE"))
    merged = request("INVITE", branch="z9hG4bK-b")
    (send,) = sends(receive(layer, merged))
    assert isinstance(send.message, Response)
    assert codes(advance(layer, 1.0)) == [482]  # Timer G at T1
    ack = make_ack_for_non2xx(merged, send.message)
    assert receive(layer, ack, 1.1) == []  # not an AckReceived for the TU
    assert send.transaction.state is S.CONFIRMED


def test_non_invite_merged_transaction_ends_like_any_other() -> None:
    layer = TransactionLayer()
    receive(layer, request("MESSAGE"))
    merged = receive(layer, request("MESSAGE", branch="z9hG4bK-b"))
    (send,) = sends(merged)
    # Completed over UDP: a record absorbs retransmissions until Timer J, the object ends.
    assert TransactionTerminated(send.transaction) in merged
    assert len(layer) == 2
    events = advance(layer, 40.0)  # Timer J
    assert len(layer) == 1  # the original, which was never answered
    assert not any(isinstance(e, AckReceived | RequestReceived) for e in events)


def test_other_requests_of_the_same_call_are_not_merged() -> None:
    layer = TransactionLayer()
    receive(layer, request("INVITE"))
    for other in (
        request("INVITE", branch="z9hG4bK-b", cseq=2),  # another CSeq number
        request("INVITE", branch="z9hG4bK-c", from_tag="ft2"),  # another From tag
        request("INVITE", branch="z9hG4bK-d", call_id="call-2"),  # another call
        request("OPTIONS", branch="z9hG4bK-e"),  # another method, same CSeq number
    ):
        assert received(receive(layer, other)) == [other]


def test_cancel_is_not_subject_to_the_rule() -> None:
    layer = TransactionLayer()
    receive(layer, request("INVITE"))
    cancel = request("CANCEL")
    assert received(receive(layer, cancel)) == [cancel]
    # a CANCEL of the same INVITE by the other path: matched to nothing, but up to the TU
    other = request("CANCEL", branch="z9hG4bK-b")
    assert received(receive(layer, other)) == [other]


def test_ack_is_not_subject_to_the_rule() -> None:
    layer = TransactionLayer()
    receive(layer, request("INVITE"))
    ack = request("ACK", branch="z9hG4bK-b", to_tag="tt1")
    ack_untagged = request("ACK", branch="z9hG4bK-c")
    assert receive(layer, ack) == [AckReceived(ack, None)]
    assert receive(layer, ack_untagged) == [AckReceived(ack_untagged, None)]


def test_requests_with_a_to_tag_are_in_a_dialog_and_not_merged() -> None:
    layer = TransactionLayer()
    first = request("INFO", to_tag="tt1")
    second = request("INFO", branch="z9hG4bK-b", to_tag="tt1")
    assert received(receive(layer, first)) == [first]
    events = receive(layer, second)
    assert received(events) == [second] and 482 not in codes(events)
    assert not layer._recent


def test_unreadable_headers_are_left_to_the_tu() -> None:
    layer = TransactionLayer()
    first = request("MESSAGE", from_header="<<<")
    second = request("MESSAGE", branch="z9hG4bK-b", from_header="<<<")
    assert received(receive(layer, first)) == [first]
    assert received(receive(layer, second)) == [second]  # the TU answers 400 to each


def test_the_record_is_released_with_the_transaction() -> None:
    layer = TransactionLayer()
    original = request("INVITE")
    layer.receive_request(original, 0.0, reliable=True)
    (tx,) = [e.transaction for e in layer.pop_events() if isinstance(e, RequestReceived)]
    assert len(layer._recent) == 1
    final = make_response(original, 486, to_tag="tt1")
    tx.respond(final, 1.0)
    layer.receive_request(make_ack_for_non2xx(original, final), 1.1, reliable=True)
    assert tx.terminated  # Timer I is 0 over a reliable transport
    assert not layer._recent
    # the same request by another path, later: a new request now, not a merged one
    late = request("INVITE", branch="z9hG4bK-b")
    assert received(receive(layer, late, 2.0)) == [late]


def test_the_record_lives_until_timer_j() -> None:
    layer = TransactionLayer()
    original = request("MESSAGE")
    receive(layer, original)
    receive(layer, request("MESSAGE", branch="z9hG4bK-b"))
    assert len(layer._recent) == 1  # only requests that reached the TU are recorded
    (tx,) = layer._recent.values()
    tx.respond(make_response(original, 200, to_tag="tt1"), 1.0)
    layer.pop_events()
    assert codes(receive(layer, request("MESSAGE", branch="z9hG4bK-c"), 2.0)) == [482]
    layer.handle_timers(1.0 + 64 * 0.5)  # Timer J of the original
    assert not layer._recent and len(layer) == 1  # the second 482 has until 2 + 32
    layer.handle_timers(2.0 + 64 * 0.5)
    assert not layer._recent and len(layer) == 0


def test_record_is_bounded_under_a_flood() -> None:
    layer = TransactionLayer(merge_records=16)
    for n in range(1000):
        receive(layer, request("MESSAGE", branch=f"z9hG4bK-{n}", call_id=f"flood-{n}"))
        assert len(layer._recent) <= 16
    assert len(layer._recent) == 16 and len(layer) == 1000
    # the newest are still recognised; the oldest were forgotten (they reach the TU)
    assert codes(receive(layer, request("MESSAGE", branch="z9hG4bK-x", call_id="flood-999"))) == [
        482
    ]
    old = request("MESSAGE", branch="z9hG4bK-y", call_id="flood-0")
    assert received(receive(layer, old)) == [old]


def test_default_bound() -> None:
    layer = TransactionLayer()
    for n in range(MERGE_RECORDS + 100):
        req = request("OPTIONS", branch=f"z9hG4bK-{n}", call_id=f"c{n}")
        layer.receive_request(req, 0.0, reliable=False)
    assert len(layer._recent) == MERGE_RECORDS
    for event in layer.pop_events():
        if isinstance(event, RequestReceived):
            event.transaction.respond(make_response(event.request, 200, to_tag="t"), 1.0)
    layer.handle_timers(1000.0)
    assert len(layer) == 0 and not layer._recent


def test_merge_records_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TransactionLayer(merge_records=0)
