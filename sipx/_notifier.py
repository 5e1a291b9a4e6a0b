"""Subscriptions on trio, the notifier's side (RFC 6665): SUBSCRIBE in, NOTIFYs out.

``client.on_subscribe(event, handler)`` makes the client a notifier for the event package
``event``. :class:`Notifiers` (one per client, owned by its user agent server) then takes
every SUBSCRIBE that creates a subscription (no To tag; unless an ``on_request("SUBSCRIBE")``
handler takes them all):

* a missing or malformed Event, Expires or Contact: 400; a package without a handler:
  489 Bad Event with ``Allow-Events`` (the packages we have handlers for);
* otherwise the handler gets an :class:`IncomingSubscription` and answers it once:
  ``accept()`` sends 200 (Expires: what was asked, at most what the handler grants;
  Contact) and, at once, the first NOTIFY (RFC 6665 4.2.1.2) with the body given; it
  returns the :class:`ServerSubscription`, whose ``notify()`` sends the next state and
  ``terminate()`` ends it. ``reject(status)`` refuses it. A handler that does neither
  gets 500 sent for it.

In-dialog SUBSCRIBEs refresh a subscription (200 with the granted Expires, then a NOTIFY of
the current state; Expires: 0 ends it with ``terminated;reason=timeout``). A subscription
that is not refreshed in time ends the same way; one whose NOTIFY gets 481, times out or
cannot be sent is over (the subscriber is gone). NOTIFYs of one subscription never overlap
(each waits for the previous one's response). A closing client terminates its
subscriptions (``reason=noresource``).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import trio

from ._core.builder import body_bytes
from ._core.dialog import Dialog, DialogId, dialog_id_of
from ._core.event import ACTIVE, EventHeader
from ._core.header_types import is_token
from ._core.message import Request, Response
from ._core.subscription import (
    PACKAGES,
    REASONS,
    NotifierState,
    event_of,
    grant_expires,
    same_event,
)
from ._errors import ParseError, ProtocolError, SIPError

if TYPE_CHECKING:
    from ._engine import Engine
    from ._uac import UserAgentClient
    from ._uas import IncomingRequest, UserAgentServer

log = logging.getLogger("sipx")

#: granted when the SUBSCRIBE has no Expires (RFC 6665 leaves it to the package; 3600 is
#: what message-summary, presence and dialog use)
DEFAULT_EXPIRES = 3600
#: the longest subscription granted unless the handler says otherwise
MAX_EXPIRES = 3600
SubscribeHandler = Callable[["IncomingSubscription"], Any]
Body = str | bytes


class IncomingSubscription:
    """A SUBSCRIBE that asks for a new subscription; ``accept()`` or ``reject()`` it once.

    ``request`` is the SUBSCRIBE; ``event`` its package and ``event_id`` the Event's id;
    ``expires`` the duration asked for (None: not said); ``subscriber`` the From URI,
    ``uri`` the Request-URI (the resource), ``accept_types`` the body types it takes.
    """

    def __init__(
        self,
        notifiers: Notifiers,
        incoming: IncomingRequest,
        event: EventHeader,
        expires: int | None,
    ) -> None:
        self._notifiers = notifiers
        self.incoming = incoming
        self.request = incoming.request
        self.event_header = event
        self.expires = expires
        self.subscription: ServerSubscription | None = None

    @property
    def event(self) -> str:
        return self.event_header.package

    @property
    def event_id(self) -> str | None:
        return self.event_header.id

    @property
    def subscriber(self) -> str:
        return str(self.request.from_.uri)

    @property
    def uri(self) -> str:
        return str(self.request.uri)

    @property
    def accept_types(self) -> list[str]:
        return self.request.headers.get_list("Accept")

    @property
    def answered(self) -> bool:
        return self.incoming.responded

    def accept(
        self,
        expires: int | None = None,
        *,
        body: Body | None = None,
        content_type: str | None = None,
        state: str = ACTIVE,
    ) -> ServerSubscription:
        """200, then at once the first NOTIFY (``state``: active or pending, with
        ``body``). ``expires`` caps the duration granted (default 3600 s)."""
        if expires is not None and (
            isinstance(expires, bool) or not isinstance(expires, int) or expires < 0
        ):
            raise ValueError(f"expires is a whole number of seconds >= 0, not {expires!r}")
        if state not in ("active", "pending"):
            raise ValueError(f"state is 'active' or 'pending', not {state!r}")
        if self.answered:
            raise ProtocolError("this SUBSCRIBE was already answered")
        sub = self._notifiers.accept(self, expires, body, content_type, state)
        self.subscription = sub
        return sub

    def reject(
        self,
        status_code: int = 403,
        reason: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Refuse the subscription with a final response of 300 or more."""
        if isinstance(status_code, bool) or not isinstance(status_code, int):
            raise TypeError(f"status_code is an int, not {status_code!r}")
        if not 300 <= status_code <= 699:
            raise ValueError(f"reject() takes a status code 300-699, not {status_code}")
        return self.incoming.respond(status_code, reason, headers=headers)

    def __repr__(self) -> str:
        return f"<IncomingSubscription {self.event} {self.uri} from {self.subscriber}>"


class ServerSubscription:
    """A subscription we serve as notifier (what ``IncomingSubscription.accept()`` returns).

    ``state`` is ``active``, ``pending`` or ``terminated`` (then ``reason`` says why:
    ``timeout`` when it expired or the subscriber ended it, ``noresource`` by default when
    we ended it, None when the subscriber is gone). ``body``/``content_type`` are the
    state last sent, resent in the NOTIFY that follows each refresh.
    """

    def __init__(
        self,
        notifiers: Notifiers,
        request: Request,
        dialog: Dialog,
        core: NotifierState,
        body: bytes,
        content_type: str | None,
        longest: int = MAX_EXPIRES,
    ) -> None:
        self._notifiers = notifiers
        self._longest = longest  # the longest expiry a refresh is granted
        self.request = request
        self.dialog = dialog
        self._core = core
        self.body = body
        self.content_type = content_type
        self._sending = trio.Semaphore(1)
        self._changed = trio.Event()
        self._ended = trio.Event()

    @property
    def event(self) -> str:
        return self._core.event.package

    @property
    def subscriber(self) -> str:
        return str(self.dialog.remote_uri.uri)

    @property
    def state(self) -> str:
        return self._core.state

    @property
    def reason(self) -> str | None:
        return self._core.reason

    @property
    def terminated(self) -> bool:
        return self._core.terminated

    @property
    def expires(self) -> int:
        """Seconds left before it expires unless refreshed."""
        return 0 if self.terminated else self._core.remaining(trio.current_time())

    async def notify(
        self, body: Body | None = None, *, content_type: str | None = None, state: str | None = None
    ) -> Response | None:
        """Send the current state: ``body`` (else the last one) and ``state`` (``active``
        or ``pending``; unchanged by default), once the previous NOTIFY has completed.
        Returns the NOTIFY's response (None when it could not be sent); ProtocolError once
        the subscription has ended."""
        if state is not None and state not in ("active", "pending"):
            raise ValueError(f"state is 'active' or 'pending', not {state!r}")
        async with self._sending:
            if self.terminated:
                raise ProtocolError("the subscription has ended")
            if state is not None:
                self._core.set_state(state)
            self._set_body(body, content_type)
            return await self._notifiers.send_now(self)

    async def terminate(
        self,
        reason: str | None = "noresource",
        *,
        body: Body | None = None,
        content_type: str | None = None,
        retry_after: int | None = None,
    ) -> Response | None:
        """End it: a last NOTIFY with ``terminated;reason=...`` (RFC 6665 4.2.2 reasons)."""
        if reason is not None and reason not in REASONS:
            raise ValueError(f"reason is one of {sorted(REASONS)} or None, not {reason!r}")
        async with self._sending:
            if self.terminated:
                return None
            self._set_body(body, content_type)
            self._core.terminate(reason, retry_after)
            return await self._notifiers.send_now(self)

    async def wait_terminated(self) -> str | None:
        """Wait until the subscription ends; returns ``reason``."""
        await self._ended.wait()
        return self.reason

    def _set_body(self, body: Body | None, content_type: str | None) -> None:
        if body is not None:
            self.body = body_bytes(body)
            self.content_type = content_type or self.content_type or _default_type(self.event)
        elif content_type is not None:
            self.content_type = content_type

    def __repr__(self) -> str:
        return f"<ServerSubscription {self.event} for {self.subscriber} {self.state}>"


class Notifiers:
    """The event packages one client serves, and the subscriptions it holds as notifier."""

    def __init__(self, engine: Engine, uac: UserAgentClient, uas: UserAgentServer) -> None:
        self.engine = engine
        self.uac = uac
        self.uas = uas
        self.handlers: dict[str, SubscribeHandler] = {}
        self._dialogs: dict[DialogId, ServerSubscription] = {}
        engine.add_wind_down(self._wind_down)

    @property
    def packages(self) -> list[str]:
        """The packages with a handler (what Allow-Events lists)."""
        return sorted(self.handlers)

    @property
    def subscriptions(self) -> list[ServerSubscription]:
        return list(self._dialogs.values())

    def on_subscribe(self, event: str, handler: SubscribeHandler | None) -> None:
        if not isinstance(event, str) or not is_token(event):
            raise ValueError(f"event is an event package name, not {event!r}")
        if handler is None:
            self.handlers.pop(event.lower(), None)
            return
        if not callable(handler):
            raise TypeError(f"handler is a function, not {handler!r}")
        self.handlers[event.lower()] = handler

    # -- a new subscription ----------------------------------------------------------------------
    async def subscribe_received(self, incoming: IncomingRequest) -> bool:
        """A SUBSCRIBE without To tag: True when taken (answered here)."""
        if not self.handlers:
            return False
        request = incoming.request
        try:
            event = event_of(request)
        except ParseError as exc:
            incoming.respond(400, f"Bad Event: {str(exc)[:50]}")
            return True
        handler = self.handlers.get(event.package)
        if handler is None:
            incoming.respond(489, headers={"Allow-Events": ", ".join(self.packages)})
            return True
        try:
            expires = request.expires
            if not request.contact:
                raise ParseError("a SUBSCRIBE needs a Contact")
        except ParseError as exc:
            incoming.respond(400, str(exc)[:60])
            return True
        subscription = IncomingSubscription(self, incoming, event, expires)
        result = handler(subscription)
        if inspect.isawaitable(result):
            await result
        if not incoming.responded:
            log.warning("the %s handler neither accepted nor rejected a SUBSCRIBE", event.package)
            incoming.respond(500, "Subscription Not Answered")
        return True

    def accept(
        self,
        incoming_sub: IncomingSubscription,
        expires: int | None,
        body: Body | None,
        content_type: str | None,
        state: str,
    ) -> ServerSubscription:
        request = incoming_sub.request
        longest = MAX_EXPIRES if expires is None else expires
        granted = grant_expires(incoming_sub.expires, default=DEFAULT_EXPIRES, maximum=longest)
        response = incoming_sub.incoming.respond(
            200,
            headers={"Expires": str(granted), "Contact": self.uas.contact_for(request)},
        )
        dialog = Dialog.from_uas_request(request, response.to.tag or "", confirmed=True)
        core = NotifierState(incoming_sub.event_header, granted, trio.current_time(), state=state)
        content = body_bytes(body) if body is not None else b""
        kind = content_type or (_default_type(incoming_sub.event) if body is not None else None)
        sub = ServerSubscription(self, request, dialog, core, content, kind, longest)
        if granted == 0:
            core.terminate("timeout")  # a fetch: one NOTIFY with the state, and done
        self._dialogs[dialog.id] = sub
        sub._sending.acquire_nowait()  # held until the first NOTIFY is out
        self.engine.start_soon(self._first_notify, sub)
        return sub

    async def _first_notify(self, sub: ServerSubscription) -> None:
        try:
            await self._send(sub)
        finally:
            sub._sending.release()
        if not sub.terminated:
            self.engine.start_soon(self._expire_when_due, sub)

    # -- refreshes -----------------------------------------------------------------------------
    async def in_dialog(self, incoming: IncomingRequest) -> bool:
        """An in-dialog SUBSCRIBE: True when it refreshes one of our subscriptions."""
        request = incoming.request
        dialog_id = dialog_id_of(request)
        sub = self._dialogs.get(dialog_id) if dialog_id is not None else None
        if sub is None:
            return False
        try:
            sub.dialog.receive_request(request)
            event = event_of(request)
            expires = request.expires
        except (ProtocolError, ParseError) as exc:
            incoming.respond(400 if isinstance(exc, ParseError) else 500, str(exc)[:60])
            return True
        if not same_event(event, sub._core.event):
            incoming.respond(481)  # another subscription in this dialog: not supported
            return True
        now = trio.current_time()
        granted = grant_expires(expires, default=DEFAULT_EXPIRES, maximum=sub._longest)
        incoming.respond(
            200, headers={"Expires": str(granted), "Contact": self.uas.contact_for(request)}
        )
        sub._core.refresh(granted, now)
        sub._changed.set()
        sub._changed = trio.Event()
        await self.send_notify(sub)  # RFC 6665 4.2.1.2: the state, after each refresh
        return True

    async def _expire_when_due(self, sub: ServerSubscription) -> None:
        core = sub._core
        while not core.terminated:
            with trio.move_on_at(core.expires_at):
                await sub._changed.wait()
            if core.expired(trio.current_time()):
                log.info("the %s subscription of %s expired", sub.event, sub.subscriber)
                core.terminate("timeout")
                await self.send_notify(sub)

    # -- NOTIFY ----------------------------------------------------------------------------------
    async def send_notify(self, sub: ServerSubscription) -> Response | None:
        """One NOTIFY of ``sub``'s current state, after the previous one completed."""
        async with sub._sending:
            return await self.send_now(sub)

    async def send_now(self, sub: ServerSubscription) -> Response | None:
        """A NOTIFY of ``sub``'s current state; the caller holds its sending turn."""
        if sub._ended.is_set():
            return None
        return await self._send(sub)

    async def _send(self, sub: ServerSubscription) -> Response | None:
        state = sub._core.header(trio.current_time())
        headers = {"Event": str(sub._core.event), "Subscription-State": str(state)}
        if sub.body and sub.content_type:
            headers["Content-Type"] = sub.content_type
        final = state.terminated  # the last NOTIFY: the subscription is over once it is sent
        response: Response | None = None
        try:
            request = sub.dialog.create_request("NOTIFY", headers=headers, content=sub.body)
            response = await self.uac.send_in_dialog(sub.dialog, request, timeout=None)
        except (SIPError, ProtocolError) as exc:
            log.info("NOTIFY to %s failed: %s", sub.subscriber, exc)
            final = True
        else:
            if response.status_code == 481:
                log.info("the subscriber %s is gone (481)", sub.subscriber)
                final = True
            elif not response.is_success:
                log.info("NOTIFY to %s got %s", sub.subscriber, response.status_code)
        if final:
            sub._core.terminate(None)  # no change when it was terminated already
            self._forget(sub)
        return response

    def _forget(self, sub: ServerSubscription) -> None:
        if self._dialogs.get(sub.dialog.id) is sub:
            del self._dialogs[sub.dialog.id]
        sub.dialog.terminate()
        sub._ended.set()
        sub._changed.set()

    async def _wind_down(self) -> None:
        """The client is closing: end every subscription we serve (noresource)."""
        live = [sub for sub in self._dialogs.values() if not sub.terminated]

        async def end(sub: ServerSubscription) -> None:
            sub._core.terminate("noresource")
            await self.send_notify(sub)

        try:
            async with trio.open_nursery() as nursery:
                for sub in live:
                    nursery.start_soon(end, sub)
        finally:
            for sub in live:
                sub._core.terminate("noresource")
                self._forget(sub)


def _default_type(package: str) -> str:
    return PACKAGES.get(package, "text/plain")


__all__ = [
    "DEFAULT_EXPIRES",
    "MAX_EXPIRES",
    "IncomingSubscription",
    "Notifiers",
    "ServerSubscription",
    "SubscribeHandler",
]
