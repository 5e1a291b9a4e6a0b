"""Parsing one SIP message from bytes (RFC 3261 sections 7, 20 and 25).

One pass over the header section: the start line and each header line are split out and
kept as text; values are parsed later, on first access (see :mod:`sipx._core.message`).
Every problem raises :class:`~sipx.ParseError`; problems a tolerant reader can live with are
recorded in ``message.defects`` instead (and raised by ``strict=True``).

The fast path handles CRLF-terminated lines without line folding, which is what every
modern implementation sends; folded headers, bare-LF line ends and errors take a slower
path that normalises the text first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .._errors import ParseError
from .headers import _EXACT, _KNOWN, Headers, headers_from_lines
from .message import SIP_VERSION, Request, Response, request_from_wire

_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
# The usual spellings of known header names -> their lookup key.
_KEYS = {name: entry[0] for name, entry in _EXACT.items()}
_FOLD_RE = re.compile(r"\n[ \t]+")
_BLANK_LINE_RE = re.compile(rb"\n\r?\n")
_VERSION_RE = re.compile(r"SIP/[0-9]{1,3}\.[0-9]{1,3}", re.I)
_METHODS = frozenset(
    [
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "PRACK",
        "SUBSCRIBE",
        "NOTIFY",
        "PUBLISH",
        "INFO",
        "REFER",
        "MESSAGE",
        "UPDATE",
    ]
)
# Each method name as one str: the usual request's method is this one, not a new copy of
# its own (a Timer J record and the merge key of every request keep it).
_METHOD_NAMES = {method: method for method in _METHODS}


@dataclass(frozen=True, slots=True)
class ParserLimits:
    """Bounds that keep hostile input from costing unbounded memory or time."""

    max_message_size: int = 65_535
    max_headers: int = 256
    max_line_length: int = 8_192


DEFAULT_LIMITS = ParserLimits()


class _OtherLine(Exception):
    """A header line the parser's fast path does not read."""


class _Folded(Exception):
    """The header section has folded lines or bare LFs: take the normalising path."""


def parse_message(
    data: bytes | bytearray | memoryview,
    *,
    limits: ParserLimits = DEFAULT_LIMITS,
    strict: bool = False,
) -> Request | Response:
    """Parse one datagram (or one framed stream message) into a Request or Response.

    With ``strict=True`` every header sipx understands is also parsed and checked
    (:meth:`Message.validate`), so a malformed value raises here rather than on access,
    and a defect (an unsupported SIP version) raises too.
    """
    if type(data) is not bytes:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"parse_message() takes bytes, not {type(data).__name__}")
        data = bytes(data)
    if len(data) > limits.max_message_size:
        raise ParseError(
            f"message of {len(data)} bytes exceeds the limit of {limits.max_message_size}"
        )
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")  # RFC 3261 7.5: CRLFs before the start line are ignored
    head_bytes, blank_line, body = data.partition(b"\r\n\r\n")
    if blank_line:
        head = head_bytes.decode("utf-8", "surrogateescape")
    else:
        head, body = _split_at_blank_line(data)
    lines = head.split("\r\n")
    try:
        first, more = _header_fields(lines, len(head), limits)
        # A CR or LF left inside a line is a bare one: normalise. The lines are joined
        # (a list joins without a copy into another list) and searched with memchr, which
        # costs less than counting the line ends of the section.
        joined = " ".join(lines)
        if "\n" in joined or "\r" in joined:
            raise _Folded
    except _Folded:
        if blank_line:  # bare LF lines: the empty line may come before the first CRLF CRLF
            head, body = _split_at_blank_line(data)
        lines = _normalise(head)
        try:
            first, more = _header_fields(lines, len(head), limits, normalised=True)
        except _Folded:
            raise ParseError("a header line starts with whitespace") from None
    headers = headers_from_lines(lines, first, more)
    start = lines[0]
    words = start.split(" ")
    length_text = first.get("content-length")
    if (
        len(words) == 3
        and words[2] == SIP_VERSION
        and words[0] in _METHOD_NAMES
        and ":" in words[1]
        and words[1][0] != "<"
        and (length_text is None or (more is None and length_text == str(len(body))))
        and not strict
    ):
        # The usual request: no Content-Length, or the body's length exactly.
        return request_from_wire(_METHOD_NAMES[words[0]], words[1], SIP_VERSION, headers, body)
    message = _parse_start_line(start, headers)
    if length_text is None or (more is None and length_text == str(len(body))):
        message.content = body  # no Content-Length, or the usual: the body's length exactly
    else:
        lengths = more.get("content-length") if more is not None else None
        if lengths is not None and any(other != length_text for other in lengths):
            raise ParseError(f"conflicting Content-Length values {lengths[:4]!r}")
        if not (length_text.isdigit() and length_text.isascii()):
            raise ParseError(f"bad Content-Length {length_text[:40]!r}")
        length = int(length_text) if len(length_text) <= 10 else -1
        if length == -1 or length > len(body):
            raise ParseError(
                f"Content-Length {length_text[:40]} is larger than the {len(body)} bytes of "
                "body received"
            )
        # RFC 3261 18.3: over a datagram transport, bytes past Content-Length are discarded.
        message.content = body if length == len(body) else body[:length]
    if strict:
        if message.defects:
            raise ParseError(message.defects[0])
        message.validate()
    return message


def _split_at_blank_line(data: bytes) -> tuple[str, bytes]:
    """Split at the first empty line, whatever mix of LF and CRLF line ends is used."""
    match = _BLANK_LINE_RE.search(data)
    if match is None:
        raise ParseError("no empty line ends the header section", offset=len(data))
    head = data[: match.start()].decode("utf-8", "surrogateescape")
    if head.endswith("\r"):  # the line before the empty one ended with CRLF
        head = head[:-1]
    return head, data[match.end() :]


def _normalise(head: str) -> list[str]:
    """Lines of a header section with LF or CRLF ends and folded continuation lines."""
    head = head.replace("\r\n", "\n")
    if "\r" in head:
        raise ParseError("bare CR in the header section")
    if "\n " in head or "\n\t" in head:
        first, _, rest = head.partition("\n")
        if first and rest[:1] in (" ", "\t"):
            raise ParseError("the start line cannot be folded")
        head = _FOLD_RE.sub(" ", head)
    return head.split("\n")


def _header_fields(
    lines: list[str], size: int, limits: ParserLimits, *, normalised: bool = False
) -> tuple[dict[str, str], dict[str, tuple[str, ...]] | None]:
    """Check the header lines (``lines[1:]``); return the first value of each name and,
    for the names given more than once, every value.

    The field list itself is built from the lines only if it is needed
    (:attr:`Headers.entries`).
    """
    if len(lines) - 1 > limits.max_headers:
        if not normalised:
            raise _Folded  # count again once folded lines are joined
        raise ParseError(f"more than {limits.max_headers} header lines")
    max_line = limits.max_line_length
    if size > max_line:  # some line may be too long: check each (else none can be)
        for line in lines:
            if len(line) > max_line:
                if not normalised and ("\n" in line or "\r" in line):
                    raise _Folded  # measure again once bare line ends are split
                raise ParseError(
                    f"header line {line[:40]!r}... is longer than {max_line} characters"
                )
    first: dict[str, str] = {}
    more: dict[str, tuple[str, ...]] | None = None
    keys = _KEYS
    remaining = iter(lines)
    next(remaining)  # the start line
    while True:
        try:
            # The fast path: "Name: value" with a usual spelling of a known name, not seen
            # yet. Any other line raises (KeyError: another name; _OtherLine: no ": ", an
            # empty value or a repeated name) and is read below; the loop then goes on.
            for line in remaining:
                name, _, value = line.partition(": ")
                key = keys[name]
                if not value or key in first:
                    raise _OtherLine
                first[key] = value.strip(" \t")  # the same string if nothing to strip
            return first, more
        except (KeyError, _OtherLine):
            try:
                key, value = _field(line)
            except ParseError:
                # A bare CR or LF elsewhere goes first (the normalising path reports it).
                if not normalised and any("\r" in text or "\n" in text for text in lines):
                    raise _Folded from None
                raise
            if key in first:
                more = _another_value(more, first, key, value)
            else:
                first[key] = value


def _another_value(
    more: dict[str, tuple[str, ...]] | None, first: dict[str, str], key: str, value: str
) -> dict[str, tuple[str, ...]]:
    """``more`` with ``value`` added to the values of ``key`` (already in ``first``)."""
    if more is None:
        more = {}
    more[key] = (*more.get(key, (first[key],)), value)
    return more


def _field(line: str) -> tuple[str, str]:
    """The key and value of a header line of any shape, checked."""
    name, colon, value = line.partition(":")
    entry = _EXACT.get(name)
    if entry is None:
        entry = _header_name(name, colon, line)
    return entry[0], value.strip(" \t")


def _header_name(name: str, colon: str, line: str) -> tuple[str, str]:
    """The (key, name) of a header line whose name is not a known spelling."""
    if line[:1] in (" ", "\t") or "\n" in line or "\r" in line:
        raise _Folded  # a continuation line (or leading whitespace the fold path rejects)
    if not colon:
        raise ParseError(f"not a header line (no colon): {line[:60]!r}")
    name = name.rstrip(" \t")
    lowered = name.lower()
    entry = _KNOWN.get(lowered)
    if entry is not None:
        return entry
    if not _TOKEN_RE.fullmatch(name):
        raise ParseError(f"bad header name {name[:60]!r}")
    return lowered, name


def _parse_start_line(line: str, headers: Headers) -> Request | Response:
    if line.startswith("SIP/"):
        version, _, rest = line.partition(" ")
        code, _, reason = rest.partition(" ")
        if len(code) != 3 or not (code.isdigit() and code.isascii()) or not "100" <= code <= "699":
            raise ParseError(f"bad status code {code[:20]!r} in status line")
        if version != SIP_VERSION and not _VERSION_RE.fullmatch(version):
            raise ParseError(f"bad SIP version {version[:20]!r} in status line")
        response = Response.from_wire(int(code), reason, version, headers)
        if version != SIP_VERSION:
            response.defects.append(f"unsupported SIP version {version}")
        return response
    method, _, rest = line.partition(" ")
    uri, _, version = rest.partition(" ")
    if version != SIP_VERSION:
        if not method or not uri or not version or " " in version:
            raise ParseError(
                f"bad request line {line[:80]!r}: expected METHOD SP Request-URI SP SIP/2.0"
            )
        if not _VERSION_RE.fullmatch(version):
            raise ParseError(f"bad SIP version {version[:20]!r} in request line")
    if method not in _METHODS and not _TOKEN_RE.fullmatch(method):
        raise ParseError(f"bad method {method[:40]!r} in request line")
    if ":" not in uri or uri[0] == "<":
        raise ParseError(f"bad Request-URI {uri[:80]!r}")
    request = Request.from_wire(method, uri, version, headers)
    if version != SIP_VERSION:
        request.defects.append(f"unsupported SIP version {version}")
    return request
