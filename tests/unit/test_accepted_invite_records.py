"""An Accepted INVITE server transaction is a record of the layer during Timer L (RFC 6026).

Once a 2xx is sent, the transaction layer keeps only an untracked record of the INVITE
transaction (the 2xx's status), in place of the object, until Timer L: it
absorbs retransmitted INVITEs, still makes a merged request get 482, still answers a CANCEL
with "answered" (9.2: 200, no 487); the object passes the TU's 2xx retransmissions until
Timer L and is not held by the layer.
"""

from __future__ import annotations

import gc

import trio
import trio.testing

import sipx
from sipx._core.message import Request, Response
from sipx._core.parser import parse_message
from sipx._core.transaction import (
    InviteServerTransaction,
    RequestReceived,
    Send,
    TransactionLayer,
    TransactionState,
    make_response,
)
from sipx.testing import MemoryNetwork

SIPP_INVITE = (
    b"INVITE sip:uas@127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-%d\r\n"
    b"From: sipp <sip:sipp@127.0.0.1:5061>;tag=%dSIPpTag00\r\n"
    b"To: sut <sip:uas@127.0.0.1:5060>\r\n"
    b"Call-ID: %d-inv@127.0.0.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:sipp@127.0.0.1:5061>\r\n"
    b"Max-Forwards: 70\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def invite(n: int, *, method: str = "INVITE", branch: int | None = None) -> Request:
    data = SIPP_INVITE % (n if branch is None else branch, n, n)
    message = parse_message(data.replace(b"INVITE", method.encode()))
    assert isinstance(message, Request)
    return message


def accepted(layer: TransactionLayer, n: int, now: float = 0.0) -> InviteServerTransaction:
    """Receive INVITE ``n`` over UDP and answer it 200 (To tag ``t<n>``)."""
    request = invite(n)
    tx = layer.receive_request(
        request, now, reliable=False, destination=("127.0.0.1", 5061), route="UDP"
    )
    assert isinstance(tx, InviteServerTransaction)
    assert RequestReceived(tx, request) in layer.pop_events()
    ok = make_response(request, 200, to_tag=f"t{n}")
    assert tx.respond(ok, now) is True
    assert layer.pop_events() == [Send(tx, ok)]  # the 2xx goes out; no other event
    return tx


def state(tx: InviteServerTransaction) -> TransactionState:
    return tx.state  # a call, so mypy does not narrow tx.state across assertions


def test_accepted_invite_transactions_are_untracked_records() -> None:
    layer = TransactionLayer()
    accepted(layer, 0)  # the layer's dicts and queues exist and have grown once
    gc.collect()
    before = len(gc.get_objects())
    for n in range(1, 2001):
        accepted(layer, n, n / 1000)
    for _ in range(3):  # a tuple is untracked once what it holds is: one level a pass
        gc.collect()
    assert len(layer) == 2001 and layer.next_deadline() == 32.0  # Timer L of the first
    # Not one tracked object per accepted INVITE (it was 5: the object, its {method: tx}
    # dict, its Timer L heap entry, the stand-in 2xx and its header list); the objects
    # themselves are gone: nobody but the TU held them.
    assert len(gc.get_objects()) - before < 20
    assert not any(isinstance(o, InviteServerTransaction) for o in gc.get_objects())
    assert layer._servers == {} and layer._heap == []
    record = layer._records[("3261", "z9hG4bK-7", "127.0.0.1", 5061)]
    assert record[:2] == ("INVITE", 200)  # one record per key: kept as it is
    assert not gc.is_tracked(record) and not any(gc.is_tracked(f) for f in record)
    assert not any(gc.is_tracked(entry) for entry in layer._accepted_deadlines)
    # Timer L: they leave in order, and the layer is empty again.
    layer.handle_timers(32.0)
    assert len(layer) == 2000 and layer.next_deadline() == 32.001
    layer.handle_timers(40.0)
    assert len(layer) == 0 and layer._records == {} and not layer._recent
    assert layer.next_deadline() is None and layer.pop_events() == []


def test_the_record_absorbs_invite_retransmissions_and_the_object_passes_2xx() -> None:
    layer = TransactionLayer()
    tx = accepted(layer, 1)
    ok = make_response(invite(1), 200, to_tag="t1")
    for at in (0.5, 1.5, 31.9):  # absorbed: no 100, no 2xx from the layer, TU not told
        assert layer.receive_request(invite(1), at, reliable=False) is None
        assert layer.pop_events() == []
    # The TU resends its 2xx through the object until Timer L (RFC 6026 17.2.1).
    assert tx.respond(ok, 10.0) is True and state(tx) is TransactionState.ACCEPTED
    assert layer.pop_events() == [Send(tx, ok)]
    assert tx.respond(make_response(invite(1), 486), 10.0) is False
    assert layer.pop_events() == []
    layer.handle_timers(32.0)
    assert tx.respond(ok, 32.0) is False and state(tx) is TransactionState.TERMINATED
    assert layer.pop_events() == []
    # After Timer L the same INVITE is a new transaction again.
    again = invite(1)
    new = layer.receive_request(again, 33.0, reliable=False)
    assert new is not None and new is not tx
    assert RequestReceived(new, again) in layer.pop_events()


def test_a_cancel_after_the_2xx_finds_the_record_answered() -> None:
    # RFC 3261 9.2: the INVITE transaction exists (Accepted): the CANCEL gets a 200 and
    # has no effect; the stand-in tells the TU that the INVITE was answered.
    layer = TransactionLayer()
    accepted(layer, 1)
    cancel = invite(1, method="CANCEL")
    target = layer.find_transaction_to_cancel(cancel)
    assert target is not None and target.is_invite and target.method == "INVITE"
    assert target.terminated and target.route == "UDP"
    assert target.destination == ("127.0.0.1", 5061)
    final = target.last_response
    assert isinstance(final, Response)
    assert (final.status_code, final.reason_phrase) == (200, "OK")
    assert target.respond(make_response(cancel, 487), 1.0) is False  # no 487
    assert layer.pop_events() == [] and len(layer) == 1
    # A CANCEL's own transaction for it is still given at the bound.
    full = TransactionLayer(max_server_transactions=1)
    accepted(full, 1)
    assert full.receive_request(cancel, 1.0, reliable=False) is not None
    layer.handle_timers(32.0)
    assert layer.find_transaction_to_cancel(cancel) is None


def test_a_merged_invite_gets_482_while_the_original_is_a_record() -> None:
    layer = TransactionLayer()
    accepted(layer, 1)
    merged = invite(1, branch=99)  # same From tag, Call-ID and CSeq, another branch
    tx = layer.receive_request(merged, 1.0, reliable=False, destination=("127.0.0.1", 5062))
    assert tx is not None
    events = layer.pop_events()
    assert not any(isinstance(e, RequestReceived) for e in events)
    assert [e.message.status_code for e in events if isinstance(e, Send)] == [482]


def test_records_count_towards_max_server_transactions() -> None:
    layer = TransactionLayer(max_server_transactions=1)
    accepted(layer, 1)
    assert layer.receive_request(invite(2), 1.0, reliable=False, destination=("h", 1)) is None
    assert [type(e).__name__ for e in layer.pop_events()] == ["RequestRefused"]
    layer.handle_timers(32.0)  # Timer L: room again
    assert layer.receive_request(invite(3), 33.0, reliable=False) is not None


async def test_after_the_ack_a_cancel_gets_200_and_a_retransmitted_invite_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Through the client: the call is up, the ACK came; during Timer L a retransmitted
    INVITE is absorbed and a CANCEL is answered 200 from the record, with no 487."""
    network = MemoryNetwork()
    peer_address = ("127.0.0.1", 5090)
    calls: list[sipx.Call] = []
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as callee,
        network.socket(peer_address) as peer,
    ):
        callee.on_request("INVITE", calls.append)
        target = (callee.local_address.host, callee.local_address.port)
        data = SIPP_INVITE % (1, 1, 1)
        peer.send(data, target)
        await trio.sleep(1)
        [call] = calls
        call.answer()
        await trio.sleep(0.1)
        [ok] = [m.message for m in network.responses(200, method="INVITE")]
        ack = invite(1, method="ACK", branch=2)
        ack.headers["To"] = ok.headers["To"]
        peer.send(ack.to_bytes(), target)
        await trio.sleep(5)
        assert call.state is sipx.CallState.ESTABLISHED and call.transaction is None
        network.clear_log()
        peer.send(data, target)  # a late retransmission of the INVITE
        await trio.sleep(1)
        assert network.responses() == []  # absorbed: no 100, no 200, no new call
        peer.send(invite(1, method="CANCEL").to_bytes(), target)
        await trio.sleep(1)
        assert [(m.message.status_code, m.message.cseq.method) for m in network.responses()] == [
            (200, "CANCEL")
        ]
        assert len(calls) == 1 and call.state is sipx.CallState.ESTABLISHED
        await trio.sleep(40)  # Timer L is over: the CANCEL now matches nothing
        network.clear_log()
        peer.send(invite(1, method="CANCEL").to_bytes(), target)
        await trio.sleep(1)
        assert [m.message.status_code for m in network.responses()] == [481]
