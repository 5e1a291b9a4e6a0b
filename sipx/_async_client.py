"""AsyncClient: a SIP user agent on trio, and its public verbs.

``async with AsyncClient(...) as client`` runs the client's :class:`~sipx._engine.Engine`
(transport, transactions, timers, dialogs and one nursery) for the body of the block; leaving
it ends the client's calls (BYE, CANCEL or a final response, shielded and bounded), fails its
pending requests with :class:`~sipx.ClientClosedError` and cancels its tasks.

This module is the public surface: the collaborators behind it each do one job —
:mod:`sipx._uac` (sending, failover, CANCEL, ACK), :mod:`sipx._uas` (answering),
:mod:`sipx._next_hop` (routing, Via and Contact), :mod:`sipx._auth_flow` (digest),
:mod:`sipx._registration` (REGISTER and its refresh).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, NamedTuple

from . import _validate
from ._auth import Auth
from ._auth_flow import DigestAuth
from ._call import Call, sdp_of
from ._call_media import CallMedia
from ._core.builder import apply_user_headers, body_bytes, build_request, guess_content_type
from ._core.dialog import Dialog, DialogId, dialog_id_of
from ._core.event import EventHeader
from ._core.header_types import NameAddr
from ._core.ids import IdSource, TokenPool
from ._core.message import Request, Response
from ._core.request_template import RequestTemplate, RequestTemplates
from ._core.sdp import SDPBody
from ._core.session_timer import DEFAULT_SESSION_EXPIRES, MIN_SE, OPTION_TAG, with_option_tag
from ._core.subscription import default_accept, event_of
from ._core.timers import TimerConfig
from ._core.uri import URI
from ._engine import Engine, TraceHook
from ._errors import AuthError, ParseError, ProtocolError
from ._events import Events
from ._limits import DEFAULT_LIMITS, Limits, LimitStats
from ._next_hop import NextHop
from ._notifier import SubscribeHandler
from ._placed_call import place_early, settle
from ._publication import Publication, Publishers, new_publication
from ._registration import Registrations
from ._subscription import Subscription
from ._transports import LISTENING, ClientTransports
from ._trio.lifetime import Lifetime
from ._trio.resolver import Resolver
from ._trio.tls import TLSCert, TLSVerify
from ._trio.transport import Address, Network
from ._uac import INVITE_TIMEOUT, UserAgentClient
from ._uas import RequestHandler, UserAgentServer
from ._watch import Watch


class LocalAddress(NamedTuple):
    host: str
    port: int


def _keep_from_tag(request: Request, tag: str) -> None:
    """RFC 3261 8.1.1.3: a From given in ``headers=`` still gets the tag it must carry."""
    if request.from_.tag is None:
        request.headers["From"] = f"{request.headers['From']};tag={tag}"


class AsyncClient(Lifetime):
    """A SIP user agent on trio; use ``async with AsyncClient(...) as client``.

    By default it listens on UDP and TCP on ``local_port`` (and on TLS with a
    certificate), answers each request over the transport it came in on, and sends its own
    requests over ``transport=`` unless their URI names another it runs; ``transports=``
    chooses the set (see ``docs/API.md``, "Transports"). ``local_port=0`` picks a port
    free for all of them. Requests raise :class:`sipx.TimeoutError` when no
    final response arrives within ``timeout`` seconds (per call or per client) or before the
    transaction's own Timer B/F (32 s with the default T1), and
    :class:`sipx.ClientClosedError` when the client closes first. ``info_packages`` names
    the Info Packages (RFC 6086) the client takes in INFO requests (sent in Recv-Info; an
    INFO naming another one gets 469). ``limits`` (:class:`sipx.Limits`) bounds what the
    network can make the client hold: server transactions, connections, message sizes.

    ``reliable_provisional`` (RFC 3262, 100rel; on by default): INVITEs carry ``Supported:
    100rel``, incoming calls may be rung reliably (``call.ring(reliable=...)``); off, an
    INVITE that requires 100rel gets ``420 Bad Extension``. A reliable 1xx we receive is
    PRACKed either way.
    """

    _already_running = "the client is already open"

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
        network: Network | None = None,
        id_token: Callable[[int], str] | None = None,
        verify: TLSVerify = True,
        cert: TLSCert | None = None,
        nameservers: Sequence[str] | None = None,
        rtp_ports: tuple[int, int] = (10000, 20000),
        info_packages: Sequence[str] = (),
        reliable_provisional: bool = True,
        transports: Sequence[str] | None = None,
        tls_port: int | None = None,
        session_expires: int | None = DEFAULT_SESSION_EXPIRES,
        min_se: int = MIN_SE,
        limits: Limits | None = None,
    ) -> None:
        _validate.text("local_host", local_host)
        interval = _validate.session_timer(session_expires, min_se)
        if limits is not None and not isinstance(limits, Limits):
            raise TypeError(f"limits is a sipx.Limits or None, not {limits!r}")
        _validate.port("local_port", local_port)
        _validate.port("tls_port", tls_port, optional=True)
        _validate.text("transport", transport)
        _validate.timeout("timeout", timeout)
        _validate.credentials("auth", auth)
        self._transports = ClientTransports(
            transport,
            transports,
            local_port=local_port,
            tls_port=tls_port,
            verify=verify,
            cert=cert,
            network=network,
        )
        transport_name = self._transports.default
        self.local_host = local_host
        self.local_port = local_port
        self.transport_name = transport_name
        self.timers = timers or TimerConfig()
        self.user_agent = user_agent if user_agent is not None else f"sipx/{_version()}"
        self.outbound_proxy = URI.parse(outbound_proxy) if outbound_proxy else None
        self._ids = IdSource(id_token or TokenPool(os.urandom))
        # Out-of-dialog requests sent again to the same target are made from a template.
        self._templates = RequestTemplates()
        self._resolver = Resolver(nameservers)
        self._engine = Engine(self.timers, self._ids, trace=trace, limits=limits or DEFAULT_LIMITS)
        self._engine.default_transport = transport_name
        self._next_hop = NextHop(
            self._engine,
            self._resolver,
            self._ids,
            transport_name=transport_name,
            outbound_proxy=self.outbound_proxy,
            default_user=auth.username if auth is not None else "sipx",
        )
        self._uac = UserAgentClient(
            self._engine,
            self._next_hop,
            DigestAuth(self._ids, self._next_hop.generated_contacts),
            events=events,
            context_client=self,
            timeout=timeout,
            credentials=auth,
        )
        self._uac.on_register = self._on_register
        self._uas = UserAgentServer(self._engine, self._next_hop, self._uac, self)
        if not (
            isinstance(rtp_ports, tuple)
            and len(rtp_ports) == 2
            and all(isinstance(port, int) for port in rtp_ports)
            and 0 < rtp_ports[0] <= rtp_ports[1] <= 65535
        ):
            raise ValueError(f"rtp_ports is a (low, high) pair within 1-65535, not {rtp_ports!r}")
        self._uas.rtp_host = local_host
        self._uas.rtp_ports = rtp_ports
        self._uas.set_info_packages(info_packages)
        if not isinstance(reliable_provisional, bool):
            raise TypeError(f"reliable_provisional is True or False, not {reliable_provisional!r}")
        # RFC 3262: Supported: 100rel in our INVITEs, PRACK for reliable 1xx, ring(reliable=).
        self._uac.reliable_provisional = reliable_provisional
        self._uas.reliable_provisional = reliable_provisional
        self._uas.session_expires = interval
        self._uas.min_se = min_se
        self._registrations = Registrations(self._engine, self._ids, self.user_agent)
        self._publishers = Publishers(self._engine, self._uac, self._new_publish)
        self._engine.on_response_seen = self._next_hop.learn_public_address

    @property
    def auth(self) -> Auth.Digest | None:
        """The credentials that answer challenges (``auth=``)."""
        return self._uac.credentials

    @auth.setter
    def auth(self, value: Auth.Digest | None) -> None:
        self._uac.credentials = value
        self._next_hop.default_user = value.username if value is not None else "sipx"

    @property
    def events(self) -> Events | None:
        """The event hooks (``events=``); may be replaced at any time."""
        return self._uac.events

    @events.setter
    def events(self, value: Events | None) -> None:
        self._uac.events = value

    @property
    def timeout(self) -> float | None:
        """The default ``timeout=`` of every request, in seconds (None: Timer B/F only)."""
        return self._uac.timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self._uac.timeout = _validate.timeout("timeout", value)

    # -- lifecycle -----------------------------------------------------------------------
    def _lifetime(self) -> AbstractAsyncContextManager[Engine]:
        """The engine runs for the body of ``async with`` (see :class:`Lifetime`)."""
        groups = self._transports.groups(self._engine, self._resolver)
        return self._engine.run(self.local_host, groups)

    async def aclose(self) -> None:
        """End the client now: its calls (BYE, CANCEL, 480, within 16·T1), its pending
        requests (:class:`~sipx.ClientClosedError`) and its tasks. Safe from any task; the
        ``async with`` block still owns the client and finishes closing it on exit."""
        await self._engine.close()

    @property
    def closed(self) -> bool:
        return self._engine.closed

    @property
    def transports(self) -> tuple[str, ...]:
        """The transports the client runs, ``transport=`` first (before it opens: those it
        will try; a default listener whose port was taken is not among them)."""
        return self._transports.running(self._engine)

    @property
    def limits(self) -> Limits:
        """The resource bounds (``limits=``, else the defaults of :class:`sipx.Limits`)."""
        return self._engine.limits

    @property
    def limit_stats(self) -> LimitStats:
        """What the limits turned away so far: refused requests and connections, ..."""
        return self._engine.limit_stats()

    @property
    def local_address(self) -> LocalAddress:
        """Where ``transport=`` listens (UDP and TCP share it; TLS may have a port of its
        own); for WS/WSS, which listen on nothing, the port of a transport that listens,
        else 0. A wildcard bind reports the interface that routes onwards."""
        port = self._transports.listening_port(self._engine)
        return LocalAddress(self._next_hop.local_host(), port)

    @property
    def local_addresses(self) -> dict[str, LocalAddress]:
        """Where each transport listens, by name (``{"UDP": ..., "TCP": ..., "TLS": ...}``);
        WS and WSS, which listen on nothing, are not in it."""
        host = self._next_hop.local_host()
        self._engine.require_transport()
        return {
            name: LocalAddress(host, self._engine.require_transport(name).local_address[1])
            for name in self._transports.running(self._engine)
            if name in LISTENING
        }

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
        return await self._uac.send(request, host=host, port=port, timeout=timeout, auth=auth)

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
        # request()'s work without its frame: one coroutine fewer per request in flight.
        request = self._new_request("OPTIONS", uri, headers=headers, body=None)
        return await self._uac.send(request, host=host, port=port, timeout=timeout, auth=auth)

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
        fields: dict[str, str] = {} if contact is None else {"Contact": contact}
        fields.update(headers or {})
        request = self._registrations.build(
            aor, registrar=registrar, expires=expires, headers=fields, host=host, port=port
        )
        return await self._uac.send(request, host=host, port=port, timeout=timeout, auth=auth)

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
        return await self._uac.send(request, host=host, port=port, timeout=timeout, auth=auth)

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
        return await self._uac.ack(self._uac.dialog_for(response), response, body)

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
        early_media: bool = False,
    ) -> Call:
        """Place a call: INVITE (with a default PCMU/PCMA offer unless ``body`` is given),
        then ACK the 2xx. Returns the :class:`Call`; ``call.established`` tells if it was answered.

        An empty ``body`` ("" or b"") places a late-offer call: the INVITE has no SDP, the
        callee offers in its 2xx and sipx answers in the ACK (its media, as by default).

        ``early_media=True`` returns the call as soon as a provisional response brings the
        callee's SDP (a 183: ring-back, an announcement), ``EARLY`` with its media running;
        ``await call.wait_answered()`` then gives the final response.
        """
        if not isinstance(early_media, bool):
            raise TypeError(f"early_media is True or False, not {early_media!r}")
        late_offer = isinstance(body, (str, bytes)) and not body
        if late_offer and early_media:
            raise ValueError(
                "early_media needs an offer in the INVITE (body=None or an SDP): with an"
                " empty body the callee offers in its 2xx and the ACK answers"
            )
        self._engine.require_transport()
        media = None
        if body is None or late_offer:  # sipx carries the media, on a port of rtp_ports
            media = CallMedia(self._engine, self._uas.new_media_stream(), self._uas.media_clock)
            assert media.stream is not None
            if body is None:  # our own offer (else the callee's comes in the 2xx)
                body = self._uas.default_sdp(None, port=media.stream.local_port)
        fields = self._uas.call_headers()  # Allow; with session timers, Session-Expires...
        if self._uas.info_packages:  # RFC 6086 5.2.1: the Info Packages we take
            fields["Recv-Info"] = ", ".join(self._uas.info_packages)
        for name, value in (headers or {}).items():  # the user's win (later names replace)
            if name.lower() in ("supported", "k") and "Supported" in fields:
                value = with_option_tag(value, OPTION_TAG)
            fields[name] = value
        try:
            request = self._new_request(
                "INVITE", to_uri, headers=fields, body=body, from_uri=from_uri
            )
        except BaseException:
            if media is not None:
                media.close()
            raise

        async def send(invite: Request) -> Response:
            return await self._uac.send(invite, host=host, port=port, timeout=timeout, auth=auth)

        if early_media:
            return await place_early(self._uas, request, media, send)
        answers: list[SDPBody] = []  # a 183's SDP: the answer, unless the 2xx brings one
        if media is not None and not late_offer:  # (a late offer is answered in the ACK)
            offer = sdp_of(request)

            def early(response: Response) -> None:  # a 183 with SDP: media starts now
                answer = sdp_of(response)
                if answer is not None:
                    answers.append(answer)
                media.negotiated(offer, answer, we_offered=True)

            self._uac.early_media[request.call_id] = early
        try:
            response = await send(request)
        except BaseException:
            if media is not None:
                media.close()
            raise
        finally:
            self._uac.early_media.pop(request.call_id, None)
        assert response.request is not None
        call = Call(self._uas, response.request, direction="outgoing", media=media)
        await settle(self._uas, call, response, answers[-1] if answers else None)
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
        return await self._uac.bye(dialog, headers=dict(headers or {}), timeout=timeout)

    async def cancel(
        self, request: Request | None = None, *, call_id: str | None = None
    ) -> Response:
        """CANCEL a pending INVITE (the most recent one by default); returns the CANCEL's response.

        The INVITE itself then completes with 487 Request Terminated.
        """
        if request is not None:
            call_id = request.call_id
        pending = self._uac.pending_invites
        if call_id is None:
            if not pending:
                raise ProtocolError("no INVITE is pending")
            call_id = next(reversed(pending))
        transaction = pending.get(call_id)
        if transaction is None:
            raise ProtocolError(f"no pending INVITE with Call-ID {call_id}")
        return await self._uac.cancel(transaction)

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
        _validate.text("text", text)
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
        from_uri: str | None = None,
        host: str | None = None,
        port: int | None = None,
        timeout: float | None = None,
        auth: Auth.Digest | None = None,
    ) -> Subscription:
        """Subscribe to ``event`` at ``uri`` (RFC 6665) and return the :class:`Subscription`.

        The SUBSCRIBE carries Event, Expires and an Accept (by default the package's body
        type: message-summary, presence, dialog). It returns once the SUBSCRIBE has its
        final response (``sub.response``; a refused one leaves ``sub`` terminated). The
        subscription refreshes itself until ``await sub.unsubscribe()`` or the client
        closes; ``async for notification in sub`` yields its NOTIFYs.
        """
        package = _subscription_package(event, expires)
        fields = {"Event": event, "Expires": str(expires)}
        accept = accept if accept is not None else default_accept(package)
        if accept:
            fields["Accept"] = accept
        fields.update(headers or {})
        request = self._new_request("SUBSCRIBE", uri, headers=fields, body=None, from_uri=from_uri)
        try:  # headers= may have replaced them
            request.expires  # noqa: B018
            event_of(request)
        except ParseError as exc:
            raise ValueError(f"bad Expires or Event header: {exc}") from None
        return await self._uas.subscribers.subscribe(
            request, host=host, port=port, timeout=timeout, auth=auth
        )

    def watch(
        self,
        uri: str,
        event: str,
        expires: int = 3600,
        *,
        accept: str | None = None,
        headers: Mapping[str, str] | None = None,
        from_uri: str | None = None,
        host: str | None = None,
        port: int | None = None,
        timeout: float | None = None,
        auth: Auth.Digest | None = None,
    ) -> Watch:
        """Watch ``event`` at ``uri``: a :class:`Watch` to enter with ``async with``, whose
        ``async for`` yields the NOTIFYs of a subscription renewed as RFC 6665 4.2.2
        suggests (after ``deactivated`` or ``timeout`` at once, after ``probation`` or
        ``giveup`` later) until the block is left, which unsubscribes. The arguments are
        those of :meth:`subscribe` (checked here)."""
        _subscription_package(event, expires)
        _validate.uri("uri", uri)

        async def subscribe() -> Subscription:
            return await self.subscribe(
                uri,
                event,
                expires,
                accept=accept,
                headers=headers,
                from_uri=from_uri,
                host=host,
                port=port,
                timeout=timeout,
                auth=auth,
            )

        return Watch(subscribe)

    async def publish(
        self,
        uri: str,
        event: str,
        body: str | bytes,
        *,
        content_type: str | None = None,
        expires: int = 3600,
        headers: Mapping[str, str] | None = None,
        from_uri: str | None = None,
        host: str | None = None,
        port: int | None = None,
        timeout: float | None = None,
        auth: Auth.Digest | None = None,
    ) -> Publication:
        """Publish ``body`` as the ``event`` state of ``uri`` (RFC 3903) and return the
        :class:`Publication` once the PUBLISH has its final response (``pub.response``;
        ``pub.etag`` is None when it was refused).

        The Content-Type defaults to the package's body type (presence, message-summary,
        dialog). The publication refreshes itself until ``await pub.remove()`` or the client
        closes (which removes it); ``await pub.modify(body)`` replaces the state.
        """
        _validate.uri("uri", uri)
        _validate.text("event", event)
        try:
            package = EventHeader.parse(event).package
        except ParseError as exc:
            raise ValueError(f"bad event package {event!r}: {exc}") from None
        content_type = content_type or default_accept(package)
        if content_type is None:
            raise ValueError(f"give the content_type of a {package!r} publication")
        _validate.text("content_type", content_type)
        timeout = _validate.timeout("timeout", timeout)
        _validate.credentials("auth", auth)
        pub = new_publication(
            self._publishers,
            uri,
            event,
            body,
            content_type,
            expires,
            headers,
            from_uri,
            host=host,
            port=port,
            timeout=timeout,
            auth=auth,
        )
        return await self._publishers.publish(pub)

    @property
    def publications(self) -> list[Publication]:
        """The publications made by :meth:`publish` and not removed."""
        return self._publishers.publications

    def _new_publish(
        self,
        uri: str,
        fields: Mapping[str, str],
        body: bytes | None,
        content_type: str | None,
        from_uri: str | None,
    ) -> Request:
        return self._new_request(
            "PUBLISH", uri, headers=fields, body=body, content_type=content_type, from_uri=from_uri
        )

    def on_subscribe(self, event: str, handler: SubscribeHandler | None) -> None:
        """Serve the event package ``event`` as a notifier (RFC 6665).

        Each SUBSCRIBE for it reaches ``handler`` (plain or async) as an
        :class:`IncomingSubscription` to ``accept()`` (which returns the
        :class:`ServerSubscription` to ``notify()`` and ``terminate()``) or ``reject()``.
        SUBSCRIBEs for packages without a handler get 489 (Bad Event) once one is set.
        ``handler=None`` removes it.
        """
        self._uas.notifiers.on_subscribe(event, handler)

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

    async def update(
        self,
        response: Response | None = None,
        dialog_id: DialogId | str | None = None,
        body: str | bytes | SDPBody | None = None,
        *,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        """UPDATE (RFC 3311) within a dialog, confirmed or early: the dialog of ``response``
        (a 2xx, or a 1xx with a To tag while the INVITE is pending) or ``dialog_id`` (from
        ``dialogs`` or ``early_dialogs``). ``body`` is sent as it is (an SDP offer, or
        nothing); for a :class:`Call`, ``call.update()`` also moves its media."""
        _validate.body("body", body)
        dialog = self._find_dialog(response, dialog_id, early=True)
        content = body_bytes(body)
        fields: dict[str, str] = {}  # Contact: added on sending (a target refresh)
        if content:
            fields["Content-Type"] = content_type or guess_content_type(body, content)
        fields.update(headers or {})
        request = dialog.create_request("UPDATE", headers=fields, content=content or None)
        return await self._uac.send_in_dialog(dialog, request, timeout=timeout)

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
        final = await self._uac.retry_with_auth(response, credentials)
        if request.method == "REGISTER":
            self._registrations.note(final)
        return final

    # -- auto re-registration --------------------------------------------------------------
    async def enable_auto_reregister(self, aor: str, interval: float | None = None) -> None:
        """Refresh the registration of ``aor`` before it expires, until disabled or closed.

        The refresh comes at half the expiry the registrar granted below 64 s, else at 80 %
        of it and at least 32 s (one Timer F) before it runs out (so never more often than
        every 5 s unless the registrar grants under 10 s); ``interval`` (seconds) caps it.
        An AOR not registered yet is registered at once. Failures are retried with back-off
        (4, 8 ... 60 s).
        """
        self._registrations.enable(aor, interval, self.register)

    def disable_auto_reregister(self, aor: str | None = None) -> None:
        """Stop refreshing ``aor`` (every AOR when None)."""
        self._registrations.disable(aor)

    @property
    def auto_reregistering(self) -> list[str]:
        return list(self._registrations.refreshing)

    # -- incoming requests -------------------------------------------------------------------
    def on_request(self, method: str, handler: RequestHandler) -> None:
        """Handle incoming ``method`` requests.

        The handler gets an :class:`IncomingRequest` (a :class:`Call` for INVITE), may be a
        plain or async function, and answers with ``incoming.respond(...)`` or by returning a
        Response; if it does neither, the method's default answer is sent. For INVITE, a
        plain function runs as the request arrives; an async one in a task of its own.
        """
        self._uas.on_request(method, handler)

    # -- dialogs -----------------------------------------------------------------------------
    @property
    def dialogs(self) -> list[Dialog]:
        return list(self._engine.dialogs.values())

    @property
    def early_dialogs(self) -> list[Dialog]:
        """Early dialogs of pending INVITEs (one per fork that sent a 1xx with a To tag)."""
        return list(self._uac.early_dialogs.values())

    def _find_dialog(
        self,
        response: Response | None,
        dialog_id: DialogId | str | None,
        *,
        early: bool = False,
    ) -> Dialog:
        if response is None and dialog_id is None:
            raise ValueError("Either response or dialog_id must be provided")
        early_dialogs = list(self._uac.early_dialogs.values()) if early else []
        if response is not None:
            if early:
                for dialog in early_dialogs:
                    if dialog.id == dialog_id_of(response):
                        return dialog
            return self._uac.dialog_for(response)
        for dialog in [*self._engine.dialogs.values(), *early_dialogs]:
            if dialog_id in (dialog.id, str(dialog.id), dialog.call_id):
                return dialog
        raise ProtocolError(f"no dialog {dialog_id}")

    # -- building and sending requests -------------------------------------------------------
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
        if not isinstance(uri, str):
            _validate.uri("uri", uri)
        if from_uri is not None or to_uri is not None:  # (the usual request gives neither)
            _validate.uri("from_uri", from_uri, optional=True)
            _validate.uri("to_uri", to_uri, optional=True)
        if body is not None:
            _validate.body("body", body)
        if isinstance(uri, str):
            key = (method, uri, from_uri, to_uri, self.user_agent, self._next_hop.default_user)
            template = self._templates.get(key)
            if template is None and key not in self._templates:
                template = self._new_template(method, uri, from_uri, to_uri)
                self._templates.put(key, template)
            if template is not None:
                from_tag = self._ids.tag()
                request = template.request(self._ids.call_id(), from_tag)
                content = b"" if body is None else body_bytes(body)  # (no call for none)
                if content:
                    request.content = content
                    content_type = content_type or guess_content_type(body, content)
                    request.headers["Content-Type"] = content_type
                if headers:
                    apply_user_headers(request, headers)  # the caller's win, as below
                    _keep_from_tag(request, from_tag)
                return request
        target = uri if isinstance(uri, URI) else URI.parse(uri)
        from_addr, to_addr = self._from_and_to(target, from_uri, to_uri)
        from_tag = from_addr.params["tag"] = self._ids.tag()
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
        _keep_from_tag(request, from_tag)
        return request

    def _from_and_to(
        self, target: URI, from_uri: str | None, to_uri: str | None
    ) -> tuple[NameAddr, str]:
        """The From (without its tag) and the To of an out-of-dialog request to ``target``."""
        if from_uri is None:
            domain = target.host if target.port is None else f"{target.host}:{target.port}"
            from_uri = f"sip:{self._next_hop.default_user}@{domain}"
        from_addr = NameAddr.parse(from_uri if "<" in from_uri else f"<{from_uri}>")
        to_text = to_uri or str(target.replace(params={}, headers={}))
        return from_addr, to_text if "<" in to_text else f"<{to_text}>"

    def _new_template(
        self, method: str, uri: str, from_uri: str | None, to_uri: str | None
    ) -> RequestTemplate | None:
        """The template of requests made by :meth:`_new_request` from these values (None
        when they cannot be templated: the general path then builds each request)."""
        target = URI.parse(uri)
        from_addr, to_addr = self._from_and_to(target, from_uri, to_uri)
        try:
            return RequestTemplate(
                method, target, from_addr=from_addr, to_addr=to_addr, user_agent=self.user_agent
            )
        except ValueError:
            return None

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
            return await self._uac.send_in_dialog(dialog, request, timeout=kwargs.get("timeout"))
        if uri is None:
            raise ValueError(f"{method.lower()}() needs a uri, a response or a dialog_id")
        return await self.request(method, uri, headers=fields, body=content or None, **kwargs)

    def _on_register(self, request: Request, response: Response, destination: Address) -> None:
        """After each REGISTER's final response: the registration's bookkeeping."""
        self._registrations.note(response)
        if response.is_success:
            self._keep_registrar_connection(request, destination)

    def _keep_registrar_connection(self, register: Request, destination: Address) -> None:
        """Over TCP/TLS the registrar reaches us over our connection: keep it open with
        keep-alives while a binding lasts (RFC 5626 4.4.1), let it idle out once removed."""
        try:
            removing = register.expires == 0 or any(
                c.expires == 0 for c in register.contact if not c.is_wildcard
            )
        except ParseError:
            return
        self._engine.require_transport(register.top_via.transport).keep_alive(
            destination, not removing
        )


def _subscription_package(event: str, expires: int) -> str:
    """The package of ``event`` (ValueError for a bad one, or a bad ``expires``)."""
    _validate.text("event", event)
    try:
        package = EventHeader.parse(event).package
    except ParseError as exc:
        raise ValueError(f"bad event package {event!r}: {exc}") from None
    if isinstance(expires, bool) or not isinstance(expires, int) or expires < 0:
        raise ValueError(f"expires is a whole number of seconds >= 0, not {expires!r}")
    return package


def _version() -> str:
    from . import __version__

    return __version__


__all__ = ["INVITE_TIMEOUT", "AsyncClient", "LocalAddress", "TraceHook"]
