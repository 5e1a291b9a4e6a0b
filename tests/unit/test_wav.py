"""Tests for sipx._core.wav, with the stdlib ``wave`` module as an independent reference."""

from __future__ import annotations

import io
import itertools
import math
import re
import struct
import wave

import pytest

from sipx._core.wav import WavAudio, build_wav, parse_wav, to_pcm16_mono_8k
from sipx._errors import ParseError


def _tone(rate: int, seconds: float, amplitude: float, freq: float = 1000.0) -> list[float]:
    """A sine tone as floats in [-1, 1]."""
    return [
        amplitude * math.sin(2 * math.pi * freq * i / rate + 0.1)
        for i in range(round(rate * seconds))
    ]


def _encode(value: float, width: int) -> bytes:
    """One sample as ``wave`` stores it: 8-bit unsigned, wider signed little-endian."""
    if width == 1:
        return bytes([128 + round(value * 127)])
    full = (1 << (8 * width - 1)) - 1
    return round(value * full).to_bytes(width, "little", signed=True)


def _wave_file(rate: int, channels: int, width: int, seconds: float = 0.5) -> tuple[bytes, bytes]:
    """(WAV file written by ``wave``, its frames): 1 kHz on the left, half as loud on the right."""
    left = _tone(rate, seconds, 0.8)
    columns = [left, [v / 2 for v in left]][:channels]
    frames = b"".join(_encode(v, width) for frame in zip(*columns) for v in frame)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(frames)
    return buffer.getvalue(), frames


def _samples(pcm16: bytes) -> tuple[int, ...]:
    return struct.unpack(f"<{len(pcm16) // 2}h", pcm16)


def _frequency(samples: tuple[int, ...], rate: int) -> float:
    """Frequency from the number of sign changes (two per period)."""
    crossings = sum((a < 0) != (b < 0) for a, b in itertools.pairwise(samples))
    return crossings / 2 / (len(samples) / rate)


def _rms(samples: tuple[int, ...]) -> float:
    return math.sqrt(sum(s * s for s in samples) / len(samples))


# ------------------------------------------------------------------------------ parsing

RATES = [8000, 16000, 44100]


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_parse_files_written_by_wave(rate: int, channels: int, width: int) -> None:
    data, frames = _wave_file(rate, channels, width)
    audio = parse_wav(data)
    assert audio == WavAudio(rate, channels, width, frames)
    assert audio.frames == rate // 2 and audio.duration == 0.5


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_conversion_keeps_the_tone(rate: int, channels: int, width: int) -> None:
    data, _ = _wave_file(rate, channels, width)
    samples = _samples(to_pcm16_mono_8k(parse_wav(data)))
    assert len(samples) == 4000  # 0.5 s at 8 kHz
    assert _frequency(samples, 8000) == pytest.approx(1000, rel=0.01)
    # Left at 0.8, right at 0.4 of full scale: the mono mix is at 0.8 or 0.6.
    amplitude = 0.8 if channels == 1 else 0.6
    assert _rms(samples) == pytest.approx(32767 * amplitude / math.sqrt(2), rel=0.05)


def test_16_bit_mono_8k_is_passed_through() -> None:
    data, frames = _wave_file(8000, 1, 2)
    assert to_pcm16_mono_8k(parse_wav(data)) == frames


def test_sample_width_conversion_is_exact() -> None:
    eight = WavAudio(8000, 1, 1, bytes([0, 1, 127, 128, 129, 255]))
    assert _samples(to_pcm16_mono_8k(eight)) == (-32768, -32512, -256, 0, 256, 32512)
    values = [0x123456, -1, -0x800000, 0x7FFFFF, 0x0000FF]
    wide = b"".join(v.to_bytes(3, "little", signed=True) for v in values)
    assert _samples(to_pcm16_mono_8k(WavAudio(8000, 1, 3, wide))) == (
        0x1234,
        -1,
        -0x8000,
        0x7FFF,
        0,
    )
    values32 = [0x12345678, -0x80000000, -0x10000, -0xFFFF]
    wide = b"".join(v.to_bytes(4, "little", signed=True) for v in values32)
    assert _samples(to_pcm16_mono_8k(WavAudio(8000, 1, 4, wide))) == (0x1234, -0x8000, -1, -1)


def test_stereo_is_averaged() -> None:
    pcm = struct.pack("<6h", 100, 300, -32768, -32768, 32767, -32768)
    assert _samples(to_pcm16_mono_8k(WavAudio(8000, 2, 2, pcm))) == (200, -32768, -1)
    three = struct.pack("<3h", 3, 6, 9)
    assert _samples(to_pcm16_mono_8k(WavAudio(8000, 3, 2, three))) == (6,)


def test_upsampling_interpolates_linearly() -> None:
    pcm = struct.pack("<4h", 0, 400, -400, 1000)
    assert _samples(to_pcm16_mono_8k(WavAudio(4000, 1, 2, pcm))) == (
        0,
        200,
        400,
        0,
        -400,
        300,
        1000,
        1000,
    )


def test_resampled_16k_tone_keeps_its_frequency() -> None:
    for freq in (300.0, 1000.0, 3000.0):
        tone = [round(20000 * v) for v in _tone(16000, 1.0, 1.0, freq)]
        audio = WavAudio(16000, 1, 2, struct.pack(f"<{len(tone)}h", *tone))
        samples = _samples(to_pcm16_mono_8k(audio))
        assert len(samples) == 8000
        assert _frequency(samples, 8000) == pytest.approx(freq, rel=0.01)


def test_conversion_of_empty_and_tiny_audio() -> None:
    assert to_pcm16_mono_8k(WavAudio(44100, 2, 2, b"")) == b""
    assert len(to_pcm16_mono_8k(WavAudio(44100, 1, 2, b"\x10\x00" * 3))) == 2
    with pytest.raises(ValueError, match="40-bit"):
        to_pcm16_mono_8k(WavAudio(8000, 1, 5, b"\x00" * 5))


# ------------------------------------------------------------------------------ writing


@pytest.mark.parametrize(("rate", "channels"), [(8000, 1), (16000, 2), (44100, 1)])
def test_build_wav_is_readable_by_wave(rate: int, channels: int) -> None:
    pcm = struct.pack("<8h", 0, 1, -1, 32767, -32768, 1234, -1234, 7)
    data = build_wav(pcm, sample_rate=rate, channels=channels)
    with wave.open(io.BytesIO(data), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (channels, 2, rate)
        assert w.readframes(w.getnframes()) == pcm
    assert parse_wav(data) == WavAudio(rate, channels, 2, pcm)
    assert len(data) == 44 + len(pcm)


def test_build_wav_rejects_partial_frames() -> None:
    with pytest.raises(ValueError, match="whole number"):
        build_wav(b"\x00\x00\x00")
    with pytest.raises(ValueError, match="whole number"):
        build_wav(b"\x00\x00", channels=2)
    with pytest.raises(ValueError):
        build_wav(b"", channels=0)


# ---------------------------------------------------------------------- chunk handling


def _riff(*chunks: tuple[bytes, bytes]) -> bytes:
    body = b"".join(
        cid + struct.pack("<I", len(data)) + data + b"\x00" * (len(data) & 1)
        for cid, data in chunks
    )
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body


def _fmt(tag: int = 1, channels: int = 1, rate: int = 8000, bits: int = 16) -> bytes:
    align = channels * ((bits + 7) // 8)
    return struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)


def _extensible(subtag: int, bits: int = 16, channels: int = 1) -> bytes:
    guid = struct.pack("<H", subtag) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    return _fmt(0xFFFE, channels, 8000, bits) + struct.pack("<HHI", 22, bits, 4) + guid


PCM = struct.pack("<4h", 1, -2, 3, -4)


def test_unknown_chunks_are_skipped_in_any_order() -> None:
    data = _riff((b"LIST", b"INFOodd"), (b"data", PCM), (b"junk", b"\x01" * 9), (b"fmt ", _fmt()))
    assert parse_wav(data) == WavAudio(8000, 1, 2, PCM)


def test_extra_fmt_bytes_and_trailing_garbage_are_tolerated() -> None:
    data = _riff((b"fmt ", _fmt() + b"\x00\x00"), (b"data", PCM)) + b"\x00garbage"
    assert parse_wav(data).pcm == PCM


def test_extensible_pcm() -> None:
    data = _riff((b"fmt ", _extensible(1, channels=2)), (b"data", PCM))
    assert parse_wav(data) == WavAudio(8000, 2, 2, PCM)


def test_streaming_placeholder_data_size() -> None:
    data = bytearray(build_wav(PCM))
    data[40:44] = b"\xff\xff\xff\xff"
    assert parse_wav(bytes(data)).pcm == PCM


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        (_fmt(3, bits=32), "WAV format 3 (IEEE float) is not supported: use 16-bit PCM"),
        (_fmt(7, bits=8), "WAV format 7 (µ-law) is not supported"),
        (_fmt(6, bits=8), "WAV format 6 (A-law) is not supported"),
        (_fmt(0x55), "WAV format 85 (MPEG Layer 3) is not supported"),
        (_fmt(0x1234), "WAV format 4660 (unknown) is not supported"),
        (_extensible(3, bits=32), "WAV format 3 (IEEE float, in WAVE_FORMAT_EXTENSIBLE)"),
        (_fmt(1, bits=48), "48-bit WAV samples are not supported"),
    ],
    ids=["float", "ulaw", "alaw", "mp3", "unknown", "extensible-float", "48-bit"],
)
def test_unsupported_formats_raise_value_error(fmt: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        parse_wav(_riff((b"fmt ", fmt), (b"data", PCM)))
    assert not isinstance(info.value, ParseError)


def test_float_wav_message_is_exact() -> None:
    floats = struct.pack("<4f", 0.0, 0.5, -0.5, 1.0)
    with pytest.raises(ValueError) as info:
        parse_wav(_riff((b"fmt ", _fmt(3, bits=32)), (b"data", floats)))
    assert str(info.value) == "WAV format 3 (IEEE float) is not supported: use 16-bit PCM"


def test_big_endian_variants_are_unsupported() -> None:
    data = build_wav(PCM)
    with pytest.raises(ValueError, match="RIFX"):
        parse_wav(b"RIFX" + data[4:])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short"),
        (b"RIFF\x00\x00", "too short"),
        (b"\x00" * 64, "not a WAV file"),
        (b"ID3\x04" + b"\x00" * 60, "not a WAV file"),
        (b"RIFF\x24\x00\x00\x00AVI LIST", "not a WAV file"),
        (_riff((b"data", PCM)), "no fmt chunk"),
        (_riff((b"fmt ", _fmt())), "no data chunk"),
        (_riff((b"fmt ", _fmt()[:14]), (b"data", PCM)), "fmt chunk is 14 bytes"),
        (_riff((b"fmt ", _fmt(channels=0)), (b"data", PCM)), "0 channels"),
        (_riff((b"fmt ", _fmt(rate=0)), (b"data", PCM)), "0 Hz"),
        (_riff((b"fmt ", _fmt(0xFFFE)), (b"data", PCM)), "EXTENSIBLE fmt chunk is 16 bytes"),
        (_riff((b"fmt ", _fmt(channels=2)), (b"data", PCM[:6])), "whole number of 4-byte"),
        (
            _riff((b"fmt ", _fmt()[:12] + struct.pack("<HH", 3, 16)), (b"data", PCM)),
            "block align is 3, expected 2",
        ),
    ],
)
def test_malformed_files_raise_parse_error(data: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_wav(data)


def test_every_truncation_is_a_parse_error() -> None:
    data, _ = _wave_file(8000, 2, 2, seconds=0.01)
    for length in range(len(data)):
        with pytest.raises(ParseError):
            parse_wav(data[:length])


def test_truncated_data_chunk_message() -> None:
    data = build_wav(PCM)
    with pytest.raises(ParseError, match=r"'data' chunk is truncated: 8 bytes declared, 5 present"):
        parse_wav(data[:-3])
