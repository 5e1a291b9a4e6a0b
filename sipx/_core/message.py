"""SIP requests and responses (RFC 3261 section 7) and their serialisation.

Header values are parsed on first access through the typed properties (``via``, ``cseq``,
``from_``...) and cached until the header changes. ``to_bytes()`` writes headers in the
conventional order and always a correct Content-Length.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .._errors import ParseError
from .digest import Challenge, parse_challenge, parse_credentials
from .header_types import (
    CSeq,
    MediaType,
    NameAddr,
    Via,
    parse_cseq,
    parse_int,
    parse_name_addr,
    parse_via,
)
from .headers import Headers, split_list
from .uri import URI

if TYPE_CHECKING:
    from .sdp import SDPBody

SIP_VERSION = "SIP/2.0"

# Conventional header order; unnamed headers keep their relative order between Contact and
# Content-Type, and Content-Length always comes last.
_RANK = {
    "via": 0,
    "max-forwards": 1,
    "route": 2,
    "record-route": 3,
    "from": 4,
    "to": 5,
    "call-id": 6,
    "cseq": 7,
    "contact": 8,
    "content-type": 98,
}
_MIDDLE = 50

REASON_PHRASES = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    423: "Interval Too Brief",
    469: "Bad Info Package",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}


_SINGLE_VALUED = ("From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Length", "Content-Type")
_ONCE = (("from", "From"), ("to", "To"), ("call-id", "Call-ID"), ("cseq", "CSeq"))
_ONCE_KEYS = tuple(key for key, _ in _ONCE)
_ONCE_NAMES = dict(_ONCE)
_NO_MAX_FORWARDS = "request has no Max-Forwards header"
_WARNING_RE = re.compile(r"[0-9]{3}[ \t]")
_SDP_TYPE_RE = re.compile(r"application[ \t]*/[ \t]*sdp[ \t]*(?:;|$)", re.I)
_DATE_RE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d{2}:\d{2}:\d{2} GMT"
)


def _rank(field: tuple[str, str, str]) -> int:
    return _RANK.get(field[0], _MIDDLE)


def header_rank(key: str) -> int:
    """Where ``to_bytes()`` writes a header of lookup key ``key`` (lower ranks first)."""
    return _RANK.get(key, _MIDDLE)


def in_conventional_order(fields: Iterable[tuple[str, str, str]], after: int = 0) -> bool:
    """True when ``fields`` (``(key, name, value)``) are in the order ``to_bytes()`` writes
    headers, each ranked at least ``after``."""
    rank = _RANK.get
    last = after
    for field in fields:
        here = rank(field[0], _MIDDLE)
        if here < last:
            return False
        last = here
    return True


def _same_headers(mine: Headers, theirs: Headers) -> bool:
    """Headers equality for messages: Content-Length is left out (``to_bytes`` derives it
    from the content), the rest as :meth:`Headers.__eq__` (order only within a name)."""
    keys = mine.lookup().keys() - {"content-length"}
    if keys != theirs.lookup().keys() - {"content-length"}:
        return False
    return all(mine.get_list(key) == theirs.get_list(key) for key in keys)


class Message:
    """What requests and responses share: headers, content and the typed header views."""

    __slots__ = ("_defects", "content", "headers", "version")

    headers: Headers
    content: bytes
    version: str

    def __init__(
        self,
        headers: Headers | dict[str, str] | list[tuple[str, str]] | None = None,
        content: bytes | str | None = None,
    ) -> None:
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        if content is None:
            content = b""
        self.content = content.encode() if isinstance(content, str) else bytes(content)
        self._defects: list[str] | None = None

    @property
    def defects(self) -> list[str]:
        """What a tolerant reader lived with (an unsupported SIP version, no Max-Forwards
        in a request...); the list is made on first use (most messages have none)."""
        defects = self._defects
        if defects is None:
            defects = self._defects = []
        return defects

    # -- serialising ---------------------------------------------------------------------
    def _start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Serialise: conventional header order, Content-Length always right."""
        headers = self.headers
        fields = headers.entries
        if not headers.in_order and not in_conventional_order(fields):
            fields = sorted(fields, key=_rank)
        lines = [self._start_line()]
        for _, name, value in fields:
            if name != "Content-Length":
                lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(self.content)}\r\n\r\n")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.content

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    def __str__(self) -> str:
        return self.to_bytes().decode("utf-8", "replace")

    # -- typed header views ----------------------------------------------------------------
    # Each view is parsed on first access and cached in ``headers`` (which forgets it when
    # the header changes). The cache is read inline: these are the hottest reads in sipx.
    def _typed(self, slot: str, build: Any) -> Any:
        value = self.headers.typed.get(slot)
        if value is None:
            value = build()
            self.headers.typed[slot] = value
        return value

    @property
    def via(self) -> list[Via]:
        """Every Via entry, top first."""
        typed = self.headers.typed
        vias: list[Via] | None = typed.get("via")
        if vias is None:
            vias = typed["via"] = [Via.parse(v) for v in self.headers.get_list("Via")]
        return vias

    @property
    def top_via(self) -> Via:
        """The first Via entry (parsing only that one); ParseError when there is none."""
        typed = self.headers.typed
        top: Via | None = typed.get("top_via")
        if top is None:
            text = self.headers.first.get("via")
            if text is not None and "," not in text and "via" not in typed:
                top = typed["top_via"] = parse_via(text)  # the usual case, inline
            else:
                top = self._top_via()
        return top

    def _top_via(self) -> Via:
        typed = self.headers.typed
        vias: list[Via] | None = typed.get("via")
        if vias is not None:
            if not vias:
                raise ParseError("message has no Via header")
            top = vias[0]
        else:
            text = self.headers.first_of_key("via")
            if text is None:
                raise ParseError("message has no Via header")
            if "," in text:
                items = split_list(text)
                if not items:
                    raise ParseError("message has an empty Via header")
                text = items[0]
            top = Via.parse(text)
        typed["top_via"] = top
        return top

    @property
    def from_(self) -> NameAddr:
        typed = self.headers.typed
        value: NameAddr | None = typed.get("from")
        if value is None:
            text = self.headers.first.get("from")
            value = typed["from"] = parse_name_addr(
                self._required("from", "From") if text is None else text
            )
        return value

    @property
    def to(self) -> NameAddr:
        typed = self.headers.typed
        value: NameAddr | None = typed.get("to")
        if value is None:
            text = self.headers.first.get("to")
            value = typed["to"] = parse_name_addr(
                self._required("to", "To") if text is None else text
            )
        return value

    @property
    def call_id(self) -> str:
        value = self.headers.first.get("call-id")
        if value is None:
            value = self._required("call-id", "Call-ID")
        if not value or " " in value or "\t" in value:
            raise ParseError(f"bad Call-ID {value[:80]!r}")
        return value

    @property
    def cseq(self) -> CSeq:
        typed = self.headers.typed
        value: CSeq | None = typed.get("cseq")
        if value is None:
            text = self.headers.first.get("cseq")
            value = typed["cseq"] = parse_cseq(
                self._required("cseq", "CSeq") if text is None else text
            )
        return value

    @property
    def contact(self) -> list[NameAddr]:
        return self._name_addrs("Contact", "contact")

    @property
    def route(self) -> list[NameAddr]:
        return self._name_addrs("Route", "route")

    @property
    def record_route(self) -> list[NameAddr]:
        return self._name_addrs("Record-Route", "record-route")

    @property
    def max_forwards(self) -> int | None:
        value = self.headers.get_first("Max-Forwards")
        return None if value is None else parse_int(value, "Max-Forwards", 255)

    @property
    def expires(self) -> int | None:
        value = self.headers.get_first("Expires")
        return None if value is None else parse_int(value, "Expires")

    @property
    def content_type(self) -> MediaType | None:
        typed = self.headers.typed
        value: MediaType | None = typed.get("content-type")
        if value is None:
            text = self.headers.get_first("Content-Type")
            if text is None:
                return None
            value = typed["content-type"] = MediaType.parse(text)
        return value

    @property
    def content_length(self) -> int | None:
        """The Content-Length header as received (``to_bytes()`` always writes the true one)."""
        value = self.headers.get_first("Content-Length")
        return None if value is None else parse_int(value, "Content-Length")

    @property
    def allow(self) -> list[str]:
        """The methods of Allow, upper-case, in order."""
        return [method.upper() for method in self.headers.get_list("Allow")]

    @property
    def supported(self) -> list[str]:
        """The option tags of Supported (``k``)."""
        return self.headers.get_list("Supported")

    @property
    def www_authenticate(self) -> list[Challenge]:
        """Every WWW-Authenticate challenge, parsed (ParseError for a malformed one)."""
        return self._challenges("WWW-Authenticate")

    @property
    def proxy_authenticate(self) -> list[Challenge]:
        """Every Proxy-Authenticate challenge, parsed."""
        return self._challenges("Proxy-Authenticate")

    @property
    def authorization(self) -> list[dict[str, str]]:
        """The parameters of every Authorization header (lower-case names)."""
        return [parse_credentials(value) for value in self.headers.get_list("Authorization")]

    @property
    def proxy_authorization(self) -> list[dict[str, str]]:
        """The parameters of every Proxy-Authorization header."""
        return [parse_credentials(value) for value in self.headers.get_list("Proxy-Authorization")]

    def _challenges(self, name: str) -> list[Challenge]:
        return [parse_challenge(value, name) for value in self.headers.get_list(name)]

    def _name_addrs(self, name: str, slot: str) -> list[NameAddr]:
        typed = self.headers.typed
        value: list[NameAddr] | None = typed.get(slot)
        if value is None:
            value = typed[slot] = [NameAddr.parse(v) for v in self.headers.get_list(name)]
        return value

    def _required(self, key: str, name: str) -> str:
        headers = self.headers
        value = headers.first_values().get(key)
        if value is None:
            raise ParseError(f"message has no {name} header")
        return value

    # -- body ----------------------------------------------------------------------------
    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    @property
    def body(self) -> SDPBody | str | None:
        """An SDPBody for ``application/sdp``, the text otherwise, None when empty."""
        if not self.content:
            return None
        cached = self.headers.cached("body")
        if cached is not None and cached[0] is self.content:
            return cached[1]  # type: ignore[no-any-return]
        content_type = self.headers.get_first("Content-Type")
        value: SDPBody | str
        if content_type is not None and _SDP_TYPE_RE.match(content_type):
            from .sdp import SDPBody

            try:
                value = SDPBody.parse(self.content)
            except ParseError:
                raise
            except (ValueError, IndexError, KeyError) as exc:  # a slip in the SDP parser
                raise ParseError(f"bad SDP body: {exc}") from exc
        else:
            value = self.text
        self.headers.cache("body", (self.content, value))
        return value

    # -- checks ----------------------------------------------------------------------------
    def validate(self) -> None:
        """Parse every header sipx understands and check the mandatory ones (RFC 3261 8.1.1).

        Raises :class:`~sipx.ParseError` naming the first problem. Problems a tolerant
        reader can live with (a request without Max-Forwards, RFC 2543 style) are added to
        ``defects`` instead. Calling it again gives the same result.
        """
        if self.version != SIP_VERSION:
            raise ParseError(f"unsupported SIP version {self.version[:20]}")
        for name in _SINGLE_VALUED:
            values = self.headers.get_list(name)
            if len(values) > 1:
                raise ParseError(f"{name} appears {len(values)} times; it takes one value")
        if not self.via:
            raise ParseError("message has no Via header")
        for name_addr in (self.from_, self.to, *self.contact, *self.route, *self.record_route):
            if not name_addr.is_wildcard:
                name_addr.uri  # noqa: B018 - parsing is the check
            expires = name_addr.params.get("expires")
            if expires is not None:
                parse_int(expires, "Contact expires parameter")
        self.call_id  # noqa: B018
        self.cseq  # noqa: B018
        self.max_forwards  # noqa: B018
        self.expires  # noqa: B018
        self.content_type  # noqa: B018
        length = self.headers.get_first("Content-Length")
        if length is not None:
            parse_int(length, "Content-Length")
        date = self.headers.get_first("Date")
        if date is not None and not _DATE_RE.fullmatch(date):
            raise ParseError(f"bad Date {date[:60]!r}: expected an RFC 1123 date in GMT")
        for warning in self.headers.get_list("Warning"):
            if not _WARNING_RE.match(warning):
                raise ParseError(f"bad Warning {warning[:60]!r}: expected a 3-digit code")


class Request(Message):
    """A SIP request. ``uri`` is a :class:`URI` (parsed on first access)."""

    __slots__ = ("_uri", "_uri_text", "method")

    def __init__(
        self,
        method: str,
        uri: URI | str,
        headers: Headers | dict[str, str] | list[tuple[str, str]] | None = None,
        content: bytes | str | None = None,
        *,
        version: str = SIP_VERSION,
    ) -> None:
        super().__init__(headers, content)
        self.method = method
        self.version = version
        self._uri: URI | None = uri if isinstance(uri, URI) else None
        self._uri_text = str(uri)

    @property
    def uri(self) -> URI:
        if self._uri is None:
            self._uri = URI.parse(self._uri_text)
        return self._uri

    @uri.setter
    def uri(self, value: URI | str) -> None:
        self._uri = value if isinstance(value, URI) else None
        self._uri_text = str(value)

    @classmethod
    def from_wire(cls, method: str, uri_text: str, version: str, headers: Headers) -> Request:
        """A request as the parser builds it (skips the checks and copies of ``__init__``)."""
        return request_from_wire(method, uri_text, version, headers, b"")

    def _start_line(self) -> str:
        return f"{self.method} {self._uri_text if self._uri is None else self._uri} {self.version}"

    def check_essentials(self) -> None:
        """The checks every request passes before a UAS acts on it, cheaper than
        :meth:`validate`: SIP/2.0, one From, To, Call-ID and CSeq each, the CSeq method
        matching, no headers in the Request-URI, then To, From and Call-ID readable (their
        views parsed now, as a UAS reads them next). Raises :class:`~sipx.ParseError`."""
        if self.version != SIP_VERSION:
            raise ParseError(f"unsupported SIP version {self.version[:20]}")
        headers = self.headers
        repeated = headers.repeated(_ONCE_KEYS)
        if repeated is not None:
            count = len(headers.lookup()[repeated])
            name = _ONCE_NAMES[repeated]
            raise ParseError(f"{name} appears {count} times; it takes one value")
        # The views are parsed as their properties parse them, without the property calls.
        typed = headers.typed
        first = headers.first
        cseq: CSeq | None = typed.get("cseq")
        if cseq is None:
            text = first.get("cseq")
            cseq = typed["cseq"] = parse_cseq(
                self._required("cseq", "CSeq") if text is None else text
            )
        if cseq.method != self.method:
            raise ParseError(f"CSeq method {cseq.method} does not match {self.method}")
        if "?" in (self._uri_text if self._uri is None else str(self._uri)) and self.uri.headers:
            raise ParseError("a Request-URI must not carry headers (RFC 3261 19.1.1)")
        if "to" not in typed:
            text = first.get("to")
            typed["to"] = parse_name_addr(self._required("to", "To") if text is None else text)
        if "from" not in typed:
            text = first.get("from")
            typed["from"] = parse_name_addr(
                self._required("from", "From") if text is None else text
            )
        # self.call_id, inline: checked (not cached: a str)
        value = first.get("call-id")
        if value is None:
            value = self._required("call-id", "Call-ID")
        if not value or " " in value or "\t" in value:
            raise ParseError(f"bad Call-ID {value[:80]!r}")

    def validate(self) -> None:
        if self.uri.headers:
            raise ParseError("a Request-URI must not carry headers (RFC 3261 19.1.1)")
        super().validate()
        if self.cseq.method != self.method:
            raise ParseError(f"CSeq method {self.cseq.method} does not match {self.method}")
        if self.max_forwards is None and _NO_MAX_FORWARDS not in self.defects:
            self.defects.append(_NO_MAX_FORWARDS)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Request):
            return NotImplemented
        return (
            self.method == other.method
            and self.version == other.version
            and self.uri == other.uri
            and _same_headers(self.headers, other.headers)
            and self.content == other.content
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Request {self.method} {self._uri_text}>"


class Response(Message):
    """A SIP response; ``request`` is the request it answers when sipx sent it.

    ``source`` is the ``(host, port)`` it came from when a client received it (else None);
    ``challenge_unanswered`` says why a 401/407 that came back to you was not answered
    with the client's credentials (else None).
    """

    __slots__ = (
        "challenge_unanswered",
        "history",
        "reason_phrase",
        "request",
        "source",
        "status_code",
    )

    def __init__(
        self,
        status_code: int,
        reason_phrase: str | None = None,
        headers: Headers | dict[str, str] | list[tuple[str, str]] | None = None,
        content: bytes | str | None = None,
        *,
        version: str = SIP_VERSION,
    ) -> None:
        super().__init__(headers, content)
        self.status_code = status_code
        self.reason_phrase = (
            REASON_PHRASES.get(status_code, "") if reason_phrase is None else reason_phrase
        )
        self.version = version
        self.request: Request | None = None
        self.history: list[Response] = []
        self.source: tuple[str, int] | None = None
        self.challenge_unanswered: str | None = None

    @property
    def is_provisional(self) -> bool:
        return self.status_code < 200

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @classmethod
    def from_wire(
        cls, status_code: int, reason_phrase: str, version: str, headers: Headers
    ) -> Response:
        """A response as the parser builds it (skips the checks and copies of ``__init__``)."""
        response = cls.__new__(cls)
        response.status_code = status_code
        response.reason_phrase = reason_phrase
        response.version = version
        response.headers = headers
        response.content = b""
        response._defects = None
        response.request = None
        response.history = []
        response.source = None
        response.challenge_unanswered = None
        return response

    def _start_line(self) -> str:
        return f"{self.version} {self.status_code} {self.reason_phrase}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Response):
            return NotImplemented
        return (
            self.status_code == other.status_code
            and self.version == other.version
            and self.reason_phrase == other.reason_phrase
            and _same_headers(self.headers, other.headers)
            and self.content == other.content
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Response {self.status_code} {self.reason_phrase}>"


_new_object = object.__new__


def request_from_wire(
    method: str, uri_text: str, version: str, headers: Headers, content: bytes
) -> Request:
    """:meth:`Request.from_wire` with its content, as a plain function (the parser's hot
    path: no bound classmethod to make, one store fewer)."""
    request = _new_object(Request)
    request.method = method
    request._uri = None
    request._uri_text = uri_text
    request.version = version
    request.headers = headers
    request.content = content
    request._defects = None
    return request


def request_of(method: str, uri: URI, uri_text: str, headers: Headers) -> Request:
    """A request without content from parts made and checked already: ``uri`` (the
    Request-URI, shared: a :class:`URI` is immutable) written as ``uri_text`` (its text,
    ``str(uri)``) and ``headers`` (what :class:`RequestTemplate` makes for each request:
    no ``__init__`` with its type tests, content copy and URI rendering)."""
    request = _new_object(Request)  # request_from_wire()'s work, inline (no call)
    request.method = method
    request._uri = uri
    request._uri_text = uri_text
    request.version = SIP_VERSION
    request.headers = headers
    request.content = b""
    request._defects = None
    return request
