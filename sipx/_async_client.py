"""AsyncClient: a SIP user agent on trio.

One client owns one nursery (opened by ``async with``) that runs the transport's receive
loop, one timer task woken at the transaction layer's next deadline, re-registration tasks
and the tasks that answer incoming requests. Leaving the client cancels all of them.

Requests go out through the sans-I/O transaction layer (:mod:`sipx._core.transaction`);
this module turns its events into socket writes and wakes the coroutines waiting for
responses.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass
from typing import Any, NamedTuple

import trio

from ._auth import Auth
from ._call import Call, CallState
from ._call import _sdp as _sdp_of
from ._core import digest
from ._core.builder import (
    body_bytes,
    build_ack_for_2xx,
    build_auth_retry,
    build_cancel,
    build_request,
    guess_content_type,
)
from ._core.dialog import Dialog, DialogId, DialogState, dialog_id_of
from ._core.header_types import NameAddr
from ._core.ids import IdSource
from ._core.message import Request, Response
from ._core.parser import parse_message
from ._core.received import stamp_received
from ._core.sdp import SDPBody
from ._core.timers import TimerConfig
from ._core.transaction import (
    AckReceived,
    ClientTransaction,
    Event,
    RequestReceived,
    ResponseReceived,
    Send,
    ServerTransaction,
    StrayResponse,
    TransactionLayer,
    TransactionTimeout,
    TransportFailed,
)
from ._core.uri import URI
from ._errors import AuthError, ParseError, ProtocolError, SIPError, TimeoutError, TransportError
from ._events import Events, RequestContext, dispatch
from ._trio.resolver import Resolver
from ._trio.tcp import TCPTransport
from ._trio.tls import TLSCert, TLSTransport, TLSVerify, client_context, server_context
from ._trio.transport import Address, Transport, routable_host
from ._trio.udp import UDPTransport
from ._uas import RequestHandler, UserAgentServer

log = logging.getLogger("sipx")
wire_log = logging.getLogger("sipx.wire")

# Methods whose requests carry a Contact (they create dialogs or refresh targets).
_CONTACT_METHODS = frozenset(
    {"INVITE", "SUBSCRIBE", "REFER", "REGISTER", "NOTIFY", "UPDATE", "OPTIONS"}
)

# An INVITE with no timeout= (per call or per client) gives up after this long: a phone that
# rings for ever must not hang the caller (compare Timer C, RFC 3261 16.6).
INVITE_TIMEOUT = 180.0

TraceHook = Callable[[str, bytes, Address, str], None]


class LocalAddress(NamedTuple):
    host: str
    port: int


@dataclass
class _Registration:
    aor: str
    call_id: str
    from_tag: str
    cseq: int = 0
    expires: int = 3600
    granted: int | None = None
    registrar: str | None = None
    registered_at: float | None = None  # trio time of the last 2xx


class AsyncClient:
    """A SIP user agent on trio; use ``async with AsyncClient(...) as client``.

    ``local_port=0`` picks a free port. Requests raise :class:`sipx.TimeoutError` when no
    final response arrives within ``timeout`` seconds (per call or per client) or before the
    transaction's own Timer B/F (32 s with the default T1).
    """

    def __init__(
        self,
        local_host: str = "0.0.0.0",
        local_port: int = 5060,
        transport: str = "UDP",
        auth: Auth.Digest | None = None,
        events: Events | None = None,
        *,
        timeout: float | None = None,
        timers: TimerConfig | None = None,
        user_agent: str | None = None,
        outbound_proxy: str | None = None,
        trace: TraceHook | None = None,
        network: Any = None,
        id_token: Callable[[int], str] | None = None,
        verify: TLSVerify = True,
        cert: TLSCert | None = None,
        nameservers: Sequence[str] | None = None,
    ) -> None:
        transport_name = transport.upper()
        if transport_name not in ("UDP", "TCP", "TLS"):
            raise ValueError(f"unsupported transport {transport!r}: use 'UDP', 'TCP' or 'TLS'")
        # TLS: checked now, so that a wrong file is an error here rather than at first send.
        self._tls = (
            (client_context(verify, cert), server_context(cert) if cert is not None else None)
            if transport_name == "TLS" and network is None
            else None
        )
        self.local_host = local_host
        self.local_port = local_port
        self.transport_name = transport_name
        self.auth = auth
        self.events = events
        self.timeout = timeout
        self.timers = timers or TimerConfig()
        self.user_agent = user_agent if user_agent is not None else f"sipx/{_version()}"
        self.outbound_proxy = URI.parse(outbound_proxy) if outbound_proxy else None
        self._trace = trace
        self._network = network
        self._ids = IdSource(id_token or secrets.token_hex)
        self._layer = TransactionLayer(self.timers)
        self._resolver = Resolver(nameservers)
        self._nonces = digest.NonceCounter()
        self._transport: Transport | None = None
        self._nursery: trio.Nursery | None = None
        self._nursery_manager: AbstractAsyncContextManager[trio.Nursery] | None = None
        self._waiters: dict[ClientTransaction, trio.MemorySendChannel[Response | Exception]] = {}
        self._timer_wakeup = trio.Event()
        self._armed_deadline = math.inf
        self._dialogs: dict[DialogId, Dialog] = {}
        # ACKs sent for 2xx, by (Call-ID, CSeq, To tag): resent when the 2xx is retransmitted.
        self._acks: dict[tuple[str, int, str], tuple[bytes, Address]] = {}
        self._sent_invites: dict[tuple[str, int], Request] = {}
        self._early_dialogs: dict[DialogId, Dialog] = {}
        self._generated_contacts: dict[str, str] = {}  # Call-ID -> Contact we wrote
        self._transport_errors: dict[Address, str] = {}
        self._pending_invites: dict[str, ClientTransaction] = {}
        self._registrations: dict[str, _Registration] = {}
        self._reregister_scopes: dict[str, trio.CancelScope] = {}
        self._last_destination: str | None = None
        # Our address as each next hop saw it (Via received/rport, RFC 3581), for Contact.
        self._public_addresses: dict[Address, Address] = {}
        self._uas = UserAgentServer(self)
        self._outgoing_calls: dict[DialogId, Call] = {}
        self._closed = False
        # INVITEs the caller gave up on whose CANCEL still runs (see _cancel_on_abort).
        self._aborts = 0
        self._aborts_idle = trio.Event()
        # Where recent requests went, so that retry_with_auth() sends the retry there too.
        self._destinations: OrderedDict[tuple[str, int, str], Address] = OrderedDict()

    # -- lifecycle -----------------------------------------------------------------------
    async def __aenter__(self) -> AsyncClient:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def open(self) -> None:
        """Bind the transport and start the client's tasks (``async with`` does this)."""
        if self._closed:
            raise SIPError("the client is closed; create a new one")
        if self._nursery is not None:
            raise RuntimeError("client is already open")
        manager = trio.open_nursery()
        nursery = await manager.__aenter__()
        self._nursery_manager, self._nursery = manager, nursery
        try:
            transport = self._make_transport()
            await nursery.start(transport.serve, self.local_host, self.local_port)
            self._transport = transport
            nursery.start_soon(self._timer_loop)
        except BaseException as exc:
            nursery.cancel_scope.cancel()
            try:
                await manager.__aexit__(None, None, None)
            except BaseExceptionGroup as group:
                raise _single(group) from None
            raise _single(exc) from None

    async def aclose(self) -> None:
        """Cancel every task the client started and close its transport."""
        if self._nursery is None or self._nursery_manager is None or self._closed:
            return
        # Let the CANCELs of abandoned INVITEs finish (each bounded by 16*T1) while the
        # transport and the timers still run, so that no callee is left ringing.
        with trio.CancelScope(shield=True):
            while self._aborts:
                self._aborts_idle = trio.Event()
                await self._aborts_idle.wait()
        if self._closed or self._nursery_manager is None:
            return
        self._closed = True
        self._nursery.cancel_scope.cancel()
        manager, self._nursery_manager = self._nursery_manager, None
        try:
            await manager.__aexit__(None, None, None)
        except BaseExceptionGroup as group:
            raise _single(group) from None

    def _make_transport(self) -> Any:
        if self._network is not None:
            return self._network.transport(self._on_message, self.transport_name)
        if self.transport_name == "TCP":
            return TCPTransport(self._on_message, on_error=self._on_transport_error)
        if self._tls is not None:
            return TLSTransport(
                self._on_message,
                client_context=self._tls[0],
                server_context=self._tls[1],
                server_name=self._resolver.name_for,
                on_error=self._on_transport_error,
            )
        return UDPTransport(self._on_message)

    @property
    def local_address(self) -> LocalAddress:
        """The bound address; a wildcard bind reports the interface that routes onwards."""
        transport = self._require_transport()
        host, port = transport.local_address
        if host in ("0.0.0.0", "::"):
            host = routable_host(host, self._last_destination or "192.0.2.1")
        return LocalAddress(host, port)

    def _require_transport(self) -> Transport:
        if self._closed:
            raise SIPError("the client is closed; create a new one")
        if self._transport is None:
            raise RuntimeError("the client is not open: use 'async with AsyncClient(...)'")
        return self._transport

    # -- public requests -----------------------------------------------------------------
    async def request(
        self,
        method: str,
        uri: str | URI,
        *,
        headers: Mapping[str, str] | None = None,
        body: str | bytes | SDPBody | None = None,
        content_type: str | None = None,
        from_uri: str | None = None,
        to_uri: str | None = None,
        host: str | None = None,
        port: int | None = None,
        timeout: float | None = None,
        auth: Auth.Digest | None = None,
    ) -> Response:
        """Send any request out of dialog and return its final response."""
        request = self._new_request(
            method,
            uri,
            headers=headers,
            body=body,
            content_type=content_type,
            from_uri=from_uri,
            to_uri=to_uri,
        )
        return await self._send(request, host=host, port=port, timeout=timeout, auth=auth)

    async def options(
        self,
        uri: str,
        host: str | None = None,
        port: int | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        auth: Auth.Digest | None = None,
    ) -> Response:
        """OPTIONS ``uri``; ``host``/``port`` override where it is sent."""
        return await self.request(
            "OPTIONS", uri, headers=headers, host=host, port=port, timeout=timeout, auth=auth
        )

    async def register(
        self,
        aor: str,
        *,
        registrar: str | None = None,
        expires: int = 3600,
        contact: str | None = None,
        headers: Mapping[str, str] | None = None,
        host: str | None = None,
        port: int | None = None,
        timeout: float | None = None,
        auth: Auth.Digest | None = None,
    ) -> Response:
        """REGISTER ``aor`` (the registrar defaults to the AOR's domain)."""
        aor_uri = URI.parse(aor)
        state = self._registrations.get(aor)
        if state is None:
            state = _Registration(aor, self._ids.call_id(), self._ids.tag())
            self._registrations[aor] = state
        state.expires = expires
        state.registrar = registrar
        state.cseq += 1
        request_uri = (
            URI.parse(registrar)
            if registrar
            else aor_uri.replace(user=None, password=None, params={}, headers={})
        )
        fields: dict[str, str] = {"Expires": str(expires)}
        if contact is not None:
            fields["Contact"] = contact
        fields.update(headers or {})
        request = build_request(
            "REGISTER",
            request_uri,
            from_addr=f"<{aor_uri}>;tag={state.from_tag}",
            to_addr=f"<{aor_uri}>",
            call_id=state.call_id,
            cseq=state.cseq,
            headers=fields,
            user_agent=self.user_agent,
        )
        response = await self._send(request, host=host, port=port, timeout=timeout, auth=auth)
        self._note_registration(state, response)
        return response

    async def unregister(self, aor: str, **kwargs: Any) -> Response:
        """REGISTER with ``Expires: 0`` (and stop re-registering ``aor``)."""
        self.disable_auto_reregister(aor)
        return await self.register(aor, expires=0, **kwargs)

    async def invite(
        self,
        to_uri: str,
        from_uri: str | None = None,
        body: str | bytes | SDPBody | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        *,
        host: str | None = None,
        port: int | None = None,
        auth: Auth.Digest | None = None,
    ) -> Response:
        """INVITE ``to_uri`` and return the final response (1xx go to event handlers).

        Cancelling the call (or its timeout) sends CANCEL for the pending INVITE.
        """
        request = self._new_request("INVITE", to_uri, headers=headers, body=body, from_uri=from_uri)
        return await self._send(request, host=host, port=port, timeout=timeout, auth=auth)

    async def ack(
        self, response: Response, body: str | bytes | SDPBody | None = None
    ) -> Request | None:
        """ACK a 2xx to INVITE (a new request within the dialog, RFC 3261 13.2.2.4).

        The ACK for a non-2xx final response is sent by the transaction itself; for those
        this returns None.
        """
        if response.request is None or response.request.method != "INVITE":
            raise ValueError("ack() takes the final response to an INVITE sent by this client")
        if not response.is_success:
            return None
        return await self._ack_in_dialog(self._dialog_for_response(response), response, body)

    async def _ack_in_dialog(
        self, dialog: Dialog, response: Response, body: str | bytes | SDPBody | None = None
    ) -> Request:
        assert response.request is not None
        ack = build_ack_for_2xx(response.request, dialog, body_bytes(body))
        address = await self._next_hop_address(dialog.next_hop())
        self._stamp(ack, address)
        ack = await self._run_request_hooks(ack, address)
        data = ack.to_bytes()
        self._acks[(dialog.call_id, response.request.cseq.seq, dialog.remote_tag)] = (data, address)
        while len(self._acks) > 1024:
            self._acks.pop(next(iter(self._acks)))
        self._send_bytes(data, address)
        return ack

    # -- calls -------------------------------------------------------------------------------
    async def call(
        self,
        to_uri: str,
        body: str | bytes | SDPBody | None = None,
        *,
        from_uri: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        host: str | None = None,
        port: int | None = None,
        auth: Auth.Digest | None = None,
    ) -> Call:
        """Place a call: INVITE (with a default PCMU/PCMA offer unless ``body`` is given),
        then ACK the 2xx. Returns the :class:`Call`; ``call.established`` tells if it was answered.
        """
        self._require_transport()
        if body is None:
            body = self._uas.default_sdp(None)
        response = await self.invite(
            to_uri, from_uri, body, headers, timeout, host=host, port=port, auth=auth
        )
        assert response.request is not None
        call = Call(self, response.request, direction="outgoing", uas=self._uas)
        call.final_response = response
        if response.is_success:
            dialog = self._dialog_for_response(response)
            call.dialog = dialog
            call.remote_sdp = call.answer_sdp = _sdp_of(response)
            call.state = CallState.ESTABLISHED
            self._outgoing_calls[dialog.id] = call
            await self._ack_in_dialog(dialog, response)
        else:
            call._end("rejected")
        return call

    def calls(self) -> AsyncIterator[Call]:
        """Incoming calls, as an async iterator: ``async for call in client.calls(): ...``.

        While nobody iterates (and no INVITE handler is set) incoming calls get 480.
        """
        return self._uas.incoming_calls()

    async def bye(
        self,
        response: Response | None = None,
        dialog_id: DialogId | str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        """End a call: BYE within the dialog of ``response`` (or ``dialog_id``)."""
        dialog = self._find_dialog(response, dialog_id)
        request = dialog.create_request("BYE", headers=dict(headers or {}))
        dialog.terminate()
        try:
            return await self._send_in_dialog(dialog, request, timeout=timeout)
        finally:
            self._dialogs.pop(dialog.id, None)
            call = self._outgoing_calls.pop(dialog.id, None) or self._uas.calls.pop(dialog.id, None)
            if call is not None:
                call._end("local")

    async def cancel(
        self, request: Request | None = None, *, call_id: str | None = None
    ) -> Response:
        """CANCEL a pending INVITE (the most recent one by default); returns the CANCEL's response.

        The INVITE itself then completes with 487 Request Terminated.
        """
        if request is not None:
            call_id = request.call_id
        if call_id is None:
            if not self._pending_invites:
                raise ProtocolError("no INVITE is pending")
            call_id = next(reversed(self._pending_invites))
        transaction = self._pending_invites.get(call_id)
        if transaction is None:
            raise ProtocolError(f"no pending INVITE with Call-ID {call_id}")
        return await self._send_cancel(transaction)

    async def message(
        self,
        to_uri: str,
        text: str,
        content_type: str = "text/plain",
        *,
        from_uri: str | None = None,
        headers: Mapping[str, str] | None = None,
        host: str | None = None,
        port: int | None = None,
        timeout: float | None = None,
        auth: Auth.Digest | None = None,
    ) -> Response:
        """Send an instant message (RFC 3428)."""
        return await self.request(
            "MESSAGE",
            to_uri,
            headers=headers,
            body=text,
            content_type=content_type,
            from_uri=from_uri,
            host=host,
            port=port,
            timeout=timeout,
            auth=auth,
        )

    async def subscribe(
        self,
        uri: str,
        event: str,
        expires: int = 3600,
        *,
        accept: str | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Response:
        """SUBSCRIBE to ``event`` at ``uri`` (RFC 6665)."""
        fields = {"Event": event, "Expires": str(expires)}
        if accept:
            fields["Accept"] = accept
        fields.update(headers or {})
        return await self.request("SUBSCRIBE", uri, headers=fields, **kwargs)

    async def notify(
        self,
        uri: str | None = None,
        event: str = "",
        body: str | bytes | None = None,
        *,
        subscription_state: str = "active",
        content_type: str | None = None,
        response: Response | None = None,
        dialog_id: DialogId | str | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Response:
        """NOTIFY, within a dialog (``response``/``dialog_id``) or out of dialog to ``uri``."""
        fields = {"Event": event, "Subscription-State": subscription_state, **(headers or {})}
        return await self._maybe_in_dialog(
            "NOTIFY", uri, response, dialog_id, fields, body, content_type, kwargs
        )

    async def refer(
        self,
        uri: str | None = None,
        refer_to: str = "",
        *,
        response: Response | None = None,
        dialog_id: DialogId | str | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Response:
        """REFER (RFC 3515): ask the peer to contact ``refer_to``."""
        if not refer_to:
            raise ValueError("refer() needs refer_to")
        fields = {
            "Refer-To": refer_to if refer_to.startswith("<") else f"<{refer_to}>",
            **(headers or {}),
        }
        return await self._maybe_in_dialog(
            "REFER", uri, response, dialog_id, fields, None, None, kwargs
        )

    async def info(
        self,
        uri: str | None = None,
        body: str | bytes | None = None,
        *,
        content_type: str = "application/dtmf-relay",
        response: Response | None = None,
        dialog_id: DialogId | str | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Response:
        """INFO (RFC 6086), usually within a call."""
        return await self._maybe_in_dialog(
            "INFO", uri, response, dialog_id, dict(headers or {}), body, content_type, kwargs
        )

    async def retry_with_auth(
        self, response: Response, auth: Auth.Digest | None = None
    ) -> Response:
        """Answer a 401/407 challenge with a new transaction (new branch, CSeq + 1)."""
        if response.status_code not in (401, 407):
            raise ValueError(
                f"retry_with_auth() needs a 401 or 407 response, not {response.status_code}"
            )
        request = response.request
        if request is None:
            raise ValueError("the response does not carry the request it answers")
        credentials = auth or self.auth
        if credentials is None:
            raise AuthError("no credentials: pass auth= or create the client with auth=")
        retry = self._authorize(request, response, credentials, strict_realm=True)
        assert retry is not None
        destination = self._destinations.get(_request_key(request))
        try:
            with _fail_after(self.timeout):
                final = await self._transact(retry, destination, attempt=2)
        except trio.TooSlowError:
            raise TimeoutError(retry.method, str(retry.uri), self.timeout or 0.0) from None
        final.history[:0] = [*response.history, response]
        return await self._maybe_register_note(final)

    # -- auto re-registration --------------------------------------------------------------
    async def enable_auto_reregister(self, aor: str, interval: float | None = None) -> None:
        """Refresh the registration of ``aor`` before it expires, until disabled or closed.

        ``interval`` (seconds) caps the refresh period; by default the client refreshes at
        80 % of the expiry the registrar granted, and at least 32 s (one Timer F) before it
        runs out. An AOR not registered yet is registered at once. Failures are retried with
        back-off (1, 2, 4 ... 60 s).
        """
        nursery = self._require_nursery()
        self.disable_auto_reregister(aor)
        scope = trio.CancelScope()
        self._reregister_scopes[aor] = scope
        nursery.start_soon(self._reregister_loop, aor, interval, scope)

    def disable_auto_reregister(self, aor: str | None = None) -> None:
        """Stop refreshing ``aor`` (every AOR when None)."""
        for key in [aor] if aor is not None else list(self._reregister_scopes):
            scope = self._reregister_scopes.pop(key, None) if key is not None else None
            if scope is not None:
                scope.cancel()

    @property
    def auto_reregistering(self) -> list[str]:
        return list(self._reregister_scopes)

    async def _reregister_loop(
        self, aor: str, interval: float | None, scope: trio.CancelScope
    ) -> None:
        backoff = 1.0
        with scope:
            while True:
                state = self._registrations.get(aor)
                granted = (state.granted if state and state.granted else None) or (
                    state.expires if state else 3600
                )
                # Refresh at 80 % of the expiry, and at least 32 s (one Timer F) early.
                period = max(1.0, min(granted * 0.8, granted - 32.0))
                if interval is not None:
                    period = min(period, interval)
                if state is None or state.granted is None or state.registered_at is None:
                    due = trio.current_time()  # not registered yet: register now
                else:
                    # Counted from the last 2xx: a binding that has lapsed (or is about
                    # to) is refreshed at once.
                    due = state.registered_at + period
                await trio.sleep_until(due)
                while True:
                    try:
                        response = await self.register(
                            aor,
                            registrar=state.registrar if state else None,
                            expires=(state.expires if state else 0) or 3600,
                        )
                        if response.is_success:
                            backoff = 1.0
                            break
                        log.warning("re-register of %s got %s", aor, response.status_code)
                    except SIPError as exc:
                        log.warning("re-register of %s failed: %s", aor, exc)
                    await trio.sleep(backoff)
                    backoff = min(backoff * 2, 60.0)

    # -- incoming requests (minimal defaults; handlers may be registered) -----------------
    def on_request(self, method: str, handler: RequestHandler) -> None:
        """Handle incoming ``method`` requests.

        The handler gets an :class:`IncomingRequest` (a :class:`Call` for INVITE), may be a
        plain or async function, and answers with ``incoming.respond(...)`` or by returning a
        Response; if it does neither, the method's default answer is sent.
        """
        self._uas.on_request(method, handler)

    # -- building requests -------------------------------------------------------------------
    def _default_user(self) -> str:
        return self.auth.username if self.auth is not None else "sipx"

    def _new_request(
        self,
        method: str,
        uri: str | URI,
        *,
        headers: Mapping[str, str] | None,
        body: str | bytes | SDPBody | None,
        content_type: str | None = None,
        from_uri: str | None = None,
        to_uri: str | None = None,
    ) -> Request:
        target = uri if isinstance(uri, URI) else URI.parse(uri)
        if from_uri is None:
            domain = target.host if target.port is None else f"{target.host}:{target.port}"
            from_uri = f"sip:{self._default_user()}@{domain}"
        from_addr = NameAddr.parse(from_uri if "<" in from_uri else f"<{from_uri}>")
        from_addr.params["tag"] = self._ids.tag()
        to_text = to_uri or str(target.replace(params={}, headers={}))
        to_addr = to_text if "<" in to_text else f"<{to_text}>"
        content = body_bytes(body)
        fields: dict[str, str] = {}
        if content:
            fields["Content-Type"] = content_type or guess_content_type(body, content)
        fields.update(headers or {})
        request = build_request(
            method,
            target,
            from_addr=from_addr,
            to_addr=to_addr,
            call_id=self._ids.call_id(),
            cseq=1,
            headers=fields,
            content=content,
            user_agent=self.user_agent,
        )
        if request.from_.tag is None:
            # RFC 3261 8.1.1.3: a From given in headers= still gets the tag it must carry.
            tag = from_addr.params["tag"]
            request.headers["From"] = f"{request.headers['From']};tag={tag}"
        return request

    def _contact_host(self, address: Address) -> tuple[str, int]:
        learned = self._public_addresses.get(address)
        if learned is not None:
            return learned
        transport = self._require_transport()
        host, port = transport.local_address
        return routable_host(host, address[0]), port

    def _stamp(self, request: Request, address: Address) -> None:
        """Add our top Via (fresh branch, rport) and, where due, a Contact."""
        transport = self._require_transport()
        host, port = self._contact_host(address)
        via_host = routable_host(transport.local_address[0], address[0])
        via_host = f"[{via_host}]" if ":" in via_host else via_host
        branch = self._ids.branch()
        request.headers.prepend(
            "Via",
            f"SIP/2.0/{transport.name} {via_host}:{transport.local_address[1]}"
            f";branch={branch};rport" + ("" if transport.name == "UDP" else ";alias"),
        )
        if request.method in _CONTACT_METHODS and "Contact" not in request.headers:
            contact = self._contact(request.from_.uri.user or self._default_user(), host, port)
            request.headers["Contact"] = contact
            self._generated_contacts[request.call_id] = contact
            while len(self._generated_contacts) > 256:
                self._generated_contacts.pop(next(iter(self._generated_contacts)))
        self._last_destination = address[0]

    def _contact(self, user: str, host: str, port: int) -> str:
        """Our Contact for ``user`` at ``host:port``, naming the transport unless UDP."""
        transport = self._require_transport().name
        suffix = "" if transport == "UDP" else f";transport={transport.lower()}"
        host = f"[{host}]" if ":" in host else host
        return f"<sip:{user}@{host}:{port}{suffix}>"

    # -- sending -----------------------------------------------------------------------------
    async def _destination(self, request: Request, host: str | None, port: int | None) -> Address:
        return (await self._candidates(request, host, port))[0]

    async def _candidates(
        self, request: Request, host: str | None, port: int | None
    ) -> list[Address]:
        """Where to send ``request`` (first Route, outbound proxy or Request-URI), in the
        order to try (several with DNS SRV, RFC 3263)."""
        if host is not None:
            return await self._resolver.locate_all(
                host,
                port or request.uri.port,
                scheme=request.uri.scheme,
                transport=self.transport_name,
            )
        routes = request.route
        if routes:
            target = routes[0].uri
        elif self.outbound_proxy is not None:
            target = self.outbound_proxy
        else:
            target = request.uri
        return await self._hop_candidates(target, port)

    async def _hop_candidates(self, target: URI, port: int | None = None) -> list[Address]:
        """The addresses of the next hop ``target`` (maddr, else host), in the order to try."""
        if target.scheme not in ("sip", "sips"):
            raise ProtocolError(f"cannot send to a {target.scheme}: URI without a proxy")
        return await self._resolver.locate_all(
            target.params.get("maddr") or target.host,
            port or target.port,
            scheme=target.scheme,
            transport=self.transport_name,
        )

    async def _next_hop_address(self, target: URI) -> Address:
        return (await self._hop_candidates(target))[0]

    async def _send(
        self,
        request: Request,
        *,
        host: str | None = None,
        port: int | None = None,
        timeout: float | None = None,
        auth: Auth.Digest | None = None,
    ) -> Response:
        if self.outbound_proxy is not None and host is None and "Route" not in request.headers:
            # RFC 3261 8.1.2: the outbound proxy is a preloaded loose route.
            proxy = self.outbound_proxy.replace(params={**self.outbound_proxy.params, "lr": None})
            request.headers.add("Route", f"<{proxy}>")
        destinations = await self._candidates(request, host, port)
        seconds = timeout if timeout is not None else self.timeout
        if seconds is None and request.method == "INVITE":
            seconds = INVITE_TIMEOUT
        try:
            with _fail_after(seconds):
                response, destination = await self._transact_with_failover(request, destinations)
                credentials = auth or self.auth
                attempts = 0
                while (
                    response.status_code in (401, 407) and credentials is not None and attempts < 2
                ):
                    previous = response
                    retry = self._authorize(
                        response.request or request,
                        response,
                        credentials,
                        strict_realm=False,
                        stale_only=attempts > 0,
                    )
                    if retry is None:
                        break
                    attempts += 1
                    response = await self._transact(retry, destination, attempt=attempts + 1)
                    response.history[:0] = [*previous.history, previous]
        except trio.TooSlowError:
            raise TimeoutError(request.method, str(request.uri), seconds or 0.0) from None
        if request.method == "REGISTER" and response.is_success:
            self._keep_registrar_connection(response.request or request, destination)
        return await self._maybe_register_note(response)

    def _keep_registrar_connection(self, register: Request, destination: Address) -> None:
        """Over TCP/TLS the registrar reaches us over our connection: keep it open with
        keep-alives while a binding lasts (RFC 5626 4.4.1), let it idle out once removed."""
        keep_alive = getattr(self._transport, "keep_alive", None)
        if keep_alive is None:
            return  # UDP, or a memory transport
        try:
            removing = register.expires == 0 or any(
                c.expires == 0 for c in register.contact if not c.is_wildcard
            )
        except ParseError:
            return
        keep_alive(destination, not removing)

    async def _transact_with_failover(
        self, request: Request, destinations: list[Address]
    ) -> tuple[Response, Address]:
        """The first transaction of a request: on a transport failure or a transaction
        timeout, the same request (new branch) goes to the next address (RFC 3263 4.3)."""
        for destination in destinations[:-1]:
            stamped = "Via" not in request.headers
            try:
                return await self._transact(request, destination), destination
            except (TransportError, TimeoutError) as exc:
                log.info(
                    "%s to %s:%s failed (%s); trying the next server",
                    request.method,
                    *destination,
                    exc,
                )
                if stamped:
                    del request.headers["Via"]
        return await self._transact(request, destinations[-1]), destinations[-1]

    async def _maybe_register_note(self, response: Response) -> Response:
        request = response.request
        if request is not None and request.method == "REGISTER":
            for state in self._registrations.values():
                if state.call_id == request.call_id:
                    self._note_registration(state, response)
                    state.cseq = max(state.cseq, request.cseq.seq)
        return response

    def _authorize(
        self,
        request: Request,
        response: Response,
        credentials: Auth.Digest,
        *,
        strict_realm: bool,
        stale_only: bool = False,
    ) -> Request | None:
        header = "WWW-Authenticate" if response.status_code == 401 else "Proxy-Authenticate"
        challenges = digest.parse_challenges(response.headers.get_list(header), header)
        usable = [c for c in challenges if credentials.matches(c)]
        if not usable:
            if strict_realm:
                realms = ", ".join(c.realm for c in challenges) or "none"
                raise AuthError(
                    f"credentials for realm {credentials.realm!r} do not match"
                    f" the challenge (realm {realms})"
                )
            return None
        try:
            challenge = digest.select_challenge(usable)
        except AuthError:
            if strict_realm:
                raise
            return None
        if stale_only and not challenge.stale:
            return None  # a second challenge after an answered one goes back to the caller
        uri = str(request.uri)
        value = digest.build_credentials(
            challenge,
            username=credentials.username,
            password=credentials.password,
            method=request.method,
            uri=uri,
            body=request.content,
            cnonce=self._ids.cnonce(),
            nonce_count=self._nonces.next(challenge.nonce),
        ).to_header_value()
        retry = build_auth_retry(request, digest.credentials_header_name(challenge), value)
        generated = self._generated_contacts.get(request.call_id)
        if generated is not None and retry.headers.get_first("Contact") == generated:
            # Written anew on sending: the challenge may have taught us our NAT address.
            del retry.headers["Contact"]
        return retry

    async def _run_request_hooks(self, request: Request, destination: Address) -> Request:
        if self.events is None:
            return request
        context = RequestContext(
            request, client=self, destination=destination, transport=self.transport_name
        )
        result: Request = await dispatch(self.events, "request", request, context)
        return result

    async def _transact(
        self, request: Request, destination: Address | None, *, attempt: int = 1
    ) -> Response:
        """One client transaction: send, wait for the final response, run the hooks."""
        if destination is None:
            destination = await self._destination(request, None, None)
        transport = self._require_transport()
        if "Via" not in request.headers:
            self._stamp(request, destination)
        context = RequestContext(
            request,
            client=self,
            destination=destination,
            transport=transport.name,
            attempt=attempt,
        )
        if self.events is not None:
            request = await dispatch(self.events, "request", request, context)
            context.request = request
        self._remember_destination(request, destination)
        send_channel, receive_channel = trio.open_memory_channel[Response | Exception](math.inf)
        transaction = self._layer.send_request(
            request, trio.current_time(), reliable=transport.reliable, destination=destination
        )
        self._waiters[transaction] = send_channel
        is_invite = request.method == "INVITE"
        if is_invite:
            self._pending_invites[request.call_id] = transaction
        self._pump()
        history: list[Response] = []
        handed_off = False
        try:
            async for item in receive_channel:
                if isinstance(item, Exception):
                    raise item
                response = item
                response.request = request
                context.response = response
                if self.events is not None:
                    response = await dispatch(self.events, "response", response, context)
                    if response.status_code in (401, 407):
                        response = await dispatch(self.events, "auth_challenge", response, context)
                    response.request = request
                if response.status_code < 200:
                    if is_invite:
                        self._on_invite_provisional(request, response)
                    history.append(response)
                    continue
                response.history = history
                if is_invite and response.is_success:
                    self._on_invite_success(request, response)
                return response
            raise TransportError("transaction ended without a response")
        except trio.Cancelled:
            if is_invite and self._nursery is not None and not self._closed:
                # CANCEL in the client's nursery, so that the caller's deadline is kept
                # even while the CANCEL still waits for a provisional response.
                handed_off = True
                self._aborts += 1
                self._nursery.start_soon(
                    self._cancel_on_abort, transaction, history, receive_channel
                )
            raise
        finally:
            if not handed_off:
                self._waiters.pop(transaction, None)
            if is_invite:
                self._pending_invites.pop(request.call_id, None)
                # A final response (or giving up) ends the INVITE's early dialogs.
                for early in [d for d in self._early_dialogs.values() if d.invite is request]:
                    del self._early_dialogs[early.id]

    async def _cancel_on_abort(
        self,
        transaction: ClientTransaction,
        history: list[Response],
        responses: trio.MemoryReceiveChannel[Response | Exception],
    ) -> None:
        """The caller gave up on an INVITE: CANCEL it, bounded in time (RFC 3261 9.1).

        CANCEL waits for a provisional response; a 2xx that wins the race is ACKed and
        ended with BYE so that the callee is not left in a half-open call.
        """
        try:
            await self._cancel_when_due(transaction, history, responses)
        finally:
            self._waiters.pop(transaction, None)
            self._aborts -= 1
            if not self._aborts:
                self._aborts_idle.set()

    async def _cancel_when_due(
        self,
        transaction: ClientTransaction,
        history: list[Response],
        responses: trio.MemoryReceiveChannel[Response | Exception],
    ) -> None:
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + self.timers.t1 * 16
            async with trio.open_nursery() as nursery:
                cancelled = False
                if any(r.status_code < 200 for r in history):
                    nursery.start_soon(self._quiet_cancel, transaction)
                    cancelled = True
                async for item in responses:
                    if isinstance(item, Exception):
                        break
                    if item.status_code < 200:
                        if not cancelled:
                            nursery.start_soon(self._quiet_cancel, transaction)
                            cancelled = True
                        continue
                    if item.is_success:
                        item.request = transaction.request
                        await self._end_unwanted_call(item)
                    break
                nursery.cancel_scope.deadline = min(
                    nursery.cancel_scope.deadline, trio.current_time() + self.timers.t1 * 8
                )

    async def _quiet_cancel(self, transaction: ClientTransaction) -> None:
        try:
            await self._send_cancel(transaction)
        except SIPError as exc:
            log.debug("CANCEL after abort failed: %s", exc)

    async def _end_unwanted_call(self, response: Response) -> None:
        """ACK and BYE a 2xx to an INVITE the caller no longer wants."""
        assert response.request is not None
        self._on_invite_success(response.request, response)
        try:
            dialog = self._dialog_for_response(response)
            await self._ack_in_dialog(dialog, response)
            await self.bye(dialog_id=dialog.id)
        except SIPError as exc:
            log.debug("ending an abandoned call failed: %s", exc)

    async def _send_cancel(self, transaction: ClientTransaction) -> Response:
        cancel = build_cancel(transaction.request)
        destination = transaction.destination
        assert isinstance(destination, tuple)
        return await self._transact(cancel, destination)

    async def _send_in_dialog(
        self, dialog: Dialog, request: Request, *, timeout: float | None
    ) -> Response:
        address = await self._next_hop_address(dialog.next_hop())
        seconds = timeout if timeout is not None else self.timeout
        try:
            with _fail_after(seconds):
                response = await self._transact(request, address)
                if response.status_code in (401, 407) and self.auth is not None:
                    retry = self._authorize(request, response, self.auth, strict_realm=False)
                    if retry is not None:
                        dialog.local_seq += 1
                        previous = response
                        response = await self._transact(retry, address)
                        response.history[:0] = [*previous.history, previous]
        except trio.TooSlowError:
            raise TimeoutError(request.method, str(request.uri), seconds or 0.0) from None
        dialog.receive_response(response)
        return response

    async def _maybe_in_dialog(
        self,
        method: str,
        uri: str | None,
        response: Response | None,
        dialog_id: DialogId | str | None,
        fields: dict[str, str],
        body: str | bytes | None,
        content_type: str | None,
        kwargs: dict[str, Any],
    ) -> Response:
        content = body_bytes(body)
        if content:
            fields.setdefault("Content-Type", content_type or guess_content_type(body, content))
        if response is not None or dialog_id is not None:
            dialog = self._find_dialog(response, dialog_id)
            request = dialog.create_request(method, headers=fields, content=content)
            return await self._send_in_dialog(dialog, request, timeout=kwargs.get("timeout"))
        if uri is None:
            raise ValueError(f"{method.lower()}() needs a uri, a response or a dialog_id")
        return await self.request(method, uri, headers=fields, body=content or None, **kwargs)

    def _remember_destination(self, request: Request, destination: Address) -> None:
        self._destinations[_request_key(request)] = destination
        while len(self._destinations) > 256:
            self._destinations.popitem(last=False)

    def _send_bytes(self, data: bytes, address: Address) -> None:
        transport = self._require_transport()
        if self._trace is not None:
            self._trace("out", data, address, transport.name)
        if wire_log.isEnabledFor(logging.DEBUG):
            wire_log.debug("send to %s:%s\n%s", *address, data.decode("utf-8", "replace"))
        transport.send_nowait(data, address)

    # -- dialogs -----------------------------------------------------------------------------
    def _on_invite_provisional(self, request: Request, response: Response) -> None:
        """A 101-199 with a To tag creates an early dialog; forks make several (12.1.2)."""
        if request.to.tag or not response.to.tag or response.status_code == 100:
            return
        try:
            dialog = Dialog.from_uac_response(request, response)
        except (ProtocolError, ParseError):
            return
        self._early_dialogs.setdefault(dialog.id, dialog)

    def _on_invite_success(self, request: Request, response: Response) -> None:
        if request.to.tag:
            return  # a re-INVITE: the dialog exists and absorbs the response itself
        self._sent_invites[(request.call_id, request.cseq.seq)] = request
        while len(self._sent_invites) > 256:
            self._sent_invites.pop(next(iter(self._sent_invites)))
        try:
            dialog = Dialog.from_uac_response(request, response)
        except (ProtocolError, ParseError) as exc:
            log.warning("2xx to INVITE does not create a dialog: %s", exc)
            return
        self._dialogs[dialog.id] = dialog
        for early in [d for d in self._early_dialogs.values() if d.call_id == dialog.call_id]:
            del self._early_dialogs[early.id]

    @property
    def early_dialogs(self) -> list[Dialog]:
        """Early dialogs of pending INVITEs (one per fork that sent a 1xx with a To tag)."""
        return list(self._early_dialogs.values())

    def _dialog_for_response(self, response: Response) -> Dialog:
        dialog_id = dialog_id_of(response)
        dialog = self._dialogs.get(dialog_id) if dialog_id else None
        if dialog is None:
            raise ProtocolError("no dialog for this response (was it a 2xx to an INVITE?)")
        return dialog

    def _find_dialog(self, response: Response | None, dialog_id: DialogId | str | None) -> Dialog:
        if response is None and dialog_id is None:
            raise ValueError("Either response or dialog_id must be provided")
        if response is not None:
            return self._dialog_for_response(response)
        for dialog in self._dialogs.values():
            if dialog_id in (dialog.id, str(dialog.id), dialog.call_id):
                return dialog
        raise ProtocolError(f"no dialog {dialog_id}")

    @property
    def dialogs(self) -> list[Dialog]:
        return list(self._dialogs.values())

    # -- the receive path (runs synchronously inside the transport's loop) --------------------
    def _on_message(self, data: bytes, source: Address, transport: Transport) -> None:
        if self._trace is not None:
            self._trace("in", data, source, transport.name)
        if wire_log.isEnabledFor(logging.DEBUG):
            wire_log.debug("received from %s:%s\n%s", *source, data.decode("utf-8", "replace"))
        if not data.strip():
            return  # keep-alive
        try:
            message = parse_message(data)
            now = trio.current_time()
            if isinstance(message, Response):
                message.top_via  # noqa: B018 - a response we cannot match is dropped
                self._learn_public_address(message, source)
                self._layer.receive_response(message, now)
            else:
                # RFC 3261 8.1.1: without these no response can be built; drop it here.
                message.to, message.from_, message.call_id, message.cseq  # noqa: B018
                stamp_received(message, source)
                self._layer.receive_request(
                    message, now, reliable=transport.reliable, destination=source
                )
        except (ParseError, ProtocolError) as exc:
            log.info("dropping a malformed message from %s:%s: %s", source[0], source[1], exc)
            return
        self._pump()

    def _on_transport_error(self, address: Address, error: Exception) -> None:
        """A connection to ``address`` failed: fail every transaction waiting on it."""
        now = trio.current_time()
        self._transport_errors[address] = str(error) or type(error).__name__
        for transaction in list(self._waiters):
            if transaction.destination == address:
                self._layer.transport_error(transaction, now)
        self._pump()

    def _learn_public_address(self, response: Response, source: Address) -> None:
        """Remember how ``source`` saw us (received/rport): behind a NAT, later Contacts
        toward it carry that address."""
        via = response.top_via
        received, rport = via.received, via.rport
        if received is None and rport is None:
            return
        transport = self._require_transport()
        host = received or via.host
        port = rport or via.port or transport.local_address[1]
        if transport.reliable:
            # over TCP rport is the ephemeral port of our outgoing connection, which takes
            # no new connections: a Contact carrying it would be unreachable (and an
            # un-REGISTER with it would not match the binding). Keep our listening port.
            port = via.port or transport.local_address[1]
        if (host, port) != (via.host, via.port):
            self._public_addresses[source] = (host, port)
        else:
            self._public_addresses.pop(source, None)

    def _pump(self) -> None:
        """Carry out what the transaction layer asks for (until it has nothing more)."""
        while events := self._layer.pop_events():
            self._handle_events(events)
        deadline = self._layer.next_deadline()
        if deadline is not None and deadline < self._armed_deadline:
            self._timer_wakeup.set()

    def _handle_events(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Send):
                destination = event.transaction.destination
                assert isinstance(destination, tuple)
                try:
                    self._send_bytes(event.to_bytes(), destination)
                except (TransportError, OSError) as exc:
                    # RFC 3261 17.1.4 / 17.2.4: the transaction hears of it; the client goes on.
                    self._transport_errors[destination] = str(exc)
                    self._layer.transport_error(event.transaction, trio.current_time())
            elif isinstance(event, ResponseReceived):
                channel = self._waiters.get(event.transaction)
                if channel is not None:
                    channel.send_nowait(event.response)
                else:
                    self._on_stray_response(event.response)
            elif isinstance(event, RequestReceived):
                self._require_nursery().start_soon(
                    self._serve_request, event.transaction, event.request
                )
            elif isinstance(event, AckReceived):
                self._on_ack(event.request)
            elif isinstance(event, StrayResponse):
                self._on_stray_response(event.response)
            elif isinstance(event, TransactionTimeout):
                self._fail_waiter(
                    event.transaction,
                    lambda t: TimeoutError(
                        t.request.method, str(t.request.uri), self.timers.timer_b
                    ),
                )
            elif isinstance(event, TransportFailed):
                self._fail_waiter(
                    event.transaction,
                    lambda t: TransportError(
                        f"{t.request.method} {t.request.uri}: transport failure"
                        f" ({self._transport_errors.pop(t.destination, 'send failed')})"
                    ),
                )

    def _fail_waiter(self, transaction: object, error: Callable[[Any], Exception]) -> None:
        channel = self._waiters.get(transaction)  # type: ignore[call-overload]
        if channel is not None:
            channel.send_nowait(error(transaction))

    def _on_stray_response(self, response: Response) -> None:
        """A 2xx after the INVITE completed: ACK a retransmission again; a 2xx from another
        fork (new To tag) is ACKed and ended with BYE (RFC 3261 13.2.2.4)."""
        try:
            if not (response.is_success and response.cseq.method == "INVITE"):
                return
            key = (response.call_id, response.cseq.seq)
            sent = self._acks.get((*key, response.to.tag or ""))
            if sent is not None:
                self._send_bytes(*sent)
                return
            if dialog_id_of(response) in self._dialogs:
                return  # the caller has not ACKed this dialog's 2xx yet
            invite = self._sent_invites.get(key)
        except ParseError:
            return
        if invite is not None and response.to.tag:
            response.request = invite
            self._require_nursery().start_soon(self._end_unwanted_call, response)

    def _on_ack(self, request: Request) -> None:
        dialog_id = dialog_id_of(request)
        dialog = self._dialogs.get(dialog_id) if dialog_id else None
        if dialog is not None and dialog.state is DialogState.EARLY:
            dialog.state = DialogState.CONFIRMED
        self._uas.on_ack(request)

    async def _serve_request(self, transaction: ServerTransaction, request: Request) -> None:
        try:
            await self._uas.serve(transaction, request)
        except Exception:  # a background task never crashes the client
            log.exception("serving %s failed", request.method)

    # -- timers --------------------------------------------------------------------------------
    async def _timer_loop(self) -> None:
        while True:
            deadline = self._layer.next_deadline()
            self._armed_deadline = math.inf if deadline is None else deadline
            with trio.move_on_at(self._armed_deadline):
                await self._timer_wakeup.wait()
            self._timer_wakeup = trio.Event()
            self._layer.handle_timers(trio.current_time())
            self._pump()

    def _require_nursery(self) -> trio.Nursery:
        if self._nursery is None or self._closed:
            raise RuntimeError("the client is not open: use 'async with AsyncClient(...)'")
        return self._nursery

    def _note_registration(self, state: _Registration, response: Response) -> None:
        if not response.is_success:
            return
        granted: int | None = None
        try:
            for contact in response.contact:
                if contact.expires is not None:
                    granted = contact.expires if granted is None else min(granted, contact.expires)
            if granted is None:
                granted = response.expires
        except ParseError:
            granted = None
        state.granted = granted if granted is not None else state.expires
        state.registered_at = trio.current_time()


def _request_key(request: Request) -> tuple[str, int, str]:
    return (request.call_id, request.cseq.seq, request.method)


def _fail_after(seconds: float | None) -> AbstractContextManager[object]:
    return trio.fail_after(seconds) if seconds is not None else trio.CancelScope()


def _single(error: BaseException) -> BaseException:
    """One clear exception from a group that holds a single one."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def _version() -> str:
    from . import __version__

    return __version__


__all__ = ["AsyncClient", "LocalAddress"]
