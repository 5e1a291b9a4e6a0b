"""The UAS call path of issue 14's twelfth pass, pinned as behaviour (nothing here times).

* A call that ends before it is made idle (a BYE right after the ACK) leaves the
  idle-calls queue as it ends: its objects are freed then, not ``IDLE_AFTER`` later by
  the queue's task (``sipx/_idle_calls.py``). A call still up is compacted as before.
"""

from __future__ import annotations

import gc
import weakref

import trio
import trio.testing
from test_uas_call_path import OFFER, PEER, _receive, _request

import sipx
from sipx import CallState, SDPBody
from sipx._idle_calls import BATCH, IDLE_AFTER
from sipx.testing import MemoryNetwork

ANSWER = OFFER.replace("6000", "9")


async def _serve(client: sipx.AsyncClient, answered: list[weakref.ref[sipx.Call]]) -> None:
    """The worker's way: a plain INVITE handler answers; only a weak reference is kept."""

    def on_invite(call: sipx.Call) -> None:
        answered.append(weakref.ref(call))
        call.answer(SDPBody.parse(ANSWER))

    client.on_request("INVITE", on_invite)


async def test_a_call_hung_up_after_its_ack_is_freed_as_it_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """INVITE, 200, ACK, BYE at once: right after the BYE's 200 nothing holds the call
    (reference counting freed it, no collection needed), though its turn in the queue has
    not come; the queue's task then skips the emptied entry and ends."""
    network = MemoryNetwork(seed=1)
    answered: list[weakref.ref[sipx.Call]] = []
    gc.disable()
    try:
        async with (
            sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
            network.socket(PEER) as peer,
        ):
            await _serve(client, answered)
            address = next(a for a in network.bound_addresses if a != PEER)
            target = f"{address[0]}:{address[1]}"
            t0 = trio.current_time()
            peer.send(_request("INVITE", target, 1, body=OFFER), address)
            (ok,) = await _receive(peer, 1)
            assert ok.status_code == 200 and len(answered) == 1
            tag = ok.to.tag or ""
            peer.send(_request("ACK", target, 1, to_tag=tag), address)
            peer.send(_request("BYE", target, 1, to_tag=tag, cseq=2), address)
            (bye_ok,) = await _receive(peer, 1)
            assert (bye_ok.status_code, bye_ok.cseq.method) == (200, "BYE")
            await trio.testing.wait_all_tasks_blocked()
            assert trio.current_time() - t0 < IDLE_AFTER  # its turn has not come
            idle = client._uas.idle_calls
            assert len(idle) == 1  # the emptied entry waits for its turn
            assert answered[0]() is None  # but the call is gone
            await trio.sleep(IDLE_AFTER + BATCH + 0.01)
            assert len(idle) == 0
    finally:
        gc.enable()


async def test_a_call_still_up_nobody_holds_is_compacted_and_hung_up_as_before(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A call the handler let go, ACKed (and the ACK retransmitted) but not hung up: the
    client still holds it, by ``IDLE_AFTER + BATCH`` it is made idle (its INVITE kept as
    bytes, no transaction) and reads as before; the BYE later ends it."""
    network = MemoryNetwork(seed=1)
    answered: list[weakref.ref[sipx.Call]] = []
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(PEER) as peer,
    ):
        await _serve(client, answered)
        address = next(a for a in network.bound_addresses if a != PEER)
        target = f"{address[0]}:{address[1]}"
        peer.send(_request("INVITE", target, 2, body=OFFER), address)
        (ok,) = await _receive(peer, 1)
        tag = ok.to.tag or ""
        ack = _request("ACK", target, 2, to_tag=tag)
        peer.send(ack, address)
        peer.send(ack, address)  # the peer's retransmission
        await trio.testing.wait_all_tasks_blocked()
        idle = client._uas.idle_calls
        assert len(idle) == 2
        call = answered[0]()
        assert call is not None and call.acked
        assert call.transaction is not None  # not compacted yet
        del call
        await trio.sleep(IDLE_AFTER + BATCH + 0.01)
        assert len(idle) == 0
        call = answered[0]()
        assert call is not None
        assert call.state is CallState.ESTABLISHED
        assert call.transaction is None
        assert call.dialog is not None and call.dialog.invite is None
        assert call.invite.call_id == "2@peer"
        assert call.final_response is not None and call.final_response.to_bytes() == ok.to_bytes()
        peer.send(_request("BYE", target, 2, to_tag=tag, cseq=2), address)
        (bye_ok,) = await _receive(peer, 1)
        assert bye_ok.status_code == 200
        assert call.ended_by == "remote"
