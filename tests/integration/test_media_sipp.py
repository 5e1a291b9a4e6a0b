"""sipx media against SIPp: SIPp answers a sipx call and either echoes its RTP
(``-rtp_echo``) or plays the RFC 2833/4733 DTMF captures its Debian package ships.

Checked by content: the tone sipx plays comes back at its frequency; the digit of the
capture is collected exactly once.
"""

from __future__ import annotations

import subprocess
import sys
import wave
from pathlib import Path

import pytest
import trio
from conftest import SIPpFactory
from peers import HOST, free_media_port

import sipx
from sipx.media import dominant_frequency, tone

CAPTURES = Path("/usr/share/sip-tester")

SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="UAS answering with media">
  <recv request="INVITE" crlf="true" />
  <send retrans="500">
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:echo@[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=sipp 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15

    ]]>
  </send>
  <recv request="ACK" crlf="true" />
  {media}
  <recv request="BYE" />
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
</scenario>
"""


def scenario(tmp_path: Path, media: str) -> str:
    path = tmp_path / "uas_media.xml"
    path.write_text(SCENARIO.replace("{media}", media))
    return str(path)


async def test_a_tone_played_to_sipp_rtp_echo_comes_back(sipp: SIPpFactory, tmp_path: Path) -> None:
    media_port = free_media_port()
    uas = sipp(
        scenario(tmp_path, ""),
        extra=["-rtp_echo", "-mp", str(media_port), "-mi", HOST],
        timeout_s=30,
    )
    async with sipx.AsyncClient(HOST, 0) as client:
        with trio.fail_after(10):
            call = await client.call(f"sip:echo@{uas.hostport}")
        assert call.established
        received: list[bytes] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call.play, tone(1000, 1.2))

            async def listen() -> None:
                with trio.move_on_after(1.0):
                    async for frame in call.audio_frames():
                        received.append(frame)

            nursery.start_soon(listen)
        await call.bye()
    echoed = b"".join(received)
    assert len(echoed) >= 320 * 20, len(echoed)
    assert abs(dominant_frequency(echoed) - 1000) <= 20
    assert call.media_stats is not None and call.media_stats.remote_address is not None


LATE_OFFER_CHECKS = (
    ('<recv request="INVITE" crlf="true" />', "INVITE", "Content-Length: *0", "msg", "bodiless"),
    ('<recv request="ACK" crlf="true" />', "ACK", "m=audio [0-9]+ RTP/AVP 0", "body", "answer"),
)


def late_offer_scenario(tmp_path: Path) -> str:
    """The echo scenario checking a late offer: the INVITE has no SDP (SIPp's 200 then
    offers) and the ACK carries the answer (SIPp fails the call otherwise)."""
    text = SCENARIO.replace("{media}", "")
    for plain, method, regexp, where, name in LATE_OFFER_CHECKS:
        checked = (
            f'<recv request="{method}" crlf="true"><action><ereg regexp="{regexp}"'
            f' search_in="{where}" check_it="true" assign_to="{name}" /></action></recv>'
        )
        text = text.replace(plain, checked)
    names = ",".join(check[-1] for check in LATE_OFFER_CHECKS)
    text = text.replace("</scenario>", f'<Reference variables="{names}" />\n</scenario>')
    path = tmp_path / "uas_late_offer.xml"
    path.write_text(text)
    return str(path)


async def test_a_late_offer_call_answers_sipp_in_the_ack_and_its_media_flows(
    sipp: SIPpFactory, tmp_path: Path
) -> None:
    """``call(uri, body="")``: an INVITE without SDP; SIPp's 200 offers PCMU, the ACK
    answers it (RFC 3261 13.2.1) and the tone sipx plays comes back from SIPp's echo."""
    uas = sipp(
        late_offer_scenario(tmp_path),
        extra=["-rtp_echo", "-mp", str(free_media_port()), "-mi", HOST],
        timeout_s=30,
    )
    async with sipx.AsyncClient(HOST, 0) as client:
        with trio.fail_after(10):
            call = await client.call(f"sip:echo@{uas.hostport}", body="")
        assert call.established, uas.describe()
        assert call.offer is None and call.remote_sdp is not None  # SIPp's, in its 200
        assert call.answer_sdp is not None and call.answer_sdp == call.local_sdp
        received: list[bytes] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call.play, tone(900, 1.2))
            with trio.move_on_after(1.0):
                async for frame in call.audio_frames():
                    received.append(frame)
        await call.bye()
    echoed = b"".join(received)
    assert len(echoed) >= 320 * 20 and abs(dominant_frequency(echoed) - 900) <= 20
    assert uas.wait(10) == 0, uas.describe()


@pytest.mark.parametrize(("capture", "digit"), [("1", "1"), ("pound", "#"), ("9", "9")])
async def test_dtmf_captures_played_by_sipp_are_collected(
    sipp: SIPpFactory, tmp_path: Path, capture: str, digit: str
) -> None:
    pcap = CAPTURES / f"dtmf_2833_{capture}.pcap"
    if not pcap.is_file():
        pytest.fail(f"{pcap} missing: the sip-tester package ships it")
    media = f'<nop><action><exec play_pcap_audio="{pcap}"/></action></nop>'  # in background
    uas = sipp(
        scenario(tmp_path, media),
        extra=["-mp", str(free_media_port()), "-mi", HOST],
        timeout_s=30,
    )
    async with sipx.AsyncClient(HOST, 0) as client:
        with trio.fail_after(10):
            call = await client.call(f"sip:ivr@{uas.hostport}")
        assert call.established
        assert await call.collect_dtmf(1, timeout=5) == digit
        assert await call.collect_dtmf(1, timeout=1) == ""  # once, not once per packet
        await call.bye()
    assert uas.wait(10) == 0, uas.describe()


@pytest.mark.parametrize("late_offer", [False, True])
def test_cli_plays_and_records_against_sipp_echo(
    sipp: SIPpFactory, tmp_path: Path, late_offer: bool
) -> None:
    """``sipx call --play FILE --record FILE``: the recording holds the echoed tone; with
    ``--late-offer`` too (SIPp checks the bodiless INVITE and the ACK's answer)."""
    prompt, recorded = tmp_path / "prompt.wav", tmp_path / "heard.wav"
    with wave.open(str(prompt), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(tone(800, 1.0))
    uas = sipp(
        late_offer_scenario(tmp_path) if late_offer else scenario(tmp_path, ""),
        extra=["-rtp_echo", "-mp", str(free_media_port()), "-mi", HOST],
        timeout_s=30,
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sipx",
            "call",
            f"sip:echo@{uas.hostport}",
            "--local-host",
            HOST,
            "--play",
            str(prompt),
            "--record",
            str(recorded),
            "--duration",
            "1.5",
            *(["--late-offer"] if late_offer else []),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Played {prompt}" in done.stdout and "BYE: 200 OK" in done.stdout
    with wave.open(str(recorded)) as wav:
        pcm = wav.readframes(wav.getnframes())
    assert abs(dominant_frequency(pcm) - 800) <= 20
    assert uas.wait(10) == 0, uas.describe()


async def test_digits_sent_to_sipp_rtp_echo_come_back_once_each(
    sipp: SIPpFactory, tmp_path: Path
) -> None:
    uas = sipp(
        scenario(tmp_path, ""),
        extra=["-rtp_echo", "-mp", str(free_media_port()), "-mi", HOST],
        timeout_s=30,
    )
    async with sipx.AsyncClient(HOST, 0) as client:
        with trio.fail_after(10):
            call = await client.call(f"sip:echo@{uas.hostport}")
        assert call.established
        await call.send_dtmf("159#", method="rfc4733", duration=0.08)
        assert await call.collect_dtmf(4, timeout=5) == "159#"
        assert await call.collect_dtmf(1, timeout=0.5) == ""
        await call.bye()
