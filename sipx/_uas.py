"""The user agent server side of a client: answering the requests it receives.

Requests reach the client's :class:`UserAgentServer` through the transaction layer. New
INVITEs become :class:`~sipx.Call` objects (delivered to an INVITE handler or to
``client.calls()``); in-dialog requests go to their call; other methods go to handlers
registered with ``client.on_request(method, handler)`` or get the defaults users expect:
OPTIONS 200 with Allow/Accept/Supported, MESSAGE 200, BYE and CANCEL handled, known but
unhandled methods 405 with Allow, unknown methods 501. In a call, REFER is carried out
(:mod:`sipx._transfer`) unless a handler refuses it, an INVITE with Replaces takes the place
of the call it names, and INFO reaches the call's ``on_info`` handler and ``info_requests()``
(an Info-Package we did not declare gets 469, RFC 6086). Subscriptions (RFC 6665): NOTIFYs go
to our subscriptions first (:mod:`sipx._subscription`; one that matches none gets 481),
SUBSCRIBEs to the packages served with ``on_subscribe`` (:mod:`sipx._notifier`).
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from ._call import (
    Call,
    CallState,
    ack_received,
    end_call,
    final_sent,
    info_handler_of,
    info_received,
    keep_less,
    media_of,
    prack_received,
    session_refused,
    target_refresh_received,
)
from ._call_media import DTMF_INFO_TYPES
from ._core.builder import attach_body, copy_record_route
from ._core.dialog import Dialog, DialogState, dialog_id_of
from ._core.header_types import is_token
from ._core.headers import STALE, Headers, header_key
from ._core.message import Request, Response
from ._core.option_tags import RELIABLE_PROVISIONAL, SUPPORTED, unsupported
from ._core.sdp import SDPBody
from ._core.session_timer import MIN_SE, OPTION_TAG, request_headers
from ._core.transaction import ServerTransaction, final_response_bytes, make_response
from ._errors import ParseError, ProtocolError, SIPError
from ._idle_calls import IdleCalls
from ._in_dialog import receive_in_dialog
from ._media_stream import MediaClock, MediaStream, bind_rtp_pair
from ._notifier import Notifiers
from ._session_timer import SessionTimers
from ._subscription import Subscribers
from ._transfer import Transfers

if TYPE_CHECKING:
    from ._async_client import AsyncClient
    from ._engine import Engine
    from ._next_hop import NextHop
    from ._uac import UserAgentClient

log = logging.getLogger("sipx")

ALLOWED_METHODS = (
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "MESSAGE",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "INFO",
    "PRACK",
    "UPDATE",
)
DIALOG_CREATING = frozenset({"INVITE", "SUBSCRIBE", "REFER"})
# Listed in Allow only once a handler takes them (out of dialog they get 405 otherwise).
_NEED_A_HANDLER = frozenset({"SUBSCRIBE", "REFER"})
# What a response copies from its request (RFC 3261 8.2.6.2).
_COPIED = frozenset(header_key(name) for name in ("Via", "From", "To", "Call-ID", "CSeq"))
# What sipx's own media can carry (PCMU, PCMA and RFC 4733 events), for SDP answers.
_SUPPORTED_CODECS = (
    {"payload": "0", "name": "PCMU", "rate": 8000},
    {"payload": "8", "name": "PCMA", "rate": 8000},
    {"payload": "101", "name": "telephone-event", "rate": 8000, "fmtp": "0-16"},
)
RequestHandler = Callable[..., Any]  # IncomingRequest (or Call for INVITE) -> Response | None


class IncomingRequest:
    """A request the client received; answer it once with :meth:`respond`.

    A handler that returns without responding gets the default answer for its method
    (200 for MESSAGE, NOTIFY, INFO, OPTIONS, BYE; 202 for REFER; 500 for other methods,
    since a handler that neither answers nor returns a response is a bug).
    """

    def __init__(
        self, uas: UserAgentServer, transaction: ServerTransaction, request: Request
    ) -> None:
        self._uas = uas
        self.transaction = transaction
        self.request = request
        self.response: Response | None = None
        self.call: Call | None = None

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def headers(self) -> Any:
        return self.request.headers

    @property
    def body(self) -> SDPBody | str | None:
        return self.request.body

    @property
    def text(self) -> str:
        return self.request.text

    @property
    def responded(self) -> bool:
        return self.response is not None and self.response.status_code >= 200

    def respond(
        self,
        status_code: int,
        reason: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        body: str | bytes | SDPBody | None = None,
        content_type: str | None = None,
    ) -> Response:
        request = self.request
        final = status_code >= 200 and self.method != "INVITE"
        uas = self._uas
        # A final answer to a non-INVITE needs its To tag no more: taken, not kept.
        tag = uas.take_tag(request) if final else uas.local_tag(request)
        response = make_response(request, status_code, reason, to_tag=tag)
        if 100 < status_code < 300 and self.method in DIALOG_CREATING:
            copy_record_route(request, response)
        for name, value in (headers or {}).items():
            response.headers[name] = value
        if body is not None:
            attach_body(response, body, content_type)
        return self._send(response)

    def respond_with_fields(
        self, status_code: int, fields: Sequence[tuple[str, str, str]]
    ) -> Response:
        """:meth:`respond` a final answer to a non-INVITE with header ``fields`` checked
        already (``(key, name, value)``, as :attr:`Headers.entries <sipx.Headers>` holds
        them): the cached capabilities of a 200 to OPTIONS."""
        request = self.request
        uas = self._uas
        response = make_response(request, status_code, to_tag=uas.take_tag(request), extra=fields)
        if not uas.engine.respond(self.transaction, response):  # self._send(response), inline
            raise ProtocolError(f"{self.method} was already answered")
        self.response = response
        return response

    def _answer_with_fields(self, status_code: int, fields: Sequence[tuple[str, str, str]]) -> None:
        """:meth:`respond_with_fields` where nobody reads the Response (the default 200 to
        an OPTIONS or a BYE served at once): its bytes are written straight from the request's
        fields and go out without a Response made, where the transaction takes them so
        (see ``final_response_bytes``); else as :meth:`respond_with_fields` does."""
        request = self.request
        uas = self._uas
        tag = uas.take_tag(request)
        data = final_response_bytes(request, status_code, to_tag=tag, extra=fields)
        if data is not None and uas.engine.respond_serialised(self.transaction, status_code, data):
            return
        response = make_response(request, status_code, to_tag=tag, extra=fields)
        self._send(response)

    def _send(self, response: Response) -> Response:
        if not self._uas.engine.respond(self.transaction, response):
            raise ProtocolError(f"{self.method} was already answered")
        self.response = response
        return response

    def _complete(self, response: Response) -> Response:
        """A handler's own Response; one built from scratch (no Via) gets what RFC 3261
        8.2.6 copies from the request, a To tag and, where due, the Record-Route."""
        if "Via" in response.headers:
            return response
        full = make_response(
            self.request,
            response.status_code,
            response.reason_phrase,
            to_tag=self._uas.local_tag(self.request),
        )
        if 100 < response.status_code < 300 and self.method in DIALOG_CREATING:
            copy_record_route(self.request, full)
        for name, value in response.headers.multi_items():
            if header_key(name) not in _COPIED:
                full.headers.add(name, value)
        full.content = response.content
        return full

    def __repr__(self) -> str:
        return f"<IncomingRequest {self.method} {self.request.uri}>"


ANSWERED_AT_ONCE = frozenset({"OPTIONS", "INVITE", "BYE", "CANCEL", "PRACK"})
"""Methods whose default handling never awaits (an INVITE goes to ``incoming_calls()``
or is refused; the user answers it later, in their own task)."""


class UserAgentServer:
    """Answers the requests one user agent receives: calls, in-dialog requests, handlers."""

    def __init__(
        self, engine: Engine, next_hop: NextHop, uac: UserAgentClient, client: AsyncClient
    ) -> None:
        self.engine = engine
        self.next_hop = next_hop
        self.uac = uac
        self.client = client  # the public client, handed to the Calls it creates
        self.handlers: dict[str, RequestHandler] = {}
        self.media_clock = MediaClock()  # paces and reads every call's RTP, one task
        self.rtp_host = "0.0.0.0"
        self.rtp_ports = (10000, 20000)
        self.reliable_provisional = True  # 100rel (RFC 3262) supported: AsyncClient option
        # Session timers (RFC 4028): the interval we ask for (None: off) and our minimum.
        self.session_expires: int | None = None
        self.min_se = MIN_SE
        self.session_timers = SessionTimers(engine.start_soon)  # every call's, one task
        self.idle_calls = IdleCalls(engine.start_soon, keep_less, engine.now)  # compacted later
        self._call_send, self._call_receive = trio.open_memory_channel[Call](math.inf)
        self._listening = 0
        self._tags: dict[tuple[str, str], str] = {}
        self._checked_handler: RequestHandler | None = None  # the INVITE handler last seen
        self._checked_async = False  # whether it is a coroutine function
        self._capabilities_cache: (
            tuple[tuple[object, ...], tuple[tuple[str, str, str], ...]] | None
        ) = None
        self.transfers = Transfers(engine, uac, client)
        self.subscribers = Subscribers(engine, uac)  # our subscriptions (RFC 6665)
        self.notifiers = Notifiers(engine, uac, self)  # the ones we serve
        # The Info Packages (RFC 6086) the client declared it takes (lower-case names).
        self.info_packages: tuple[str, ...] = ()
        engine.on_request = self.serve
        engine.on_request_at_once = self.serve_at_once
        engine.on_ack = self.on_ack
        engine.add_wind_down(self._wind_down)

    # -- registration ----------------------------------------------------------------------
    def on_request(self, method: str, handler: RequestHandler) -> None:
        self.handlers[method.upper()] = handler

    async def incoming_calls(self) -> AsyncIterator[Call]:
        self._listening += 1
        receive = self._call_receive
        try:
            while True:
                # Calls already queued are taken without a trip through trio's scheduler
                # each (a checkpoint only if cancelled); an empty queue waits as before.
                await trio.lowlevel.checkpoint_if_cancelled()
                try:
                    call = receive.receive_nowait()
                except trio.WouldBlock:
                    try:
                        call = await receive.receive()
                    except trio.EndOfChannel:
                        return
                except trio.EndOfChannel:
                    return
                if call.state is CallState.INCOMING:
                    yield call
        finally:
            self._listening -= 1
            if not self._listening:
                # Calls queued for a listener that has just gone: nobody will answer them.
                while True:
                    try:
                        call = self._call_receive.receive_nowait()
                    except trio.WouldBlock:
                        break
                    if call.state is CallState.INCOMING and call.final_response is None:
                        call.reject(480, "Temporarily Unavailable")

    async def _wind_down(self) -> None:
        """The client is closing: 480 to unanswered calls, BYE to established ones."""
        for call in list(self.engine.pending_calls.values()):
            if call.direction == "incoming" and call.final_response is None:
                try:
                    call.reject(480, "Temporarily Unavailable")
                except ProtocolError:
                    end_call(call, "local")
        async with trio.open_nursery() as nursery:
            for call in list(self.engine.calls.values()):
                if call.dialog is not None and not call.ended:
                    nursery.start_soon(self._quiet_bye, call.dialog, "on closing")
            # Dialogs of a bare invite() + ack(), which have no Call.
            with_calls = {call.dialog.id for call in self.engine.calls.values() if call.dialog}
            for dialog in list(self.engine.dialogs.values()):
                if dialog.id not in with_calls and dialog.state is DialogState.CONFIRMED:
                    nursery.start_soon(self._quiet_bye, dialog, "on closing")

    async def _quiet_bye(self, dialog: Dialog, when: str) -> None:
        """BYE that only logs a failure (its call, if any, ends as ended by us anyway)."""
        try:
            await self.uac.bye(dialog)
        except SIPError as exc:  # a peer that never ACKed may not answer the BYE either
            log.info("BYE %s failed: %s", when, exc)

    # -- helpers used by Call ------------------------------------------------------------------
    def local_tag(self, request: Request) -> str | None:
        existing = request.to.tag
        if existing:
            return existing
        key = (request.call_id, request.from_.tag or "")
        tag = self._tags.get(key)
        if tag is None:
            tag = self.engine.ids.tag()
            self._tags[key] = tag
            if len(self._tags) > 4096:
                self._tags.pop(next(iter(self._tags)))
        return tag

    def take_tag(self, request: Request) -> str | None:
        """The To tag of a final answer to a non-INVITE: the request's own, the one a
        provisional answer used (forgotten now), or a new one never kept."""
        to = request.headers.typed.get("to")  # parsed on receipt: the cached view
        existing = (request.to if to is None else to).params.get("tag")  # (its .tag)
        if existing:
            return existing
        if not self._tags:  # self.call_tag(request), whose map is empty: a new tag
            return self.engine.ids.tag()
        return self.call_tag(request)

    def call_tag(self, request: Request) -> str:
        """The To tag of a new call: the one its INVITE's 487 took if a CANCEL was answered
        before the INVITE was served (taken out of the map), else a new one. The call keeps
        it (``call.local_tag``); the map does not, so the call's end has nothing to drop.
        (Also :meth:`take_tag`'s for a request without one.)"""
        if self._tags:
            tag = self._tags.pop((request.call_id, request.from_.tag or ""), None)
            if tag is not None:
                return tag
        return self.engine.ids.tag()

    def forget_tag(self, request: Request) -> None:
        """The request is answered for good (or its call ended): its To tag is not needed."""
        self._tags.pop((request.call_id, request.from_.tag or ""), None)

    @property
    def supported(self) -> tuple[str, ...]:
        """The option tags this user agent supports (``Supported``; a ``Require`` of any
        other gets 420)."""
        tags = [t for t in SUPPORTED if t != RELIABLE_PROVISIONAL or self.reliable_provisional]
        if self.session_expires is not None:
            tags.append(OPTION_TAG)  # session timers (RFC 4028)
        return tuple(tags)

    def contact_for(self, request: Request) -> str:
        return self.next_hop.contact_for(request)

    def new_media_stream(self) -> MediaStream:
        """An RTP socket from the client's port range, for the SDP about to be written."""
        return MediaStream(*bind_rtp_pair(self.rtp_host, self.rtp_ports))

    def default_sdp(self, offer: SDPBody | None, *, port: int | None = None) -> SDPBody:
        """Our SDP: an answer to ``offer``, or a PCMU/PCMA offer when there is none; media
        on ``port`` (8000 when the call carries no sipx media), a new o= session id each
        time (RFC 8866 5.2)."""
        host = self.next_hop.local_host()
        user = self.next_hop.default_user
        session_id = int(self.engine.ids.token(4), 16)
        if offer is not None:
            answer = SDPBody.create_answer(
                offer,
                origin_username=user,
                origin_address=host,
                connection_address=host,
                port=port or 8000,
                session_id=session_id,
                supported_codecs=_SUPPORTED_CODECS if port else None,
            )
            if port:  # RFC 5761: RTCP on the RTP port when the offerer asks for it
                for offered, ours in zip(offer.media, answer.media, strict=False):
                    if offered.has_attribute("rtcp-mux") and ours.port:
                        ours.attributes.append(("rtcp-mux", None))
            return answer
        return SDPBody.create_offer(
            session_name="sipx",
            origin_username=user,
            origin_address=host,
            connection_address=host,
            session_id=session_id,
            media_specs=[
                {
                    "media": "audio",
                    "port": port or 8000,
                    "codecs": [
                        {"payload": "0", "name": "PCMU", "rate": "8000"},
                        {"payload": "8", "name": "PCMA", "rate": "8000"},
                        {
                            "payload": "101",
                            "name": "telephone-event",
                            "rate": "8000",
                            "fmtp": "0-16",
                        },
                    ],
                }
            ],
        )

    def call_headers(self) -> dict[str, str]:
        """What our INVITEs carry besides the basics: Allow (the peer may UPDATE us) and,
        with session timers on, Supported: timer, Session-Expires and Min-SE (RFC 4028 7.1)."""
        fields = {"Allow": self._allow()}
        if self.session_expires is not None:
            fields.update(request_headers(self.session_expires, self.min_se))
        return fields

    def allow_header(self) -> str:
        """The Allow header of our responses (the methods we take)."""
        return self._capabilities()[0][2]  # Allow comes first in the cached capabilities

    def early_dialog(self, call: Call, response: Response) -> Dialog | None:
        """The early dialog a provisional response with a To tag makes (RFC 3261 12.1.1),
        kept so that requests within it (UPDATE) find the call; answer() confirms it."""
        tag = response.to.tag
        if not tag:
            return None
        try:
            dialog = Dialog.from_uas_request(call.invite, tag, confirmed=False)
        except (ProtocolError, ParseError):
            return None
        existing = self.engine.dialogs.get(dialog.id)
        if existing is not None:
            return existing
        self.engine.dialogs[dialog.id] = dialog
        self.engine.calls[dialog.id] = call
        return dialog

    def dialog_from_incoming(
        self,
        invite: Request,
        response: Response,
        call: Call,
        early: Dialog | None,
        tag: str | None = None,
    ) -> Dialog:
        """The dialog our 2xx to ``invite`` makes: ``early``, the one the call's provisional
        response made (:meth:`early_dialog`), when it has the same id, else a new one.
        ``tag``: the 2xx's To tag when the caller knows it (else read from the 2xx)."""
        if not tag:
            tag = response.to.tag or call.local_tag or self.local_tag(invite) or ""
        if tag == call.local_tag:
            tag = call.local_tag  # the call's own string: the dialog keeps no copy of it
        if (
            early is not None
            and early.invite is invite
            and early.local_tag == tag
            and self.engine.dialogs.get(early.id) is early
        ):
            self.engine.pending_calls.pop(call.call_id, None)
            return early  # made by a provisional response; the ACK confirms it
        dialog = Dialog.from_uas_request(invite, tag, confirmed=False)
        dialog_id = dialog.id
        self.engine.dialogs[dialog_id] = dialog
        self.engine.calls[dialog_id] = call
        self.engine.pending_calls.pop(call.call_id, None)
        return dialog

    def retransmit_2xx(
        self, call: Call, response: Response, seq: int | None = None, now: float | None = None
    ) -> None:
        """RFC 3261 13.3.1.4: resend the 2xx at T1, 2*T1, ... T2 until the ACK arrives, and
        end the call after 64*T1 without one. "This is independent of whatever transport
        protocols are used": the ACK is end to end and may cross an unreliable hop.
        ``seq``: the 2xx's CSeq number when the caller knows it (the INVITE's, copied: the
        2xx's CSeq is not parsed); ``now``: when the 2xx was sent (else read)."""
        if call.transaction is None or call.dialog is None:
            return
        dialog = call.dialog
        # One partial object per call (a closure would be a function and three cells).
        no_ack = partial(UserAgentServer.no_ack, self, call, dialog)
        if seq is None:
            seq = response.cseq.seq
        self.engine.retransmit_2xx((dialog.id, seq), call.transaction, response, no_ack, now)

    def no_ack(self, call: Call, dialog: Dialog) -> None:
        """64·T1 without the ACK of our 2xx to ``call``'s INVITE: end it, then BYE."""
        if call.acked or call.ended:
            return
        log.warning("no ACK for our 2xx to %s: ending the call", call.call_id)
        end_call(call, "timeout")  # first: the BYE would record the end as "local"
        if self.engine.running:
            self.engine.start_soon(self._quiet_bye, dialog, "after the missing ACK")

    # -- the request path --------------------------------------------------------------------
    async def serve(self, transaction: ServerTransaction, request: Request) -> None:
        incoming = IncomingRequest(self, transaction, request)
        try:
            await self._dispatch(incoming)
        except Exception:
            self._failed(incoming)

    def _failed(self, incoming: IncomingRequest) -> None:
        """Serving ``incoming`` raised: log it and leave no request unanswered."""
        log.exception("handler for %s failed", incoming.method)
        call = incoming.call
        if call is not None:
            if call.final_response is None:  # else the INVITE would go unanswered
                call.reject(500)
        elif not incoming.responded:
            incoming.respond(500)

    def serve_at_once(self, transaction: ServerTransaction, request: Request) -> bool:
        """Serve ``request`` on the spot, without a task, when its answer needs no await:
        the methods of ``ANSWERED_AT_ONCE`` with no handler of the user's (CANCEL never
        has one). True when it was served. :meth:`serve` then runs to its end without
        suspending (it reaches no checkpoint on these paths); should it ever suspend, that
        is a bug: it is logged and the request answered 500, never half-run elsewhere."""
        if self._needs_a_task(request):
            return False
        incoming = IncomingRequest(self, transaction, request)
        try:
            if self._dispatch_at_once(incoming):
                return True
        except Exception:
            self._failed(incoming)
            return True
        method = request.method
        coroutine = self.serve(transaction, request)
        try:
            coroutine.send(None)
        except StopIteration:
            return True
        coroutine.close()
        log.error("serving %s at once suspended; answered 500", method)
        if transaction.last_response is None or transaction.last_response.status_code < 200:
            self.engine.respond(transaction, make_response(request, 500))
        return True

    def _dispatch_at_once(self, incoming: IncomingRequest) -> bool:
        """:meth:`_dispatch` of the commonest requests served at once, without coroutines:
        a new INVITE, an OPTIONS outside a dialog, a BYE in one. False (nothing done yet)
        for any other request."""
        request = incoming.request
        method = request.method
        to = request.headers.typed.get("to")  # parsed on receipt: the cached view
        if (request.to if to is None else to).params.get("tag"):  # (request.to.tag)
            if method != "BYE":
                return False
        elif method != "INVITE" and method != "OPTIONS":
            return False
        first = request.headers.first  # no Require (the usual request): no call to check it
        if (first is STALE or "require" in first) and self._bad_extension(incoming):
            return True
        if method == "INVITE":
            self._new_call(incoming)
        elif method == "OPTIONS":
            incoming._answer_with_fields(200, self._capabilities())  # no Response made
        else:
            dialog = self._dialog_of(request)
            if dialog is None:
                incoming.respond(481)
            elif receive_in_dialog(dialog, incoming):
                self._bye(incoming, dialog, at_once=True)
        return True

    def _needs_a_task(self, request: Request) -> bool:
        """False for the requests :meth:`serve_at_once` takes: those of ``ANSWERED_AT_ONCE``
        with no handler of the user's (a new INVITE only while ``calls()`` listens), CANCEL
        always, and a new INVITE with a handler (its Call is made at once, so that a CANCEL
        right behind finds it; a plain handler runs at once too, an async one gets the Call
        in a task of its own)."""
        method = request.method
        if method not in ANSWERED_AT_ONCE:
            return True
        if method == "INVITE" and method not in self.handlers and not request.to.tag:
            # Nobody in calls() yet: a task gives a listener being started its chance
            # (served at once, the INVITE would get 480 before its loop begins).
            return not self._listening
        if method == "CANCEL" or method not in self.handlers:
            return False
        return method != "INVITE" or bool(request.to.tag)

    async def _dispatch(self, incoming: IncomingRequest) -> None:
        request = incoming.request
        method = request.method
        if method != "CANCEL" and self._bad_extension(incoming):
            return
        if request.to.tag:
            await self._in_dialog(incoming)
            return
        if method == "INVITE":
            self._new_call(incoming)
            return
        if method == "CANCEL":
            self._cancel(incoming)
            return
        subscribe = method == "SUBSCRIBE" and method not in self.handlers
        if subscribe and await self.notifiers.subscribe_received(incoming):
            return  # a package served with client.on_subscribe (or 489)
        if method == "PRACK":
            incoming.respond(481)  # RFC 3262 3: it matches no reliable 1xx of ours
            return
        if await self._run_handler(incoming):
            return
        if method == "OPTIONS":
            incoming.respond_with_fields(200, self._capabilities())
        elif method in ("MESSAGE", "NOTIFY", "INFO"):
            incoming.respond(200)
        elif method in ("BYE", "UPDATE", "PRACK"):
            incoming.respond(481)  # only ever sent within a dialog
        elif method in ALLOWED_METHODS or method in ("REGISTER", "PUBLISH"):
            incoming.respond(405, headers={"Allow": self._allow()})
        else:
            incoming.respond(501)

    def _capabilities(self) -> tuple[tuple[str, str, str], ...]:
        """Allow, Accept, Supported (and Allow-Events) of a 200 to OPTIONS: made again only
        when what they list has changed (handlers, packages, extensions)."""
        key = (
            tuple(self.handlers),
            tuple(self.notifiers.handlers),
            self.reliable_provisional,
            self.session_expires is not None,
        )
        cached = self._capabilities_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        packages = self.notifiers.packages
        headers = Headers()  # checked once here, copied as they are into each 200
        headers["Allow"] = self._allow(packages)
        headers["Accept"] = "application/sdp, text/plain"
        headers["Supported"] = ", ".join(self.supported)
        if packages:  # RFC 6665 8.2.2: the packages we are a notifier for
            headers["Allow-Events"] = ", ".join(packages)
        fields = tuple(headers.entries)
        self._capabilities_cache = (key, fields)
        return fields

    def _bad_extension(self, incoming: IncomingRequest) -> bool:
        """RFC 3261 8.2.2.3: a Require we do not support gets 420 with Unsupported, before
        anything else sees the request."""
        if incoming.request.headers.first_of_key("require") is None:
            return False  # the usual case: no Require, no list of what we support made
        missing = unsupported(incoming.request, self.supported)
        if not missing:
            return False
        log.info("%s requires %s: 420", incoming.method, ", ".join(missing))
        incoming.respond(420, headers={"Unsupported": ", ".join(missing)})
        self.forget_tag(incoming.request)
        return True

    def _allow(self, packages: Sequence[str] | None = None) -> str:
        if packages is None:
            packages = self.notifiers.packages
        handled = set(self.handlers) | ({"SUBSCRIBE"} if packages else set())
        methods = [m for m in ALLOWED_METHODS if m not in _NEED_A_HANDLER or m in handled]
        methods += [m for m in self.handlers if m not in methods]
        return ", ".join(methods)

    def set_info_packages(self, packages: Sequence[str]) -> None:
        """Declare the Info Packages we accept (``AsyncClient(info_packages=...)``)."""
        if isinstance(packages, str) or not all(
            isinstance(name, str) and is_token(name) for name in packages
        ):
            raise ValueError(f"info_packages is a sequence of package names, not {packages!r}")
        self.info_packages = tuple(dict.fromkeys(name.lower() for name in packages))

    async def _run_handler(
        self, incoming: IncomingRequest, handler: RequestHandler | None = None
    ) -> bool:
        """Run ``handler`` (the method's handler by default); False when there is none."""
        if handler is None:
            handler = self.handlers.get(incoming.method)
        if handler is None:
            return False
        result = handler(incoming)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, Response) and not incoming.responded:
            result = incoming._complete(result)
            if not self.engine.respond(incoming.transaction, result):
                raise ProtocolError("handler's response was refused by the transaction")
            incoming.response = result
            if result.status_code >= 200 and incoming.method != "INVITE":
                self.forget_tag(incoming.request)
        if not incoming.responded:
            defaults = {
                "MESSAGE": 200,
                "NOTIFY": 200,
                "INFO": 200,
                "REFER": 202,
                "OPTIONS": 200,
                "BYE": 200,
            }
            incoming.respond(defaults.get(incoming.method, 500))
        return True

    def _new_call(self, incoming: IncomingRequest) -> None:
        request = incoming.request
        call = Call(
            self,
            request,
            direction="incoming",
            transaction=incoming.transaction,
            local_tag=self.call_tag(request),
        )
        incoming.call = call
        self.engine.pending_calls[request.call_id] = call
        if session_refused(call):
            return  # 422 or 400: the session interval
        replaces = request.headers.get_first("Replaces")
        if replaces is not None:  # RFC 3891: it takes the place of one of our calls
            self.transfers.invite_with_replaces(call, replaces)
            return
        handler = self.handlers.get("INVITE")
        if handler is not None:
            if self._is_async(handler):
                self.engine.start_soon(self._run_call_handler, handler, call)
            else:
                self._call_handler_at_once(handler, call)
            return
        if self._listening:
            self._call_send.send_nowait(call)
            return
        call.reject(480, "Temporarily Unavailable")

    def _is_async(self, handler: RequestHandler) -> bool:
        """Whether ``handler`` is a coroutine function (asked once per handler set)."""
        if handler is not self._checked_handler:
            self._checked_handler = handler
            self._checked_async = inspect.iscoroutinefunction(handler)
        return self._checked_async

    def _call_handler_at_once(self, handler: RequestHandler, call: Call) -> None:
        """A plain INVITE handler runs as the INVITE arrives, on the receive path (no
        task); what it returns that is awaitable (a lambda's coroutine) is awaited in a
        task. A handler that fails leaves no INVITE unanswered."""
        try:
            result = handler(call)
        except Exception:
            self._call_handler_failed(call)
            return
        # (None, the usual, is not awaitable: no isawaitable call, whose ABC check is slow)
        if result is not None and inspect.isawaitable(result):
            self.engine.start_soon(self._await_call_handler, result, call)

    async def _run_call_handler(self, handler: RequestHandler, call: Call) -> None:
        """The user's async INVITE handler with its new Call, in a task of its own (a
        CANCEL may have ended the call already: ``call.ended``); a handler that fails
        leaves no INVITE unanswered."""
        try:
            result = handler(call)
            if inspect.isawaitable(result):
                await result
        except Exception:
            self._call_handler_failed(call)

    async def _await_call_handler(self, result: Awaitable[Any], call: Call) -> None:
        """What a plain INVITE handler returned that is awaitable, awaited in a task."""
        try:
            await result
        except Exception:
            self._call_handler_failed(call)

    def _call_handler_failed(self, call: Call) -> None:
        log.exception("handler for INVITE failed")
        if call.final_response is None:
            call.reject(500)

    def _cancel(self, incoming: IncomingRequest) -> None:
        target = self.engine.layer.find_transaction_to_cancel(incoming.request)
        if target is None:
            incoming.respond(481)
            return
        incoming.respond(200)
        if target.last_response is None or target.last_response.status_code < 200:
            call = self.engine.pending_calls.pop(target.request.call_id, None)
            if call is not None and call.final_response is None:
                end_call(call, "cancel")  # first: reject() would record the end as "local"
                call.reject(487, "Request Terminated")
            else:
                self.engine.respond(
                    target,
                    make_response(target.request, 487, to_tag=self.local_tag(target.request)),
                )

    def _dialog_of(self, request: Request) -> Dialog | None:
        """The dialog ``request`` belongs to: an established one, or an early dialog of our
        own pending INVITEs (an UPDATE may come in one)."""
        dialog_id = dialog_id_of(request)
        if dialog_id is None:
            return None
        return self.engine.dialogs.get(dialog_id) or self.uac.early_dialogs.get(dialog_id)

    async def _in_dialog(self, incoming: IncomingRequest) -> None:
        request = incoming.request
        if request.method == "NOTIFY" and self.subscribers.notify_received(incoming):
            return  # one of our subscriptions (RFC 6665)
        if request.method == "SUBSCRIBE" and await self.notifiers.in_dialog(incoming):
            return  # a refresh of a subscription we serve
        dialog = self._dialog_of(request)
        if request.method == "PRACK":
            self._prack(incoming, dialog)
            return
        if dialog is None:
            incoming.respond(481)
            return
        if not receive_in_dialog(dialog, incoming):
            return
        method = request.method
        if method == "BYE":
            self._bye(incoming, dialog)
            return
        call = self.engine.calls.get(dialog.id)
        if method in ("INVITE", "UPDATE") and call is not None:
            response = target_refresh_received(call, incoming)
            if method == "UPDATE" or not response.is_success:
                return
            self.engine.retransmit_2xx(
                (dialog.id, response.cseq.seq),
                incoming.transaction,
                response,
                lambda: log.warning("no ACK for our 2xx to a re-INVITE in %s", call.call_id),
            )
            return
        if method == "INFO" and call is not None:
            await self._info(call, incoming)
            return
        if method == "REFER" and call is not None:
            await self._refer(call, incoming)
            return
        if method == "NOTIFY" and self.transfers.notify_received(dialog, incoming):
            return
        if await self._run_handler(incoming):
            return
        if method == "UPDATE" and request.content:
            incoming.respond(488)  # an offer with no call to answer it for
        elif method in ("INFO", "MESSAGE", "UPDATE"):
            incoming.respond(200)
        elif method == "NOTIFY":
            incoming.respond(481)  # RFC 6665 4.1.3: no subscription of ours
        elif method == "REFER":
            # A REFER in a dialog without a call: nobody would carry out the transfer.
            incoming.respond(405, headers={"Allow": self._allow()})
        elif method == "OPTIONS":
            incoming.respond_with_fields(200, self._capabilities())
        else:
            incoming.respond(405, headers={"Allow": self._allow()})

    def _bye(self, incoming: IncomingRequest, dialog: Dialog, *, at_once: bool = False) -> None:
        """A BYE the dialog took: 200, and the dialog and its call end. ``at_once``: served
        on the spot with no handler (nobody reads ``incoming.response``): the 200 goes out
        as bytes, without a Response (see ``_answer_with_fields``)."""
        dialog_id = dialog.id
        call = self.engine.calls.get(dialog_id)
        if at_once:
            incoming._answer_with_fields(200, ())
        else:
            incoming.respond(200)
        dialog.terminate()
        self.engine.dialogs.pop(dialog_id, None)
        if call is not None:
            unanswered = call.direction == "incoming" and not final_sent(call)
            # a call we were transferred from ends "transferred"
            end_call(call, "remote" if call.replaced_by is None else "transferred")
            if unanswered:  # a BYE in the early dialog (RFC 3261 15.1.2)
                call.reject(487, "Request Terminated")

    async def _refer(self, call: Call, incoming: IncomingRequest) -> None:
        """RFC 3515 in a call: a REFER handler may refuse it; accepted (202 by default), the
        transfer is carried out (see :mod:`sipx._transfer`)."""
        target = self.transfers.check_refer(incoming)
        if target is None:
            return
        if not await self._run_handler(incoming):
            incoming.respond(202)
        if incoming.response is not None and incoming.response.is_success:
            self.transfers.refer_received(call, incoming, target)

    async def _info(self, call: Call, incoming: IncomingRequest) -> None:
        """RFC 6086 in a call: an undeclared Info-Package gets 469; DTMF relay bodies feed
        the call's digits; the call's ``on_info`` handler (else the client's INFO handler)
        may answer; 200 otherwise; then the call's ``info_requests()`` iterators get it."""
        request = incoming.request
        package = request.headers.get_first("Info-Package")
        if package is not None:
            name = package.split(";", 1)[0].strip(" \t").lower()
            if name not in self.info_packages:
                incoming.respond(469, headers={"Recv-Info": ", ".join(self.info_packages)})
                return
        self._dtmf_info(call, request)
        if not await self._run_handler(incoming, info_handler_of(call)):
            incoming.respond(200)
        info_received(call, incoming)

    def _prack(self, incoming: IncomingRequest, dialog: Dialog | None) -> None:
        """RFC 3262 3: a PRACK that acknowledges our unacknowledged reliable 1xx gets 200,
        any other 481. Before the call is answered its dialog is early and not registered:
        the call is found by Call-ID and tags."""
        request = incoming.request
        call: Call | None
        if dialog is not None:
            if not receive_in_dialog(dialog, incoming):
                return
            call = self.engine.calls.get(dialog.id)
        else:
            call = self.engine.pending_calls.get(request.call_id)
            if call is not None and (
                call.local_tag != request.to.tag or call.invite.from_.tag != request.from_.tag
            ):
                call = None
        if call is None or call.direction != "incoming":
            incoming.respond(481)
            return
        prack_received(call, request, incoming.respond)

    def _dtmf_info(self, call: Call, request: Request) -> None:
        """An INFO carrying a digit (application/dtmf-relay or application/dtmf)."""
        content_type = (request.headers.get_first("Content-Type") or "").lower()
        if not content_type.startswith(DTMF_INFO_TYPES):
            return
        media = media_of(call)
        digit = media.info_digit(content_type, request.content)
        if digit is not None:
            media.digit_received(digit)

    def on_ack(self, ack: Request) -> None:
        dialog_id = dialog_id_of(ack)
        if dialog_id is None:
            return
        self.engine.acked((dialog_id, ack.cseq.seq))
        dialog = self.engine.dialogs.get(dialog_id)
        if dialog is not None and dialog.state is DialogState.EARLY:
            dialog.state = DialogState.CONFIRMED
        call = self.engine.calls.get(dialog_id)
        if call is not None and call.direction == "incoming":
            ack_received(call, ack)
