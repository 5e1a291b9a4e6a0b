"""Typed views of header values: Via, name-addr (From, To, Contact, Route...), CSeq, media types.

Each type parses from the text of one header value (``Via.parse``), renders back with
``str()``, and raises :class:`~sipx.ParseError` for text it cannot read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .._errors import ParseError
from .uri import URI

_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_PARAM_NAME_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_PARAM_VALUE_RE = re.compile(r'[A-Za-z0-9\-.!%*_+`\'~:\[\]]+|"(?:[^"\\]|\\.)*"')


def is_token(text: str) -> bool:
    return _TOKEN_RE.fullmatch(text) is not None


def parse_params(text: str, where: str) -> dict[str, str | None]:
    """Parse ``;name=value;flag`` (leading ``;`` optional); quoted values keep their quotes."""
    params: dict[str, str | None] = {}
    if not text.strip():
        return params
    for item in _split_outside_quotes(text, ";"):
        item = item.strip()
        if not item:
            raise ParseError(f"empty parameter in {where}")
        name, eq, value = item.partition("=")
        name = name.strip()
        value = value.strip()
        if not _PARAM_NAME_RE.fullmatch(name):
            raise ParseError(f"bad parameter name {name!r} in {where}")
        if eq and not _PARAM_VALUE_RE.fullmatch(value):
            raise ParseError(f"bad value for parameter {name!r} in {where}")
        params[name.lower()] = value if eq else None
    return params


def render_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def unquote_string(text: str) -> str:
    """``"a \\"b\\""`` -> ``a "b"``; text without quotes is returned stripped."""
    text = text.strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def quote_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    if '"' not in text:
        parts = text.split(sep)
        return parts[1:] if parts and not parts[0].strip() and text.lstrip().startswith(sep) else parts
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == sep and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if quoted:
        raise ParseError(f"unterminated quoted string in {text!r}")
    parts.append("".join(current))
    if parts and not parts[0].strip() and text.lstrip().startswith(sep):
        parts = parts[1:]
    return parts


@dataclass(slots=True)
class Via:
    """One Via entry: ``SIP/2.0/UDP host:port;branch=...;rport;received=...``."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @classmethod
    def parse(cls, text: str) -> Via:
        sent_protocol, sent_by = _split_sent_protocol(text)
        parts = [p.strip() for p in sent_protocol.split("/")]
        if len(parts) != 3 or not all(is_token(p) for p in parts):
            raise ParseError(f"bad Via protocol {sent_protocol!r}")
        hostport, _, rest = sent_by.partition(";")
        host, port = _parse_hostport(hostport.strip(), "Via")
        params = parse_params(rest, "Via") if rest else {}
        branch = params.get("branch", "")
        if branch is not None and branch.startswith('"'):
            raise ParseError("Via branch must be a token")
        return cls(parts[2].upper(), host, port, params, f"{parts[0]}/{parts[1]}")

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        """The rport value a server filled in (RFC 3581), or None."""
        value = self.params.get("rport")
        return int(value) if value and value.isdigit() else None

    @property
    def has_rport(self) -> bool:
        return "rport" in self.params

    @property
    def maddr(self) -> str | None:
        return self.params.get("maddr")

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return self.host, self.port

    def __str__(self) -> str:
        hostport = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"{self.protocol}/{self.transport} {hostport}{render_params(self.params)}"


def _split_sent_protocol(text: str) -> tuple[str, str]:
    # "SIP / 2.0 / UDP host" : the protocol may hold LWS around the slashes.
    text = text.strip()
    slashes = 0
    index = 0
    while index < len(text):
        char = text[index]
        if char == "/":
            slashes += 1
        elif slashes == 2 and char not in " \t":
            end = index
            while end < len(text) and text[end] not in " \t":
                end += 1
            return text[:end], text[end:].strip()
        index += 1
    raise ParseError(f"bad Via value {text!r}")


def _parse_hostport(text: str, where: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end == -1:
            raise ParseError(f"unterminated IPv6 reference in {where}")
        host, rest = text[: end + 1], text[end + 1 :].strip()
        port_text = rest[1:].strip() if rest.startswith(":") else None
        if rest and port_text is None:
            raise ParseError(f"junk after host in {where}: {text!r}")
    else:
        host, colon, port_part = text.partition(":")
        host = host.strip()
        port_text = port_part.strip() if colon else None
        if not host or not re.fullmatch(r"[A-Za-z0-9.\-]+", host):
            raise ParseError(f"bad host {host!r} in {where}")
    if port_text is None:
        return host, None
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ParseError(f"bad port {port_text!r} in {where}")
    return host, int(port_text)


@dataclass(slots=True)
class NameAddr:
    """A name-addr or addr-spec with header parameters (From, To, Contact, Route, ...).

    ``Contact: *`` parses to a NameAddr whose ``is_wildcard`` is true.
    """

    uri: URI
    display_name: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    is_wildcard: bool = False

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        text = text.strip()
        if text == "*":
            return cls(URI("sip"), is_wildcard=True)
        display: str | None = None
        if text.startswith('"'):
            end = _closing_quote(text)
            display = unquote_string(text[: end + 1])
            text = text[end + 1 :].lstrip()
            if not text.startswith("<"):
                raise ParseError("quoted display name must be followed by <URI>")
        lt = text.find("<")
        if lt != -1:
            if display is None:
                name_part = text[:lt].strip()
                if name_part:
                    if not all(is_token(word) for word in name_part.split()):
                        raise ParseError(f"bad display name {name_part!r}")
                    display = " ".join(name_part.split())
            gt = text.find(">", lt)
            if gt == -1:
                raise ParseError(f"unterminated <URI> in {text!r}")
            if text[lt + 1 : lt + 2].isspace() or text[gt - 1 : gt].isspace():
                raise ParseError(f"whitespace inside <URI> in {text!r}")
            uri = URI.parse(text[lt + 1 : gt])
            rest = text[gt + 1 :].strip()
            if rest and not rest.startswith(";"):
                raise ParseError(f"junk after <URI>: {rest!r}")
        else:
            # addr-spec: parameters after the URI belong to the header, not the URI.
            uri_text, semi, rest = text.partition(";")
            uri_text = uri_text.strip()
            if any(c in uri_text for c in " \t"):
                raise ParseError(f"addr-spec contains whitespace: {uri_text!r}")
            if "?" in uri_text or "," in uri_text:
                raise ParseError(f"addr-spec with '?' or ',' must be enclosed in <>: {text!r}")
            uri = URI.parse(uri_text)
            rest = semi + rest
        return cls(uri, display, parse_params(rest, "name-addr") if rest else {})

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def expires(self) -> int | None:
        value = self.params.get("expires")
        return int(value) if value and value.isdigit() else None

    @property
    def q(self) -> float | None:
        value = self.params.get("q")
        try:
            return float(value) if value else None
        except ValueError:
            return None

    def __str__(self) -> str:
        if self.is_wildcard:
            return "*"
        name = ""
        if self.display_name:
            display = self.display_name
            name = (display if all(is_token(w) for w in display.split()) else quote_string(display)) + " "
        return f"{name}<{self.uri}>{render_params(self.params)}"


def _closing_quote(text: str) -> int:
    index = 1
    while index < len(text):
        if text[index] == "\\":
            index += 2
            continue
        if text[index] == '"':
            return index
        index += 1
    raise ParseError(f"unterminated quoted display name in {text!r}")


@dataclass(slots=True, frozen=True)
class CSeq:
    """``CSeq: 4711 INVITE``."""

    seq: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        parts = text.split()
        if len(parts) != 2 or not parts[0].isdigit() or not is_token(parts[1]):
            raise ParseError(f"bad CSeq {text!r}")
        seq = int(parts[0])
        if seq >= 2**32:
            raise ParseError(f"CSeq number out of range: {parts[0]}")
        return cls(seq, parts[1])

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


@dataclass(slots=True)
class MediaType:
    """``Content-Type: application/sdp;charset=utf-8``."""

    type: str
    subtype: str
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> MediaType:
        main, _, rest = text.partition(";")
        kind, slash, sub = main.strip().partition("/")
        if not slash or not is_token(kind.strip()) or not is_token(sub.strip()):
            raise ParseError(f"bad media type {text!r}")
        return cls(kind.strip().lower(), sub.strip().lower(), parse_params(rest, "Content-Type"))

    @property
    def mime_type(self) -> str:
        return f"{self.type}/{self.subtype}"

    def __str__(self) -> str:
        return f"{self.mime_type}{render_params(self.params)}"


def parse_int(text: str, name: str, maximum: int = 2**32 - 1) -> int:
    text = text.strip()
    if not text.isdigit() or not text.isascii():
        raise ParseError(f"bad {name} value {text!r}")
    value = int(text)
    if value > maximum:
        raise ParseError(f"{name} value out of range: {text}")
    return value
