"""WAV (RIFF/WAVE) reading and writing on bytes, sans-I/O.

:func:`parse_wav` reads integer PCM (format 1, or WAVE_FORMAT_EXTENSIBLE with the PCM
subformat) at 8, 16, 24 or 32 bits, any rate and channel count, skipping chunks it does not
need. Malformed files raise :class:`sipx.ParseError` naming the problem; well-formed files in
another encoding (float, A-law, µ-law, ADPCM, MP3...) raise ValueError naming the format.
:func:`to_pcm16_mono_8k` turns the result into what G.711 needs and :func:`build_wav` writes
16-bit PCM back out.
"""

from __future__ import annotations

import struct
import sys
from array import array
from dataclasses import dataclass
from itertools import accumulate
from math import gcd
from typing import Final

from .._errors import ParseError

__all__ = ["WavAudio", "build_wav", "parse_wav", "to_pcm16_mono_8k"]

_PCM: Final = 1
_EXTENSIBLE: Final = 0xFFFE
#: Bytes 2-15 of every WAVE_FORMAT_EXTENSIBLE subformat GUID derived from a format tag.
_GUID_TAIL: Final = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
_FORMAT_NAMES: Final = {
    1: "PCM",
    2: "Microsoft ADPCM",
    3: "IEEE float",
    6: "A-law",
    7: "µ-law",
    0x11: "IMA ADPCM",
    0x31: "GSM 6.10",
    0x40: "G.721 ADPCM",
    0x55: "MPEG Layer 3",
}
_TARGET_RATE: Final = 8000
_FLIP_TOP_BIT: Final = bytes(b ^ 0x80 for b in range(256))


@dataclass(frozen=True, slots=True)
class WavAudio:
    """Integer PCM as stored in the file: little-endian, channels interleaved, 8-bit
    samples unsigned and wider ones signed."""

    sample_rate: int
    channels: int
    sample_width: int  #: bytes per sample: 1, 2, 3 or 4
    pcm: bytes

    @property
    def frames(self) -> int:
        """Samples per channel."""
        return len(self.pcm) // (self.channels * self.sample_width)

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate


def _unsupported(tag: int, how: str = "") -> ValueError:
    name = _FORMAT_NAMES.get(tag, "unknown")
    return ValueError(f"WAV format {tag} ({name}{how}) is not supported: use 16-bit PCM")


def _parse_fmt(body: bytes) -> tuple[int, int, int]:
    """(channels, sample rate, sample width) from a ``fmt `` chunk body."""
    if len(body) < 16:
        raise ParseError(f"fmt chunk is {len(body)} bytes, needs at least 16")
    tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", body)
    if tag == _EXTENSIBLE:
        if len(body) < 40:
            raise ParseError(f"WAVE_FORMAT_EXTENSIBLE fmt chunk is {len(body)} bytes, needs 40")
        subformat = body[24:40]
        if subformat[2:] != _GUID_TAIL:
            raise ValueError(f"WAV subformat {subformat.hex()} is not supported: use 16-bit PCM")
        tag = int.from_bytes(subformat[:2], "little")
        if tag != _PCM:
            raise _unsupported(tag, ", in WAVE_FORMAT_EXTENSIBLE")
    elif tag != _PCM:
        raise _unsupported(tag)
    if channels == 0:
        raise ParseError("fmt chunk says 0 channels")
    if rate == 0:
        raise ParseError("fmt chunk says a sample rate of 0 Hz")
    width = (bits + 7) // 8
    if not 1 <= width <= 4:
        raise ValueError(f"{bits}-bit WAV samples are not supported: use 16-bit PCM")
    if block_align != channels * width:
        raise ParseError(
            f"fmt chunk block align is {block_align}, expected {channels * width} "
            f"for {channels} channel(s) of {bits}-bit samples"
        )
    return channels, rate, width


def parse_wav(data: bytes) -> WavAudio:
    """Parse a WAV file's bytes (chunks may come in any order; unknown ones are skipped)."""
    data = bytes(data)
    if len(data) < 12:
        raise ParseError(f"not a WAV file: {len(data)} bytes is too short for a RIFF header")
    if data[:4] in (b"RIFX", b"RF64"):
        raise ValueError(f"{data[:4].decode()} WAV files are not supported: use 16-bit PCM")
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ParseError(f"not a WAV file: starts with {data[:12]!r}, not RIFF....WAVE")
    fmt: tuple[int, int, int] | None = None
    pcm: bytes | None = None
    offset = 12
    while fmt is None or pcm is None:
        if offset + 8 > len(data):
            missing = "fmt" if fmt is None else "data"
            raise ParseError(f"WAV file has no {missing} chunk", offset=offset)
        chunk_id, size = (
            data[offset : offset + 4],
            int.from_bytes(data[offset + 4 : offset + 8], "little"),
        )
        start = offset + 8
        available = len(data) - start
        if chunk_id == b"data" and size in (0, 0xFFFFFFFF):
            size = available  # a streaming writer never filled the size in
        if size > available:
            name = chunk_id.decode("latin-1")
            raise ParseError(
                f"WAV {name!r} chunk is truncated: {size} bytes declared, {available} present",
                offset=offset,
            )
        body = data[start : start + size]
        if chunk_id == b"fmt ":
            fmt = _parse_fmt(body)
        elif chunk_id == b"data":
            pcm = body
        offset = start + size + (size & 1)  # chunks are padded to an even length
    channels, rate, width = fmt
    if len(pcm) % (channels * width):
        raise ParseError(
            f"WAV data chunk of {len(pcm)} bytes is not a whole number of "
            f"{channels * width}-byte frames"
        )
    return WavAudio(rate, channels, width, pcm)


def _to_pcm16(pcm: bytes, width: int) -> bytes:
    """Samples of ``width`` bytes to 16-bit signed little-endian (wider ones truncated)."""
    if width == 2:
        return pcm
    count = len(pcm) // width
    out = bytearray(2 * count)
    if width == 1:  # unsigned, offset 128: flip the top bit and use it as the high byte
        out[1::2] = pcm.translate(_FLIP_TOP_BIT)
    elif width in (3, 4):  # keep the two most significant bytes
        out[0::2] = pcm[width - 2 :: width]
        out[1::2] = pcm[width - 1 :: width]
    else:
        raise ValueError(f"{8 * width}-bit WAV samples are not supported: use 16-bit PCM")
    return bytes(out)


def _samples(pcm16: bytes) -> array[int]:
    samples = array("h", pcm16)
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def _to_bytes(samples: array[int]) -> bytes:
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


def _resample(samples: list[int] | array[int], rate: int) -> list[int]:
    """Resample to 8000 Hz: a moving average over ``rate // 8000`` samples (a cheap
    anti-alias filter, only when downsampling by 2 or more) then linear interpolation."""
    if not samples:
        return []
    width = rate // _TARGET_RATE
    if 2 <= width <= len(samples):
        sums = [0, *accumulate(samples)]
        averaged = [(sums[i + width] - sums[i]) // width for i in range(len(sums) - width)]
        samples = averaged + averaged[-1:] * (width - 1)
    padded = [*samples, samples[-1], samples[-1]]
    divisor = gcd(rate, _TARGET_RATE)
    step, den = rate // divisor, _TARGET_RATE // divisor  # input samples per output sample
    count = (len(samples) * _TARGET_RATE + rate // 2) // rate
    out: list[int] = []
    for i in range(count):
        j, frac = divmod(i * step, den)
        a = padded[j]
        out.append(a + (padded[j + 1] - a) * frac // den)
    return out


def to_pcm16_mono_8k(audio: WavAudio) -> bytes:
    """16-bit signed little-endian mono 8000 Hz PCM, ready for G.711.

    8-bit samples are widened and 24/32-bit ones truncated to 16 bits; channels are
    averaged; other rates are resampled by linear interpolation after a moving-average
    pre-filter when downsampling (fine for speech prompts, not studio quality).
    """
    pcm = _to_pcm16(audio.pcm, audio.sample_width)
    if audio.channels == 1 and audio.sample_rate == _TARGET_RATE:
        return pcm
    samples: list[int] | array[int] = _samples(pcm)
    channels = audio.channels
    if channels > 1:
        columns = [samples[c::channels] for c in range(channels)]
        samples = [total // channels for total in map(sum, zip(*columns))]
    if audio.sample_rate != _TARGET_RATE:
        samples = _resample(samples, audio.sample_rate)
    return _to_bytes(array("h", samples))


def build_wav(pcm16: bytes, sample_rate: int = 8000, channels: int = 1) -> bytes:
    """A WAV file holding 16-bit signed little-endian PCM (channels interleaved)."""
    if channels < 1 or sample_rate < 1:
        raise ValueError("channels and sample_rate must be positive")
    frame = 2 * channels
    if len(pcm16) % frame:
        raise ValueError(f"{len(pcm16)} bytes is not a whole number of {frame}-byte frames")
    fmt = struct.pack("<HHIIHH", _PCM, channels, sample_rate, sample_rate * frame, frame, 16)
    return b"".join(
        (
            b"RIFF",
            struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(pcm16)),
            b"WAVE",
            b"fmt ",
            struct.pack("<I", len(fmt)),
            fmt,
            b"data",
            struct.pack("<I", len(pcm16)),
            bytes(pcm16),
        )
    )
