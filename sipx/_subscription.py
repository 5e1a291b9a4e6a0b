"""Subscriptions on trio, the subscriber's side (RFC 6665): SUBSCRIBE, NOTIFYs, refreshes.

``sub = await client.subscribe(uri, event)`` sends SUBSCRIBE (Event, Expires, the package's
Accept) and returns a :class:`Subscription` once the SUBSCRIBE has its final response.
:class:`Subscribers` (one per client, owned by its user agent server) routes the NOTIFYs:

* a NOTIFY's To tag is our SUBSCRIBE's From tag and its Call-ID the SUBSCRIBE's; its From
  tag picks the dialog. The first NOTIFY of a dialog creates it (RFC 6665 4.1.2.4: it may
  overtake the 2xx, which then finds the dialog made); a NOTIFY from another dialog of the
  same SUBSCRIBE (a forked SUBSCRIBE answered by several notifiers) makes a new
  :class:`Subscription`, listed in the first one's ``forks``. A NOTIFY whose Event (package
  and ``id``) is not the subscription's, or that matches none, is not ours: the user agent
  server answers it 481.
* each accepted NOTIFY gets 200 (400 for a missing or malformed Subscription-State, 500 for
  a CSeq out of order) and becomes a :class:`Notification`, its body parsed when the package
  is known (a malformed body is reported in ``notification.error``, never raised).

One task per subscription (in the engine's nursery) refreshes it before it expires (the
period of :func:`~sipx._core.subscription.refresh_period`, from the 2xx's Expires or the
last NOTIFY's ``expires``; failures retried with back-off, 4 ... 60 s, while it lasts; 423
is answered with the Min-Expires asked for), and ends it when it lapses or when no NOTIFY
came within Timer N (64·T1). ``await sub.unsubscribe()`` sends SUBSCRIBE with Expires: 0 and
waits briefly for the final NOTIFY. A closing client unsubscribes every subscription.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING

import trio

from ._core.dialog import Dialog, DialogId, DialogState
from ._core.dialog_info import DialogInfo
from ._core.event import TERMINATED, EventHeader, SubscriptionState
from ._core.message import Request, Response
from ._core.mwi import MessageSummary
from ._core.parser import parse_message
from ._core.pidf import Presence
from ._core.sipfrag import SipFrag
from ._core.subscription import (
    INIT,
    TIMER_N_T1,
    EventBody,
    SubscriberState,
    event_of,
    parse_event_body,
    same_event,
    subscription_state_of,
)
from ._errors import ParseError, ProtocolError, SIPError
from ._in_dialog import receive_in_dialog
from ._registration import FIRST_BACKOFF, MAX_BACKOFF

if TYPE_CHECKING:
    from ._auth import Auth
    from ._engine import Engine
    from ._uac import UserAgentClient
    from ._uas import IncomingRequest

log = logging.getLogger("sipx")

#: Notifications kept for a subscription nobody iterates (the oldest give way)
MAX_QUEUED = 256
#: forks kept per SUBSCRIBE (NOTIFYs from more dialogs get 481: a flood stays bounded)
MAX_FORKS = 16
#: how long unsubscribe() waits for the final NOTIFY, in T1
FINAL_NOTIFY_T1 = 8
#: refresh failures that end a subscription (RFC 6665 4.1.2.2); others are retried
_FATAL_REFRESH = frozenset({404, 405, 410, 416, 480, 481, 482, 483, 484, 485, 489, 501, 604})


class Notification:
    """One NOTIFY of a subscription (what ``async for notification in sub`` yields).

    ``request`` is the NOTIFY; ``state`` (``active``, ``pending``, ``terminated``),
    ``expires``, ``reason`` and ``retry_after`` come from its Subscription-State. The body
    is parsed when its type is one sipx reads: ``summary`` (message-summary),
    ``presence`` (PIDF), ``dialogs`` (dialog-info), ``sipfrag`` (refer); a body that fails
    to parse leaves them None and says why in ``error``.
    """

    def __init__(
        self,
        subscription: Subscription,
        request: Request,
        header: SubscriptionState,
        body: EventBody | None,
        error: str | None,
    ) -> None:
        self.subscription = subscription
        self.request = request
        self.subscription_state = header
        self.body = body
        self.error = error

    @property
    def event(self) -> str:
        return self.subscription.event

    @property
    def state(self) -> str:
        return self.subscription_state.state

    @property
    def reason(self) -> str | None:
        return self.subscription_state.reason

    @property
    def expires(self) -> int | None:
        return self.subscription_state.expires

    @property
    def retry_after(self) -> int | None:
        return self.subscription_state.retry_after

    @property
    def terminated(self) -> bool:
        return self.subscription_state.terminated

    @property
    def content_type(self) -> str | None:
        return self.request.headers.get_first("Content-Type")

    @property
    def content(self) -> bytes:
        return self.request.content

    @property
    def text(self) -> str:
        return self.request.text

    @property
    def summary(self) -> MessageSummary | None:
        return self.body if isinstance(self.body, MessageSummary) else None

    @property
    def presence(self) -> Presence | None:
        return self.body if isinstance(self.body, Presence) else None

    @property
    def dialogs(self) -> DialogInfo | None:
        return self.body if isinstance(self.body, DialogInfo) else None

    @property
    def sipfrag(self) -> SipFrag | None:
        return self.body if isinstance(self.body, SipFrag) else None

    def __repr__(self) -> str:
        extra = f" error={self.error!r}" if self.error else ""
        return f"<Notification {self.event} {self.subscription_state}{extra}>"


class Subscription:
    """A subscription we hold (made by ``client.subscribe()``, or a fork of one).

    ``state`` is ``init`` (no NOTIFY yet), ``pending``, ``active`` or ``terminated``;
    ``reason`` and ``retry_after`` are those of the NOTIFY that ended it (``timeout`` when
    it lapsed; None when it was refused, see ``response``, or ended by us). Iterate it for
    its :class:`Notification` objects: the iteration ends after the one that terminates
    it. ``forks`` are the subscriptions other notifiers made from the same SUBSCRIBE (RFC
    6665 4.1.2.4), each with its own dialog, refreshes and notifications.
    """

    def __init__(
        self,
        subscribers: Subscribers,
        request: Request,
        core: SubscriberState,
        forked_from: Subscription | None = None,
    ) -> None:
        self._subscribers = subscribers
        self.request = request
        self._core = core
        self.forked_from = forked_from
        self.response: Response | None = None
        self.dialog: Dialog | None = None
        self.forks: list[Subscription] = []
        self.last: Notification | None = None
        self._queue: deque[Notification] = deque()
        self._arrived = trio.Event()
        self._changed = trio.Event()
        self._ended = trio.Event()
        self._scope = trio.CancelScope()
        self._backoff = FIRST_BACKOFF
        self._accept = request.headers.get_first("Accept")

    # -- what the application reads ------------------------------------------------------------
    @property
    def event(self) -> str:
        """The event package (``message-summary``, ``presence``, ``dialog``...)."""
        return self._core.event.package

    @property
    def event_header(self) -> EventHeader:
        return self._core.event

    @property
    def uri(self) -> str:
        """The Request-URI of the SUBSCRIBE: the resource subscribed to."""
        return str(self.request.uri)

    @property
    def state(self) -> str:
        return self._core.state

    @property
    def reason(self) -> str | None:
        return self._core.reason

    @property
    def retry_after(self) -> int | None:
        return self._core.retry_after

    @property
    def terminated(self) -> bool:
        return self._core.terminated

    @property
    def active(self) -> bool:
        return self._core.state == "active"

    @property
    def expires(self) -> int | None:
        """Seconds until the subscription expires unless refreshed (None: not known)."""
        expires_at = self._core.expires_at
        if expires_at is None or self.terminated:
            return None
        return max(0, int(expires_at - trio.current_time()))

    # -- what the application does -------------------------------------------------------------
    async def unsubscribe(self, *, timeout: float | None = None) -> None:
        """End it: SUBSCRIBE with Expires: 0, then wait for the final NOTIFY (at most
        ``timeout`` seconds, 8·T1 by default). The forks of a subscription end with it."""
        await self._subscribers.unsubscribe(self, timeout)

    async def refresh(self, expires: int | None = None) -> Response:
        """Refresh it now (SUBSCRIBE in its dialog, Expires ``expires`` or as first asked)."""
        return await self._subscribers.refresh_now(self, expires)

    async def wait_terminated(self) -> str | None:
        """Wait until the subscription ends; returns ``reason``."""
        await self._ended.wait()
        return self.reason

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Notification:
        while not self._queue:
            if self._ended.is_set():
                raise StopAsyncIteration
            await self._arrived.wait()
        return self._queue.popleft()

    def __repr__(self) -> str:
        return f"<Subscription {self.event} {self.uri} {self.state}>"

    # -- the subscribers' side (module-level functions below) ---------------------------------
    def _deliver(self, notification: Notification) -> None:
        self.last = notification
        self._queue.append(notification)
        while len(self._queue) > MAX_QUEUED:
            dropped = self._queue.popleft()
            log.info("dropping an unread NOTIFY of %s: %r", self.uri, dropped)
        self._wake_readers()

    def _wake_readers(self) -> None:
        self._arrived.set()
        self._arrived = trio.Event()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


class Subscribers:
    """The subscriptions of one client: sending, NOTIFY routing, refresh tasks, wind-down."""

    def __init__(self, engine: Engine, uac: UserAgentClient) -> None:
        self.engine = engine
        self.uac = uac
        # (Call-ID, our From tag) of each SUBSCRIBE -> its first subscription
        self._roots: dict[tuple[str, str], Subscription] = {}
        self._dialogs: dict[DialogId, Subscription] = {}
        engine.add_wind_down(self._wind_down)

    @property
    def subscriptions(self) -> list[Subscription]:
        """Every subscription not terminated yet (forks included)."""
        live = {id(s): s for s in (*self._roots.values(), *self._dialogs.values())}
        return [s for s in live.values() if not s.terminated]

    # -- subscribing -----------------------------------------------------------------------------
    async def subscribe(
        self,
        request: Request,
        *,
        host: str | None,
        port: int | None,
        timeout: float | None,
        auth: Auth.Digest | None,
    ) -> Subscription:
        """Send the SUBSCRIBE ``request`` and return its subscription (terminated when the
        final response is not a 2xx)."""
        self.engine.require_transport()
        event = event_of(request)
        expires = request.expires
        requested = 3600 if expires is None else expires
        now = trio.current_time()
        core = SubscriberState(event, requested, now, timer_n=TIMER_N_T1 * self.engine.timers.t1)
        sub = Subscription(self, request, core)
        key = (request.call_id, request.from_.tag or "")
        self._roots[key] = sub
        try:
            response = await self.uac.send(
                request, host=host, port=port, timeout=timeout, auth=auth
            )
            minimum = _min_expires(response)
            if minimum is not None and 0 < requested < minimum:
                assert response.request is not None
                core.requested = requested = minimum
                again = _again(response.request, minimum)
                response = await self.uac.send(again, host=host, port=port, timeout=timeout)
        except BaseException:
            core.terminate()
            self._finish(sub)
            raise
        sub.response = response
        sent = response.request or request
        if not response.is_success:
            core.terminate()
            self._finish(sub)
            return sub
        granted = _granted(response, requested)
        if sub.dialog is None:
            try:
                dialog = Dialog.from_uac_response(sent, response)
            except (ProtocolError, ParseError) as exc:
                log.warning("a 2xx to SUBSCRIBE that makes no dialog: %s", exc)
                core.terminate()
                self._finish(sub)
                return sub
            dialog.state = DialogState.CONFIRMED
            sub.dialog = dialog
            self._dialogs[dialog.id] = sub
        for made in (sub, *sub.forks):  # dialogs NOTIFYs made before the 2xx
            if made.dialog is not None:
                made.dialog.local_seq = max(made.dialog.local_seq, sent.cseq.seq)
        core.accepted(granted, trio.current_time())
        if core.terminated:
            self._finish(sub)
        else:
            self.engine.start_soon(self._maintain, sub)
        return sub

    # -- NOTIFY --------------------------------------------------------------------------------
    def notify_received(self, incoming: IncomingRequest) -> bool:
        """A NOTIFY with a To tag: True when it belongs to one of our subscriptions (it is
        answered here), False to let the user agent server answer it."""
        request = incoming.request
        to_tag, from_tag = request.to.tag, request.from_.tag
        if not to_tag or not from_tag:
            return False
        sub = self._dialogs.get(DialogId(request.call_id, to_tag, from_tag))
        root = self._roots.get((request.call_id, to_tag)) if sub is None else None
        if sub is None and root is None:
            return False
        try:
            event = event_of(request)
        except ParseError as exc:
            incoming.respond(400, f"Bad Event: {str(exc)[:50]}")
            return True
        owner = sub or root
        assert owner is not None
        if not same_event(event, owner._core.event):
            return False  # not this subscription's: 481
        try:
            header = subscription_state_of(request)
        except ParseError as exc:
            incoming.respond(400, f"Bad Subscription-State: {str(exc)[:40]}")
            return True
        now = trio.current_time()
        created = False
        if sub is None:
            assert root is not None
            if root.terminated or root._core.unsubscribing:
                return False  # a fork of a subscription we ended: 481
            if root.dialog is not None and len(root.forks) >= MAX_FORKS:
                log.info("refusing a NOTIFY of one more fork of %s", root.uri)
                return False
            try:
                dialog = Dialog.from_uas_request(request, to_tag, confirmed=True)
            except ProtocolError as exc:
                incoming.respond(400, str(exc)[:60])
                return True
            sent = root.response.request if root.response and root.response.request else None
            dialog.local_seq = (sent or root.request).cseq.seq
            if root.dialog is None:
                sub = root
            else:
                core = SubscriberState(root._core.event, root._core.requested, now, timer_n=0.0)
                sub = Subscription(self, root.request, core, forked_from=root)
                root.forks.append(sub)
                created = True
            sub.dialog = dialog
            self._dialogs[dialog.id] = sub
        else:
            assert sub.dialog is not None
            if not receive_in_dialog(sub.dialog, incoming):
                return True
        incoming.respond(200)
        body, error = parse_event_body(
            sub.event, request.headers.get_first("Content-Type"), request.content
        )
        if error is not None:
            log.info("a NOTIFY of %s carries a malformed body: %s", sub.uri, error)
        sub._core.notify(header, now)
        sub._deliver(Notification(sub, request, header, body, error))
        if sub.terminated:
            self._finish(sub)
        else:
            sub._wake()
            if created and self.engine.running:
                self.engine.start_soon(self._maintain, sub)
        return True

    # -- refresh and expiry ----------------------------------------------------------------------
    async def _maintain(self, sub: Subscription) -> None:
        """The subscription's task: refreshes, Timer N, expiry."""
        core = sub._core
        try:
            with sub._scope:
                while not core.terminated:
                    with trio.move_on_at(core.next_deadline()):
                        await sub._changed.wait()
                    action = core.poll(trio.current_time())
                    if action == "refresh":
                        await self._refresh(sub)
                    elif action == TERMINATED:
                        log.info("subscription to %s of %s lapsed", sub.event, sub.uri)
        finally:
            if core.terminated:
                self._finish(sub)

    async def _refresh(self, sub: Subscription) -> None:
        core = sub._core
        try:
            response = await self._send_subscribe(sub, core.requested)
        except SIPError as exc:
            log.warning("refreshing the subscription to %s failed: %s", sub.uri, exc)
            self._back_off(sub)
            return
        if response.is_success:
            sub._backoff = FIRST_BACKOFF
            core.accepted(_granted(response, core.requested), trio.current_time())
            return
        minimum = _min_expires(response)
        if minimum is not None:
            core.requested = minimum
            core.refresh_failed(trio.current_time(), 0.0)
            return
        if response.status_code in _FATAL_REFRESH:
            log.info("the subscription to %s is gone (%s)", sub.uri, response.status_code)
            core.terminate()
            return
        log.warning("refreshing the subscription to %s got %s", sub.uri, response.status_code)
        self._back_off(sub)

    def _back_off(self, sub: Subscription) -> None:
        sub._core.refresh_failed(trio.current_time(), sub._backoff)
        sub._backoff = min(sub._backoff * 2, MAX_BACKOFF)

    async def refresh_now(self, sub: Subscription, expires: int | None) -> Response:
        if expires is not None and (
            isinstance(expires, bool) or not isinstance(expires, int) or expires <= 0
        ):
            raise ValueError(f"expires is a whole number of seconds > 0, not {expires!r}")
        if sub.terminated or sub.dialog is None:
            raise ProtocolError("the subscription has ended")
        core = sub._core
        if expires is not None:
            core.requested = expires
        response = await self._send_subscribe(sub, core.requested)
        if response.is_success:
            core.accepted(_granted(response, core.requested), trio.current_time())
        elif response.status_code in _FATAL_REFRESH:
            core.terminate()
            self._finish(sub)
        sub._wake()
        return response

    async def _send_subscribe(self, sub: Subscription, expires: int) -> Response:
        dialog = sub.dialog
        assert dialog is not None
        headers = {"Event": str(sub._core.event), "Expires": str(expires)}
        if sub._accept:
            headers["Accept"] = sub._accept
        request = dialog.create_request("SUBSCRIBE", headers=headers)
        return await self.uac.send_in_dialog(dialog, request, timeout=None)

    # -- unsubscribing -------------------------------------------------------------------------
    async def unsubscribe(self, sub: Subscription, timeout: float | None) -> None:
        if timeout is not None and (not isinstance(timeout, int | float) or timeout < 0):
            raise ValueError(f"timeout is a number of seconds >= 0, not {timeout!r}")
        wait = FINAL_NOTIFY_T1 * self.engine.timers.t1 if timeout is None else float(timeout)
        async with trio.open_nursery() as nursery:
            for fork in sub.forks:
                nursery.start_soon(self._unsubscribe_one, fork, wait)
            await self._unsubscribe_one(sub, wait)

    async def _unsubscribe_one(self, sub: Subscription, wait: float) -> None:
        core = sub._core
        if core.terminated:
            return
        if core.unsubscribing:  # already on its way out
            with trio.move_on_after(wait):
                await sub._ended.wait()
            return
        core.unsubscribe()
        sub._scope.cancel()
        try:
            if sub.dialog is None or sub.dialog.state is DialogState.TERMINATED:
                return
            try:
                response = await self._send_subscribe(sub, 0)
            except SIPError as exc:
                log.info("unsubscribing from %s failed: %s", sub.uri, exc)
                return
            if response.is_success:
                with trio.move_on_after(wait):  # the final NOTIFY (terminated)
                    await sub._ended.wait()
        finally:
            core.terminate()
            self._finish(sub)

    def _finish(self, sub: Subscription) -> None:
        """The subscription has ended: forget it and wake its readers."""
        if sub.dialog is not None and self._dialogs.get(sub.dialog.id) is sub:
            del self._dialogs[sub.dialog.id]
            sub.dialog.terminate()
        key = (sub.request.call_id, sub.request.from_.tag or "")
        if self._roots.get(key) is sub:
            del self._roots[key]
        sub._scope.cancel()
        sub._ended.set()
        sub._wake_readers()

    async def _wind_down(self) -> None:
        """The client is closing: unsubscribe from everything (bounded by the engine)."""
        live = self.subscriptions
        try:
            async with trio.open_nursery() as nursery:
                for sub in live:
                    nursery.start_soon(self._unsubscribe_one, sub, 4 * self.engine.timers.t1)
        finally:
            for sub in live:
                sub._core.terminate()
                self._finish(sub)


def _granted(response: Response, requested: int) -> int:
    """The expiry a 2xx to SUBSCRIBE granted (its Expires; else what was asked)."""
    try:
        granted = response.expires
    except ParseError:
        granted = None
    return requested if granted is None else min(granted, requested)


def _min_expires(response: Response) -> int | None:
    if response.status_code != 423:
        return None
    value = response.headers.get_first("Min-Expires")
    if value is None or not value.strip().isdigit() or len(value.strip()) > 10:
        return None
    return int(value.strip())


def _again(request: Request, expires: int) -> Request:
    """A copy of ``request`` for a new transaction asking ``expires``: no Via, CSeq + 1."""
    copy = parse_message(request.to_bytes())
    assert isinstance(copy, Request)
    for name in ("Via", "Authorization", "Proxy-Authorization"):
        if name in copy.headers:
            del copy.headers[name]
    copy.headers["CSeq"] = f"{request.cseq.seq + 1} {request.method}"
    copy.headers["Expires"] = str(expires)
    return copy


__all__ = ["INIT", "MAX_FORKS", "Notification", "Subscribers", "Subscription"]
