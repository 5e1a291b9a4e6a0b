"""Extension 100 of ``sipx serve``: a built-in answering user agent, sans-I/O.

It sits on the core's :class:`~sipx._core.transaction.TransactionLayer` like any UAS:

* INVITE: the server transaction sends 100 Trying, the UA sends 180 Ringing and then
  (at once, or ``answer_delay`` seconds later) 200 OK with a To tag, the server's Contact and
  an SDP answer made by :meth:`SDPBody.create_answer`. With ``early_media`` and an
  ``answer_delay``, 183 Session Progress carries that answer instead of the 180 (the echo
  runs while it rings) and the 200 repeats it. An INVITE without SDP (late offer)
  gets an SDP offer in the 200 and the answer is taken from the ACK. An offer with no codec
  in common gets 488.
* The 2xx is retransmitted by the UA (RFC 3261 13.3.1.4, a
  :class:`~sipx._core.retransmit.TwoXXRetransmitter`) at T1, 2*T1, ... capped at T2, until
  the ACK arrives, whatever the transport; after 64*T1 without ACK the dialog is dropped.
* re-INVITE: answered 200 with a new SDP answer (origin version bumped), or an offer.
* BYE: 200 (481 for an unknown dialog). CANCEL: 200, and 487 for the INVITE while it is
  still ringing. OPTIONS, MESSAGE, INFO, UPDATE, NOTIFY: 200. Anything else: 405.
* At most ``max_calls`` calls are kept (the oldest is forgotten), so callers that never
  hang up cannot make the server grow without bound.

Media (an echo, as Asterisk's ``Echo()``): the UA stays sans-I/O and borrows RTP ports
through ``media``, a :class:`MediaPorts` the server passes in. When the UA writes its SDP for
a call (the answer to an offer, or its own offer for a late offer) it asks
``media.open(call.key)`` for a port once per call and puts it in every accepted m-line;
``media.close(call.key)`` is called exactly once when the call is forgotten (BYE, CANCEL,
64*T1 without ACK, a 488 to the initial INVITE, the ``max_calls`` eviction). The server
(:class:`~sipx._serve.server.RtpEcho`) binds a UDP socket for each port and sends every RTP
datagram back to where it came from; when it stops it closes the sockets itself. Without
``media`` (or when ``open`` finds no free port) the SDP advertises :data:`MEDIA_PORT`, where
nothing listens.

Server transactions' ``destination`` is ``(transport, address)``; responses go back to where
the request came from (RFC 3581).
"""

from __future__ import annotations

import heapq
import itertools
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from .._core.ids import IdSource
from .._core.message import Request, Response
from .._core.retransmit import AckTimeout, Retransmit, TwoXXRetransmitter
from .._core.sdp import SDPBody
from .._core.timers import DEFAULT_TIMERS, TimerConfig
from .._core.transaction import (
    AckReceived,
    Event,
    InviteServerTransaction,
    RequestReceived,
    RequestRefused,
    ServerTransaction,
    TransactionLayer,
    make_response,
)
from .._errors import ParseError
from .common import (
    ALLOW,
    SERVER_AGENT,
    Address,
    Outgoing,
    ServerIdentity,
    TransactionUser,
    destination,
)

log = logging.getLogger("sipx.serve")

MEDIA_PORT = 40000
"""The audio port the built-in UA advertises without :class:`MediaPorts` (nothing listens)."""

CallKey = tuple[str, str, str]
"""``(Call-ID, local tag, remote tag)``: one dialog of the built-in UA."""


class MediaPorts(Protocol):
    """Real RTP ports for the UA's calls, lent by whoever does the I/O (the server)."""

    def open(self, call: CallKey) -> int | None:
        """A port that serves ``call``'s media from now on; None when none can be had."""
        ...

    def close(self, call: CallKey) -> None:
        """``call`` has ended: release its port."""
        ...


_OFFER_CODECS: list[dict[str, Any]] = [
    {"payload": "0", "name": "PCMU", "rate": "8000"},
    {"payload": "8", "name": "PCMA", "rate": "8000"},
    {"payload": "101", "name": "telephone-event", "rate": "8000", "fmtp": "0-16"},
]


@dataclass(eq=False)
class EchoCall:
    """One dialog of the built-in UA."""

    call_id: str
    local_tag: str
    remote_tag: str
    transport: str
    address: Address
    invite: Request
    transaction: InviteServerTransaction | None = None
    confirmed: bool = False
    local_sdp: SDPBody | None = None
    remote_sdp: SDPBody | None = None
    awaiting_answer: bool = False  # late offer: our 200 carried the offer
    answer_at: float | None = None  # a delayed answer is due then
    early_sdp: SDPBody | None = None  # sent in a 183 (early media): the 200 repeats it
    media_port: int | None = None  # lent by MediaPorts.open, until _forget
    history: list[str] = field(default_factory=list)

    @property
    def key(self) -> CallKey:
        return (self.call_id, self.local_tag, self.remote_tag)


class EchoUA(TransactionUser):
    """The answering UA; ``handle()`` takes requests, ``handle_timers()`` the clock."""

    def __init__(
        self,
        identity: ServerIdentity,
        *,
        ids: IdSource,
        extension: str = "100",
        timers: TimerConfig = DEFAULT_TIMERS,
        answer_delay: float = 0.0,
        early_media: bool = False,
        max_calls: int = 1024,
        media: MediaPorts | None = None,
        max_server_transactions: int | None = None,
        retry_after: int = 10,
    ) -> None:
        self.identity = identity
        self.media = media
        self.max_calls = max_calls
        self.extension = extension
        self.timers = timers
        self.answer_delay = answer_delay
        self.early_media = early_media
        self._ids = ids
        super().__init__(
            TransactionLayer(
                timers, max_server_transactions=max_server_transactions, retry_after=retry_after
            )
        )
        self._calls: dict[CallKey, EchoCall] = {}
        self._wakeups: list[tuple[float, int, EchoCall]] = []  # delayed answers
        self._retransmitter = TwoXXRetransmitter(timers)  # our 2xx, keyed by call.key
        self._sequence = itertools.count()

    @property
    def calls(self) -> list[EchoCall]:
        return list(self._calls.values())

    @property
    def requests_refused(self) -> int:
        """Requests answered 503: the UA held ``max_server_transactions`` already."""
        return self._layer.requests_refused

    # -- input -------------------------------------------------------------------------------
    def handle(
        self, request: Request, now: float, *, transport: str, source: Address
    ) -> list[Outgoing]:
        """A request for the extension (initial or in-dialog); returns what to send."""
        self._layer.receive_request(
            request, now, reliable=transport != "UDP", destination=(transport, source)
        )
        self._pump(now)
        return self._drain()

    def next_deadline(self) -> float | None:
        deadlines = (
            self._layer.next_deadline(),
            self._own_deadline(),
            self._retransmitter.next_deadline(),
        )
        known = [d for d in deadlines if d is not None]
        return min(known) if known else None

    def handle_timers(self, now: float) -> list[Outgoing]:
        self._layer.handle_timers(now)
        self._pump(now)
        while self._wakeups and self._wakeups[0][0] <= now:
            _, _, call = heapq.heappop(self._wakeups)
            if self._calls.get(call.key) is call:
                self._on_wakeup(call, now)
        self._pump(now)
        for action in self._retransmitter.handle_timers(now):
            self._on_retransmit(action, now)
        self._pump(now)
        return self._drain()

    # -- the transaction user ----------------------------------------------------------------
    def _dispatch(self, event: Event, now: float) -> None:
        if isinstance(event, RequestReceived):
            try:
                self._on_request(event.transaction, event.request, now)
            except ParseError as exc:
                log.info("echo: bad %s: %s", event.request.method, exc)
                event.transaction.respond(make_response(event.request, 400), now)
        elif isinstance(event, AckReceived):
            self._on_ack(event.request)
        elif isinstance(event, RequestRefused):
            transport, address = cast("tuple[str, Address]", event.destination)
            self._out.append(Outgoing(event.response, transport, address))

    def _reply(
        self, transaction: ServerTransaction, request: Request, code: int, now: float, **kw: Any
    ) -> Response:
        response = make_response(request, code, kw.pop("reason", None), **kw)
        response.headers["Server"] = SERVER_AGENT
        if code == 405 or request.method in ("OPTIONS", "INVITE"):
            response.headers["Allow"] = ALLOW
        if request.method == "OPTIONS":
            response.headers["Accept"] = "application/sdp"
        transaction.respond(response, now)
        return response

    def _on_request(self, transaction: ServerTransaction, request: Request, now: float) -> None:
        method = request.method
        if method == "INVITE":
            assert isinstance(transaction, InviteServerTransaction)
            self._on_invite(transaction, request, now)
        elif method == "CANCEL":
            self._on_cancel(transaction, request, now)
        elif method == "BYE":
            call = self._find(request)
            if call is None:
                self._reply(transaction, request, 481, now)
                return
            self._forget(call)
            self._reply(transaction, request, 200, now)
        elif method in ("OPTIONS", "MESSAGE", "INFO", "UPDATE", "NOTIFY"):
            to_tag = None if request.to.tag else self._ids.tag()
            if request.to.tag and self._find(request) is None and method != "OPTIONS":
                self._reply(transaction, request, 481, now)
                return
            self._reply(transaction, request, 200, now, to_tag=to_tag)
        else:
            to_tag = None if request.to.tag else self._ids.tag()
            self._reply(transaction, request, 405, now, to_tag=to_tag)

    def _on_invite(
        self, transaction: InviteServerTransaction, request: Request, now: float
    ) -> None:
        transport, address = destination(transaction)
        if request.to.tag is not None:
            call = self._find(request)
            if call is None:
                self._reply(transaction, request, 481, now)
                return
            call.invite, call.transaction = request, transaction
            call.transport, call.address = transport, address
            self._answer(call, now)
            return
        from_tag = request.from_.tag or ""
        call = EchoCall(
            call_id=request.call_id,
            local_tag=self._ids.tag(),
            remote_tag=from_tag,
            transport=transport,
            address=address,
            invite=request,
            transaction=transaction,
        )
        self._calls[call.key] = call
        while len(self._calls) > self.max_calls:  # calls never hung up: forget the oldest
            self._forget(next(iter(self._calls.values())))
        if self.early_media and self.answer_delay > 0 and request.content:
            self._early_answer(call, now)  # 183 with the SDP answer: the echo starts now
            if call.transaction is None:
                return  # no usable offer: 488
        else:
            transaction.respond(self._response(call, 180), now)
        if self.answer_delay > 0:
            call.answer_at = now + self.answer_delay
            self._wake(call, call.answer_at)
        else:
            self._answer(call, now)

    def _response(self, call: EchoCall, code: int, reason: str | None = None) -> Response:
        response = make_response(call.invite, code, reason, to_tag=call.local_tag)
        if code < 300:
            response.headers["Contact"] = f"<{self.identity.uri(call.transport, self.extension)}>"
        response.headers["Server"] = SERVER_AGENT
        return response

    def _early_answer(self, call: EchoCall, now: float) -> None:
        """Early media: 183 Session Progress with the SDP answer (RFC 3261 13.3.1.1); the
        200 repeats it unchanged."""
        sdp = self._usable_sdp(call, now)
        if sdp is None:
            return
        progress = self._response(call, 183)
        progress.headers["Content-Type"] = "application/sdp"
        progress.content = sdp.to_bytes()
        call.local_sdp = call.early_sdp = sdp
        assert call.transaction is not None
        call.transaction.respond(progress, now)
        call.history.append("early media")

    def _usable_sdp(self, call: EchoCall, now: float) -> SDPBody | None:
        """Our SDP for ``call.invite``; None after answering 488 when there is none."""
        try:
            sdp = self._sdp_for(call)
        except ParseError as exc:
            log.info("echo: unusable SDP offer: %s", exc)
            sdp = None
        if sdp is None:
            assert call.transaction is not None
            call.transaction.respond(self._response(call, 488), now)
            call.transaction = None
            if not call.confirmed:
                self._forget(call)
        return sdp

    def _answer(self, call: EchoCall, now: float) -> None:
        """Send the 200 for ``call.invite`` (initial or re-INVITE) with SDP."""
        transaction = call.transaction
        if transaction is None:
            return
        call.answer_at = None
        sdp = call.early_sdp  # the 183's answer stands (RFC 3264)
        call.early_sdp = None
        if sdp is None:
            sdp = self._usable_sdp(call, now)
            if sdp is None:
                return
        response = self._response(call, 200)
        response.headers["Allow"] = ALLOW
        response.headers["Content-Type"] = "application/sdp"
        response.content = sdp.to_bytes()
        call.local_sdp = sdp
        transaction.respond(response, now)
        call.history.append("answered")
        # RFC 3261 13.3.1.4: "independent of whatever transport protocols are used" (the
        # ACK is end to end); over TCP too, and after 64*T1 without it the call is dropped.
        self._retransmitter.start(call.key, response, now)

    def _sdp_for(self, call: EchoCall) -> SDPBody | None:
        """Our SDP for the INVITE: an answer to its offer, or an offer (late offer)."""
        host = self.identity.host.strip("[]")
        invite = call.invite
        previous = call.local_sdp
        if invite.content:
            content_type = invite.headers.get_first("Content-Type") or ""
            if not content_type.lower().startswith("application/sdp"):
                return None
            offer = SDPBody.parse(invite.content)
            call.remote_sdp = offer
            call.awaiting_answer = False
            port = self._media_port(call)
            ports = [port] * len(offer.media)  # one socket echoes every accepted stream
            sdp = SDPBody.create_answer(offer, "sipx", host, host, ports=ports)
            if not any(media.port for media in sdp.media):
                return None
        else:
            call.awaiting_answer = True
            sdp = SDPBody.create_offer(
                "sipx",
                "sipx",
                host,
                host,
                [{"media": "audio", "port": self._media_port(call), "codecs": _OFFER_CODECS}],
            )
        if previous is not None:  # RFC 3264 8: same session id, version + 1
            sdp.origin = previous.origin.bumped()
        return sdp

    def _media_port(self, call: EchoCall) -> int:
        """The call's RTP port: lent by ``media`` once per call, else :data:`MEDIA_PORT`."""
        if call.media_port is None and self.media is not None:
            call.media_port = self.media.open(call.key)
        return MEDIA_PORT if call.media_port is None else call.media_port

    def _on_cancel(self, transaction: ServerTransaction, request: Request, now: float) -> None:
        target = self._layer.find_transaction_to_cancel(request)
        if target is None:
            self._reply(transaction, request, 481, now)
            return
        last = target.last_response
        if last is None or last.status_code < 200:
            call = next((c for c in self._calls.values() if c.transaction is target), None)
            tag = call.local_tag if call is not None else self._ids.tag()
            response = make_response(target.request, 487, to_tag=tag)
            response.headers["Server"] = SERVER_AGENT
            target.respond(response, now)
            if call is not None:
                self._forget(call)
        self._reply(transaction, request, 200, now)

    def _on_ack(self, ack: Request) -> None:
        try:
            call = self._find(ack)
        except ParseError:
            return
        if call is None or call.invite.cseq.seq != ack.cseq.seq:
            return
        self._retransmitter.ack(call.key)
        call.confirmed = True
        call.history.append("acked")
        if call.awaiting_answer and ack.content:
            try:
                call.remote_sdp = SDPBody.parse(ack.content)
            except ParseError as exc:
                log.info("echo: unusable SDP answer in ACK: %s", exc)
            call.awaiting_answer = False

    # -- timers ------------------------------------------------------------------------------
    def _wake(self, call: EchoCall, when: float) -> None:
        heapq.heappush(self._wakeups, (when, next(self._sequence), call))

    def _own_deadline(self) -> float | None:
        while self._wakeups:
            when, _, call = self._wakeups[0]
            if self._calls.get(call.key) is call and when == call.answer_at:
                return when
            heapq.heappop(self._wakeups)
        return None

    def _on_wakeup(self, call: EchoCall, now: float) -> None:
        if call.answer_at is not None and call.answer_at <= now:
            self._answer(call, now)

    def _on_retransmit(self, action: Retransmit | AckTimeout, now: float) -> None:
        call = self._calls.get(cast("CallKey", action.key))
        if call is None:
            return
        if isinstance(action, AckTimeout):
            log.info("echo: no ACK for the 2xx of %s; dropping the call", call.call_id)
            if not call.confirmed:
                self._forget(call)
            return
        # Through the Accepted transaction (RFC 6026), or straight out once it has ended.
        transaction = call.transaction
        if transaction is None or not transaction.respond(action.response, now):
            self._out.append(Outgoing(action.response, call.transport, call.address))

    # -- dialogs -----------------------------------------------------------------------------
    def _find(self, request: Request) -> EchoCall | None:
        tag = request.to.tag
        if tag is None:
            return None
        return self._calls.get((request.call_id, tag, request.from_.tag or ""))

    def _forget(self, call: EchoCall) -> None:
        self._retransmitter.cancel(call.key)
        call.answer_at = None
        self._calls.pop(call.key, None)
        if call.media_port is not None and self.media is not None:
            call.media_port = None
            self.media.close(call.key)
