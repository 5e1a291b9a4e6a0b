"""Calls carry audio and DTMF: two sipx clients on loopback (SIP and RTP over real UDP).

Everything is checked by content: the tone one side plays is found at its frequency on the
other side (sipx.media's Goertzel scan), digits arrive exactly once, a recording holds the
tone, hold stops the flow, the end of the call closes the RTP socket.
"""

from __future__ import annotations

import itertools
import socket
import threading
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

import sipx
from sipx.media import dominant_frequency, frames, tone

pytestmark = pytest.mark.filterwarnings("ignore::trio.TrioDeprecationWarning")


@asynccontextmanager
async def a_call(**options: Any) -> AsyncIterator[tuple[sipx.Call, sipx.Call]]:
    """A call from one sipx client to another (``call()``'s ``options``), answered and
    ACKed: (outgoing, incoming)."""
    answered: list[sipx.Call] = []
    ready = trio.Event()

    def answer(call: sipx.Call) -> None:
        call.answer()
        answered.append(call)
        ready.set()

    async with (
        sipx.AsyncClient("127.0.0.1", 0, rtp_ports=(40000, 50000)) as callee,
        sipx.AsyncClient("127.0.0.1", 0, rtp_ports=(40000, 50000)) as caller,
    ):
        callee.on_request("INVITE", answer)
        with trio.fail_after(5):
            call = await caller.call(f"sip:bob@127.0.0.1:{callee.local_address.port}", **options)
            await ready.wait()
            await answered[0].wait_acked()
        assert call.established
        yield call, answered[0]


async def heard(call: sipx.Call, seconds: float) -> bytes:
    """What ``call`` receives for ``seconds`` (decoded PCM)."""
    received: list[bytes] = []
    with trio.move_on_after(seconds):
        async for frame in call.audio_frames():
            received.append(frame)
    return b"".join(received)


async def test_the_sdp_carries_the_real_port_and_a_new_session_id() -> None:
    async with a_call() as (outgoing, incoming):
        assert outgoing.local_sdp is not None and incoming.local_sdp is not None
        offer_port = outgoing.local_sdp.media[0].port
        answer_port = incoming.local_sdp.media[0].port
        assert 40000 <= offer_port <= 50000 and offer_port % 2 == 0
        assert 40000 <= answer_port <= 50000 and answer_port != offer_port
        stats = outgoing.media_stats
        assert stats is not None and stats.local_address is not None
        assert stats.local_address[1] == offer_port and stats.codec == "PCMU"
        assert outgoing.local_sdp.origin.sess_id != incoming.local_sdp.origin.sess_id


@pytest.mark.parametrize("body", [None, ""])
async def test_a_played_tone_is_heard_at_its_frequency_both_ways(body: str | None) -> None:
    """Also for a late offer (``body=""``): the callee offers in its 200, the ACK answers."""
    async with a_call(body=body) as (outgoing, incoming):
        if body == "":
            assert outgoing.offer is None and incoming.offer is None  # the INVITE's: none
            assert outgoing.remote_sdp is not None and outgoing.remote_sdp == incoming.local_sdp
            assert outgoing.answer_sdp is not None and incoming.answer_sdp == outgoing.answer_sdp
        async with trio.open_nursery() as nursery:
            nursery.start_soon(outgoing.play, tone(1000, 1.0))
            nursery.start_soon(incoming.play, tone(700, 1.0))
            at_callee = await heard(incoming, 0.8)
            at_caller = await heard(outgoing, 0.1)
        assert abs(dominant_frequency(at_callee) - 1000) <= 20
        assert abs(dominant_frequency(at_caller) - 700) <= 20
        stats = incoming.media_stats
        assert stats is not None and stats.packets_received >= 30
        assert stats.remote_address is not None  # latched onto the caller's RTP source
        assert stats.remote_address[1] == outgoing.media_stats.local_address[1]  # type: ignore[union-attr]


async def test_play_returns_when_the_last_packet_is_sent() -> None:
    async with a_call() as (outgoing, _):
        started = trio.current_time()
        await outgoing.play(tone(440, 0.4))
        took = trio.current_time() - started
        assert 0.35 <= took <= 1.0  # paced: 20 frames of 20 ms


@pytest.mark.parametrize("method", ["rfc4733", "info", "auto"])
async def test_digits_arrive_once_each(method: str) -> None:
    async with a_call() as (outgoing, incoming):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: outgoing.send_dtmf("1#1*", method=method, duration=0.06))
            with trio.fail_after(10):
                digits = await incoming.collect_dtmf(4)
        assert digits == "1#1*"
        assert await incoming.collect_dtmf(1, timeout=0.3) == ""  # nothing more


async def test_recording_writes_what_the_peer_sends(tmp_path: Path) -> None:
    path = tmp_path / "in.wav"
    async with a_call() as (outgoing, incoming), incoming.recording(path):
        await outgoing.play(tone(1200, 0.6))
        await trio.sleep(0.1)
    with wave.open(str(path)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
        pcm = wav.readframes(wav.getnframes())
    assert len(pcm) >= 2 * 8000 * 0.5
    assert abs(dominant_frequency(pcm) - 1200) <= 20


async def test_play_a_wav_file_at_another_rate(tmp_path: Path) -> None:
    path = tmp_path / "prompt.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        mono = tone(900, 0.5, rate=16000)
        wav.writeframes(b"".join(mono[i : i + 2] * 2 for i in range(0, len(mono), 2)))
    async with a_call() as (outgoing, incoming), trio.open_nursery() as nursery:
        nursery.start_soon(outgoing.play, str(path))
        at_callee = await heard(incoming, 0.5)
    assert abs(dominant_frequency(at_callee) - 900) <= 20


async def test_bad_audio_and_digits_are_value_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEjunk")
    async with a_call() as (outgoing, _):
        with pytest.raises(ValueError, match=r"bad\.wav"):
            await outgoing.play(str(bad))
        with pytest.raises(ValueError, match="cannot read"):
            await outgoing.play(str(tmp_path / "missing.wav"))
        with pytest.raises(ValueError, match="320 bytes"):
            await outgoing.play([b"\x00" * 10])
        with pytest.raises(ValueError, match="not a DTMF digit"):
            await outgoing.send_dtmf("1x")


async def test_hold_stops_the_flow_and_unhold_resumes_it() -> None:
    async with a_call() as (outgoing, incoming):
        await trio.sleep(0.2)
        response = await outgoing.hold()
        assert response.status_code == 200
        await trio.sleep(0.1)
        # We offered sendonly, the peer answered recvonly: it stops sending, we go on.
        ours, theirs = outgoing.media_stats, incoming.media_stats
        assert ours is not None and theirs is not None
        held, sent = ours.packets_received, theirs.packets_received
        await trio.sleep(0.4)
        assert ours.packets_received == held
        assert theirs.packets_received > sent
        await outgoing.unhold()
        await trio.sleep(0.4)
        assert ours.packets_received > held


async def test_garbage_is_counted_and_the_call_goes_on() -> None:
    async with a_call() as (outgoing, incoming):
        port = incoming.media_stats.local_address[1]  # type: ignore[union-attr]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as junk:
            for data in (b"", b"\x00", b"\x40" * 12, b"\x80\x00" + b"\xff" * 3, b"x" * 500):
                junk.sendto(data, ("127.0.0.1", port))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(outgoing.play, tone(1000, 0.5))
            at_callee = await heard(incoming, 0.4)
        assert abs(dominant_frequency(at_callee) - 1000) <= 20
        dropped = incoming.media_stats.dropped  # type: ignore[union-attr]
        assert sum(dropped.values()) >= 4, dropped


async def test_the_end_of_the_call_closes_the_rtp_socket() -> None:
    async with a_call() as (outgoing, incoming):
        ports = [
            outgoing.media_stats.local_address[1],  # type: ignore[union-attr]
            incoming.media_stats.local_address[1],  # type: ignore[union-attr]
        ]
        await outgoing.bye()
        await trio.sleep(0.1)
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", port))  # free again


def test_frames_helper_pads_the_last_frame() -> None:
    cut = list(frames(b"\x01\x00" * 170))
    assert [len(f) for f in cut] == [320, 320] and cut[1][20:] == bytes(300)


async def test_rtcp_reports_flow_on_the_next_port_and_bye_ends_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sipx._media_stream.REPORT_INTERVAL", 0.1)
    async with a_call() as (outgoing, incoming):
        await outgoing.play(tone(500, 0.5))
        ours, theirs = outgoing.media_stats, incoming.media_stats
        assert ours is not None and theirs is not None
        assert ours.rtcp_sent >= 2 and theirs.rtcp_received >= 2
        assert theirs.rtcp_sent >= 2 and ours.rtcp_received >= 2
        assert not theirs.peer_said_bye
        await outgoing.bye()
        await trio.sleep(0.1)
        assert theirs.peer_said_bye  # the RTCP BYE sent as the stream closed


async def test_early_media_plays_an_announcement_before_any_answer() -> None:
    announced = trio.Event()
    early_packets: list[int] = []

    async def announce(call: sipx.Call) -> None:
        call.ring(183)  # our SDP answer goes with the 183: media starts now
        await call.play(tone(600, 0.6))
        # The caller's media started with the 183 too (before any 200).
        early_packets.append(call.media_stats.packets_received)  # type: ignore[union-attr]
        announced.set()
        await trio.sleep(0.2)
        call.answer()  # the 200 repeats the same SDP

    async with (
        sipx.AsyncClient("127.0.0.1", 0) as callee,
        sipx.AsyncClient("127.0.0.1", 0) as caller,
    ):
        callee.on_request("INVITE", announce)
        with trio.fail_after(5):
            call = await caller.call(f"sip:ivr@127.0.0.1:{callee.local_address.port}")
        assert announced.is_set() and call.established
        assert early_packets[0] >= 20
        [early] = [r for r in call.final_response.history if r.status_code == 183]  # type: ignore[union-attr]
        assert sipx.SDPBody.parse(early.content).to_bytes() == call.remote_sdp.to_bytes()  # type: ignore[union-attr]
        assert call.media_stats is not None


async def test_no_free_rtp_port_fails_the_call_with_a_clear_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        full = (port, port)  # the only port of the range is in use
        async with (
            sipx.AsyncClient("127.0.0.1", 0, rtp_ports=full) as callee,
            sipx.AsyncClient("127.0.0.1", 0, rtp_ports=full) as caller,
        ):
            with pytest.raises(sipx.TransportError, match="no free RTP"):
                await caller.call(f"sip:bob@127.0.0.1:{callee.local_address.port}")
            callee.on_request("INVITE", lambda call: call.answer())
            async with sipx.AsyncClient("127.0.0.1", 0) as other:
                refused = await other.call(f"sip:bob@127.0.0.1:{callee.local_address.port}")
            assert refused.final_response is not None
            assert refused.final_response.status_code == 503


def test_blocking_calls_play_record_and_exchange_digits(tmp_path: Path) -> None:
    incoming: list[sipx.Call] = []
    answered = threading.Event()

    def answer(call: sipx.Call) -> None:
        call.answer()
        incoming.append(call)
        answered.set()

    with sipx.Client("127.0.0.1", 0) as callee, sipx.Client("127.0.0.1", 0) as caller:
        callee.on_request("INVITE", answer)
        call = caller.call(f"sip:bob@127.0.0.1:{callee.local_address.port}")
        assert call.established and answered.wait(5)
        peer = sipx.BlockingCall(incoming[0], callee, callee._portal)
        path = tmp_path / "heard.wav"
        with call.recording(path):
            peer.play(tone(1100, 0.6))
            peer.send_dtmf("42", duration=0.06)
            assert call.collect_dtmf(2, timeout=5) == "42"
        frames_heard = list(itertools.islice(call.audio_frames(timeout=2), 3))
        assert [len(f) for f in frames_heard] == [320, 320, 320]
        stats = call.media_stats
        assert stats is not None and stats.packets_received > 30
        call.bye()
    with wave.open(str(path)) as wav:
        pcm = wav.readframes(wav.getnframes())
    assert abs(dominant_frequency(pcm) - 1100) <= 20


async def test_rtcp_is_muxed_on_the_rtp_port_when_the_offer_asks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RFC 5761: an offer with a=rtcp-mux gets it back, and RTCP then shares the RTP port."""
    monkeypatch.setattr("sipx._media_stream.REPORT_INTERVAL", 0.1)
    answered: list[sipx.Call] = []
    async with (
        sipx.AsyncClient("127.0.0.1", 0) as callee,
        sipx.AsyncClient("127.0.0.1", 0) as caller,
    ):

        def answer(call: sipx.Call) -> None:
            answered.append(call)
            call.answer()

        callee.on_request("INVITE", answer)
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        raw.bind(("127.0.0.1", 0))
        raw.setblocking(False)
        port = raw.getsockname()[1]
        offer = (
            "v=0\r\no=- 7 7 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=rtcp-mux\r\n"
        )
        with raw:
            response = await caller.invite(
                f"sip:bob@127.0.0.1:{callee.local_address.port}", body=offer
            )
            await caller.ack(response)
            assert "a=rtcp-mux" in response.text
            await trio.sleep(0.6)
            datagrams = []
            while True:
                try:
                    datagrams.append(raw.recv(2048))
                except BlockingIOError:
                    break
            await caller.bye(response)
    rtcp = [d for d in datagrams if 200 <= d[1] <= 204]
    rtp = [d for d in datagrams if d[1] & 0x7F == 0]
    assert rtp and rtcp  # both on the one port
