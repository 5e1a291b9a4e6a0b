"""Issue 14, eleventh pass: calls removed from the receive path of every request (the
engine's pump, the timer loop's wake check, the transaction layer's merge key, start and
record), pinned as behaviour: what is called per message, and what goes on the wire.

Nothing here measures a time.
"""

from __future__ import annotations

from typing import Any, NoReturn

import pytest
import trio
import trio.testing
from test_uas_message_cost import PEER
from test_uas_message_cost8 import OPTIONS, _Counted, _numbered

import sipx
import sipx._core.transaction
import sipx._engine
from sipx._core.headers import STALE
from sipx._core.message import Request, Response
from sipx._core.parser import parse_message
from sipx._core.retransmit import TwoXXRetransmitter
from sipx._core.timers import DEFAULT_TIMERS, TimerConfig
from sipx._core.transaction import (
    NonInviteServerTransaction,
    RequestReceived,
    Resend,
    Send,
    TransactionLayer,
    TransactionState,
    TransactionTerminated,
    final_response_bytes,
)
from sipx.testing import MemoryNetwork

INVITE = (
    b"INVITE sip:uas@127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-inv-11\r\n"
    b"From: sipp <sip:sipp@127.0.0.1:5999>;tag=fi11\r\n"
    b"To: sut <sip:uas@127.0.0.1:5060>\r\n"
    b"Call-ID: 11-call@127.0.0.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:sipp@127.0.0.1:5999>\r\n"
    b"Max-Forwards: 70\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def _request(data: bytes = OPTIONS) -> Request:
    request = parse_message(data)
    assert isinstance(request, Request)
    return request


def _refused(*args: Any, **kwargs: Any) -> NoReturn:
    raise AssertionError("called on the usual path")


def _status(data: bytes) -> int:
    response = parse_message(data)
    assert isinstance(response, Response)
    return response.status_code


async def test_an_options_answered_at_once_pops_the_layer_twice_and_never_pumps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The receive path carries out the layer's events itself (no ``_pump`` call, and the
    request goes to the UA's at-once answer without ``_serve``) and asks for them only
    when some are queued: once for the request (RequestReceived), once for its answer
    (Resend, TransactionTerminated), no empty ``pop_events()``. The answer and its
    retransmission from the record are the same bytes as before."""
    pops = _Counted(TransactionLayer.pop_events)
    pumps = _Counted(sipx._engine.Engine._pump)
    serves = _Counted(sipx._engine.Engine._serve)
    network = MemoryNetwork(seed=1)
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network),
        network.socket(PEER) as peer,
    ):
        address = next(a for a in network.bound_addresses if a != PEER)
        peer.send(_numbered(0), address)
        first, _ = await peer.receive()
        await trio.testing.wait_all_tasks_blocked()
        monkeypatch.setattr(TransactionLayer, "pop_events", pops.function)
        monkeypatch.setattr(sipx._engine.Engine, "_pump", pumps.function)
        monkeypatch.setattr(sipx._engine.Engine, "_serve", serves.function)
        peer.send(OPTIONS, address)
        data, _ = await peer.receive()
        assert (pops.calls, pumps.calls, serves.calls) == (2, 0, 0)
        peer.send(OPTIONS, address)  # retransmitted: the record answers, one pop
        again, _ = await peer.receive()
        assert (pops.calls, pumps.calls, serves.calls) == (3, 0, 0)
    assert _status(first) == _status(data) == 200
    assert again == data
    assert data.startswith(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1")


async def test_a_request_asks_the_timer_loop_nothing_when_nothing_was_armed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After the first OPTIONS (its Timer J record wakes the timer loop), the next ones arm
    nothing earlier: the receive path neither calls ``_wake_timer`` nor asks the layer's
    ``take_soonest_armed()`` or the 2xx retransmitter's next deadline. The first record
    still woke the loop: it sleeps until that record's Timer J (plus the slack)."""
    wakes = _Counted(sipx._engine.Engine._wake_timer)
    takes = _Counted(TransactionLayer.take_soonest_armed)
    network = MemoryNetwork(seed=1)
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(PEER) as peer,
    ):
        address = next(a for a in network.bound_addresses if a != PEER)
        sent_at = trio.current_time()
        peer.send(_numbered(0), address)
        await peer.receive()
        await trio.testing.wait_all_tasks_blocked()
        engine = client._engine
        timer_j = 64 * DEFAULT_TIMERS.t1
        slack = sipx._core.transaction.RECORD_SLACK
        deadline = engine._armed_deadline - slack  # the first record's Timer J
        assert sent_at + timer_j - 1e-6 <= deadline <= trio.current_time() + timer_j + 1e-6
        monkeypatch.setattr(sipx._engine.Engine, "_wake_timer", wakes.function)
        monkeypatch.setattr(TransactionLayer, "take_soonest_armed", takes.function)
        asked = _Counted(TwoXXRetransmitter.next_deadline)
        monkeypatch.setattr(TwoXXRetransmitter, "next_deadline", asked.function)
        for number in (1, 2, 3):
            peer.send(_numbered(number), address)
            data, _ = await peer.receive()
            assert _status(data) == 200
        assert (wakes.calls, takes.calls, asked.calls) == (0, 0, 0)


async def test_a_request_during_a_2xx_retransmission_leaves_the_retransmitter_alone(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """While the 2xx of an INVITE waits for its ACK, a request received does not ask the
    2xx retransmitter for its next deadline (only starting a retransmission makes it
    earlier, and that wakes the timer loop itself): the 2xx still goes again after T1 and
    after 3·T1, and the ACK stops it."""
    network = MemoryNetwork(seed=1)
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(PEER) as peer,
    ):
        client.on_request("INVITE", lambda call: call.answer())
        address = next(a for a in network.bound_addresses if a != PEER)
        peer.send(INVITE, address)
        while _status(answer := (await peer.receive())[0]) != 200:
            pass
        answered_at = trio.current_time()
        asked = _Counted(TwoXXRetransmitter.next_deadline)
        monkeypatch.setattr(TwoXXRetransmitter, "next_deadline", asked.function)
        peer.send(OPTIONS, address)
        options_answer, _ = await peer.receive()
        assert _status(options_answer) == 200 and asked.calls == 0
        monkeypatch.undo()
        again, _ = await peer.receive()
        assert again == answer and trio.current_time() - answered_at == pytest.approx(0.5)
        again, _ = await peer.receive()
        assert again == answer and trio.current_time() - answered_at == pytest.approx(1.5)
        to = parse_message(answer).headers["To"]
        ack = (
            INVITE.replace(b"INVITE sip:", b"ACK sip:", 1)
            .replace(b"1 INVITE", b"1 ACK")
            .replace(b"branch=z9hG4bK-inv-11", b"branch=z9hG4bK-ack-11")
            .replace(b"To: sut <sip:uas@127.0.0.1:5060>", f"To: {to}".encode())
        )
        peer.send(ack, address)
        with trio.move_on_after(10):
            extra, _ = await peer.receive()
            pytest.fail(f"sent after the ACK: {extra[:40]!r}")


def test_the_usual_request_starts_its_transaction_inline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A non-INVITE request with its To, From and CSeq parsed (the receive path's) gets its
    merge key and RequestReceived without ``_merge_key`` or the transaction's ``_start``;
    a merged request (same From tag, Call-ID and CSeq, another branch) still gets 482 and
    the TU hears nothing of it (RFC 3261 8.2.2.2)."""
    monkeypatch.setattr(sipx._core.transaction, "_merge_key", _refused)
    monkeypatch.setattr(NonInviteServerTransaction, "_start", _refused)
    layer = TransactionLayer()
    request = _request()
    request.check_essentials()  # To, From, CSeq parsed, as on the receive path
    transaction = layer.receive_request(request, 0.0, reliable=False, destination=PEER)
    assert isinstance(transaction, NonInviteServerTransaction)
    assert layer.pop_events() == [RequestReceived(transaction, request)]
    monkeypatch.undo()
    merged = _request(OPTIONS.replace(b"branch=z9hG4bK-1", b"branch=z9hG4bK-other"))
    merged.check_essentials()
    layer.receive_request(merged, 0.0, reliable=False, destination=PEER)
    events = layer.pop_events()
    assert [type(event) for event in events] == [Send, TransactionTerminated]
    assert isinstance(events[0], Send) and events[0].message.status_code == 482  # type: ignore[union-attr]


@pytest.mark.parametrize("shape", ["unparsed", "stale", "no Call-ID", "To tag", "CANCEL"])
def test_other_requests_take_the_merge_key_function(shape: str) -> None:
    """Requests the inline merge key does not take (views not parsed, headers changed since
    parsed, no Call-ID, a To tag, a CANCEL) are read by ``_merge_key`` as before: each is
    served, and only the first two, outside a dialog, merge with a copy on another
    branch."""
    data = OPTIONS
    if shape == "no Call-ID":
        data = b"".join(line for line in OPTIONS.splitlines(True) if b"Call-ID" not in line)
    elif shape == "To tag":
        data = OPTIONS.replace(b"To: sut <sip:uas@127.0.0.1:5060>", b"To: <sip:u@h>;tag=t1")
    elif shape == "CANCEL":
        data = OPTIONS.replace(b"OPTIONS sip:", b"CANCEL sip:", 1).replace(
            b"1 OPTIONS", b"1 CANCEL"
        )
    layer = TransactionLayer()

    def received(branch: bytes) -> list[object]:
        request = _request(data.replace(b"branch=z9hG4bK-1", branch))
        if shape != "unparsed" and shape != "no Call-ID":
            request.to, request.from_, request.cseq  # noqa: B018 - parsed, as on receipt
        if shape == "stale":
            request.headers["Subject"] = "changed"
            assert request.headers.first is STALE
        layer.receive_request(request, 0.0, reliable=False, destination=PEER)
        return [type(event) for event in layer.pop_events()]

    assert RequestReceived in received(b"branch=z9hG4bK-a")
    merges = shape in ("unparsed", "stale")
    assert (RequestReceived not in received(b"branch=z9hG4bK-b")) is merges


def test_a_final_response_as_bytes_is_recorded_without_record_or_timer_j(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``respond_serialised`` over UDP puts the record in place itself (no ``_record``, no
    ``TimerConfig.timer_j`` call): Resend then TransactionTerminated, the object
    Terminated and emptied, Timer J 64·T1 from now, a retransmission answered with the
    same bytes until then and served as new after it."""
    layer = TransactionLayer()
    request = _request()
    request.check_essentials()
    transaction = layer.receive_request(request, 1.0, reliable=False, destination=PEER)
    assert isinstance(transaction, NonInviteServerTransaction)
    layer.pop_events()
    data = final_response_bytes(request, 200, to_tag="t11")
    assert data is not None
    monkeypatch.setattr(TransactionLayer, "_record", _refused)
    monkeypatch.setattr(TimerConfig, "timer_j", _refused)
    assert transaction.respond_serialised(200, data, 2.0)
    assert layer.pop_events() == [Resend(data, PEER, None), TransactionTerminated(transaction)]
    assert transaction.state is TransactionState.TERMINATED
    assert transaction.last_response is None
    with pytest.raises(RuntimeError, match="released its request"):
        transaction.request  # noqa: B018
    assert layer.next_deadline() == 2.0 + 64 * DEFAULT_TIMERS.t1
    assert layer.take_soonest_armed() == 2.0 + 64 * DEFAULT_TIMERS.t1
    monkeypatch.undo()
    again = _request()
    assert layer.receive_request(again, 3.0, reliable=False, destination=PEER) is None
    assert layer.pop_events() == [Resend(data, PEER, None)]
    layer.handle_timers(2.0 + 64 * DEFAULT_TIMERS.t1)
    late = _request()
    assert layer.receive_request(late, 40.0, reliable=False, destination=PEER) is not None
    assert RequestReceived in [type(event) for event in layer.pop_events()]
