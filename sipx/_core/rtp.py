"""RTP data packets (RFC 3550 section 5.1, 5.3.1) and 16-bit sequence number arithmetic.

:class:`RtpPacket` is one parsed packet: the fixed header, the CSRC list, the optional
header extension and the payload with any padding removed. :meth:`RtpPacket.parse` raises
:class:`~sipx._errors.ParseError` for anything malformed; constructing a packet with a field
out of range raises :class:`ValueError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .._errors import ParseError

RTP_VERSION = 2
SEQ_MOD = 1 << 16
"""Sequence numbers are 16 bits and wrap (RFC 3550 A.1 ``RTP_SEQ_MOD``)."""
MAX_CSRCS = 15
FIXED_HEADER_SIZE = 12

_FIXED = struct.Struct("!BBHII")
_EXTENSION_HEADER = struct.Struct("!HH")
_U32 = 0xFFFFFFFF


def seq_delta(a: int, b: int) -> int:
    """The signed distance from sequence number ``b`` to ``a`` in 16-bit serial arithmetic,
    in ``[-32768, 32767]``: ``seq_delta(1, 65535) == 2``."""
    return (a - b + SEQ_MOD // 2) % SEQ_MOD - SEQ_MOD // 2


def seq_newer(a: int, b: int) -> bool:
    """True when sequence number ``a`` comes after ``b`` (less than half the space ahead)."""
    return seq_delta(a, b) > 0


def extend_seq(seq: int, reference: int) -> int:
    """The extended sequence number (RFC 3550 A.1: cycles + seq) for the 16-bit ``seq``
    that lies closest to the extended ``reference``; may be below 0 near the start."""
    return reference + seq_delta(seq, reference % SEQ_MOD)


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpExtension:
    """The header extension (RFC 3550 5.3.1): 16 profile-defined bits and data whose length
    is a whole number of 32-bit words (the 4-octet extension header is not part of it)."""

    profile: int
    data: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.profile <= 0xFFFF:
            raise ValueError(f"extension profile must fit 16 bits, not {self.profile!r}")
        if len(self.data) % 4:
            raise ValueError(f"extension data must be whole 32-bit words, not {len(self.data)}")
        if len(self.data) > 0xFFFF * 4:
            raise ValueError("extension data longer than 65535 words")


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpPacket:
    """One RTP data packet (RFC 3550 5.1).

    ``padding`` is only the P bit: :meth:`parse` strips the padding octets and
    :meth:`to_bytes` with ``padding=True`` pads the payload to the next multiple of 4 octets,
    adding 1 to 4 octets (zeros, then the count, which includes itself). A parsed packet
    whose sender padded differently therefore round-trips to an equal :class:`RtpPacket`,
    not to the same bytes.
    """

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: RtpExtension | None = None
    padding: bool = False
    version: int = RTP_VERSION

    def __post_init__(self) -> None:
        if self.version != RTP_VERSION:
            raise ValueError(f"RTP version must be 2, not {self.version!r}")
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"payload type must be 0-127, not {self.payload_type!r}")
        if not 0 <= self.sequence < SEQ_MOD:
            raise ValueError(f"sequence number must be 0-65535, not {self.sequence!r}")
        if not 0 <= self.timestamp <= _U32:
            raise ValueError(f"timestamp must fit 32 bits, not {self.timestamp!r}")
        if not 0 <= self.ssrc <= _U32:
            raise ValueError(f"SSRC must fit 32 bits, not {self.ssrc!r}")
        if not isinstance(self.csrcs, tuple):
            object.__setattr__(self, "csrcs", tuple(self.csrcs))
        if len(self.csrcs) > MAX_CSRCS:
            raise ValueError(f"at most 15 CSRCs fit the CC field, not {len(self.csrcs)}")
        for csrc in self.csrcs:
            if not 0 <= csrc <= _U32:
                raise ValueError(f"CSRC must fit 32 bits, not {csrc!r}")
        if not isinstance(self.payload, bytes):
            object.__setattr__(self, "payload", bytes(self.payload))

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> RtpPacket:
        """Parse one RTP packet; :class:`ParseError` says what is malformed."""
        data = bytes(data)
        size = len(data)
        if size < FIXED_HEADER_SIZE:
            raise ParseError(f"RTP packet too short: {size} bytes, the fixed header is 12")
        first, second, sequence, timestamp, ssrc = _FIXED.unpack_from(data)
        version = first >> 6
        if version != RTP_VERSION:
            raise ParseError(f"RTP version {version}, expected 2", offset=0)
        count = first & 0x0F
        offset = FIXED_HEADER_SIZE + 4 * count
        if offset > size:
            raise ParseError(
                f"RTP CSRC count {count} needs {offset} header bytes, packet has {size}",
                offset=0,
            )
        csrcs = struct.unpack_from(f"!{count}I", data, FIXED_HEADER_SIZE)
        extension = None
        if first & 0x10:
            if offset + 4 > size:
                raise ParseError("RTP extension header missing", offset=offset)
            profile, words = _EXTENSION_HEADER.unpack_from(data, offset)
            end = offset + 4 + 4 * words
            if end > size:
                raise ParseError(
                    f"RTP extension of {words} words ends at byte {end}, packet has {size}",
                    offset=offset,
                )
            extension = RtpExtension(profile=profile, data=data[offset + 4 : end])
            offset = end
        padding = bool(first & 0x20)
        end = size
        if padding:
            pad = data[-1]
            if pad == 0:
                raise ParseError("RTP padding count is 0", offset=size - 1)
            if pad > size - offset:
                raise ParseError(
                    f"RTP padding count {pad} exceeds the {size - offset} bytes after the header",
                    offset=size - 1,
                )
            end -= pad
        return cls(
            payload_type=second & 0x7F,
            sequence=sequence,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=data[offset:end],
            marker=bool(second & 0x80),
            csrcs=csrcs,
            extension=extension,
            padding=padding,
        )

    def to_bytes(self) -> bytes:
        """The packet on the wire (see the class docstring for the padding rule)."""
        first = RTP_VERSION << 6 | len(self.csrcs)
        if self.padding:
            first |= 0x20
        if self.extension is not None:
            first |= 0x10
        second = self.payload_type | (0x80 if self.marker else 0)
        parts = [
            _FIXED.pack(first, second, self.sequence, self.timestamp, self.ssrc),
            struct.pack(f"!{len(self.csrcs)}I", *self.csrcs),
        ]
        if self.extension is not None:
            ext = self.extension
            parts.append(_EXTENSION_HEADER.pack(ext.profile, len(ext.data) // 4))
            parts.append(ext.data)
        parts.append(self.payload)
        if self.padding:
            pad = 4 - len(self.payload) % 4
            parts.append(bytes(pad - 1) + bytes([pad]))
        return b"".join(parts)


__all__ = [
    "FIXED_HEADER_SIZE",
    "MAX_CSRCS",
    "RTP_VERSION",
    "SEQ_MOD",
    "RtpExtension",
    "RtpPacket",
    "extend_seq",
    "seq_delta",
    "seq_newer",
]
