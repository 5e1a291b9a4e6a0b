"""ScriptedUAS: a small, scripted SIP server peer on a :class:`MemoryNetwork`."""

from __future__ import annotations

import inspect
import logging
import math
import random
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, TypeAlias, cast

import trio

from .._core.message import Request, Response
from .._core.parser import parse_message
from .._core.received import stamp_received
from .._core.retransmit import AckTimeout, TwoXXRetransmitter
from .._core.sdp import SDPBody
from .._core.timers import TimerConfig
from .._core.transaction import MAGIC_COOKIE, make_response
from .._errors import ParseError, ProtocolError, TimeoutError
from .._serve.auth import DigestAuthenticator
from .._serve.registrar import Registrar
from .._trio.lifetime import Lifetime, task_nursery
from ._network import Address, MemoryNetwork, MemoryTransport

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger("sipx.testing")

HeadersLike: TypeAlias = Mapping[str, str] | Sequence[tuple[str, str]] | None
BodyLike: TypeAlias = str | bytes | SDPBody | None

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, MESSAGE, INFO, NOTIFY, SUBSCRIBE, REFER"

_NO_LIMIT = 2**32 - 1  # RFC 3261 25.1: the largest delta-seconds; no cap on expiry


@dataclass(frozen=True)
class Reply:
    """One response in a script: status, extra headers, body, and a delay before it.

    ``headers`` is a mapping (each value replaces the generated header of that name) or a
    sequence of ``(name, value)`` pairs (added, so a header may repeat). ``body`` may be an
    :class:`~sipx.SDPBody` (Content-Type ``application/sdp``), ``str`` (``text/plain``
    unless a Content-Type header is given) or ``bytes``. A 2xx to an INVITE with an SDP
    offer and ``body=None`` carries an automatic answer (``SDPBody.create_answer``).
    ``delay`` is seconds of trio time to wait before sending it (e.g. ring time).
    """

    status: int
    headers: HeadersLike = None
    body: BodyLike = None
    delay: float = 0.0
    reason: str | None = None


ReplyLike: TypeAlias = (
    Reply | int | tuple[int] | tuple[int, HeadersLike] | tuple[int, HeadersLike, BodyLike]
)
ScriptResult: TypeAlias = Sequence[ReplyLike] | None
ScriptFunction: TypeAlias = Callable[[Request], ScriptResult | Awaitable[ScriptResult]]
ScriptEntry: TypeAlias = Sequence[ReplyLike] | ScriptFunction
Script: TypeAlias = Mapping[str, ScriptEntry] | ScriptFunction


def as_reply(item: ReplyLike) -> Reply:
    """A :class:`Reply` from the short forms ``200``, ``(200,)``, ``(200, headers)`` and
    ``(200, headers, body)``."""
    if isinstance(item, Reply):
        return item
    if isinstance(item, int):
        return Reply(item)
    if len(item) == 1:
        return Reply(item[0])
    if len(item) == 2:
        return Reply(item[0], item[1])
    return Reply(item[0], item[1], item[2])


class Arrival(NamedTuple):
    """A request as it reached the UAS (``uas.arrivals``), retransmissions included."""

    time: float
    source: Address
    request: Request
    retransmission: bool


@dataclass(eq=False)
class _ServerTransaction:
    request: Request
    source: Address
    to_tag: str
    last: bytes | None = None
    final: bool = False
    scope: trio.CancelScope | None = None
    responses: list[Response] = field(default_factory=list)


class ScriptedUAS(Lifetime):
    """A scripted SIP peer (user agent server) on a :class:`MemoryNetwork`, for tests.

    Start it with ``async with ScriptedUAS(network) as uas:`` or
    ``await nursery.start(uas.run)``. Each new request is recorded in :attr:`requests`
    (every arrival, retransmissions included, in :attr:`arrivals`) and answered by the
    script for its method:

    * ``script`` is a mapping ``method -> replies`` (a sequence of :class:`Reply` or short
      forms such as ``(180,)`` or ``(200, {"X": "y"}, body)``) or ``method -> callable``
      (``callable(request)`` returns the replies, or None for the default behaviour; it may
      be async), or one callable for every method. An empty sequence leaves the request
      unanswered.
    * Defaults: INVITE gets 100, 180 and, after ``ring`` seconds, 200 with an SDP answer, a
      Contact and a To tag; REGISTER gets 200 listing the bindings with the granted expiry
      (``max_expires`` caps it; bindings per To user, kept and refused, 400/423/500, by
      ``sipx serve``'s :class:`~sipx._serve.registrar.Registrar`); OPTIONS gets 200 with
      Allow; BYE, MESSAGE, INFO, NOTIFY, UPDATE and PRACK get 200, SUBSCRIBE and REFER
      202, anything else 405; a CANCEL gets 200 and its INVITE 487 (481 when no INVITE
      matches).
    * ``users`` (``{username: password}``) turns on digest authentication for the methods
      in ``auth_methods``: a request without valid credentials gets 401 with
      ``WWW-Authenticate: Digest realm=..., nonce=..., qop="auth", algorithm=MD5`` before
      the script runs. Nonces and checks are those of ``sipx serve``
      (:class:`~sipx._serve.auth.DigestAuthenticator`: signed, stateless nonces), except
      that a nonce never goes stale, any configured user may authenticate any request and
      the ``uri`` parameter must be the Request-URI. :attr:`authorized` counts requests
      that passed.
    * ``ignore`` (a mutable set of methods): requests recorded but never answered.
    * ``record_route``: Record-Route values added to 1xx/2xx responses to INVITE.
    * Responses follow RFC 3261 8.2.6: Via (with ``received``/``rport`` filled in, 18.2.1),
      From, To (plus a tag), Call-ID and CSeq copied; they go to the request's source.
      A retransmitted request gets the last response again. Over UDP a final response to
      an INVITE is retransmitted (T1 doubling to T2, for 64*T1) until the ACK arrives
      (17.2.1 for 3xx-6xx, 13.3.1.4 for 2xx); ``retransmit_final=False`` turns that off.

    :meth:`request` sends a non-INVITE request to a peer (e.g. the client under test).
    """

    _already_running = "this ScriptedUAS is already running"

    def __init__(
        self,
        network: MemoryNetwork,
        address: Address = ("127.0.0.1", 5080),
        script: Script | None = None,
        *,
        users: Mapping[str, str] | None = None,
        realm: str = "sipx",
        auth_methods: Iterable[str] = ("REGISTER",),
        max_expires: int | None = None,
        ring: float = 0.0,
        record_route: Sequence[str] = (),
        ignore: Iterable[str] = (),
        retransmit_final: bool = True,
        timers: TimerConfig | None = None,
        transport: str = "UDP",
        user: str = "uas",
        seed: int = 0,
    ) -> None:
        self.network = network
        self._requested_address = address
        self.script: dict[str, ScriptEntry] = {}
        self._script_function: ScriptFunction | None = None
        if callable(script):
            self._script_function = script
        elif script is not None:
            self.script.update({method.upper(): entry for method, entry in script.items()})
        self.random = random.Random(seed)
        self._authenticator = DigestAuthenticator(
            dict(users or {}),
            realm=realm,
            secret=self.random.randbytes(32),
            nonce_lifetime=math.inf,
        )
        self.auth_methods = {method.upper() for method in auth_methods}
        self._registrar = Registrar(max_expires=_NO_LIMIT, max_contacts=sys.maxsize)
        self._aors: dict[str, str] = {}  # user -> the To URI of the last REGISTER for it
        self._max_expires: int | None = None
        self.max_expires = max_expires
        self.ring = ring
        self.record_route = list(record_route)
        self.ignore = {method.upper() for method in ignore}
        self.retransmit_final = retransmit_final
        self.timers = timers or TimerConfig()
        self.user = user
        self.transport: MemoryTransport = network.transport(self._on_message, transport)
        self.requests: list[Request] = []
        self.arrivals: list[Arrival] = []
        self.responses: list[Response] = []
        self.authorized = 0
        self.malformed = 0
        self.unacknowledged: list[tuple[str, int]] = []
        self._transactions: dict[tuple[str, str], _ServerTransaction] = {}
        # Final responses to INVITE resent until their ACK (sans-I/O schedule; data, to).
        self._retransmitter = TwoXXRetransmitter(self.timers)
        self._resend: dict[tuple[str, int], tuple[bytes, Address]] = {}
        self._retransmit_wakeup = trio.Event()
        self._clients: dict[str, trio.MemorySendChannel[Response]] = {}
        self._changed = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._now = 0.0

    # -- configuration ------------------------------------------------------------------------
    @property
    def users(self) -> dict[str, str]:
        """``{username: password}`` accepted for digest authentication (may be changed)."""
        return self._authenticator.users

    @users.setter
    def users(self, users: Mapping[str, str]) -> None:
        self._authenticator.users = dict(users)

    @property
    def realm(self) -> str:
        return self._authenticator.realm

    @realm.setter
    def realm(self, realm: str) -> None:
        self._authenticator.realm = realm

    @property
    def max_expires(self) -> int | None:
        """The longest registration granted (None: as long as asked)."""
        return self._max_expires

    @max_expires.setter
    def max_expires(self, seconds: int | None) -> None:
        self._registrar.max_expires = _NO_LIMIT if seconds is None else seconds
        self._max_expires = seconds

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def address(self) -> Address:
        """Where the UAS listens (the bound address once running)."""
        if self.transport.running:
            return self.transport.local_address
        return self._requested_address

    @property
    def uri(self) -> str:
        """``sip:<user>@host:port`` of this UAS."""
        host, port = self.address
        return f"sip:{self.user}@{host}:{port}"

    async def run(self, *, task_status: TaskStatus[Address] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled (for ``nursery.start``)."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(self.transport.serve, *self._requested_address)
                task_status.started(self.address)
                await self._retransmit_loop()
        finally:
            self._nursery = None

    @asynccontextmanager
    async def _lifetime(self) -> AsyncIterator[None]:
        async with task_nursery() as nursery:
            await nursery.start(self.run)
            yield

    # -- what tests look at ---------------------------------------------------------------------
    @property
    def bindings(self) -> dict[str, dict[str, float]]:
        """Current registrations: ``{AOR: {contact URI: expiry time}}``, the AOR being the To
        URI of the REGISTER (a snapshot; expired bindings are left out)."""
        return {
            self._aors.get(user, user): {str(binding.uri): binding.expires_at for binding in found}
            for user, found in self._registrar.snapshot(self._clock()).items()
        }

    def requests_for(self, method: str) -> list[Request]:
        """New requests of ``method`` (retransmissions not repeated), in arrival order."""
        method = method.upper()
        return [request for request in self.requests if request.method == method]

    async def wait_for(self, method: str, count: int = 1) -> Request:
        """Wait until ``count`` new ``method`` requests have arrived; return the last one."""
        while True:
            found = self.requests_for(method)
            if len(found) >= count:
                return found[count - 1]
            await self._changed.wait()

    # -- receiving ------------------------------------------------------------------------------
    def _on_message(self, data: bytes, source: Address, transport: MemoryTransport) -> None:
        try:
            message = parse_message(data)
            if isinstance(message, Response):
                self._on_response(message)
                return
            stamp_received(message, source)
            branch = message.top_via.branch or ""
            message.cseq  # noqa: B018 - parsing is the check
            message.call_id  # noqa: B018
        except (ParseError, ProtocolError) as exc:
            self.malformed += 1
            log.info("ScriptedUAS dropped a malformed datagram from %s:%s: %s", *source, exc)
            return
        self._on_request(message, source, branch)

    def _on_request(self, request: Request, source: Address, branch: str) -> None:
        now = trio.current_time()
        method = request.method
        key = (branch, method)
        known = self._transactions.get(key)
        self.arrivals.append(Arrival(now, source, request, known is not None))
        if known is not None:
            if known.last is not None and method != "ACK":
                self.transport.send_nowait(known.last, known.source)
            return
        transaction = _ServerTransaction(request, source, self._token(8))
        self._transactions[key] = transaction
        self.requests.append(request)
        self._changed.set()
        self._changed = trio.Event()
        if method == "ACK":
            acked = (request.call_id, request.cseq.seq)
            if self._retransmitter.ack(acked):
                del self._resend[acked]
            return
        if method in self.ignore:
            return
        if method == "CANCEL":
            self._on_cancel(transaction, branch)
            return
        nursery = self._nursery
        if nursery is None:
            return
        nursery.start_soon(self._answer, transaction)

    def _on_cancel(self, cancel: _ServerTransaction, branch: str) -> None:
        invite = self._transactions.get((branch, "INVITE"))
        if invite is None:
            self._respond(cancel, Reply(481))
            return
        cancel.to_tag = invite.to_tag
        self._respond(cancel, Reply(200))
        if not invite.final:
            if invite.scope is not None:
                invite.scope.cancel()
            self._respond(invite, Reply(487))

    def _on_response(self, response: Response) -> None:
        branch = response.top_via.branch
        channel = self._clients.get(branch or "")
        if channel is not None:
            channel.send_nowait(response)

    # -- answering ------------------------------------------------------------------------------
    async def _answer(self, transaction: _ServerTransaction) -> None:
        with trio.CancelScope() as scope:
            transaction.scope = scope
            replies = await self._replies(transaction.request)
            for reply in replies:
                if reply.delay > 0:
                    await trio.sleep(reply.delay)
                if transaction.final:
                    break
                self._respond(transaction, reply)

    async def _replies(self, request: Request) -> list[Reply]:
        method = request.method
        if self.users and method in self.auth_methods and not self._check_credentials(request):
            return [Reply(401, {"WWW-Authenticate": self._challenge()})]
        entry: ScriptEntry | None = self.script.get(method, self._script_function)
        result: ScriptResult = None
        if entry is not None:
            if callable(entry):
                produced = entry(request)
                if inspect.isawaitable(produced):
                    produced = await produced
                result = produced
            else:
                result = entry
        if result is None:
            result = self._default(request)
        return [as_reply(item) for item in result]

    def _default(self, request: Request) -> list[Reply]:
        method = request.method
        if method == "INVITE":
            return [Reply(100), Reply(180), Reply(200, delay=self.ring)]
        if method == "REGISTER":
            return [self._register(request)]
        if method == "OPTIONS":
            return [Reply(200, {"Allow": ALLOW, "Accept": "application/sdp"})]
        if method in ("BYE", "MESSAGE", "INFO", "NOTIFY", "UPDATE", "PRACK"):
            return [Reply(200)]
        if method in ("SUBSCRIBE", "REFER"):
            return [Reply(202, {"Expires": request.headers.get_first("Expires") or "3600"})]
        return [Reply(405, {"Allow": ALLOW})]

    def _register(self, request: Request) -> Reply:
        """RFC 3261 10.3: add, refresh and remove bindings, by ``sipx serve``'s registrar."""
        response = self._registrar.register(request, self._clock(), transport=self.transport.name)
        if response.status_code == 200:  # so the To URI parsed and has a user
            self._aors[request.to.uri.user or ""] = str(request.to.uri)
        headers = [
            (name, value)
            for name, value in response.headers.multi_items()
            if name.lower() in ("contact", "min-expires")
        ]
        return Reply(response.status_code, headers, reason=response.reason_phrase)

    def _respond(self, transaction: _ServerTransaction, reply: Reply) -> None:
        request = transaction.request
        status = reply.status
        response = make_response(
            request, status, reply.reason, to_tag=None if status == 100 else transaction.to_tag
        )
        is_invite = request.method == "INVITE"
        if is_invite and 100 < status < 300:
            for route in self.record_route:
                response.headers.add("Record-Route", route)
            host, port = self.address
            response.headers["Contact"] = f"<sip:{self.user}@{host}:{port}>"
        response.headers["Server"] = "sipx-testing"
        body = reply.body
        if body is None and is_invite and 200 <= status < 300:
            body = self._answer_sdp(request)
        if isinstance(body, SDPBody):
            response.headers["Content-Type"] = "application/sdp"
            response.content = body.to_bytes()
        elif isinstance(body, str):
            response.headers["Content-Type"] = "text/plain"
            response.content = body.encode()
        elif body is not None:
            response.content = bytes(body)
        _apply_headers(response, reply.headers)
        data = response.to_bytes()
        transaction.last = data
        transaction.responses.append(response)
        self.responses.append(response)
        self.transport.send_nowait(data, transaction.source)
        if status >= 200:
            transaction.final = True
            if is_invite and self.retransmit_final and not self.transport.reliable:
                key = (request.call_id, request.cseq.seq)
                self._resend[key] = (data, transaction.source)
                self._retransmitter.start(key, response, trio.current_time())
                self._retransmit_wakeup.set()

    async def _retransmit_loop(self) -> None:
        """Resend final responses to INVITE at T1, 2*T1, ... T2 until their ACK; after 64*T1
        without one, note it in :attr:`unacknowledged`."""
        while True:
            deadline = self._retransmitter.next_deadline()
            with trio.move_on_at(math.inf if deadline is None else deadline):
                await self._retransmit_wakeup.wait()
            self._retransmit_wakeup = trio.Event()
            for action in self._retransmitter.handle_timers(trio.current_time()):
                key = cast("tuple[str, int]", action.key)
                if isinstance(action, AckTimeout):
                    self._resend.pop(key, None)
                    self.unacknowledged.append(key)
                elif key in self._resend:
                    self.transport.send_nowait(*self._resend[key])

    def _answer_sdp(self, request: Request) -> SDPBody | None:
        content_type = request.headers.get_first("Content-Type") or ""
        if not request.content or not content_type.lower().startswith("application/sdp"):
            return None
        host = self.address[0]
        try:
            return SDPBody.create_answer(request.content, self.user, host, host)
        except (ParseError, ValueError) as exc:
            log.info("ScriptedUAS cannot answer the offer: %s", exc)
            return None

    # -- digest ---------------------------------------------------------------------------------
    def _challenge(self) -> str:
        value = self._authenticator.challenge(self._clock())
        if "algorithm=" not in value:
            value += ", algorithm=MD5"  # sipx serve leaves MD5 unnamed, as Kamailio does
        return value

    def _check_credentials(self, request: Request) -> bool:
        authenticator = self._authenticator
        params = authenticator.find_credentials(request.headers, "Authorization")
        if params is None or params.get("uri") != str(request.uri):
            return False
        result = authenticator.verify(
            request.headers,
            request.method,
            self._clock(),
            proxy=False,
            identity=params.get("username"),  # any configured user will do
            body=request.content,
        )
        if not result.ok:
            return False
        self.authorized += 1
        return True

    def _clock(self) -> float:
        try:
            self._now = trio.current_time()
        except RuntimeError:  # outside trio (a test peeking at the bindings afterwards)
            pass
        return self._now

    # -- sending requests -----------------------------------------------------------------------
    async def request(
        self,
        method: str,
        uri: str,
        *,
        to: Address,
        headers: HeadersLike = None,
        body: str | bytes | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Send a non-INVITE request to ``to`` and return its final response.

        Retransmitted over UDP as RFC 3261 17.1.2 says (T1 doubling to T2); raises
        :class:`sipx.TimeoutError` after 64*T1 (or ``timeout``) without a final response.
        """
        method = method.upper()
        if method in ("INVITE", "ACK", "CANCEL"):
            raise ValueError(f"ScriptedUAS.request() does not send {method}")
        host, port = self.address
        branch = MAGIC_COOKIE + self._token(10)
        request = Request(method, uri)
        fields = request.headers
        fields.add("Via", f"SIP/2.0/{self.transport.name} {host}:{port};branch={branch};rport")
        fields.add("Max-Forwards", "70")
        fields.add("From", f"<sip:{self.user}@{host}:{port}>;tag={self._token(8)}")
        fields.add("To", f"<{uri}>")
        fields.add("Call-ID", self._token(16))
        fields.add("CSeq", f"1 {method}")
        fields.add("Contact", f"<sip:{self.user}@{host}:{port}>")
        if body is not None:
            request.content = body.encode() if isinstance(body, str) else body
            if isinstance(body, str):
                fields.add("Content-Type", "text/plain")
        _apply_headers(request, headers)
        data = request.to_bytes()
        send_channel, receive_channel = trio.open_memory_channel[Response](math.inf)
        self._clients[branch] = send_channel
        seconds = 64 * self.timers.t1 if timeout is None else timeout
        interval = self.timers.t1
        try:
            with trio.move_on_after(seconds):
                self.transport.send_nowait(data, to)
                while True:
                    with trio.move_on_after(interval if not self.transport.reliable else math.inf):
                        response = await receive_channel.receive()
                        if response.status_code >= 200:
                            response.request = request
                            return response
                        interval = self.timers.t2
                        continue
                    self.transport.send_nowait(data, to)
                    interval = min(2 * interval, self.timers.t2)
        finally:
            del self._clients[branch]
        raise TimeoutError(method, uri, seconds)

    def _token(self, nbytes: int) -> str:
        return f"{self.random.getrandbits(nbytes * 8):0{nbytes * 2}x}"

    def __repr__(self) -> str:
        host, port = self.address
        return f"<ScriptedUAS {self.transport.name} {host}:{port}>"


def _apply_headers(message: Request | Response, headers: HeadersLike) -> None:
    if headers is None:
        return
    if isinstance(headers, Mapping):
        for name, value in headers.items():
            message.headers[name] = value
    else:
        for name, value in headers:
            message.headers.add(name, value)
