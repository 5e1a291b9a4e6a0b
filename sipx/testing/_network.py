"""An in-memory datagram network with seeded loss, duplication, reordering and delay."""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, Literal, NamedTuple, TypeVar

import trio

from .._core.message import Request, Response
from .._core.parser import parse_message
from .._errors import ParseError, TransportError
from .._trio.lifetime import Lifetime, task_nursery

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger("sipx.testing")

Address = tuple[str, int]
"""A (host, port) pair; the memory network has no DNS, hosts are plain strings."""

MessageHandler = Callable[[bytes, Address, "MemoryTransport"], None]
Fate = Literal["delivered", "lost", "duplicated", "unreachable"]

_WILDCARDS = ("0.0.0.0", "::", "")
_FIRST_EPHEMERAL_PORT = 40_000
MAX_DATAGRAM = 65_507  # the largest UDP/IPv4 payload

M = TypeVar("M", Request, Response, Request | Response)


class Datagram(NamedTuple):
    """One send on the network, as recorded in :attr:`MemoryNetwork.log`.

    ``time`` is the ``trio.current_time()`` of the send; ``fate`` says what the network
    decided: ``"delivered"`` (scheduled for delivery once), ``"duplicated"`` (delivered
    twice), ``"lost"`` (random loss, :meth:`MemoryNetwork.drop_next` or the ``filter``) or
    ``"unreachable"`` (nothing was bound at the destination).
    """

    time: float
    source: Address
    destination: Address
    data: bytes
    fate: Fate


class Delivery(NamedTuple):
    """One datagram handed to a receiver, as recorded in :attr:`MemoryNetwork.deliveries`."""

    time: float
    source: Address
    destination: Address
    data: bytes


class Captured(NamedTuple, Generic[M]):
    """A parsed SIP message seen on the wire (see :meth:`MemoryNetwork.messages`)."""

    time: float
    source: Address
    destination: Address
    message: M
    fate: Fate


@dataclass(order=True)
class _Pending:
    at: float
    seq: int
    source: Address = field(compare=False)
    data: bytes = field(compare=False)
    cancelled: bool = field(default=False, compare=False)


@dataclass
class _DropRule:
    remaining: int
    to: Address | None
    source: Address | None
    where: Callable[[Request | Response], bool] | None

    def matches(self, source: Address, destination: Address, data: bytes) -> bool:
        if self.to is not None and self.to != destination:
            return False
        if self.source is not None and self.source != source:
            return False
        if self.where is not None:
            try:
                message = parse_message(data)
            except ParseError:
                return False
            return bool(self.where(message))
        return True


class MemoryTransport:
    """A transport on a :class:`MemoryNetwork`; made by :meth:`MemoryNetwork.transport`.

    It has the interface :class:`sipx.AsyncClient` expects of a transport: ``name``,
    ``reliable``, ``local_address``, ``send_nowait(data, address)`` and
    ``serve(host, port, *, task_status)``. ``serve`` binds the address (port 0 picks a free
    one; an address in use raises :class:`sipx.TransportError`), reports it through
    ``task_status.started`` and then delivers incoming datagrams, in order of arrival time,
    by calling ``on_message(data, source, transport)`` until it is cancelled. Datagrams still
    in flight to a transport that stops are dropped.
    """

    def __init__(self, network: MemoryNetwork, on_message: MessageHandler, name: str) -> None:
        self.network = network
        self.name = name
        self.reliable = name != "UDP"
        self._on_message = on_message
        self._address: Address | None = None
        self._running = False
        self._queue: list[_Pending] = []
        self._wakeup = trio.Event()
        self._held: dict[Address, _Pending] = {}  # per source: a datagram held back
        self._last_at: dict[Address, float] = {}  # per source: last arrival (reliable links)

    @property
    def local_address(self) -> Address:
        """The bound (host, port), still reported after ``serve`` ended (like a closed
        socket's); ``("0.0.0.0", 0)`` before the first bind."""
        return self._address if self._address is not None else ("0.0.0.0", 0)

    @property
    def running(self) -> bool:
        """True while ``serve`` runs (the address is bound)."""
        return self._running

    @property
    def source_address(self) -> Address:
        """The address datagrams from this transport come from (a wildcard bind uses
        :attr:`MemoryNetwork.default_host`)."""
        host, port = self.local_address
        if host in _WILDCARDS:
            host = self.network.default_host
        return (host, port)

    async def serve(
        self,
        host: str,
        port: int,
        *,
        task_status: TaskStatus[Address] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Bind ``(host, port)`` and deliver incoming datagrams until cancelled."""
        if self._running:
            raise RuntimeError("this memory transport is already serving")
        self._address = self.network._bind(self, host, port)
        self._running = True
        try:
            task_status.started(self._address)
            await self._delivery_loop()
        finally:
            self.network._unbind(self)
            self._running = False
            self._queue.clear()
            self._held.clear()

    def has_connection(self, address: Address) -> bool:
        """Datagrams have no connections."""
        return False

    def keep_alive(self, address: Address, enabled: bool = True) -> None:
        """The memory network has no connection to keep."""

    def send_nowait(self, data: bytes, address: Address) -> None:
        """Send one datagram (never blocks); TransportError when not serving."""
        if not self._running:
            raise TransportError(f"memory {self.name} transport is not running")
        if not self.reliable and len(data) > MAX_DATAGRAM:
            raise TransportError(
                f"{self.name} send to {address[0]}:{address[1]} failed: "
                f"datagram of {len(data)} bytes is too long"
            )
        self.network._send(self, bytes(data), (str(address[0]), int(address[1])))

    # -- internals ------------------------------------------------------------------------
    def _push(self, item: _Pending) -> None:
        heapq.heappush(self._queue, item)
        self._wakeup.set()

    async def _delivery_loop(self) -> None:
        while True:
            queue = self._queue
            if queue and queue[0].at <= trio.current_time():
                item = heapq.heappop(queue)
                if not item.cancelled:
                    if self._held.get(item.source) is item:
                        del self._held[item.source]
                    self._deliver(item)
                # One scheduler pass per datagram, as a real socket would take.
                await trio.lowlevel.checkpoint()
                continue
            deadline = queue[0].at if queue else math.inf
            with trio.move_on_at(deadline):
                await self._wakeup.wait()
            self._wakeup = trio.Event()

    def _deliver(self, item: _Pending) -> None:
        destination = self.local_address
        self.network.deliveries.append(
            Delivery(trio.current_time(), item.source, destination, item.data)
        )
        try:
            self._on_message(item.data, item.source, self)
        except Exception:
            log.exception("receiver at %s:%s failed on a datagram", *destination)

    def __repr__(self) -> str:
        return f"<MemoryTransport {self.name} {self.local_address[0]}:{self.local_address[1]}>"


class MemoryNetwork:
    """An in-memory datagram network between ``(host, port)`` addresses, for tests.

    ``loss``, ``duplicate`` and ``reorder`` are probabilities applied to each datagram sent
    by a ``"UDP"`` transport; ``delay`` (fixed) and ``jitter`` (uniform extra, 0 to
    ``jitter``) are seconds of trio time. A reordered datagram is held back until the next
    datagram on the same link (same source and destination) has been delivered, and is
    delivered right after it; if none follows within ``reorder_delay`` seconds it is
    delivered then. Transports named ``"TCP"`` or ``"TLS"`` make reliable links: no loss,
    duplication or reordering (scripted drops still apply), delivery in order after ``delay``.

    Every random choice comes from one ``random.Random(seed)``, drawn in a fixed pattern per
    datagram, so a run that sends the same datagrams in the same order sees the same fates.
    (trio may order tasks that are ready at the same instant differently from run to run.)

    Deliveries run in the receiving transport's ``serve`` task: the network needs no task
    or nursery of its own, and delivery never happens inside ``send_nowait``.

    Records: :attr:`log` (every send, with its fate), :attr:`deliveries` (every datagram
    handed to a receiver, at the time it was); :meth:`messages`, :meth:`requests`,
    :meth:`responses` and :meth:`sent_to` return them parsed.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        loss: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        delay: float = 0.0,
        jitter: float = 0.0,
        reorder_delay: float = 0.1,
        default_host: str = "127.0.0.1",
    ) -> None:
        for name, value in (("loss", loss), ("duplicate", duplicate), ("reorder", reorder)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1], not {value!r}")
        for name, value in (("delay", delay), ("jitter", jitter), ("reorder_delay", reorder_delay)):
            if value < 0:
                raise ValueError(f"{name} must not be negative, not {value!r}")
        self.seed = seed
        self.random = random.Random(seed)
        self.loss = loss
        self.duplicate = duplicate
        self.reorder = reorder
        self.delay = delay
        self.jitter = jitter
        self.reorder_delay = reorder_delay
        self.default_host = default_host
        self.log: list[Datagram] = []
        self.deliveries: list[Delivery] = []
        self.filter: Callable[[Address, Address, bytes], bool] | None = None
        """``filter(source, destination, data)``: return False to drop the datagram."""
        self._bound: dict[Address, MemoryTransport] = {}
        self._drop_rules: list[_DropRule] = []
        self._sequence = itertools.count()
        self._next_port = _FIRST_EPHEMERAL_PORT

    # -- endpoints ----------------------------------------------------------------------------
    def transport(self, on_message: MessageHandler, name: str = "UDP") -> MemoryTransport:
        """A new, unbound transport; ``on_message(data, source, transport)`` receives.

        ``name`` is ``"UDP"`` (unreliable: loss, duplication, reordering apply), ``"TCP"``
        or ``"TLS"`` (a reliable, ordered, lossless link; no encryption in memory).
        """
        kind = name.upper()
        if kind not in ("UDP", "TCP", "TLS"):
            raise ValueError(f"unsupported memory transport {name!r}: use 'UDP', 'TCP' or 'TLS'")
        return MemoryTransport(self, on_message, kind)

    def socket(self, address: Address = ("127.0.0.1", 0)) -> MemorySocket:
        """A raw endpoint bound to ``address``: ``async with network.socket(...) as sock``."""
        return MemorySocket(self, address)

    def is_bound(self, address: Address) -> bool:
        return address in self._bound

    @property
    def bound_addresses(self) -> list[Address]:
        """Addresses some transport is serving on now."""
        return list(self._bound)

    # -- scripted losses ------------------------------------------------------------------------
    def drop_next(
        self,
        n: int = 1,
        *,
        to: Address | None = None,
        source: Address | None = None,
        where: Callable[[Request | Response], bool] | None = None,
    ) -> None:
        """Lose the next ``n`` datagrams that match (all given conditions must hold).

        ``where`` receives the parsed message (unparseable datagrams never match it), e.g.
        ``where=lambda m: isinstance(m, Response) and m.status_code == 200``.
        """
        if n < 1:
            raise ValueError("n must be at least 1")
        self._drop_rules.append(_DropRule(n, to, source, where))

    # -- the log --------------------------------------------------------------------------------
    def messages(
        self,
        *,
        source: Address | None = None,
        destination: Address | None = None,
        fate: Fate | None = None,
    ) -> list[Captured[Request | Response]]:
        """Every parseable datagram sent (whatever its fate unless ``fate`` is given)."""
        found: list[Captured[Request | Response]] = []
        for entry in self.log:
            if source is not None and entry.source != source:
                continue
            if destination is not None and entry.destination != destination:
                continue
            if fate is not None and entry.fate != fate:
                continue
            try:
                message = parse_message(entry.data)
            except ParseError:
                continue
            found.append(Captured(entry.time, entry.source, entry.destination, message, entry.fate))
        return found

    def requests(
        self,
        method: str | None = None,
        *,
        source: Address | None = None,
        destination: Address | None = None,
        fate: Fate | None = None,
    ) -> list[Captured[Request]]:
        """Requests sent on the wire (retransmissions included), optionally one method."""
        found: list[Captured[Request]] = []
        for item in self.messages(source=source, destination=destination, fate=fate):
            message = item.message
            if isinstance(message, Request) and (method is None or message.method == method):
                found.append(Captured(item.time, item.source, item.destination, message, item.fate))
        return found

    def responses(
        self,
        status: int | None = None,
        *,
        method: str | None = None,
        source: Address | None = None,
        destination: Address | None = None,
        fate: Fate | None = None,
    ) -> list[Captured[Response]]:
        """Responses sent on the wire; ``method`` matches the CSeq method."""
        found: list[Captured[Response]] = []
        for item in self.messages(source=source, destination=destination, fate=fate):
            message = item.message
            if not isinstance(message, Response):
                continue
            if status is not None and message.status_code != status:
                continue
            if method is not None and message.cseq.method != method:
                continue
            found.append(Captured(item.time, item.source, item.destination, message, item.fate))
        return found

    def sent_to(self, address: Address) -> list[Request | Response]:
        """The parsed messages sent to ``address``, lost ones included, in send order."""
        return [item.message for item in self.messages(destination=address)]

    def clear_log(self) -> None:
        self.log.clear()
        self.deliveries.clear()

    # -- internals ------------------------------------------------------------------------------
    def _lookup(self, address: Address) -> MemoryTransport | None:
        found = self._bound.get(address)
        if found is None:
            for wildcard in _WILDCARDS:
                found = self._bound.get((wildcard, address[1]))
                if found is not None:
                    break
        return found

    def _bind(self, transport: MemoryTransport, host: str, port: int) -> Address:
        if port == 0:
            port = self._free_port(host)
        address = (host, port)
        in_use = [
            bound
            for bound in self._bound
            if bound[1] == port
            and (bound[0] == host or host in _WILDCARDS or bound[0] in _WILDCARDS)
        ]
        if in_use:
            raise TransportError(
                f"cannot bind {transport.name} {host}:{port}: address already in use"
            )
        self._bound[address] = transport
        return address

    def _free_port(self, host: str) -> int:
        ports = {bound[1] for bound in self._bound}
        while self._next_port in ports:
            self._next_port += 1
        port = self._next_port
        self._next_port += 1
        if self._next_port > 65_535:
            self._next_port = _FIRST_EPHEMERAL_PORT
        return port

    def _unbind(self, transport: MemoryTransport) -> None:
        address = transport._address
        if address is not None and self._bound.get(address) is transport:
            del self._bound[address]

    def _send(self, sender: MemoryTransport, data: bytes, destination: Address) -> None:
        now = trio.current_time()
        source = sender.source_address
        # A fixed number of draws per datagram: one datagram's fate never shifts another's.
        rng = self.random
        r_loss, r_duplicate, r_reorder = rng.random(), rng.random(), rng.random()
        jitters = (rng.random() * self.jitter, rng.random() * self.jitter)
        receiver = self._lookup(destination)
        fate: Fate
        copies = 1
        if self._scripted_drop(source, destination, data):
            fate = "lost"
        elif receiver is None:
            fate = "unreachable"
        elif not sender.reliable and r_loss < self.loss:
            fate = "lost"
        elif not sender.reliable and r_duplicate < self.duplicate:
            fate, copies = "duplicated", 2
        else:
            fate = "delivered"
        self.log.append(Datagram(now, source, destination, data, fate))
        if receiver is None or fate == "lost":
            return
        if sender.reliable:
            at = max(now + self.delay + jitters[0], receiver._last_at.get(source, now))
            receiver._last_at[source] = at
            receiver._push(_Pending(at, next(self._sequence), source, data))
            return
        hold = r_reorder < self.reorder
        for copy in range(copies):
            at = now + self.delay + jitters[copy]
            self._schedule(receiver, _Pending(at, next(self._sequence), source, data), hold)
            hold = False

    def _schedule(self, receiver: MemoryTransport, item: _Pending, hold: bool) -> None:
        held = receiver._held.pop(item.source, None)
        receiver._push(item)
        if held is not None and not held.cancelled:
            # Release the held datagram right behind this one (if that is not later anyway).
            if item.at < held.at:
                held.cancelled = True
                receiver._push(_Pending(item.at, next(self._sequence), held.source, held.data))
            return
        if hold:
            item.cancelled = True
            late = _Pending(
                item.at + self.reorder_delay, next(self._sequence), item.source, item.data
            )
            receiver._held[item.source] = late
            receiver._push(late)

    def _scripted_drop(self, source: Address, destination: Address, data: bytes) -> bool:
        if self.filter is not None and not self.filter(source, destination, data):
            return True
        for rule in self._drop_rules:
            if rule.matches(source, destination, data):
                rule.remaining -= 1
                if rule.remaining <= 0:
                    self._drop_rules.remove(rule)
                return True
        return False

    def __repr__(self) -> str:
        return (
            f"<MemoryNetwork seed={self.seed} loss={self.loss} duplicate={self.duplicate} "
            f"reorder={self.reorder} delay={self.delay} jitter={self.jitter}>"
        )


class MemorySocket(Lifetime):
    """A raw datagram endpoint on a :class:`MemoryNetwork` (for sending hand-made bytes).

    ``async with network.socket(("127.0.0.1", 6000)) as sock:`` then ``sock.send(data, to)``
    and ``data, source = await sock.receive()``. Leaving the block unbinds the address.
    """

    _already_running = "this memory socket is already open"

    def __init__(self, network: MemoryNetwork, address: Address, name: str = "UDP") -> None:
        self._requested = address
        self._send_channel, self._receive_channel = trio.open_memory_channel[tuple[bytes, Address]](
            math.inf
        )
        self.transport = network.transport(self._on_message, name)

    @property
    def address(self) -> Address:
        return self.transport.local_address

    def _on_message(self, data: bytes, source: Address, transport: MemoryTransport) -> None:
        self._send_channel.send_nowait((data, source))

    def send(self, data: bytes, address: Address) -> None:
        """Send ``data`` to ``address`` (TransportError when the socket is closed)."""
        self.transport.send_nowait(data, address)

    async def receive(self) -> tuple[bytes, Address]:
        """The next datagram and where it came from."""
        return await self._receive_channel.receive()

    def receive_nowait(self) -> tuple[bytes, Address]:
        """The next datagram already received (trio.WouldBlock if none)."""
        return self._receive_channel.receive_nowait()

    @asynccontextmanager
    async def _lifetime(self) -> AsyncIterator[None]:
        async with task_nursery() as nursery:
            await nursery.start(self.transport.serve, *self._requested)
            yield
