"""Parsing one SIP message from bytes (RFC 3261 sections 7, 20 and 25).

One pass over the header section: the start line and each header line are split out and
kept as text; values are parsed later, on first access (see :mod:`sipx._core.message`).
Every problem raises :class:`~sipx.ParseError`; problems a tolerant reader can live with are
recorded in ``message.defects`` instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .._errors import ParseError
from .headers import _KNOWN, Headers
from .message import SIP_VERSION, Request, Response

_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_FOLD_RE = re.compile(r"\r?\n[ \t]+")


@dataclass(frozen=True, slots=True)
class ParserLimits:
    """Bounds that keep hostile input from costing unbounded memory or time."""

    max_message_size: int = 65_535
    max_headers: int = 256
    max_line_length: int = 8_192


DEFAULT_LIMITS = ParserLimits()


def parse_message(
    data: bytes, *, limits: ParserLimits = DEFAULT_LIMITS, strict: bool = False
) -> Request | Response:
    """Parse one datagram (or one framed stream message) into a Request or Response.

    With ``strict=True`` every header sipx understands is also parsed and checked
    (:meth:`Message.validate`), so a malformed value raises here rather than on access.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"parse_message() takes bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) > limits.max_message_size:
        raise ParseError(
            f"message of {len(data)} bytes exceeds the limit of {limits.max_message_size}"
        )
    end = data.find(b"\r\n\r\n")
    if end != -1:
        head_bytes, body = data[:end], data[end + 4 :]
    else:
        end = data.find(b"\n\n")
        if end == -1:
            raise ParseError("no empty line ends the header section", offset=len(data))
        head_bytes, body = data[:end], data[end + 2 :]
    message = _parse_head(head_bytes.decode("utf-8", "surrogateescape"), limits)
    _attach_body(message, body)
    if strict:
        message.validate()
    return message


def _parse_head(head: str, limits: ParserLimits) -> Request | Response:
    head = head.lstrip("\r\n")  # RFC 3261 7.5: CRLFs before the start line are ignored
    if "\n " in head or "\n\t" in head:
        head = _FOLD_RE.sub(" ", head)
    lines = head.split("\r\n")
    if "\n" in head and len(lines) <= head.count("\n"):
        lines = head.replace("\r\n", "\n").split("\n")
    if len(lines) - 1 > limits.max_headers:
        raise ParseError(f"more than {limits.max_headers} header lines")
    if len(head) > limits.max_line_length:
        for number, line in enumerate(lines, 1):
            if len(line) > limits.max_line_length:
                raise ParseError(
                    f"line {number} is longer than {limits.max_line_length} characters"
                )
    message = _parse_start_line(lines[0])
    fields: list[tuple[str, str, str]] = []
    append = fields.append
    known = _KNOWN
    for number, line in enumerate(lines[1:], 2):
        name, colon, value = line.partition(":")
        if not colon:
            if not line.strip():
                continue
            raise ParseError(f"line {number} is not a header (no colon): {line[:60]!r}")
        name = name.rstrip(" \t")
        entry = known.get(name.lower())
        if entry is None:
            if not _TOKEN_RE.fullmatch(name):
                raise ParseError(f"line {number}: bad header name {name[:60]!r}")
            append((name.lower(), name, value.strip(" \t")))
        else:
            append((entry[0], entry[1], value.strip(" \t")))
    message.headers = Headers._from_parsed(fields)
    return message


def _parse_start_line(line: str) -> Request | Response:
    if line.startswith("SIP/"):
        parts = line.split(" ", 2)
        if len(parts) < 2:
            raise ParseError(f"bad status line {line[:80]!r}")
        version, code = parts[0], parts[1]
        if len(code) != 3 or not code.isdigit() or not "100" <= code <= "699":
            raise ParseError(f"bad status code {code!r} in status line")
        response = Response(int(code), parts[2] if len(parts) == 3 else "", version=version)
        if version != SIP_VERSION:
            response.defects.append(f"unsupported SIP version {version}")
        return response
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise ParseError(f"bad request line {line[:80]!r}: expected METHOD SP URI SP SIP/2.0")
    method, uri, version = parts
    if not _TOKEN_RE.fullmatch(method):
        raise ParseError(f"bad method {method[:40]!r} in request line")
    if not version.upper().startswith("SIP/"):
        raise ParseError(f"bad SIP version {version!r} in request line")
    if ":" not in uri or uri.startswith("<"):
        raise ParseError(f"bad Request-URI {uri[:80]!r}")
    request = Request(method, uri, version=version)
    if version != SIP_VERSION:
        request.defects.append(f"unsupported SIP version {version}")
    return request


def _attach_body(message: Request | Response, body: bytes) -> None:
    length_text = message.headers.get_first("Content-Length")
    if length_text is None:
        message.content = body
        return
    length_text = length_text.strip()
    if not length_text.isdigit() or not length_text.isascii():
        raise ParseError(f"bad Content-Length {length_text!r}")
    length = int(length_text)
    if length > len(body):
        raise ParseError(
            f"Content-Length {length} is larger than the {len(body)} bytes of body received"
        )
    # RFC 3261 18.3: over a datagram transport, bytes past Content-Length are discarded.
    message.content = body[:length]
