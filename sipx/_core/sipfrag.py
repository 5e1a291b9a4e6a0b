"""message/sipfrag bodies (RFC 3420), as the NOTIFYs of a REFER carry them (RFC 3515 2.4.5).

A REFER's implicit subscription reports the referenced request's progress as a fragment of
a SIP message: its status line (``SIP/2.0 100 Trying``, then the final status), optionally
followed by header lines, which this module ignores.
"""

from __future__ import annotations

from typing import NamedTuple

from .._errors import ParseError
from .header_types import MediaType
from .message import REASON_PHRASES

SIPFRAG_TYPE = "message/sipfrag;version=2.0"


class SipFrag(NamedTuple):
    """The status line of a message/sipfrag body: ``SIP/2.0 486 Busy Here``."""

    status_code: int
    reason: str

    def __str__(self) -> str:
        return f"{self.status_code} {self.reason}".rstrip()


def is_sipfrag(content_type: str | None) -> bool:
    """True when ``content_type`` is message/sipfrag (parameters and case ignored)."""
    if not content_type:
        return False
    try:
        media = MediaType.parse(content_type)
    except ParseError:
        return False
    return (media.type, media.subtype) == ("message", "sipfrag")


def parse_sipfrag(body: bytes | str) -> SipFrag:
    """The status line that starts ``body``; ParseError when there is none."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    line = text.lstrip("\r\n").split("\n", 1)[0].rstrip("\r")
    version, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    if version.upper() != "SIP/2.0" or len(code) != 3 or not code.isdigit():
        raise ParseError(f"not a SIP status line in message/sipfrag: {line[:80]!r}")
    status = int(code)
    if not 100 <= status <= 699:
        raise ParseError(f"status code {status} out of range in message/sipfrag")
    return SipFrag(status, reason.strip())


def build_sipfrag(status_code: int, reason: str | None = None) -> str:
    """The body of a NOTIFY reporting ``status_code``: ``SIP/2.0 200 OK`` and CRLF."""
    if not 100 <= status_code <= 699:
        raise ValueError(f"a SIP status code is 100-699, not {status_code}")
    if reason is None:
        reason = REASON_PHRASES.get(status_code, "")
    if "\r" in reason or "\n" in reason:
        raise ValueError("a reason phrase is one line")
    return f"SIP/2.0 {status_code} {reason}".rstrip() + "\r\n"


__all__ = ["SIPFRAG_TYPE", "SipFrag", "build_sipfrag", "is_sipfrag", "parse_sipfrag"]
