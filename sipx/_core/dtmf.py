"""RFC 4733 telephone-events (DTMF over RTP), sans-I/O.

:class:`TelephoneEvent` is the 4-byte payload. :class:`DtmfSender` turns one digit into the
packets to send; the caller stamps sequence numbers and paces them one packet interval
apart. :class:`DtmfReceiver` turns received payloads back into digits, once per event.
Nothing here reads a clock: the trio layer decides when packets go out and when a silent
event has lasted long enough to :meth:`DtmfReceiver.flush`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from .._errors import ParseError

__all__ = [
    "DIGIT_EVENTS",
    "DtmfDigit",
    "DtmfPacket",
    "DtmfReceiver",
    "DtmfSender",
    "TelephoneEvent",
    "digit_to_event",
    "event_to_digit",
]

#: The largest value of the 16-bit duration field, in timestamp units.
MAX_DURATION: Final = 0xFFFF
#: The size of a telephone-event payload in bytes.
PAYLOAD_SIZE: Final = 4
#: Packets of an event that started up to this many timestamp units before the current one
#: are stragglers and ignored; an earlier timestamp is taken as a restarted stream.
_STRAGGLER_WINDOW: Final = 1 << 20

#: DTMF digits and hook flash and their RFC 4733 event codes (RFC 4733 section 7).
DIGIT_EVENTS: Final[dict[str, int]] = {
    **{str(n): n for n in range(10)},
    "*": 10,
    "#": 11,
    "A": 12,
    "B": 13,
    "C": 14,
    "D": 15,
    "flash": 16,
}
_EVENT_DIGITS: Final = {code: digit for digit, code in DIGIT_EVENTS.items()}


def digit_to_event(digit: str) -> int:
    """The event code of ``'0'``-``'9'``, ``'*'``, ``'#'``, ``'A'``-``'D'`` or ``'flash'``
    (case-insensitive); ValueError for anything else."""
    key = digit.upper() if len(digit) == 1 else digit.lower()
    try:
        return DIGIT_EVENTS[key]
    except KeyError:
        raise ValueError(f"not a DTMF digit: {digit!r}") from None


def event_to_digit(event: int) -> str | None:
    """The digit of a DTMF event code (0-15, 16 is ``'flash'``), None for other events."""
    return _EVENT_DIGITS.get(event)


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One RFC 4733 event payload: event code, end bit, volume (-dBm0) and duration."""

    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.event <= 255:
            raise ValueError(f"event must be 0-255, got {self.event}")
        if not 0 <= self.volume <= 63:
            raise ValueError(f"volume must be 0-63, got {self.volume}")
        if not 0 <= self.duration <= MAX_DURATION:
            raise ValueError(f"duration must be 0-65535, got {self.duration}")

    @classmethod
    def parse(cls, data: bytes) -> TelephoneEvent:
        """Parse a 4-byte payload; the reserved bit is ignored (RFC 4733 section 2.3)."""
        if len(data) != PAYLOAD_SIZE:
            raise ParseError(f"telephone-event payload must be 4 bytes, got {len(data)}")
        flags = data[1]
        return cls(data[0], bool(flags & 0x80), flags & 0x3F, (data[2] << 8) | data[3])

    def to_bytes(self) -> bytes:
        """The 4-byte payload (reserved bit zero)."""
        flags = (0x80 if self.end else 0) | self.volume
        return bytes((self.event, flags, self.duration >> 8, self.duration & 0xFF))


class DtmfPacket(NamedTuple):
    """One telephone-event RTP packet to send: payload, RTP marker bit, RTP timestamp."""

    payload: bytes
    marker: bool
    timestamp: int


@dataclass(frozen=True, slots=True)
class DtmfSender:
    """Builds the packets of one telephone-event (RFC 4733 section 2.5.1).

    ``interval`` is the update interval in timestamp units (160 = 20 ms at 8 kHz) and
    ``duration_ms`` the tone length. Durations are limited to 65535 timestamp units
    (8.19 s at 8 kHz): longer digits raise ValueError instead of being segmented.
    """

    clock_rate: int = 8000
    interval: int = 160
    duration_ms: float = 100
    volume: int = 10
    end_repeats: int = 3

    def __post_init__(self) -> None:
        if self.clock_rate <= 0 or self.interval <= 0:
            raise ValueError("clock_rate and interval must be positive")
        if not 0 < self.duration <= MAX_DURATION:
            raise ValueError(
                f"a {self.duration_ms} ms tone is {self.duration} timestamp units; "
                f"it must be 1-{MAX_DURATION} (under {MAX_DURATION / self.clock_rate:.2f} s)"
            )
        if not 0 <= self.volume <= 63:
            raise ValueError(f"volume must be 0-63, got {self.volume}")
        if self.end_repeats < 1:
            raise ValueError("end_repeats must be at least 1")

    @property
    def duration(self) -> int:
        """The tone duration in timestamp units."""
        return round(self.duration_ms * self.clock_rate / 1000)

    def packets(self, digit: str | int, timestamp: int) -> list[DtmfPacket]:
        """The packets for ``digit`` (or an event code) starting at RTP ``timestamp``.

        All carry the event's start ``timestamp``. The first has the marker bit; updates
        report durations growing by ``interval``; the end packet (E bit, full duration)
        comes ``end_repeats`` times with identical content (RFC 4733 2.5.1.4). Send them
        one ``interval`` apart, the first one ``interval`` after the tone starts; media
        resumes at ``timestamp + duration`` at the earliest.
        """
        event = digit_to_event(digit) if isinstance(digit, str) else digit
        timestamp &= 0xFFFFFFFF
        total = self.duration
        packets = [
            DtmfPacket(
                TelephoneEvent(event, False, self.volume, elapsed).to_bytes(),
                elapsed == self.interval,
                timestamp,
            )
            for elapsed in range(self.interval, total, self.interval)
        ]
        end = TelephoneEvent(event, True, self.volume, total).to_bytes()
        packets += [DtmfPacket(end, False, timestamp)] * self.end_repeats
        if not packets[0].marker:  # the tone fits in one interval: the end packet opens it
            packets[0] = DtmfPacket(end, True, timestamp)
        return packets


class DtmfDigit(NamedTuple):
    """An event reported by :class:`DtmfReceiver`."""

    digit: str | None  #: None for events that are not DTMF digits or flash
    event: int
    timestamp: int  #: the RTP timestamp identifying the event (its start)
    duration: int  #: the longest duration seen, in timestamp units
    ended: bool  #: False if reported without an end packet (new event or flush)


def _is_straggler(timestamp: int, reference: int) -> bool:
    """RTP ``timestamp`` is shortly before ``reference`` (modulo 2**32)."""
    return 0 < ((reference - timestamp) & 0xFFFFFFFF) < _STRAGGLER_WINDOW


@dataclass(slots=True)
class _Current:
    event: int
    timestamp: int  # of the event's first segment: what identifies it
    segment: int  # timestamp of the segment being received
    offset: int  # duration of the segments before the current one
    duration: int  # duration within the current segment


@dataclass
class DtmfReceiver:
    """Turns received telephone-event payloads into digits, each exactly once.

    Events are identified by their RTP timestamp. An event is reported on its first end
    packet, or, if every end packet was lost, when a later event starts (``ended`` is then
    False) or when the caller calls :meth:`flush` (say after a few hundred ms without
    telephone-event packets). Repeated end packets, late updates and packets older than the
    current event are ignored. An event that reaches the 65535 maximum and continues with
    the same code at a new timestamp is one long event (RFC 4733 section 2.5.1.3).
    Payloads that are not 4 bytes long are counted in :attr:`malformed` and ignored.
    """

    history: int = 16  #: how many reported event timestamps to remember
    malformed: int = 0  #: payloads ignored because they were not 4 bytes long
    _current: _Current | None = field(default=None, init=False, repr=False)
    _latest: int | None = field(default=None, init=False, repr=False)
    _done: deque[int] = field(default_factory=deque, init=False, repr=False)

    def feed(self, payload: bytes, timestamp: int, marker: bool = False) -> list[DtmfDigit]:
        """Process one packet; returns the events it completes (usually none or one).

        ``marker`` is accepted for symmetry with the RTP header but not needed: the
        timestamp alone tells events apart, which also copes with a lost first packet.
        """
        try:
            packet = TelephoneEvent.parse(payload)
        except ParseError:
            self.malformed += 1
            return []
        timestamp &= 0xFFFFFFFF
        if timestamp in self._done:
            return []  # redundant end packet or a late update of a reported event
        if self._latest is not None and _is_straggler(timestamp, self._latest):
            return []  # from an event older than the latest one
        self._latest = timestamp
        reported: list[DtmfDigit] = []
        current = self._current
        if current is not None and timestamp != current.segment:
            if packet.event == current.event and current.duration == MAX_DURATION:
                current.offset += MAX_DURATION  # next segment of a long event
                current.segment, current.duration = timestamp, 0
            else:
                reported.append(self._finish(ended=False))
                current = None
        if current is None:
            current = self._current = _Current(packet.event, timestamp, timestamp, 0, 0)
        current.duration = max(current.duration, packet.duration)
        if packet.end:
            reported.append(self._finish(ended=True))
        return reported

    @property
    def in_progress(self) -> tuple[int, int] | None:
        """``(event, timestamp)`` of the event being received and not yet reported (for a
        caller that reports digits as they start, e.g. a key held down)."""
        current = self._current
        return None if current is None else (current.event, current.timestamp)

    def flush(self) -> DtmfDigit | None:
        """Report the event in progress, if any, as if it had ended now."""
        return None if self._current is None else self._finish(ended=False)

    def _finish(self, *, ended: bool) -> DtmfDigit:
        current = self._current
        assert current is not None
        self._current = None
        self._done.append(current.segment)
        if current.timestamp != current.segment:
            self._done.append(current.timestamp)
        while len(self._done) > self.history:
            self._done.popleft()
        return DtmfDigit(
            event_to_digit(current.event),
            current.event,
            current.timestamp,
            current.offset + current.duration,
            ended,
        )
