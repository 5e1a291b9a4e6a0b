"""The sans-I/O media core against the RTP captures SIPp's Debian package ships: every
RFC 2833/4733 capture decodes to its one digit, and the G.711 A-law capture parses as
RTP and decodes to sound."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from sipx._core.dtmf import DtmfReceiver
from sipx._core.g711 import alaw_decode
from sipx._core.rtp import RtpPacket
from sipx.media import rms

CAPTURES = Path("/usr/share/sip-tester")
DIGITS = {**{str(n): str(n) for n in range(10)}, "pound": "#", "star": "*"}


def udp_payloads(path: Path) -> list[bytes]:
    """The UDP payloads of a libpcap file (Ethernet or Linux cooked capture, IPv4)."""
    data = path.read_bytes()
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    link = struct.unpack(endian + "I", data[20:24])[0]
    link_header = {1: 14, 113: 16, 101: 0}[link]
    payloads, offset = [], 24
    while offset + 16 <= len(data):
        captured = struct.unpack(endian + "I", data[offset + 8 : offset + 12])[0]
        frame = data[offset + 16 : offset + 16 + captured]
        offset += 16 + captured
        ip = frame[link_header:]
        if not ip or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        udp = ip[(ip[0] & 0x0F) * 4 :]
        payloads.append(udp[8:])
    return payloads


def capture(name: str) -> Path:
    path = CAPTURES / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: install sip-tester (.ci/run does)")
    return path


@pytest.mark.parametrize("name", sorted(DIGITS))
def test_each_dtmf_capture_is_one_digit(name: str) -> None:
    packets = [RtpPacket.parse(p) for p in udp_payloads(capture(f"dtmf_2833_{name}.pcap"))]
    assert packets, "no RTP in the capture"
    receiver = DtmfReceiver()
    digits = [
        event.digit
        for packet in packets
        for event in receiver.feed(packet.payload, packet.timestamp, packet.marker)
    ]
    assert digits == [DIGITS[name]]


def test_the_alaw_capture_decodes_to_sound() -> None:
    packets = [RtpPacket.parse(p) for p in udp_payloads(capture("g711a.pcap"))]
    assert len(packets) > 100
    assert {p.payload_type for p in packets} == {8}  # PCMA
    pcm = b"".join(alaw_decode(p.payload) for p in packets)
    assert len(pcm) == 2 * sum(len(p.payload) for p in packets)
    assert rms(pcm) > 100  # speech, not silence
