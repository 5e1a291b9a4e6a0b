"""``client.call(..., early_media=True)`` against SIPp: the call comes back at SIPp's 183,
hears what SIPp plays in early media (an RFC 2833 capture; an RTP echo), then is answered
by a 200 without SDP (the 183's answer stands) or CANCELled by hanging up."""

from __future__ import annotations

import array
import subprocess
import sys
import wave
from pathlib import Path

import pytest
import trio
from conftest import SIPpFactory
from peers import HOST, free_media_port

import sipx
from sipx._cli import EXIT_REJECTED
from sipx.media import dominant_frequency, tone

CAPTURE = Path("/usr/share/sip-tester/dtmf_2833_5.pcap")


async def test_early_announcement_digit_then_answer_without_sdp(sipp: SIPpFactory) -> None:
    if not CAPTURE.is_file():
        pytest.fail(f"{CAPTURE} missing: the sip-tester package ships it")
    media_port = free_media_port()
    uas = sipp("uas_early_announcement.xml", extra=["-mp", str(media_port), "-mi", HOST])
    async with sipx.AsyncClient(HOST, 0) as client:
        with trio.fail_after(10):
            call = await client.call(f"sip:ivr@{uas.hostport}", early_media=True)
        assert call.state is sipx.CallState.EARLY, uas.describe()
        assert await call.collect_dtmf(1, timeout=5) == "5"  # heard before any answer
        assert not call.established
        with trio.fail_after(10):
            final = await call.wait_answered()
        assert final.status_code == 200 and not final.content
        assert call.established and call.remote_sdp is not None
        assert call.remote_sdp.media[0].port == media_port  # the 183's answer
        assert (await call.bye()).status_code == 200
    assert uas.wait(10) == 0, uas.describe()


async def test_early_media_echoed_then_hung_up_with_cancel(sipp: SIPpFactory) -> None:
    uas = sipp(
        "uas_early_cancelled.xml",
        extra=["-rtp_echo", "-mp", str(free_media_port()), "-mi", HOST],
    )
    async with sipx.AsyncClient(HOST, 0) as client:
        with trio.fail_after(10):
            call = await client.call(f"sip:ring@{uas.hostport}", early_media=True)
        assert call.state is sipx.CallState.EARLY, uas.describe()
        received: list[bytes] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call.play, tone(700, 1.0))
            with trio.move_on_after(1.0):
                async for frame in call.audio_frames():
                    received.append(frame)
        echoed = b"".join(received)
        assert len(echoed) >= 320 * 20 and abs(dominant_frequency(echoed) - 700) <= 20
        with trio.fail_after(10):
            final = await call.hangup()
        assert final.status_code == 487 and call.ended_by == "local"
    assert uas.wait(10) == 0, uas.describe()


async def test_a_call_ringing_at_sipp_is_picked_up_with_replaces(sipp: SIPpFactory) -> None:
    """RFC 3891 7.1: Carol's INVITE with Replaces naming our call still ringing at SIPp
    (183, early media) is answered; our INVITE is CANCELled (SIPp's scenario requires the
    CANCEL and answers it and the INVITE 487) and the call ends "replaced"."""
    uas = sipp("uas_early_cancelled.xml", extra=["-mp", str(free_media_port()), "-mi", HOST])
    async with sipx.AsyncClient(HOST, 0) as alice, sipx.AsyncClient(HOST, 0) as carol:
        with trio.fail_after(10):
            call = await alice.call(f"sip:ring@{uas.hostport}", early_media=True)
        assert call.state is sipx.CallState.EARLY, uas.describe()
        [early] = alice.early_dialogs
        replaces = f"{early.call_id};to-tag={early.local_tag};from-tag={early.remote_tag}"
        with trio.fail_after(10):
            picked = await carol.call(
                f"sip:alice@{HOST}:{alice.local_address.port}", headers={"Replaces": replaces}
            )
            final = await call.wait_answered()
        assert picked.established and final.status_code == 487
        assert call.ended_by == "replaced" and call.replaced_by is not None
        assert call.replaced_by.call_id == picked.call_id and call.replaced_by.established
        await picked.bye()
    assert uas.wait(10) == 0, uas.describe()


def test_cli_records_the_announcement_of_a_refused_call(sipp: SIPpFactory, tmp_path: Path) -> None:
    """``sipx call --early-media --record FILE``: SIPp's 183 plays a G.711 capture, then
    404: the recording holds that audio, the exit status says refused."""
    uas = sipp("uas_early_rejected.xml", extra=["-mp", str(free_media_port()), "-mi", HOST])
    recorded = tmp_path / "announcement.wav"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sipx",
            "call",
            f"sip:gone@{uas.hostport}",
            "--local-host",
            HOST,
            "--early-media",
            "--record",
            str(recorded),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    output = done.stdout + done.stderr
    assert done.returncode == EXIT_REJECTED, output
    assert "early media" in done.stdout and "404 Not Found" in done.stdout, output
    with wave.open(str(recorded)) as wav:
        assert wav.getframerate() == 8000
        pcm = wav.readframes(wav.getnframes())
    samples = array.array("h", pcm)
    loud = sum(1 for s in samples if abs(s) > 1000)
    assert len(samples) >= 8000 and loud >= 800, (len(samples), loud)  # a second, not silence
    assert uas.wait(10) == 0, uas.describe()
