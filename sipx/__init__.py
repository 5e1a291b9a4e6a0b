"""sipx: a SIP (RFC 3261) user agent library for Python, built on trio."""

from ._errors import AuthError, ParseError, ProtocolError, SIPError, TimeoutError, TransportError

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "ParseError",
    "ProtocolError",
    "SIPError",
    "TimeoutError",
    "TransportError",
    "__version__",
]
