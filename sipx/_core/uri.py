"""SIP, SIPS and tel URIs (RFC 3261 section 19.1, RFC 3966).

A :class:`URI` is immutable; :meth:`URI.replace` returns a changed copy. Equality follows the
comparison rules of RFC 3261 section 19.1.4 (not string equality).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from .._errors import ParseError

# Characters a user part may carry unescaped (RFC 3261 section 25.1: unreserved / user-unreserved).
_USER_SAFE = "-_.!~*'()&=+$,;?/"
_PASSWORD_SAFE = "-_.!~*'()&=+$,"
_PARAM_SAFE = "-_.!~*'()[]/:&+$"
_HEADER_SAFE = "-_.!~*'()[]/?:+$"

_HOST_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9.])?")
_IPV6_RE = re.compile(r"\[[0-9A-Fa-f:.]+\]")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~\[\]/:&$()]+")
_BAD_CHARS_RE = re.compile(r"[\x00-\x20<>\"\x7f]")
_ESCAPES_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# The common sip/sips URI: user without escapes or a password, a host name or IPv4 address,
# simple ";name[=value]" parameters, no headers. Everything else takes the general path.
_SIMPLE_SIP_RE = re.compile(
    r"(sips?):(?:([A-Za-z0-9\-_.!~*'()&=+$,]+)@)?([A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9.])?)"
    r"(?::([0-9]{1,5}))?((?:;[A-Za-z0-9\-_.!~*'+]+(?:=[A-Za-z0-9\-_.!~*'+]+)?)*)"
)

# RFC 3966: global numbers "+1-212-555-0101", local numbers "7042;phone-context=...", with
# visual separators.
_TEL_NUMBER_RE = re.compile(r"\+?[\-.()]*[0-9A-Fa-f*#][0-9A-Fa-f*#\-.()]*")

# uri-parameters that must match when present in only one of two URIs (RFC 3261 19.1.4: "a
# URI omitting any component with a default value will not match a URI explicitly
# containing that component": transport, user, ttl, method; and maddr).
_MUST_MATCH_PARAMS = ("transport", "user", "ttl", "method", "maddr")

# The slots a packed URI leaves unset until one is read (URI.pack): all but its text.
_PACKED = ("scheme", "user", "password", "host", "port", "params", "headers")


def _unescape(text: str) -> str:
    return unquote(text, errors="surrogateescape") if "%" in text else text


def escape_user(user: str) -> str:
    """``user`` as a SIP URI writes it: %-escaped but for what RFC 3261 25.1 lets a user
    part carry as it is."""
    if user.isalnum() and user.isascii():
        return user  # the usual user: nothing to escape
    return quote(user, safe=_USER_SAFE, errors="surrogateescape")


def _validate_escapes(text: str, where: str) -> None:
    if "%" in text and _ESCAPES_RE.search(text):
        raise ParseError(f"bad %-escape in URI {where}: {text[:80]!r}")


class URI:
    """A parsed ``sip:``, ``sips:`` or ``tel:`` URI (other schemes kept as opaque text).

    ``user`` and ``password`` are unescaped; ``host`` is kept as written (IPv6 references
    keep their brackets); ``params`` and ``headers`` keep their order. For a ``tel`` URI the
    number is in ``user`` and ``host`` is empty.
    """

    __slots__ = ("_text", "headers", "host", "params", "password", "port", "scheme", "user")

    scheme: str
    user: str | None
    password: str | None
    host: str
    port: int | None
    params: dict[str, str | None]
    headers: dict[str, str]

    def __init__(
        self,
        scheme: str = "sip",
        user: str | None = None,
        host: str = "",
        port: int | None = None,
        params: Mapping[str, str | None] | None = None,
        headers: Mapping[str, str] | None = None,
        password: str | None = None,
    ) -> None:
        self.scheme = scheme.lower()
        self.user = user
        self.password = password
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        self.host = host
        self.port = port
        self.params = dict(params or {})
        self.headers = dict(headers or {})
        self._text: str | None = None

    # -- parsing -------------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str) -> URI:
        """Parse a URI; raise :class:`~sipx.ParseError` saying what is wrong.

        A URI of another scheme is kept as opaque text: ``scheme`` and the rest in ``host``.
        """
        match = _SIMPLE_SIP_RE.fullmatch(text)
        if match is not None:
            scheme, user, host, port_text, params_text = match.groups()
            port = None
            if port_text is not None:
                port = int(port_text)
                if port > 65535:
                    raise ParseError(f"bad port {port_text} in URI {text[:80]!r}")
            params: dict[str, str | None] = {}
            if params_text:
                for item in params_text[1:].split(";"):
                    name, eq, value = item.partition("=")
                    params[name.lower()] = value if eq else None
            uri = cls.__new__(cls)
            uri.scheme, uri.user, uri.password, uri.host, uri.port = scheme, user, None, host, port
            uri.params, uri.headers, uri._text = params, {}, text
            return uri
        text = text.strip()
        scheme, colon, rest = text.partition(":")
        if not colon or not _SCHEME_RE.fullmatch(scheme):
            raise ParseError(f"URI has no scheme: {text[:80]!r}")
        lowered = scheme.lower()
        if lowered in ("sip", "sips"):
            uri = cls._parse_sip(lowered, rest, text)
        elif lowered == "tel":
            uri = cls._parse_tel(rest, text)
        else:
            if not rest or _BAD_CHARS_RE.search(rest):
                raise ParseError(f"bad {scheme} URI {text[:80]!r}")
            uri = cls.__new__(cls)
            uri.scheme, uri.user, uri.password, uri.host, uri.port = lowered, None, None, rest, None
            uri.params, uri.headers = {}, {}
        uri._text = text
        return uri

    @classmethod
    def _parse_sip(cls, scheme: str, rest: str, text: str) -> URI:
        if _BAD_CHARS_RE.search(rest):
            raise ParseError(f"URI contains a character that must be escaped: {text[:80]!r}")
        user: str | None = None
        password: str | None = None
        at = rest.rfind("@")
        if at != -1:
            userinfo, rest = rest[:at], rest[at + 1 :]
            _validate_escapes(userinfo, "user part")
            raw_user, sep, raw_password = userinfo.partition(":")
            if not raw_user:
                raise ParseError(f"URI has an empty user part: {text[:80]!r}")
            user = _unescape(raw_user)
            password = _unescape(raw_password) if sep else None
        headers: dict[str, str] = {}
        rest, question, raw_headers = rest.partition("?")
        if question:
            for item in raw_headers.split("&"):
                name, _, value = item.partition("=")
                if not name:
                    raise ParseError(f"URI has an empty header name: {text[:80]!r}")
                _validate_escapes(item, "header")
                headers[_unescape(name)] = _unescape(value)
        hostport, *raw_params = rest.split(";")
        params: dict[str, str | None] = {}
        for item in raw_params:
            name, eq, value = item.partition("=")
            if not name or not _TOKEN_RE.fullmatch(name) or (eq and not value):
                raise ParseError(f"bad URI parameter {item[:40]!r} in {text[:80]!r}")
            _validate_escapes(item, "parameter")
            params[_unescape(name).lower()] = _unescape(value) if eq else None
        host, port = _split_hostport(hostport, text)
        uri = cls.__new__(cls)
        uri.scheme, uri.user, uri.password, uri.host, uri.port = scheme, user, password, host, port
        uri.params, uri.headers = params, headers
        return uri

    @classmethod
    def _parse_tel(cls, rest: str, text: str) -> URI:
        number, *raw_params = rest.split(";")
        if not _TEL_NUMBER_RE.fullmatch(number):
            raise ParseError(f"bad tel URI number: {text[:80]!r}")
        params: dict[str, str | None] = {}
        for item in raw_params:
            name, eq, value = item.partition("=")
            if not name or not _TOKEN_RE.fullmatch(name) or (eq and not value):
                raise ParseError(f"bad tel URI parameter in {text[:80]!r}")
            if _BAD_CHARS_RE.search(item) or "?" in item:
                raise ParseError(f"bad tel URI parameter in {text[:80]!r}")
            _validate_escapes(item, "parameter")
            params[name.lower()] = _unescape(value) if eq else None
        uri = cls.__new__(cls)
        uri.scheme, uri.user, uri.password, uri.host, uri.port = "tel", number, None, "", None
        uri.params, uri.headers = params, {}
        return uri

    # -- packing (what an idle dialog keeps) ---------------------------------------------
    def pack(self) -> bool:
        """Keep only this URI's text until a field is read: the first read parses the text
        again into this same object (an idle call's remote target). False, and nothing
        done, if the text would not parse back to the very same fields."""
        if self.packed:
            return True
        if self._text is None or self.scheme not in ("sip", "sips"):
            return False
        try:
            again = URI.parse(self._text)
        except ParseError:
            return False
        if _fields(again) != _fields(self):
            return False
        for name in _PACKED:
            object.__delattr__(self, name)
        return True

    @property
    def packed(self) -> bool:
        """Only the text is kept (see :meth:`pack`); reading a field unpacks."""
        try:
            object.__getattribute__(self, "host")
        except AttributeError:
            return True
        return False

    if not TYPE_CHECKING:  # (mypy keeps checking attribute names)

        def __getattr__(self, name: str) -> Any:
            """A field of a packed URI: parse its text into this object, then read."""
            if name not in _PACKED:
                raise AttributeError(name)
            parsed = URI.parse(object.__getattribute__(self, "_text"))
            for slot in _PACKED:
                object.__setattr__(self, slot, object.__getattribute__(parsed, slot))
            # From the parse, not from self: another thread may pack it again meanwhile.
            return object.__getattribute__(parsed, name)

    # -- serialising ---------------------------------------------------------------------
    def __str__(self) -> str:
        if self._text is None:
            self._text = self._render()
        return self._text

    def _render(self) -> str:
        if self.scheme == "tel":
            out = f"tel:{self.user}"
        elif self.scheme not in ("sip", "sips"):
            return f"{self.scheme}:{self.host}"
        else:
            out = f"{self.scheme}:"
            if self.user is not None:
                out += escape_user(self.user)
                if self.password is not None:
                    out += ":" + quote(self.password, safe=_PASSWORD_SAFE, errors="surrogateescape")
                out += "@"
            out += self.host
            if self.port is not None:
                out += f":{self.port}"
        for name, value in self.params.items():
            name = quote(name, safe=_PARAM_SAFE)
            out += f";{name}" if value is None else f";{name}={quote(value, safe=_PARAM_SAFE)}"
        if self.headers:
            out += "?" + "&".join(
                f"{quote(k, safe=_HEADER_SAFE)}={quote(v, safe=_HEADER_SAFE)}"
                for k, v in self.headers.items()
            )
        return out

    def __repr__(self) -> str:
        return f"URI({str(self)!r})"

    # -- convenience ---------------------------------------------------------------------
    @property
    def host_plain(self) -> str:
        """The host without IPv6 brackets (what a resolver wants)."""
        return self.host[1:-1] if self.host.startswith("[") else self.host

    @property
    def transport(self) -> str | None:
        value = self.params.get("transport")
        return value.upper() if value else None

    @property
    def is_secure(self) -> bool:
        return self.scheme == "sips"

    def replace(self, **changes: Any) -> URI:
        """Return a copy with the given attributes changed (``user``, ``host``, ``params``...)."""
        fields: dict[str, Any] = {
            "scheme": self.scheme,
            "user": self.user,
            "password": self.password,
            "host": self.host,
            "port": self.port,
            "params": self.params,
            "headers": self.headers,
        }
        fields.update(changes)
        return URI(**fields)

    def without_params(self, *names: str) -> URI:
        return self.replace(params={k: v for k, v in self.params.items() if k not in names})

    # -- comparison (RFC 3261 section 19.1.4) --------------------------------------------
    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            try:
                other = URI.parse(other)
            except ParseError:
                return False
        if not isinstance(other, URI):
            return NotImplemented
        if self.scheme != other.scheme:
            return False
        if self.scheme == "tel":
            return _tel_digits(self.user) == _tel_digits(other.user) and _lower_params(
                self.params
            ) == _lower_params(other.params)
        if (self.user, self.password) != (other.user, other.password):
            return False
        if self.host.lower() != other.host.lower() or self.port != other.port:
            return False
        mine, theirs = _lower_params(self.params), _lower_params(other.params)
        for name in mine.keys() & theirs.keys():
            if mine[name] != theirs[name]:
                return False
        for name in _MUST_MATCH_PARAMS:
            if (name in mine) != (name in theirs):
                return False
        return {k.lower(): v for k, v in self.headers.items()} == {
            k.lower(): v for k, v in other.headers.items()
        }

    def __hash__(self) -> int:
        if self.scheme == "tel":
            return hash(("tel", _tel_digits(self.user)))
        return hash((self.scheme, self.user, self.host.lower(), self.port))


def _fields(uri: URI) -> tuple[object, ...]:
    """Every field of ``uri``, parameters and headers in their order."""
    return (
        uri.scheme,
        uri.user,
        uri.password,
        uri.host,
        uri.port,
        list(uri.params.items()),
        list(uri.headers.items()),
    )


def _lower_params(params: Mapping[str, str | None]) -> dict[str, str | None]:
    return {k.lower(): (v.lower() if v is not None else None) for k, v in params.items()}


def _tel_digits(number: str | None) -> str:
    return "".join(c for c in (number or "") if c not in "-.()").lower()


def _split_hostport(hostport: str, text: str) -> tuple[str, int | None]:
    if hostport.startswith("["):
        end = hostport.find("]")
        if end == -1:
            raise ParseError(f"unterminated IPv6 reference in URI {text[:80]!r}")
        host, rest = hostport[: end + 1], hostport[end + 1 :]
        if not _IPV6_RE.fullmatch(host):
            raise ParseError(f"bad IPv6 reference in URI {text[:80]!r}")
        if rest and not rest.startswith(":"):
            raise ParseError(f"junk after IPv6 reference in URI {text[:80]!r}")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_ = hostport.partition(":")
        port_text = port_text_ if colon else None
        if not _HOST_RE.fullmatch(host):
            raise ParseError(f"bad host {host[:60]!r} in URI {text[:80]!r}")
    if port_text is None:
        return host, None
    if (
        not port_text.isdigit()
        or not port_text.isascii()
        or len(port_text) > 5
        or int(port_text) > 65535
    ):
        raise ParseError(f"bad port {port_text[:20]!r} in URI {text[:80]!r}")
    return host, int(port_text)


def parse_uri(text: str) -> URI:
    """Parse a URI (shorthand for :meth:`URI.parse`)."""
    return URI.parse(text)
