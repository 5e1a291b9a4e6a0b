"""Watching an event package for as long as it is wanted (RFC 6665 4.2.2).

A :class:`~sipx.Subscription` ends for good: when its notifier terminates it, the
application decides whether to subscribe again. A :class:`Watch` makes that decision the
way RFC 6665 4.2.2 suggests, so a presence or voicemail watcher keeps watching::

    async with client.watch(uri, "presence") as watch:
        async for notification in watch:   # across renewed subscriptions
            ...

After a subscription ends with ``deactivated`` or ``timeout`` a new one is made at once
(after ``retry-after`` when given); after ``probation`` or ``giveup``, after
``retry-after`` (30 s without one); after ``rejected``, ``noresource``, ``invariant``,
another reason or none, the watch ends. A SUBSCRIBE refused with 408 or 5xx, or that
failed (timeout, transport), is retried with back-off (4, 8, ... 60 s); another refusal
ends the watch. Subscriptions that end within 4 s of being made back off the same way, so
a notifier that terminates at once is not hammered. Leaving the ``async with`` block
unsubscribes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from types import TracebackType

import trio

from ._core.subscription import resubscribe_delay
from ._errors import SIPError
from ._registration import FIRST_BACKOFF, MAX_BACKOFF
from ._subscription import Notification, Subscription

log = logging.getLogger("sipx.subscription")

#: a subscription ending sooner than this after it was made counts as a quick end
QUICK_END = 4.0
#: how long leaving the block waits for the unsubscribe, at most
UNSUBSCRIBE_BOUND = 8.0


class Watch:
    """A subscription kept up for as long as it is watched (see the module docstring);
    made by ``client.watch()``, used as ``async with`` and ``async for``.

    ``subscription`` is the current :class:`~sipx.Subscription` (None before the block);
    ``renewals`` counts the subscriptions made after the first; ``closed`` is True once the
    watch has ended (the block left, or no renewal wanted).
    """

    __slots__ = ("_backoff", "_made_at", "_subscribe", "closed", "renewals", "subscription")

    def __init__(self, subscribe: Callable[[], Awaitable[Subscription]]) -> None:
        self._subscribe = subscribe
        self.subscription: Subscription | None = None
        self.renewals = 0
        self.closed = False
        self._backoff = FIRST_BACKOFF
        self._made_at = 0.0

    @property
    def active(self) -> bool:
        """Is the current subscription up (not terminated) and the watch open?"""
        sub = self.subscription
        return not self.closed and sub is not None and not sub.terminated

    async def __aenter__(self) -> Watch:
        if self.subscription is not None or self.closed:
            raise RuntimeError("a Watch is used once: make another with client.watch()")
        self.subscription = await self._subscribe()  # a failure here is the caller's
        self._made_at = trio.current_time()
        response = self.subscription.response
        if response is None or not response.is_success:
            self.closed = True  # refused: the iteration is empty; sub.response says why
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """End the watch: unsubscribe (bounded, even when the caller is being cancelled)."""
        self.closed = True
        sub = self.subscription
        if sub is not None and not sub.terminated:
            with trio.CancelScope(shield=True), trio.move_on_after(UNSUBSCRIBE_BOUND):
                try:
                    await sub.unsubscribe()
                except SIPError as exc:
                    log.info("unsubscribing from %s failed: %s", sub.uri, exc)

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> Notification:
        while True:
            sub = self.subscription
            if sub is None:
                raise RuntimeError("enter the watch first: async with client.watch(...)")
            try:
                return await anext(sub)
            except StopAsyncIteration:
                pass
            if self.closed:
                raise StopAsyncIteration
            delay = self._renewal_delay(sub)
            if delay is None or not await self._renew(delay):
                self.closed = True
                raise StopAsyncIteration

    def _renewal_delay(self, sub: Subscription) -> float | None:
        """How long to wait before renewing ``sub``, which has ended (None: do not)."""
        delay = resubscribe_delay(sub.reason, sub.retry_after)
        if delay is None:
            log.info("the %s subscription to %s ended (%s)", sub.event, sub.uri, sub.reason)
            return None
        if trio.current_time() - self._made_at < QUICK_END:
            delay = max(delay, self._next_backoff())
        else:
            self._backoff = FIRST_BACKOFF
        return delay

    def _next_backoff(self) -> float:
        backoff = self._backoff
        self._backoff = min(backoff * 2, MAX_BACKOFF)
        return backoff

    async def _renew(self, delay: float) -> bool:
        """Subscribe again after ``delay``; retry what may pass. False: the watch ends."""
        while True:
            await trio.sleep(delay)
            if self.closed:  # closed while waiting
                return False
            try:
                sub = await self._subscribe()
            except SIPError as exc:
                log.warning("renewing a subscription failed: %s", exc)
                delay = self._next_backoff()
                continue
            self.subscription = sub
            self.renewals += 1
            self._made_at = trio.current_time()
            response = sub.response
            if response is not None and response.is_success:
                return True
            status = response.status_code if response is not None else 0
            if status == 408 or status >= 500:
                delay = self._next_backoff()
                continue
            log.info("renewing the %s subscription to %s got %s", sub.event, sub.uri, status)
            return False

    def __repr__(self) -> str:
        sub = self.subscription
        shown = "closed" if self.closed else (sub.state if sub is not None else "not entered")
        return f"<Watch {shown} renewals={self.renewals}>"


__all__ = ["Watch"]
