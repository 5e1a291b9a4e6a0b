"""The sending side of one RTP stream (RFC 3550 5.1), without I/O or clock.

:class:`RtpSender` numbers packets: the sequence number goes up by one per packet, the
timestamp by the samples each audio packet carries (and keeps running through a telephone
event, whose packets all carry the event's start timestamp, RFC 4733 2.3.1), the marker
bit starts a talkspurt. The SSRC and the initial sequence number and timestamp come from the
caller (random, RFC 3550 5.1), so tests can fix them.
"""

from __future__ import annotations

from .rtp import RtpPacket


class RtpSender:
    """Builds the packets of one outgoing RTP stream."""

    # Slots, not a __dict__: every media stream of an idle call keeps one.
    __slots__ = ("_talkspurt", "octets", "packets", "sequence", "ssrc", "timestamp")

    def __init__(self, ssrc: int, *, first_sequence: int = 0, first_timestamp: int = 0) -> None:
        self.ssrc = ssrc
        self.sequence = first_sequence & 0xFFFF
        self.timestamp = first_timestamp & 0xFFFFFFFF
        self.packets = 0
        self.octets = 0  # payload octets sent (for RTCP sender reports)
        self._talkspurt = True

    def audio(self, payload: bytes, payload_type: int, samples: int) -> bytes:
        """The next audio packet; the timestamp then moves on by ``samples``."""
        data = self._packet(payload, payload_type, self.timestamp, self._talkspurt)
        self._talkspurt = False
        self.timestamp = (self.timestamp + samples) & 0xFFFFFFFF
        return data

    def skip(self, samples: int) -> None:
        """Time passes without a packet (on hold, inactive): the next one starts a talkspurt."""
        self.timestamp = (self.timestamp + samples) & 0xFFFFFFFF
        self._talkspurt = True

    def event(self, payload: bytes, payload_type: int, timestamp: int, marker: bool) -> bytes:
        """A telephone-event packet (its timestamp is the event's start, not the clock's)."""
        return self._packet(payload, payload_type, timestamp, marker)

    def _packet(self, payload: bytes, payload_type: int, timestamp: int, marker: bool) -> bytes:
        data = RtpPacket(
            payload_type=payload_type,
            sequence=self.sequence,
            timestamp=timestamp,
            ssrc=self.ssrc,
            payload=payload,
            marker=marker,
        ).to_bytes()
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.packets += 1
        self.octets += len(payload)
        return data


__all__ = ["RtpSender"]
