"""A call's media: what ``call.play``, ``call.recording``, ``call.send_dtmf`` and friends do.

:class:`CallMedia` belongs to one :class:`~sipx.Call`. It holds the call's
:class:`~sipx._media_stream.MediaStream` (made with the SDP that carries its port, started
in the engine's nursery once offer and answer are known, closed when the call ends) and the
digits received by RFC 4733 or SIP INFO. Nothing here runs a task of its own.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio

from ._core.dtmf import digit_to_event
from ._core.media_params import MediaParams, negotiate
from ._core.sdp import SDPBody
from ._core.wav import build_wav, parse_wav, to_pcm16_mono_8k
from ._errors import ParseError, ProtocolError
from ._media_stream import FRAME_BYTES, MediaClock, MediaStats, MediaStream, frames_of

if TYPE_CHECKING:
    from ._engine import Engine

AudioSource = str | os.PathLike[str] | bytes | Iterable[bytes]
DTMF_INFO_TYPES = ("application/dtmf-relay", "application/dtmf")
_SIGNAL = re.compile(r"^\s*Signal\s*=\s*(\S+)", re.IGNORECASE | re.MULTILINE)


class CallMedia:
    """The media side of one call."""

    __slots__ = ("_clock", "_digits", "_engine", "_started", "stream")

    def __init__(self, engine: Engine, stream: MediaStream | None, clock: MediaClock) -> None:
        self._engine = engine
        self._clock = clock
        self.stream = stream
        self._started = False
        # The digits received and not read yet: made by the first digit or reader.
        self._digits: tuple[trio.MemorySendChannel[str], trio.MemoryReceiveChannel[str]] | None = (
            None
        )

    def _digit_channel(
        self,
    ) -> tuple[trio.MemorySendChannel[str], trio.MemoryReceiveChannel[str]]:
        if self._digits is None:
            self._digits = trio.open_memory_channel[str](math.inf)
        return self._digits

    # -- offer/answer --------------------------------------------------------------------------
    def negotiated(
        self, local: SDPBody | None, remote: SDPBody | None, *, we_offered: bool
    ) -> None:
        """Offer and answer are known (first time, or a re-INVITE/UPDATE): (re)configure the
        stream and start it once."""
        stream = self.stream
        if stream is None or stream.closed or local is None or remote is None:
            return
        stream.configure(negotiate(local, remote, we_offered=we_offered))
        if not self._started and self._engine.running:
            self._started = True
            stream.digit_receiver = self
            self._clock.add(stream)
            if not self._clock.running:  # the client's one media task, in the engine's nursery
                self._clock.running = True
                self._engine.start_soon(self._clock.run)

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()

    @property
    def params(self) -> MediaParams | None:
        return None if self.stream is None else self.stream.params

    @property
    def stats(self) -> MediaStats | None:
        return None if self.stream is None else self.stream.stats

    def _require_stream(self) -> MediaStream:
        stream = self.stream
        if stream is None:
            raise ProtocolError("this call has no sipx media (it was set up with your own SDP)")
        if stream.closed:
            raise ProtocolError("the call's media has ended")
        if stream.params is None:
            raise ProtocolError("the call's media is not negotiated yet (no answer)")
        return stream

    # -- sending audio ---------------------------------------------------------------------------
    async def play(self, source: AudioSource) -> None:
        """Send audio; return once its last packet has gone (cancellable)."""
        frames = await _frames_from(source)
        await self._send_frames(frames)

    async def send_audio(self, frames: Iterable[bytes] | AsyncIterable[bytes]) -> None:
        """Send 20 ms frames of 16-bit PCM as they come."""
        if isinstance(frames, AsyncIterable):
            async for frame in frames:
                await self._send_frames([_check_frame(frame)])
        else:
            await self._send_frames([_check_frame(frame) for frame in frames])

    async def _send_frames(self, frames: list[bytes]) -> None:
        stream = self._require_stream()
        done = stream.queue_audio(frames)
        try:
            await done.wait()
        except BaseException:
            stream.stop_audio()
            raise

    # -- receiving audio -------------------------------------------------------------------------
    async def audio_frames(self) -> AsyncIterator[bytes]:
        """Decoded 20 ms frames of what the peer sends, from now until the call ends."""
        stream = self._require_stream()
        send, receive = trio.open_memory_channel[bytes](math.inf)
        stream.add_frame_listener(send.send_nowait)
        stream.add_close_listener(send.close)
        try:
            async for frame in receive:
                yield frame
        finally:
            stream.remove_frame_listener(send.send_nowait)
            send.close()

    @asynccontextmanager
    async def recording(self, path: str | os.PathLike[str]) -> AsyncIterator[None]:
        """Write what the peer sends, decoded, to a WAV file for the body of the block."""
        stream = self._require_stream()
        captured: list[bytes] = []
        stream.add_frame_listener(captured.append)
        try:
            yield
        finally:
            stream.remove_frame_listener(captured.append)
            data = build_wav(b"".join(captured), sample_rate=8000, channels=1)
            await trio.Path(path).write_bytes(data)

    # -- DTMF ---------------------------------------------------------------------------------
    def digit_received(self, digit: str) -> None:
        """A digit arrived (RFC 4733 or INFO)."""
        self._digit_channel()[0].send_nowait(digit)

    def info_digit(self, content_type: str, body: bytes) -> str | None:
        """The digit of an INFO body (``application/dtmf-relay``: ``Signal=5``;
        ``application/dtmf``: ``5``), or None."""
        text = body.decode("utf-8", "replace")
        if content_type.startswith("application/dtmf-relay"):
            match = _SIGNAL.search(text)
            value = match.group(1) if match else ""
        else:
            value = text.strip()
        try:
            digit_to_event(value)
        except ValueError:
            return None
        return value.upper()

    async def collect_dtmf(self, count: int, timeout: float | None = None) -> str:
        """``count`` digits (fewer if ``timeout`` seconds pass first)."""
        if count < 1:
            raise ValueError(f"count must be at least 1, not {count!r}")
        digits = ""
        receive = self._digit_channel()[1]
        with trio.move_on_after(math.inf if timeout is None else timeout):
            while len(digits) < count:
                digits += await receive.receive()
        return digits

    async def dtmf(self) -> AsyncIterator[str]:
        """Digits as they arrive."""
        async for digit in self._digit_channel()[1]:
            yield digit

    async def send_rfc4733(self, digits: str, duration: float, gap: float) -> None:
        stream = self._require_stream()
        if not self.rfc4733:
            raise ProtocolError("telephone-event (RFC 4733) was not negotiated: use method='info'")
        for digit in digits:
            done = stream.queue_digit(digit, duration)
            await done.wait()
            await trio.sleep(gap)

    @property
    def rfc4733(self) -> bool:
        params = self.params
        return params is not None and params.event_send_payload is not None


async def _frames_from(source: AudioSource) -> list[bytes]:
    if isinstance(source, bytes | bytearray | memoryview):
        return frames_of(bytes(source))
    if isinstance(source, str | os.PathLike):
        return frames_of(await trio.to_thread.run_sync(read_wav_file, source))
    return [_check_frame(frame) for frame in source]


def read_wav_file(path: str | os.PathLike[str]) -> bytes:
    """A WAV file as 16-bit 8 kHz mono PCM; ValueError naming the file if it cannot be."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise ValueError(f"cannot read {os.fspath(path)!r}: {exc.strerror or exc}") from None
    try:
        return to_pcm16_mono_8k(parse_wav(data))
    except ParseError as exc:
        raise ValueError(f"{os.fspath(path)!r} is not a WAV file sipx can read: {exc}") from None


def _check_frame(frame: bytes) -> bytes:
    if not isinstance(frame, bytes | bytearray | memoryview):
        raise TypeError(f"audio frames are bytes of 16-bit PCM, not {type(frame).__name__}")
    if len(frame) != FRAME_BYTES:
        raise ValueError(
            f"a frame is 20 ms of 8 kHz 16-bit PCM ({FRAME_BYTES} bytes), not {len(frame)}"
        )
    return bytes(frame)


__all__ = ["DTMF_INFO_TYPES", "AudioSource", "CallMedia", "read_wav_file"]
