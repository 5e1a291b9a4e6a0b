"""The sipx exception tree.

::

    SIPError
    ├── ParseError            malformed SIP message, URI, header value or SDP
    ├── TransportError        a socket could not be bound, connected or written
    ├── TimeoutError          a transaction got no final response in time (Timer B/F or timeout=)
    ├── ClientClosedError     the client closed while the request was still waiting
    ├── ProtocolError         the peer or the caller broke a protocol rule
    └── AuthError             a challenge could not be answered
"""

from __future__ import annotations

import builtins


class SIPError(Exception):
    """Root of every error sipx raises on purpose."""


class ParseError(SIPError, ValueError):
    """Input could not be parsed; the message says what is wrong and where."""

    def __init__(self, message: str, *, offset: int | None = None) -> None:
        self.offset = offset
        if offset is not None:
            message = f"{message} (at byte {offset})"
        super().__init__(message)


class TransportError(SIPError, OSError):
    """A transport failed: bind, connect, send."""


class TimeoutError(SIPError, builtins.TimeoutError):
    """No final response arrived in time."""

    def __init__(self, method: str, uri: str, seconds: float, detail: str | None = None) -> None:
        self.method = method
        self.uri = uri
        self.seconds = seconds
        self.detail = detail  # why, when sipx knows (e.g. only malformed replies came back)
        message = f"{method} {uri}: no final response within {seconds:g} s"
        super().__init__(f"{message}; {detail}" if detail else message)


class ClientClosedError(SIPError):
    """The client closed (``async with`` left, ``aclose()`` or ``close()``) while this request
    or call was still waiting for an answer."""


class ProtocolError(SIPError):
    """A SIP protocol rule was broken (by the peer or by the caller)."""


class AuthError(SIPError):
    """A digest challenge could not be answered (no credentials, unsupported algorithm)."""


__all__ = [
    "AuthError",
    "ClientClosedError",
    "ParseError",
    "ProtocolError",
    "SIPError",
    "TimeoutError",
    "TransportError",
]
