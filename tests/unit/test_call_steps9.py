"""The UAS call path of issue 14's ninth pass, pinned as behaviour (nothing here times).

* An answered call notes when its session timer started and makes the timer's task only
  when the call is made idle or the timer is read: a call hung up right after its ACK makes
  none; one held refreshes on time.
* ``wait_ended()`` and ``wait_acked()`` park on a :class:`~sipx._trio.moment.Moment` (no
  ``trio.Event``); every waiter is woken, a cancelled one leaves.
* ``SDPBody.create_answer`` remembers the answers to recent offers: the same offer answered
  again is a copy (its own o= line, its own lists), not worked out again.
* A new call's To tag is its own: the UAS's tag map does not keep it, and a tag a CANCEL's
  487 took first is the call's.
* The 2xx's give-up callback is one ``functools.partial`` (no closure and cells per call).

Each test checks what went on the wire or what the call holds, and fails if the change is
reverted.
"""

from __future__ import annotations

import functools
import gc
from typing import Any

import pytest
import trio
import trio.testing
from test_call_answer_cost import _ack, _answered
from test_uas_call_path import OFFER, PEER, _receive, _request

import sipx
import sipx._call
import sipx._core.sdp
import sipx._uas
from sipx import SDPBody
from sipx._core.parser import parse_message
from sipx._idle_calls import BATCH, IDLE_AFTER
from sipx._session_timer import SessionTimerTask
from sipx.testing import MemoryNetwork


class _CountedTask(SessionTimerTask):
    made = 0

    def __init__(self, *args: Any) -> None:
        _CountedTask.made += 1
        super().__init__(*args)


def _target(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"


async def test_a_call_hung_up_after_its_ack_makes_no_session_timer_task(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """The 200 carries the session interval as before; the call hung up right after its
    ACK never made the timer's task; one whose timer is read makes it then (not in the
    heap before the call is idle), and its deadline enters the heap when it is made idle.
    (Its refresh: test_call_answer_steps.py.)"""
    monkeypatch.setattr(sipx._call, "SessionTimerTask", _CountedTask)
    _CountedTask.made = 0
    network = MemoryNetwork(seed=1)
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(PEER) as peer,
    ):
        address = next(a for a in network.bound_addresses if a != PEER)
        call, ok = await _answered(client, peer, address, 1)
        assert ok.headers.get_first("Session-Expires") == "1800;refresher=uas"
        _ack(peer, address, 1, ok)
        await call.wait_acked()
        peer.send(_request("BYE", _target(address), 1, to_tag=ok.to.tag or "", cseq=2), address)
        (bye_ok,) = await _receive(peer, 1)
        assert (bye_ok.status_code, call.ended_by) == (200, "remote")
        assert _CountedTask.made == 0

        held, held_ok = await _answered(client, peer, address, 2)
        assert _CountedTask.made == 0
        assert (held.session_expires, held.session_refresher) == (1800, "local")
        assert _CountedTask.made == 1
        assert len(client._uas.session_timers) == 0  # not in the heap before it is idle
        _ack(peer, address, 2, held_ok)
        await trio.sleep(IDLE_AFTER + BATCH + 0.01)
        assert len(client._uas.session_timers) == 1
        assert _CountedTask.made == 1


async def test_waiting_for_the_end_and_the_ack_holds_no_trio_event(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two tasks wait for the ACK and two for the end: the call holds no ``trio.Event``;
    the ACK wakes the first two, the BYE the other two, with who ended the call."""
    network = MemoryNetwork(seed=1)
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(PEER) as peer,
    ):
        address = next(a for a in network.bound_addresses if a != PEER)
        call, ok = await _answered(client, peer, address, 1)
        woken: list[str] = []

        async def acked(name: str) -> None:
            await call.wait_acked()
            woken.append(name)

        async def ended(name: str) -> None:
            woken.append(f"{name}:{await call.wait_ended()}")

        async with trio.open_nursery() as nursery:
            for name in ("ack1", "ack2"):
                nursery.start_soon(acked, name)
            for name in ("end1", "end2"):
                nursery.start_soon(ended, name)
            await trio.testing.wait_all_tasks_blocked()
            assert not any(isinstance(obj, trio.Event) for obj in gc.get_referents(call))
            assert call._ended_event is not None and call._ended_event.waiting == 2
            assert call._acked_event is not None and call._acked_event.waiting == 2
            _ack(peer, address, 1, ok)
            await trio.testing.wait_all_tasks_blocked()
            assert sorted(woken) == ["ack1", "ack2"]
            assert call._acked_event is None  # came for good: not kept
            bye = _request("BYE", _target(address), 1, to_tag=ok.to.tag or "", cseq=2)
            peer.send(bye, address)
        assert sorted(woken) == ["ack1", "ack2", "end1:remote", "end2:remote"]


async def test_a_cancelled_wait_for_the_end_leaves_the_others_waiting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(seed=1)
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(PEER) as peer,
    ):
        address = next(a for a in network.bound_addresses if a != PEER)
        call, ok = await _answered(client, peer, address, 1)
        results: list[str] = []

        async def waits(name: str, scope: trio.CancelScope) -> None:
            with scope:
                results.append(f"{name}:{await call.wait_ended()}")
                return
            results.append(f"{name}:cancelled")

        first, second, third = trio.CancelScope(), trio.CancelScope(), trio.CancelScope()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waits, "first", first)
            nursery.start_soon(waits, "second", second)
            nursery.start_soon(waits, "third", third)
            await trio.testing.wait_all_tasks_blocked()
            moment = call._ended_event
            assert moment is not None and moment.waiting == 3
            second.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert moment.waiting == 2 and results == ["second:cancelled"]
            first.cancel()
            third.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert moment.waiting == 0
        # Waiting again after every waiter left: woken by the end as before.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waits, "late", trio.CancelScope())
            await trio.testing.wait_all_tasks_blocked()
            _ack(peer, address, 1, ok)
            peer.send(_request("BYE", _target(address), 1, to_tag=ok.to.tag or "", cseq=2), address)
        assert results[0] == "second:cancelled"
        assert sorted(results[1:3]) == ["first:cancelled", "third:cancelled"]
        assert results[3:] == ["late:remote"]
        assert await call.wait_ended() == "remote"  # ended: returns at once


def test_the_same_offer_answered_again_is_a_copy_of_the_remembered_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The second answer to the same offer is not worked out again (the codec choice is
    not made), has the same lines but its own o= line and its own lists; a different
    port, direction or stream gets its own answer; supported codecs given as a list are
    worked out every time."""
    offer = SDPBody.parse(OFFER.encode())
    kw: dict[str, Any] = {
        "origin_username": "uas",
        "origin_address": "127.0.0.1",
        "connection_address": "127.0.0.1",
        "port": 9,
        "direction": "inactive",
    }
    first = SDPBody.create_answer(offer, session_id=11, **kw)

    def worked_out(*args: object) -> object:
        raise AssertionError("the answer was worked out again")

    monkeypatch.setattr(sipx._core.sdp, "_answer_codecs", worked_out)
    second = SDPBody.create_answer(SDPBody.parse(OFFER.encode()), session_id=12, **kw)
    assert first.to_bytes().replace(b" 11 11 ", b" 12 12 ") == second.to_bytes()
    assert b"m=audio 9 RTP/AVP 0\r\n" in second.to_bytes()
    assert b"a=inactive\r\n" in second.to_bytes()
    assert second.media[0] is not first.media[0]
    assert second.media[0].attributes is not first.media[0].attributes
    second.media[0].attributes.append(("rtcp-mux", None))
    second.media[0].port = 4000
    third = SDPBody.create_answer(offer, session_id=11, **kw)
    assert third.to_bytes() == first.to_bytes()  # the remembered answer is unchanged
    monkeypatch.undo()
    other_port = SDPBody.create_answer(offer, session_id=11, **{**kw, "port": 7000})
    assert b"m=audio 7000 " in other_port.to_bytes()
    sendrecv = SDPBody.create_answer(offer, session_id=11, **{**kw, "direction": None})
    assert b"a=sendrecv\r\n" in sendrecv.to_bytes()
    two = SDPBody.parse((OFFER + "m=video 6002 RTP/AVP 31\r\n").encode())
    assert len(SDPBody.create_answer(two, session_id=11, **kw).media) == 2
    listed = [{"name": "PCMU", "rate": 8000}]
    calls = 0
    original = sipx._core.sdp._answer_codecs

    def counted(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        return original(*args)

    monkeypatch.setattr(sipx._core.sdp, "_answer_codecs", counted)
    for _ in range(2):
        SDPBody.create_answer(offer, supported_codecs=listed, session_id=11, **kw)
    assert calls == 2


async def test_a_new_calls_to_tag_is_not_kept_in_the_tag_map(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """While a call waits to be answered the UAS's tag map is empty; the 200 and the
    dialog carry the call's tag, the BYE finds it, nothing is left in the map."""
    network = MemoryNetwork(seed=1)
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(PEER) as peer,
    ):
        address = next(a for a in network.bound_addresses if a != PEER)
        uas = client._uas
        seen: list[int] = []
        calls: list[sipx.Call] = []
        async with trio.open_nursery() as nursery:

            async def answer_one() -> None:
                async for call in client.calls():
                    seen.append(len(uas._tags))
                    calls.append(call)
                    call.answer(SDPBody.parse(OFFER.replace("6000", "9")))
                    return

            nursery.start_soon(answer_one)
            await trio.testing.wait_all_tasks_blocked()
            peer.send(_request("INVITE", _target(address), 1, body=OFFER), address)
            (ok,) = await _receive(peer, 1)
        (call,) = calls
        assert seen == [0]
        assert ok.to.tag == call.local_tag
        assert call.dialog is not None and call.dialog.local_tag == call.local_tag
        _ack(peer, address, 1, ok)
        peer.send(_request("BYE", _target(address), 1, to_tag=ok.to.tag or "", cseq=2), address)
        (bye_ok,) = await _receive(peer, 1)
        assert (bye_ok.status_code, call.ended_by) == (200, "remote")
        assert uas._tags == {}


def test_a_tag_given_to_a_487_first_is_the_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CANCEL answered before its INVITE was served put the 487's tag in the map: the
    call made later takes it out and keeps it."""
    invite = parse_message(_request("INVITE", "127.0.0.1:5060", 7, body=OFFER))
    assert isinstance(invite, sipx.Request)

    class _Ids:
        n = 0

        def tag(self) -> str:
            _Ids.n += 1
            return f"t{_Ids.n}"

    class _Engine:
        ids = _Ids()

    uas = object.__new__(sipx._uas.UserAgentServer)
    uas.engine = _Engine()  # type: ignore[assignment]
    uas._tags = {}
    given = uas.local_tag(invite)  # what _cancel's 487 does
    assert uas.call_tag(invite) == given
    assert uas._tags == {}
    assert uas.call_tag(invite) != given  # a new call: a new tag, not stored
    assert uas._tags == {}


async def test_the_2xx_give_up_callback_is_one_partial_and_still_ends_the_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A 2xx never ACKed: its entry's callback is a partial (no closure); after 64·T1 the
    call ends "timeout" (and sends its BYE, through the Record-Route: not to this peer)."""
    network = MemoryNetwork(seed=1)
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(PEER) as peer,
    ):
        address = next(a for a in network.bound_addresses if a != PEER)
        call, _ok = await _answered(client, peer, address, 1)
        engine = client._engine
        (entry,) = engine._retransmits.values()
        assert isinstance(entry[1], functools.partial)
        await trio.sleep(64 * 0.5 + 1)
        assert call.ended_by == "timeout"
        assert engine._retransmits == {}
