"""Publications on trio, the publisher's side (RFC 3903): PUBLISH, refreshes, removal.

``pub = await client.publish(uri, event, body)`` sends the initial PUBLISH and returns a
:class:`Publication` once it has its final response. :class:`Publishers` (one per client)
sends every PUBLISH of a publication one at a time (a refresh never crosses a
modification), keeps it up with one task per publication in the engine's nursery
(refreshes at :func:`~sipx._core.subscription.refresh_period` of the granted expiry;
failures retried with back-off, 4 ... 60 s, while it lasts; a 412 publishes the state
again from scratch; a 423 is answered with its Min-Expires), and removes what is still
published when the client closes. The rules of each PUBLISH are in
:mod:`sipx._core.publication`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import trio

from ._core.message import Request, Response
from ._core.publication import (
    FATAL_STATUSES,
    PublicationState,
    entity_tag,
    granted_expiry,
    min_expires,
    publish_fields,
)
from ._errors import ProtocolError, SIPError
from ._registration import FIRST_BACKOFF, MAX_BACKOFF

if TYPE_CHECKING:
    from ._auth import Auth
    from ._engine import Engine
    from ._uac import UserAgentClient

log = logging.getLogger("sipx.publication")

#: makes a PUBLISH: (uri, header fields, body, content type, from_uri) -> Request
NewPublish = Callable[[str, Mapping[str, str], bytes | None, str | None, str | None], Request]


class Publication:
    """A piece of event state kept at an event state compositor (made by
    ``client.publish()``); it refreshes itself until :meth:`remove` or the client closes.

    ``etag`` is the entity-tag of the state the compositor holds (None when nothing is
    published: refused, removed or lapsed); ``response`` the final response to the last
    PUBLISH; ``content``/``content_type`` the state last published.
    """

    __slots__ = (
        "_backoff",
        "_lock",
        "_publishers",
        "_scope",
        "_state",
        "auth",
        "content",
        "content_type",
        "event",
        "from_uri",
        "headers",
        "host",
        "port",
        "removed",
        "response",
        "timeout",
        "uri",
    )

    def __init__(
        self,
        publishers: Publishers,
        uri: str,
        event: str,
        content: bytes,
        content_type: str | None,
        expires: int,
        *,
        headers: Mapping[str, str],
        from_uri: str | None,
        host: str | None,
        port: int | None,
        timeout: float | None,
        auth: Auth.Digest | None,
    ) -> None:
        self._publishers = publishers
        self.uri = uri
        self.event = event
        self.content = content
        self.content_type = content_type
        self.headers = dict(headers)
        self.from_uri = from_uri
        # where and how every PUBLISH of it is sent (as request()'s arguments)
        self.host, self.port, self.timeout, self.auth = host, port, timeout, auth
        self._state = PublicationState(expires)
        self._lock = trio.Lock()  # one PUBLISH of this publication at a time
        self._scope = trio.CancelScope()  # the refresh task's
        self._backoff = FIRST_BACKOFF
        self.response: Response | None = None
        self.removed = False

    @property
    def etag(self) -> str | None:
        return self._state.etag

    @property
    def active(self) -> bool:
        """Is the state published (an entity-tag held and its expiry not passed)?"""
        state = self._state
        return state.etag is not None and not state.lapsed(trio.current_time())

    @property
    def expires(self) -> int | None:
        """Seconds until the granted expiry; None when nothing is published."""
        return self._state.seconds_left(trio.current_time())

    @property
    def requested(self) -> int:
        """The expiry each PUBLISH asks for."""
        return self._state.requested

    async def modify(
        self, body: str | bytes, content_type: str | None = None, *, expires: int | None = None
    ) -> Response:
        """Replace the published state with ``body`` (PUBLISH with SIP-If-Match)."""
        return await self._publishers.modify(self, body, content_type, expires)

    async def refresh(self, expires: int | None = None) -> Response:
        """Refresh now (PUBLISH with SIP-If-Match and no body); ``expires`` changes the
        expiry asked for from now on."""
        return await self._publishers.refresh_now(self, expires)

    async def remove(self) -> Response | None:
        """Remove the state (PUBLISH with Expires: 0) and stop refreshing; None when
        nothing was published. A second call does nothing."""
        return await self._publishers.remove(self)

    def __repr__(self) -> str:
        shown = "removed" if self.removed else ("active" if self.active else "inactive")
        return f"<Publication {self.event} of {self.uri} {shown} etag={self.etag!r}>"


class Publishers:
    """The publications of one client: sending, refresh tasks, removal at close."""

    def __init__(self, engine: Engine, uac: UserAgentClient, new_publish: NewPublish) -> None:
        self.engine = engine
        self.uac = uac
        self._new_publish = new_publish
        self._live: dict[int, Publication] = {}
        engine.add_wind_down(self._wind_down)

    @property
    def publications(self) -> list[Publication]:
        """Every publication not removed (its refreshes still running)."""
        return list(self._live.values())

    # -- publishing --------------------------------------------------------------------------
    async def publish(self, pub: Publication) -> Publication:
        """Send the initial PUBLISH of ``pub``; keep it refreshed once it is published."""
        self.engine.require_transport()
        async with pub._lock:
            response = await self._initial(pub)
        if pub._state.etag is not None:
            self._live[id(pub)] = pub
            self.engine.start_soon(self._maintain, pub)
        elif response.is_success:
            log.warning("a 2xx to PUBLISH without SIP-ETag from %s: nothing to refresh", pub.uri)
        return pub

    async def _initial(self, pub: Publication) -> Response:
        """PUBLISH the whole state (no SIP-If-Match); a 423 is retried once with the
        Min-Expires it names."""
        response = await self._send(pub, pub._state.requested, None, pub.content)
        minimum = min_expires(response)
        if minimum is not None and pub._state.requested < minimum:
            pub._state.requested = minimum
            response = await self._send(pub, minimum, None, pub.content)
        return self._settle(pub, response)

    async def _conditional(self, pub: Publication, content: bytes | None) -> Response:
        """PUBLISH with SIP-If-Match (a refresh when ``content`` is None); a 412 (the
        compositor lost the entity) publishes the whole state again."""
        state = pub._state
        if state.etag is None:
            return await self._initial(pub)
        response = await self._send(pub, state.requested, state.etag, content)
        minimum = min_expires(response)
        if minimum is not None and state.requested < minimum:
            state.requested = minimum
            response = await self._send(pub, minimum, state.etag, content)
        if response.status_code == 412:
            log.info(
                "the compositor of %s lost our %s state: publishing it again", pub.uri, pub.event
            )
            state.withdraw()
            return await self._initial(pub)
        return self._settle(pub, response)

    def _settle(self, pub: Publication, response: Response) -> Response:
        """Take a final response into ``pub``'s state."""
        pub.response = response
        state = pub._state
        if response.is_success:
            etag = entity_tag(response)
            if etag is None:
                state.withdraw()
            else:
                state.published(
                    etag, granted_expiry(response, state.requested), trio.current_time()
                )
                pub._backoff = FIRST_BACKOFF
        elif response.status_code in FATAL_STATUSES or state.etag is None:
            state.withdraw()
        return response

    async def _send(
        self, pub: Publication, expires: int, etag: str | None, content: bytes | None
    ) -> Response:
        fields = {**pub.headers, **publish_fields(pub.event, expires, etag)}
        content_type = pub.content_type if content else None
        request = self._new_publish(pub.uri, fields, content or None, content_type, pub.from_uri)
        return await self.uac.send(
            request, host=pub.host, port=pub.port, timeout=pub.timeout, auth=pub.auth
        )

    # -- keeping it up -------------------------------------------------------------------------
    async def _maintain(self, pub: Publication) -> None:
        """The publication's task: refresh before the expiry, until removed or lapsed."""
        state = pub._state
        with pub._scope:
            while state.etag is not None:
                await trio.sleep_until(min(state.refresh_at, state.expires_at))
                if state.lapsed(trio.current_time()):
                    log.warning("the %s publication of %s lapsed", pub.event, pub.uri)
                    state.withdraw()
                    break
                await self._refresh(pub)
        if state.etag is None and not pub.removed:
            self._live.pop(id(pub), None)

    async def _refresh(self, pub: Publication) -> None:
        state = pub._state
        try:
            async with pub._lock:
                if state.etag is None or trio.current_time() < state.refresh_at:
                    return  # removed, or refreshed by a modification meanwhile
                response = await self._conditional(pub, None)
        except SIPError as exc:
            log.warning("refreshing the %s publication of %s failed: %s", pub.event, pub.uri, exc)
            self._back_off(pub)
            return
        if not response.is_success and state.etag is not None:
            log.warning(
                "refreshing the %s publication of %s got %s",
                pub.event,
                pub.uri,
                response.status_code,
            )
            self._back_off(pub)

    def _back_off(self, pub: Publication) -> None:
        pub._state.refresh_failed(trio.current_time(), pub._backoff)
        pub._backoff = min(pub._backoff * 2, MAX_BACKOFF)

    # -- the user's requests -----------------------------------------------------------------
    async def modify(
        self,
        pub: Publication,
        body: str | bytes,
        content_type: str | None,
        expires: int | None,
    ) -> Response:
        content = _content(body)
        _check_expires(expires)
        if pub.removed:
            raise ProtocolError("the publication was removed")
        async with pub._lock:
            pub.content = content
            if content_type is not None:
                pub.content_type = content_type
            if expires is not None:
                pub._state.requested = expires
            response = await self._conditional(pub, pub.content)
        self._keep_up(pub)
        return response

    async def refresh_now(self, pub: Publication, expires: int | None) -> Response:
        _check_expires(expires)
        if pub.removed:
            raise ProtocolError("the publication was removed")
        async with pub._lock:
            if expires is not None:
                pub._state.requested = expires
            response = await self._conditional(pub, None)
        self._keep_up(pub)
        return response

    def _keep_up(self, pub: Publication) -> None:
        """After a PUBLISH the user asked for: (re)start the refresh task if the state is
        published again and nothing refreshes it."""
        if pub._state.etag is not None and id(pub) not in self._live and not pub.removed:
            pub._scope = trio.CancelScope()
            self._live[id(pub)] = pub
            self.engine.start_soon(self._maintain, pub)

    async def remove(self, pub: Publication) -> Response | None:
        if pub.removed:
            return None
        pub.removed = True
        pub._scope.cancel()
        self._live.pop(id(pub), None)
        async with pub._lock:
            state = pub._state
            if state.etag is None or state.lapsed(trio.current_time()):
                state.withdraw()
                return None
            try:
                response = await self._send(pub, 0, state.etag, None)
            finally:
                state.withdraw()
            pub.response = response
            return response

    async def _wind_down(self) -> None:
        """The client is closing: remove every publication (bounded by the engine)."""
        live = self.publications

        async def remove_one(pub: Publication) -> None:
            try:
                await self.remove(pub)
            except SIPError as exc:
                log.info("removing the %s publication of %s failed: %s", pub.event, pub.uri, exc)

        async with trio.open_nursery() as nursery:
            for pub in live:
                nursery.start_soon(remove_one, pub)


def _content(body: str | bytes) -> bytes:
    """The body as bytes (a str is UTF-8); anything else is a TypeError."""
    if not isinstance(body, str | bytes):
        raise TypeError(f"body is str or bytes, not {type(body).__name__}")
    return body.encode() if isinstance(body, str) else bytes(body)


def _check_expires(expires: int | None) -> None:
    if expires is not None and (
        isinstance(expires, bool) or not isinstance(expires, int) or expires <= 0
    ):
        raise ValueError(f"expires is a whole number of seconds > 0, not {expires!r}")


def new_publication(
    publishers: Publishers,
    uri: str,
    event: str,
    body: str | bytes,
    content_type: str | None,
    expires: int,
    headers: Mapping[str, str] | None,
    from_uri: str | None,
    *,
    host: str | None,
    port: int | None,
    timeout: float | None,
    auth: Auth.Digest | None,
) -> Publication:
    """A :class:`Publication` of ``body`` (checked: a bad argument is a ValueError or
    TypeError here, before anything is sent)."""
    content = _content(body)
    if expires is None:
        raise ValueError("expires is a whole number of seconds > 0, not None")
    _check_expires(expires)
    return Publication(
        publishers,
        uri,
        event,
        content,
        content_type,
        expires,
        headers=headers or {},
        from_uri=from_uri,
        host=host,
        port=port,
        timeout=timeout,
        auth=auth,
    )


__all__ = ["Publication", "Publishers", "new_publication"]
