"""Framing SIP messages on a byte stream (TCP, TLS): RFC 3261 section 18.3.

Messages are delimited by the empty line after the headers and the Content-Length that
stream transports must carry. CRLF keep-alives (RFC 5626 section 3.5.1) between messages
are skipped and counted. Partial data is buffered until the message is complete; each byte
is searched once however the stream is chunked.
"""

from __future__ import annotations

import re

from .._errors import ParseError
from .parser import DEFAULT_LIMITS, ParserLimits

# A Content-Length (or compact "l") header line, possibly folded: the value is checked apart.
_CONTENT_LENGTH_RE = re.compile(
    rb"(?:^|\n)(?:content-length|l)[ \t]*:((?:[^\r\n]|\r?\n[ \t])*)", re.I
)
# An empty line: LF, optional CR, LF (so CRLF CRLF, LF LF and mixtures).
_BLANK_LINE_RE = re.compile(rb"\n\r?\n")
_DIGITS_RE = re.compile(rb"[ \t\r\n]*([0-9]{1,10})[ \t\r\n]*")


class StreamFramer:
    """Cut a byte stream into whole SIP messages.

    ``feed(data)`` returns the complete messages (as bytes, ready for ``parse_message``);
    the rest waits in the buffer. A message over the size limit, or without a valid and
    unique Content-Length, raises :class:`~sipx.ParseError`; the stream cannot be
    resynchronised after that (close the connection).

    Between messages, ``keepalives`` counts the double-CRLF pings of RFC 5626 (a pong is
    owed for each), also when a ping arrives split over two reads, and ``crlfs`` counts
    every CRLF skipped (a client that sends pings sees its pongs there).
    """

    __slots__ = (
        "_buffer",
        "_crlf_run",
        "_limits",
        "_scanned",
        "_total",
        "crlfs",
        "error",
        "keepalives",
    )

    def __init__(self, limits: ParserLimits = DEFAULT_LIMITS) -> None:
        self._buffer = bytearray()
        self._limits = limits
        self._scanned = 0  # bytes of the current message searched for the end of its headers
        self._total = -1  # the current message's length, once its headers are complete
        self._crlf_run = 0  # CRLFs in the current run between messages
        self.keepalives = 0
        self.crlfs = 0
        self.error: ParseError | None = None  # why the stream cannot be framed any further

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def mid_message(self) -> bool:
        """Part of a message is buffered (more than a keep-alive's CR)."""
        buffer = self._buffer
        return bool(buffer) and buffer != b"\r"

    def pending(self) -> bytes:
        """The bytes received and not framed yet (after :meth:`feed` raised: the message it
        could not frame, to answer with a 400 before the connection closes)."""
        return bytes(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """The messages ``data`` completes. When the stream cannot be framed any further,
        raises :class:`~sipx.ParseError`, or, if complete messages came before the fault,
        returns those and keeps the error in :attr:`error` (and raises it on the next call)."""
        if self.error is not None:
            raise self.error
        messages: list[bytes] = []
        try:
            self._frame(data, messages)
        except ParseError as exc:
            self.error = exc
            if not messages:
                raise
        return messages

    def _frame(self, data: bytes, messages: list[bytes]) -> None:
        buffer = self._buffer
        buffer += data
        limit = self._limits.max_message_size
        while buffer:
            if self._total == -1:
                if self._scanned == 0 and not self._skip_keepalives():
                    break
                end, separator = self._find_header_end()
                if end == -1:
                    if len(buffer) > limit:
                        raise ParseError("header section exceeds the message size limit")
                    break
                total = end + separator + self._content_length(bytes(buffer[:end]))
                if total > limit:
                    raise ParseError(f"message of {total} bytes exceeds the limit of {limit}")
                self._total = total
            if len(buffer) < self._total:
                break
            messages.append(bytes(buffer[: self._total]))
            del buffer[: self._total]
            self._total = -1
            self._scanned = 0

    def _skip_keepalives(self) -> bool:
        """Drop CRLFs before a message; False when the buffer holds nothing else yet."""
        buffer = self._buffer
        start = 0
        length = len(buffer)
        while start < length:
            byte = buffer[start]
            if byte == 0x0A:  # a bare LF
                self._count_crlf()
                start += 1
            elif byte == 0x0D:
                if start + 1 == length:
                    break  # wait for the LF
                start += 1
                if buffer[start] == 0x0A:
                    self._count_crlf()
                    start += 1
                # else a stray CR: dropped
            else:
                self._crlf_run = 0
                break
        if start:
            del buffer[:start]
        return bool(buffer) and buffer != b"\r"

    def _count_crlf(self) -> None:
        self.crlfs += 1
        self._crlf_run += 1
        if self._crlf_run == 2:
            self.keepalives += 1
            self._crlf_run = 0

    def _find_header_end(self) -> tuple[int, int]:
        """(where the header section ends, length of the empty line), or (-1, 0)."""
        buffer = self._buffer
        match = _BLANK_LINE_RE.search(buffer, max(self._scanned - 2, 0))
        self._scanned = len(buffer)
        if match is None:
            return -1, 0
        start = match.start()
        if start > 0 and buffer[start - 1] == 0x0D:  # "\r\n" ends the last header line
            start -= 1
        return start, match.end() - start

    def _content_length(self, head: bytes) -> int:
        matches = _CONTENT_LENGTH_RE.findall(head)
        if not matches:
            raise ParseError("message on a stream transport has no Content-Length")
        lengths = set()
        for raw in matches:
            match = _DIGITS_RE.fullmatch(raw)
            if match is None:
                raise ParseError(f"bad Content-Length {raw[:40]!r} on a stream transport")
            lengths.add(int(match.group(1)))
        if len(lengths) > 1:
            raise ParseError("conflicting Content-Length values on a stream transport")
        return lengths.pop()
