"""RTCP sender and receiver reports and BYE (RFC 3550 sections 6.4, 6.6), compound packets.

:func:`parse_compound` splits a compound RTCP packet (6.1) into :class:`SenderReport`,
:class:`ReceiverReport` and :class:`Bye`; other packet types (SDES, APP, feedback, XR) are
skipped. It checks each packet's version, length and padding but, to accept reduced-size
RTCP (RFC 5506), does not insist that the first packet be SR or RR. Profile-specific
extensions after the report blocks are skipped. :func:`build_compound` never sets the
padding bit.

NTP timestamps (4) are 64-bit ints: seconds since 1900-01-01 in the high 32 bits, the
fraction in the low 32. LSR is the middle 32 bits of one (:func:`ntp_middle32`); DLSR is in
units of 1/65536 seconds.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from .._errors import ParseError

RTCP_VERSION = 2
SR = 200
RR = 201
SDES = 202
BYE = 203
APP = 204
MAX_COUNT = 31
"""The 5-bit RC / SC field: report blocks per SR or RR, sources per BYE."""
NTP_UNIX_OFFSET = 2_208_988_800
"""Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01)."""

_U32 = 0xFFFFFFFF
_HEADER = struct.Struct("!BBH")
_BLOCK = struct.Struct("!IIIIII")
_SENDER_INFO = struct.Struct("!IIIIII")
_BLOCK_SIZE = _BLOCK.size


def ntp_from_seconds(seconds: float) -> int:
    """The 64-bit NTP timestamp for ``seconds`` since 1900-01-01 (wraps per 2**32 s era)."""
    if not seconds >= 0:
        raise ValueError(f"NTP time must not be negative, not {seconds!r}")
    whole = math.floor(seconds)
    fraction = round((seconds - whole) * (1 << 32))
    return ((whole << 32) + fraction) & 0xFFFFFFFFFFFFFFFF


def ntp_from_unix(seconds: float) -> int:
    """The 64-bit NTP timestamp for ``seconds`` since the Unix epoch."""
    return ntp_from_seconds(seconds + NTP_UNIX_OFFSET)


def seconds_from_ntp(ntp: int) -> float:
    """Seconds since 1900-01-01 (within the era) for a 64-bit NTP timestamp."""
    return ntp / (1 << 32)


def ntp_middle32(ntp: int) -> int:
    """The middle 32 bits of a 64-bit NTP timestamp: the LSR of a report block (6.4.1)."""
    return (ntp >> 16) & _U32


def round_trip_delay(block: ReportBlock, arrival_ntp: int) -> float | None:
    """Round-trip time in seconds seen by a sender (6.4.1, figure 2): arrival of the RR
    minus LSR minus DLSR, or None when the receiver had no SR yet (LSR 0)."""
    if block.lsr == 0:
        return None
    return ((ntp_middle32(arrival_ntp) - block.lsr - block.dlsr) & _U32) / 65536


def _check_u32(name: str, value: int) -> None:
    if not 0 <= value <= _U32:
        raise ValueError(f"{name} must fit 32 bits, not {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportBlock:
    """Reception statistics about one source (6.4.1).

    ``cumulative_lost`` is signed 24-bit (duplicates can make it negative), ``highest_seq``
    the extended highest sequence number received, ``jitter`` the interarrival jitter in
    timestamp units, ``lsr`` the middle 32 bits of the last SR's NTP timestamp and ``dlsr``
    the delay since that SR in 1/65536 seconds."""

    ssrc: int
    fraction_lost: int = 0
    cumulative_lost: int = 0
    highest_seq: int = 0
    jitter: int = 0
    lsr: int = 0
    dlsr: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.fraction_lost <= 255:
            raise ValueError(f"fraction lost must be 0-255, not {self.fraction_lost!r}")
        if not -(1 << 23) <= self.cumulative_lost < 1 << 23:
            raise ValueError(f"cumulative lost must fit 24 signed bits: {self.cumulative_lost!r}")
        for name in ("ssrc", "highest_seq", "jitter", "lsr", "dlsr"):
            _check_u32(name, getattr(self, name))

    def _pack(self) -> bytes:
        lost = self.fraction_lost << 24 | (self.cumulative_lost & 0xFFFFFF)
        return _BLOCK.pack(self.ssrc, lost, self.highest_seq, self.jitter, self.lsr, self.dlsr)

    @classmethod
    def _unpack(cls, data: bytes, offset: int) -> ReportBlock:
        ssrc, lost, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, offset)
        cumulative = lost & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 1 << 24
        return cls(
            ssrc=ssrc,
            fraction_lost=lost >> 24,
            cumulative_lost=cumulative,
            highest_seq=highest,
            jitter=jitter,
            lsr=lsr,
            dlsr=dlsr,
        )


def _check_reports(reports: tuple[ReportBlock, ...]) -> None:
    if len(reports) > MAX_COUNT:
        raise ValueError(f"at most 31 report blocks fit the RC field, not {len(reports)}")


def _header(count: int, packet_type: int, body: bytes) -> bytes:
    """The common header (6.4.1): V=2, P=0, count, type and the length in words minus one."""
    return _HEADER.pack(RTCP_VERSION << 6 | count, packet_type, len(body) // 4) + body


@dataclass(frozen=True, slots=True, kw_only=True)
class SenderReport:
    """SR (6.4.1): sender info (NTP and RTP timestamps of the same instant, packet and
    octet counts) from an active sender, with up to 31 report blocks."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.reports, tuple):
            object.__setattr__(self, "reports", tuple(self.reports))
        _check_reports(self.reports)
        if not 0 <= self.ntp_timestamp <= 0xFFFFFFFFFFFFFFFF:
            raise ValueError(f"NTP timestamp must fit 64 bits, not {self.ntp_timestamp!r}")
        for name in ("ssrc", "rtp_timestamp", "packet_count", "octet_count"):
            _check_u32(name, getattr(self, name))

    def to_bytes(self) -> bytes:
        body = _SENDER_INFO.pack(
            self.ssrc,
            self.ntp_timestamp >> 32,
            self.ntp_timestamp & _U32,
            self.rtp_timestamp,
            self.packet_count,
            self.octet_count,
        )
        body += b"".join(block._pack() for block in self.reports)
        return _header(len(self.reports), SR, body)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiverReport:
    """RR (6.4.2): the reporter's SSRC and up to 31 report blocks."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.reports, tuple):
            object.__setattr__(self, "reports", tuple(self.reports))
        _check_reports(self.reports)
        _check_u32("ssrc", self.ssrc)

    def to_bytes(self) -> bytes:
        body = struct.pack("!I", self.ssrc) + b"".join(b._pack() for b in self.reports)
        return _header(len(self.reports), RR, body)


@dataclass(frozen=True, slots=True, kw_only=True)
class Bye:
    """BYE (6.6): the sources leaving and an optional UTF-8 reason (at most 255 octets)."""

    ssrcs: tuple[int, ...]
    reason: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.ssrcs, tuple):
            object.__setattr__(self, "ssrcs", tuple(self.ssrcs))
        if len(self.ssrcs) > MAX_COUNT:
            raise ValueError(f"at most 31 sources fit the SC field, not {len(self.ssrcs)}")
        for ssrc in self.ssrcs:
            _check_u32("ssrc", ssrc)
        if self.reason is not None and len(self.reason.encode()) > 255:
            raise ValueError("BYE reason longer than 255 octets")

    def to_bytes(self) -> bytes:
        body = struct.pack(f"!{len(self.ssrcs)}I", *self.ssrcs)
        if self.reason is not None:
            text = self.reason.encode()
            body += bytes([len(text)]) + text
            body += bytes(-len(body) % 4)
        return _header(len(self.ssrcs), BYE, body)


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceDescription:
    """SDES (6.5) with one chunk: the source's CNAME, which every compound packet carries
    (6.1). Only sent: received SDES packets are skipped by :func:`parse_compound`."""

    ssrc: int
    cname: str

    def __post_init__(self) -> None:
        _check_u32("ssrc", self.ssrc)
        if not 0 < len(self.cname.encode()) <= 255:
            raise ValueError("a CNAME is 1 to 255 octets")

    def to_bytes(self) -> bytes:
        text = self.cname.encode()
        chunk = struct.pack("!IBB", self.ssrc, 1, len(text)) + text + b"\x00"
        chunk += bytes(-len(chunk) % 4)  # the item list ends with a null octet, padded
        return _header(1, SDES, chunk)


RtcpPacket = SenderReport | ReceiverReport | Bye


def build_compound(packets: Iterable[RtcpPacket | SourceDescription]) -> bytes:
    """The packets concatenated into one compound RTCP packet (6.1); the caller orders
    them (SR or RR first for a compound that RFC 3550 receivers accept)."""
    return b"".join(packet.to_bytes() for packet in packets)


def parse_compound(data: bytes | bytearray | memoryview) -> list[RtcpPacket]:
    """The SR, RR and BYE packets of a compound RTCP packet, in order; other types are
    skipped. :class:`ParseError` for a bad version, length, padding or count."""
    data = bytes(data)
    if not data:
        raise ParseError("empty RTCP packet")
    packets: list[RtcpPacket] = []
    offset = 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise ParseError(f"RTCP header truncated: {len(data) - offset} bytes", offset=offset)
        first, packet_type, words = _HEADER.unpack_from(data, offset)
        if first >> 6 != RTCP_VERSION:
            raise ParseError(f"RTCP version {first >> 6}, expected 2", offset=offset)
        end = offset + 4 * (words + 1)
        if end > len(data):
            raise ParseError(
                f"RTCP length {words} words ends at byte {end}, data has {len(data)}",
                offset=offset,
            )
        body_end = end
        if first & 0x20:
            pad = data[end - 1]
            if pad == 0 or pad > end - offset - 4:
                raise ParseError(f"RTCP padding count {pad} is invalid", offset=end - 1)
            body_end -= pad
        packet = _parse_one(first & 0x1F, packet_type, data[offset + 4 : body_end], offset)
        if packet is not None:
            packets.append(packet)
        offset = end
    return packets


def _parse_one(count: int, packet_type: int, body: bytes, offset: int) -> RtcpPacket | None:
    if packet_type == SR:
        need = _SENDER_INFO.size + count * _BLOCK_SIZE
        _need(body, need, f"SR with {count} report blocks", offset)
        ssrc, ntp_high, ntp_low, rtp_ts, packets, octets = _SENDER_INFO.unpack_from(body)
        return SenderReport(
            ssrc=ssrc,
            ntp_timestamp=ntp_high << 32 | ntp_low,
            rtp_timestamp=rtp_ts,
            packet_count=packets,
            octet_count=octets,
            reports=_blocks(body, _SENDER_INFO.size, count),
        )
    if packet_type == RR:
        _need(body, 4 + count * _BLOCK_SIZE, f"RR with {count} report blocks", offset)
        (ssrc,) = struct.unpack_from("!I", body)
        return ReceiverReport(ssrc=ssrc, reports=_blocks(body, 4, count))
    if packet_type == BYE:
        _need(body, 4 * count, f"BYE with {count} sources", offset)
        ssrcs = struct.unpack_from(f"!{count}I", body)
        rest = body[4 * count :]
        reason = None
        if rest:
            length = rest[0]
            if 1 + length > len(rest):
                raise ParseError(f"BYE reason of {length} bytes is truncated", offset=offset)
            try:
                reason = rest[1 : 1 + length].decode()
            except UnicodeDecodeError:
                raise ParseError("BYE reason is not UTF-8", offset=offset) from None
        return Bye(ssrcs=ssrcs, reason=reason)
    return None


def _need(body: bytes, size: int, what: str, offset: int) -> None:
    if len(body) < size:
        raise ParseError(f"RTCP {what} needs {size} body bytes, has {len(body)}", offset=offset)


def _blocks(body: bytes, start: int, count: int) -> tuple[ReportBlock, ...]:
    return tuple(ReportBlock._unpack(body, start + i * _BLOCK_SIZE) for i in range(count))


__all__ = [
    "APP",
    "BYE",
    "MAX_COUNT",
    "NTP_UNIX_OFFSET",
    "RR",
    "SDES",
    "SR",
    "Bye",
    "ReceiverReport",
    "ReportBlock",
    "RtcpPacket",
    "SenderReport",
    "SourceDescription",
    "build_compound",
    "ntp_from_seconds",
    "ntp_from_unix",
    "ntp_middle32",
    "parse_compound",
    "round_trip_delay",
    "seconds_from_ntp",
]
