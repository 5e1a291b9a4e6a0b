"""What an established, idle incoming call keeps (issue 14), and that everything still works.

Once the ACK of our 200 has arrived, a call keeps neither the parsed INVITE (nor does its
dialog), nor our parsed 200, nor the server transaction, nor parsed SDPs; no task or
``trio.Event`` of its own runs while it is idle (one heap task serves every session timer).
Reading ``invite``, ``final_response`` or an SDP parses a fresh copy; re-INVITE, UPDATE,
hold, INFO, DTMF and BYE (both ways) go on as before. Everything on trio's autojump clock.
"""

from __future__ import annotations

import gc

import trio
import trio.testing
from test_uas import (
    OFFER,
    PEER,
    address_of,
    client_on,
    raw_request,
    receive_response,
    uri_of,
)

import sipx
from sipx import CallState, SDPBody
from sipx.testing import MemoryNetwork, MemorySocket


def parsed_invites(call_id: str) -> int:
    gc.collect()
    return sum(
        1
        for obj in gc.get_objects()
        if isinstance(obj, sipx.Request) and obj.method == "INVITE" and obj.call_id == call_id
    )


def referents_of(*objects: object) -> set[type]:
    return {type(o) for obj in objects for o in gc.get_referents(obj)}


async def answered_call(callee: sipx.AsyncClient, peer: MemorySocket) -> sipx.Call:
    """The raw peer INVITEs (with an SDP offer), the callee answers, the peer ACKs."""
    calls: list[sipx.Call] = []
    callee.on_request("INVITE", lambda call: calls.append(call) or call.answer())
    target = address_of(callee)
    peer.send(raw_request("INVITE", target, body=OFFER).to_bytes(), target)
    while (ok := await receive_response(peer)).status_code < 200:
        pass
    assert ok.status_code == 200
    ack = raw_request("ACK", target, branch="z9hG4bKack1", to_tag=ok.to.tag)
    peer.send(ack.to_bytes(), target)
    [call] = calls
    await call.wait_acked()
    return call


async def test_an_idle_call_keeps_no_parsed_invite_transaction_or_sdp(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with client_on(network) as callee, network.socket(PEER) as peer:
        call = await answered_call(callee, peer)
        await trio.sleep(40)  # Timer L and the 2xx resends are over
        assert call.state is CallState.ESTABLISHED and call.acked
        assert call.transaction is None
        assert call.dialog is not None and call.dialog.invite is None
        assert parsed_invites(call.call_id) == 0  # neither the call nor its dialog hold it
        kept = referents_of(call, call.dialog)
        assert not kept & {sipx.Request, sipx.Response, SDPBody, trio.Event}, kept

        # What was kept reads as before (each read parses a fresh copy).
        invite = call.invite
        assert invite.method == "INVITE" and str(invite.from_.uri) == "sip:alice@127.0.0.1:5090"
        assert invite.cseq.seq == 1 and SDPBody.parse(invite.content) == OFFER
        assert call.remote_uri == "sip:alice@127.0.0.1:5090"
        final = call.final_response
        assert final is not None and final.status_code == 200
        assert call.offer == OFFER and call.remote_sdp == OFFER
        assert call.local_sdp is not None and final.content == call.local_sdp.to_bytes()
        assert call.answer_sdp == call.local_sdp
        del invite, final
        assert parsed_invites(call.call_id) == 0


async def test_an_idle_call_still_takes_reinvite_update_info_and_bye_from_the_peer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with client_on(network) as callee, network.socket(PEER) as peer:
        call = await answered_call(callee, peer)
        target = address_of(callee)
        tag = call.local_tag
        await trio.sleep(40)
        version = call.local_sdp.origin.sess_version if call.local_sdp else None
        held = OFFER.with_direction("sendonly")
        held.origin = OFFER.origin.bumped()
        reinvite = raw_request("INVITE", target, branch="z9hG4bKre", cseq=2, to_tag=tag, body=held)
        peer.send(reinvite.to_bytes(), target)
        while (ok := await receive_response(peer)).status_code < 200:
            pass
        assert ok.status_code == 200 and ok.cseq.method == "INVITE"
        answer = SDPBody.parse(ok.content)
        assert answer.direction == "recvonly"
        assert answer.origin.sess_version != version  # RFC 3264 8: a changed SDP
        assert "Contact" in ok.headers
        peer.send(
            raw_request("ACK", target, branch="z9hG4bKa2", cseq=2, to_tag=tag).to_bytes(), target
        )
        assert call.remote_sdp is not None and call.remote_sdp.direction == "sendonly"

        update = raw_request("UPDATE", target, branch="z9hG4bKup", cseq=3, to_tag=tag)
        peer.send(update.to_bytes(), target)
        assert (await receive_response(peer)).status_code == 200

        info = raw_request(
            "INFO",
            target,
            branch="z9hG4bKinfo",
            cseq=4,
            to_tag=tag,
            headers=[("Content-Type", "application/dtmf-relay")],
        )
        info.content = b"Signal=7\r\nDuration=100\r\n"
        peer.send(info.to_bytes(), target)
        assert (await receive_response(peer)).status_code == 200
        assert await call.collect_dtmf(1, timeout=1) == "7"

        bye = raw_request("BYE", target, branch="z9hG4bKbye", cseq=5, to_tag=tag)
        peer.send(bye.to_bytes(), target)
        assert (await receive_response(peer)).status_code == 200
        assert await call.wait_ended() == "remote"


async def test_idle_calls_between_two_clients_hold_reinvite_and_hang_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Both ends of sipx calls, session timers on: the idle callee holds, the caller
    re-INVITEs, refreshes go on from the one heap task; BYE from either side."""
    network = MemoryNetwork()
    async with (
        client_on(network, session_expires=120) as bob,
        client_on(network, session_expires=90) as alice,
    ):
        at_bob: list[sipx.Call] = []
        bob.on_request("INVITE", lambda call: at_bob.append(call) or call.answer())
        calls = [await alice.call(uri_of(bob)) for _ in range(3)]
        for incoming in at_bob:
            await incoming.wait_acked()
        assert all(call.established for call in calls + at_bob)
        await trio.sleep(200)  # more than two session intervals: refreshed, still up
        assert all(call.established for call in calls + at_bob)
        assert all(call.session_expires == 90 for call in calls + at_bob)
        tasks = task_names(trio.lowlevel.current_root_task())
        assert not [name for name in tasks if "SessionTimerTask" in name], tasks
        assert sum("SessionTimers._run" in name for name in tasks) == 2  # one per client

        first = at_bob[0]
        held = await first.hold()
        assert held.status_code == 200
        assert calls[0].remote_sdp is not None and calls[0].remote_sdp.direction == "sendonly"
        assert (await calls[0].reinvite()).status_code == 200
        assert (await first.info("Signal=1\r\n")).status_code == 200

        assert (await calls[0].bye()).status_code == 200  # caller hangs up
        assert await first.wait_ended() == "remote"
        assert (await at_bob[1].bye()).status_code == 200  # callee hangs up
        assert await calls[1].wait_ended() == "remote"
        assert calls[2].established and at_bob[2].established


def task_names(task: trio.lowlevel.Task) -> list[str]:
    names = [task.name]
    for nursery in task.child_nurseries:
        for child in nursery.child_tasks:
            names += task_names(child)
    return names
