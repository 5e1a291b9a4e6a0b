"""The answer to a request that cannot be parsed or fails validation (RFC 3261 8.2, 21.4.1
and 21.5.7; RFC 4475 3.1.2).

A UAS answers a malformed request with 400 (505 for another SIP version) when a response
the client can match can still be built: a SIP top Via and a readable CSeq (From, To and
Call-ID are copied when present, RFC 4475 3.3.13 asks for a 400 even without them). The
reading here is deliberately lenient, line by line, independent of the
parser that refused the message; where those fields cannot be read, or the message is a
response or an ACK (which are never answered), there is no answer: the caller drops it.
"""

from __future__ import annotations

import re

from .headers import _KNOWN, Headers
from .message import SIP_VERSION, Response
from .parser import DEFAULT_LIMITS

_VERSION_RE = re.compile(r"SIP/[0-9]{1,3}\.[0-9]{1,3}\Z", re.I)
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
_VIA_RE = re.compile(r"SIP[ \t]*/[ \t]*[0-9]{1,3}\.[0-9]{1,3}[ \t]*/", re.I)
_CSEQ_RE = re.compile(r"[0-9]+[ \t]+[A-Za-z0-9\-.!%*_+`'~]+\Z")
_NOT_PRINTABLE_RE = re.compile(r"[^\x20-\x7e]+")
_COPIED = frozenset(("via", "from", "to", "call-id", "cseq"))
_MAX_REASON = 100


def answer_malformed(data: bytes, fault: str, *, to_tag: str) -> Response | None:
    """The response to send for the request in ``data``, refused because of ``fault``; None
    when it must be dropped. ``to_tag`` is added to a To header that has none."""
    lines = _header_lines(data)
    if not lines:
        return None
    parts = lines[0].split()
    if len(parts) < 2 or parts[0].upper().startswith("SIP/"):
        return None  # a response (or no start line at all)
    method, version = parts[0], parts[-1]
    if not _TOKEN_RE.match(method) or method == "ACK":
        return None  # an ACK is never answered (RFC 3261 17.2.1)
    fields = _fields(lines[1:])
    if fields is None:
        return None
    if _VERSION_RE.match(version) and version.upper() != SIP_VERSION:
        status, reason = 505, "Version Not Supported"
    else:
        status, reason = 400, _reason(fault)
    headers = Headers()
    for name, value in fields:
        if name == "To" and ";tag=" not in value.replace(" ", "").lower():
            value = f"{value};tag={to_tag}"
        headers.add(name, value)
    headers.add("Content-Length", "0")
    return Response(status, reason, headers)


def _header_lines(data: bytes) -> list[str]:
    """The start line and the unfolded header lines (the whole text when no empty line ends
    the header section)."""
    text = data.lstrip(b"\r\n").decode("utf-8", "replace").replace("\r\n", "\n")
    head = text.split("\n\n", 1)[0]
    lines: list[str] = []
    for line in head.split("\n"):
        if line[:1] in (" ", "\t") and len(lines) > 1:
            lines[-1] += " " + line.strip()
        else:
            lines.append(line.rstrip("\r"))
    return lines


def _fields(lines: list[str]) -> list[tuple[str, str]] | None:
    """The Via headers and the first From, To, Call-ID and CSeq, in order; None when the
    response could not be matched by the client (no SIP top Via, no readable CSeq)."""
    found: list[tuple[str, str]] = []
    for line in lines:
        name, colon, value = line.partition(":")
        entry = _KNOWN.get(name.strip().lower()) if colon else None
        if entry is None or entry[0] not in _COPIED:
            continue
        canonical = entry[1]
        if canonical != "Via" and any(name == canonical for name, _ in found):
            continue  # a repeated single-valued header: the first one is copied
        if "\r" in value or len(line) > DEFAULT_LIMITS.max_line_length:
            continue  # a bare CR would break our answer's framing, a huge line its reader
        found.append((canonical, value.strip()))
    vias = [value for name, value in found if name == "Via"]
    cseq = next((value for name, value in found if name == "CSeq"), "")
    if not vias or not _VIA_RE.match(vias[0]) or not _CSEQ_RE.match(cseq):
        return None
    return found


def _reason(fault: str) -> str:
    """``Bad Request (fault)``: one printable line, at most 100 characters."""
    text = _NOT_PRINTABLE_RE.sub(" ", fault).strip()
    reason = f"Bad Request ({text})"
    return reason if len(reason) <= _MAX_REASON else reason[: _MAX_REASON - 4] + "...)"


__all__ = ["answer_malformed"]
