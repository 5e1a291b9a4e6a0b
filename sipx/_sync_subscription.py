"""Subscriptions for users of the blocking :class:`~sipx.Client` (RFC 6665).

A :class:`~sipx.Subscription` lives on the client's portal thread (its NOTIFYs arrive
there), so :class:`BlockingSubscription` crosses into that thread for each wait:
``notifications(timeout)`` is a blocking iterator, ``unsubscribe()``, ``refresh()`` and
``wait_terminated()`` block. On the notifier side, ``Client.on_subscribe`` handlers run on
the portal thread and get a :class:`BlockingIncomingSubscription`, whose ``accept()``
returns a :class:`BlockingServerSubscription` to notify from any other thread.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING

import trio

from ._core.dialog import Dialog
from ._core.event import EventHeader
from ._core.message import Request, Response
from ._notifier import Body, IncomingSubscription, ServerSubscription
from ._subscription import Notification, Subscription
from ._sync_call import _BlockingIterator
from ._watch import Watch

if TYPE_CHECKING:
    from ._portal import Portal


def _wait_terminated(
    portal: Portal, subscription: Subscription | ServerSubscription, timeout: float | None
) -> str | None:
    """Block until ``subscription`` ends (at most ``timeout`` seconds); its ``reason``."""

    async def wait() -> str | None:
        with trio.move_on_after(math.inf if timeout is None else timeout):
            await subscription.wait_terminated()
        return subscription.reason

    return portal.run(wait)


class BlockingSubscription:
    """A :class:`~sipx.Subscription` without ``await`` (made by ``Client.subscribe()``).

    ``for notification in sub.notifications(timeout=5):`` yields its NOTIFYs (the
    iteration ends when it is terminated, or after ``timeout`` seconds without one);
    ``for notification in sub:`` waits as long as it takes.
    """

    __slots__ = ("_portal", "_subscription")

    def __init__(self, subscription: Subscription, portal: Portal) -> None:
        self._subscription = subscription
        self._portal = portal

    @property
    def subscription(self) -> Subscription:
        """The Subscription this wraps (it lives on the portal thread)."""
        return self._subscription

    @property
    def event(self) -> str:
        return self._subscription.event

    @property
    def uri(self) -> str:
        return self._subscription.uri

    @property
    def state(self) -> str:
        return self._subscription.state

    @property
    def reason(self) -> str | None:
        return self._subscription.reason

    @property
    def retry_after(self) -> int | None:
        return self._subscription.retry_after

    @property
    def terminated(self) -> bool:
        return self._subscription.terminated

    @property
    def active(self) -> bool:
        return self._subscription.active

    @property
    def event_header(self) -> EventHeader:
        return self._subscription.event_header

    @property
    def expires(self) -> int | None:
        """Seconds until it expires unless refreshed (read on the portal thread's clock)."""
        return self._portal.run_sync(lambda: self._subscription.expires)

    @property
    def forked_from(self) -> BlockingSubscription | None:
        origin = self._subscription.forked_from
        return BlockingSubscription(origin, self._portal) if origin is not None else None

    @property
    def response(self) -> Response | None:
        return self._subscription.response

    @property
    def request(self) -> Request:
        return self._subscription.request

    @property
    def dialog(self) -> Dialog | None:
        return self._subscription.dialog

    @property
    def last(self) -> Notification | None:
        return self._subscription.last

    @property
    def forks(self) -> list[BlockingSubscription]:
        return [BlockingSubscription(fork, self._portal) for fork in self._subscription.forks]

    def notifications(self, timeout: float | None = None) -> Iterator[Notification]:
        """Its NOTIFYs as a blocking iterator; each ``next()`` waits up to ``timeout``."""
        return _BlockingIterator(self._portal, self._subscription.__aiter__(), timeout)

    def __iter__(self) -> Iterator[Notification]:
        return self.notifications()

    def unsubscribe(self, *, timeout: float | None = None) -> None:
        """SUBSCRIBE with Expires: 0, then wait for the final NOTIFY (see
        :meth:`Subscription.unsubscribe`)."""
        self._portal.run(self._subscription.unsubscribe, timeout=timeout)

    def refresh(self, expires: int | None = None) -> Response:
        """Refresh it now."""
        return self._portal.run(self._subscription.refresh, expires)

    def wait_terminated(self, timeout: float | None = None) -> str | None:
        """Wait (up to ``timeout`` seconds) until it ends; returns ``reason``."""
        return _wait_terminated(self._portal, self._subscription, timeout)

    def __repr__(self) -> str:
        return f"<BlockingSubscription {self.event} {self.uri} {self.state}>"


class BlockingWatch:
    """A :class:`~sipx.Watch` without ``await`` (made by ``Client.watch()``)::

    with client.watch(uri, "presence") as watch:
        for notification in watch.notifications(timeout=30):
            ...
    """

    __slots__ = ("_portal", "_watch")

    def __init__(self, watch: Watch, portal: Portal) -> None:
        self._watch = watch
        self._portal = portal

    @property
    def watch(self) -> Watch:
        """The Watch this wraps (it lives on the portal thread)."""
        return self._watch

    @property
    def subscription(self) -> BlockingSubscription | None:
        sub = self._watch.subscription
        return BlockingSubscription(sub, self._portal) if sub is not None else None

    @property
    def renewals(self) -> int:
        return self._watch.renewals

    @property
    def closed(self) -> bool:
        return self._watch.closed

    @property
    def active(self) -> bool:
        return self._watch.active

    def __enter__(self) -> BlockingWatch:
        self._portal.run(self._watch.__aenter__)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """End the watch: unsubscribe."""
        self._portal.run(self._watch.close)

    def notifications(self, timeout: float | None = None) -> Iterator[Notification]:
        """The NOTIFYs as a blocking iterator, across renewals; each ``next()`` waits up to
        ``timeout`` seconds (a timeout ends the iteration)."""
        return _BlockingIterator(self._portal, self._watch.__aiter__(), timeout)

    def __iter__(self) -> Iterator[Notification]:
        return self.notifications()

    def __repr__(self) -> str:
        return f"<BlockingWatch of {self._watch!r}>"


class BlockingServerSubscription:
    """A :class:`~sipx.ServerSubscription` without ``await``; call it from threads other
    than the portal's (not from inside a handler)."""

    __slots__ = ("_portal", "_subscription")

    def __init__(self, subscription: ServerSubscription, portal: Portal) -> None:
        self._subscription = subscription
        self._portal = portal

    @property
    def subscription(self) -> ServerSubscription:
        return self._subscription

    @property
    def event(self) -> str:
        return self._subscription.event

    @property
    def subscriber(self) -> str:
        return self._subscription.subscriber

    @property
    def state(self) -> str:
        return self._subscription.state

    @property
    def reason(self) -> str | None:
        return self._subscription.reason

    @property
    def terminated(self) -> bool:
        return self._subscription.terminated

    @property
    def expires(self) -> int:
        """Seconds left before it expires unless refreshed (the portal thread's clock)."""
        return self._portal.run_sync(lambda: self._subscription.expires)

    def notify(
        self, body: Body | None = None, *, content_type: str | None = None, state: str | None = None
    ) -> Response | None:
        """Send the current state (see :meth:`ServerSubscription.notify`)."""
        return self._portal.run(
            self._subscription.notify, body, content_type=content_type, state=state
        )

    def terminate(
        self,
        reason: str | None = "noresource",
        *,
        body: Body | None = None,
        content_type: str | None = None,
        retry_after: int | None = None,
    ) -> Response | None:
        """End it with a last NOTIFY (see :meth:`ServerSubscription.terminate`)."""
        return self._portal.run(
            self._subscription.terminate,
            reason,
            body=body,
            content_type=content_type,
            retry_after=retry_after,
        )

    def wait_terminated(self, timeout: float | None = None) -> str | None:
        return _wait_terminated(self._portal, self._subscription, timeout)

    def __repr__(self) -> str:
        return f"<BlockingServerSubscription {self.event} for {self.subscriber} {self.state}>"


class BlockingIncomingSubscription:
    """What a ``Client.on_subscribe`` handler gets (on the portal thread): an
    :class:`~sipx.IncomingSubscription` whose ``accept()`` returns a
    :class:`BlockingServerSubscription`."""

    __slots__ = ("_incoming", "_portal")

    def __init__(self, incoming: IncomingSubscription, portal: Portal) -> None:
        self._incoming = incoming
        self._portal = portal

    @property
    def incoming(self) -> IncomingSubscription:
        return self._incoming

    @property
    def request(self) -> Request:
        return self._incoming.request

    @property
    def event(self) -> str:
        return self._incoming.event

    @property
    def expires(self) -> int | None:
        return self._incoming.expires

    @property
    def subscriber(self) -> str:
        return self._incoming.subscriber

    @property
    def uri(self) -> str:
        return self._incoming.uri

    @property
    def event_id(self) -> str | None:
        return self._incoming.event_id

    @property
    def accept_types(self) -> list[str]:
        return self._incoming.accept_types

    @property
    def answered(self) -> bool:
        return self._incoming.answered

    def accept(
        self,
        expires: int | None = None,
        *,
        body: Body | None = None,
        content_type: str | None = None,
        state: str = "active",
    ) -> BlockingServerSubscription:
        """200 and the first NOTIFY (see :meth:`IncomingSubscription.accept`)."""
        sub = self._incoming.accept(expires, body=body, content_type=content_type, state=state)
        return BlockingServerSubscription(sub, self._portal)

    def reject(
        self,
        status_code: int = 403,
        reason: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Refuse the subscription."""
        return self._incoming.reject(status_code, reason, headers=headers)

    def __repr__(self) -> str:
        return f"<BlockingIncomingSubscription {self.event} {self.uri}>"


__all__ = ["BlockingIncomingSubscription", "BlockingServerSubscription", "BlockingSubscription"]
