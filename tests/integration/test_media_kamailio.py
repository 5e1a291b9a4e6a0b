"""Two sipx clients call each other through Kamailio (signalling relayed, media direct):
audio both ways, DTMF by RFC 4733 and by INFO (the INFO crosses Kamailio), hold stops the
flow, a re-INVITE keeps it, BYE closes the RTP sockets."""

from __future__ import annotations

import socket

import pytest
import trio
from peers import Kamailio
from test_calls_kamailio import incoming_calls, next_call, registered

from sipx import Call
from sipx.media import dominant_frequency, tone


async def heard(call: Call, seconds: float) -> bytes:
    received: list[bytes] = []
    with trio.move_on_after(seconds):
        async for frame in call.audio_frames():
            received.append(frame)
    return b"".join(received)


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
async def test_sipx_to_sipx_media_through_kamailio(kamailio: Kamailio, transport: str) -> None:
    async with (
        registered(kamailio, "1111", transport) as alice,
        registered(kamailio, "2222", transport) as bob,
        incoming_calls(bob) as inbox,
    ):
        answered: list[Call] = []

        async def answer_one() -> None:
            call = await next_call(inbox)
            call.answer()
            answered.append(call)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_one)
            call_a = await alice.call(kamailio.aor("2222"))
        assert call_a.established
        (call_b,) = answered

        # audio both ways, checked by frequency
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call_a.play, tone(1000, 1.0))
            nursery.start_soon(call_b.play, tone(600, 1.0))
            at_b = await heard(call_b, 0.8)
            at_a = await heard(call_a, 0.1)
        assert abs(dominant_frequency(at_b) - 1000) <= 20
        assert abs(dominant_frequency(at_a) - 600) <= 20

        # DTMF: RFC 4733 in the RTP stream, then SIP INFO through Kamailio
        await call_a.send_dtmf("12", method="rfc4733", duration=0.06)
        assert await call_b.collect_dtmf(2, timeout=5) == "12"
        await call_b.send_dtmf("#9", method="info")
        assert await call_a.collect_dtmf(2, timeout=5) == "#9"

        # hold: bob (recvonly) stops sending to alice; unhold resumes
        assert (await call_a.hold()).status_code == 200
        await trio.sleep(0.2)
        stats_a = call_a.media_stats
        assert stats_a is not None
        held = stats_a.packets_received
        await trio.sleep(0.5)
        assert stats_a.packets_received == held
        assert (await call_a.unhold()).status_code == 200
        await trio.sleep(0.5)
        assert stats_a.packets_received > held

        ports = [
            call_a.media_stats.local_address[1],  # type: ignore[union-attr]
            call_b.media_stats.local_address[1],  # type: ignore[union-attr]
        ]
        await call_a.bye()
        with trio.fail_after(5):
            await call_b.wait_ended()
        await trio.sleep(0.1)
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", port))  # the RTP socket is closed
