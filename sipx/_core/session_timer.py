"""Session timers (RFC 4028): Session-Expires, Min-SE, who refreshes and when.

Sans-I/O: the two headers parsed and written; what a UAC asks for (7.1) and how it reads
the 2xx (7.2); the retry a 422 calls for (7.3); the choice a UAS makes in its 2xx or its
422 (9); and :class:`SessionTimer`, which says when the refresher's next refresh is due
(half the session interval) and when the session expires for want of one (10). Times are
the caller's ``now``: nothing here reads a clock.

Roles are those of one transaction, as in the RFC: ``refresher=uac`` names the side that
sent the request carrying it. A call keeps its own role as "we refresh" or "they do",
and writes it as ``uac`` or ``uas`` for each refresh, whichever side sends it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass

from .._errors import ParseError
from .header_types import parse_int, parse_params
from .headers import STALE
from .message import Request, Response

MIN_SE = 90  # RFC 4028 4: no session interval below 90 seconds
DEFAULT_SESSION_EXPIRES = 1800  # RFC 4028 4: the RECOMMENDED interval
OPTION_TAG = "timer"
UAC = "uac"
UAS = "uas"
REFRESH = "refresh"
EXPIRE = "expire"

Flow = Generator[Request, Response, None]


@dataclass(frozen=True)
class SessionExpires:
    """``Session-Expires: <delta>[;refresher=uac|uas]`` (RFC 4028 4)."""

    delta: int
    refresher: str | None = None

    @classmethod
    def parse(cls, text: str) -> SessionExpires:
        head, sep, rest = text.partition(";")
        delta = parse_int(head, "Session-Expires")
        if delta < 1:
            raise ParseError("Session-Expires must be at least 1 second")
        params = parse_params(sep + rest, "Session-Expires") if sep else {}
        refresher = params.get("refresher")
        if refresher is not None:
            refresher = refresher.lower()
            if refresher not in (UAC, UAS):
                raise ParseError(f"bad refresher {refresher[:20]!r} in Session-Expires")
        return cls(delta, refresher)

    def __str__(self) -> str:
        if self.refresher is None:
            return str(self.delta)
        return f"{self.delta};refresher={self.refresher}"


def parse_min_se(text: str) -> int:
    """The delta-seconds of ``Min-SE: <delta>[;params]`` (RFC 4028 5)."""
    head, sep, rest = text.partition(";")
    if sep:
        parse_params(sep + rest, "Min-SE")  # checked, not kept
    return parse_int(head, "Min-SE")


def session_expires_of(message: Request | Response) -> SessionExpires | None:
    """The message's Session-Expires, or None; ParseError when it is malformed."""
    value = message.headers.get_first("Session-Expires")
    return None if value is None else SessionExpires.parse(value)


def min_se_of(message: Request | Response) -> int | None:
    """The message's Min-SE, or None; ParseError when it is malformed."""
    value = message.headers.get_first("Min-SE")
    return None if value is None else parse_min_se(value)


def supports_timer(message: Request | Response) -> bool:
    """``timer`` is among the message's Supported (or Require) option tags."""
    headers = message.headers
    for name in ("Supported", "Require"):
        for tag in headers.get_list(name):
            if tag.strip().lower() == OPTION_TAG:
                return True
    return False


def with_option_tag(value: str | None, tag: str) -> str:
    """A Supported/Require value with ``tag`` added once."""
    tags = [item.strip() for item in (value or "").split(",") if item.strip()]
    if tag.lower() not in (item.lower() for item in tags):
        tags.append(tag)
    return ", ".join(tags)


def request_headers(interval: int, min_se: int, refresher: str | None = None) -> dict[str, str]:
    """What a UAC puts in an INVITE or UPDATE to ask for a session interval (RFC 4028 7.1,
    7.4): ``refresher`` is omitted in an initial request, as the RFC recommends."""
    return {
        "Supported": OPTION_TAG,
        "Session-Expires": str(SessionExpires(interval, refresher)),
        "Min-SE": str(min_se),
    }


# -- the UAC (RFC 4028 7) ------------------------------------------------------------------------
def negotiated(response: Response) -> SessionExpires | None:
    """The session interval and refresher a 2xx settles, seen by the UAC (7.2): None when
    the 2xx has no (readable) Session-Expires, which means no session expiration; a 2xx
    that names no refresher leaves the refreshes to the UAC."""
    try:
        found = session_expires_of(response)
    except ParseError:
        return None
    if found is None:
        return None
    return SessionExpires(found.delta, found.refresher or UAC)


def retry_after_422(request: Request, response: Response) -> Request | None:
    """The request again after ``422 Session Interval Too Small`` (7.3): a new transaction
    (no Via, CSeq + 1) with Session-Expires and Min-SE raised to the 422's Min-SE; None
    when the 422 gives nothing larger to ask for."""
    if response.status_code != 422:
        return None
    try:
        asked = session_expires_of(request)
        needed = min_se_of(response)
    except ParseError:
        return None
    if asked is None or needed is None or needed <= asked.delta:
        return None
    retry = Request(request.method, request.uri, request.headers.copy(), request.content)
    fields = retry.headers
    if "Via" in fields:
        del fields["Via"]
    fields["CSeq"] = f"{request.cseq.seq + 1} {request.method}"
    fields["Session-Expires"] = str(SessionExpires(needed, asked.refresher))
    fields["Min-SE"] = str(needed)
    return retry


def interval_retry_flow(
    request: Request, inner: Callable[[Request], Flow], attempts: int = 2
) -> Flow:
    """Run ``inner`` (the digest flow) for ``request``; after a final 422 that asks for a
    larger interval, run it again for the retry, ``attempts`` times at most."""
    for attempt in range(attempts + 1):
        response = yield from _last_response(inner(request))
        retry = retry_after_422(response.request or request, response)
        if retry is None or attempt == attempts:
            return
        request = retry


def _last_response(flow: Flow) -> Generator[Request, Response, Response]:
    request = next(flow)
    while True:
        response = yield request
        try:
            request = flow.send(response)
        except StopIteration:
            return response


# -- the UAS (RFC 4028 9) ------------------------------------------------------------------------
@dataclass(frozen=True)
class UASChoice:
    """What a UAS answers a request for a session: ``status`` 422 (``headers`` has Min-SE)
    or 200, whose ``headers`` carry ``session``, the interval and refresher now in force."""

    status: int
    headers: dict[str, str]
    session: SessionExpires | None = None


def choose_as_uas(
    request: Request, *, interval: int, min_se: int, keep: str | None = None
) -> UASChoice:
    """The UAS's answer to an INVITE or UPDATE (RFC 4028 9), wanting ``interval`` seconds
    and accepting no less than ``min_se``. ParseError for a malformed Session-Expires or
    Min-SE.

    * The request asks for less than ``min_se``: 422 with our Min-SE, if the UAC supports
      timers; else (a proxy asked for it) the interval is raised to ``min_se``.
    * The interval may be lowered to ``interval``, never below the request's Min-SE (90
      when absent), and never raised above what was asked.
    * The refresher: ``uas`` when the UAC does not support timers; the one the request
      names; else ``keep`` (in a session already running: whoever refreshes now); else
      ``uac``. ``Require: timer`` goes with ``refresher=uac``.
    """
    first = request.headers.first  # the first values, read once for the four
    if first is STALE:
        first = request.headers.first_values()
    if (
        first.get("session-expires") is None
        and first.get("min-se") is None
        and first.get("supported") is None
        and first.get("require") is None
    ):
        # A request silent about session timers (SIPp's, most load generators'): the
        # choice depends on ``interval`` alone, made once (``keep`` does not apply: such a
        # UAC does not support timers, we refresh).
        plain = _PLAIN_CHOICES.get(interval)
        if plain is None:
            if len(_PLAIN_CHOICES) >= 16:
                _PLAIN_CHOICES.clear()
            plain = _PLAIN_CHOICES[interval] = _choose(None, None, False, interval, min_se, keep)
        return plain
    return _choose(
        session_expires_of(request),
        min_se_of(request),
        supports_timer(request),
        interval,
        min_se,
        keep,
    )


_PLAIN_CHOICES: dict[int, UASChoice] = {}
"""By our interval, the choice for a request without Session-Expires, Min-SE, Supported and
Require (one object, shared: its ``headers`` are read, never changed)."""


def _choose(
    asked: SessionExpires | None,
    floor: int | None,
    timer: bool,
    interval: int,
    min_se: int,
    keep: str | None,
) -> UASChoice:
    """:func:`choose_as_uas` from what the request says."""
    if asked is not None and asked.delta < min_se:
        if timer:
            return UASChoice(422, {"Min-SE": str(min_se)})
        asked = SessionExpires(min_se, asked.refresher)
    least = MIN_SE if floor is None else floor  # we may lower what was asked, not below this
    delta = max(interval, floor or 0) if asked is None else min(asked.delta, max(interval, least))
    if not timer:
        refresher = UAS
    elif asked is not None and asked.refresher is not None:
        refresher = asked.refresher
    else:
        refresher = keep or UAC
    session = SessionExpires(delta, refresher)
    headers = {"Supported": OPTION_TAG, "Session-Expires": str(session)}
    if refresher == UAC:
        headers["Require"] = OPTION_TAG
    return UASChoice(200, headers, session)


# -- the timer (RFC 4028 10) -----------------------------------------------------------------------
@dataclass(slots=True)
class SessionTimer:
    """One session's deadlines: the refresher refreshes at half the interval; either side
    considers the session over at ``interval - min(32, interval / 3)`` after the last
    refresh (10: the non-refresher sends BYE then)."""

    interval: int
    we_refresh: bool
    refreshed_at: float
    retry_at: float | None = None  # a refresh failed or was put off: try again then
    refreshing: bool = False  # a refresh is on its way

    def refreshed(self, now: float, interval: int, we_refresh: bool) -> None:
        """A 2xx to a session refresh was sent or received (its values now rule)."""
        self.interval = interval
        self.we_refresh = we_refresh
        self.refreshed_at = now
        self.retry_at = None
        self.refreshing = False

    @property
    def expires_at(self) -> float:
        return self.refreshed_at + self.interval - min(32.0, self.interval / 3)

    @property
    def refresh_at(self) -> float | None:
        if not self.we_refresh or self.refreshing:
            return None
        if self.retry_at is not None:
            return self.retry_at
        return self.refreshed_at + self.interval / 2

    def next_deadline(self) -> float:
        refresh = self.refresh_at
        return self.expires_at if refresh is None else min(refresh, self.expires_at)

    def due(self, now: float) -> str | None:
        """:data:`EXPIRE`, :data:`REFRESH` or None, at ``now``."""
        if now >= self.expires_at:
            return EXPIRE
        refresh = self.refresh_at
        if refresh is not None and now >= refresh:
            return REFRESH
        return None

    def refresh_started(self) -> None:
        self.refreshing = True

    def refresh_failed(self, now: float) -> None:
        """A refresh did not succeed but the session may go on: try again halfway to the
        expiry (while more than a second is left)."""
        self.refreshing = False
        left = self.expires_at - now
        self.retry_at = now + left / 2 if left > 2 else self.expires_at


__all__ = [
    "DEFAULT_SESSION_EXPIRES",
    "EXPIRE",
    "MIN_SE",
    "OPTION_TAG",
    "REFRESH",
    "UAC",
    "UAS",
    "SessionExpires",
    "SessionTimer",
    "UASChoice",
    "choose_as_uas",
    "interval_retry_flow",
    "min_se_of",
    "negotiated",
    "parse_min_se",
    "request_headers",
    "retry_after_422",
    "session_expires_of",
    "supports_timer",
    "with_option_tag",
]
