"""Publications for users of the blocking :class:`~sipx.Client` (RFC 3903).

A :class:`~sipx.Publication` lives on the client's portal thread (its refreshes run
there), so :class:`BlockingPublication` crosses into that thread for each PUBLISH and for
the attributes that read the clock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._core.message import Response
from ._publication import Publication

if TYPE_CHECKING:
    from ._auth import Auth
    from ._portal import Portal


class BlockingPublication:
    """A :class:`~sipx.Publication` without ``await`` (made by ``Client.publish()``)."""

    __slots__ = ("_portal", "_publication")

    def __init__(self, publication: Publication, portal: Portal) -> None:
        self._publication = publication
        self._portal = portal

    @property
    def publication(self) -> Publication:
        """The Publication this wraps (it lives on the portal thread)."""
        return self._publication

    @property
    def uri(self) -> str:
        return self._publication.uri

    @property
    def event(self) -> str:
        return self._publication.event

    @property
    def etag(self) -> str | None:
        return self._publication.etag

    @property
    def response(self) -> Response | None:
        return self._publication.response

    @property
    def content(self) -> bytes:
        return self._publication.content

    @property
    def content_type(self) -> str | None:
        return self._publication.content_type

    @property
    def removed(self) -> bool:
        return self._publication.removed

    @property
    def requested(self) -> int:
        return self._publication.requested

    @property
    def headers(self) -> dict[str, str]:
        return self._publication.headers

    @property
    def from_uri(self) -> str | None:
        return self._publication.from_uri

    @property
    def host(self) -> str | None:
        return self._publication.host

    @property
    def port(self) -> int | None:
        return self._publication.port

    @property
    def timeout(self) -> float | None:
        return self._publication.timeout

    @property
    def auth(self) -> Auth.Digest | None:
        return self._publication.auth

    @property
    def active(self) -> bool:
        return self._portal.run_sync(lambda: self._publication.active)

    @property
    def expires(self) -> int | None:
        return self._portal.run_sync(lambda: self._publication.expires)

    def modify(
        self, body: str | bytes, content_type: str | None = None, *, expires: int | None = None
    ) -> Response:
        """Replace the published state with ``body`` (PUBLISH with SIP-If-Match)."""
        return self._portal.run(self._publication.modify, body, content_type, expires=expires)

    def refresh(self, expires: int | None = None) -> Response:
        """Refresh it now."""
        return self._portal.run(self._publication.refresh, expires)

    def remove(self) -> Response | None:
        """Remove the state (PUBLISH with Expires: 0) and stop refreshing it."""
        return self._portal.run(self._publication.remove)

    def __repr__(self) -> str:
        return f"<BlockingPublication {self.event} of {self.uri} etag={self.etag!r}>"
