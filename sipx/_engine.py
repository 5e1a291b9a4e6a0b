"""The user-agent engine: the one owner of a client's transport, transactions and tasks.

An :class:`Engine` holds the transports, the sans-I/O transaction layer, the 2xx retransmitter,
the dialog and call registries and one nursery, entered lexically by :meth:`Engine.run` (an
async context manager). Everything that talks to the network goes through it:

* :meth:`respond` and :meth:`open_transaction` hand a message to the transaction layer and
  carry out what it asks for at once ("pumping"): no caller has to remember to;
* one timer task sleeps until the earliest deadline of the layer and the retransmitter;
* with several transports (UDP and TCP on one port, TLS, WS...), each transaction keeps the
  transport it began on: a server transaction the one its request came in on (its responses
  go back there, over the same connection), a client transaction the one its top Via names;
* leaving :meth:`run` first runs the wind-down hooks (BYE, CANCEL, final responses) shielded
  and bounded by 16·T1 (a hook that fails is logged), then fails every request still
  waiting with :class:`~sipx.ClientClosedError`, then cancels the engine's tasks and closes
  the transport, whatever interrupted the wind-down.

The user agent's two halves (``_uac``, ``_uas``) and :class:`~sipx.Call` work through the
engine; none of them reads the public client's private state (they hold the public client
only to hand it to event hooks and handlers).
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio

from ._core.dialog import Dialog, DialogId
from ._core.ids import IdSource
from ._core.malformed import answer_malformed
from ._core.message import Request, Response
from ._core.parser import parse_message
from ._core.received import stamp_received
from ._core.retransmit import AckTimeout, Retransmit, TwoXXRetransmitter
from ._core.timers import TimerConfig
from ._core.transaction import (
    RECORD_SLACK,
    TRYING_DELAY,
    AckReceived,
    ClientTransaction,
    RequestReceived,
    RequestRefused,
    Resend,
    ResponseReceived,
    Send,
    ServerTransaction,
    StrayResponse,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimeout,
    TransportFailed,
)
from ._errors import ClientClosedError, ParseError, ProtocolError, TimeoutError, TransportError
from ._ladder import wire_fields
from ._limits import DEFAULT_LIMITS, Limits, LimitStats
from ._log_limit import LogLimiter
from ._trio.groups import single_exception
from ._trio.ports import start_on_one_port
from ._trio.transport import Address, MessageHandler, Transport, serve_in_scope
from ._trio.waiter import ResponseWaiter

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from ._call import Call

log = logging.getLogger("sipx")
wire_log = logging.getLogger("sipx.wire")
_NOTHING_ARMED = math.inf  # TransactionLayer.soonest_armed when nothing was armed

TraceHook = Callable[[str, bytes, Address, str], None]
Responses = ResponseWaiter
TransportFactory = Callable[[MessageHandler], Transport]
PortGroup = tuple[int, Sequence[TransportFactory], frozenset[str]]
"""Transports started together on one port (0: a port free for all of them), and the names
of those left out when their port is taken (see ``start_on_one_port``)."""


class Engine:
    """Owns one user agent's transports, transaction layer, timers, dialogs, calls and tasks.

    ``default_transport`` names the transport of requests whose Via names none we run;
    ``transport`` is that transport once running, ``transports`` all of them by name.
    """

    def __init__(
        self,
        timers: TimerConfig,
        ids: IdSource,
        *,
        trace: TraceHook | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.timers = timers
        self.ids = ids
        self.limits = limits
        self.parser_limits = limits.parser  # made once: read for every message
        self.layer = TransactionLayer(
            timers,
            max_server_transactions=limits.max_server_transactions,
            retry_after=limits.retry_after,
            trying_delay=TRYING_DELAY,
        )
        self.malformed_messages = 0  # messages that did not parse, since the engine began
        self._log = LogLimiter(log)  # what hostile input makes us log, rate-limited
        self.retransmitter = TwoXXRetransmitter(timers)
        self.dialogs: dict[DialogId, Dialog] = {}
        self.calls: dict[DialogId, Call] = {}  # calls with a dialog, both directions
        self.pending_calls: dict[str, Call] = {}  # Call-ID -> call without a dialog yet
        self.transport: Transport | None = None  # the default one, once running
        self.transports: dict[str, Transport] = {}
        self.default_transport = "UDP"
        self.closed = False
        self._trace = trace
        self._nursery: trio.Nursery | None = None
        self._waiters: dict[ClientTransaction, ResponseWaiter] = {}
        self._transport_errors: dict[Address, str] = {}
        # Malformed messages dropped, by source: (count, last reason), for timeout errors.
        self._malformed: dict[Address, tuple[int, str]] = {}
        self._timer_wakeup = trio.Event()
        self._armed_deadline = math.inf
        self._retransmits: dict[
            object, tuple[ServerTransaction, Callable[[], None], Transport]
        ] = {}
        # The keys of ``_retransmits`` by dialog id (their first item): a call that ends
        # stops its 2xx without a scan of every call's. A dialog's only key (the usual) is
        # kept as it is, several in a list.
        self._retransmit_keys: dict[object, object] = {}
        # The transport of each live client transaction (dropped when it terminates); a
        # server transaction names its own (``route``, the transport's name).
        self._routes: dict[object, Transport] = {}
        self._wind_down: list[Callable[[], Awaitable[None]]] = []
        self._service_scopes: list[trio.CancelScope] = []
        # What the user agent does with what arrives (set by the UA before run()).
        self.on_request: Callable[[ServerTransaction, Request], Awaitable[None]] | None = None
        # Answers a request on the spot when its answer needs no await (True: done), so that
        # the common requests cost no task; see UserAgentServer.serve_at_once.
        self.on_request_at_once: Callable[[ServerTransaction, Request], bool] | None = None
        self._requests_queued = 0  # request tasks spawned that have not started yet
        self._pumping = False  # _pump is running (a nested one leaves the timer to it)
        # trio's clock when the datagram being handled arrived (None between datagrams).
        self._received_at: float | None = None
        # trio's clock of the run the engine serves in (set by run()): read straight, it
        # gives trio.current_time() without its two calls in between (once per datagram).
        self._clock: trio.abc.Clock | None = None
        self.on_ack: Callable[[Request], None] = lambda ack: None
        self.on_stray_response: Callable[[Response], None] = lambda response: None
        # Told of each response whose top Via a peer may have filled in (received, rport):
        # not of one the layer matches by the text we sent (nothing filled in).
        self.on_response_seen: Callable[[Response, Address], None] = lambda r, a: None

    # -- lifecycle ---------------------------------------------------------------------------
    @asynccontextmanager
    async def run(self, host: str, groups: Sequence[PortGroup]) -> AsyncIterator[Engine]:
        """Bind the transports (each group on a port of its own) and run the engine's tasks
        for the body of the ``async with``."""
        if self.closed or self._nursery is not None:
            raise ClientClosedError("the client is closed; create a new one")
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._clock = trio.lowlevel.current_clock()
                try:
                    for port, factories, optional in groups:
                        started, _ = await start_on_one_port(
                            self._maker(factories),
                            host,
                            port,
                            self._start_transport,
                            optional=optional,
                        )
                        self.transports.update((t.name, t) for t in started)
                    self.transport = self.transports.get(self.default_transport) or next(
                        iter(self.transports.values())
                    )
                    await nursery.start(self._service, self._timer_loop)
                    yield self
                finally:
                    await self.close()
        except BaseExceptionGroup as group:
            raise single_exception(group) from None
        finally:
            self._nursery = None
            self._clock = None  # the run's: outside it the clock is trio's to refuse

    def _maker(self, factories: Sequence[TransportFactory]) -> Callable[[], list[Transport]]:
        return lambda: [factory(self._on_message) for factory in factories]

    async def _start_transport(
        self, transport: Transport, host: str, port: int
    ) -> tuple[Address, trio.CancelScope]:
        """Serve ``transport`` on ``(host, port)`` as one of the engine's services; the scope
        returned stops it again (another port is tried when a later transport finds this
        one taken)."""
        assert self._nursery is not None
        scope = trio.CancelScope()
        address = await self._nursery.start(
            self._service, serve_in_scope, scope, transport, host, port
        )
        return address, scope

    async def close(self) -> None:
        """End calls and pending requests (shielded, within 16·T1), then cancel every task.

        Safe from any task and any nesting: it never enters or exits the engine's nursery.
        """
        if self.closed:
            return
        try:
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + 16 * self.timers.t1
                if self.transport is not None and self._nursery is not None:
                    async with trio.open_nursery() as nursery:
                        for hook in self._wind_down:
                            nursery.start_soon(self._wind_down_one, hook)
        finally:
            # Whatever happened above (a Ctrl-C, a hook's bug), the services end first: they
            # are shielded, and left running they would hold the client's block for ever
            # (then an error of what follows comes out of the block instead).
            self.closed = True
            for scope in self._service_scopes:
                scope.cancel()
            if self._nursery is not None:
                self._nursery.cancel_scope.cancel()
            try:
                self._log.flush()
                self._fail_all_waiters()
            finally:
                self.retransmitter = TwoXXRetransmitter(self.timers)
                self._retransmits.clear()
                self._retransmit_keys.clear()
                self._routes.clear()

    @staticmethod
    async def _wind_down_one(hook: Callable[[], Awaitable[None]]) -> None:
        """Run one wind-down hook; its failure is logged and does not stop the others."""
        try:
            await hook()
        except Exception:
            log.exception("winding down %r failed; closing all the same", hook)

    @trio.lowlevel.enable_ki_protection
    async def _service(
        self,
        function: Callable[..., Awaitable[object]],
        *args: object,
        task_status: TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run one of the engine's own services (receive loop, timers) shielded from the
        caller's cancellation: they must outlive it long enough to wind down; close() ends
        them. Protected from KeyboardInterrupt: Ctrl-C reaches the user's task instead."""
        with trio.CancelScope(shield=True) as scope:
            self._service_scopes.append(scope)
            await function(*args, task_status=task_status)

    def add_wind_down(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run ``hook`` (shielded, bounded) when the engine closes, before its tasks end."""
        self._wind_down.append(hook)

    def _fail_all_waiters(self) -> None:
        for transaction, waiter in list(self._waiters.items()):
            if transaction.terminated:
                continue  # its final response is queued for its reader already
            waiter.send_nowait(_closed_error(transaction.request))
        self._waiters.clear()

    def require_transport(self, name: str | None = None) -> Transport:
        """The running transport called ``name`` (the default one for None, or when the
        client does not run that transport)."""
        if self.closed:
            raise ClientClosedError("the client is closed; create a new one")
        if self.transport is None:
            raise RuntimeError("the client is not open: use 'async with AsyncClient(...)'")
        if name is None:
            return self.transport
        return self.transports.get(name.upper(), self.transport)

    def transport_of(self, transaction: object) -> Transport:
        """The transport ``transaction`` uses (the default one when it is not known)."""
        if isinstance(transaction, ServerTransaction):
            transport = self.transports.get(transaction.route or "")
            return transport if transport is not None else self.require_transport()
        return self._routes.get(transaction) or self.require_transport()

    def start_soon(self, function: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run a task in the engine's nursery (it ends when the engine closes)."""
        if self.closed:
            raise ClientClosedError("the client is closed; create a new one")
        if self._nursery is None:
            raise RuntimeError("the client is not open: use 'async with AsyncClient(...)'")
        self._nursery.start_soon(function, *args)

    @property
    def running(self) -> bool:
        return self._nursery is not None and not self.closed

    # -- sending -----------------------------------------------------------------------------
    def send_bytes(self, data: bytes, address: Address, transport_name: str | None = None) -> None:
        """Put ``data`` on the wire to ``address`` over the transport called
        ``transport_name`` (the default one for None)."""
        self._send_over(self.require_transport(transport_name), data, address)

    def _send_over(self, transport: Transport, data: bytes, address: Address) -> None:
        if self._trace is not None:
            self._trace("out", data, address, transport.name)
        if wire_log.isEnabledFor(logging.DEBUG):
            wire_log.debug(
                "send to %s:%s\n%s",
                *address,
                data.decode("utf-8", "replace"),
                extra=wire_fields("out", data, address, transport.local_address, transport.name),
            )
        transport.send_nowait(data, address)

    def open_transaction(
        self,
        request: Request,
        destination: Address,
        transport: Transport | None = None,
        branch: str | None = None,
    ) -> tuple[ClientTransaction, Responses]:
        """Start a client transaction over the transport its top Via names (``transport``
        when the caller has just stamped that Via, with ``branch``: see
        :meth:`TransactionLayer.send_request`); its responses (or the error that ends it)
        arrive on the returned channel. Call :meth:`release` when done with it."""
        if transport is None:
            transport = self.require_transport(request.top_via.transport)
        waiter = ResponseWaiter()
        clock = self._clock  # (trio.current_time() without its two calls in between)
        now = trio.current_time() if clock is None else clock.current_time()
        transaction = self.layer.send_request(
            request, now, reliable=transport.reliable, destination=destination, branch=branch
        )
        self._routes[transaction] = transport
        self._waiters[transaction] = waiter
        self._pump()
        return transaction, waiter

    def take_over(self, transaction: ClientTransaction) -> Responses:
        """Fail the current waiter of ``transaction`` with ClientClosedError and deliver its
        further responses on a new channel (to the wind-down that CANCELs it)."""
        waiter = ResponseWaiter()
        previous = self._waiters.get(transaction)
        self._waiters[transaction] = waiter
        if previous is not None:
            previous.send_nowait(_closed_error(transaction.request))
        return waiter

    def release(self, transaction: ClientTransaction, responses: Responses) -> None:
        """Stop delivering ``transaction``'s responses to ``responses`` (later ones are
        strays)."""
        if self._waiters.get(transaction) is responses:
            del self._waiters[transaction]

    def waiting(self) -> int:
        """How many client transactions still have someone waiting for them."""
        return len(self._waiters)

    def now(self) -> float:
        """trio's clock: when the datagram being handled arrived, else read now (straight
        from the run's clock once the engine runs: no calls in between)."""
        now = self._received_at
        if now is None:
            clock = self._clock
            now = trio.current_time() if clock is None else clock.current_time()
        return now

    def respond(
        self, transaction: ServerTransaction, response: Response, now: float | None = None
    ) -> bool:
        """Send ``response`` through its server transaction; False if it takes no more.
        ``now``: the clock as the caller read it for what it is doing (else read here)."""
        if now is None:
            now = self.now()
        accepted = transaction.respond(response, now)
        if self._pumping:  # served from within the pump (at once): _pump's nested case
            self._carry_out()
        else:
            self._pump()
        return accepted

    def respond_serialised(
        self, transaction: ServerTransaction, status_code: int, data: bytes
    ) -> bool:
        """Send a final response given as its bytes through ``transaction`` (see
        :meth:`ServerTransaction.respond_serialised`); False, and nothing sent, when the
        transaction does not take it that way: :meth:`respond` a Response then."""
        if not transaction.respond_serialised(status_code, data, self.now()):
            return False
        if self._pumping:  # served from within the pump (at once): _pump's nested case
            self._carry_out()
        else:
            self._pump()
        return True

    def retransmit_2xx(
        self,
        key: object,
        transaction: ServerTransaction,
        response: Response,
        on_timeout: Callable[[], None],
        now: float | None = None,
    ) -> None:
        """Resend a 2xx to INVITE until :meth:`acked` (RFC 3261 13.3.1.4); after 64·T1
        without an ACK, ``on_timeout`` runs. ``now``: when it was sent (else read here)."""
        if key not in self._retransmits and type(key) is tuple:
            index = self._retransmit_keys
            known = index.get(key[0])
            if known is None:
                index[key[0]] = key  # the usual: one 2xx resent in the dialog, its key alone
            elif type(known) is list:
                known.append(key)
            else:
                index[key[0]] = [known, key]
        self._retransmits[key] = (transaction, on_timeout, self.transport_of(transaction))
        self.retransmitter.start(key, response, self.now() if now is None else now)
        self._wake_timer()

    def acked(self, key: object) -> bool:
        if self._retransmits.pop(key, None) is not None:
            self._unindex(key)
        return self.retransmitter.ack(key)

    def cancel_retransmits(self, dialog_id: DialogId) -> None:
        """Stop resending every 2xx of a dialog that has ended (keys are (dialog id, CSeq))."""
        keys = self._retransmit_keys.pop(dialog_id, None)
        if keys is None:
            return
        for key in keys if type(keys) is list else (keys,):
            del self._retransmits[key]
            self.retransmitter.cancel(key)

    def _unindex(self, key: object) -> None:
        """``key`` left ``_retransmits``: drop it from ``_retransmit_keys``."""
        if type(key) is tuple:
            index = self._retransmit_keys
            keys = index.get(key[0])
            if type(keys) is list:
                keys.remove(key)
                if len(keys) == 1:
                    index[key[0]] = keys[0]
            elif keys == key:
                del index[key[0]]  # the dialog's only key

    def transport_error(
        self, address: Address, error: Exception, *, transport: str | None = None
    ) -> None:
        """A connection to ``address`` (over ``transport``, when the caller says) failed:
        fail every transaction waiting on it."""
        now = trio.current_time()
        self._transport_errors[address] = str(error) or type(error).__name__
        for transaction in list(self._waiters):
            if transaction.destination == address and (
                transport is None or self.transport_of(transaction).name == transport
            ):
                self.layer.transport_error(transaction, now)
        self._pump()

    # -- the receive path (runs synchronously inside the transport's loop) --------------------
    def _on_message(self, data: bytes, source: Address, transport: Transport) -> None:
        if self._trace is not None:
            self._trace("in", data, source, transport.name)
        if wire_log.isEnabledFor(logging.DEBUG):
            wire_log.debug(
                "received from %s:%s\n%s",
                *source,
                data.decode("utf-8", "replace"),
                extra=wire_fields("in", data, source, transport.local_address, transport.name),
            )
        if not data or data.isspace() or self.closed:  # (isspace: no stripped copy)
            return  # keep-alive
        try:
            message = parse_message(data, limits=self.parser_limits)
            clock = self._clock
            now = trio.current_time() if clock is None else clock.current_time()
            if type(message) is Request:  # (parse_message makes exactly these two classes)
                message.check_essentials()  # To, From, Call-ID: parsed now (or 400)
                stamp_received(message, source)
                # Its responses go back over ``transport``: the transaction keeps its name.
                # (Positional arguments: a call with keywords costs more, per datagram.)
                self.layer.receive_request(message, now, transport.reliable, source, transport.name)
            else:
                if TYPE_CHECKING:  # (no isinstance call per response: parse_message's two)
                    assert isinstance(message, Response)
                message.source = source  # whose challenges we answer depends on it
                # The usual response carries our Via and CSeq back unchanged: matched by
                # their text, nothing parsed, nothing to learn (no received, no rport).
                if self.layer.receive_own_response(message, now) is None:
                    message.top_via  # noqa: B018 - a response we cannot match is dropped
                    self.on_response_seen(message, source)
                    self.layer.receive_response(message, now)
        except (ParseError, ProtocolError) as exc:
            self.malformed_messages += 1
            answer = answer_malformed(data, str(exc), to_tag=self.ids.tag())
            if answer is not None:  # RFC 3261 8.2, 21.4.1: 400 (505) where it can be routed
                self._log.log(
                    logging.INFO,
                    "malformed messages",
                    "answering a malformed request from %s:%s with %s: %s",
                    source[0],
                    source[1],
                    answer.status_code,
                    exc,
                )
                self.send_bytes(answer.to_bytes(), source)
            else:
                self._log.log(
                    logging.INFO,
                    "malformed messages",
                    "dropping a malformed message from %s:%s: %s",
                    source[0],
                    source[1],
                    exc,
                )
            count = self._malformed.pop(source, (0, ""))[0] + 1
            self._malformed[source] = (count, str(exc))
            while len(self._malformed) > 64:
                self._malformed.pop(next(iter(self._malformed)))
            return
        self._received_at = now  # the clock, read once for what this datagram sets off
        if self._pumping:  # (a message handed in from within the pump: _pump's nested case)
            try:
                self._carry_out()
            finally:
                self._received_at = None
            return
        # self._pump(), inline: every datagram received comes this way
        self._pumping = True
        try:
            self._carry_out()
        finally:
            self._pumping = False
            self._received_at = None
        if self.layer.soonest_armed != _NOTHING_ARMED:  # (the usual: nothing was armed)
            self._wake_timer()

    def malformed_from(self, address: Address | None) -> str | None:
        """Why a request to ``address`` may have had no answer: the malformed messages
        from there that were dropped, if any."""
        record = self._malformed.get(address) if address is not None else None
        if record is None or address is None:
            return None
        count, reason = record
        plural = "message" if count == 1 else "messages"
        return f"{count} malformed {plural} from {address[0]}:{address[1]} dropped ({reason})"

    def _pump(self) -> None:
        """Carry out what the transaction layer asks for (until it has nothing more)."""
        if self._pumping:  # within the outer pump (a response sent while serving a request)
            self._carry_out()
            return  # the outer one wakes the timer loop if need be
        self._pumping = True
        try:
            self._carry_out()
        finally:
            self._pumping = False
        if self.layer.soonest_armed != _NOTHING_ARMED:
            self._wake_timer()

    def _carry_out(self) -> None:
        """Do what the layer's events ask for, in order, until there are none."""
        layer = self.layer
        while layer.events:  # (no pop_events() call to learn that there are none)
            for event in layer.pop_events():
                # The three events of every request answered at once and the ACK to a 2xx, by
                # their exact type (an identity test each, no isinstance call); then every
                # kind by isinstance.
                kind = type(event)
                if kind is Send:
                    self._send_event(event)  # type: ignore[arg-type]
                elif kind is RequestReceived:
                    # self._serve(...), inline: every request answered at once comes this way
                    if self.on_request is not None and self._nursery is not None:
                        at_once = self.on_request_at_once
                        transaction, request = event.transaction, event.request  # type: ignore[union-attr]
                        if (
                            self._requests_queued
                            or at_once is None
                            or not at_once(transaction, request)  # type: ignore[arg-type]
                        ):
                            self._serve_in_task(transaction, request)  # type: ignore[arg-type]
                elif kind is TransactionTerminated:
                    self._routes.pop(event.transaction, None)  # type: ignore[union-attr]
                elif kind is AckReceived:  # the ACK to a 2xx of every call answered
                    self.on_ack(event.request)  # type: ignore[union-attr]
                elif kind is Resend:  # also a final response given as bytes, sent first
                    self._resend(event)  # type: ignore[arg-type]
                elif kind is ResponseReceived:  # every request we send (after the UAS's)
                    waiter = self._waiters.get(event.transaction)  # type: ignore[union-attr,arg-type]
                    if waiter is not None:
                        waiter.send_nowait(event.response)  # type: ignore[union-attr]
                    else:
                        self.on_stray_response(event.response)  # type: ignore[union-attr]
                # The kinds every transaction has come first (Terminated before the rare ones).
                elif isinstance(event, Send):
                    self._send_event(event)
                elif isinstance(event, ResponseReceived):
                    waiter = self._waiters.get(event.transaction)
                    if waiter is not None:
                        waiter.send_nowait(event.response)
                    else:
                        self.on_stray_response(event.response)
                elif isinstance(event, RequestReceived):
                    self._serve(event.transaction, event.request)
                elif isinstance(event, TransactionTerminated):
                    self._routes.pop(event.transaction, None)
                elif isinstance(event, AckReceived):
                    self.on_ack(event.request)
                elif isinstance(event, StrayResponse):
                    self.on_stray_response(event.response)
                elif isinstance(event, TransactionTimeout | TransportFailed):
                    self._fail_waiter(event.transaction, event)
                elif isinstance(event, RequestRefused):
                    self._send_refusal(event)
                elif isinstance(event, Resend):
                    self._resend(event)

    def _resend(self, event: Resend) -> None:
        """A retransmitted request answered from the record of its completed transaction
        (or a final response given as bytes, sent the first time), over the transport the
        request came in on (``route``: the transport's name)."""
        destination: Address = event.destination  # type: ignore[assignment]
        transport = self.transports.get(event.route or "") or self.require_transport()
        try:
            self._send_over(transport, event.data, destination)
        except (TransportError, OSError) as exc:
            log.debug("resending a final response failed: %s", exc)

    def _send_refusal(self, event: RequestRefused) -> None:
        """A 503 for a request over ``limits.max_server_transactions`` (no transaction)."""
        destination = event.destination
        assert isinstance(destination, tuple)
        self._log.log(
            logging.WARNING,
            "requests refused",
            "refusing %s from %s:%s with 503: %d server transactions already (limits=)",
            event.request.method,
            destination[0],
            destination[1],
            self.layer.max_server_transactions,
        )
        try:
            self.send_bytes(event.response.to_bytes(), destination)
        except (TransportError, OSError) as exc:
            log.debug("sending a 503 failed: %s", exc)

    def limit_stats(self) -> LimitStats:
        """What the limits turned away so far (connection figures from the transport)."""
        transport = self.transport
        return LimitStats(
            requests_refused=self.layer.requests_refused,
            connections_refused=getattr(transport, "connections_refused", 0),
            connections_timed_out=getattr(transport, "connections_timed_out", 0),
            malformed_messages=self.malformed_messages,
        )

    def _send_event(self, event: Send) -> None:
        destination = event.transaction.destination
        assert isinstance(destination, tuple)
        data = event.data  # event.to_bytes(), inline: a final response has its bytes
        if data is None:
            data = event.message.to_bytes()
        try:
            self._send_over(self.transport_of(event.transaction), data, destination)
        except (TransportError, OSError) as exc:
            # RFC 3261 17.1.4 / 17.2.4: the transaction hears of it; the client goes on.
            self._transport_errors[destination] = str(exc)
            self.layer.transport_error(event.transaction, trio.current_time())

    def _fail_waiter(
        self, transaction: object, event: TransactionTimeout | TransportFailed
    ) -> None:
        waiter = self._waiters.get(transaction)  # type: ignore[call-overload]
        if waiter is None:
            return
        request = event.transaction.request
        error: Exception
        if isinstance(event, TransactionTimeout):
            destination = event.transaction.destination
            error = TimeoutError(
                request.method,
                str(request.uri),
                self.timers.timer_b,
                self.malformed_from(destination if isinstance(destination, tuple) else None),
            )
        else:
            destination = event.transaction.destination
            assert isinstance(destination, tuple)
            reason = self._transport_errors.pop(destination, "send failed")
            error = TransportError(
                f"{request.method} {request.uri}: transport failure to"
                f" {destination[0]}:{destination[1]} ({reason})"
            )
        waiter.send_nowait(error)

    def _serve(self, transaction: ServerTransaction, request: Request) -> None:
        """Hand a new request to the UA: on the spot when it can answer it without waiting
        and no earlier request still waits for its task to start (requests are served in
        the order they came), else in a task of its own."""
        if self.on_request is None or self._nursery is None:
            return
        at_once = self.on_request_at_once
        if self._requests_queued == 0 and at_once is not None and at_once(transaction, request):
            return
        self._serve_in_task(transaction, request)

    def _serve_in_task(self, transaction: ServerTransaction, request: Request) -> None:
        """Hand a new request to the UA in a task of its own (see :meth:`_serve`)."""
        assert self._nursery is not None
        self._nursery.start_soon(self._serve_request, transaction, request)
        self._requests_queued += 1

    async def _serve_request(self, transaction: ServerTransaction, request: Request) -> None:
        assert self.on_request is not None
        self._requests_queued -= 1
        try:
            await self.on_request(transaction, request)
        except Exception:  # a background task never crashes the client
            log.exception("serving %s failed", request.method)

    # -- timers --------------------------------------------------------------------------------
    def _next_deadline(self) -> float:
        layer = self.layer.next_deadline(RECORD_SLACK)  # records (J, K, L): a few at once
        resend = self.retransmitter.next_deadline()
        if layer is None:
            return math.inf if resend is None else resend
        return layer if resend is None or layer <= resend else resend

    def _wake_timer(self) -> None:
        """Wake the timer loop when something was armed before what it sleeps until (the
        layer and the 2xx retransmitter tell what they armed since the last call: no walk
        of their timers here). The pump calls it only when the layer armed something;
        :meth:`retransmit_2xx`, the only way the retransmitter arms, calls it itself."""
        armed = self._armed_deadline
        layer = self.layer  # take_soonest_armed(), in place (once per pump)
        soonest = layer.soonest_armed
        layer.soonest_armed = math.inf
        retransmitter = self.retransmitter
        started = retransmitter.soonest_started
        retransmitter.soonest_started = math.inf
        if soonest < armed or started < armed:
            self._timer_wakeup.set()

    async def _timer_loop(
        self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        while True:
            self._armed_deadline = self._next_deadline()
            with trio.move_on_at(self._armed_deadline):
                await self._timer_wakeup.wait()
            self._timer_wakeup = trio.Event()
            now = trio.current_time()
            self.layer.handle_timers(now)
            for action in self.retransmitter.handle_timers(now):
                self._on_retransmit(action)
            self._pump()

    def _on_retransmit(self, action: Retransmit | AckTimeout) -> None:
        entry = self._retransmits.get(action.key)
        if entry is None:
            return
        transaction, on_timeout, transport = entry
        if isinstance(action, AckTimeout):
            del self._retransmits[action.key]
            self._unindex(action.key)
            on_timeout()
            return
        if not transaction.respond(action.response, trio.current_time()):
            destination = transaction.destination  # after Timer L: straight to the transport
            assert isinstance(destination, tuple)
            try:
                self._send_over(transport, action.response.to_bytes(), destination)
            except (TransportError, OSError) as exc:
                log.info("resending a 2xx failed: %s", exc)


def _closed_error(request: Request) -> ClientClosedError:
    return ClientClosedError(f"{request.method} {request.uri}: the client closed")


__all__ = ["Engine", "PortGroup", "Responses", "TraceHook", "TransportFactory"]
