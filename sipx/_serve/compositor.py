"""The presence state ``sipx serve`` keeps from PUBLISH (RFC 3903), sans-I/O.

:class:`PresenceCompositor` is the event state compositor of the ``presence`` package for
the server's users: each PUBLISH to ``sip:USER@server`` (from USER, authenticated by the
proxy) creates, refreshes, modifies or removes one publication of USER's PIDF document
(RFC 3903 6):

* without ``SIP-If-Match``: a new publication; it needs a PIDF body (400 without one, 415
  for another type, 400 for a document that does not parse);
* with ``SIP-If-Match``: the publication of that entity-tag (412 when there is none): no
  body refreshes it, a body replaces its document, ``Expires: 0`` removes it;
* each 2xx carries a new ``SIP-ETag`` and the granted ``Expires`` (what was asked, at most
  ``max_expires``; 3600 when not asked); at most :data:`MAX_PER_USER` publications are
  kept per user.

The state of a user is the document of the publication made or changed last, while any is
unexpired; the notifier shows it to the user's presence watchers instead of the
registration-based one.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from .._core.message import Request
from .._core.pidf import PIDF_TYPE, Presence
from .._errors import ParseError

#: the package the compositor takes publications of
PACKAGE = "presence"
#: publications kept per user (a new one beyond drops the one made or refreshed longest ago)
MAX_PER_USER = 16


@dataclass(eq=False)
class Publication:
    """One publication held for a user."""

    document: bytes
    expires_at: float
    changed: int  # order of the last creation or modification (the latest one wins)


@dataclass(frozen=True)
class Answer:
    """What to answer a PUBLISH: status code, reason (None: the default) and headers."""

    status: int
    headers: dict[str, str]
    reason: str | None = None


class PresenceCompositor:
    """The presence publications of the server's users (see the module docstring)."""

    def __init__(self, *, max_expires: int = 3600, prefix: str = "sx") -> None:
        self.max_expires = max_expires
        self._prefix = prefix  # entity-tags are "<prefix>.<counter>", unique per server run
        self._tags = itertools.count(1)
        self._changes = itertools.count(1)
        self._held: dict[str, dict[str, Publication]] = {}  # user -> etag -> publication

    def publish(self, user: str, request: Request, now: float) -> Answer:
        """Apply a PUBLISH for ``user`` (its Event already known to be presence)."""
        self.expire(now)
        asked = request.expires
        expires = 3600 if asked is None else min(asked, self.max_expires)
        held = self._held.setdefault(user, {})
        match = request.headers.get_first("SIP-If-Match")
        match = match.strip() if match is not None else None
        body = request.content
        found = held.get(match) if match is not None else None
        if match is not None and found is None:
            return Answer(412, {})
        if found is not None and expires == 0:
            held.pop(match or "", None)
            return Answer(200, {"Expires": "0"})
        if found is None and expires == 0:
            return Answer(400, {}, "Nothing to remove without SIP-If-Match")
        if found is None and not body:
            return Answer(400, {}, "An initial PUBLISH carries the state")
        if body:
            content_type = request.headers.get_first("Content-Type") or ""
            if content_type.split(";")[0].strip().lower() != PIDF_TYPE:
                return Answer(415, {"Accept": PIDF_TYPE})
            try:
                Presence.parse(body)
            except (ParseError, ValueError) as exc:
                return Answer(400, {}, f"Bad PIDF document: {exc}"[:80])
            document, changed = bytes(body), next(self._changes)
        else:
            assert found is not None
            document, changed = found.document, found.changed
        if match is not None:
            del held[match]
        etag = f"{self._prefix}.{next(self._tags)}"
        held[etag] = Publication(document, now + expires, changed)
        while len(held) > MAX_PER_USER:
            del held[next(iter(held))]
        return Answer(200, {"SIP-ETag": etag, "Expires": str(expires)})

    def document(self, user: str, now: float) -> bytes | None:
        """The user's published presence document (None when nothing unexpired is held)."""
        held = self._held.get(user)
        if not held:
            return None
        live = [p for p in held.values() if p.expires_at > now]
        if not live:
            return None
        return max(live, key=lambda p: p.changed).document

    def next_expiry(self, user: str) -> float:
        """When the next of the user's publications runs out (inf when none)."""
        held = self._held.get(user)
        return min((p.expires_at for p in held.values()), default=math.inf) if held else math.inf

    def expire(self, now: float) -> None:
        """Forget the publications whose expiry has passed."""
        for user, held in list(self._held.items()):
            for etag in [t for t, p in held.items() if p.expires_at <= now]:
                del held[etag]
            if not held:
                del self._held[user]


__all__ = ["PACKAGE", "Answer", "PresenceCompositor", "Publication"]
