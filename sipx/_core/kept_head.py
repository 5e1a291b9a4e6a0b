"""Message heads kept deflated against a shared sample (what an idle call keeps).

The heads of one peer's INVITEs, and of our 200s to them, differ in a few tokens (tags,
branch, Call-ID, CSeq): each head is deflated (RFC 1951) with a sample head of its kind as
the preset dictionary, so a kept head costs about the bytes in which it differs. The first
head packed of a kind becomes that kind's sample; a head that deflates badly against it
becomes the sample for the heads packed after it. Every packed head holds its own sample,
so a new sample never makes an older head unreadable.
"""

from __future__ import annotations

import zlib

# Raw deflate (no zlib header: the sample travels with the data), a 2 KiB window (a SIP
# head and its sample fit; a longer head is still packed, only less well) and a small
# compressor state, which makes setting up each compressor cheap.
_WBITS = -11
_MEM_LEVEL = 2
_LEVEL = 6
_MAX_KINDS = 16  # samples kept by start-line token (a method, or "SIP/2.0")

PackedHead = tuple[bytes, bytes]  # (sample, deflated head)


class HeadPacker:
    """Packs heads against one sample per kind (the start line's first token)."""

    __slots__ = ("_samples",)

    def __init__(self) -> None:
        self._samples: dict[bytes, bytes] = {}

    def pack(self, head: bytes) -> PackedHead:
        """``head`` deflated against its kind's sample, with that sample."""
        kind = head.split(b" ", 1)[0]
        samples = self._samples
        sample = samples.get(kind)
        if sample is None:
            sample = head
            if len(samples) < _MAX_KINDS:
                samples[kind] = head
        packed = deflate(head, sample)
        if len(packed) * 4 > len(head) and kind in samples:
            samples[kind] = head  # far from the sample: the next heads use this one
        return sample, packed


def deflate(data: bytes, sample: bytes) -> bytes:
    """``data`` deflated with ``sample`` as the preset dictionary."""
    if not sample:
        return zlib.compress(data, _LEVEL, _WBITS)
    compressor = zlib.compressobj(
        _LEVEL, zlib.DEFLATED, _WBITS, _MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY, sample
    )
    return compressor.compress(data) + compressor.flush()


def unpack(packed: PackedHead) -> bytes:
    """The head that :meth:`HeadPacker.pack` packed."""
    sample, data = packed
    if not sample:
        return zlib.decompress(data, _WBITS)
    decompressor = zlib.decompressobj(_WBITS, zdict=sample)
    return decompressor.decompress(data) + decompressor.flush()
