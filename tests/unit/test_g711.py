"""Tests for sipx._core.g711 against a reference written from ITU-T G.711 Tables 1 and 2.

The reference below does not share code or tricks with the module: it lists the decision
values of each law segment by segment (Table 1a: A-law, Table 2a: µ-law), finds the
quantisation interval by bisection and takes the interval midpoint as the decoded value.
An integer input code ``x`` stands for ``x + ½`` (the ITU G.191 convention), so the
quantiser is symmetric and no input sits exactly on a decision value.
"""

from __future__ import annotations

import math
import struct
from bisect import bisect_right
from collections.abc import Callable

import pytest

from sipx._core import g711


def _decision_values(first: list[int], steps: list[int]) -> list[int]:
    """Decision values: ``first`` then each segment's 16 intervals of the given step."""
    values = list(first)
    for step in steps:
        start = values[-1]
        values.extend(start + step * k for k in range(1, 17))
    return values


# µ-law, 14-bit scale: [0,1), then 15 intervals of 2 up to 31, then steps 4 ... 256 up to 8159.
ULAW_DECISIONS = _decision_values([0, *range(1, 32, 2)], [4, 8, 16, 32, 64, 128, 256])
# A-law, 13-bit scale: 32 intervals of 2 up to 64, then steps 4 ... 128 up to 4096.
ALAW_DECISIONS = _decision_values([0], [2, 2, 4, 8, 16, 32, 64, 128])


def test_decision_tables_have_the_standard_shape() -> None:
    assert len(ULAW_DECISIONS) == 129 and ULAW_DECISIONS[-1] == 8159
    assert ULAW_DECISIONS[16:18] == [31, 35] and ULAW_DECISIONS[112] == 4063
    assert len(ALAW_DECISIONS) == 129 and ALAW_DECISIONS[-1] == 4096
    assert ALAW_DECISIONS[32:34] == [64, 68] and ALAW_DECISIONS[112] == 2048


def _interval(decisions: list[int], x: int) -> tuple[bool, int]:
    """(positive, interval number 0..127) for the integer input code ``x``."""
    twice = 2 * x + 1  # 2 * (x + 1/2): stays an integer
    doubled = [2 * d for d in decisions]
    return twice > 0, min(bisect_right(doubled, abs(twice)) - 1, 127)


def ref_ulaw(x: int) -> int:
    """µ-law character for a 14-bit input: bit 1 = 0 for positive, then all bits inverted."""
    positive, n = _interval(ULAW_DECISIONS, x)
    return ((0x00 if positive else 0x80) | n) ^ 0xFF


def ref_alaw(x: int) -> int:
    """A-law character for a 13-bit input: bit 1 = 1 for positive, even bits inverted."""
    positive, n = _interval(ALAW_DECISIONS, x)
    return ((0x80 if positive else 0x00) | n) ^ 0x55


def ref_ulaw_decoded(code: int) -> int:
    """Decoded 14-bit value: 0 for the first interval, the interval midpoint otherwise."""
    bits = code ^ 0xFF
    n = bits & 0x7F
    value = 0 if n == 0 else (ULAW_DECISIONS[n] + ULAW_DECISIONS[n + 1]) // 2
    return -value if bits & 0x80 else value


def ref_alaw_decoded(code: int) -> int:
    bits = code ^ 0x55
    n = bits & 0x7F
    value = (ALAW_DECISIONS[n] + ALAW_DECISIONS[n + 1]) // 2
    return value if bits & 0x80 else -value


ALL_SAMPLES = list(range(-32768, 32768))
ALL_PCM = struct.pack(f"<{len(ALL_SAMPLES)}h", *ALL_SAMPLES)


def _samples(pcm: bytes) -> tuple[int, ...]:
    return struct.unpack(f"<{len(pcm) // 2}h", pcm)


def test_reference_known_points() -> None:
    assert ref_ulaw(0) == 0xFF and ref_ulaw(-1) == 0x7F
    assert ref_ulaw(8191) == 0x80 and ref_ulaw(-8192) == 0x00
    assert ref_alaw(0) == 0xD5 and ref_alaw(-1) == 0x55
    assert ref_alaw(4095) == 0xAA and ref_alaw(-4096) == 0x2A
    assert ref_ulaw_decoded(0x80) == 8031 and ref_ulaw_decoded(0xFE) == 2
    assert ref_alaw_decoded(0xD5) == 1 and ref_alaw_decoded(0xAA) == 4032


def test_ulaw_encodes_every_16_bit_sample_like_the_reference() -> None:
    expected = {x: ref_ulaw(x) for x in range(-8192, 8192)}
    assert g711.ulaw_encode(ALL_PCM) == bytes(expected[s >> 2] for s in ALL_SAMPLES)


def test_alaw_encodes_every_16_bit_sample_like_the_reference() -> None:
    expected = {x: ref_alaw(x) for x in range(-4096, 4096)}
    assert g711.alaw_encode(ALL_PCM) == bytes(expected[s >> 3] for s in ALL_SAMPLES)


def test_decode_tables_match_the_standard() -> None:
    assert tuple(4 * ref_ulaw_decoded(c) for c in range(256)) == g711.ULAW_DECODED
    assert tuple(8 * ref_alaw_decoded(c) for c in range(256)) == g711.ALAW_DECODED
    codes = bytes(range(256))
    assert _samples(g711.ulaw_decode(codes)) == g711.ULAW_DECODED
    assert _samples(g711.alaw_decode(codes)) == g711.ALAW_DECODED


@pytest.mark.parametrize(
    ("sample", "ulaw", "alaw"),
    [
        (0, 0xFF, 0xD5),
        (-1, 0x7F, 0x55),
        (1, 0xFF, 0xD5),
        (-4, 0x7F, 0x55),
        (-5, 0x7E, 0x55),
        (4, 0xFE, 0xD5),
        (8, 0xFE, 0xD5),
        (16, 0xFD, 0xD4),
        (32767, 0x80, 0xAA),
        (-32768, 0x00, 0x2A),
    ],
)
def test_known_points(sample: int, ulaw: int, alaw: int) -> None:
    pcm = struct.pack("<h", sample)
    assert g711.ulaw_encode(pcm) == bytes([ulaw])
    assert g711.alaw_encode(pcm) == bytes([alaw])


def test_known_decoded_values() -> None:
    ulaw = {0xFF: 0, 0x7F: 0, 0xFE: 8, 0x7E: -8, 0x80: 32124, 0x00: -32124}
    alaw = {0xD5: 8, 0x55: -8, 0xD4: 24, 0xAA: 32256, 0x2A: -32256, 0x80: 5504}
    assert _samples(g711.ulaw_decode(bytes(ulaw))) == tuple(ulaw.values())
    assert _samples(g711.alaw_decode(bytes(alaw))) == tuple(alaw.values())


def test_quantiser_is_symmetric() -> None:
    """``x`` and ``~x`` differ only in the polarity bit."""
    positive = ALL_PCM[len(ALL_PCM) // 2 :]
    negative = struct.pack("<32768h", *(~s for s in range(32768)))
    for encode in (g711.ulaw_encode, g711.alaw_encode):
        assert bytes(c ^ 0x80 for c in encode(positive)) == encode(negative)


@pytest.mark.parametrize(
    ("encode", "decode", "scale", "decisions"),
    [
        (g711.ulaw_encode, g711.ulaw_decode, 4, ULAW_DECISIONS),
        (g711.alaw_encode, g711.alaw_decode, 8, ALAW_DECISIONS),
    ],
    ids=["ulaw", "alaw"],
)
def test_round_trip_error_is_within_the_quantisation_step(
    encode: Callable[[bytes], bytes],
    decode: Callable[[bytes], bytes],
    scale: int,
    decisions: list[int],
) -> None:
    codes = encode(ALL_PCM)
    decoded = _samples(decode(codes))
    for sample, code, value in zip(ALL_SAMPLES, codes, decoded):
        n = (code ^ (0xFF if scale == 4 else 0x55)) & 0x7F
        step = scale * (decisions[n + 1] - decisions[n])
        # Half a step plus the input truncation (scale - 1); the µ-law overload region
        # (above 8159 in 14-bit units) is at most one step from the last decoded value.
        assert abs(value - sample) <= step, (sample, hex(code), value)
        assert abs(value - sample) <= step // 2 + scale or abs(sample) > scale * decisions[-1]


def test_encode_of_decode_is_identity_except_negative_zero() -> None:
    codes = bytes(range(256))
    assert g711.alaw_encode(g711.alaw_decode(codes)) == codes
    assert g711.ulaw_encode(g711.ulaw_decode(codes)) == codes.replace(b"\x7f", b"\xff")


def test_lengths_and_empty_input() -> None:
    assert g711.ulaw_encode(b"") == b"" == g711.alaw_decode(b"")
    assert g711.alaw_encode(b"\x00\x00") == b"\xd5"
    assert g711.ulaw_decode(b"\xff") == b"\x00\x00"
    with pytest.raises(ValueError, match="even length"):
        g711.ulaw_encode(b"\x00\x00\x00")
    with pytest.raises(ValueError, match="even length"):
        g711.alaw_encode(b"\x00")


def test_accepts_bytearray_and_memoryview() -> None:
    pcm = struct.pack("<4h", 0, -1, 1000, -1000)
    expected = g711.ulaw_encode(pcm)
    assert g711.ulaw_encode(bytearray(pcm)) == expected
    assert g711.ulaw_encode(memoryview(pcm)) == expected
    assert g711.ulaw_encode(memoryview(pcm).cast("h")) == expected
    assert g711.ulaw_decode(bytearray(expected)) == g711.ulaw_decode(expected)
    assert g711.alaw_decode(memoryview(expected)) == g711.alaw_decode(expected)


def test_sine_round_trip_signal_to_noise() -> None:
    """A full-scale-ish 1 kHz tone survives companding with G.711-class SNR (> 30 dB)."""
    tone = [round(16000 * math.sin(2 * math.pi * 1000 * i / 8000 + 0.3)) for i in range(800)]
    pcm = struct.pack(f"<{len(tone)}h", *tone)
    for encode, decode in (
        (g711.ulaw_encode, g711.ulaw_decode),
        (g711.alaw_encode, g711.alaw_decode),
    ):
        out = _samples(decode(encode(pcm)))
        noise = sum((a - b) ** 2 for a, b in zip(tone, out))
        signal = sum(a * a for a in tone)
        assert 10 * math.log10(signal / noise) > 30
