"""Issue 14, ninth pass: steps removed from the server side of every call answered (the
INVITE's 2xx kept as a stand-in, the ACK matched and carried out), pinned as behaviour.

Nothing here measures a time.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

import sipx._core.transaction
import sipx._engine
from sipx._core.headers import STALE
from sipx._core.ids import IdSource, counter_token
from sipx._core.message import Request
from sipx._core.parser import parse_message
from sipx._core.timers import DEFAULT_TIMERS
from sipx._core.transaction import (
    AckReceived,
    InviteServerTransaction,
    RequestReceived,
    TransactionLayer,
    TransactionState,
    make_response,
)

INVITE = (
    b"INVITE sip:uas@127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-inv-1\r\n"
    b"From: sipp <sip:sipp@127.0.0.1:5999>;tag=f1\r\n"
    b"To: sut <sip:uas@127.0.0.1:5060>\r\n"
    b"Call-ID: 1-call@127.0.0.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:sipp@127.0.0.1:5999>\r\n"
    b"Max-Forwards: 70\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def _request(data: bytes) -> Request:
    request = parse_message(data)
    assert isinstance(request, Request)
    return request


def _ack(invite: bytes, *, branch: str, to_tag: str) -> Request:
    data = (
        invite.replace(b"INVITE sip:", b"ACK sip:", 1)
        .replace(b"1 INVITE", b"1 ACK")
        .replace(b"branch=z9hG4bK-inv-1", f"branch={branch}".encode())
        .replace(
            b"To: sut <sip:uas@127.0.0.1:5060>",
            f"To: sut <sip:uas@127.0.0.1:5060>;tag={to_tag}".encode(),
        )
    )
    return _request(data)


def _invite_transaction(layer: TransactionLayer, data: bytes = INVITE) -> InviteServerTransaction:
    transaction = layer.receive_request(_request(data), 0.0, reliable=False, destination=("h", 1))
    assert isinstance(transaction, InviteServerTransaction)
    assert RequestReceived in [type(event) for event in layer.pop_events()]
    return transaction


def test_an_accepted_invite_keeps_its_to_without_indexing_the_2xx() -> None:
    """The stand-in an Accepted INVITE keeps has the 2xx's status, reason and To (with the
    tag); the 2xx made by make_response gets neither first values nor an index for it."""
    layer = TransactionLayer()
    transaction = _invite_transaction(layer)
    ok = make_response(transaction.request, 200, to_tag="uas-tag")
    ok.headers.add("Contact", "<sip:uas@127.0.0.1:5060>")
    assert ok.headers.first is STALE and ok.headers.index is None
    assert transaction.respond(ok, 0.0)
    assert transaction.state is TransactionState.ACCEPTED
    assert ok.headers.first is STALE  # (the parent built the first values and index here)
    assert ok.headers.index is None
    kept = transaction.last_response
    assert kept is not None and kept is not ok
    assert (kept.status_code, kept.reason_phrase) == (200, "OK")
    assert kept.headers.entries == [("to", "To", "sut <sip:uas@127.0.0.1:5060>;tag=uas-tag")]
    assert kept.to.tag == "uas-tag"


def test_an_accepted_invite_stand_in_of_an_indexed_2xx_and_of_one_without_to() -> None:
    """A 2xx whose first values are built gives its To from them; one without a To gives a
    stand-in without one (as get_first gave)."""
    layer = TransactionLayer()
    transaction = _invite_transaction(layer)
    ok = make_response(transaction.request, 200, to_tag="t2")
    assert ok.headers.get_first("To") is not None  # first values built now
    transaction.respond(ok, 0.0)
    assert transaction.last_response is not None
    assert transaction.last_response.headers.get_first("To") == ok.headers.get_first("To")

    other = _invite_transaction(
        layer, INVITE.replace(b"-inv-1", b"-inv-2").replace(b"1-call", b"2-call")
    )
    bare = make_response(other.request, 200, to_tag="t3")
    bare.headers.remove_first("To")
    other.respond(bare, 0.0)
    assert other.last_response is not None and other.last_response.headers.entries == []


def test_an_ack_is_matched_by_the_key_made_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ACK of a non-2xx completes its INVITE transaction (Confirmed) by the RFC 3261
    key receive_request made: ``_rfc3261_key`` is not called for it. The ACK to a 2xx
    (a new branch) is an AckReceived event."""
    layer = TransactionLayer()
    transaction = _invite_transaction(layer)
    transaction.respond(make_response(transaction.request, 486, to_tag="busy"), 0.0)
    layer.pop_events()

    def refused(*args: Any) -> Any:
        raise AssertionError("_rfc3261_key called")

    monkeypatch.setattr(sipx._core.transaction, "_rfc3261_key", refused)
    ack = _ack(INVITE, branch="z9hG4bK-inv-1", to_tag="busy")
    assert layer.receive_request(ack, 0.1, reliable=False, destination=("h", 1)) is transaction
    assert transaction.state is TransactionState.CONFIRMED
    assert layer.pop_events() == []

    ack2xx = _ack(INVITE, branch="z9hG4bK-ack-2", to_tag="t9")
    assert layer.receive_request(ack2xx, 0.2, reliable=False, destination=("h", 1)) is None
    assert layer.pop_events() == [AckReceived(ack2xx, None)]


def test_a_legacy_ack_is_still_matched_by_its_to_tag() -> None:
    """An RFC 2543 ACK (no z9hG4bK branch) finds its INVITE by the To tag of the final
    response, as before."""
    legacy = INVITE.replace(b"branch=z9hG4bK-inv-1", b"branch=old-1")
    layer = TransactionLayer()
    transaction = _invite_transaction(layer, legacy)
    transaction.respond(make_response(transaction.request, 486, to_tag="busy"), 0.0)
    layer.pop_events()
    stray = _ack(legacy, branch="old-1", to_tag="other")
    assert layer.receive_request(stray, 0.1, reliable=False, destination=("h", 1)) is None
    assert transaction.state is TransactionState.COMPLETED
    layer.pop_events()
    ack = _ack(legacy, branch="old-1", to_tag="busy")
    assert layer.receive_request(ack, 0.1, reliable=False, destination=("h", 1)) is transaction
    assert transaction.state is TransactionState.CONFIRMED


def test_the_engine_carries_out_an_ack_without_isinstance(monkeypatch: pytest.MonkeyPatch) -> None:
    """An AckReceived goes to ``on_ack`` by its exact type: ``_carry_out`` makes no
    isinstance call for it (the parent went down five)."""
    engine = sipx._engine.Engine(DEFAULT_TIMERS, IdSource(counter_token()))
    acks: list[Request] = []
    engine.on_ack = acks.append
    callers: list[str] = []
    original = isinstance

    def counted(value: object, kind: Any) -> bool:
        callers.append(sys._getframe(1).f_code.co_name)
        return original(value, kind)

    ack = _ack(INVITE, branch="z9hG4bK-ack-3", to_tag="t1")
    engine.layer.receive_request(ack, 0.0, reliable=False, destination=("h", 1))
    monkeypatch.setattr(sipx._engine, "isinstance", counted, raising=False)
    engine._carry_out()
    monkeypatch.undo()
    assert acks == [ack]
    assert "_carry_out" not in callers
