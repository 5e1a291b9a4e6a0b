"""``client.call(..., early_media=True)``: the call is returned at the callee's 183 with SDP,
``EARLY`` with its media running, while the INVITE goes on; ``wait_answered()`` gives the
final response, ``bye()`` before it CANCELs. Two sipx clients on loopback (SIP and RTP
over real UDP); what is heard is checked by its frequency."""

from __future__ import annotations

import gc
import inspect
import socket
import threading
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from test_call_media import heard

import sipx
from sipx.media import dominant_frequency, tone
from sipx.testing import MemoryNetwork, Reply, ScriptedUAS

pytestmark = pytest.mark.filterwarnings("ignore::trio.TrioDeprecationWarning")

Handler = Callable[[sipx.Call], Awaitable[None]]


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Callee:
    """The callee's side: runs ``handler`` on each incoming call, keeps the calls."""

    def __init__(self, handler: Handler | Callable[[sipx.Call], object]) -> None:
        self.handler = handler
        self.calls: list[sipx.Call] = []

    async def __call__(self, call: sipx.Call) -> None:
        self.calls.append(call)
        result = self.handler(call)
        if inspect.isawaitable(result):
            await result


@asynccontextmanager
async def placed(
    handler: Handler | Callable[[sipx.Call], object], **options: Any
) -> AsyncIterator[tuple[sipx.Call, Callee, sipx.AsyncClient]]:
    """Bob runs ``handler`` on his calls; Alice calls him with ``early_media=True`` and
    ``options``: (her call, bob's Callee, alice)."""
    callee = Callee(handler)
    async with (
        sipx.AsyncClient("127.0.0.1", 0) as bob,
        sipx.AsyncClient("127.0.0.1", 0) as alice,
    ):
        bob.on_request("INVITE", callee)
        with trio.fail_after(5):
            uri = f"sip:bob@127.0.0.1:{bob.local_address.port}"
            call = await alice.call(uri, early_media=True, **options)
        yield call, callee, alice


async def announce_then(call: sipx.Call, final: int) -> None:
    call.ring(183)  # our SDP answer with the 183: early media
    await call.play(tone(600, 0.8))
    if final == 200:
        call.answer()
    else:
        call.reject(final)


async def test_the_call_returns_at_the_183_hears_the_announcement_then_the_refusal() -> None:
    async def handler(call: sipx.Call) -> None:
        await announce_then(call, 486)

    async with placed(handler) as (call, callee, alice):
        assert call.state is sipx.CallState.EARLY and call.final_response is None
        assert not call.established and not call.ended
        assert call.remote_sdp is not None and call.remote_sdp is call.answer_sdp  # the 183's
        assert call.remote_sdp.media[0].port == callee.calls[0].local_sdp.media[0].port  # type: ignore[union-attr]
        announcement = await heard(call, 0.5)
        assert len(announcement) >= 320 * 10
        assert abs(dominant_frequency(announcement) - 600) <= 20
        port = call.media_stats.local_address[1]  # type: ignore[union-attr,index]
        with trio.fail_after(5):
            final = await call.wait_answered()
        assert final.status_code == 486 and call.final_response is final
        assert call.ended and call.ended_by == "rejected" and not call.established
        assert await call.wait_answered() is final  # again: at once
        await trio.sleep(0.05)
        assert port_is_free(port)  # the call's RTP socket closed with it
        assert alice.dialogs == [] and not alice.early_dialogs


async def test_an_early_call_answered_later_is_established_and_hangs_up() -> None:
    async def handler(call: sipx.Call) -> None:
        await announce_then(call, 200)
        await call.wait_ended()

    async with placed(handler) as (call, callee, _):
        with trio.fail_after(5):
            assert call.state is sipx.CallState.EARLY
            final = await call.wait_answered()
        assert final.status_code == 200 and call.established
        assert call.state is sipx.CallState.ESTABLISHED and call.dialog is not None  # type: ignore[comparison-overlap]
        assert call.remote_sdp is not None and call.remote_sdp.media[0].port > 0
        with trio.fail_after(5):
            await callee.calls[0].wait_acked()  # our ACK went
            response = await call.bye()
            assert await callee.calls[0].wait_ended() == "remote"
        assert response.status_code == 200 and call.ended_by == "local"


async def test_hanging_up_an_early_call_cancels_its_invite() -> None:
    async def handler(call: sipx.Call) -> None:
        call.ring(183)
        await call.wait_ended()  # never answers

    async with placed(handler) as (call, callee, alice):
        with trio.fail_after(5):
            final = await call.hangup()
            assert await callee.calls[0].wait_ended() == "cancel"
        assert final.status_code == 487 and call.final_response is final
        assert call.ended and call.ended_by == "local"
        with pytest.raises(sipx.ProtocolError, match="no INVITE"):
            await call.cancel()  # nothing pending any more
        assert not alice.early_dialogs


async def test_without_sdp_in_a_provisional_response_the_call_returns_when_answered() -> None:
    async def handler(call: sipx.Call) -> None:
        call.ring(180)  # no SDP: no early media
        await trio.sleep(0.2)
        call.answer()
        await call.wait_ended()

    async with placed(handler) as (call, _, _):
        assert call.established and call.state is sipx.CallState.ESTABLISHED
        assert call.final_response is not None and call.final_response.status_code == 200
        assert (await call.wait_answered()) is call.final_response
        await call.bye()


async def test_a_refusal_before_any_early_media_returns_the_ended_call() -> None:
    async with placed(lambda call: call.reject(404)) as (call, _, _):
        assert call.ended and call.ended_by == "rejected"
        assert call.final_response is not None and call.final_response.status_code == 404


async def test_giving_up_before_early_media_cancels_the_invite_and_frees_the_port() -> None:
    async def handler(call: sipx.Call) -> None:
        call.ring(180)
        await call.wait_ended()

    callee = Callee(handler)
    async with (
        sipx.AsyncClient("127.0.0.1", 0, rtp_ports=(41000, 41010)) as alice,
        sipx.AsyncClient("127.0.0.1", 0) as bob,
    ):
        bob.on_request("INVITE", callee)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            with trio.move_on_after(0.5) as scope:
                await alice.call(f"sip:bob@127.0.0.1:{bob.local_address.port}", early_media=True)
            assert scope.cancelled_caught
            with trio.fail_after(5):
                assert await callee.calls[0].wait_ended() == "cancel"
            await trio.sleep(0.05)
            gc.collect()
        assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []  # closed
        assert all(port_is_free(port) for port in range(41000, 41011))
        assert not alice.early_dialogs


async def test_an_invite_that_times_out_after_early_media_raises_in_wait_answered() -> None:
    async def handler(call: sipx.Call) -> None:
        call.ring(183)
        await call.wait_ended()

    async with placed(handler, timeout=0.5) as (call, callee, _):
        with trio.fail_after(5):
            assert call.state is sipx.CallState.EARLY
            with pytest.raises(sipx.TimeoutError):
                await call.wait_answered()
            assert call.ended and call.ended_by == "timeout"
            assert await callee.calls[0].wait_ended() == "cancel"  # given up: CANCELled
        with pytest.raises(sipx.TimeoutError):
            await call.wait_answered()  # the same error each time


async def test_closing_the_client_during_early_media_cancels_the_invite() -> None:
    async def handler(call: sipx.Call) -> None:
        call.ring(183)
        await call.wait_ended()

    callee = Callee(handler)
    async with sipx.AsyncClient("127.0.0.1", 0) as bob:
        bob.on_request("INVITE", callee)
        async with sipx.AsyncClient("127.0.0.1", 0) as alice:
            with trio.fail_after(5):
                call = await alice.call(
                    f"sip:bob@127.0.0.1:{bob.local_address.port}", early_media=True
                )
            assert call.state is sipx.CallState.EARLY
        assert call.ended and call.ended_by == "failed"
        with pytest.raises(sipx.ClientClosedError):
            await call.wait_answered()
        with trio.fail_after(5):
            assert await callee.calls[0].wait_ended() == "cancel"


async def test_bad_early_media_argument_is_refused_before_anything_is_sent() -> None:
    async with sipx.AsyncClient("127.0.0.1", 0) as alice:
        with pytest.raises(TypeError, match="early_media"):
            await alice.call("sip:bob@127.0.0.1:9", early_media="yes")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="early_media needs an offer"):
            await alice.call("sip:bob@127.0.0.1:9", body=b"", early_media=True)


async def test_wait_answered_on_an_incoming_call_not_answered_is_a_protocol_error() -> None:
    got = trio.Event()
    calls: list[sipx.Call] = []

    async def handler(call: sipx.Call) -> None:
        calls.append(call)
        got.set()
        await call.wait_ended()

    async with (
        sipx.AsyncClient("127.0.0.1", 0) as bob,
        sipx.AsyncClient("127.0.0.1", 0) as alice,
    ):
        bob.on_request("INVITE", handler)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: alice.call(f"sip:bob@127.0.0.1:{bob.local_address.port}", timeout=1)
            )
            with trio.fail_after(5):
                await got.wait()
            with pytest.raises(sipx.ProtocolError, match="final response"):
                await calls[0].wait_answered()
            calls[0].reject(486)


def test_blocking_client_places_an_early_call_and_waits_for_the_answer() -> None:
    answered = threading.Event()

    async def handler(call: sipx.Call) -> None:
        await announce_then(call, 200)
        answered.set()
        await call.wait_ended()

    with sipx.Client("127.0.0.1", 0) as bob, sipx.Client("127.0.0.1", 0) as alice:
        bob.on_request("INVITE", handler)
        call = alice.call(f"sip:ivr@127.0.0.1:{bob.local_address.port}", early_media=True)
        assert call.state is sipx.CallState.EARLY and not call.established
        assert call.wait_answered(timeout=0.01) is None  # not yet: the announcement plays
        final = call.wait_answered(timeout=5)
        assert final is not None and final.status_code == 200 and call.established
        assert answered.wait(5)
        assert call.bye().status_code == 200


async def test_a_2xx_crossing_the_cancel_of_an_early_call_is_acked_then_byed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """0.2 s each way: the callee's 200 leaves at 0.5 s, our CANCEL at 0.45 s; the CANCEL
    finds the INVITE answered (200, no 487), so bye() ACKs the 2xx and sends BYE."""
    network = MemoryNetwork(delay=0.2)

    def script(request: sipx.Request) -> list[Reply]:
        if request.method != "INVITE":
            return [Reply(200)]
        offer = sipx.SDPBody.parse(request.content)
        answer = sipx.SDPBody.create_answer(offer, "uas", "127.0.0.1", "127.0.0.1", ports=[7000])
        return [Reply(183, body=answer), Reply(200, body=answer, delay=0.3)]

    async with (
        ScriptedUAS(network, ("127.0.0.1", 5070), script) as uas,
        sipx.AsyncClient("127.0.0.1", 0, network=network) as alice,
    ):
        call = await alice.call(uas.uri, early_media=True)
        assert call.state is sipx.CallState.EARLY and trio.current_time() == pytest.approx(0.4)
        await trio.sleep_until(0.45)
        response = await call.bye()
        assert response.cseq.method == "BYE" and response.status_code == 200
        assert call.final_response is not None and call.final_response.status_code == 200
        assert call.ended_by == "local"
    assert [r.method for r in uas.requests] == ["INVITE", "CANCEL", "ACK", "BYE"]


@pytest.mark.parametrize("early_media", [False, True])
async def test_a_2xx_without_sdp_keeps_the_answer_of_the_183(
    autojump_clock: trio.testing.MockClock, early_media: bool
) -> None:
    """RFC 3264: the 183's SDP was the answer; a 200 without a body leaves it in force."""
    network = MemoryNetwork()

    def script(request: sipx.Request) -> list[Reply]:
        if request.method != "INVITE":
            return [Reply(200)]
        offer = sipx.SDPBody.parse(request.content)
        answer = sipx.SDPBody.create_answer(offer, "uas", "127.0.0.1", "127.0.0.1", ports=[7002])
        return [Reply(183, body=answer), Reply(200, body=b"", delay=0.5)]

    async with (
        ScriptedUAS(network, ("127.0.0.1", 5070), script) as uas,
        sipx.AsyncClient("127.0.0.1", 0, network=network) as alice,
    ):
        call = await alice.call(uas.uri, early_media=early_media)
        await call.wait_answered()
        assert call.established and not call.final_response.content  # type: ignore[union-attr]
        assert call.remote_sdp is not None and call.remote_sdp.media[0].port == 7002
        assert call.answer_sdp is not None and call.answer_sdp.media[0].port == 7002
        await call.bye()


async def test_updates_in_the_early_dialog_both_ways() -> None:
    """RFC 3311 5.1: once the 183's answer made the session, either side may offer again
    with UPDATE in the early dialog; the early call answers the callee's (it was 488: no
    call to answer for) and may send its own."""
    updated: list[sipx.Response] = []
    go_on = trio.Event()

    async def handler(call: sipx.Call) -> None:
        call.ring(183)
        await trio.sleep(0.1)  # (the 183 reaches the caller first)
        updated.append(await call.update())  # the callee offers again, still ringing
        await go_on.wait()
        call.answer()
        await call.wait_ended()

    async with placed(handler) as (call, callee, alice):
        with trio.fail_after(5):
            while not updated:
                await trio.sleep(0.01)
            [theirs] = updated
            assert theirs.status_code == 200 and sipx.SDPBody.parse(theirs.content).media
            ours = await call.update()  # the caller's own offer in the early dialog
            assert ours.status_code == 200 and ours.cseq.method == "UPDATE"
            assert call.state is sipx.CallState.EARLY
            go_on.set()
            final = await call.wait_answered()
            assert final.status_code == 200 and call.established
            assert alice.dialogs == [call.dialog]
            await call.bye()
            assert await callee.calls[0].wait_ended() == "remote"
