"""Audio helpers for calls: make a tone, find a tone, cut PCM into frames.

Audio in sipx is 16-bit signed little-endian mono PCM at 8000 Hz (what G.711 carries): a
20 ms frame is 160 samples, 320 bytes. These helpers let a test or an IVR check hear what a
call carries::

    from sipx.media import tone, dominant_frequency

    await call.play(tone(1000, 1.0))                   # one second of 1 kHz
    heard = b"".join([frame async for frame in call.audio_frames()][:50])
    assert abs(dominant_frequency(heard) - 1000) < 25
"""

from __future__ import annotations

import math
import struct
from array import array
from collections.abc import Iterator

RATE = 8000
SAMPLE_BYTES = 2


def tone(frequency: float, seconds: float, *, amplitude: float = 0.5, rate: int = RATE) -> bytes:
    """A sine tone as 16-bit PCM (``amplitude`` is a fraction of full scale)."""
    if not 0 < frequency < rate / 2:
        raise ValueError(f"frequency must be between 0 and {rate / 2:g} Hz, not {frequency!r}")
    if seconds < 0:
        raise ValueError(f"seconds must not be negative, not {seconds!r}")
    if not 0 <= amplitude <= 1:
        raise ValueError(f"amplitude is a fraction of full scale (0 to 1), not {amplitude!r}")
    peak = amplitude * 32767
    step = 2 * math.pi * frequency / rate
    samples = array("h", (round(peak * math.sin(step * n)) for n in range(round(seconds * rate))))
    return _little_endian(samples)


def silence(seconds: float, *, rate: int = RATE) -> bytes:
    """Silence as 16-bit PCM."""
    return bytes(SAMPLE_BYTES * round(seconds * rate))


def frames(pcm: bytes, ptime: int = 20, *, rate: int = RATE) -> Iterator[bytes]:
    """``pcm`` cut into ``ptime``-millisecond frames (the last one padded with silence)."""
    size = rate * ptime // 1000 * SAMPLE_BYTES
    for start in range(0, len(pcm), size):
        chunk = pcm[start : start + size]
        yield chunk if len(chunk) == size else chunk + bytes(size - len(chunk))


def goertzel(pcm: bytes, frequency: float, *, rate: int = RATE) -> float:
    """The power of ``frequency`` in ``pcm`` relative to the signal's total power (0 to 1):
    about 1 for a pure tone at that frequency, about 0 when it is absent."""
    samples = _samples(pcm)
    if not samples:
        return 0.0
    coefficient = 2 * math.cos(2 * math.pi * frequency / rate)
    previous = before = 0.0
    for sample in samples:
        previous, before = sample + coefficient * previous - before, previous
    power = previous * previous + before * before - coefficient * previous * before
    total = sum(sample * sample for sample in samples)
    return 0.0 if total == 0 else min(1.0, 2 * power / (len(samples) * total))


def detect_tone(pcm: bytes, frequency: float, *, rate: int = RATE, threshold: float = 0.5) -> bool:
    """True when ``frequency`` carries at least ``threshold`` of the power of ``pcm``."""
    return goertzel(pcm, frequency, rate=rate) >= threshold


def dominant_frequency(
    pcm: bytes, *, rate: int = RATE, low: float = 100, high: float = 3900, step: float = 10
) -> float:
    """The frequency (to ``step`` Hz) with the most power in ``pcm``, by a Goertzel scan
    of its first 200 ms that carry sound; 0.0 for silence."""
    samples = _samples(pcm)
    start = next((i for i, sample in enumerate(samples) if abs(sample) > 64), len(samples))
    window = _little_endian(array("h", samples[start : start + rate // 5]))
    if not window:
        return 0.0
    best, best_power = 0.0, 0.0
    frequency = low
    while frequency <= high:
        power = goertzel(window, frequency, rate=rate)
        if power > best_power:
            best, best_power = frequency, power
        frequency += step
    return best


def rms(pcm: bytes) -> float:
    """The root mean square level of ``pcm`` (0 to 32768)."""
    samples = _samples(pcm)
    return math.sqrt(sum(s * s for s in samples) / len(samples)) if samples else 0.0


def _samples(pcm: bytes) -> array[int]:
    if len(pcm) % SAMPLE_BYTES:
        raise ValueError(f"16-bit PCM has an even number of bytes, not {len(pcm)}")
    samples = array("h")
    samples.frombytes(pcm)
    if struct.pack("=h", 1) != struct.pack("<h", 1):
        samples.byteswap()  # big-endian host
    return samples


def _little_endian(samples: array[int]) -> bytes:
    if struct.pack("=h", 1) != struct.pack("<h", 1):
        samples = array("h", samples)
        samples.byteswap()
    return samples.tobytes()


__all__ = [
    "RATE",
    "detect_tone",
    "dominant_frequency",
    "frames",
    "goertzel",
    "rms",
    "silence",
    "tone",
]
