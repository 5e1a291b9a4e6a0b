"""RFC 3891 3 and 7.1: an INVITE whose Replaces names the early dialog of a call we placed
(still ringing: call pick-up at the originator) is answered, and our INVITE is CANCELled;
the placed call ends "replaced", its ``replaced_by`` the new call. AsyncClients (or a
ScriptedUAS as the callee) on one MemoryNetwork, on trio's autojump clock."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from test_transfer import OFFER, address_of, client_on, uri_of

import sipx
from sipx._core.refer import Replaces
from sipx.testing import MemoryNetwork, Reply, ScriptedUAS


def pick_up(client: sipx.AsyncClient) -> Replaces:
    """Replaces naming ``client``'s one early dialog as ``client`` sees it (to-tag: its
    own tag, from-tag: the callee's)."""
    [early] = client.early_dialogs
    return Replaces(early.call_id, to_tag=early.local_tag, from_tag=early.remote_tag)


def ringing(client: sipx.AsyncClient, status: int) -> list[sipx.Call]:
    """``client`` rings (``status``: 183 brings our SDP, early media) on each call and never
    answers; returns the list its calls are added to."""
    rung: list[sipx.Call] = []

    async def ring(call: sipx.Call) -> None:
        rung.append(call)
        call.ring(status)
        await call.wait_ended()

    client.on_request("INVITE", ring)
    return rung


@pytest.mark.parametrize("early_media", [False, True])
async def test_a_ringing_call_we_placed_is_picked_up(
    autojump_clock: trio.testing.MockClock, early_media: bool
) -> None:
    """Alice calls Bob, who rings (183 with SDP: early media); Carol picks the call up with
    Replaces to Alice: Alice answers Carol, CANCELs Bob, and her call ends "replaced"."""
    network = MemoryNetwork()
    async with (
        client_on(network) as alice,
        client_on(network) as bob,
        client_on(network) as carol,
    ):
        rung = ringing(bob, 183)
        placed: list[sipx.Call] = []
        async with trio.open_nursery() as nursery:

            async def place() -> None:
                placed.append(await alice.call(uri_of(bob, "bob"), early_media=early_media))

            nursery.start_soon(place)
            await trio.sleep(1)
            assert rung and not rung[0].ended
            picked = await carol.call(
                uri_of(alice, "alice"), body=OFFER, headers={"Replaces": str(pick_up(alice))}
            )
        assert picked.established
        [call] = placed
        final = await call.wait_answered() if early_media else call.final_response
        assert final is not None and final.status_code == 487
        assert call.ended and call.ended_by == "replaced"
        new = call.replaced_by
        assert new is not None and new.established and new.direction == "incoming"
        assert new.call_id == picked.call_id
        assert rung[0].ended and rung[0].ended_by == "cancel"
        [cancel] = network.requests("CANCEL")
        assert cancel.source == address_of(alice) and cancel.message.call_id == call.call_id
        await picked.bye()
        assert await new.wait_ended() == "remote"


async def test_an_answer_crossing_the_cancel_of_a_picked_up_call_is_acked_then_byed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """0.2 s each way. Bob (scripted) rings at 0.2 s and answers at 0.7 s; Carol's INVITE
    with Replaces reaches Alice at 0.61 s, whose CANCEL reaches Bob at 0.81 s, after his
    200 left: Alice ACKs that 200 and hangs up with BYE, her call still "replaced"."""
    network = MemoryNetwork(delay=0.2)

    def script(request: sipx.Request) -> list[Reply]:
        if request.method != "INVITE":
            return [Reply(200)]
        return [Reply(180), Reply(200, delay=0.5)]

    async with (
        ScriptedUAS(network, ("127.0.0.1", 5070), script) as bob,
        client_on(network) as alice,
        client_on(network) as carol,
    ):
        placed: list[sipx.Call] = []
        async with trio.open_nursery() as nursery:

            async def place() -> None:
                placed.append(await alice.call(bob.uri))

            nursery.start_soon(place)
            await trio.sleep_until(0.41)  # the 180 arrived at 0.4
            picked = await carol.call(
                uri_of(alice, "alice"), body=OFFER, headers={"Replaces": str(pick_up(alice))}
            )
            assert picked.established
        [call] = placed
        assert call.final_response is not None and call.final_response.status_code == 200
        assert call.ended_by == "replaced" and call.replaced_by is not None
        await trio.sleep(2)
        assert [r.method for r in bob.requests] == ["INVITE", "CANCEL", "ACK", "BYE"]
        assert not alice.dialogs or all(d.call_id != call.call_id for d in alice.dialogs)


async def test_replaces_naming_a_call_ringing_at_us_still_gets_481(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """RFC 3891 3: an early dialog we did not initiate (Bob's incoming call, ringing) is
    left alone: 481."""
    network = MemoryNetwork()
    async with (
        client_on(network) as alice,
        client_on(network) as bob,
        client_on(network) as carol,
    ):
        rung = ringing(bob, 180)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(alice.call, uri_of(bob, "bob"))
            await trio.sleep(1)
            [early] = alice.early_dialogs  # Bob's dialog seen from his side: tags swapped
            replaces = Replaces(early.call_id, to_tag=early.remote_tag, from_tag=early.local_tag)
            refused = await carol.call(
                uri_of(bob, "bob"), body=OFFER, headers={"Replaces": str(replaces)}
            )
            assert refused.final_response is not None
            assert refused.final_response.status_code == 481
            assert not rung[0].ended and rung[0].state is sipx.CallState.EARLY
            nursery.cancel_scope.cancel()
