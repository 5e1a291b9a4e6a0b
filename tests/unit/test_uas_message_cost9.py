"""Issue 14, ninth pass: steps removed from the server side of every call answered (the
INVITE's 2xx kept as a stand-in, the ACK matched and carried out), pinned as behaviour.

Nothing here measures a time.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest
import trio
import trio.testing

import sipx
import sipx._core.transaction
import sipx._engine
import sipx._uas
from sipx._core.headers import STALE
from sipx._core.ids import IdSource, counter_token
from sipx._core.message import Request, Response
from sipx._core.parser import parse_message
from sipx._core.received import stamp_received
from sipx._core.timers import DEFAULT_TIMERS
from sipx._core.transaction import (
    AckReceived,
    InviteServerTransaction,
    NonInviteServerTransaction,
    RequestReceived,
    Resend,
    TransactionLayer,
    TransactionState,
    TransactionTerminated,
    final_response_bytes,
    make_response,
)
from sipx.testing import MemoryNetwork

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


# -- the 200 to an OPTIONS written straight from the request ----------------------------------

OPTIONS = (
    b"OPTIONS sip:uas@127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport\r\n"
    b"From: sipp <sip:sipp@127.0.0.1:5999>;tag=f1\r\n"
    b"To: sut <sip:uas@127.0.0.1:5060>\r\n"
    b"Call-ID: 1-bench@127.0.0.1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Contact: <sip:sipp@127.0.0.1:5999>\r\n"
    b"Max-Forwards: 70\r\n"
    b"Content-Length: 0\r\n\r\n"
)
CAPABILITIES = (
    ("allow", "Allow", "INVITE, ACK, OPTIONS"),
    ("accept", "Accept", "application/sdp"),
    ("supported", "Supported", "100rel, timer"),
)
PEER = ("127.0.0.1", 5999)


def _stamped(data: bytes, source: tuple[str, int] = ("192.0.2.7", 4000)) -> Request:
    request = _request(data)
    request.check_essentials()
    stamp_received(request, source)
    return request


@pytest.mark.parametrize(
    "data",
    [
        OPTIONS,
        OPTIONS.replace(b";rport", b""),
        OPTIONS.replace(
            b"To: sut <sip:uas@127.0.0.1:5060>", b"To: sut <sip:uas@127.0.0.1:5060>;tag=had"
        ),
        OPTIONS.replace(b"Via: SIP/2.0/UDP 127.0.0.1:5999", b"v: SIP/2.0/UDP [2001:db8::1]:5999"),
        OPTIONS.replace(b"From: sipp", b'f: "Zo\xc3\xab"'),
        OPTIONS.replace(b"Call-ID: 1-bench", b"i: 1-bench"),
    ],
)
@pytest.mark.parametrize("status", [200, 404, 481, 699])
@pytest.mark.parametrize("extra", [(), CAPABILITIES, list(CAPABILITIES)])
def test_final_response_bytes_are_the_bytes_of_make_response(
    data: bytes, status: int, extra: Any
) -> None:
    """The same bytes as the Response make_response builds, serialised, for every shape
    the shortcut takes (stamped Vias, a To with or without a tag, compact names, UTF-8,
    unknown status, tuple or list of extras); the request's index is never built."""
    request = _stamped(data)
    written = final_response_bytes(request, status, to_tag="t1", extra=extra)
    assert written == make_response(request, status, to_tag="t1", extra=extra).to_bytes()
    assert request.headers.index is None
    assert final_response_bytes(request, status, to_tag="t1", extra=extra) == written  # cached


def test_final_response_bytes_decline_what_make_response_must_build() -> None:
    """None (the caller builds the Response) for several Vias, a Via field of two
    entries, extras out of order or with a Content-Length, a request changed since
    parsed; a provisional status or a bad tag is refused as make_response refuses it."""
    two_fields = OPTIONS.replace(b"Via:", b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-p\r\nVia:", 1)
    one_field = OPTIONS.replace(b"Via: ", b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-p, ", 1)
    for data in (two_fields, one_field):
        assert final_response_bytes(_stamped(data), 200, to_tag="t") is None
    request = _stamped(OPTIONS)
    record_route = (("record-route", "Record-Route", "<sip:p.example.com;lr>"),)
    assert final_response_bytes(request, 200, extra=record_route) is None
    length = (("content-length", "Content-Length", "5"),)
    assert final_response_bytes(request, 200, extra=length) is None
    changed = _stamped(OPTIONS)
    changed.headers["Subject"] = "changed"
    assert final_response_bytes(changed, 200) is None
    with pytest.raises(ValueError):
        final_response_bytes(request, 180)
    with pytest.raises(ValueError):
        final_response_bytes(request, 200, to_tag="a\r\nb")


def test_a_non_invite_transaction_takes_a_final_response_as_bytes() -> None:
    """Over UDP the record keeps the bytes at once: sent (Resend to the request's source
    over its route), the transaction ended, a retransmission answered with the same bytes.
    Over a reliable transport, for a provisional status, an INVITE or a second answer,
    nothing is done (False): respond() is the way there."""
    layer = TransactionLayer()
    request = _stamped(OPTIONS)
    transaction = layer.receive_request(request, 0.0, reliable=False, destination=PEER, route="UDP")
    assert isinstance(transaction, NonInviteServerTransaction)
    layer.pop_events()
    data = final_response_bytes(request, 200, to_tag="t1")
    assert data is not None
    assert not transaction.respond_serialised(180, data, 0.0)
    assert transaction.respond_serialised(200, data, 0.0)
    assert layer.pop_events() == [Resend(data, PEER, "UDP"), TransactionTerminated(transaction)]
    assert transaction.state is TransactionState.TERMINATED
    assert transaction.last_response is None
    assert not transaction.respond_serialised(200, data, 0.0)
    assert layer.receive_request(_stamped(OPTIONS), 1.0, reliable=False, destination=PEER) is None
    assert layer.pop_events() == [Resend(data, PEER, "UDP")]

    tcp = layer.receive_request(
        _stamped(OPTIONS.replace(b"-1;", b"-2;").replace(b"=f1", b"=f2")),
        0.0,
        reliable=True,
        destination=PEER,
    )
    assert tcp is not None
    layer.pop_events()
    assert not tcp.respond_serialised(200, data, 0.0)
    assert tcp.state is TransactionState.TRYING and layer.pop_events() == []
    invite = _invite_transaction(layer)
    assert not invite.respond_serialised(200, data, 0.0)
    assert invite.state is TransactionState.PROCEEDING


def responses_built(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """From now on (until ``monkeypatch.undo()``), each Response the UAS makes
    (make_response, Response.from_wire) is appended to the list returned."""
    built: list[object] = []
    make, from_wire = sipx._uas.make_response, Response.from_wire

    def counted_make(*args: Any, **kwargs: Any) -> Any:
        built.append(args)
        return make(*args, **kwargs)

    def counted_from_wire(*args: Any) -> Any:
        built.append(args)
        return from_wire(*args)

    monkeypatch.setattr(sipx._uas, "make_response", counted_make)
    monkeypatch.setattr(Response, "from_wire", counted_from_wire)
    return built


async def test_an_options_answered_at_once_makes_no_response(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The 200 to an OPTIONS served at once is written without a Response (make_response
    and Response.from_wire are not called) and is what make_response would have sent;
    its retransmission is answered from the record with the same bytes."""
    network = MemoryNetwork(seed=1)
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(PEER) as peer,
    ):
        address = next(a for a in network.bound_addresses if a != PEER)
        peer.send(OPTIONS.replace(b"-1;", b"-0;").replace(b"=f1", b"=f0"), address)
        await peer.receive()

        built = responses_built(monkeypatch)
        peer.send(OPTIONS, address)
        data, _ = await peer.receive()
        peer.send(OPTIONS, address)  # retransmitted: the record answers the same bytes
        again, _ = await peer.receive()
        monkeypatch.undo()
        assert built == []
        await trio.testing.wait_all_tasks_blocked()
        assert client.limit_stats.malformed_messages == 0
    assert again == data
    response = parse_message(data)
    assert isinstance(response, Response) and response.status_code == 200
    request = _stamped(OPTIONS, PEER)
    expected = make_response(request, 200, to_tag=response.to.tag, extra=_capabilities_of(response))
    assert data == expected.to_bytes()


def _capabilities_of(response: Response) -> tuple[tuple[str, str, str], ...]:
    return tuple(
        (key, name, value)
        for key, name, value in response.headers.entries
        if key in ("allow", "accept", "supported", "allow-events")
    )


async def test_an_options_with_a_require_or_a_handler_is_answered_as_before() -> None:
    """An unsupported Require still gets 420 (no shortcut taken before the check), and an
    OPTIONS handler of the user's still answers in its task."""
    network = MemoryNetwork(seed=1)
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(PEER) as peer,
    ):
        address = next(a for a in network.bound_addresses if a != PEER)
        peer.send(
            OPTIONS.replace(b"Max-Forwards", b"Require: nothing-known\r\nMax-Forwards"), address
        )
        data, _ = await peer.receive()
        assert data.startswith(b"SIP/2.0 420 ")

        async def handler(incoming: Any) -> None:
            incoming.respond(486)

        client.on_request("OPTIONS", handler)

        peer.send(OPTIONS.replace(b"-1;", b"-5;").replace(b"=f1", b"=f5"), address)
        data, _ = await peer.receive()
    assert data.startswith(b"SIP/2.0 486 ")


async def test_a_bye_answered_at_once_makes_no_response(monkeypatch: pytest.MonkeyPatch) -> None:
    """The 200 to a BYE served at once (no BYE handler) is written without a Response, is
    what make_response would have sent, ends the call, and answers the BYE's
    retransmission from the record with the same bytes."""
    network = MemoryNetwork(seed=1)
    answered: list[sipx.Call] = []

    def answer(call: sipx.Call) -> None:
        call.answer(body=None)
        answered.append(call)

    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(PEER) as peer,
    ):
        client.on_request("INVITE", answer)
        address = next(a for a in network.bound_addresses if a != PEER)
        peer.send(INVITE, address)
        while True:
            data, _ = await peer.receive()
            if data.startswith(b"SIP/2.0 200"):
                break
        ok = parse_message(data)
        assert isinstance(ok, Response) and ok.to.tag
        in_dialog = INVITE.replace(
            b"To: sut <sip:uas@127.0.0.1:5060>",
            f"To: sut <sip:uas@127.0.0.1:5060>;tag={ok.to.tag}".encode(),
        )
        ack = in_dialog.replace(b"INVITE sip:", b"ACK sip:", 1).replace(b"1 INVITE", b"1 ACK")
        peer.send(ack.replace(b"-inv-1", b"-ack-1"), address)
        bye = in_dialog.replace(b"INVITE sip:", b"BYE sip:", 1).replace(b"1 INVITE", b"2 BYE")
        bye = bye.replace(b"-inv-1", b"-bye-1")

        built = responses_built(monkeypatch)
        peer.send(bye, address)
        data, _ = await peer.receive()
        peer.send(bye, address)  # retransmitted: the record answers the same bytes
        again, _ = await peer.receive()
        monkeypatch.undo()
        assert built == []
        assert answered[0].ended and answered[0].ended_by == "remote"
    assert again == data
    response = parse_message(data)
    assert isinstance(response, Response) and response.status_code == 200
    assert response.cseq.method == "BYE"
    assert data == make_response(_stamped(bye, PEER), 200).to_bytes()
