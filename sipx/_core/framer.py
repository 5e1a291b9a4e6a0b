"""Framing SIP messages on a byte stream (TCP, TLS): RFC 3261 section 18.3.

Messages are delimited by the empty line after the headers and the Content-Length that
stream transports must carry. CRLF keep-alives (RFC 5626 section 3.5.1) between messages
are skipped. Partial data is buffered until the message is complete.
"""

from __future__ import annotations

import re

from .._errors import ParseError
from .parser import DEFAULT_LIMITS, ParserLimits

_CONTENT_LENGTH_RE = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\d+)[ \t]*$", re.I | re.M)


class StreamFramer:
    """Cut a byte stream into whole SIP messages.

    ``feed(data)`` returns the complete messages (as bytes, ready for ``parse_message``);
    the rest waits in the buffer. A message over the size limit or without Content-Length
    raises :class:`~sipx.ParseError`; the stream cannot be resynchronised after that.
    """

    __slots__ = ("_buffer", "_limits", "keepalives")

    def __init__(self, limits: ParserLimits = DEFAULT_LIMITS) -> None:
        self._buffer = bytearray()
        self._limits = limits
        self.keepalives = 0  # CRLF keep-alives seen (a pong is owed for each "\r\n\r\n")

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        buffer += data
        messages: list[bytes] = []
        while True:
            # Skip CRLFs between messages (keep-alive pings and pongs).
            start = 0
            while buffer[start : start + 2] == b"\r\n":
                start += 2
            if start:
                if start >= 4:
                    self.keepalives += start // 4
                del buffer[:start]
            if buffer[:1] == b"\n":
                del buffer[:1]
                continue
            end = buffer.find(b"\r\n\r\n")
            if end == -1:
                if len(buffer) > self._limits.max_message_size:
                    raise ParseError("header section exceeds the message size limit")
                return messages
            head = bytes(buffer[:end])
            match = _CONTENT_LENGTH_RE.search(head)
            if match is None:
                raise ParseError("message on a stream transport has no Content-Length")
            length = int(match.group(1))
            total = end + 4 + length
            if total > self._limits.max_message_size:
                raise ParseError(
                    f"message of {total} bytes exceeds the limit of {self._limits.max_message_size}"
                )
            if len(buffer) < total:
                return messages
            messages.append(bytes(buffer[:total]))
            del buffer[:total]
