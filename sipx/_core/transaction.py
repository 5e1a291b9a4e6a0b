"""SIP transactions (RFC 3261 section 17, with the RFC 6026 corrections), sans-I/O.

A :class:`TransactionLayer` holds the client and server transactions of one user agent.
It never reads a clock and never touches the network: every call takes ``now`` (seconds on
any monotonic scale), and what should happen next is queued as events, drained with
:meth:`TransactionLayer.pop_events`:

* :class:`Send` - put a message on the wire to ``transaction.destination`` (first
  transmissions, retransmissions, the ACK for a non-2xx final response, responses);
* :class:`Resend` - put the bytes of a final response kept by a record (below) on the
  wire again, for a retransmitted request;
* :class:`RequestReceived`, :class:`ResponseReceived`, :class:`AckReceived`,
  :class:`StrayResponse` - messages for the transaction user (TU);
* :class:`TransactionTimeout`, :class:`TransportFailed`, :class:`TransactionTerminated`;
* :class:`RequestRefused` - a new request answered 503 without a transaction, because the
  layer already holds ``max_server_transactions`` (a flood must not cost unbounded memory).

The caller sleeps until :meth:`TransactionLayer.next_deadline` and then calls
:meth:`TransactionLayer.handle_timers`. Terminated transactions are dropped from the layer,
so its memory is bounded by the traffic of the last 64*T1 seconds.

A non-INVITE server transaction over an unreliable transport spends Timer J (64*T1) in
Completed only to answer retransmitted requests with its final response. Under load those
waiting transactions are most of what the layer holds, and every full garbage collection
walks them: so on entering Completed the transaction object hands over to a *record*, a
plain tuple of the response's bytes, the destination, the route and its merge key, in one
dict, with its Timer J deadline in a first-in first-out queue (the timer's length is the
same for every record). Tuples of strings, numbers and bytes are not tracked by the
garbage collector. The object itself reaches Terminated then (as it would over a reliable
transport, where Timer J is zero): :class:`TransactionTerminated` is emitted at once, and
the record counts as a server transaction until Timer J. A non-INVITE client transaction
does the same on entering Completed: only its key stays, to absorb retransmitted final
responses until Timer K.

An INVITE server transaction entering Accepted (a 2xx sent) hands over to a record too, for
Timer L (64*T1, any transport): the status of its 2xx, no bytes. The
record absorbs retransmissions of the INVITE (the TU resends the 2xx itself), still counts
for a merged request (8.2.2.2) and for ``max_server_transactions``, and a CANCEL matching it
finds a stand-in whose ``last_response`` says the INVITE was answered (9.2: 200, no 487).
An ACK matching it is passed to the TU as every ACK for a 2xx is (:class:`AckReceived`).
The object leaves the layer's tables then (no timer, no event: the layer never reaches it
again) but stays Accepted for whoever holds it, passing the TU's 2xx retransmissions until
its Timer L deadline, when :meth:`ServerTransaction.respond` starts refusing them.

The four state machines are those of RFC 3261 figures 5 to 8 as amended by RFC 6026: a 2xx
to an INVITE moves both the client and the server INVITE transaction to Accepted (Timers M
and L); the client passes every 2xx up and never ACKs one (the TU does); the server passes
2xx retransmissions from the TU down and an ACK matching it up. A server INVITE transaction
sends 100 Trying as soon as it is created; over an unreliable transport with the layer's
``trying_delay`` (the engine's is :data:`TRYING_DELAY`, 200 ms: RFC 3261 17.2.1), only once
that time has passed without a response from the TU, or at once when the INVITE is
retransmitted first.

A request without a To tag that matches the From tag, Call-ID and CSeq of a request that
created a live server transaction, but not that transaction (another branch: a forked
request that reached this UAS by two paths), is a merged request (RFC 3261 8.2.2.2): the
layer answers it 482 (Loop Detected) through a server transaction of its own, and the TU
never sees it.
"""

from __future__ import annotations

import enum
import hashlib
import heapq
import itertools
import math
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, TypeAlias

from .._errors import ParseError
from .header_types import Via
from .headers import STALE, Headers, split_list
from .message import (
    REASON_PHRASES,
    SIP_VERSION,
    Message,
    Request,
    Response,
    header_rank,
    in_conventional_order,
)
from .parser import parse_message
from .timers import DEFAULT_TIMERS, TimerConfig

MAGIC_COOKIE = "z9hG4bK"
"""Branch prefix of RFC 3261 compliant requests (section 8.1.1.7)."""


class TransactionState(enum.Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


_S = TransactionState


# -- building messages -----------------------------------------------------------------------


def _header(message: Message, name: str) -> str:
    value = message.headers.get_first(name)
    if value is None:
        raise ParseError(f"message has no {name} header")
    return value


def make_response(
    request: Request,
    status_code: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    extra: Sequence[tuple[str, str, str]] = (),
) -> Response:
    """A response to ``request`` (RFC 3261 8.2.6): Via, From, To, Call-ID and CSeq copied.

    ``to_tag`` is added to the To header when it has no tag yet. A 100 also copies Timestamp
    (8.2.6.1). Headers missing from the request are left out, so a 400 can still be built.
    ``extra``: more fields, checked already (``(key, name, value)`` as ``Headers.entries``
    holds them), appended as they are.
    """
    if not 100 <= status_code <= 699:
        raise ValueError(f"status code {status_code} is not in 100-699")
    if to_tag is not None and ("\r" in to_tag or "\n" in to_tag):
        raise ValueError(f"to_tag must not contain CR or LF: {to_tag!r}")
    # The request's fields are clean already (parsed or added through Headers): they are
    # copied as they are, straight into the new field list. From, To, Call-ID, CSeq (and
    # Timestamp) are read from the first values; only Vias given more than once need the
    # index (a section still as parsed says so without building it).
    headers = request.headers
    first = headers.first
    if first is STALE:
        first = headers.first_values()
    fields: list[tuple[str, str, str]]
    via = first.get("via")
    if via is None:
        fields = []
    elif "," not in via and headers.repeated(_VIA_KEYS) is None:
        fields = [("via", "Via", via)]  # the usual request: one Via of one entry
    else:
        fields = [
            ("via", "Via", item) for value in headers.lookup()["via"] for item in split_list(value)
        ]
    for key, name in _COPIED_TO_RESPONSE:
        value = first.get(key)
        if value is None:
            continue
        if key == "to" and to_tag is not None:
            to = headers.typed.get("to")  # parsed already on the receive path
            if (request.to if to is None else to).tag is None:
                value = f"{value};tag={to_tag}"
        fields.append((key, name, value))
    in_order = True  # Via, From, To, Call-ID, CSeq: to_bytes() needs no sort
    if status_code == 100:
        timestamp = first.get("timestamp")
        if timestamp is not None:
            fields.append(("timestamp", "Timestamp", timestamp))
    if extra:
        after = fields[-1][0] if fields else ""
        known = _extra_in_order
        if known[0] is extra and known[1] == after:
            in_order = known[2]  # the same fields as the last time (the 200 to OPTIONS)
        else:
            in_order = in_conventional_order(extra, header_rank(after) if fields else 0)
            if type(extra) is tuple:  # unchangeable: the answer holds while it is the same
                _remember_extra_order(extra, after, in_order)
        fields.extend(extra)
    return Response.from_wire(
        status_code,
        REASON_PHRASES.get(status_code, "") if reason is None else reason,
        SIP_VERSION,
        Headers.from_parsed(fields, in_order=in_order),
    )


_VIA_KEYS = ("via",)

_extra_in_order: tuple[object, str, bool] = ((), "", True)
"""The last tuple of ``extra`` fields given to :func:`make_response`, the key of the field
they follow and whether they were in order after it: the cached capabilities of every 200
to OPTIONS are checked once (one tuple, replaced whole: safe across threads)."""


def _remember_extra_order(
    extra: tuple[tuple[str, str, str], ...], after: str, in_order: bool
) -> None:
    global _extra_in_order
    _extra_in_order = (extra, after, in_order)


_COPIED_TO_RESPONSE = (("from", "From"), ("to", "To"), ("call-id", "Call-ID"), ("cseq", "CSeq"))


def final_response_bytes(
    request: Request,
    status_code: int,
    *,
    to_tag: str | None = None,
    extra: Sequence[tuple[str, str, str]] = (),
) -> bytes | None:
    """What ``make_response(request, status_code, to_tag=to_tag, extra=extra).to_bytes()``
    gives for a final response without a body, written straight from the request's first
    values: no Response, no field list, no second pass over the fields.

    For the usual request (one Via field of one entry, From, To, Call-ID and CSeq present,
    first values as parsed or stamped) and ``extra`` that ``to_bytes()`` writes in the
    given order after the CSeq (a tuple's text is made once: the 200 to OPTIONS); None for
    anything else (build the Response then).
    """
    if not 200 <= status_code <= 699:
        raise ValueError(f"status code {status_code} is not a final status")
    if to_tag is not None and ("\r" in to_tag or "\n" in to_tag):
        raise ValueError(f"to_tag must not contain CR or LF: {to_tag!r}")
    headers = request.headers
    first = headers.first
    if first is STALE:
        return None  # changed since parsed: make_response reads the index
    via = first.get("via")
    from_ = first.get("from")
    to = first.get("to")
    call_id = first.get("call-id")
    cseq = first.get("cseq")
    if via is None or from_ is None or to is None or call_id is None or cseq is None:
        return None
    if "," in via or headers.repeated(_VIA_KEYS) is not None:
        return None  # several Vias: make_response copies each entry
    if extra:
        known = _extra_text
        if known[0] is extra:
            block = known[1]
        else:
            block = _extra_block(extra)
            if type(extra) is tuple:  # unchangeable: the text holds while it is the same
                _remember_extra_text(extra, block)
        if block is None:
            return None
    else:
        block = ""
    if to_tag is not None:
        parsed = headers.typed.get("to")  # parsed already on the receive path
        if (request.to if parsed is None else parsed).params.get("tag") is None:  # (.tag)
            to = f"{to};tag={to_tag}"
    reason = REASON_PHRASES.get(status_code, "")
    return (
        f"{SIP_VERSION} {status_code} {reason}\r\nVia: {via}\r\nFrom: {from_}\r\n"
        f"To: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\n{block}Content-Length: 0\r\n\r\n"
    ).encode("utf-8", "surrogateescape")


def _extra_block(extra: Sequence[tuple[str, str, str]]) -> str | None:
    """The lines ``to_bytes()`` writes for ``extra`` after a CSeq, each ended by CRLF; None
    when it would write them otherwise (out of order, or a Content-Length among them)."""
    if not in_conventional_order(extra, header_rank("cseq")):
        return None
    if any(key == "content-length" or name == "Content-Length" for key, name, _ in extra):
        return None
    return "".join(f"{name}: {value}\r\n" for _, name, value in extra)


_extra_text: tuple[object, str | None] = ((), "")
"""The last tuple of ``extra`` fields given to :func:`final_response_bytes` and its text
(one tuple, replaced whole, as :data:`_extra_in_order`)."""


def _remember_extra_text(extra: tuple[tuple[str, str, str], ...], block: str | None) -> None:
    global _extra_text
    _extra_text = (extra, block)


def make_ack_for_non2xx(invite: Request, response: Response) -> Request:
    """The ACK a client INVITE transaction sends for a 300-699 response (RFC 3261 17.1.1.3).

    Same Request-URI, Call-ID, From and CSeq number as the INVITE, the response's To (with
    its tag), only the INVITE's top Via (so the same branch), the INVITE's Route headers.
    """
    vias = invite.headers.get_list("Via")
    if not vias:
        raise ParseError("message has no Via header")
    headers = Headers()
    headers.add("Via", vias[0])
    headers.add("Max-Forwards", "70")
    for route in invite.headers.get_list("Route"):
        headers.add("Route", route)
    headers.add("From", _header(invite, "From"))
    headers.add("To", _header(response, "To"))
    headers.add("Call-ID", _header(invite, "Call-ID"))
    headers.add("CSeq", f"{invite.cseq.seq} ACK")
    headers.add("Content-Length", "0")
    return Request("ACK", invite.uri, headers)


# -- events ----------------------------------------------------------------------------------
# Values, never changed once made; not ``frozen=True``: a frozen dataclass sets each field
# through ``object.__setattr__``, which made building the three events of every request
# answered (RequestReceived, Send, TransactionTerminated) several times dearer. Equality and
# hashing are by value, as a frozen one's.


@dataclass(slots=True, unsafe_hash=True)
class Send:
    """Put ``message`` on the wire to ``transaction.destination``.

    ``data`` is the message already serialised when the transaction needed the bytes
    itself (else None); :meth:`to_bytes` gives the bytes either way.
    """

    transaction: Transaction
    message: Request | Response
    data: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def destination(self) -> object:
        return self.transaction.destination

    def to_bytes(self) -> bytes:
        return self.data if self.data is not None else self.message.to_bytes()


@dataclass(slots=True, unsafe_hash=True)
class Resend:
    """Put ``data``, the final response a record keeps, on the wire to ``destination``
    over ``route`` (what the transaction was given by ``receive_request``): a retransmitted
    request matched a non-INVITE server transaction that completed (Timer J runs), or the
    final response given as bytes (:meth:`ServerTransaction.respond_serialised`) goes out
    the first time."""

    data: bytes
    destination: object
    route: str | None

    def to_bytes(self) -> bytes:
        return self.data


@dataclass(slots=True, unsafe_hash=True)
class ResponseReceived:
    """A response for the TU: 1xx and final, and (RFC 6026) every 2xx to an INVITE."""

    transaction: ClientTransaction
    response: Response


@dataclass(slots=True, unsafe_hash=True)
class RequestReceived:
    """A request that created a new server transaction; the TU answers with ``respond``."""

    transaction: ServerTransaction
    request: Request


@dataclass(slots=True, unsafe_hash=True)
class AckReceived:
    """An ACK that is not absorbed by a server INVITE transaction: the ACK for a 2xx.

    ``transaction`` is the Accepted INVITE transaction it matched, usually None (an ACK for
    a 2xx carries a new branch).
    """

    request: Request
    transaction: ServerTransaction | None


@dataclass(slots=True, unsafe_hash=True)
class StrayResponse:
    """A response matching no client transaction (e.g. a 2xx retransmitted after Timer M)."""

    response: Response


@dataclass(slots=True, unsafe_hash=True)
class TransactionTimeout:
    """Timer B or F (client: no final response) or H (server: no ACK) fired; acts as a 408."""

    transaction: Transaction


@dataclass(slots=True, unsafe_hash=True)
class TransportFailed:
    """The transport reported a fatal error for this transaction (17.1.4, 17.2.4)."""

    transaction: Transaction


@dataclass(slots=True, unsafe_hash=True)
class RequestRefused:
    """A new request refused without a transaction: the layer holds
    ``max_server_transactions`` already. Send ``response`` (503 with Retry-After) to
    ``destination``, where the request came from."""

    request: Request
    response: Response
    destination: object


@dataclass(slots=True, unsafe_hash=True)
class TransactionTerminated:
    """The transaction reached Terminated and has left the layer.

    A non-INVITE transaction over an unreliable transport emits it on entering Completed:
    its record absorbs retransmissions until Timer J or K (see the module docstring).
    """

    transaction: Transaction


Event: TypeAlias = (
    Send
    | Resend
    | ResponseReceived
    | RequestReceived
    | AckReceived
    | StrayResponse
    | TransactionTimeout
    | TransportFailed
    | RequestRefused
    | TransactionTerminated
)


# -- transactions ----------------------------------------------------------------------------


class Transaction:
    """What client and server transactions share.

    ``destination`` is opaque to the layer: for a client transaction where the caller sends
    the request, for a server transaction where the request came from (responses go there).
    """

    __slots__ = (
        "_interval",
        "_key",
        "_layer",
        "_request",
        "_timers",
        "branch",
        "destination",
        "last_response",
        "method",
        "reliable",
        "state",
    )

    is_invite: ClassVar[bool] = False

    def __init__(
        self,
        layer: TransactionLayer,
        request: Request,
        branch: str,
        key: tuple[object, ...],
        *,
        reliable: bool,
        destination: object,
        state: TransactionState,
    ) -> None:
        # ServerTransaction.__init__ and ClientTransaction.__init__ repeat these lines
        # inline (keep the three alike).
        self._layer = layer
        self._key = key
        self._timers: dict[str, int] = {}
        self._interval = 0.0
        self._request: Request | None = request
        self.branch = branch
        self.method = request.method
        self.reliable = reliable
        self.destination = destination
        self.state = state
        self.last_response: Response | None = None

    @property
    def request(self) -> Request:
        """The request of the transaction.

        A non-INVITE transaction that completes over an unreliable transport hands over to
        a record of the layer (it lives on for Timer J or K only to absorb retransmissions,
        and under load those idle transactions are most of what the garbage collector
        walks) and lets go of its messages: reading ``request`` then raises RuntimeError,
        and ``last_response`` is None. So does an
        INVITE server transaction once Accepted (a 2xx sent): the TU's retransmissions of
        the 2xx pass through it until Timer L, but it keeps neither the INVITE nor the 2xx,
        only the 2xx's status and To field as ``last_response`` (:func:`accepted_stand_in`),
        and the layer keeps only a record of it (see the module docstring).
        """
        request = self._request
        if request is None:
            raise RuntimeError(f"{self!r} released its request when it completed")
        return request

    @property
    def config(self) -> TimerConfig:
        return self._layer.config

    @property
    def terminated(self) -> bool:
        return self.state is _S.TERMINATED

    def _send(self, message: Request | Response) -> None:
        self._layer.events.append(Send(self, message))

    def _arm(self, timer: str, delay: float, now: float) -> None:
        self._layer._arm(self, timer, now + delay)

    def _arm_or_end(self, timer: str, delay: float, now: float) -> None:
        # A wait timer of 0 (reliable transports) means "terminate at once".
        if delay > 0:
            self._arm(timer, delay, now)
        else:
            self._layer._terminate(self)

    def _disarm(self, *timers: str) -> None:
        pop = self._timers.pop
        dropped = 0
        for timer in timers:
            if pop(timer, None) is not None:
                dropped += 1
        if dropped:
            self._layer._dropped_timers(dropped)

    def _time_out(self) -> None:
        self._layer.events.append(TransactionTimeout(self))
        self._layer._terminate(self)

    def _fire(self, timer: str, now: float) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.method} {self.branch} {self.state.value}>"


class ClientTransaction(Transaction):
    """A client transaction (17.1): created by :meth:`TransactionLayer.send_request`.

    ``ack`` is the ACK an INVITE transaction built for a 300-699 response (else None).

    Over an unreliable transport the timer that ends an unanswered transaction (B, F) is
    put on the layer's timer heap when the retransmission timer (A, E) first fires, at the
    deadline it had from the start (kept meanwhile in ``_timeout_at``): most transactions
    are answered within T1 and so put one entry on the heap, not two. It fires when, and
    in the order, it would have from the start (a retransmission timer re-armed later
    never goes first on a tie, as before).
    """

    __slots__ = ("_match", "_queued", "_sent_cseq", "_sent_via", "_timeout_at", "ack")

    def __init__(
        self,
        layer: TransactionLayer,
        request: Request,
        branch: str,
        match: str,
        reliable: bool,
        destination: object,
        state: TransactionState,
    ) -> None:
        # Transaction.__init__'s work, inline: one of these is made for every request sent
        # (its arguments positional: send_request passes them so, as for ServerTransaction).
        # No server key: the layer finds it by ``match``, its _client_key() (the one string
        # for each of the layer's look-ups, its hash computed once).
        self._layer = layer
        self._key = ()
        self._match = match
        self._timers = {}
        self._interval = 0.0
        self._request = request
        self.branch = branch
        self.method = request.method
        self.reliable = reliable
        self.destination = destination
        self.state = state
        self.last_response = None
        self._timeout_at = math.inf  # Timer B or F, until it is on the heap
        self._queued = -1  # the sequence of its first Timer E in the layer's queue (-1: none)
        self.ack: Request | None = None
        # The request's top Via and CSeq as sent, while the layer matches responses to it
        # by that text (see TransactionLayer.receive_own_response), else None.
        self._sent_via: str | None = None
        self._sent_cseq: str | None = None

    def _start(self, now: float) -> None:
        raise NotImplementedError

    def _on_response(self, response: Response, now: float) -> None:
        raise NotImplementedError

    def _to_tu(self, response: Response) -> None:
        self._layer.events.append(ResponseReceived(self, response))

    def _arm_timeout(self, timer: str) -> None:
        """Put Timer B or F (``timer``) on the heap at its deadline, if it is not yet."""
        if self._timeout_at != math.inf:
            self._layer._arm(self, timer, self._timeout_at)
            self._timeout_at = math.inf


class InviteClientTransaction(ClientTransaction):
    """Figure 5 with RFC 6026: Calling, Proceeding, Completed, Accepted, Terminated."""

    __slots__ = ()
    is_invite = True

    def _start(self, now: float) -> None:
        config = self.config
        self._send(self.request)
        if self.reliable:
            self._arm("B", config.timer_b, now)
        else:
            self._timeout_at = now + config.timer_b  # on the heap when Timer A first fires
            self._interval = config.timer_a
            self._arm("A", self._interval, now)

    def _on_response(self, response: Response, now: float) -> None:
        code = response.status_code
        if self.state in (_S.CALLING, _S.PROCEEDING):
            self._disarm("A", "B")
            self.last_response = response
            if code < 200:
                self.state = _S.PROCEEDING
                self._to_tu(response)
            elif code < 300:
                self.state = _S.ACCEPTED
                self._to_tu(response)
                self._arm("M", self.config.timer_m, now)
            else:
                self.state = _S.COMPLETED
                self._to_tu(response)
                self.ack = make_ack_for_non2xx(self.request, response)
                self._send(self.ack)
                self._arm_or_end("D", self.config.timer_d(self.reliable), now)
        elif self.state is _S.COMPLETED:
            if code >= 300 and self.ack is not None:
                self._send(self.ack)  # retransmitted final response: ACK again, TU not told
        elif self.state is _S.ACCEPTED and 200 <= code < 300:
            self.last_response = response
            self._to_tu(response)  # 2xx retransmission or another fork's 2xx

    def _fire(self, timer: str, now: float) -> None:
        if timer == "A" and self.state is _S.CALLING:
            self._arm_timeout("B")
            self._send(self.request)
            self._interval *= 2
            self._arm("A", self._interval, now)
        elif timer == "B" and self.state is _S.CALLING:
            self._time_out()
        elif timer in ("D", "M"):
            self._layer._terminate(self)


class NonInviteClientTransaction(ClientTransaction):
    """Figure 6: Trying, Proceeding, Completed, Terminated."""

    __slots__ = ()

    def _start(self, now: float) -> None:
        layer = self._layer
        config = layer.config
        request = self._request
        assert request is not None  # released only on leaving Trying
        layer.events.append(Send(self, request))
        if self.reliable:
            layer._arm(self, "F", now + config.timer_f)
        else:
            self._timeout_at = now + config.timer_f  # on the heap when Timer E first fires
            self._interval = interval = config.timer_e
            # The first Timer E goes in the layer's queue of first E timers, due in the
            # order they were armed (the same T1 for all): no heap entry (one made stale
            # by nearly every answer). Unless it would be due before the last one queued
            # (a clock set back): the heap then.
            deadline = now + interval
            queue = layer._first_e
            if queue and deadline < queue[-1][0]:
                layer._arm(self, "E", deadline)
                return
            self._queued = sequence = next(layer._sequence)
            queue.append((deadline, sequence, self._match))
            if deadline < layer.soonest_armed:  # layer._armed(deadline), inline
                layer.soonest_armed = deadline

    def _on_response(self, response: Response, now: float) -> None:
        state = self.state
        if state is not _S.TRYING and state is not _S.PROCEEDING:
            return  # Completed absorbs retransmitted finals
        self.last_response = response
        layer = self._layer
        if response.status_code < 200:
            self.state = _S.PROCEEDING
            layer.events.append(ResponseReceived(self, response))
            return
        self.state = _S.COMPLETED
        layer.events.append(ResponseReceived(self, response))
        wait = 0.0 if self.reliable else layer.config.t4  # config.timer_k(reliable), inline
        if wait > 0:
            layer._record_client(self, now + wait)  # either drops Timers E and F
        else:
            layer._terminate(self)

    def _fire(self, timer: str, now: float) -> None:
        if timer == "E" and self.state in (_S.TRYING, _S.PROCEEDING):
            self._arm_timeout("F")
            self._send(self.request)
            if self.state is _S.TRYING:
                self._interval = min(2 * self._interval, self.config.t2)
            else:
                self._interval = self.config.t2
            self._arm("E", self._interval, now)
        elif timer == "F" and self.state in (_S.TRYING, _S.PROCEEDING):
            self._time_out()


class ServerTransaction(Transaction):
    """A server transaction (17.2): created by :meth:`TransactionLayer.receive_request`.

    ``route`` is the opaque token given to ``receive_request`` (the engine: the name of
    the transport the request came in on); a record keeps it for :class:`Resend`.
    """

    __slots__ = ("_merge_key", "route")

    def __init__(
        self,
        layer: TransactionLayer,
        request: Request,
        branch: str,
        key: tuple[object, ...],
        reliable: bool,
        destination: object,
        state: TransactionState,
        route: str | None = None,
    ) -> None:
        # Transaction.__init__'s work, inline: one of these is made for every request
        # (positional arguments too: receive_request passes them so, a call with keywords
        # costs a third of the whole construction).
        self._layer = layer
        self._key = key
        self._timers = {}
        self._interval = 0.0
        self._request = request
        self.branch = branch
        self.method = request.method
        self.reliable = reliable
        self.destination = destination
        self.state = state
        self.last_response = None
        # Its entry in the layer's record of recent requests (8.2.2.2), if it has one.
        self._merge_key: _MergeKey | None = None
        self.route = route

    def respond(self, response: Response, now: float) -> bool:
        """Send a response of the TU through this transaction.

        Returns False when the state machine discards it (a second final response, any
        response after Terminated); see :func:`make_response` to build one.
        """
        raise NotImplementedError

    def respond_serialised(self, status_code: int, data: bytes, now: float) -> bool:
        """Send a final response given as its bytes (see :func:`final_response_bytes`),
        without a Response: only a non-INVITE transaction over an unreliable transport,
        whose record keeps the bytes at once, takes it. False, and nothing done, anywhere
        else (another kind, a provisional status, answered already): use :meth:`respond`."""
        return False

    def _start(self, now: float, *, to_tu: bool = True) -> None:
        """Enter the initial state; ``to_tu=False`` (a merged request) tells the TU nothing."""
        raise NotImplementedError

    def _on_retransmission(self, now: float) -> None:
        # Proceeding and Completed answer a retransmitted request with the last response.
        if self.state in (_S.PROCEEDING, _S.COMPLETED) and self.last_response is not None:
            self._send(self.last_response)

    def _check(self, response: Response) -> int:
        code = response.status_code
        if not 100 <= code <= 699:
            raise ValueError(f"status code {code} is not in 100-699")
        return code


def accepted_stand_in(response: Response) -> Response:
    """What an Accepted INVITE server transaction keeps of its 2xx as ``last_response``:
    the status, the reason and the To field (a legacy ACK is matched by its tag)."""
    headers = response.headers
    first = headers.first
    to: str | None = None
    if first is STALE:
        # A response built by the TU (make_response: no index yet): its To read from the
        # fields, not through get_first(), which would build the first values and the
        # index of the whole 2xx for this one value (once per call answered).
        for key, _, value in headers.entries:
            if key == "to":
                to = value
                break
    else:
        to = first.get("to")
    fields = [] if to is None else [("to", "To", to)]
    return Response.from_wire(
        response.status_code,
        response.reason_phrase,
        response.version,
        Headers.from_parsed(fields),
    )


class InviteServerTransaction(ServerTransaction):
    """Figure 7 with RFC 6026: Proceeding, Completed, Confirmed, Accepted, Terminated."""

    __slots__ = ()
    is_invite = True

    def _start(self, now: float, *, to_tu: bool = True) -> None:
        if not to_tu:
            return
        delay = self._layer.trying_delay
        if delay > 0 and not self.reliable:
            # 17.2.1: the 100 Trying only if the TU has not answered within the delay.
            # (Over a connection it goes at once: the connection may be gone by then.)
            self._arm("T", delay, now)
        else:
            self._send_trying()
        self._layer.events.append(RequestReceived(self, self.request))

    def _send_trying(self) -> None:
        trying = make_response(self.request, 100)
        self.last_response = trying
        self._send(trying)

    def _disarm_trying(self) -> None:
        """Disarm Timer T. Its heap entry goes with it when it is the heap's last one
        (nothing armed since: the INVITE answered as it arrived), a leaf whose removal
        keeps the heap in order; otherwise it stays, counted stale, until it comes due
        (keeping this transaction alive until then)."""
        sequence = self._timers.pop("T", None)
        if sequence is None:
            return
        layer = self._layer
        heap = layer._heap
        if heap and heap[-1][1] == sequence:  # (sequence numbers are never reused)
            heap.pop()
        else:
            layer._dropped_timers(1)

    def _on_retransmission(self, now: float) -> None:
        if self.state is _S.PROCEEDING and self.last_response is None:
            self._disarm_trying()  # the client retransmits: it hears from us now
            self._send_trying()
            return
        super()._on_retransmission(now)

    def respond(self, response: Response, now: float) -> bool:
        code = self._check(response)
        if self.state is _S.PROCEEDING:
            if self.last_response is None:
                self._disarm_trying()  # answered in time: no 100 Trying
            self.last_response = response
            self._send(response)
            if 200 <= code < 300:
                self.state = _S.ACCEPTED
                # Accepted only absorbs INVITE retransmissions and passes 2xx and ACKs:
                # the layer keeps a record for that (Timer L runs 32 s), not this object,
                # and the object keeps neither the INVITE nor the rest of the 2xx (the TU
                # keeps what it needs). Until Timer L it passes the TU's 2xx resends.
                self._request = None
                stand_in = accepted_stand_in(response)
                self.last_response = stand_in
                self._interval = now + self.config.timer_l  # in Accepted: Timer L's deadline
                self._layer._accept(self, code, self._interval)
            elif code >= 300:
                self.state = _S.COMPLETED
                if not self.reliable:
                    self._interval = self.config.timer_g
                    self._arm("G", self._interval, now)
                self._arm("H", self.config.timer_h, now)
            return True
        if self.state is _S.ACCEPTED and 200 <= code < 300:
            if now >= self._interval:  # Timer L: the layer's record of it has ended
                self.state = _S.TERMINATED
                return False
            self._send(response)  # the TU's 2xx retransmissions pass through (RFC 6026)
            return True
        return False

    def _on_ack(self, ack: Request, now: float) -> None:
        if self.state is _S.COMPLETED:
            self._disarm("G", "H")
            self.state = _S.CONFIRMED
            self._arm_or_end("I", self.config.timer_i(self.reliable), now)
        # Confirmed absorbs ACK retransmissions; an ACK in Proceeding is bogus and dropped.
        # (Accepted is a record of the layer: an ACK matching it goes to the TU from there.)

    def _fire(self, timer: str, now: float) -> None:
        if timer == "G" and self.state is _S.COMPLETED and self.last_response is not None:
            self._send(self.last_response)
            self._interval = min(2 * self._interval, self.config.t2)
            self._arm("G", self._interval, now)
        elif timer == "H" and self.state is _S.COMPLETED:
            self._time_out()
        elif timer == "I":
            self._layer._terminate(self)
        elif timer == "T" and self.state is _S.PROCEEDING and self.last_response is None:
            self._send_trying()


class NonInviteServerTransaction(ServerTransaction):
    """Figure 8: Trying, Proceeding, Completed, Terminated.

    Completed over an unreliable transport, it hands over to a record of the layer that
    keeps only the bytes of its final response (for retransmitted requests) until Timer J,
    and the object itself reaches Terminated (see the module docstring).
    """

    __slots__ = ()

    def _start(self, now: float, *, to_tu: bool = True) -> None:
        if to_tu:  # (its request is there: it was just made)
            self._layer.events.append(RequestReceived(self, self._request))  # type: ignore[arg-type]

    def respond(self, response: Response, now: float) -> bool:
        code = response.status_code  # self._check(response), inline
        if not 100 <= code <= 699:
            raise ValueError(f"status code {code} is not in 100-699")
        state = self.state
        if state is not _S.TRYING and state is not _S.PROCEEDING:
            return False
        self.last_response = response
        if code < 200:
            self.state = _S.PROCEEDING
            self._send(response)
            return True
        self.state = _S.COMPLETED
        layer = self._layer
        wait = layer.config.timer_j(self.reliable)
        if wait > 0:
            data = response.to_bytes()
            layer.events.append(Send(self, response, data))
            layer._record(self, data, now + wait)
        else:
            self._send(response)
            self._layer._terminate(self)
        return True

    def respond_serialised(self, status_code: int, data: bytes, now: float) -> bool:
        if not 200 <= status_code <= 699 or self.reliable:
            return False
        state = self.state
        if state is not _S.TRYING and state is not _S.PROCEEDING:
            return False
        layer = self._layer
        wait = 64 * layer.config.t1  # config.timer_j(False), inline
        if wait <= 0:
            return False
        # What respond() does for a final response over an unreliable transport, with the
        # bytes given: sent (as a record's answer is: Resend) and kept by the record, which
        # is the transaction from now on (layer._record(), inline: Completed, then ended).
        events = layer.events
        events.append(Resend(data, self.destination, self.route))
        layer._keep_record(self, data, now + wait, layer._record_deadlines)
        self.state = _S.TERMINATED
        self._request = None
        self.last_response = None
        events.append(TransactionTerminated(self))
        return True

    def _fire(self, timer: str, now: float) -> None:
        pass  # no timer: Timer J runs for its record


# -- the layer -------------------------------------------------------------------------------


def _is_legacy(request: Request) -> bool:
    branch = request.top_via.branch
    return branch is None or not branch.startswith(MAGIC_COOKIE)


def _sent_by(via: Via) -> tuple[str, int]:
    # TransactionLayer.receive_request has this inline: keep the two alike.
    port = via.port
    if port is None:
        port = 5061 if via.transport == "TLS" else 5060
    host = via.host
    lowered = host.lower()  # a new string even when nothing changes: the key keeps one
    return host if lowered == host else lowered, port


_MergeKey: TypeAlias = tuple[str | None, str, int, str]

_Record: TypeAlias = tuple[str, "bytes | int", object, "str | None", float, tuple[object, ...]]
"""A Completed non-INVITE server transaction (method, final response bytes, destination,
route, Timer J deadline, server key) or an Accepted INVITE one (``"INVITE"``, the status
of its 2xx, ..., Timer L deadline, server key). Nothing in it is tracked by the garbage
collector (given a destination of strings and numbers, as the engine's addresses are).
Its merge key (8.2.2.2) is not kept: the record of recent requests holds the record
itself under that key, for as long as it holds the entry (see ``TransactionLayer._recent``)."""

TRYING_DELAY = 0.2
"""RFC 3261 17.2.1: a server transaction may leave out the 100 Trying of an INVITE when it
knows that the TU answers within 200 ms; the engine sends it when that time has passed."""

RECORD_SLACK = 0.01
"""How late the engine lets the layer's records expire (seconds): Timer K of completed
non-INVITE client transactions, Timer J of completed non-INVITE server transactions and
Timer L of Accepted INVITE ones. It wakes for the first one due and ends those due within
this span with it, rather than once for each (under load they come due one every few
microseconds, as fast as requests were answered). A record only absorbs retransmissions
(of a final response the TU would drop, of a request answered again from the record):
keeping it 10 ms longer changes nothing on the wire."""

MERGE_RECORDS = 8192
"""Default bound of the record of recent requests used to spot merged requests."""


def _merge_key(request: Request) -> _MergeKey | None:
    """From tag, Call-ID, CSeq number and method of a request outside a dialog (8.2.2.2).

    None when the rule does not apply: a request with a To tag, an ACK (never answered), a
    CANCEL (matched to its INVITE instead), or headers too broken to read (the TU answers
    those itself, e.g. with a 400).
    """
    method = request.method
    if method in ("ACK", "CANCEL"):
        return None
    # The views the receive path parsed already are read from the cache, without the
    # properties' calls (a received request has them all); any missing one is parsed.
    typed = request.headers.typed
    to, from_, cseq = typed.get("to"), typed.get("from"), typed.get("cseq")
    try:
        if to is None:
            to = request.to
        if to.params.get("tag") is not None:
            return None
        if from_ is None:
            from_ = request.from_
        if cseq is None:
            cseq = request.cseq
        return (from_.params.get("tag"), request.call_id, cseq.seq, method)
    except ParseError:
        return None


def _loop_tag(request: Request) -> str:
    """The To tag of a 482 for a merged request: never a dialog, so derived, not drawn."""
    seed = f"{request.top_via.branch}\0{request.call_id}\0{request.from_.tag}"
    return hashlib.blake2s(seed.encode(), digest_size=8).hexdigest()


def _stateless_tag(request: Request) -> str:
    """The To tag of a response sent without a transaction: derived from the request, so
    that its retransmissions get the same answer."""
    seed = f"{request.top_via.branch}\0{request.call_id}\0{request.from_.tag}\0{request.method}"
    return hashlib.blake2s(seed.encode(), digest_size=8).hexdigest()


def _client_key(branch: str, method: str) -> str:
    """The key of a client transaction (and of its record once Completed): its branch and
    method in one str (a method is a token: the first space ends it), which the collector
    does not track, unlike a tuple."""
    return f"{method} {branch}"


def _rfc3261_key(via: Via) -> tuple[object, ...] | None:
    """The server key of a request whose top Via is ``via``, if its branch has the
    z9hG4bK cookie (branch and sent-by, 17.2.3); None for an RFC 2543 request."""
    branch = via.branch
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        return ("3261", branch, *_sent_by(via))
    return None


def _server_key(request: Request, to_tag: str | None) -> tuple[object, ...]:
    """The key a request shares with its retransmissions, its ACK and its CANCEL (17.2.3).

    The method is matched separately. With a z9hG4bK branch: branch and sent-by. Otherwise
    (RFC 2543): Request-URI, From tag, Call-ID, CSeq number, top Via and the To tag of the
    request that created the transaction (passed as ``to_tag``).
    """
    via = request.top_via
    key = _rfc3261_key(via)
    if key is not None:
        return key
    uri = str(request.uri)
    return ("2543", uri, request.from_.tag, request.call_id, request.cseq.seq, str(via), to_tag)


class TransactionLayer:
    """Every transaction of one user agent; see the module docstring for the protocol."""

    def __init__(
        self,
        config: TimerConfig = DEFAULT_TIMERS,
        *,
        merge_records: int = MERGE_RECORDS,
        max_server_transactions: int | None = None,
        retry_after: int = 10,
        trying_delay: float = 0.0,
    ) -> None:
        if merge_records < 1:
            raise ValueError(f"merge_records must be at least 1, not {merge_records!r}")
        if max_server_transactions is not None and max_server_transactions < 1:
            raise ValueError(
                f"max_server_transactions must be at least 1, not {max_server_transactions!r}"
            )
        self.config = config
        # At most this many server transactions (None: no bound); beyond, RequestRefused.
        self.max_server_transactions = max_server_transactions
        self.retry_after = retry_after
        # Over UDP, a new INVITE's 100 Trying goes this long after it unless the TU answered
        # first (17.2.1; 0: at once). A retransmitted INVITE gets it at once.
        self.trying_delay = trying_delay
        self.requests_refused = 0  # new requests refused with 503 since the layer began
        # Requests outside a dialog that created a live server transaction, oldest first,
        # so that a merged request can be spotted (8.2.2.2). An entry leaves with its
        # transaction, or as the oldest once there are more than ``merge_records``.
        # The value is the transaction, or its record once it has one (_Record: the record
        # keeps no merge key). An entry whose record has expired no longer merges
        # (_record_kept); it leaves when the expiry finds it oldest, or as the oldest.
        self._recent: OrderedDict[_MergeKey, ServerTransaction | _Record] = OrderedDict()
        self._merge_records = merge_records
        # The events queued since the last pop_events(), oldest first. A driver may test
        # it (empty or not) to skip a pop_events() call that would return nothing.
        self.events: list[Event] = []
        self._clients: dict[str, ClientTransaction] = {}  # by _client_key()
        # Most of them again by the text of their request's top Via as sent (see
        # :meth:`receive_own_response`; one per text: an INVITE's CANCEL is not here).
        self._sent_vias: dict[str, ClientTransaction] = {}
        self._servers: dict[tuple[object, ...], dict[str, ServerTransaction]] = {}
        self._server_count = 0  # live server transactions and records
        # Completed non-INVITE server transactions as records, by server key (usually one
        # record per key, kept as it is; a CANCEL's shares its target's key: a tuple of
        # records then), and the same records in the order they were made: Timer J is the
        # same for all, so this is the order of their deadlines.
        self._records: dict[tuple[object, ...], _Record | tuple[_Record, ...]] = {}
        self._record_deadlines: deque[_Record] = deque()
        # Accepted INVITE server transactions as records in the same dict (Timer L is the
        # same for all of them: in order too).
        self._accepted_deadlines: deque[_Record] = deque()
        # The same for Completed non-INVITE client transactions: they only absorb
        # retransmitted final responses until Timer K, so their key is enough: a str
        # (:func:`_client_key`) -> its deadline, and the same keys and deadlines in
        # two parallel queues in order (Timer K is the same for all). Neither holds an
        # object the garbage collector tracks, however many requests wait for Timer K.
        self._client_records: dict[str, float] = {}
        self._client_record_keys: deque[str] = deque()
        self._client_deadlines: deque[float] = deque()
        # (deadline, sequence, timer name, transaction); entries whose sequence is no
        # longer the transaction's current one for that timer are stale and skipped.
        self._heap: list[tuple[float, int, str, Transaction]] = []
        # The first Timer E of non-INVITE client transactions over an unreliable
        # transport, (deadline, sequence, client key) in the order armed, which is their
        # deadlines' (T1 for all): due in the same order among the heap's timers, by
        # (deadline, sequence), as if on it. An entry whose key no longer finds a client
        # transaction queued with that sequence (answered, ended) is skipped. It holds
        # strings and numbers, no transaction: an answered one is not kept for T1.
        self._first_e: deque[tuple[float, int, str]] = deque()
        self._stale = 0  # heap entries whose transaction has terminated
        self._sequence = itertools.count()
        # The earliest deadline armed since the last take_soonest_armed() (inf: none); a
        # driver may read it (take_soonest_armed() only when it is not inf).
        self.soonest_armed = math.inf

    # -- client side -------------------------------------------------------------------------
    def send_request(
        self,
        request: Request,
        now: float,
        *,
        reliable: bool,
        destination: object = None,
        branch: str | None = None,
    ) -> ClientTransaction:
        """Start a client transaction for ``request`` and emit its first :class:`Send`.

        The request must carry a top Via whose branch starts with ``z9hG4bK``. An ACK is
        not a transaction (the TU sends the ACK for a 2xx itself): ValueError. ``branch``:
        that branch when the caller has just written the top Via itself, with no
        ``received`` and no ``rport`` value (the Via is then not read).
        """
        if request.method == "ACK":
            raise ValueError("ACK does not start a client transaction; send it directly")
        via = None  # read only when the caller did not give the branch
        if branch is None:
            via = request.headers.typed.get("top_via")  # read already: cached
            if via is None:
                via = request.top_via
            branch = via.params.get("branch")
        if branch is None or not branch.startswith(MAGIC_COOKIE):
            raise ValueError(f"request needs a top Via branch starting with {MAGIC_COOKIE}")
        key = f"{request.method} {branch}"  # _client_key(), without a call
        if key in self._clients or key in self._client_records:
            raise ValueError(f"a {request.method} client transaction with branch {branch} exists")
        if request.method == "INVITE":
            transaction: ClientTransaction = InviteClientTransaction(
                self, request, branch, key, reliable, destination, _S.CALLING
            )
        else:
            transaction = NonInviteClientTransaction(
                self, request, branch, key, reliable, destination, _S.TRYING
            )
        self._clients[key] = transaction
        # Its responses matched by text when they carry this Via and CSeq back unchanged:
        # a CSeq that parses to this method at once (parse_cseq's own test), a Via with
        # nothing filled in (no ``received``, no ``rport`` value: nothing to learn from).
        first = request.headers.first
        via_text = first.get("via")
        if via_text is not None and via_text not in self._sent_vias:
            cseq_text = first.get("cseq", "")
            number, _, method = cseq_text.partition(" ")
            if (
                method == request.method
                and len(number) < 10
                and number.isdigit()
                and number.isascii()
                and (via is None or ("received" not in via.params and not via.params.get("rport")))
            ):
                self._sent_vias[via_text] = transaction
                transaction._sent_via, transaction._sent_cseq = via_text, cseq_text
        transaction._start(now)
        return transaction

    def receive_own_response(self, response: Response, now: float) -> ClientTransaction | None:
        """Hand ``response`` to the client transaction whose request it carries back
        unchanged, matched by text: its top Via field is, to the character, the one the
        request was sent with (the same branch, 17.1.3) and so is its CSeq (the same
        method), and that Via had nothing filled in (no ``received``, no ``rport`` value):
        neither is parsed. None, and nothing done, for any other response (a Via a proxy
        or the UAS changed, a retransmission after the final response, a stray): hand it
        to :meth:`receive_response`, which matches by the parsed values. A response this
        matches, receive_response would match to the same transaction."""
        first = response.headers.first
        transaction = self._sent_vias.get(first.get("via"))  # type: ignore[arg-type]
        if transaction is None or first.get("cseq") != transaction._sent_cseq:
            return None
        transaction._on_response(response, now)
        return transaction

    def receive_response(self, response: Response, now: float) -> ClientTransaction | None:
        """Hand a response to the client transaction it matches (17.1.3), if any.

        Matching is by the top Via branch and the CSeq method; an unmatched response is
        emitted as :class:`StrayResponse`. Raises ParseError when Via or CSeq is unreadable.
        """
        via = response.headers.typed.get("top_via")  # read on receipt: cached
        if via is None:
            via = response.top_via
        branch = via.params.get("branch")
        transaction = None
        if branch is not None:
            key = f"{response.cseq.method} {branch}"  # _client_key(), without a call
            transaction = self._clients.get(key)
            if transaction is None and key in self._client_records:
                return None  # a retransmitted final: Completed absorbs it (Timer K runs)
        if transaction is None:
            self.events.append(StrayResponse(response))
            return None
        transaction._on_response(response, now)
        return transaction

    # -- server side -------------------------------------------------------------------------
    def receive_request(
        self,
        request: Request,
        now: float,
        reliable: bool,
        destination: object = None,
        route: str | None = None,
    ) -> ServerTransaction | None:
        """Hand a request to its server transaction (17.2.3) or create one.

        A retransmission is absorbed (the last response, if any, is sent again) and its
        transaction returned; one matching a record is answered with :class:`Resend` and
        None is returned. A new request creates a transaction and emits
        :class:`RequestReceived` (an INVITE also sends 100 Trying), unless it is a merged
        request (8.2.2.2): that one's new transaction sends 482 and the TU is not told; or
        unless the layer holds ``max_server_transactions`` already: then it emits
        :class:`RequestRefused` (a 503) and returns None. An ACK completes the non-2xx
        INVITE transaction it matches; otherwise it is emitted as :class:`AckReceived` and
        None is returned unless it matched an Accepted INVITE transaction. Raises
        ParseError when the headers matching needs are unreadable. ``route`` is kept as
        the transaction's ``route`` (see :class:`Resend`).
        """
        method = request.method
        via = request.headers.typed.get("top_via")  # stamped on receipt: cached
        if via is None:
            via = request.top_via
        branch = via.params.get("branch")
        key: tuple[object, ...] | None = None
        if branch is not None and branch.startswith(MAGIC_COOKIE):
            # _rfc3261_key(via), inline: the usual request (branch and sent-by, 17.2.3),
            # made once here for every method (an ACK's match reads it too)
            port = via.port
            if port is None:
                port = 5061 if via.transport == "TLS" else 5060
            host = via.host
            lowered = host.lower()  # a new string even when nothing changes: keep one
            if lowered != host:
                host = lowered
            if (
                type(destination) is tuple
                and len(destination) == 2
                and destination[0] == host
                and destination[1] == port
            ):
                # Sent from where the Via says (the usual; ``destination`` is then the
                # engine's source address): the source's own str and int, which every
                # request from there shares (the transport hands on one tuple per peer),
                # rather than the Via's copies, kept by the key for Timer J. Equal values:
                # the same key.
                host, port = destination[0], destination[1]
            key = ("3261", branch, host, port)
        if method == "ACK":
            invite = self._match_ack(request, key)
            if invite is not None:
                invite._on_ack(request, now)
                return invite
            self.events.append(AckReceived(request, None))
            return None
        if key is None:
            key = _server_key(request, request.to.tag)
        group = self._servers.get(key)
        if group is not None and (transaction := group.get(method)) is not None:
            transaction._on_retransmission(now)
            return transaction
        if key in self._records:
            for record in self._records_at(key):
                if record[0] == method:
                    data = record[1]
                    if isinstance(data, bytes):
                        self.events.append(Resend(data, record[2], record[3]))
                    # else an Accepted INVITE's: absorbed (the TU resends the 2xx itself)
                    return None
        bound = self.max_server_transactions  # self._full(request), called only near the bound
        if bound is not None and self._server_count >= bound and self._full(request):
            self._refuse(request, destination)
            return None
        kind = InviteServerTransaction if method == "INVITE" else NonInviteServerTransaction
        state = _S.PROCEEDING if method == "INVITE" else _S.TRYING
        transaction = kind(self, request, branch or "", key, reliable, destination, state, route)
        if group is None:
            self._servers[key] = {method: transaction}
        else:
            group[method] = transaction
        self._server_count += 1
        # _merge_key(request), inline for the usual request (the views the receive path
        # parsed, no To tag): the function for anything else
        typed = request.headers.typed
        to, from_, cseq = typed.get("to"), typed.get("from"), typed.get("cseq")
        merge_key: _MergeKey | None
        call_id = request.headers.first.get("call-id")
        if (
            to is not None
            and from_ is not None
            and cseq is not None
            and call_id
            and method != "CANCEL"
            and "tag" not in to.params
            and " " not in call_id
            and "\t" not in call_id
        ):  # (the Call-ID read as request.call_id reads it: first value, no blank)
            merge_key = (from_.params.get("tag"), call_id, cseq.seq, method)
        else:
            merge_key = _merge_key(request)
        recent = self._recent
        merged = False
        if merge_key is not None and merge_key in recent:
            earlier = recent[merge_key]
            if type(earlier) is tuple and not self._record_kept(earlier):
                del recent[merge_key]  # its record has expired: no longer in progress
            else:
                merged = True
        if merged:
            # Merged: the original's transaction (or its record) is live (entries leave
            # with it) and this request did not match it. Its own transaction absorbs its
            # retransmissions.
            transaction._start(now, to_tu=False)
            loop = make_response(request, 482, to_tag=_loop_tag(request))
            transaction.respond(loop, now)
            return transaction
        if merge_key is not None:
            transaction._merge_key = merge_key
            recent[merge_key] = transaction
            if len(recent) > self._merge_records:
                oldest = recent.popitem(last=False)[1]
                if isinstance(oldest, ServerTransaction):
                    oldest._merge_key = None
        if kind is NonInviteServerTransaction:  # its _start(now), inline: the TU is told
            self.events.append(RequestReceived(transaction, request))
        else:
            transaction._start(now)
        return transaction

    def _full(self, request: Request) -> bool:
        """True when a new server transaction for ``request`` would pass the bound. A CANCEL
        of a live INVITE still gets one: it ends a transaction, and calls must stay
        endable under load."""
        bound = self.max_server_transactions
        if bound is None or self._server_count < bound:
            return False
        return not (request.method == "CANCEL" and self.find_transaction_to_cancel(request))

    def _refuse(self, request: Request, destination: object) -> None:
        """Answer 503 with Retry-After, statelessly (RFC 3261 21.5.4; 8.2.6.2: a To tag)."""
        self.requests_refused += 1
        response = make_response(request, 503, to_tag=_stateless_tag(request))
        response.headers["Retry-After"] = str(self.retry_after)
        self.events.append(RequestRefused(request, response, destination))

    def find_transaction_to_cancel(self, cancel: Request) -> ServerTransaction | None:
        """The server transaction a CANCEL targets (9.2): the 17.2.3 match, method ignored.

        A target that is a record now (a non-INVITE completed over UDP, Timer J running,
        or an INVITE answered with a 2xx, Timer L running) still exists for 9.2 (the
        CANCEL gets a 200 and has no effect): it is returned as a Terminated stand-in whose
        ``last_response`` is its final response (an INVITE's: a response with the 2xx's
        status, built from the CANCEL: the record keeps no more).
        """
        key = _server_key(cancel, cancel.to.tag if _is_legacy(cancel) else None)
        for method, transaction in self._servers.get(key, {}).items():
            if method not in ("CANCEL", "ACK"):
                return transaction
        for method, data, destination, route, _, _ in self._records_at(key):
            if method not in ("CANCEL", "ACK"):
                kind = InviteServerTransaction if method == "INVITE" else NonInviteServerTransaction
                stand_in = kind(
                    self,
                    cancel,
                    cancel.top_via.branch or "",
                    key,
                    reliable=False,
                    destination=destination,
                    state=_S.TERMINATED,
                )
                stand_in.method, stand_in.route = method, route
                stand_in._request = None
                if isinstance(data, bytes):
                    final = parse_message(data)
                    stand_in.last_response = final if isinstance(final, Response) else None
                else:  # an Accepted INVITE: its 2xx, with the To of the INVITE (9.1)
                    stand_in.last_response = make_response(cancel, data)
                return stand_in
        return None

    def _match_ack(
        self, ack: Request, key: tuple[object, ...] | None
    ) -> InviteServerTransaction | None:
        """The INVITE server transaction ``ack`` completes (17.2.3): by ``key``, the ACK's
        RFC 3261 key (None for an RFC 2543 ACK: matched by its To tag)."""
        if key is not None:
            group = self._servers.get(key)
            found = None if group is None else group.get("INVITE")
            return found if isinstance(found, InviteServerTransaction) else None
        # RFC 2543: the ACK carries the To tag of the response, which the INVITE had only
        # if it was sent inside a dialog; the response's To tag must match it.
        tag = ack.to.tag
        for invite_tag in (tag, None) if tag is not None else (None,):
            found = self._servers.get(_server_key(ack, invite_tag), {}).get("INVITE")
            if not isinstance(found, InviteServerTransaction):
                continue
            response = found.last_response
            if response is not None and response.to.tag == tag:
                return found
        return None

    def transport_error(self, transaction: Transaction, now: float) -> None:
        """The transport failed to send for ``transaction`` (17.1.4, 17.2.4).

        Emits :class:`TransportFailed` (the TU treats it like a 503 / a lost response)
        and terminates the transaction.
        """
        if transaction.terminated or transaction._layer is not self:
            return
        self.events.append(TransportFailed(transaction))
        self._terminate(transaction)

    def terminate(self, transaction: Transaction) -> None:
        """Abandon ``transaction`` now (e.g. an INVITE with no final response 64*T1 after
        its CANCEL, RFC 3261 9.1). Emits only :class:`TransactionTerminated`."""
        if transaction._layer is self:
            self._terminate(transaction)

    def next_deadline(self, record_slack: float = 0.0) -> float | None:
        """When the earliest armed timer fires, or None when none is armed.

        ``record_slack``: the first record (Timer J, K or L) is told that much later (see
        :data:`RECORD_SLACK`), so that a driver sleeping until then ends every record due
        within that span at once; :meth:`handle_timers` ends exactly those due."""
        heap = self._heap
        first = self._record_deadlines[0][4] + record_slack if self._record_deadlines else None
        if self._accepted_deadlines:
            accepted = self._accepted_deadlines[0][4] + record_slack
            first = accepted if first is None or accepted < first else first
        if self._client_deadlines:
            client = self._client_deadlines[0] + record_slack
            first = client if first is None or client < first else first
        if self._first_e:
            head = self._first_e_head()
            if head is not None and (first is None or head[0] < first):
                first = head[0]
        while heap:
            _, sequence, timer, transaction = heap[0]
            if transaction._timers.get(timer) == sequence:
                deadline = heap[0][0]
                return deadline if first is None or deadline < first else first
            heapq.heappop(heap)
            self._stale = max(0, self._stale - 1)
        return first

    def handle_timers(self, now: float) -> None:
        """Fire every timer due at ``now``, earliest first."""
        self._expire_records(now)
        heap = self._heap
        queue = self._first_e
        while True:
            head = self._first_e_head() if queue else None
            # The queue's first, when due before the heap's first by (deadline, sequence).
            if (
                head is not None
                and head[0] <= now
                and (
                    not heap
                    or head[0] < heap[0][0]
                    or (head[0] == heap[0][0] and head[1] < heap[0][1])
                )
            ):
                queue.popleft()
                client = self._clients[head[2]]
                client._queued = -1
                client._fire("E", now)
                continue
            if not heap or heap[0][0] > now:
                return
            _, sequence, timer, transaction = heapq.heappop(heap)
            if transaction._timers.get(timer) != sequence:
                self._stale = max(0, self._stale - 1)
                continue
            del transaction._timers[timer]
            transaction._fire(timer, now)

    def _first_e_head(self) -> tuple[float, int, str] | None:
        """The first entry of the queue of first Timer E whose transaction still waits for
        it (the entries before it are dropped), or None."""
        queue, clients = self._first_e, self._clients
        while queue:
            head = queue[0]
            transaction = clients.get(head[2])
            if transaction is not None and transaction._queued == head[1]:
                return head
            queue.popleft()
        return None

    def pop_events(self) -> list[Event]:
        """Every event queued since the last call, oldest first."""
        events = self.events
        if not events:
            return []
        self.events = []  # handed over whole: no copy
        return events

    def __len__(self) -> int:
        return len(self._clients) + len(self._client_records) + self._server_count

    # -- internals ---------------------------------------------------------------------------
    def _record(self, transaction: ServerTransaction, data: bytes, deadline: float) -> None:
        """``transaction`` entered Completed (non-INVITE, unreliable transport) and sent
        ``data``: keep a record in its place until Timer J (``deadline``), and end it."""
        self._keep_record(transaction, data, deadline, self._record_deadlines)
        # The object ends here (its record is the transaction now): counted once, by it.
        transaction.state = _S.TERMINATED
        transaction._request = None
        transaction.last_response = None
        self.events.append(TransactionTerminated(transaction))

    def _accept(self, transaction: ServerTransaction, status: int, deadline: float) -> None:
        """An INVITE ``transaction`` entered Accepted with a ``status`` response: keep a
        record of it in its place until Timer L (``deadline``). The object leaves the layer
        (counted once, by the record) but is not ended: it passes the TU's 2xx
        retransmissions until then."""
        self._dropped_timers(len(transaction._timers))
        transaction._timers.clear()
        self._keep_record(transaction, status, deadline, self._accepted_deadlines)

    def _keep_record(
        self,
        transaction: ServerTransaction,
        data: bytes | int,
        deadline: float,
        deadlines: deque[_Record],
    ) -> None:
        """Put a record of ``transaction`` in its place in the layer, due at ``deadline``
        (appended to ``deadlines``, which stay in order: one timer length per queue)."""
        key, method = transaction._key, transaction.method
        group = self._servers.get(key)
        if group is not None and group.get(method) is transaction:
            del group[method]
            if not group:
                del self._servers[key]
        record: _Record = (method, data, transaction.destination, transaction.route, deadline, key)
        merge_key = transaction._merge_key
        if merge_key is not None:
            transaction._merge_key = None
            if self._recent.get(merge_key) is transaction:
                self._recent[merge_key] = record  # same place in the order; still merges
        records = self._records
        records[key] = (*self._records_at(key), record) if key in records else record
        # self._armed(deadline), inline, for the first record only: a later one is due
        # after it (same Timer J or L for all), so it never makes the next deadline sooner.
        if not deadlines and deadline < self.soonest_armed:
            self.soonest_armed = deadline
        deadlines.append(record)

    def _record_kept(self, record: _Record) -> bool:
        """Whether ``record`` is still kept (Timer J or L has not ended it)."""
        found = self._records.get(record[5])
        if found is record:
            return True
        if found is None or isinstance(found[0], str):
            return False
        return any(entry is record for entry in found)

    def _records_at(self, key: tuple[object, ...]) -> tuple[_Record, ...]:
        """The records kept under ``key`` (none, one or a few)."""
        found = self._records.get(key)
        if found is None:
            return ()
        if isinstance(found[0], str):  # one record, kept as it is
            return (found,)
        return found

    def _record_client(self, transaction: ClientTransaction, deadline: float) -> None:
        """A non-INVITE client ``transaction`` entered Completed over an unreliable
        transport: only its key stays, until Timer K (``deadline``); the object ends."""
        key = transaction._match
        if self._clients.get(key) is transaction:
            del self._clients[key]
        sent = transaction._sent_via
        if sent is not None:  # self._forget_sent(transaction), inline
            del self._sent_vias[sent]
            transaction._sent_via = None
        queue = self._first_e
        if queue and queue[0][1] == transaction._queued:
            queue.popleft()  # its first Timer E, first in the queue (the oldest answered)
        self._client_records[key] = deadline
        self._client_record_keys.append(key)
        if not self._client_deadlines:  # a later record is due after the first (Timer K)
            self._armed(deadline)
        self._client_deadlines.append(deadline)
        transaction.state = _S.TERMINATED
        timers = transaction._timers
        if timers:  # (none, the usual: its first Timer E was queued, off the heap)
            self._dropped_timers(len(timers))
            timers.clear()
        transaction._request = None
        transaction.last_response = None
        self.events.append(TransactionTerminated(transaction))

    def _forget_sent(self, transaction: ClientTransaction) -> None:
        """``transaction`` leaves: no response is matched to it by text any more."""
        sent = transaction._sent_via
        if sent is not None:
            del self._sent_vias[sent]
            transaction._sent_via = None

    def _expire_records(self, now: float) -> None:
        """Timer J and K of the records due at ``now``: they leave the layer."""
        deadlines, keys = self._client_deadlines, self._client_record_keys
        client_records = self._client_records
        while deadlines and deadlines[0] <= now:
            deadline, client_key = deadlines.popleft(), keys.popleft()
            if client_records.get(client_key) == deadline:
                del client_records[client_key]
        self._expire_server_records(self._record_deadlines, now)
        self._expire_server_records(self._accepted_deadlines, now)

    def _expire_server_records(self, deadlines: deque[_Record], now: float) -> None:
        records = self._records
        expired = 0
        while deadlines and deadlines[0][4] <= now:
            record = deadlines.popleft()
            key = record[5]
            found = records.get(key)
            if found is record:  # the usual: the only record under its key
                del records[key]
            elif found is not None:  # a CANCEL's shares its target's key: a few records
                kept = tuple(entry for entry in self._records_at(key) if entry is not record)
                if len(kept) > 1:
                    records[key] = kept
                elif kept:
                    records[key] = kept[0]
                else:
                    del records[key]
            expired += 1
        if expired:
            self._server_count -= expired
            self._forget_expired_records()

    def _forget_expired_records(self) -> None:
        """Take the entries of expired records out of the record of recent requests, the
        oldest first (about the order in which records expire), up to the first record
        still kept: one behind it stays until a later expiry (it merges nothing meanwhile).
        The entries of live transactions are passed over (they leave with them)."""
        recent = self._recent
        gone = []
        for merge_key, earlier in recent.items():
            if type(earlier) is tuple:
                if self._record_kept(earlier):
                    break
                gone.append(merge_key)
        for merge_key in gone:
            del recent[merge_key]

    def _arm(self, transaction: Transaction, timer: str, deadline: float) -> None:
        sequence = next(self._sequence)
        transaction._timers[timer] = sequence
        heapq.heappush(self._heap, (deadline, sequence, timer, transaction))
        if deadline < self.soonest_armed:  # self._armed(deadline), inline
            self.soonest_armed = deadline

    def _armed(self, deadline: float) -> None:
        if deadline < self.soonest_armed:
            self.soonest_armed = deadline

    def take_soonest_armed(self) -> float:
        """The earliest deadline armed (timer or record) since the last call (inf: none).

        The timers' driver, sleeping until :meth:`next_deadline`, needs waking only when
        this is earlier; disarmed timers never make the next deadline earlier."""
        soonest = self.soonest_armed
        self.soonest_armed = math.inf
        return soonest

    def _dropped_timers(self, count: int) -> None:
        """Count heap entries of disarmed timers; compact the heap when they dominate, or
        they would keep ended transactions (and their messages) alive until each came due."""
        self._stale += count
        if self._stale > 64 and self._stale * 2 > len(self._heap):
            self._heap[:] = [e for e in self._heap if e[3]._timers.get(e[2]) == e[1]]
            heapq.heapify(self._heap)
            self._stale = 0

    def _terminate(self, transaction: Transaction) -> None:
        if transaction.state is _S.TERMINATED:
            return
        transaction.state = _S.TERMINATED
        dropped = len(transaction._timers)
        transaction._timers.clear()
        self._dropped_timers(dropped)
        if isinstance(transaction, ClientTransaction):
            key = transaction._match
            if self._clients.get(key) is transaction:
                del self._clients[key]
            self._forget_sent(transaction)
        elif isinstance(transaction, ServerTransaction):
            group = self._servers.get(transaction._key)
            if group is not None and group.get(transaction.method) is transaction:
                del group[transaction.method]
                self._server_count -= 1
                if not group:
                    del self._servers[transaction._key]
            merge_key = transaction._merge_key
            if merge_key is not None:
                transaction._merge_key = None
                if self._recent.get(merge_key) is transaction:
                    del self._recent[merge_key]
        self.events.append(TransactionTerminated(transaction))


__all__ = [
    "MAGIC_COOKIE",
    "MERGE_RECORDS",
    "RECORD_SLACK",
    "TRYING_DELAY",
    "AckReceived",
    "ClientTransaction",
    "Event",
    "InviteClientTransaction",
    "InviteServerTransaction",
    "NonInviteClientTransaction",
    "NonInviteServerTransaction",
    "RequestReceived",
    "RequestRefused",
    "Resend",
    "ResponseReceived",
    "Send",
    "ServerTransaction",
    "StrayResponse",
    "Transaction",
    "TransactionLayer",
    "TransactionState",
    "TransactionTerminated",
    "TransactionTimeout",
    "TransportFailed",
    "final_response_bytes",
    "make_ack_for_non2xx",
    "make_response",
]
