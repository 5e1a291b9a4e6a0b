"""Typed views of header values: Via, name-addr (From, To, Contact, Route...), CSeq, media types.

Each type parses from the text of one header value (``Via.parse``), renders back with
``str()``, and raises :class:`~sipx.ParseError` for text it cannot read.

Parsing is built for speed on the common shapes: one anchored regular expression recognises
a compact value (``SIP/2.0/UDP host:port;branch=...``, ``"Name" <sip:...>;tag=...``) in a
single pass; anything else (line-folding whitespace around ``/``, ``;`` and ``=``, odd but
legal forms, errors) goes to a tolerant general path that also produces the error messages.
None of the expressions can backtrack more than a bounded amount: their repeated pieces are
separated by characters the pieces themselves cannot contain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from .._errors import ParseError
from .uri import URI

# token (RFC 3261 section 25.1) as a regex character class body.
_T = r"A-Za-z0-9\-.!%*_+`'~"
_TOKEN_RE = re.compile(f"[{_T}]+")
# Written as an unrolled loop: the engine runs through ordinary characters without trying
# an alternation at each one.
_QUOTED = r'"[^"\\]*+(?:\\.[^"\\]*+)*"'
# gen-value = token / host / quoted-string (host may be an IPv6 reference).
_VALUE = rf"[{_T}:\[\]]++|{_QUOTED}"
_PARAM_NAME_RE = _TOKEN_RE
_PARAM_VALUE_RE = re.compile(_VALUE)
# ";name=value;flag..." written without any whitespace: the overwhelmingly common case.
# An optional part is written ``(?:X|)``, not ``(?:X)?`` (which the engine runs as a REPEAT
# with its own context, a BRANCH costs less), and a run of one character class that the
# next character cannot continue is possessive (``++``: nothing to backtrack into).
_PARAMS = rf"(?:;[{_T}]++(?:=(?:{_VALUE})|))*"
_PARAMS_RE = re.compile(_PARAMS)
_PARAM_ITEM_RE = re.compile(rf"(?:;([{_T}]++)(?:=({_VALUE})|))")
_HOST_RE = re.compile(r"[A-Za-z0-9.\-]+")
_DIGITS_RE = re.compile(r"[0-9]+")
_ESCAPE_RE = re.compile(r"\\(.)", re.S)
_NON_QDTEXT_RE = re.compile(r'[\x00-\x08\x0a-\x1f\x7f"\\]')

_VIA_RE = re.compile(
    rf"SIP/2\.0/([{_T}]++) ([A-Za-z0-9.\-]++|\[[0-9A-Fa-f:.]++\])(?::([0-9]{{1,5}}+)|)"
    rf"({_PARAMS})"
)
# The shapes nearly every Via and From/To take, with the parameters a transaction layer
# reads captured directly: ``SIP/2.0/UDP host:port;branch=...[;rport]`` and
# ``["Name" |Name ]<uri>[;tag=...]``. Each accepts a subset of the general expression's
# language and yields the same values; anything else takes the general path.
# The usual transport, port and rport flag are recognised by empty groups (an empty
# string costs no allocation, a captured "UDP", "5060" or ";rport" does). Optional parts
# are written as an alternation with an empty branch, ``(?:X|)``, not ``(?:X)?``: the
# engine runs a group repeated 0-1 times as a REPEAT with its own context, which costs
# more than a BRANCH; and the runs of one character class are possessive (``++``), as no
# backtracking into them can help (each is followed by a character the class excludes).
_VIA_COMMON_RE = re.compile(
    rf"SIP/2\.0/(?:UDP()|([A-Z]++)) ([A-Za-z0-9.\-]++|\[[0-9A-Fa-f:.]++\])"
    rf"(?::(?:5060()|([0-9]{{1,5}}+))|);branch=([{_T}]++)(?:;rport()|)"
)
# The URI: printable ASCII but SP, DQUOTE, "<" and ">" (a subset of the general [^<>\s"]).
_NAME_ADDR_COMMON_RE = re.compile(
    rf'(?:"([^"\\]*+)"(?: |)|([{_T}]++) |)<([!#-;=?-~]++)>(?:;tag=([{_T}]++)|)'
)
_SENT_PROTOCOL_RE = re.compile(
    r"[ \t]*([^/ \t]+)[ \t]*/[ \t]*([^/ \t]+)[ \t]*/[ \t]*([^/ \t;]+)(?:[ \t]+(.*))?", re.S
)
_NAME_ADDR_RE = re.compile(
    rf'(?:"([^"\\]*+(?:\\.[^"\\]*+)*)"[ \t]*|([{_T}]+(?:[ \t]+[{_T}]+)*)[ \t]*|)'
    rf'<([^<>\s"]++)>({_PARAMS})'
)
_ADDR_SPEC_RE = re.compile(rf'([A-Za-z][A-Za-z0-9+.\-]*:[^\s;<>"?,]+)({_PARAMS})')


_new_object = object.__new__


def is_token(text: str) -> bool:
    return _TOKEN_RE.fullmatch(text) is not None


def is_digits(text: str) -> bool:
    """True for a non-empty run of ASCII digits (``str.isdigit`` also accepts ``"²"``)."""
    return _DIGITS_RE.fullmatch(text) is not None


def parse_params(text: str, where: str) -> dict[str, str | None]:
    """Parse ``;name=value;flag`` (leading ``;`` optional); quoted values keep their quotes.

    Names are lower-cased; whitespace around ``;`` and ``=`` is allowed (RFC 3261 SEMI, EQUAL).
    """
    if not text:
        return {}
    if text[0] == ";" and _PARAMS_RE.fullmatch(text):
        return _valid_params(text)
    return _parse_params_slow(text, where)


def _split_params(text: str) -> dict[str, str | None]:
    """Parameters from text without quotes that ``_PARAMS_RE`` has matched."""
    params: dict[str, str | None] = {}
    for item in text[1:].split(";"):
        name, eq, value = item.partition("=")
        params[name if name.islower() else name.lower()] = value if eq else None
    return params


def _valid_params(text: str) -> dict[str, str | None]:
    """Parameters from text that ``_PARAMS_RE`` has matched (so it splits unambiguously)."""
    return {name.lower(): value or None for name, value in _PARAM_ITEM_RE.findall(text)}


def _parse_params_slow(text: str, where: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    if not text.strip(" \t"):
        return params
    for item in _split_outside_quotes(text, ";", where):
        item = item.strip(" \t")
        if not item:
            raise ParseError(f"empty parameter in {where}")
        name, eq, value = item.partition("=")
        name = name.rstrip(" \t")
        value = value.strip(" \t")
        if not _PARAM_NAME_RE.fullmatch(name):
            raise ParseError(f"bad parameter name {name[:40]!r} in {where}")
        if eq and not _PARAM_VALUE_RE.fullmatch(value):
            raise ParseError(f"bad value for parameter {name!r} in {where}")
        params[name.lower()] = value if eq else None
    return params


def render_params(params: dict[str, str | None]) -> str:
    # One string grown in a loop: cheaper than a list comprehension joined for the one to
    # three parameters a header usually has (no function or list made).
    text = ""
    for name, value in params.items():
        text = f"{text};{name}" if value is None else f"{text};{name}={value}"
    return text


def unquote_string(text: str) -> str:
    """``"a \\"b\\""`` -> ``a "b"``; text without quotes is returned stripped."""
    text = text.strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        inner = text[1:-1]
        return _ESCAPE_RE.sub(r"\1", inner) if "\\" in inner else inner
    return text


def quote_string(text: str) -> str:
    """Write ``text`` as a quoted-string; CR and LF cannot be written and raise ValueError."""
    if "\r" in text or "\n" in text:
        raise ValueError(f"a quoted string cannot hold CR or LF: {text!r}")
    if _NON_QDTEXT_RE.search(text):
        text = _NON_QDTEXT_RE.sub(lambda match: "\\" + match.group(), text)
    return f'"{text}"'


def _split_outside_quotes(text: str, sep: str, where: str = "header") -> list[str]:
    """Split at ``sep`` outside quoted strings; a leading ``sep`` gives no empty first part."""
    stripped = text.lstrip(" \t")
    if stripped.startswith(sep):
        text = stripped[1:]
    if '"' not in text:
        return text.split(sep)
    parts: list[str] = []
    position = 0
    start = 0
    length = len(text)
    while position < length:
        quote = text.find('"', position)
        cut = text.find(sep, position)
        if cut != -1 and (quote == -1 or cut < quote):
            parts.append(text[start:cut])
            start = position = cut + 1
            continue
        if quote == -1:
            break
        match = _QUOTED_AT_RE.match(text, quote)
        if match is None:
            raise ParseError(f"unterminated quoted string in {where}")
        position = match.end()
    parts.append(text[start:])
    return parts


_QUOTED_AT_RE = re.compile(_QUOTED, re.S)


def _port(text: str, where: str) -> int:
    if not is_digits(text) or len(text) > 5 or int(text) > 65535:
        raise ParseError(f"bad port {text[:20]!r} in {where}")
    return int(text)


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
        """One Via entry (see :func:`parse_via`)."""
        return parse_via(text)

    @classmethod
    def _parse_general(cls, text: str) -> Via:
        match = _VIA_RE.fullmatch(text)
        if match is None:
            return cls._parse_slow(text)
        transport, host, port_text, params_text = match.groups()
        port = None
        if port_text is not None:
            port = int(port_text)  # at most 5 digits
            if port > 65535:
                raise ParseError(f"bad port {port_text} in Via")
        if not params_text:
            params: dict[str, str | None] = {}
        elif '"' in params_text:
            params = _valid_params(params_text)
            branch = params.get("branch")
            if branch is not None and branch[0] == '"':
                raise ParseError("Via branch must be a token")
        else:  # the regex checked the syntax: ";" and "=" only separate
            params = _split_params(params_text)
        return cls(transport if transport.isupper() else transport.upper(), host, port, params)

    @classmethod
    def _parse_slow(cls, text: str) -> Via:
        match = _SENT_PROTOCOL_RE.fullmatch(text.strip(" \t"))
        if match is None:
            raise ParseError(f"bad Via value {text[:80]!r}")
        name, version, transport, sent_by = match.groups()
        if not (is_token(name) and is_token(version) and is_token(transport)):
            raise ParseError(f"bad Via protocol in {text[:80]!r}")
        if not sent_by:
            raise ParseError(f"Via has no sent-by host: {text[:80]!r}")
        hostport, semi, rest = sent_by.partition(";")
        host, port = _parse_hostport(hostport.strip(" \t"), "Via")
        params = _parse_params_slow(rest, "Via") if semi else {}
        branch = params.get("branch")
        if branch is not None and branch.startswith('"'):
            raise ParseError("Via branch must be a token")
        return cls(transport.upper(), host, port, params, f"{name}/{version}")

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    def with_branch(self, branch: str) -> Via:
        """A copy of this entry whose ``branch`` parameter is ``branch`` (in the same place
        among the parameters): what parsing the entry's text with that branch gives."""
        via = _new_object(Via)
        via.transport = self.transport
        via.host = self.host
        via.port = self.port
        via.params = {**self.params, "branch": branch}
        via.protocol = self.protocol
        return via

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        """The rport value a server filled in (RFC 3581), or None."""
        value = self.params.get("rport")
        return int(value) if value and is_digits(value) and len(value) <= 5 else None

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


def _parse_hostport(text: str, where: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end == -1:
            raise ParseError(f"unterminated IPv6 reference in {where}")
        host, rest = text[: end + 1], text[end + 1 :].strip(" \t")
        if not re.fullmatch(r"\[[0-9A-Fa-f:.]+\]", host):
            raise ParseError(f"bad IPv6 reference {host[:60]!r} in {where}")
        port_text = rest[1:].strip(" \t") if rest.startswith(":") else None
        if rest and port_text is None:
            raise ParseError(f"junk after host in {where}: {text[:80]!r}")
    else:
        host, colon, port_part = text.partition(":")
        host = host.rstrip(" \t")
        port_text = port_part.strip(" \t") if colon else None
        if not _HOST_RE.fullmatch(host):
            raise ParseError(f"bad host {host[:60]!r} in {where}")
    if port_text is None:
        return host, None
    return host, _port(port_text, where)


# A packed NameAddr (NameAddr.pack): ``_uri`` is this marker, its whole text waits in
# ``_packed_text`` and these public slots are unset until one is read. Any of them found
# unset while ``_packed_text`` is there is read back from it, so a reader in another thread
# (the blocking client's user) never sees a half-packed name-addr, whatever the order.
_PACKED_URI = URI("sip")
_PACKED = ("display_name", "is_wildcard", "params")


def _unset(obj: object, name: str) -> bool:
    try:
        object.__getattribute__(obj, name)
    except AttributeError:
        return True
    return False


class NameAddr:
    """A name-addr or addr-spec with header parameters (From, To, Contact, Route, ...).

    ``uri`` is parsed on first access (reading a tag does not need it), so a malformed URI
    raises :class:`~sipx.ParseError` there; :meth:`Message.validate` touches it.
    ``Contact: *`` parses to a NameAddr whose ``is_wildcard`` is true.
    """

    __slots__ = ("_packed_text", "_uri", "_uri_text", "display_name", "is_wildcard", "params")

    display_name: str | None
    params: dict[str, str | None]
    is_wildcard: bool

    def __init__(
        self,
        uri: URI | str,
        display_name: str | None = None,
        params: dict[str, str | None] | None = None,
        is_wildcard: bool = False,
    ) -> None:
        self._uri: URI | None = uri if isinstance(uri, URI) else URI.parse(uri)
        self._uri_text: str | None = None
        self.display_name = display_name
        self.params = {} if params is None else params
        self.is_wildcard = is_wildcard

    @property
    def uri(self) -> URI:
        uri = self._uri
        if uri is None:
            uri = self._uri = URI.parse(self._uri_text or "")
        elif uri is _PACKED_URI:
            self._unpack()
            return self.uri
        return uri

    @uri.setter
    def uri(self, value: URI | str) -> None:
        if self._uri is _PACKED_URI:
            self._unpack()
        self._uri = value if isinstance(value, URI) else URI.parse(value)
        self._uri_text = None

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        """A name-addr or addr-spec with parameters (see :func:`parse_name_addr`)."""
        return parse_name_addr(text)

    # -- packing (what an idle dialog keeps) ---------------------------------------------
    def pack(self) -> bool:
        """Keep only this name-addr's text until it is read: the first read parses it again
        into this same object (an idle call's From and To). False, and nothing done, if the
        text would not parse back to the same display name, URI text and parameters."""
        if self._uri is _PACKED_URI:
            return True
        if self.is_wildcard:
            return False
        text = str(self)
        try:
            again = parse_name_addr(text)
        except ParseError:
            return False
        uri_text = self._uri_text if self._uri is None else str(self._uri)
        if (
            again.display_name != self.display_name
            or again._uri_text != uri_text
            or list(again.params.items()) != list(self.params.items())
        ):
            return False
        self._packed_text = text  # first: from now on a missing field is read back from it
        self._uri = _PACKED_URI
        for name in _PACKED:
            try:
                object.__delattr__(self, name)
            except AttributeError:  # (already unset)
                pass
        return True

    @property
    def packed(self) -> bool:
        """Only the text is kept (see :meth:`pack`); reading anything unpacks."""
        return self._uri is _PACKED_URI

    def _packed_source(self) -> str | None:
        """The text :meth:`pack` kept (None: never packed)."""
        try:
            text: str = object.__getattribute__(self, "_packed_text")
        except AttributeError:
            return None
        return text

    def _unpack(self) -> None:
        """Parse the packed text into this object; a slot set meanwhile keeps its value."""
        parsed = parse_name_addr(self._packed_source() or "")
        for slot in _PACKED:
            if _unset(self, slot):
                object.__setattr__(self, slot, object.__getattribute__(parsed, slot))
        if self._uri is _PACKED_URI:
            self._uri, self._uri_text = parsed._uri, parsed._uri_text

    if not TYPE_CHECKING:  # (mypy keeps checking attribute names)

        def __getattr__(self, name: str) -> Any:
            """A field of a packed name-addr: parse its text into this object, then read
            (again if a packing in another thread unset it meanwhile)."""
            if name not in _PACKED or self._packed_source() is None:
                raise AttributeError(name)
            for _ in range(8):
                self._unpack()
                try:
                    return object.__getattribute__(self, name)
                except AttributeError:
                    continue
            raise AttributeError(name)

    @classmethod
    def _parse_general(cls, text: str) -> NameAddr:
        match = _NAME_ADDR_RE.fullmatch(text)
        if match is not None:
            quoted, tokens, uri_text, params_text = match.groups()
            if quoted is not None:
                display: str | None = _ESCAPE_RE.sub(r"\1", quoted) if "\\" in quoted else quoted
            elif tokens is not None:
                display = " ".join(tokens.split()) if " " in tokens or "\t" in tokens else tokens
            else:
                display = None
        else:
            match = _ADDR_SPEC_RE.fullmatch(text)
            if match is None:
                return cls._parse_slow(text)
            display = None
            uri_text, params_text = match.groups()
        self = _new_object(cls)
        self._uri = None
        self._uri_text = uri_text
        self.display_name = display
        if not params_text:
            self.params = {}
        elif '"' in params_text:
            self.params = _valid_params(params_text)
        else:  # the regex checked the syntax: ";" and "=" only separate
            self.params = _split_params(params_text)
        self.is_wildcard = False
        return self

    @classmethod
    def _parse_slow(cls, text: str) -> NameAddr:
        text = text.strip(" \t")
        if text == "*":
            return cls(URI("sip"), is_wildcard=True)
        display: str | None = None
        if text.startswith('"'):
            end = _closing_quote(text)
            display = unquote_string(text[: end + 1])
            text = text[end + 1 :].lstrip(" \t")
            if not text.startswith("<"):
                raise ParseError("quoted display name must be followed by <URI>")
        lt = text.find("<")
        if lt != -1:
            if display is None:
                name_part = text[:lt].strip(" \t")
                if name_part:
                    if not all(is_token(word) for word in name_part.split()):
                        raise ParseError(f"bad display name {name_part[:60]!r}")
                    display = " ".join(name_part.split())
            gt = text.find(">", lt)
            if gt == -1:
                raise ParseError(f"unterminated <URI> in {text[:80]!r}")
            uri_text = text[lt + 1 : gt]
            if not uri_text or uri_text != uri_text.strip() or "<" in uri_text:
                raise ParseError(f"bad or padded URI inside <> in {text[:80]!r}")
            uri = URI.parse(uri_text)
            rest = text[gt + 1 :].strip(" \t")
            if rest and not rest.startswith(";"):
                raise ParseError(f"junk after <URI>: {rest[:60]!r}")
        else:
            # addr-spec: parameters after the URI belong to the header, not the URI.
            uri_text, semi, rest = text.partition(";")
            uri_text = uri_text.strip(" \t")
            if any(c in uri_text for c in ' \t"<>'):
                raise ParseError(f"bad addr-spec {uri_text[:80]!r}")
            if "?" in uri_text or "," in uri_text:
                raise ParseError(f"addr-spec with '?' or ',' must be enclosed in <>: {text[:80]!r}")
            uri = URI.parse(uri_text)
            rest = semi + rest
        return cls(uri, display, _parse_params_slow(rest, "name-addr") if rest else {})

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def expires(self) -> int | None:
        """The ``expires`` parameter in seconds (capped at 2**32-1), or None."""
        value = self.params.get("expires")
        if not value or not is_digits(value):
            return None
        return min(int(value), 2**32 - 1) if len(value) <= 20 else 2**32 - 1

    @property
    def q(self) -> float | None:
        """The ``q`` parameter (0 to 1), or None when absent or not a qvalue."""
        value = self.params.get("q")
        if not value or not re.fullmatch(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?", value):
            return None
        return float(value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NameAddr):
            return NotImplemented
        return (
            self.is_wildcard == other.is_wildcard
            and self.display_name == other.display_name
            and self.params == other.params
            and (self.is_wildcard or self.uri == other.uri)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if self._uri is _PACKED_URI:
            self._unpack()
        uri = self._uri_text if self._uri is None else str(self._uri)
        return (
            f"NameAddr(uri={uri!r}, display_name={self.display_name!r}, params={self.params!r}"
            + (", is_wildcard=True)" if self.is_wildcard else ")")
        )

    def __str__(self) -> str:
        if self._uri is _PACKED_URI:
            if all(_unset(self, slot) for slot in _PACKED):  # the text kept is the text
                return self._packed_source() or ""
            self._unpack()
        if self.is_wildcard:
            return "*"
        name = ""
        display = self.display_name
        if display == "":
            name = '"" '
        elif display:
            words = display.split()
            if words and " ".join(words) == display and all(is_token(w) for w in words):
                name = display + " "
            else:
                name = quote_string(display) + " "
        uri = self._uri_text if self._uri is None else str(self._uri)
        return f"{name}<{uri}>{render_params(self.params)}"


def _closing_quote(text: str) -> int:
    match = _QUOTED_AT_RE.match(text)
    if match is None:
        raise ParseError(f"unterminated quoted display name in {text[:80]!r}")
    return match.end() - 1


_CSEQ_RE = re.compile(rf"([0-9]{{1,10}}) ([{_T}]+)")


class CSeq(NamedTuple):
    """``CSeq: 4711 INVITE`` (immutable: a named tuple, which builds faster than a frozen
    dataclass)."""

    seq: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        """``4711 INVITE`` (see :func:`parse_cseq`)."""
        return parse_cseq(text)

    @classmethod
    def _parse_general(cls, text: str) -> CSeq:
        match = _CSEQ_RE.fullmatch(text)
        if match is None:
            parts = text.split()
            if len(parts) != 2 or not is_digits(parts[0]) or not is_token(parts[1]):
                raise ParseError(f"bad CSeq {text[:80]!r}")
            number, method = parts
            if len(number) > 20:
                raise ParseError(f"CSeq number out of range: {number[:40]}")
        else:
            number, method = match.groups()
        seq = int(number)
        if seq >= 2**32:
            raise ParseError(f"CSeq number out of range: {number[:40]}")
        return cls(seq, method)

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


_new_tuple = tuple.__new__


def parse_via(text: str) -> Via:
    """Parse one Via entry (``Via.parse``): the usual shape with one regular expression and
    the parameters a transaction reads captured, anything else by the general path."""
    match = _VIA_COMMON_RE.fullmatch(text)
    if match is None:
        return Via._parse_general(text)
    udp, transport, host, sip_port, port_text, branch, rport = match.groups()
    via = _new_object(Via)
    via.transport = "UDP" if udp is not None else transport  # upper-case already
    via.host = host
    if sip_port is not None:
        via.port = 5060
    elif port_text is None:
        via.port = None
    else:
        port = int(port_text)  # at most 5 digits
        if port > 65535:
            raise ParseError(f"bad port {port_text} in Via")
        via.port = port
    via.params = {"branch": branch} if rport is None else {"branch": branch, "rport": None}
    via.protocol = "SIP/2.0"
    return via


def parse_name_addr(text: str) -> NameAddr:
    """Parse a name-addr or addr-spec with its parameters (``NameAddr.parse``): the usual
    shape with one regular expression (the tag captured), anything else by the general
    path. The URI is parsed on first access to ``uri``."""
    match = _NAME_ADDR_COMMON_RE.fullmatch(text)
    if match is None:
        return NameAddr._parse_general(text)
    quoted, token, uri_text, tag = match.groups()
    name_addr = _new_object(NameAddr)
    name_addr._uri = None
    name_addr._uri_text = uri_text
    name_addr.display_name = token if quoted is None else quoted
    name_addr.params = {} if tag is None else {"tag": tag}
    name_addr.is_wildcard = False
    return name_addr


def parse_cseq(text: str) -> CSeq:
    """Parse ``4711 INVITE`` (``CSeq.parse``); a known method after at most nine digits
    and one space needs no regular expression."""
    number, _, method = text.partition(" ")
    if method in _METHODS and len(number) < 10 and number.isdigit() and number.isascii():
        return _new_tuple(CSeq, (int(number), method))
    return CSeq._parse_general(text)


# The methods of RFC 3261 and its extensions (each a token): a CSeq naming one needs no
# regular expression.
_METHODS = frozenset(
    [
        "ACK",
        "BYE",
        "CANCEL",
        "INFO",
        "INVITE",
        "MESSAGE",
        "NOTIFY",
        "OPTIONS",
        "PRACK",
        "PUBLISH",
        "REFER",
        "REGISTER",
        "SUBSCRIBE",
        "UPDATE",
    ]
)


@dataclass(slots=True)
class MediaType:
    """``Content-Type: application/sdp;charset=utf-8``."""

    type: str
    subtype: str
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> MediaType:
        main, semi, rest = text.partition(";")
        kind, slash, sub = main.strip(" \t").partition("/")
        kind, sub = kind.rstrip(" \t"), sub.lstrip(" \t")
        if not slash or not is_token(kind) or not is_token(sub):
            raise ParseError(f"bad media type {text[:80]!r}")
        params = parse_params(semi + rest, "Content-Type") if semi else {}
        return cls(kind.lower(), sub.lower(), params)

    @property
    def mime_type(self) -> str:
        return f"{self.type}/{self.subtype}"

    def __str__(self) -> str:
        return f"{self.mime_type}{render_params(self.params)}"


def parse_int(text: str, name: str, maximum: int = 2**32 - 1) -> int:
    text = text.strip(" \t")
    if not is_digits(text):
        raise ParseError(f"bad {name} value {text[:40]!r}")
    if len(text) > 20 or int(text) > maximum:
        raise ParseError(f"{name} value out of range: {text[:40]}")
    return int(text)
