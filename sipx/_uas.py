"""The user agent server side of a client: answering the requests it receives.

Requests reach the client's :class:`UserAgentServer` through the transaction layer. New
INVITEs become :class:`~sipx.Call` objects (delivered to an INVITE handler or to
``client.calls()``); in-dialog requests go to their call; other methods go to handlers
registered with ``client.on_request(method, handler)`` or get the defaults users expect:
OPTIONS 200 with Allow/Accept/Supported, MESSAGE 200, BYE and CANCEL handled, known but
unhandled methods 405 with Allow, unknown methods 501.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

import trio

from ._call import Call, CallState
from ._core.builder import attach_body, copy_record_route
from ._core.dialog import Dialog, DialogId, dialog_id_of
from ._core.headers import header_key
from ._core.message import Request, Response
from ._core.sdp import SDPBody
from ._core.transaction import ServerTransaction, make_response
from ._errors import ParseError, ProtocolError

if TYPE_CHECKING:
    from ._async_client import AsyncClient

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
)
DIALOG_CREATING = frozenset({"INVITE", "SUBSCRIBE", "REFER"})
# Listed in Allow only once a handler takes them (out of dialog they get 405 otherwise).
_NEED_A_HANDLER = frozenset({"SUBSCRIBE", "REFER"})
# What a response copies from its request (RFC 3261 8.2.6.2).
_COPIED = frozenset(header_key(name) for name in ("Via", "From", "To", "Call-ID", "CSeq"))
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
        response = make_response(
            self.request, status_code, reason, to_tag=self._uas.local_tag(self.request)
        )
        if 100 < status_code < 300 and self.method in DIALOG_CREATING:
            copy_record_route(self.request, response)
        for name, value in (headers or {}).items():
            response.headers[name] = value
        if body is not None:
            attach_body(response, body, content_type)
        if not self.transaction.respond(response, trio.current_time()):
            raise ProtocolError(f"{self.method} was already answered")
        self.response = response
        self._uas.client._pump()
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


class UserAgentServer:
    """Owns incoming calls and request handlers for one AsyncClient."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.handlers: dict[str, RequestHandler] = {}
        self.calls: dict[DialogId, Call] = {}
        self._pending_calls: dict[str, Call] = {}  # Call-ID -> incoming call not yet answered
        self._call_send, self._call_receive = trio.open_memory_channel[Call](math.inf)
        self._listening = 0
        self._tags: dict[tuple[str, str], str] = {}
        # 2xx responses to re-INVITEs awaiting their ACK, by dialog and CSeq.
        self._awaiting_ack: dict[tuple[DialogId, int], trio.Event] = {}

    # -- registration ----------------------------------------------------------------------
    def on_request(self, method: str, handler: RequestHandler) -> None:
        self.handlers[method.upper()] = handler

    async def incoming_calls(self) -> AsyncIterator[Call]:
        self._listening += 1
        try:
            async for call in self._call_receive:
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

    # -- helpers used by Call ------------------------------------------------------------------
    def local_tag(self, request: Request) -> str | None:
        existing = request.to.tag
        if existing:
            return existing
        key = (request.call_id, request.from_.tag or "")
        tag = self._tags.get(key)
        if tag is None:
            tag = self.client._ids.tag()
            self._tags[key] = tag
            if len(self._tags) > 4096:
                self._tags.pop(next(iter(self._tags)))
        return tag

    def contact_for(self, request: Request) -> str:
        source = self.client._last_destination or "127.0.0.1"
        host, port = self.client._contact_host((source, 0))
        return self.client._contact(request.uri.user or self.client._default_user(), host, port)

    def default_sdp(self, offer: SDPBody | None) -> SDPBody:
        """Our SDP: an answer to ``offer``, or a PCMU/PCMA offer when there is none."""
        host = self.client.local_address.host
        user = self.client._default_user()
        if offer is not None:
            return SDPBody.create_answer(
                offer, origin_username=user, origin_address=host, connection_address=host
            )
        return SDPBody.create_offer(
            session_name="sipx",
            origin_username=user,
            origin_address=host,
            connection_address=host,
            media_specs=[
                {
                    "media": "audio",
                    "port": 8000,
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

    def dialog_from_incoming(self, invite: Request, response: Response, call: Call) -> Dialog:
        tag = response.to.tag or self.local_tag(invite) or ""
        dialog = Dialog.from_uas_request(invite, tag, confirmed=False)
        self.client._dialogs[dialog.id] = dialog
        self.calls[dialog.id] = call
        self._pending_calls.pop(invite.call_id, None)
        return dialog

    def retransmit_2xx(self, call: Call, response: Response) -> None:
        """RFC 3261 13.3.1.4: resend the 2xx at T1, 2*T1, ... T2 until the ACK arrives, and
        end the call after 64*T1 without one. "This is independent of whatever transport
        protocols are used": the ACK is end to end and may cross an unreliable hop."""
        if call.transaction is None:
            return
        self.client._require_nursery().start_soon(self._retransmit_2xx, call, response)

    async def _retransmit_2xx(self, call: Call, response: Response) -> None:
        timers = self.client.timers
        interval = timers.t1
        with trio.move_on_after(timers.timer_b):  # 64*T1 without ACK: give up
            while True:
                with trio.move_on_after(interval):
                    await call.wait_acked()
                    return
                assert call.transaction is not None
                self._resend(call.transaction, response)
                interval = min(interval * 2, timers.t2)
        if not call._acked.is_set() and call.dialog is not None:
            log.warning("no ACK for our 2xx to %s: ending the call", call.call_id)
            dialog = call.dialog
            call._end("timeout")  # first: the BYE would record the end as "local"
            try:
                await self.client.bye(dialog_id=dialog.id)
            except Exception as exc:  # a peer that never ACKed may not answer the BYE either
                log.info("BYE after the missing ACK failed: %s", exc)

    def _resend(self, transaction: ServerTransaction, response: Response) -> None:
        if not transaction.respond(response, trio.current_time()):  # after Timer L
            destination = transaction.destination
            assert isinstance(destination, tuple)
            self.client._send_bytes(response.to_bytes(), destination)
        self.client._pump()

    def _retransmit_reinvite_2xx(
        self, call: Call, dialog: Dialog, transaction: ServerTransaction, response: Response
    ) -> None:
        """The 2xx to a re-INVITE is the TU's to retransmit too (13.3.1.4, RFC 6026)."""
        key = (dialog.id, response.cseq.seq)
        acked = self._awaiting_ack[key] = trio.Event()
        self.client._require_nursery().start_soon(
            self._resend_until_acked, call, key, acked, transaction, response
        )

    async def _resend_until_acked(
        self,
        call: Call,
        key: tuple[DialogId, int],
        acked: trio.Event,
        transaction: ServerTransaction,
        response: Response,
    ) -> None:
        timers = self.client.timers
        interval = timers.t1
        try:
            with trio.move_on_after(timers.timer_b):
                while True:
                    with trio.move_on_after(interval):
                        await acked.wait()
                    if acked.is_set() or call.ended:
                        return
                    self._resend(transaction, response)
                    interval = min(interval * 2, timers.t2)
            log.warning("no ACK for our 2xx to a re-INVITE in %s", call.call_id)
        finally:
            self._awaiting_ack.pop(key, None)

    # -- the request path --------------------------------------------------------------------
    async def serve(self, transaction: ServerTransaction, request: Request) -> None:
        incoming = IncomingRequest(self, transaction, request)
        try:
            await self._dispatch(incoming)
        except Exception:
            log.exception("handler for %s failed", request.method)
            call = incoming.call
            if call is not None:
                if call.final_response is None:  # else the INVITE would go unanswered
                    call.reject(500)
            elif not incoming.responded:
                incoming.respond(500)

    async def _dispatch(self, incoming: IncomingRequest) -> None:
        request = incoming.request
        method = request.method
        if request.to.tag:
            await self._in_dialog(incoming)
            return
        if method == "INVITE":
            await self._new_call(incoming)
            return
        if method == "CANCEL":
            self._cancel(incoming)
            return
        if await self._run_handler(incoming):
            return
        if method == "OPTIONS":
            incoming.respond(200, headers=self._capabilities())
        elif method in ("MESSAGE", "NOTIFY", "INFO"):
            incoming.respond(200)
        elif method == "BYE":
            incoming.respond(481)
        elif method in ALLOWED_METHODS or method in ("REGISTER", "UPDATE", "PRACK", "PUBLISH"):
            incoming.respond(405, headers={"Allow": self._allow()})
        else:
            incoming.respond(501)

    def _capabilities(self) -> dict[str, str]:
        return {
            "Allow": self._allow(),
            "Accept": "application/sdp, text/plain",
            "Supported": "replaces",
        }

    def _allow(self) -> str:
        methods = [m for m in ALLOWED_METHODS if m not in _NEED_A_HANDLER or m in self.handlers]
        methods += [m for m in self.handlers if m not in methods]
        return ", ".join(methods)

    async def _run_handler(self, incoming: IncomingRequest) -> bool:
        handler = self.handlers.get(incoming.method)
        if handler is None:
            return False
        result = handler(incoming)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, Response) and not incoming.responded:
            result = incoming._complete(result)
            if not incoming.transaction.respond(result, trio.current_time()):
                raise ProtocolError("handler's response was refused by the transaction")
            incoming.response = result
            self.client._pump()
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

    async def _new_call(self, incoming: IncomingRequest) -> None:
        request = incoming.request
        call = Call(
            self.client,
            request,
            direction="incoming",
            transaction=incoming.transaction,
            local_tag=self.local_tag(request),
            uas=self,
        )
        incoming.call = call
        self._pending_calls[request.call_id] = call
        handler = self.handlers.get("INVITE")
        if handler is not None:
            result = handler(call)
            if inspect.isawaitable(result):
                await result
            return
        if self._listening:
            self._call_send.send_nowait(call)
            return
        call.reject(480, "Temporarily Unavailable")

    def _cancel(self, incoming: IncomingRequest) -> None:
        target = self.client._layer.find_transaction_to_cancel(incoming.request)
        if target is None:
            incoming.respond(481)
            return
        incoming.respond(200)
        if target.last_response is None or target.last_response.status_code < 200:
            call = self._pending_calls.pop(target.request.call_id, None)
            if call is not None and call.final_response is None:
                call._end("cancel")  # first: reject() would record the end as "local"
                call.reject(487, "Request Terminated")
            else:
                target.respond(
                    make_response(target.request, 487, to_tag=self.local_tag(target.request)),
                    trio.current_time(),
                )
                self.client._pump()

    async def _in_dialog(self, incoming: IncomingRequest) -> None:
        request = incoming.request
        dialog_id = dialog_id_of(request)
        dialog = self.client._dialogs.get(dialog_id) if dialog_id else None
        if dialog is None:
            incoming.respond(481)
            return
        try:
            dialog.receive_request(request)
        except (ProtocolError, ParseError) as exc:
            incoming.respond(500, str(exc)[:60])
            return
        call = self.calls.get(dialog.id) or self.client._outgoing_calls.get(dialog.id)
        method = request.method
        if method == "BYE":
            incoming.respond(200)
            dialog.terminate()
            self.client._dialogs.pop(dialog.id, None)
            if call is not None:
                call._end("remote")
            return
        if method == "INVITE" and call is not None:
            if call._reinviting:
                incoming.respond(491)  # RFC 3261 14.2: our own re-INVITE is pending
                return
            answer = call._on_reinvite(request)
            response = incoming.respond(
                200, body=answer, headers={"Contact": self.contact_for(call.invite)}
            )
            self._retransmit_reinvite_2xx(call, dialog, incoming.transaction, response)
            return
        if await self._run_handler(incoming):
            return
        if method in ("INFO", "NOTIFY", "MESSAGE", "UPDATE"):
            incoming.respond(200)
        elif method == "REFER":
            # Nobody would carry out the transfer: refuse rather than promise NOTIFYs.
            incoming.respond(405, headers={"Allow": self._allow()})
        elif method == "OPTIONS":
            incoming.respond(200, headers=self._capabilities())
        else:
            incoming.respond(405, headers={"Allow": self._allow()})

    def on_ack(self, ack: Request) -> None:
        dialog_id = dialog_id_of(ack)
        if dialog_id is None:
            return
        acked = self._awaiting_ack.pop((dialog_id, ack.cseq.seq), None)
        if acked is not None:
            acked.set()
        call = self.calls.get(dialog_id)
        if call is not None:
            call._on_ack(ack)
