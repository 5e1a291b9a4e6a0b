"""Subscriptions served by ``sipx serve`` (RFC 6665), sans-I/O: voicemail lamps and presence.

The :class:`EventNotifier` answers SUBSCRIBEs for two event packages of the server's users
(the Request-URI names a configured user of this server):

* ``message-summary`` (RFC 3842): the counts set for the user (``--mwi 1111=2/8``, or
  :meth:`EventNotifier.set_message_summary`), ``Messages-Waiting: yes`` when some are new;
  each change is NOTIFYed to the user's watchers;
* ``presence`` (RFC 3856): the PIDF document the user PUBLISHed last (RFC 3903, kept by
  the :class:`~sipx._serve.compositor.PresenceCompositor`) while it lasts; without one, a
  document whose basic status is ``open`` while the user has a registration and ``closed``
  otherwise. A PUBLISH or a REGISTER that changes it (and a publication or binding that
  expires) NOTIFYs the watchers.

It is a user agent of its own on the core's transaction layer (like the echo extension):
the SUBSCRIBE gets 200 (Expires: what was asked, at most ``max_expires``; Contact: the
user at this server), then at once a NOTIFY with the state. In-dialog SUBSCRIBEs refresh
(Expires: 0 ends it); a subscription not refreshed in time ends with
``terminated;reason=timeout``; a NOTIFY answered 481, timing out or failing ends it too.
NOTIFYs of one subscription never overlap: a change while one is on its way is sent when it
completes, with the state of that moment. At most ``max_subscriptions`` are kept.

NOTIFYs go to the subscriber's Contact (through the route set of the SUBSCRIBE's
Record-Route), over the connection it registered on when there is one (the proxy's
``next_hop``), else back to where the SUBSCRIBE came from. Their branches start with
:data:`BRANCH_PREFIX`, so the proxy hands their responses here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .._core.dialog import Dialog
from .._core.ids import IdSource
from .._core.message import Request, Response
from .._core.mwi import MWI_TYPE, MessageCounts, MessageSummary
from .._core.pidf import PIDF_TYPE, Presence
from .._core.subscription import NotifierState, event_of, grant_expires, same_event
from .._core.timers import DEFAULT_TIMERS, TimerConfig
from .._core.transaction import (
    ClientTransaction,
    Event,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    TransactionLayer,
    TransactionTimeout,
    TransportFailed,
    make_response,
)
from .._core.uri import URI
from .._errors import ParseError, ProtocolError
from .common import SERVER_AGENT, Address, Outgoing, ServerIdentity, TransactionUser, destination
from .compositor import PresenceCompositor
from .registrar import Registrar

log = logging.getLogger("sipx.serve")

BRANCH_PREFIX = "z9hG4bKsn"
"""Every branch of the notifier's NOTIFYs starts with this."""
PACKAGES = ("message-summary", "presence")
"""The event packages the server serves."""
PRESENCE = "presence"

Route = Callable[[URI], "tuple[str, Address] | None"]
Key = tuple[str, str, str]  # Call-ID, our tag, the subscriber's tag


@dataclass(eq=False)
class Watch:
    """One subscription the server serves."""

    user: str
    resource: str  # the URI subscribed to, as the documents name it
    dialog: Dialog
    core: NotifierState
    transport: str  # where the SUBSCRIBE came from (the fallback for NOTIFYs)
    source: Address
    sending: ClientTransaction | None = None
    dirty: bool = False  # the state changed while a NOTIFY was on its way
    sent_final: bool = False  # the NOTIFY on its way says "terminated"
    shown: str | None = None  # presence: the document the last NOTIFY carried

    @property
    def key(self) -> Key:
        return (self.dialog.call_id, self.dialog.local_tag, self.dialog.remote_tag)

    @property
    def package(self) -> str:
        return self.core.event.package


class EventNotifier(TransactionUser):
    """The server's notifier; ``handle()`` takes SUBSCRIBEs, ``handle_response()`` the
    NOTIFYs' responses, ``handle_timers()`` the clock (see the module docstring)."""

    def __init__(
        self,
        identity: ServerIdentity,
        *,
        registrar: Registrar,
        users: Mapping[str, str],
        ids: IdSource,
        route: Route,
        mwi: Mapping[str, MessageCounts] | None = None,
        timers: TimerConfig = DEFAULT_TIMERS,
        max_expires: int = 3600,
        max_subscriptions: int = 1024,
    ) -> None:
        self.identity = identity
        self.registrar = registrar
        self.users = users
        self.route = route
        self.mwi: dict[str, MessageCounts] = dict(mwi or {})
        self.max_expires = max_expires
        self.max_subscriptions = max_subscriptions
        self._ids = ids
        self.compositor = PresenceCompositor(max_expires=max_expires, prefix=ids.token(6))
        super().__init__(TransactionLayer(timers))
        self._watches: dict[Key, Watch] = {}
        self._sending: dict[ClientTransaction, Watch] = {}
        self._now = 0.0

    @property
    def subscriptions(self) -> list[Watch]:
        return list(self._watches.values())

    # -- what the proxy asks ---------------------------------------------------------------------
    def handles(self, request: Request) -> bool:
        """A new SUBSCRIBE for a package we serve, or a PUBLISH of presence, to one of our
        users."""
        if request.method not in ("SUBSCRIBE", "PUBLISH") or request.to.tag is not None:
            return False
        try:
            event = event_of(request)
        except ParseError:
            return False
        uri = request.uri
        served = PACKAGES if request.method == "SUBSCRIBE" else (PRESENCE,)
        return (
            event.package in served
            and self.identity.is_ours(uri)
            and uri.user is not None
            and uri.user in self.users
        )

    def owns(self, request: Request) -> bool:
        """An in-dialog request of one of our subscriptions."""
        tag = request.to.tag
        return tag is not None and (request.call_id, tag, request.from_.tag or "") in self._watches

    @staticmethod
    def owns_response(response: Response) -> bool:
        branch = response.top_via.branch or ""
        return branch.startswith(BRANCH_PREFIX)

    # -- input -------------------------------------------------------------------------------
    def handle(
        self, request: Request, now: float, *, transport: str, source: Address
    ) -> list[Outgoing]:
        self._now = now
        self._layer.receive_request(
            request, now, reliable=transport != "UDP", destination=(transport, source)
        )
        self._pump(now)
        return self._drain()

    def handle_response(self, response: Response, now: float) -> list[Outgoing]:
        self._now = now
        self._layer.receive_response(response, now)
        self._pump(now)
        return self._drain()

    def next_deadline(self) -> float | None:
        deadlines = [self._layer.next_deadline()]
        for watch in self._watches.values():
            if watch.sending is not None:
                continue  # what follows is up to its NOTIFY's response
            if not watch.core.terminated:
                deadlines.append(watch.core.expires_at)
            if watch.package == PRESENCE:  # a binding or a publication running out
                for expiry in (
                    self.registrar.last_expiry(watch.user),
                    self.compositor.next_expiry(watch.user),
                ):
                    if expiry is not None and self._now < expiry < math.inf:
                        deadlines.append(expiry)
        known = [d for d in deadlines if d is not None]
        return min(known) if known else None

    def handle_timers(self, now: float) -> list[Outgoing]:
        self._now = now
        self._layer.handle_timers(now)
        self._pump(now)
        self.compositor.expire(now)
        for watch in list(self._watches.values()):
            if watch.core.expired(now):
                log.info("the %s subscription of %s expired", watch.package, watch.user)
                watch.core.terminate("timeout")
                self._notify(watch, now)
            elif watch.package == PRESENCE and watch.shown != self._presence(watch, now):
                self._notify(watch, now)
        self._pump(now)
        return self._drain()

    # -- state changes -------------------------------------------------------------------------
    def set_message_summary(self, user: str, counts: MessageCounts, now: float) -> list[Outgoing]:
        """New message counts for ``user``: NOTIFY its message-summary watchers."""
        self._now = now
        self.mwi[user] = counts
        for watch in list(self._watches.values()):
            if watch.user == user and watch.package == "message-summary":
                self._notify(watch, now)
        self._pump(now)
        return self._drain()

    def registration_changed(self, user: str, now: float) -> list[Outgoing]:
        """A REGISTER for ``user`` was applied: NOTIFY presence watchers if it changed."""
        self._now = now
        self._presence_changed(user, now)
        self._pump(now)
        return self._drain()

    def _presence_changed(self, user: str, now: float) -> None:
        for watch in list(self._watches.values()):
            if (
                watch.user == user
                and watch.package == PRESENCE
                and watch.shown != self._presence(watch, now)
            ):
                self._notify(watch, now)

    # -- the transaction user --------------------------------------------------------------------
    def _dispatch(self, event: Event, now: float) -> None:
        if isinstance(event, RequestReceived):
            try:
                self._on_request(event.transaction, event.request, now)
            except ParseError as exc:
                log.info("notifier: bad %s: %s", event.request.method, exc)
                self._reply(event.transaction, event.request, 400, now, reason=str(exc)[:60])
        elif isinstance(event, ResponseReceived):
            if event.response.status_code >= 200:
                self._on_final(event.transaction, event.response, now)
        elif isinstance(event, TransactionTimeout | TransportFailed):
            transaction = event.transaction
            watch = (
                self._sending.pop(transaction, None)
                if isinstance(transaction, ClientTransaction)
                else None
            )
            if watch is not None:
                log.info("notifier: a NOTIFY to %s failed; ending the subscription", watch.user)
                watch.sending = None
                watch.core.terminate(None)
                self._forget(watch)

    def _reply(
        self,
        transaction: ServerTransaction,
        request: Request,
        code: int,
        now: float,
        *,
        reason: str | None = None,
        to_tag: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        if to_tag is None and request.to.tag is None:
            to_tag = self._ids.tag()
        response = make_response(request, code, reason, to_tag=to_tag)
        response.headers["Server"] = SERVER_AGENT
        for name, value in (headers or {}).items():
            response.headers[name] = value
        transaction.respond(response, now)
        return response

    def _on_request(self, transaction: ServerTransaction, request: Request, now: float) -> None:
        if request.method == "PUBLISH" and request.to.tag is None:
            self._publish(transaction, request, now)
            return
        if request.method != "SUBSCRIBE":
            self._reply(transaction, request, 405, now, headers={"Allow": "SUBSCRIBE"})
            return
        if request.to.tag is not None:
            self._refresh(transaction, request, now)
            return
        event = event_of(request)
        if event.package not in PACKAGES:
            self._reply(
                transaction, request, 489, now, headers={"Allow-Events": ", ".join(PACKAGES)}
            )
            return
        if not request.contact:
            raise ParseError("a SUBSCRIBE needs a Contact")
        granted = grant_expires(request.expires, default=3600, maximum=self.max_expires)
        user = request.uri.user or ""
        tag = self._ids.tag()
        transport, source = destination(transaction)
        contact = f"<{self.identity.uri(transport, user)}>"
        self._reply(
            transaction,
            request,
            200,
            now,
            to_tag=tag,
            headers={"Expires": str(granted), "Contact": contact},
        )
        dialog = Dialog.from_uas_request(request, tag, confirmed=True)
        resource = str(request.uri.replace(params={}, headers={}))
        watch = Watch(user, resource, dialog, NotifierState(event, granted, now), transport, source)
        if granted == 0:
            watch.core.terminate("timeout")  # a fetch: the state once, and done
        self._watches[watch.key] = watch
        while len(self._watches) > self.max_subscriptions:  # the oldest give way
            self._forget(next(iter(self._watches.values())))
        self._notify(watch, now)

    def _publish(self, transaction: ServerTransaction, request: Request, now: float) -> None:
        """A PUBLISH of presence for one of our users, by that user (the proxy checked the
        credentials of its From): to the compositor, then NOTIFY the watchers."""
        user = request.uri.user or ""
        if request.from_.uri.user != user:
            self._reply(transaction, request, 403, now, reason="Publish only your own state")
            return
        if event_of(request).package != PRESENCE:
            self._reply(transaction, request, 489, now, headers={"Allow-Events": PRESENCE})
            return
        answer = self.compositor.publish(user, request, now)
        self._reply(
            transaction, request, answer.status, now, reason=answer.reason, headers=answer.headers
        )
        if answer.status < 300:
            self._presence_changed(user, now)

    def _refresh(self, transaction: ServerTransaction, request: Request, now: float) -> None:
        watch = self._watches.get((request.call_id, request.to.tag or "", request.from_.tag or ""))
        if watch is None:
            self._reply(transaction, request, 481, now)
            return
        try:
            watch.dialog.receive_request(request)
        except ProtocolError as exc:
            self._reply(transaction, request, 500, now, reason=str(exc)[:60])
            return
        if not same_event(event_of(request), watch.core.event):
            self._reply(transaction, request, 481, now)
            return
        granted = grant_expires(request.expires, default=3600, maximum=self.max_expires)
        self._reply(
            transaction,
            request,
            200,
            now,
            headers={
                "Expires": str(granted),
                "Contact": f"<{self.identity.uri(watch.transport, watch.user)}>",
            },
        )
        watch.core.refresh(granted, now)
        self._notify(watch, now)

    def _on_final(self, transaction: ClientTransaction, response: Response, now: float) -> None:
        watch = self._sending.pop(transaction, None)
        if watch is None:
            return
        watch.sending = None
        if response.status_code >= 300:
            log.info("notifier: NOTIFY to %s got %s", watch.user, response.status_code)
        if response.status_code == 481:  # the subscriber has forgotten it
            watch.core.terminate(None)
            self._forget(watch)
        elif watch.sent_final:
            self._forget(watch)
        elif watch.dirty or watch.core.terminated:  # a change (or the end) came meanwhile
            self._notify(watch, now)

    # -- NOTIFY --------------------------------------------------------------------------------
    def _notify(self, watch: Watch, now: float) -> None:
        """Send the current state, now or when the NOTIFY on its way completes."""
        if watch.sending is not None:
            watch.dirty = True
            return
        watch.dirty = False
        state = watch.core.header(now)
        watch.sent_final = state.terminated
        headers = {"Event": str(watch.core.event), "Subscription-State": str(state)}
        content_type, body = self._document(watch, now)
        headers["Content-Type"] = content_type
        try:
            request = watch.dialog.create_request("NOTIFY", headers=headers, content=body)
        except ProtocolError:
            self._forget(watch)
            return
        hop = self.route(watch.dialog.next_hop())
        transport, address = hop if hop is not None else (watch.transport, watch.source)
        branch = BRANCH_PREFIX + self._ids.token(10)
        request.headers.prepend("Via", self.identity.via(transport, branch))
        request.headers["Contact"] = f"<{self.identity.uri(transport, watch.user)}>"
        request.headers["User-Agent"] = SERVER_AGENT
        transaction = self._layer.send_request(
            request, now, reliable=transport != "UDP", destination=(transport, address)
        )
        watch.sending = transaction
        self._sending[transaction] = watch

    def _document(self, watch: Watch, now: float) -> tuple[str, str]:
        if watch.package == "message-summary":
            counts = self.mwi.get(watch.user, MessageCounts())
            summary = MessageSummary(counts.new > 0, watch.resource, {"voice-message": counts})
            return MWI_TYPE, summary.to_text()
        watch.shown = self._presence(watch, now)
        return PIDF_TYPE, watch.shown

    def _presence(self, watch: Watch, now: float) -> str:
        """The presence document of the watched user: the one published last, else open
        while registered."""
        published = self.compositor.document(watch.user, now)
        if published is not None:
            return published.decode("utf-8", "replace")
        is_open = bool(self.registrar.lookup(watch.user, now))
        note = "registered" if is_open else "not registered"
        presence = Presence.build(watch.resource, "open" if is_open else "closed", note=note)
        return presence.to_xml()

    def _forget(self, watch: Watch) -> None:
        self._watches.pop(watch.key, None)
        if watch.sending is not None:
            self._sending.pop(watch.sending, None)
            watch.sending = None


def parse_mwi_counts(text: str) -> MessageCounts:
    """``"2/8"`` (new/old) or ``"2"`` -> MessageCounts; ValueError otherwise."""
    new, slash, old = text.partition("/")
    try:
        counts = MessageCounts(int(new), int(old) if slash else 0)
    except ValueError:
        raise ValueError(f"message counts are NEW/OLD (e.g. 2/8), not {text!r}") from None
    return counts


__all__ = ["BRANCH_PREFIX", "PACKAGES", "EventNotifier", "Watch", "parse_mwi_counts"]
