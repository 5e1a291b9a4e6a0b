"""Subscriptions (RFC 6665) without I/O: the subscriber's and the notifier's state machines.

:class:`SubscriberState` follows one subscription as its subscriber sees it: ``init`` until
the first NOTIFY, then the state each NOTIFY's Subscription-State gives (``pending``,
``active``), until ``terminated`` (with the notifier's reason, or ``timeout`` when it
lapsed: no NOTIFY within Timer N = 64·T1 of the SUBSCRIBE (RFC 6665 4.1.2.4), or its expiry
passed without a successful refresh). Each 2xx to SUBSCRIBE and each NOTIFY carrying
``expires`` sets the expiry; the refresh is due at :func:`refresh_period` of it (the policy
of registrations). Every method takes ``now``; :meth:`SubscriberState.next_deadline` says
when to call :meth:`SubscriberState.poll` again.

:class:`NotifierState` is the notifier's side: the granted expiry, the state it reports in
each NOTIFY (``active;expires=<what is left>``, ``pending``, ``terminated;reason=...``).

The package table (:data:`PACKAGES`) gives the body type each known package uses (the
default ``Accept`` of a SUBSCRIBE); :func:`parse_event_body` reads a NOTIFY body of one of
them into :class:`~sipx._core.mwi.MessageSummary`, :class:`~sipx._core.pidf.Presence`,
:class:`~sipx._core.dialog_info.DialogInfo` or :class:`~sipx._core.sipfrag.SipFrag`,
reporting a malformed one as an error string instead of raising.
"""

from __future__ import annotations

import math
from typing import TypeAlias

from .._errors import ParseError
from .dialog_info import DIALOG_INFO_TYPE, DialogInfo
from .event import ACTIVE, PENDING, TERMINATED, EventHeader, SubscriptionState
from .header_types import MediaType
from .message import Request
from .mwi import MWI_TYPE, MessageSummary
from .pidf import PIDF_TYPE, Presence
from .sipfrag import SipFrag, parse_sipfrag

INIT = "init"
#: package -> the body type its NOTIFYs carry (RFC 3842, 3856, 4235, 3515)
PACKAGES: dict[str, str] = {
    "message-summary": MWI_TYPE,
    "presence": PIDF_TYPE,
    "dialog": DIALOG_INFO_TYPE,
    "refer": "message/sipfrag",
}
#: the termination reasons of RFC 6665 4.2.2
REASONS = frozenset(
    {"deactivated", "probation", "rejected", "timeout", "giveup", "noresource", "invariant"}
)
#: Timer N, in T1 (RFC 6665 4.1.2.4): how long to wait for the first NOTIFY
TIMER_N_T1 = 64
EventBody: TypeAlias = MessageSummary | Presence | DialogInfo | SipFrag


def refresh_period(granted: float) -> float:
    """When to refresh a subscription granted for ``granted`` seconds: half of it below
    64 s; above, 80 % of it but at least 32 s (a Timer F) before it runs out."""
    return granted / 2 if granted < 64 else min(granted * 0.8, granted - 32.0)


#: termination reasons after which RFC 6665 4.2.2 invites a new subscription at once, and
#: those after which it invites one later (after ``retry-after``, if given)
RESUBSCRIBE_AT_ONCE = frozenset({"deactivated", "timeout"})
RESUBSCRIBE_LATER = frozenset({"probation", "giveup"})
#: how long to wait after "probation"/"giveup" without a retry-after
DEFAULT_RETRY_AFTER = 30.0


def resubscribe_delay(reason: str | None, retry_after: int | None) -> float | None:
    """Seconds to wait before subscribing again after a subscription ended with ``reason``
    (RFC 6665 4.2.2); None when it should not be renewed (rejected, noresource,
    invariant, an unknown reason, or no final NOTIFY at all)."""
    if reason in RESUBSCRIBE_AT_ONCE:
        return float(retry_after or 0)
    if reason in RESUBSCRIBE_LATER:
        return float(retry_after) if retry_after is not None else DEFAULT_RETRY_AFTER
    return None


def default_accept(package: str) -> str | None:
    """The body type a known package's NOTIFYs carry (for a SUBSCRIBE's Accept)."""
    return PACKAGES.get(package.lower())


def event_of(request: Request) -> EventHeader:
    """The Event of a SUBSCRIBE or NOTIFY; ParseError when it is missing or malformed."""
    values = request.headers.get_all("Event")
    if len(values) != 1:
        raise ParseError("need exactly one Event header" if values else "no Event header")
    return EventHeader.parse(values[0])


def subscription_state_of(request: Request) -> SubscriptionState:
    """The Subscription-State of a NOTIFY; ParseError when missing or malformed."""
    values = request.headers.get_all("Subscription-State")
    if len(values) != 1:
        raise ParseError(
            "need exactly one Subscription-State" if values else "no Subscription-State header"
        )
    return SubscriptionState.parse(values[0])


def same_event(a: EventHeader, b: EventHeader) -> bool:
    """RFC 6665 8.2.1: the same package and the same ``id`` (or neither has one)."""
    return a.package == b.package and a.id == b.id


def grant_expires(requested: int | None, *, default: int, maximum: int) -> int:
    """The duration a notifier grants: what was asked (``default`` if nothing), at most
    ``maximum``."""
    return min(default if requested is None else requested, maximum)


def parse_event_body(
    package: str, content_type: str | None, content: bytes
) -> tuple[EventBody | None, str | None]:
    """``(parsed body, None)`` for a body of a known type, ``(None, error)`` for a
    malformed one, ``(None, None)`` for no body or a type sipx does not read. Without a
    Content-Type, the package's own type is assumed."""
    if not content.strip():
        return None, None
    kind = PACKAGES.get(package.lower())
    if content_type:
        try:
            media = MediaType.parse(content_type)
        except ParseError as exc:
            return None, str(exc)
        kind = f"{media.type}/{media.subtype}".lower()
    try:
        if kind == MWI_TYPE:
            return MessageSummary.parse(content), None
        if kind == PIDF_TYPE:
            return Presence.parse(content), None
        if kind == DIALOG_INFO_TYPE:
            return DialogInfo.parse(content), None
        if kind == "message/sipfrag":
            return parse_sipfrag(content), None
    except ParseError as exc:
        return None, str(exc)
    return None, None


class SubscriberState:
    """One subscription as its subscriber follows it (see the module docstring)."""

    def __init__(self, event: EventHeader, expires: int, now: float, *, timer_n: float) -> None:
        self.event = event
        self.requested = expires
        self.state = INIT
        self.reason: str | None = None
        self.retry_after: int | None = None
        self.expires_at: float | None = None
        self.refresh_at: float | None = None
        self.notified = False
        self.unsubscribing = False
        self.timer_n = timer_n
        self.timer_n_at = now + timer_n

    @property
    def terminated(self) -> bool:
        return self.state == TERMINATED

    def accepted(self, granted: int, now: float) -> None:
        """A 2xx to our SUBSCRIBE (initial or refresh) granted ``granted`` seconds.

        Zero (a fetch, or our unsubscribe): only the final NOTIFY is still to come, for
        at most Timer N."""
        if self.terminated:
            return
        self.refresh_at = None
        if granted <= 0:
            self.unsubscribing = True
            self.expires_at = now + self.timer_n
            return
        self.expires_at = now + granted
        if not self.unsubscribing:
            self.refresh_at = now + refresh_period(granted)

    def notify(self, header: SubscriptionState, now: float) -> None:
        """A NOTIFY with Subscription-State ``header`` arrived (and was accepted)."""
        if self.terminated:
            return
        self.notified = True
        if header.terminated:
            self.terminate(header.reason, header.retry_after)
            return
        self.state = header.state if header.state in (ACTIVE, PENDING) else ACTIVE
        if header.expires is not None:
            self.expires_at = now + header.expires
            if not self.unsubscribing:
                self.refresh_at = now + refresh_period(header.expires)

    def terminate(self, reason: str | None = None, retry_after: int | None = None) -> None:
        if self.terminated:
            return
        self.state = TERMINATED
        self.reason = reason
        self.retry_after = retry_after
        self.refresh_at = None

    def refresh_failed(self, now: float, delay: float) -> None:
        """A refresh failed (not with 481): try again after ``delay``, while it lasts."""
        if not self.terminated and not self.unsubscribing:
            self.refresh_at = now + delay

    def unsubscribe(self) -> None:
        """We are ending it (SUBSCRIBE with Expires: 0): no more refreshes."""
        self.unsubscribing = True
        self.refresh_at = None

    def next_deadline(self) -> float:
        """When :meth:`poll` has something to do (``math.inf``: nothing planned)."""
        if self.terminated:
            return math.inf
        deadlines = [self.refresh_at, self.expires_at]
        if not self.notified:
            deadlines.append(self.timer_n_at)
        return min((d for d in deadlines if d is not None), default=math.inf)

    def poll(self, now: float) -> str | None:
        """``"refresh"`` when a refresh is due (send it, then :meth:`accepted` or
        :meth:`refresh_failed`), ``"terminated"`` when it just lapsed, else None."""
        if self.terminated:
            return None
        if not self.notified and now >= self.timer_n_at:
            self.terminate("timeout")
            return TERMINATED
        if self.expires_at is not None and now >= self.expires_at:
            self.terminate("timeout")
            return TERMINATED
        if self.refresh_at is not None and now >= self.refresh_at:
            self.refresh_at = None
            return "refresh"
        return None


class NotifierState:
    """One subscription as its notifier keeps it: granted expiry and reported state."""

    def __init__(self, event: EventHeader, expires: int, now: float, *, state: str = ACTIVE):
        if state not in (ACTIVE, PENDING):
            raise ValueError(f"a subscription starts active or pending, not {state!r}")
        self.event = event
        self.state = state
        self.reason: str | None = None
        self.retry_after: int | None = None
        self.expires_at = now + expires

    @property
    def terminated(self) -> bool:
        return self.state == TERMINATED

    def refresh(self, expires: int, now: float) -> None:
        """A refreshing SUBSCRIBE granted ``expires`` more seconds (0: it ends, timeout)."""
        if expires <= 0:
            self.terminate("timeout")
        else:
            self.expires_at = now + expires

    def remaining(self, now: float) -> int:
        return max(0, math.ceil(self.expires_at - now - 1e-9))

    def header(self, now: float) -> SubscriptionState:
        """The Subscription-State of the next NOTIFY."""
        if self.terminated:
            return SubscriptionState(TERMINATED, reason=self.reason, retry_after=self.retry_after)
        return SubscriptionState(self.state, expires=self.remaining(now))

    def set_state(self, state: str) -> None:
        if state not in (ACTIVE, PENDING):
            raise ValueError(f"a subscription is active or pending, not {state!r}")
        if not self.terminated:
            self.state = state

    def terminate(self, reason: str | None = "noresource", retry_after: int | None = None) -> None:
        if self.terminated:
            return
        if reason is not None and reason not in REASONS:
            raise ValueError(f"reason is one of {sorted(REASONS)} or None, not {reason!r}")
        self.state = TERMINATED
        self.reason = reason
        self.retry_after = retry_after

    def expired(self, now: float) -> bool:
        return not self.terminated and now >= self.expires_at


__all__ = [
    "INIT",
    "PACKAGES",
    "REASONS",
    "TIMER_N_T1",
    "EventBody",
    "NotifierState",
    "SubscriberState",
    "default_accept",
    "event_of",
    "grant_expires",
    "parse_event_body",
    "refresh_period",
    "same_event",
    "subscription_state_of",
]
