"""The UAS call path of issue 14's thirteenth pass, pinned as behaviour (nothing here times).

* A plain INVITE handler runs as the INVITE arrives, on the receive path: its 200 (or
  reject, or 500 when it raises) is sent before the datagram's handling returns, with no
  task. An async handler, or an awaitable a plain one returns, still runs in a task.
* Timer T (the 100 Trying's delay) of an INVITE answered as it arrived leaves the timer
  heap at once: nothing keeps the answered transaction alive for 200 ms.

The datagrams are handed straight to the client's receive path (``Engine._on_message``)
and what it sends is kept in a list, as ``bench/bench_receive_direct.py`` does: what is
sent before that call returns was sent without any task running.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import trio
import trio.testing
from test_uas_call_path import OFFER, PEER, _request

import sipx
from sipx import SDPBody
from sipx._core.message import Response
from sipx._core.parser import parse_message
from sipx._core.transaction import TRYING_DELAY

ANSWER = OFFER.replace("6000", "9")

Receive = Callable[[bytes], None]


class Direct:
    """A client whose receive path is fed directly; what it sends is parsed into ``sent``."""

    def __init__(self, client: sipx.AsyncClient) -> None:
        self.client = client
        engine = client._engine
        transport = engine.transports["UDP"]
        self.sent: list[Response] = []
        transport.send_nowait = lambda data, address: self.sent.append(parse_message(data))  # type: ignore[method-assign]
        self._on_message = engine._on_message
        self._transport = transport
        address = client.local_address
        self.target = f"{address.host}:{address.port}"

    def receive(self, data: bytes) -> None:
        self._on_message(data, PEER, self._transport)

    def statuses(self) -> list[int]:
        return [response.status_code for response in self.sent]


def _cancel(invite: bytes) -> bytes:
    """The CANCEL of ``invite`` (RFC 3261 9.1: its Request-URI, Via branch, CSeq number)."""
    head = invite.decode().split("Content-Type")[0]
    branch = head.split("branch=")[1].split(";")[0]
    cancel = head.replace("INVITE", "CANCEL").replace(
        "branch=" + branch.replace("INVITE", "CANCEL"), "branch=" + branch
    )
    return (cancel + "Content-Length: 0\r\n\r\n").encode()


@pytest.fixture
async def direct() -> AsyncIterator[Direct]:
    async with sipx.AsyncClient("127.0.0.1", 0) as client:
        yield Direct(client)


async def test_a_plain_handler_answers_before_the_invite_s_handling_returns(
    direct: Direct,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The worker's handler: its 200 is out when ``_on_message`` returns (no task ran);
    the ACK stops its retransmission and the BYE ends the call."""
    calls: list[sipx.Call] = []

    def on_invite(call: sipx.Call) -> None:
        calls.append(call)
        assert not call.ended
        call.answer(SDPBody.parse(ANSWER))

    direct.client.on_request("INVITE", on_invite)
    direct.receive(_request("INVITE", direct.target, 1, body=OFFER))
    assert direct.statuses() == [200]  # at once, with no checkpoint in between
    (ok,) = direct.sent
    assert ok.cseq.method == "INVITE" and ok.to.tag == calls[0].local_tag
    assert b"m=audio 9 RTP/AVP" in ok.content
    retransmitter = direct.client._engine.retransmitter
    assert len(retransmitter) == 1
    direct.receive(_request("ACK", direct.target, 1, to_tag=ok.to.tag or ""))
    assert calls[0].acked and len(retransmitter) == 0
    direct.receive(_request("BYE", direct.target, 1, to_tag=ok.to.tag or "", cseq=2))
    assert direct.statuses() == [200, 200] and calls[0].ended_by == "remote"


async def test_a_plain_handler_that_rejects_sends_its_final_response_at_once(
    direct: Direct,
    autojump_clock: trio.testing.MockClock,
) -> None:
    direct.client.on_request("INVITE", lambda call: call.reject(486))
    direct.receive(_request("INVITE", direct.target, 2, body=OFFER))
    assert direct.statuses() == [486]
    direct.receive(_request("ACK", direct.target, 2, to_tag=direct.sent[0].to.tag or ""))
    await trio.testing.wait_all_tasks_blocked()
    assert direct.statuses() == [486]  # the ACK of a non-2xx is the transaction's


async def test_a_plain_handler_that_raises_gets_a_500_at_once_and_is_logged(
    direct: Direct, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    def on_invite(call: sipx.Call) -> None:
        raise RuntimeError("boom")

    direct.client.on_request("INVITE", on_invite)
    with caplog.at_level(logging.ERROR, logger="sipx"):
        direct.receive(_request("INVITE", direct.target, 3, body=OFFER))
    assert direct.statuses() == [500]
    assert "handler for INVITE failed" in caplog.text and "boom" in caplog.text


async def test_a_plain_handler_that_raises_after_answering_keeps_its_answer(
    direct: Direct,
    autojump_clock: trio.testing.MockClock,
) -> None:
    def on_invite(call: sipx.Call) -> None:
        call.answer(SDPBody.parse(ANSWER))
        raise RuntimeError("after the answer")

    direct.client.on_request("INVITE", on_invite)
    direct.receive(_request("INVITE", direct.target, 4, body=OFFER))
    await trio.testing.wait_all_tasks_blocked()
    assert direct.statuses() == [200]


async def test_a_plain_handler_may_leave_the_call_to_another_task(
    autojump_clock: trio.testing.MockClock, direct: Direct
) -> None:
    """Nothing answered in the handler: no 500; answered later from a task, with its 100
    Trying sent by Timer T meanwhile (so no heap entry was dropped early)."""
    calls: list[sipx.Call] = []
    direct.client.on_request("INVITE", calls.append)
    direct.receive(_request("INVITE", direct.target, 5, body=OFFER))
    await trio.testing.wait_all_tasks_blocked()
    assert direct.statuses() == []
    await trio.sleep(TRYING_DELAY + 0.05)
    assert direct.statuses() == [100]
    (call,) = calls
    call.answer(SDPBody.parse(ANSWER))
    assert direct.statuses() == [100, 200]


async def test_a_call_left_unanswered_by_a_plain_handler_ends_on_cancel(
    direct: Direct,
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls: list[sipx.Call] = []
    direct.client.on_request("INVITE", calls.append)
    invite = _request("INVITE", direct.target, 6, body=OFFER)
    direct.receive(invite)
    direct.receive(_cancel(invite))
    assert sorted(direct.statuses()) == [200, 487]
    assert calls[0].ended and calls[0].ended_by == "cancel"


async def test_an_async_handler_still_runs_in_a_task(
    direct: Direct, autojump_clock: trio.testing.MockClock
) -> None:
    seen: list[bool] = []

    async def on_invite(call: sipx.Call) -> None:
        seen.append(call.ended)
        await trio.sleep(0)
        call.answer(SDPBody.parse(ANSWER))

    direct.client.on_request("INVITE", on_invite)
    direct.receive(_request("INVITE", direct.target, 7, body=OFFER))
    assert direct.statuses() == [] and seen == []  # not run yet: a task of its own
    await trio.testing.wait_all_tasks_blocked()
    assert direct.statuses() == [200] and seen == [False]


async def test_an_async_handler_a_cancel_ended_sees_the_call_ended(
    direct: Direct, autojump_clock: trio.testing.MockClock
) -> None:
    """The INVITE and its CANCEL in one go: the task starts after both, the call ended."""
    seen: list[bool] = []

    async def on_invite(call: sipx.Call) -> None:
        seen.append(call.ended)

    direct.client.on_request("INVITE", on_invite)
    invite = _request("INVITE", direct.target, 8, body=OFFER)
    direct.receive(invite)
    direct.receive(_cancel(invite))
    await trio.testing.wait_all_tasks_blocked()
    assert seen == [True] and sorted(direct.statuses()) == [200, 487]


async def test_a_coroutine_a_plain_handler_returns_is_awaited_in_a_task(
    direct: Direct, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async def answer_later(call: sipx.Call) -> None:
        await trio.sleep(0)
        call.answer(SDPBody.parse(ANSWER))

    async def fail_later(call: sipx.Call) -> None:
        await trio.sleep(0)
        raise RuntimeError("later")

    direct.client.on_request("INVITE", lambda call: answer_later(call))
    direct.receive(_request("INVITE", direct.target, 9, body=OFFER))
    assert direct.statuses() == []
    await trio.testing.wait_all_tasks_blocked()
    assert direct.statuses() == [200]
    direct.client.on_request("INVITE", lambda call: fail_later(call))
    with caplog.at_level(logging.ERROR, logger="sipx"):
        direct.receive(_request("INVITE", direct.target, 10, body=OFFER))
        await trio.testing.wait_all_tasks_blocked()
    assert direct.statuses() == [200, 500]
    assert "handler for INVITE failed" in caplog.text


async def test_an_invite_answered_as_it_arrived_leaves_no_timer_t_entry(
    direct: Direct,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Timer T's heap entry goes with the answer: the answered transaction is not held
    by the heap for the 100 Trying's 200 ms."""
    layer = direct.client._engine.layer
    transactions: list[Any] = []

    def on_invite(call: sipx.Call) -> None:
        transactions.append(call.transaction)
        call.answer(SDPBody.parse(ANSWER))

    direct.client.on_request("INVITE", on_invite)
    before = len(layer._heap)
    for i in range(20, 25):
        direct.receive(_request("INVITE", direct.target, i, body=OFFER))
    assert direct.statuses() == [200] * 5
    assert len(layer._heap) == before  # (the parent kept five stale entries)
    assert not any(entry[3] is t for entry in layer._heap for t in transactions)
    assert layer._stale == 0


async def test_timer_t_still_sends_the_100_when_other_timers_were_armed_since(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two INVITEs left unanswered, then the first answered: its Timer T entry is not the
    heap's last (kept, counted stale) and the second still gets its 100 Trying."""
    async with sipx.AsyncClient("127.0.0.1", 0) as client:
        direct = Direct(client)
        calls: list[sipx.Call] = []
        client.on_request("INVITE", calls.append)
        direct.receive(_request("INVITE", direct.target, 30, body=OFFER))
        direct.receive(_request("INVITE", direct.target, 31, body=OFFER))
        await trio.testing.wait_all_tasks_blocked()
        layer = client._engine.layer
        armed = len(layer._heap)
        calls[0].answer(SDPBody.parse(ANSWER))
        assert len(layer._heap) == armed and layer._stale == 1
        await trio.sleep(TRYING_DELAY + 0.01)
        assert direct.statuses() == [200, 100]
        assert direct.sent[1].call_id == "31@peer"


async def test_an_async_handler_answering_first_also_drops_its_timer_t_entry(
    direct: Direct,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """One INVITE, answered by an async handler before anything else was armed: its
    Timer T entry is still the heap's last, and goes with the answer."""
    layer = direct.client._engine.layer

    async def on_invite(call: sipx.Call) -> None:
        call.answer(SDPBody.parse(ANSWER))

    direct.client.on_request("INVITE", on_invite)
    before = len(layer._heap)
    direct.receive(_request("INVITE", direct.target, 40, body=OFFER))
    assert len(layer._heap) == before + 1  # Timer T, armed
    await trio.testing.wait_all_tasks_blocked()
    assert direct.statuses() == [200]
    assert len(layer._heap) == before and layer._stale == 0


def _parsed(data: bytes) -> Any:
    return parse_message(data)


async def test_our_contact_is_made_once_per_transport_and_user(
    direct: Direct, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Contact of our 200s: worked out for the first call, then the same string for
    every call of that user over that transport (``contact_host`` not called again)."""
    next_hop = direct.client._next_hop
    made: list[str] = []
    original = type(next_hop).contact

    def contact(self: Any, *args: Any) -> str:
        made.append(original(self, *args))
        return made[-1]

    monkeypatch.setattr(type(next_hop), "contact", contact)
    direct.client.on_request("INVITE", lambda call: call.answer(SDPBody.parse(ANSWER)))
    for i in range(50, 53):
        direct.receive(_request("INVITE", direct.target, i, body=OFFER))
    await trio.testing.wait_all_tasks_blocked()
    expected = f"<sip:uas@{direct.target}>"
    assert [ok.headers.get_first("Contact") for ok in direct.sent] == [expected] * 3
    assert made == [expected]
    other = _request("INVITE", direct.target, 53, body=OFFER).replace(b"sip:uas@", b"sip:bob@", 1)
    direct.receive(other)
    await trio.testing.wait_all_tasks_blocked()
    assert direct.sent[-1].headers.get_first("Contact") == f"<sip:bob@{direct.target}>"
    assert len(made) == 2


async def test_our_contact_follows_a_public_address_learned(
    direct: Direct, autojump_clock: trio.testing.MockClock
) -> None:
    """received/rport learned from a response toward the last destination: the next
    Contact names that address (the kept ones are dropped), as before."""
    next_hop = direct.client._next_hop
    invite = _parsed(_request("INVITE", direct.target, 60, body=OFFER))
    assert next_hop.contact_for(invite) == f"<sip:uas@{direct.target}>"
    next_hop.last_destination = "203.0.113.5"
    assert next_hop.contact_for(invite) == f"<sip:uas@{direct.target}>"
    port = direct.client.local_address.port
    response = _parsed(
        (
            f"SIP/2.0 200 OK\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-x;received=198.51.100.7"
            f";rport=5070\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\n"
            f"Call-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        ).encode()
    )
    next_hop.learn_public_address(response, ("203.0.113.5", 0))
    assert next_hop.contact_for(invite) == "<sip:uas@198.51.100.7:5070>"
    next_hop.last_destination = "127.0.0.1"
    assert next_hop.contact_for(invite) == f"<sip:uas@{direct.target}>"


async def test_a_call_answered_the_worker_s_way_makes_no_isinstance_call_in_call_py(
    direct: Direct, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Call's slots (INVITE, final response, SDPs, session timer) are read with a
    type test, not an ``isinstance`` call each (several per call): one is left, answer()'s
    test of the body given."""
    import sipx._call as call_module

    seen: list[object] = []

    def counted(value: object, kind: Any) -> bool:
        seen.append(kind)
        return isinstance(value, kind)

    monkeypatch.setattr(call_module, "isinstance", counted, raising=False)

    def on_invite(call: sipx.Call) -> None:
        call.answer(SDPBody.parse(ANSWER))

    direct.client.on_request("INVITE", on_invite)
    direct.receive(_request("INVITE", direct.target, 70, body=OFFER))
    await trio.testing.wait_all_tasks_blocked()
    (ok,) = direct.sent
    tag = ok.to.tag or ""
    direct.receive(_request("ACK", direct.target, 70, to_tag=tag))
    direct.receive(_request("BYE", direct.target, 70, to_tag=tag, cseq=2))
    assert direct.statuses() == [200, 200]
    assert seen == [SDPBody]


async def test_a_call_answered_reads_its_dialog_id_four_times_and_no_timer_task(
    direct: Direct, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's call (session timers on, the INVITE silent about them): the dialog's
    id is read once where the dialog is made, once for the 2xx's resending, once where
    the BYE ends it, once where the call ends (was 6); the session timer, only noted by
    the 200 (the call hung up before it is made idle), is never asked for its task."""
    from sipx._call import Call
    from sipx._core.dialog import Dialog

    reads = {"id": 0, "task": 0}
    dialog_id = Dialog.id
    timer_task = Call._timer_task

    def counted_id(self: Dialog) -> Any:
        reads["id"] += 1
        return dialog_id.fget(self)  # type: ignore[attr-defined]

    def counted_task(self: Call) -> Any:
        reads["task"] += 1
        return timer_task(self)

    monkeypatch.setattr(Dialog, "id", property(counted_id))
    monkeypatch.setattr(Call, "_timer_task", counted_task)
    calls: list[sipx.Call] = []

    def on_invite(call: sipx.Call) -> None:
        calls.append(call)
        call.answer(SDPBody.parse(ANSWER))

    direct.client.on_request("INVITE", on_invite)
    direct.receive(_request("INVITE", direct.target, 80, body=OFFER))
    await trio.testing.wait_all_tasks_blocked()  # (on a parent tree, the handler's task)
    (ok,) = direct.sent
    assert ok.headers.get_first("Session-Expires") is not None
    assert type(calls[0]._session_timer) is tuple  # noted: (interval, we_refresh, started)
    tag = ok.to.tag or ""
    direct.receive(_request("ACK", direct.target, 80, to_tag=tag))
    direct.receive(_request("BYE", direct.target, 80, to_tag=tag, cseq=2))
    assert direct.statuses() == [200, 200] and calls[0].ended_by == "remote"
    assert reads == {"id": 4, "task": 0}


async def test_a_dialog_s_only_2xx_key_is_indexed_without_a_list(
    direct: Direct, autojump_clock: trio.testing.MockClock
) -> None:
    """The index of 2xx retransmissions by dialog holds a dialog's only key as it is (no
    list made and emptied per call); with two keys in one dialog, a list, and ending the
    dialog stops both; the ACK of one leaves the other alone."""
    engine = direct.client._engine
    calls: list[sipx.Call] = []

    def on_invite(call: sipx.Call) -> None:
        calls.append(call)
        call.answer(SDPBody.parse(ANSWER))

    direct.client.on_request("INVITE", on_invite)
    direct.receive(_request("INVITE", direct.target, 90, body=OFFER))
    await trio.testing.wait_all_tasks_blocked()  # (on a parent tree, the handler's task)
    dialog = calls[0].dialog
    assert dialog is not None
    key = (dialog.id, 1)
    assert engine._retransmit_keys == {dialog.id: key}
    transaction, on_timeout, _ = engine._retransmits[key]
    response = direct.sent[0]
    engine.retransmit_2xx((dialog.id, 2), transaction, response, on_timeout)
    engine.retransmit_2xx((dialog.id, 3), transaction, response, on_timeout)
    assert engine._retransmit_keys == {dialog.id: [key, (dialog.id, 2), (dialog.id, 3)]}
    assert engine.acked((dialog.id, 2))
    assert engine._retransmit_keys == {dialog.id: [key, (dialog.id, 3)]}
    assert engine.acked(key)
    assert engine._retransmit_keys == {dialog.id: (dialog.id, 3)}
    engine.retransmit_2xx((dialog.id, 4), transaction, response, on_timeout)
    engine.cancel_retransmits(dialog.id)
    assert engine._retransmit_keys == {} and engine._retransmits == {}
    assert len(engine.retransmitter) == 0
    engine.retransmit_2xx(key, transaction, response, on_timeout)
    assert engine.acked(key) and engine._retransmit_keys == {}
    assert not engine.acked(key)


async def test_answer_writes_the_call_s_slots_without_its_properties(
    direct: Direct, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """answer() sets the SDPs and the final response in the slots and tests the offer and
    an earlier answer there: of the properties only what the handler reads (the offer,
    twice in the worker's ``no_media_sdp``) and _answered's read of the offer are left."""
    from sipx._call import Call

    used: list[str] = []
    for name in ("offer", "answer_sdp", "local_sdp", "final_response"):
        prop = getattr(Call, name)

        def getter(self: Call, _prop: Any = prop, _name: str = name) -> Any:
            used.append(f"get {_name}")
            return _prop.fget(self)

        def setter(self: Call, value: Any, _prop: Any = prop, _name: str = name) -> None:
            used.append(f"set {_name}")
            _prop.fset(self, value)

        monkeypatch.setattr(Call, name, property(getter, setter))
    from examples.dispatcher_worker import no_media_sdp

    host = direct.client.local_address.host
    direct.client.on_request("INVITE", lambda call: call.answer(body=no_media_sdp(call, host)))
    direct.receive(_request("INVITE", direct.target, 100, body=OFFER))
    await trio.testing.wait_all_tasks_blocked()  # (on a parent tree, the handler's task)
    assert direct.statuses() == [200]
    assert used == ["get offer", "get offer", "get offer"]
    (call,) = direct.client._engine.calls.values()
    assert call.final_response is not None and call.final_response.status_code == 200
    assert call.local_sdp is call.answer_sdp and call.offer is not None
    with pytest.raises(sipx.ProtocolError, match="already answered with 200"):
        call.reject(486)


async def test_our_contact_is_not_given_once_the_client_closed() -> None:
    """A Contact kept from before: a closed client still refuses to make one."""
    async with sipx.AsyncClient("127.0.0.1", 0) as client:
        direct = Direct(client)
        invite = _parsed(_request("INVITE", direct.target, 110, body=OFFER))
        assert client._next_hop.contact_for(invite) == f"<sip:uas@{direct.target}>"
    with pytest.raises(sipx.ClientClosedError):
        client._next_hop.contact_for(invite)


async def test_a_plain_handler_returning_none_costs_no_isawaitable_call(
    direct: Direct, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's handler returns None: that is not awaitable, and the check for it
    (``inspect.isawaitable``, an ABC check) is not made. What is returned otherwise is
    still checked (a coroutine is awaited in a task: the test above)."""
    import inspect

    asked: list[object] = []

    def isawaitable(value: object) -> bool:
        asked.append(value)
        return inspect.iscoroutine(value)

    monkeypatch.setattr("sipx._uas.inspect.isawaitable", isawaitable)

    def answer(call: sipx.Call) -> None:
        call.answer(SDPBody.parse(ANSWER))

    direct.client.on_request("INVITE", answer)
    direct.receive(_request("INVITE", direct.target, 1, body=OFFER))
    assert direct.statuses() == [200]
    assert asked == []

    def answer_returning_true(call: sipx.Call) -> bool:
        call.answer(SDPBody.parse(ANSWER))
        return True

    direct.client.on_request("INVITE", answer_returning_true)
    direct.receive(_request("INVITE", direct.target, 2, body=OFFER))
    assert direct.statuses() == [200, 200]
    assert asked == [True]
