"""Event state publication (RFC 3903) without I/O: the publisher's (EPA's) rules.

A publication is a piece of event state (a presence document, voicemail counts...) that
the publisher keeps at an event state compositor (ESC) with PUBLISH requests:

* the initial PUBLISH carries the state and no ``SIP-If-Match``; its 2xx gives the
  entity-tag (``SIP-ETag``) that names the state from then on, and the granted ``Expires``;
* a refresh carries ``SIP-If-Match: <etag>`` and no body; a modification the same with the
  new state; a removal ``Expires: 0`` and no body (RFC 3903 4.1-4.5);
* each 2xx gives a new entity-tag; a ``412 Conditional Request Failed`` says the ESC no
  longer knows the entity-tag: the state is published again from scratch; a ``423``
  names the shortest expiry the ESC takes (``Min-Expires``).

:class:`PublicationState` follows one publication: its entity-tag, the expiry asked for,
and when the granted one runs out; refreshes fall due at
:func:`~sipx._core.subscription.refresh_period` of it (the policy of registrations and
subscriptions).
"""

from __future__ import annotations

import math

from .._errors import ParseError
from .message import Response
from .subscription import refresh_period

#: a PUBLISH's final responses that end a publication instead of being retried later
#: (the ESC will not take it: another try would get the same answer)
FATAL_STATUSES = frozenset({400, 403, 404, 405, 410, 414, 416, 420, 480, 484, 488, 489, 501, 604})


def publish_fields(event: str, expires: int, etag: str | None) -> dict[str, str]:
    """Event, Expires and (for a refresh, modification or removal) SIP-If-Match."""
    fields = {"Event": event, "Expires": str(expires)}
    if etag is not None:
        fields["SIP-If-Match"] = etag
    return fields


def entity_tag(response: Response) -> str | None:
    """The ``SIP-ETag`` of a 2xx to PUBLISH (None when missing or blank)."""
    value = response.headers.get_first("SIP-ETag")
    value = value.strip() if value is not None else ""
    return value or None


def granted_expiry(response: Response, requested: int) -> int:
    """The expiry a 2xx to PUBLISH granted: its Expires (which may lower what was asked),
    else what was asked."""
    try:
        granted = response.expires
    except ParseError:
        granted = None
    return requested if granted is None else min(granted, requested)


def min_expires(response: Response) -> int | None:
    """The ``Min-Expires`` of a 423 (Interval Too Brief); None for other responses."""
    if response.status_code != 423:
        return None
    value = (response.headers.get_first("Min-Expires") or "").strip()
    return int(value) if value.isdigit() and len(value) <= 10 else None


class PublicationState:
    """One publication as its publisher sees it; every method takes ``now``."""

    __slots__ = ("etag", "expires_at", "refresh_at", "requested")

    def __init__(self, requested: int) -> None:
        self.requested = requested  # the expiry each PUBLISH asks for
        self.etag: str | None = None  # None: not (or no longer) published
        self.expires_at = -math.inf
        self.refresh_at = math.inf

    def published(self, etag: str, granted: int, now: float) -> None:
        """A 2xx gave ``etag`` for ``granted`` seconds."""
        self.etag = etag
        self.expires_at = now + granted
        self.refresh_at = now + refresh_period(granted)

    def refresh_failed(self, now: float, retry_in: float) -> None:
        """A refresh failed for now: try again in ``retry_in`` seconds, if that is before
        the expiry (else at the expiry, where :meth:`lapsed` ends it)."""
        self.refresh_at = min(now + retry_in, self.expires_at)

    def lapsed(self, now: float) -> bool:
        """Has the granted expiry passed (the ESC dropped the state)?"""
        return self.etag is not None and now >= self.expires_at

    def withdraw(self) -> None:
        """The state is gone (removed, lapsed or refused): nothing left to refresh."""
        self.etag = None
        self.expires_at = -math.inf
        self.refresh_at = math.inf

    def seconds_left(self, now: float) -> int | None:
        """Whole seconds until the expiry; None when nothing is published."""
        if self.etag is None:
            return None
        return max(0, int(self.expires_at - now))
