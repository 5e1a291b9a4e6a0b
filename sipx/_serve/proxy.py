"""The routing logic of ``sipx serve``: a record-routing stateless proxy, sans-I/O.

:class:`Proxy` takes every parsed message the server receives and returns the messages to
send (:class:`~sipx._serve.common.Outgoing`). It owns the decisions Kamailio's test config
makes (see ``tests/integration/peers/kamailio.cfg``), in this order:

Requests
    1. The top Via gets ``received`` (when the source differs from sent-by) and ``rport``
       (always, like Kamailio's ``force_rport``), so responses find the way back.
       A request without a readable Via is dropped; one that does not pass
       :meth:`~sipx._core.message.Message.validate` gets 400 (an ACK is dropped).
    2. ``OPTIONS`` to the server itself without a user part: 200 with Allow and Accept.
    3. ``Max-Forwards: 0``: 483 Too Many Hops.
    4. In-dialog requests (To tag): the ACK for one of our own stateless non-2xx replies
       (its To tag carries our prefix) is absorbed; a top Route naming us is removed
       (loose routing; several in a row for a double Record-Route) and the request goes to
       the next Route or the Request-URI; requests for the built-in UA go to it; the ACK
       for a callee's non-2xx response (no Route, our Request-URI) follows its INVITE to
       the same binding; any other in-dialog request gets 404 (an ACK is dropped). They
       are never challenged.
    5. CANCEL is not challenged: it is routed like the INVITE it cancels (the built-in UA,
       or the same binding with the same derived branch), 481 when there is nowhere to go.
    6. Initial requests are authenticated like Kamailio does: REGISTER always (401),
       others when the From user is a configured user or the From URI is this server (407);
       the auth user must be the To user (REGISTER, whose From must equal its To) or the
       From user, else 403. Credentials for our realm are not forwarded.
    7. REGISTER goes to the :class:`~sipx._serve.registrar.Registrar` (a change of a user's
       registration NOTIFYs its presence watchers); a SUBSCRIBE for ``message-summary`` or
       ``presence`` of one of our users goes to the
       :class:`~sipx._serve.notifier.EventNotifier`, and so do its in-dialog requests
       (whatever their Route) and the responses to its NOTIFYs (by branch).
    8. A Request-URI that is not ours is relayed for authenticated users (403 "Not
       relaying" for others); a Request-URI of ours without a user gets 484.
    9. The echo extension ("100") goes to the built-in UA (:mod:`.echo`).
    10. Unknown users get 404, configured users without a binding 480, registered users get
        the request forwarded to their most recent binding.

Forwarding (RFC 3261 16.6, stateless per 16.11)
    Max-Forwards is decremented (set to 70 when absent); the Request-URI becomes the
    binding's Contact; INVITE, SUBSCRIBE and REFER get ``Record-Route: <sip:HOST:PORT;lr>``
    (``;transport=tcp`` when they arrived over TCP, and a second one facing the callee when
    the transport changes); our Via is added with a branch derived from the incoming top
    Via's branch and sent-by (an HMAC under the server's secret), so a retransmission, the
    CANCEL and the ACK for a non-2xx response leave with the same branch as their INVITE.
    The next hop is the top Route or the Request-URI: its ``maddr`` or host (an IP address;
    a binding whose Contact names a host is reached at the address it registered from),
    its port (5060 by default) and its ``transport`` parameter (else the transport the
    binding registered over, else UDP). A binding made over TCP is reached over the very
    connection it registered on while that connection is open (the ``connected`` callback
    says so), else at its Contact.

Responses
    Our top Via (our host and port, our branch prefix) is removed and the response goes to
    the next Via's ``received``/``rport`` (else its sent-by) over that Via's transport; for
    TCP that address is the connection the request came in on. Anything else is dropped.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Mapping

from .._core.header_types import Via
from .._core.message import SIP_VERSION, Request, Response
from .._core.received import stamp_received
from .._core.transaction import MAGIC_COOKIE, make_response
from .._core.uri import URI
from .._errors import ParseError
from .._log_limit import LogLimiter
from .auth import AuthStatus, DigestAuthenticator
from .common import ALLOW, SERVER_AGENT, Address, Outgoing, ServerIdentity, default_port, is_ip
from .echo import EchoUA
from .notifier import PACKAGES, EventNotifier
from .registrar import Binding, Registrar

log = logging.getLogger("sipx.serve")

BRANCH_PREFIX = MAGIC_COOKIE + "sx"
"""Every branch the server's proxy writes starts with this."""

RECORD_ROUTE_METHODS = frozenset({"INVITE", "SUBSCRIBE", "REFER"})
"""Initial requests that get a Record-Route (the dialog-forming ones, as in Kamailio)."""

DEFAULT_MAX_FORWARDS = 70


class Proxy:
    """Routing, authentication and registration for one server; see the module docstring."""

    def __init__(
        self,
        identity: ServerIdentity,
        *,
        registrar: Registrar,
        authenticator: DigestAuthenticator,
        secret: bytes,
        echo: EchoUA | None = None,
        echo_extension: str = "100",
        connected: Callable[[str, Address], bool] | None = None,
        notifier: EventNotifier | None = None,
    ) -> None:
        self.identity = identity
        self.notifier = notifier  # message-summary and presence of our users
        self._connected = connected
        self.registrar = registrar
        self.authenticator = authenticator
        self.echo = echo
        self.echo_extension = echo_extension
        self._secret = secret
        self.tag_prefix = hmac.new(secret, b"to-tag", hashlib.sha256).hexdigest()[:16]
        self._log = LogLimiter(log)  # what floods of bad input make us log, rate-limited

    @property
    def users(self) -> Mapping[str, str]:
        return self.authenticator.users

    # -- entry points ------------------------------------------------------------------------
    def handle(
        self, message: Request | Response, now: float, *, transport: str, source: Address
    ) -> list[Outgoing]:
        """Everything to send in reaction to one received message."""
        if isinstance(message, Response):
            return self.handle_response(message, now)
        return self.handle_request(message, now, transport=transport, source=source)

    def next_deadline(self) -> float | None:
        deadlines = [
            self.echo.next_deadline() if self.echo is not None else None,
            self.notifier.next_deadline() if self.notifier is not None else None,
        ]
        return min((d for d in deadlines if d is not None), default=None)

    def handle_timers(self, now: float) -> list[Outgoing]:
        out = self.echo.handle_timers(now) if self.echo is not None else []
        if self.notifier is not None:
            out += self.notifier.handle_timers(now)
        return out

    # -- responses ---------------------------------------------------------------------------
    def handle_response(self, response: Response, now: float = 0.0) -> list[Outgoing]:
        """Pop our Via and send the response on to the next one (RFC 3261 16.7 / 16.11);
        the responses to the notifier's NOTIFYs go to it."""
        if self.notifier is not None and self.notifier.owns_response(response):
            return self.notifier.handle_response(response, now)
        vias = response.via
        if not vias or not self.is_our_via(vias[0]):
            self._log.log(
                logging.INFO,
                "responses dropped",
                "dropping a %s response whose top Via is not ours",
                response.status_code,
            )
            return []
        if len(vias) < 2:
            self._log.log(
                logging.INFO,
                "responses dropped",
                "dropping a %s response with no Via after ours",
                response.status_code,
            )
            return []
        response.headers.remove_first("Via")
        nxt = vias[1]
        transport = nxt.transport.upper()
        if transport not in self.identity.transports:
            self._log.log(
                logging.INFO,
                "responses dropped",
                "dropping a response for a %s Via: not a transport we run",
                transport,
            )
            return []
        host = nxt.received or nxt.host
        port = nxt.rport or nxt.port or default_port(transport)
        return [Outgoing(response, transport, (_plain(host), port))]

    def is_our_via(self, via: Via) -> bool:
        branch = via.branch or ""
        return branch.startswith(BRANCH_PREFIX) and self.identity.is_our_address(
            (_plain(via.host), via.port or default_port(via.transport))
        )

    # -- requests ----------------------------------------------------------------------------
    def handle_request(
        self, request: Request, now: float, *, transport: str, source: Address
    ) -> list[Outgoing]:
        transport = transport.upper()
        # A Via that cannot be read raises: the server answers from the raw bytes if it can.
        stamp_received(request, source, force_rport=True)
        try:
            request.validate()
            return self._route(request, now, transport, source)
        except ParseError as exc:
            self._log.log(
                logging.INFO,
                "bad requests",
                "bad %s request from %s:%s: %s",
                request.method,
                *source,
                exc,
                now=now,
            )
            if request.version != SIP_VERSION:
                return self.reply(request, 505, transport=transport, source=source)
            return self.reply(
                request, 400, f"Bad Request ({exc})"[:100], transport=transport, source=source
            )

    def _route(
        self, request: Request, now: float, transport: str, source: Address
    ) -> list[Outgoing]:
        method = request.method
        uri = request.uri
        ours = self.identity.is_ours(uri)

        if method == "OPTIONS" and ours and uri.user is None and not request.route:
            response = self._response(request, 200)
            response.headers["Allow"] = ALLOW
            response.headers["Accept"] = "application/sdp"
            if self.notifier is not None:
                response.headers["Allow-Events"] = ", ".join(PACKAGES)
            return [Outgoing(response, transport, source)]

        max_forwards = request.max_forwards
        if max_forwards is not None and max_forwards <= 0:
            return self.reply(request, 483, transport=transport, source=source)

        if request.to.tag is not None:
            return self._in_dialog(request, now, transport, source)
        if method == "ACK":
            return []  # an ACK always has a To tag; this one matches nothing
        if method == "CANCEL":
            return self._cancel(request, now, transport, source)

        authenticated = False
        if self.needs_auth(request):
            denied = self._authenticate(request, now, transport, source)
            if denied is not None:
                return denied
            authenticated = True

        self._pop_our_routes(request)
        record_route = method in RECORD_ROUTE_METHODS
        if request.route:
            if not authenticated:
                return self.reply(request, 403, "Not relaying", transport=transport, source=source)
            return self._forward(request, now, transport, source, record_route=record_route)

        if method == "REGISTER":
            response = self.registrar.register(
                request, now, transport=transport, source=source, to_tag=self._tag(request)
            )
            response.headers["Server"] = SERVER_AGENT
            out = [Outgoing(response, transport, source)]
            user = request.to.uri.user
            if self.notifier is not None and response.is_success and user:
                out += self.notifier.registration_changed(user, now)  # presence watchers
            return out

        if self.notifier is not None and self.notifier.handles(request):
            return self.notifier.handle(request, now, transport=transport, source=source)

        if not ours:
            if not authenticated:
                return self.reply(request, 403, "Not relaying", transport=transport, source=source)
            return self._forward(request, now, transport, source, record_route=record_route)

        user = uri.user
        if user is None:
            return self.reply(request, 484, transport=transport, source=source)
        if user == self.echo_extension and self.echo is not None:
            return self.echo.handle(request, now, transport=transport, source=source)
        if user not in self.users:
            return self.reply(request, 404, transport=transport, source=source)
        bindings = self.registrar.lookup(user, now)
        if not bindings:
            return self.reply(request, 480, transport=transport, source=source)
        return self._forward(
            request, now, transport, source, binding=bindings[0], record_route=record_route
        )

    def _in_dialog(
        self, request: Request, now: float, transport: str, source: Address
    ) -> list[Outgoing]:
        method = request.method
        to_tag = request.to.tag or ""
        if method == "ACK" and to_tag.startswith(self.tag_prefix + "."):
            return []  # the ACK for a non-2xx final response we sent ourselves
        if self.notifier is not None and self.notifier.owns(request):
            return self.notifier.handle(request, now, transport=transport, source=source)
        routes = request.route
        if routes and self.identity.is_ours(routes[0].uri):
            self._pop_our_routes(request)
            if request.route or not self.identity.is_ours(request.uri):
                return self._forward(request, now, transport, source)
        uri = request.uri
        if self.identity.is_ours(uri) and uri.user is not None:
            if uri.user == self.echo_extension and self.echo is not None:
                return self.echo.handle(request, now, transport=transport, source=source)
            if method == "ACK" and not request.route:
                # The ACK for a callee's non-2xx final response: same branch and Request-URI
                # as the INVITE, so it follows the INVITE to the same binding.
                bindings = self.registrar.lookup(uri.user, now)
                if bindings:
                    return self._forward(request, now, transport, source, binding=bindings[0])
        return self.reply(request, 404, "Not here", transport=transport, source=source)

    def _cancel(
        self, request: Request, now: float, transport: str, source: Address
    ) -> list[Outgoing]:
        uri = request.uri
        ours = self.identity.is_ours(uri)
        if ours and uri.user == self.echo_extension and self.echo is not None:
            return self.echo.handle(request, now, transport=transport, source=source)
        self._pop_our_routes(request)
        if request.route or not ours:
            return self._forward(request, now, transport, source)
        bindings = self.registrar.lookup(uri.user, now) if uri.user else []
        if not bindings:
            return self.reply(request, 481, transport=transport, source=source)
        return self._forward(request, now, transport, source, binding=bindings[0])

    # -- authentication ----------------------------------------------------------------------
    def needs_auth(self, request: Request) -> bool:
        """Kamailio's rule: REGISTER, or a From user we know, or a From URI naming us."""
        if request.method in ("ACK", "CANCEL"):
            return False
        if request.method == "REGISTER":
            return True
        from_uri = request.from_.uri
        return from_uri.user in self.users or self.identity.is_ours(from_uri)

    def _authenticate(
        self, request: Request, now: float, transport: str, source: Address
    ) -> list[Outgoing] | None:
        """None when the request carries valid credentials; else the 401/407/403 to send."""
        register = request.method == "REGISTER"
        if register:
            to_user = request.to.uri.user
            identity = to_user if request.from_.uri.user == to_user else None
        else:
            identity = request.from_.uri.user
        result = self.authenticator.verify(
            request.headers,
            request.method,
            now,
            proxy=not register,
            identity=identity,
            body=request.content,
        )
        if result.status is AuthStatus.OK:
            if not register:
                self.authenticator.consume(request.headers, "Proxy-Authorization")
            return None
        if result.status is AuthStatus.FORBIDDEN:
            return self.reply(request, 403, "Forbidden auth ID", transport=transport, source=source)
        log.debug("challenging %s from %s:%s: %s", request.method, *source, result.reason)
        stale = result.status is AuthStatus.STALE
        code, header = (401, "WWW-Authenticate") if register else (407, "Proxy-Authenticate")
        response = self._response(request, code)
        response.headers[header] = self.authenticator.challenge(now, stale=stale)
        return [Outgoing(response, transport, source)]

    # -- forwarding --------------------------------------------------------------------------
    def _forward(
        self,
        request: Request,
        now: float,
        transport: str,
        source: Address,
        *,
        binding: Binding | None = None,
        record_route: bool = False,
    ) -> list[Outgoing]:
        max_forwards = request.max_forwards
        if max_forwards is not None and max_forwards <= 0:
            return self.reply(request, 483, transport=transport, source=source)
        branch = self.branch_for(request)  # before anything we change is hashed
        request.headers["Max-Forwards"] = str(
            DEFAULT_MAX_FORWARDS if max_forwards is None else max_forwards - 1
        )
        if binding is not None:
            request.uri = binding.uri
        routes = request.route
        target = routes[0].uri if routes else request.uri
        hop = self.next_hop(target, binding)
        if hop is None:
            return self.reply(
                request,
                404,
                "Not Found (cannot resolve host names)",
                transport=transport,
                source=source,
            )
        out_transport, address = hop
        if self.identity.is_our_address(address):
            return self.reply(request, 482, transport=transport, source=source)
        if record_route:
            request.headers.prepend("Record-Route", self.identity.record_route(transport))
            if out_transport != transport:
                request.headers.prepend("Record-Route", self.identity.record_route(out_transport))
        request.headers.prepend("Via", self.identity.via(out_transport, branch))
        return [Outgoing(request, out_transport, address)]

    def next_hop(self, target: URI, binding: Binding | None = None) -> tuple[str, Address] | None:
        """Transport and address for ``target`` (RFC 3263 without DNS); None if it needs DNS."""
        if binding is None:
            binding = self.registrar.binding_at(target)  # e.g. an ACK or BYE to a UA
        if (
            binding is not None
            and binding.transport != "UDP"
            and self._connected is not None
            and self._connected(binding.transport, binding.source)
        ):
            return binding.transport, binding.source  # the connection it registered over
        wanted = target.transport or (binding.transport if binding is not None else None)
        transport = self.identity.pick_transport(wanted)
        host = target.params.get("maddr") or target.host
        if not is_ip(host):
            if binding is None:
                return None
            return self.identity.pick_transport(binding.transport), binding.source
        return transport, (_plain(host), target.port or default_port(transport))

    def branch_for(self, request: Request) -> str:
        """Our branch for forwarding ``request`` (RFC 3261 16.11): a function of its top Via.

        With an RFC 3261 branch: that branch and the sent-by. Otherwise (RFC 2543): To tag,
        From tag, Call-ID, CSeq number, Request-URI and the top Via.
        """
        via = request.top_via
        branch = via.branch
        if branch is not None and branch.startswith(MAGIC_COOKIE):
            key = f"{branch}|{via.host.lower()}:{via.port}"
        else:
            key = "|".join(
                (
                    request.to.tag or "",
                    request.from_.tag or "",
                    request.call_id,
                    str(request.cseq.seq),
                    str(request.uri),
                    f"{via.transport} {via.host}:{via.port}",
                )
            )
        digest = hmac.new(self._secret, key.encode("utf-8", "surrogateescape"), hashlib.sha256)
        return BRANCH_PREFIX + digest.hexdigest()[:24]

    def _pop_our_routes(self, request: Request) -> None:
        while True:
            routes = request.route
            if not routes or not self.identity.is_ours(routes[0].uri):
                return
            request.headers.remove_first("Route")

    # -- replies -----------------------------------------------------------------------------
    def _tag(self, request: Request) -> str:
        """The To tag of our stateless replies: our prefix, then a hash of the request."""
        via = request.headers.get_first("Via") or ""
        key = "|".join((request.headers.get_first("Call-ID") or "", via.split(",")[0]))
        suffix = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        return f"{self.tag_prefix}.{suffix}"

    def _response(self, request: Request, code: int, reason: str | None = None) -> Response:
        try:
            to_tag = self._tag(request) if request.to.tag is None else None
        except ParseError:
            to_tag = None
        response = make_response(request, code, reason, to_tag=to_tag)
        response.headers["Server"] = SERVER_AGENT
        return response

    def reply(
        self,
        request: Request,
        code: int,
        reason: str | None = None,
        *,
        transport: str,
        source: Address,
    ) -> list[Outgoing]:
        """A stateless response sent back to where ``request`` came from (none for ACK)."""
        if request.method == "ACK":
            return []
        return [Outgoing(self._response(request, code, reason), transport, source)]


def _plain(host: str) -> str:
    return host[1:-1] if host.startswith("[") else host
