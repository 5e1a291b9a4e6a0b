"""ScriptedUAS: a small, scripted SIP server peer on a :class:`MemoryNetwork`."""

from __future__ import annotations

import inspect
import logging
import math
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, NamedTuple, TypeAlias

import trio

from .._core import digest
from .._core.header_types import NameAddr
from .._core.message import Request, Response
from .._core.parser import parse_message
from .._core.received import stamp_received
from .._core.sdp import SDPBody
from .._core.timers import TimerConfig
from .._core.transaction import MAGIC_COOKIE, make_response
from .._errors import ParseError, ProtocolError, TimeoutError
from ._network import Address, MemoryNetwork, MemoryTransport, OwnedNursery

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger("sipx.testing")

HeadersLike: TypeAlias = Mapping[str, str] | Sequence[tuple[str, str]] | None
BodyLike: TypeAlias = str | bytes | SDPBody | None

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, MESSAGE, INFO, NOTIFY, SUBSCRIBE, REFER"


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


class ScriptedUAS:
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
      (``max_expires`` caps it); OPTIONS gets 200 with Allow; BYE, MESSAGE, INFO, NOTIFY,
      UPDATE and PRACK get 200, SUBSCRIBE and REFER 202, anything else 405; a CANCEL gets
      200 and its INVITE 487 (481 when no INVITE matches).
    * ``users`` (``{username: password}``) turns on digest authentication for the methods
      in ``auth_methods``: a request without valid credentials gets 401 with
      ``WWW-Authenticate: Digest realm=..., nonce=..., qop="auth", algorithm=MD5`` (fresh
      nonce each time) before the script runs. :attr:`authorized` counts requests that
      passed.
    * ``ignore`` (a mutable set of methods): requests recorded but never answered.
    * ``record_route``: Record-Route values added to 1xx/2xx responses to INVITE.
    * Responses follow RFC 3261 8.2.6: Via (with ``received``/``rport`` filled in, 18.2.1),
      From, To (plus a tag), Call-ID and CSeq copied; they go to the request's source.
      A retransmitted request gets the last response again. Over UDP a final response to
      an INVITE is retransmitted (T1 doubling to T2, for 64*T1) until the ACK arrives
      (17.2.1 for 3xx-6xx, 13.3.1.4 for 2xx); ``retransmit_final=False`` turns that off.

    :meth:`request` sends a non-INVITE request to a peer (e.g. the client under test).
    """

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
        self.users = dict(users or {})
        self.realm = realm
        self.auth_methods = {method.upper() for method in auth_methods}
        self.max_expires = max_expires
        self.ring = ring
        self.record_route = list(record_route)
        self.ignore = {method.upper() for method in ignore}
        self.retransmit_final = retransmit_final
        self.timers = timers or TimerConfig()
        self.user = user
        self.random = random.Random(seed)
        self.transport: MemoryTransport = network.transport(self._on_message, transport)
        self.requests: list[Request] = []
        self.arrivals: list[Arrival] = []
        self.responses: list[Response] = []
        self.bindings: dict[str, dict[str, float]] = {}
        self.authorized = 0
        self.malformed = 0
        self.unacknowledged: list[tuple[str, int]] = []
        self._transactions: dict[tuple[str, str], _ServerTransaction] = {}
        self._awaiting_ack: dict[tuple[str, int], trio.Event] = {}
        self._nonces: set[str] = set()
        self._clients: dict[str, trio.MemorySendChannel[Response]] = {}
        self._changed = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._owned = OwnedNursery()

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
                await trio.sleep_forever()
        finally:
            self._nursery = None

    async def __aenter__(self) -> ScriptedUAS:
        nursery = await self._owned.open()
        try:
            await nursery.start(self.run)
        except BaseException:
            await self._owned.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._owned.close()

    # -- what tests look at ---------------------------------------------------------------------
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
            waiting = self._awaiting_ack.get((request.call_id, request.cseq.seq))
            if waiting is not None:
                waiting.set()
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
        """RFC 3261 10.3 in miniature: add, refresh and remove bindings of the To AOR."""
        now = trio.current_time()
        aor = str(request.to.uri)
        bindings = self.bindings.setdefault(aor, {})
        header_expires = request.expires
        for value in request.headers.get_list("Contact"):
            if value.strip() == "*":
                if header_expires == 0:
                    bindings.clear()
                continue
            contact = NameAddr.parse(value)
            requested = contact.expires if contact.expires is not None else header_expires
            granted = 3600 if requested is None else requested
            if self.max_expires is not None:
                granted = min(granted, self.max_expires)
            if granted <= 0:
                bindings.pop(str(contact.uri), None)
            else:
                bindings[str(contact.uri)] = now + granted
        for uri in [uri for uri, until in bindings.items() if until <= now]:
            del bindings[uri]
        headers = [
            ("Contact", f"<{uri}>;expires={math.ceil(until - now)}")
            for uri, until in bindings.items()
        ]
        return Reply(200, headers)

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
                acked = trio.Event()
                self._awaiting_ack[key] = acked
                if self._nursery is not None:
                    self._nursery.start_soon(self._retransmit, key, acked, data, transaction.source)

    async def _retransmit(
        self, key: tuple[str, int], acked: trio.Event, data: bytes, to: Address
    ) -> None:
        t1, t2 = self.timers.t1, self.timers.t2
        interval = t1
        with trio.move_on_after(64 * t1):
            while True:
                with trio.move_on_after(interval):
                    await acked.wait()
                if acked.is_set():
                    return
                self.transport.send_nowait(data, to)
                interval = min(2 * interval, t2)
        if not acked.is_set():
            self.unacknowledged.append(key)

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
        nonce = self._token(16)
        self._nonces.add(nonce)
        return f'Digest realm="{self.realm}", nonce="{nonce}", qop="auth", algorithm=MD5'

    def _check_credentials(self, request: Request) -> bool:
        value = request.headers.get_first("Authorization")
        if value is None:
            return False
        try:
            params = digest.parse_credentials(value)
        except ParseError:
            return False
        username = params.get("username", "")
        password = self.users.get(username)
        if password is None or params.get("realm") != self.realm:
            return False
        if params.get("nonce") not in self._nonces or params.get("uri") != str(request.uri):
            return False
        if not digest.verify_credentials(
            params, password=password, method=request.method, body=request.content
        ):
            return False
        self.authorized += 1
        return True

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
