"""Tests for sipx._core.rtp: RTP packets (RFC 3550 5.1, 5.3.1) and sequence arithmetic."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipx._core.rtp import RtpExtension, RtpPacket, extend_seq, seq_delta, seq_newer
from sipx._errors import ParseError

# (packet, wire bytes worked out by hand from the figure in RFC 3550 5.1)
WIRE_CASES = [
    pytest.param(
        RtpPacket(payload_type=0, sequence=1, timestamp=160, ssrc=0x12345678),
        # V=2 P=0 X=0 CC=0 -> 0x80; M=0 PT=0 -> 0x00; seq 0x0001; ts 0x000000a0; SSRC
        "80 00 0001 000000a0 12345678",
        id="minimal",
    ),
    pytest.param(
        RtpPacket(
            payload_type=96,
            sequence=0xFFFF,
            timestamp=0xFFFFFFFF,
            ssrc=1,
            marker=True,
            payload=b"\x01\x02",
        ),
        # M=1 PT=96 -> 0x80 | 0x60 = 0xe0
        "80 e0 ffff ffffffff 00000001 0102",
        id="marker-max-fields",
    ),
    pytest.param(
        RtpPacket(payload_type=8, sequence=2, timestamp=3, ssrc=4, csrcs=(5, 0xDEADBEEF)),
        # CC=2 -> 0x82, then the CSRC list
        "82 08 0002 00000003 00000004 00000005 deadbeef",
        id="csrcs",
    ),
    pytest.param(
        RtpPacket(
            payload_type=0,
            sequence=0,
            timestamp=0,
            ssrc=0,
            extension=RtpExtension(profile=0xBEDE, data=b"\x10\xaa\x00\x00"),
            payload=b"x",
        ),
        # X=1 -> 0x90; extension header: profile 0xbede, length 1 word
        "90 00 0000 00000000 00000000 bede0001 10aa0000 78",
        id="extension",
    ),
    pytest.param(
        RtpPacket(payload_type=0, sequence=0, timestamp=0, ssrc=0, padding=True, payload=b"abc"),
        # P=1 -> 0xa0; 3 payload octets + 1 padding octet holding the count 1
        "a0 00 0000 00000000 00000000 616263 01",
        id="padding-1",
    ),
    pytest.param(
        RtpPacket(payload_type=0, sequence=0, timestamp=0, ssrc=0, padding=True, payload=b"abcd"),
        # a whole number of words still gets a full word of padding (the count needs a place)
        "a0 00 0000 00000000 00000000 61626364 00000004",
        id="padding-4",
    ),
    pytest.param(
        RtpPacket(payload_type=0, sequence=0, timestamp=0, ssrc=0, padding=True),
        "a0 00 0000 00000000 00000000 00000004",
        id="padding-empty-payload",
    ),
]


@pytest.mark.parametrize(("packet", "wire"), WIRE_CASES)
def test_to_bytes_matches_hand_built_header(packet: RtpPacket, wire: str) -> None:
    assert packet.to_bytes() == bytes.fromhex(wire)


@pytest.mark.parametrize(("packet", "wire"), WIRE_CASES)
def test_parse_hand_built_packet(packet: RtpPacket, wire: str) -> None:
    assert RtpPacket.parse(bytes.fromhex(wire)) == packet


def test_brief_example_bytes() -> None:
    packet = RtpPacket(payload_type=0, sequence=1, timestamp=160, ssrc=0x12345678)
    assert packet.to_bytes() == bytes.fromhex("80000001000000a012345678")


def test_parse_strips_padding_of_any_length() -> None:
    wire = bytes.fromhex("a0 00 0000 00000000 00000000 6869 000000000000000000 0a")
    packet = RtpPacket.parse(wire)
    assert packet.payload == b"hi"
    assert packet.padding
    assert RtpPacket.parse(packet.to_bytes()) == packet


def test_parse_accepts_bytearray_and_memoryview() -> None:
    wire = bytes.fromhex("80000001000000a012345678ff")
    assert RtpPacket.parse(bytearray(wire)).payload == b"\xff"
    assert RtpPacket.parse(memoryview(wire)).payload == b"\xff"


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        ("", "too short"),
        ("80000001000000a0123456", "too short"),
        ("40000001000000a012345678", "version 1"),
        ("c0000001000000a012345678", "version 3"),
        ("00000001000000a012345678", "version 0"),
        ("81000001000000a012345678", "CSRC count 1"),
        ("8f000001000000a012345678" + "00" * 56, "CSRC count 15"),
        ("90000001000000a012345678", "extension header missing"),
        ("90000001000000a012345678bede", "extension header missing"),
        ("90000001000000a012345678bede0001", "extension of 1 words"),
        ("90000001000000a012345678bede0002aabbccdd", "extension of 2 words"),
        ("a0000001000000a012345678aa00", "padding count is 0"),
        ("a0000001000000a012345678aa03", "padding count 3 exceeds the 2 bytes"),
        ("a0000001000000a012345678", "padding count 120 exceeds the 0 bytes"),
        ("b0000001000000a012345678bede000005", "padding count 5 exceeds the 1 bytes"),
    ],
)
def test_malformed_packets_raise_parse_error(wire: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        RtpPacket.parse(bytes.fromhex(wire))


def test_padding_may_cover_whole_payload() -> None:
    packet = RtpPacket.parse(bytes.fromhex("a0000001000000a012345678000003"))
    assert packet.payload == b""
    assert packet.padding


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"version": 1}, "version"),
        ({"payload_type": 128}, "payload type"),
        ({"payload_type": -1}, "payload type"),
        ({"sequence": 65536}, "sequence"),
        ({"sequence": -1}, "sequence"),
        ({"timestamp": 1 << 32}, "timestamp"),
        ({"ssrc": 1 << 32}, "SSRC"),
        ({"csrcs": tuple(range(16))}, "15 CSRCs"),
        ({"csrcs": (1 << 32,)}, "CSRC"),
    ],
)
def test_out_of_range_fields_raise_value_error(fields: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {"payload_type": 0, "sequence": 0, "timestamp": 0, "ssrc": 0}
    with pytest.raises(ValueError, match=message):
        RtpPacket(**{**base, **fields})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"profile": 1 << 16}, "profile"),
        ({"profile": 1, "data": b"abc"}, "32-bit words"),
    ],
)
def test_bad_extension_raises_value_error(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RtpExtension(**fields)


def test_csrcs_and_payload_are_normalised() -> None:
    packet = RtpPacket(
        payload_type=0,
        sequence=0,
        timestamp=0,
        ssrc=0,
        csrcs=[1, 2],  # type: ignore[arg-type]
        payload=bytearray(b"ab"),  # type: ignore[arg-type]
    )
    assert packet.csrcs == (1, 2)
    assert type(packet.payload) is bytes
    hash(packet)


u32 = st.integers(0, 0xFFFFFFFF)
packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 0xFFFF),
    timestamp=u32,
    ssrc=u32,
    payload=st.binary(max_size=64),
    marker=st.booleans(),
    csrcs=st.lists(u32, max_size=15).map(tuple),
    extension=st.none()
    | st.builds(
        RtpExtension,
        profile=st.integers(0, 0xFFFF),
        data=st.integers(0, 8).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n)),
    ),
    padding=st.booleans(),
)


@given(packets)
def test_round_trip(packet: RtpPacket) -> None:
    wire = packet.to_bytes()
    assert RtpPacket.parse(wire) == packet
    assert len(wire) % 4 == 0 or not packet.padding


def _mutations(rng: random.Random) -> bytes:
    """Valid packets with bytes flipped, cut or appended: they get past the first checks."""
    packet = RtpPacket(
        payload_type=rng.randrange(128),
        sequence=rng.randrange(1 << 16),
        timestamp=rng.randrange(1 << 32),
        ssrc=rng.randrange(1 << 32),
        payload=rng.randbytes(rng.randrange(12)),
        csrcs=tuple(rng.randrange(1 << 32) for _ in range(rng.randrange(4))),
        extension=RtpExtension(profile=1, data=bytes(4)) if rng.random() < 0.5 else None,
        padding=rng.random() < 0.5,
    )
    wire = bytearray(packet.to_bytes())
    for _ in range(rng.randrange(1, 4)):
        choice = rng.random()
        if choice < 0.5:
            wire[rng.randrange(len(wire))] = rng.randrange(256)
        elif choice < 0.8:
            del wire[rng.randrange(len(wire)) :]
        else:
            wire += rng.randbytes(rng.randrange(1, 8))
        if not wire:
            break
    return bytes(wire)


def test_fuzz_only_parse_errors() -> None:
    rng = random.Random(3550)
    parsed = failed = 0
    for i in range(6000):
        if i % 2:
            data = _mutations(rng)
        else:
            data = bytes([rng.choice((0x80, 0x90, 0xA0, 0xBF, rng.randrange(256)))])
            data += rng.randbytes(rng.randrange(40))
        try:
            packet = RtpPacket.parse(data)
        except ParseError:
            failed += 1
        else:
            parsed += 1
            assert RtpPacket.parse(packet.to_bytes()) == packet
    assert parsed > 500 and failed > 500  # both paths were exercised


@pytest.mark.parametrize(
    ("a", "b", "delta", "newer"),
    [
        (1, 0, 1, True),
        (0, 1, -1, False),
        (5, 5, 0, False),
        (0, 65535, 1, True),
        (65535, 0, -1, False),
        (10, 65530, 16, True),
        (32767, 0, 32767, True),
        (32768, 0, -32768, False),
        (0, 32768, -32768, False),
        (40000, 0, -25536, False),
    ],
)
def test_seq_arithmetic(a: int, b: int, delta: int, newer: bool) -> None:
    assert seq_delta(a, b) == delta
    assert seq_newer(a, b) is newer


@pytest.mark.parametrize(
    ("seq", "reference", "extended"),
    [
        (5, 5, 5),
        (6, 5, 6),
        (0, 65535, 65536),
        (65535, 65536, 65535),
        (3, 3 * 65536 + 65534, 4 * 65536 + 3),
        (65534, 2 * 65536 + 1, 65536 + 65534),
        (65535, 0, -1),
    ],
)
def test_extend_seq(seq: int, reference: int, extended: int) -> None:
    assert extend_seq(seq, reference) == extended
