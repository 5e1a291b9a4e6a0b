"""Receive-side bookkeeping for one RTP source (RFC 3550 6.4.1, A.1, A.3, A.8).

:class:`RtpReceiver` orders the packets of one synchronization source (SSRC) through a
small reorder buffer, drops duplicates, extends sequence numbers across the 16-bit wrap,
counts expected and lost packets, computes the interarrival jitter and builds the
:class:`~sipx._core.rtcp.ReportBlock` for the next RTCP report. It has no clock: the caller
passes each packet's arrival time (any monotonic seconds) and the report time.

Sequence validation follows A.1 with these simplifications:

* No probation: the first packet is accepted at once (the source was signalled in SDP).
* A packet within ``MAX_DROPOUT`` ahead of or ``MAX_MISORDER`` behind the highest sequence
  number is accepted. Anything else is a *stray* packet and is dropped; when the packet
  right after it in sequence follows, the sender restarted its numbering: the buffer is
  flushed, the sequence state starts again from that packet (counted in ``restarts``), and
  expected/received counts carry over so that the cumulative loss stays meaningful.

The first packet is delivered at once and fixes where delivery starts; a packet older
than one already delivered (or given up on) is *late*: counted as received, not delivered.

Counting (A.3): ``received`` counts distinct packets, including late ones; duplicates are
dropped and counted apart, so ``lost = expected - received`` never goes negative. The base
sequence number is the lowest extended one received, so a packet that overtook earlier
ones at the start does not make the loss negative either.
"""

from __future__ import annotations

from dataclasses import dataclass

from .rtcp import ReportBlock, SenderReport, ntp_middle32
from .rtp import SEQ_MOD, RtpPacket, seq_delta

MAX_DROPOUT = 3000
"""Largest forward jump still taken as loss rather than a restart (A.1)."""
MAX_MISORDER = 100
"""Largest backward distance still taken as a reordered or duplicate packet (A.1)."""
DEFAULT_REORDER_DEPTH = 5

_U32 = 0xFFFFFFFF
_LOST_MAX = (1 << 23) - 1
_LOST_MIN = -(1 << 23)


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpReceiverStats:
    """A snapshot of the counters of one :class:`RtpReceiver`.

    ``reordered`` counts packets that arrived after one with a higher sequence number;
    ``late`` those of them that came after the reorder buffer had given up on them (they
    are dropped but count as received); ``stray`` packets dropped by the A.1 large-jump
    rule. ``jitter`` is in timestamp units, ``jitter_seconds`` uses the last clock rate.
    ``highest_seq`` is the extended highest sequence number, None before any packet."""

    received: int = 0
    expected: int = 0
    lost: int = 0
    duplicates: int = 0
    reordered: int = 0
    late: int = 0
    stray: int = 0
    restarts: int = 0
    jitter: float = 0.0
    jitter_seconds: float = 0.0
    highest_seq: int | None = None


class RtpReceiver:
    """Sequence ordering, loss and jitter for the packets of one SSRC.

    ``ssrc`` is learnt from the first packet when not given; a packet from another SSRC is
    a :class:`ValueError` (demultiplex by SSRC first). Up to ``reorder_depth`` packets wait
    behind a missing one; one more makes the receiver give up on the gap.
    """

    def __init__(
        self, ssrc: int | None = None, *, reorder_depth: int = DEFAULT_REORDER_DEPTH
    ) -> None:
        if reorder_depth < 0:
            raise ValueError(f"reorder depth must not be negative, not {reorder_depth!r}")
        self.ssrc = ssrc
        self.reorder_depth = reorder_depth
        self._started = False
        self._max = 0  # extended highest sequence number received
        self._base = 0  # extended lowest sequence number received
        self._next = 0  # extended sequence number to deliver next
        self._bad_seq: int | None = None  # A.1 bad_seq: the one after the last stray packet
        self._buffer: dict[int, RtpPacket] = {}
        self._seen: set[int] = set()  # extended numbers received, back to MAX_MISORDER
        self._expected_before = 0  # expected packets of sequence spaces before a restart
        self._received = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._duplicates = 0
        self._reordered = 0
        self._late = 0
        self._stray = 0
        self._restarts = 0
        self._transit: float | None = None
        self._jitter = 0.0
        self._clock_rate: int | None = None
        self._lsr = 0
        self._sr_arrival: float | None = None

    def receive(self, packet: RtpPacket, arrival: float, clock_rate: int) -> list[RtpPacket]:
        """Account for ``packet`` (arrived at ``arrival`` seconds; ``clock_rate`` is its RTP
        timestamp rate in Hz) and return the packets now ready, in sequence order."""
        if clock_rate <= 0:
            raise ValueError(f"clock rate must be positive, not {clock_rate!r}")
        if self.ssrc is None:
            self.ssrc = packet.ssrc
        elif packet.ssrc != self.ssrc:
            raise ValueError(f"packet SSRC {packet.ssrc:#010x} is not {self.ssrc:#010x}")
        self._clock_rate = clock_rate
        ready: list[RtpPacket] = []
        if not self._started:
            self._start(packet.sequence)
        delta = seq_delta(packet.sequence, self._max % SEQ_MOD)
        if not -MAX_MISORDER <= delta < MAX_DROPOUT:
            if packet.sequence != self._bad_seq:
                self._bad_seq = (packet.sequence + 1) % SEQ_MOD
                self._stray += 1
                return ready
            ready = self.flush()
            self._expected_before += self._max - self._base + 1
            self._restarts += 1
            self._transit = None  # the timestamps restart too: no jitter across the jump
            self._start(packet.sequence)
            delta = 0
        ext = self._max + delta
        if ext in self._seen:
            self._duplicates += 1
            return ready
        self._update_jitter(packet.timestamp, arrival * clock_rate)
        self._received += 1
        self._seen.add(ext)
        if ext > self._max:
            self._max = ext
            if len(self._seen) > 4 * (MAX_MISORDER + 1):
                self._seen = {e for e in self._seen if e >= ext - MAX_MISORDER}
        elif ext < self._max:
            self._reordered += 1
        self._base = min(self._base, ext)
        if ext < self._next:
            self._late += 1
            return ready
        self._buffer[ext] = packet
        ready.extend(self._release())
        return ready

    def flush(self) -> list[RtpPacket]:
        """Every packet still in the reorder buffer, in order, giving up on the gaps."""
        ready = [self._buffer[ext] for ext in sorted(self._buffer)]
        if self._buffer:
            self._next = max(self._buffer) + 1
            self._buffer.clear()
        return ready

    def on_sender_report(self, report: SenderReport, arrival: float) -> None:
        """Remember this source's SR (its NTP timestamp and arrival) for LSR and DLSR."""
        if self.ssrc is not None and report.ssrc != self.ssrc:
            raise ValueError(f"SR from SSRC {report.ssrc:#010x} is not {self.ssrc:#010x}")
        self._lsr = ntp_middle32(report.ntp_timestamp)
        self._sr_arrival = arrival

    @property
    def stats(self) -> RtpReceiverStats:
        """The counters now (see :class:`RtpReceiverStats`)."""
        expected = self._expected()
        rate = self._clock_rate
        return RtpReceiverStats(
            received=self._received,
            expected=expected,
            lost=expected - self._received,
            duplicates=self._duplicates,
            reordered=self._reordered,
            late=self._late,
            stray=self._stray,
            restarts=self._restarts,
            jitter=self._jitter,
            jitter_seconds=self._jitter / rate if rate else 0.0,
            highest_seq=self._max if self._started else None,
        )

    def report_block(self, now: float) -> ReportBlock:
        """The report block about this source for an RTCP report sent at ``now`` (A.3):
        the fraction lost covers the interval since the previous call."""
        if self.ssrc is None or not self._started:
            raise ValueError("no RTP packet received yet")
        expected = self._expected()
        lost = expected - self._received
        expected_interval = expected - self._expected_prior
        lost_interval = expected_interval - (self._received - self._received_prior)
        self._expected_prior = expected
        self._received_prior = self._received
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = (lost_interval << 8) // expected_interval
        dlsr = 0
        if self._sr_arrival is not None:
            dlsr = min(max(round((now - self._sr_arrival) * 65536), 0), _U32)
        return ReportBlock(
            ssrc=self.ssrc,
            fraction_lost=fraction,
            cumulative_lost=min(max(lost, _LOST_MIN), _LOST_MAX),
            highest_seq=self._max & _U32,
            jitter=min(int(self._jitter), _U32),
            lsr=self._lsr,
            dlsr=dlsr,
        )

    def _start(self, sequence: int) -> None:
        """A.1 ``init_seq``: a new sequence space whose first packet is ``sequence``."""
        self._started = True
        self._max = self._base = self._next = sequence
        self._bad_seq = None
        self._seen.clear()

    def _expected(self) -> int:
        if not self._started:
            return 0
        return self._expected_before + self._max - self._base + 1

    def _update_jitter(self, timestamp: int, arrival_units: float) -> None:
        """A.8: ``J += (|D| - J) / 16`` with D the change in relative transit time, both
        arrival and RTP timestamp in timestamp units (D taken modulo the 32-bit wrap)."""
        transit = arrival_units - timestamp
        if self._transit is not None:
            d = (transit - self._transit + (1 << 31)) % (1 << 32) - (1 << 31)
            self._jitter += (abs(d) - self._jitter) / 16
        self._transit = transit

    def _release(self) -> list[RtpPacket]:
        ready: list[RtpPacket] = []
        while self._buffer:
            if self._next in self._buffer:
                ready.append(self._buffer.pop(self._next))
                self._next += 1
            elif len(self._buffer) > self.reorder_depth:
                self._next = min(self._buffer)  # give up on the gap
            else:
                break
        return ready


__all__ = [
    "DEFAULT_REORDER_DEPTH",
    "MAX_DROPOUT",
    "MAX_MISORDER",
    "RtpReceiver",
    "RtpReceiverStats",
]
