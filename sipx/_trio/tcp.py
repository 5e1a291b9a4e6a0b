"""TCP transport: a listener on the local port and one reused connection per remote.

Incoming connections and outgoing ones share a table keyed by the remote address, so a
response goes back on the connection its request came in on and later requests to the same
peer reuse it. Each connection has a reader task (framed by the core's StreamFramer) and a
writer task fed by a queue; connections idle for ``idle_timeout`` seconds are closed.

Accepted connections are bounded by ``limits`` (:class:`~sipx.Limits`): over
``max_connections`` in all or ``max_connections_per_address`` from one IP address, a new
one is closed at once; one that has not delivered a complete message within
``first_message_timeout`` (its TLS handshake included) is closed, and so is any connection
on which a begun message is not complete within ``message_timeout``. Both are counted
(``connections_refused``, ``connections_timed_out``) and logged at a bounded rate.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from .._core.framer import StreamFramer
from .._errors import ParseError, TransportError
from .._limits import DEFAULT_LIMITS, Limits
from .._log_limit import LogLimiter
from .transport import Address, MessageHandler, family_for

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger("sipx.transport")


class Connection:
    """One connection's remote address, outgoing queue and quiet-time bookkeeping."""

    def __init__(self, remote: Address) -> None:
        self.remote = remote
        self.send_channel, self.receive_channel = trio.open_memory_channel[bytes](math.inf)
        self.last_activity = trio.current_time()
        self.wait: trio.CancelScope | None = None  # the reader's current wait for data
        # An accepted connection's deadline for its first complete message (then None).
        self.first_message: trio.CancelScope | None = None


class TCPTransport:
    name = "TCP"
    reliable = True
    _keepalive = b"\r\n\r\n"  # RFC 5626 4.4.1 double-CRLF ping

    def __init__(
        self,
        on_message: MessageHandler,
        *,
        idle_timeout: float = 300.0,
        keepalive_interval: float = 100.0,
        on_error: Callable[[Address, Exception], None] | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self._on_message = on_message
        self._on_error = on_error
        self._limits = limits
        self._log = LogLimiter(log)
        self._accepted_from: dict[str, int] = {}  # open accepted connections per remote IP
        self.connections_refused = 0  # closed at accept: over a connection limit
        self.connections_timed_out = 0  # closed: first_message_timeout or message_timeout
        self._idle_timeout = idle_timeout
        self._keepalive_interval = keepalive_interval
        self._kept: set[Address] = set()
        self._connections: dict[Address, Connection] = {}
        self._nursery: trio.Nursery | None = None
        self._address: Address = ("0.0.0.0", 0)

    @property
    def local_address(self) -> Address:
        return self._address

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def serve(
        self,
        host: str,
        port: int,
        *,
        task_status: TaskStatus[Address] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        sock = trio.socket.socket(family_for(host), socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            await sock.bind((host, port))
            sock.listen(128)
        except OSError as exc:
            sock.close()
            reason = exc.strerror or exc
            raise TransportError(f"cannot bind {self.name} {host}:{port}: {reason}") from exc
        self._address = sock.getsockname()[:2]
        listener = trio.SocketListener(sock)
        async with listener, trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started(self._address)
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    self._log.log(
                        logging.WARNING, "failed accepts", "%s accept failed: %s", self.name, exc
                    )
                    await trio.sleep(0.1)
                    continue
                try:
                    remote = stream.socket.getpeername()[:2]
                except OSError:  # reset before we looked: nothing to serve
                    await trio.aclose_forcefully(stream)
                    continue
                if not self._admit(remote):
                    await trio.aclose_forcefully(stream)
                    continue
                connection = Connection(remote)
                self._connections[remote] = connection
                nursery.start_soon(self._accepted, connection, stream)

    def keep_alive(self, address: Address, enabled: bool = True) -> None:
        """Keep connections to ``address`` open: a CRLF keep-alive (RFC 5626 4.4.1) after
        ``keepalive_interval`` quiet seconds instead of closing them when idle. For the
        registrar's connection, over which it reaches us (and NATs on the way stay open)."""
        if enabled:
            self._kept.add(address)
        else:
            self._kept.discard(address)
        connection = self._connections.get(address)
        if connection is not None and connection.wait is not None:
            connection.wait.cancel()  # the reader recomputes its deadline

    def has_connection(self, address: Address) -> bool:
        """True while a connection to or from ``address`` is open."""
        return address in self._connections

    def send_nowait(self, data: bytes, address: Address) -> None:
        if self._nursery is None:
            raise TransportError(f"{self.name} transport is not running")
        connection = self._connections.get(address)
        if connection is None:
            connection = Connection(address)
            self._connections[address] = connection
            self._nursery.start_soon(self._connect, connection)
        connection.send_channel.send_nowait(data)

    async def _open_stream(self, host: str, port: int) -> trio.abc.Stream:
        """Connect to ``host:port``; TransportError saying why not."""
        try:
            return await trio.open_tcp_stream(host, port)
        except OSError as exc:
            raise TransportError(
                f"{self.name} connect to {host}:{port} failed: {_connect_failure(exc)}"
            ) from exc

    async def _accept_stream(self, stream: trio.SocketStream, remote: Address) -> trio.abc.Stream:
        """The stream to speak SIP on over an accepted connection (TLS wraps it)."""
        return stream

    async def _connect(self, connection: Connection) -> None:
        try:
            stream = await self._open_stream(*connection.remote)
        except TransportError as error:
            log.info("%s", error)
            self._drop(connection)
            if self._on_error is not None:
                self._on_error(connection.remote, error)
            return
        await self._run(connection, stream, outgoing=True)

    # -- limits on accepted connections (Limits) ------------------------------------------------
    def _admit(self, remote: Address) -> bool:
        """Room for one more accepted connection from ``remote``? (Counted when not.)"""
        limits = self._limits
        from_there = self._accepted_from.get(remote[0], 0)
        if len(self._connections) < limits.max_connections and (
            from_there < limits.max_connections_per_address
        ):
            self._accepted_from[remote[0]] = from_there + 1
            return True
        self.connections_refused += 1
        self._log.log(
            logging.WARNING,
            "connections refused",
            "refusing a %s connection from %s:%s: %d open, %d from that address (limits=)",
            self.name,
            *remote,
            len(self._connections),
            from_there,
        )
        return False

    async def _accepted(self, connection: Connection, stream: trio.SocketStream) -> None:
        """Serve an accepted connection; close it if no complete message arrives within
        ``first_message_timeout`` (the TLS handshake included)."""
        first = trio.CancelScope(deadline=trio.current_time() + self._limits.first_message_timeout)
        connection.first_message = first
        try:
            with first:
                await self._serve_accepted(connection, stream)
        finally:
            count = self._accepted_from.pop(connection.remote[0], 1) - 1
            if count > 0:
                self._accepted_from[connection.remote[0]] = count
        if first.cancelled_caught:
            self.connections_timed_out += 1
            self._log.log(
                logging.INFO,
                "connections timed out",
                "closing %s connection %s:%s: no complete message within %g s",
                self.name,
                *connection.remote,
                self._limits.first_message_timeout,
            )
            self._drop(connection)
            await trio.aclose_forcefully(stream)

    def _delivered(self, connection: Connection) -> None:
        """A complete message arrived: the first-message deadline no longer applies."""
        if connection.first_message is not None:
            connection.first_message.deadline = math.inf
            connection.first_message = None

    async def _serve_accepted(self, connection: Connection, stream: trio.SocketStream) -> None:
        try:
            secured = await self._accept_stream(stream, connection.remote)
        except TransportError as error:
            self._log.log(logging.INFO, "failed connections", "%s", error)
            self._drop(connection)
            await trio.aclose_forcefully(stream)
            return
        await self._run(connection, secured, outgoing=False)

    async def _run(
        self, connection: Connection, stream: trio.abc.Stream, *, outgoing: bool
    ) -> None:
        try:
            async with stream, trio.open_nursery() as nursery:
                if await self._speak(connection, stream, nursery, outgoing=outgoing):
                    # Unframeable input: let the writer send what is queued (the 400), briefly;
                    # later messages to this address need a new connection.
                    self._drop(connection)
                    nursery.cancel_scope.deadline = trio.current_time() + 1.0
                else:
                    nursery.cancel_scope.cancel()
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as group:
            # A reset connection (or TLS cut without close_notify) ends this connection
            # only; raised inside the nursery, it arrives in an exception group.
            reason = group.exceptions[0]
            log.debug("%s connection %s closed: %r", self.name, connection.remote, reason)
        finally:
            self._drop(connection)

    async def _speak(
        self,
        connection: Connection,
        stream: trio.abc.Stream,
        nursery: trio.Nursery,
        *,
        outgoing: bool,
    ) -> bool:
        """Exchange SIP messages over an open connection until either side ends it: the
        writer in ``nursery``, the reader here (the WebSocket transport speaks differently).
        True when it ends because the stream cannot be framed (see :meth:`_reader`)."""
        nursery.start_soon(self._writer, connection, stream)
        return await self._reader(connection, stream)

    async def _reader(self, connection: Connection, stream: trio.abc.Stream) -> bool:
        """Read and frame messages until the connection ends; True when it ends because the
        stream cannot be framed (the unframed head was handed on, to be answered)."""
        framer = StreamFramer(self._limits.parser)
        begun: float | None = None  # when the bytes of a message not complete yet began
        message_timeout = self._limits.message_timeout
        while True:
            deadline = connection.last_activity + self._quiet_limit(connection)
            if begun is not None:
                deadline = min(deadline, begun + message_timeout)
            with trio.CancelScope(deadline=deadline) as wait:
                connection.wait = wait
                data = await stream.receive_some(65_536)
            connection.wait = None
            if wait.cancelled_caught:  # quiet for quiet_limit, or keep_alive() changed it
                if begun is not None and trio.current_time() >= begun + message_timeout:
                    self._message_timed_out(connection)
                    return False
                if not self._still_wanted(connection):
                    return False
                continue
            if not data:
                return False
            now = connection.last_activity = trio.current_time()
            try:
                messages = framer.feed(data)
            except ParseError:
                messages = []
            if messages:
                self._delivered(connection)
            if not framer.mid_message:
                begun = None
            elif messages or begun is None:
                begun = now  # a new message began with these bytes
            # The unframeable rest last: the receiver answers it with a 400 where it can.
            unframeable = [framer.pending()] if framer.error is not None else []
            for message in [*messages, *unframeable]:
                try:
                    self._on_message(message, connection.remote, self)
                except Exception:
                    self._log.log(
                        logging.ERROR,
                        "messages that failed",
                        "dropping a message from %s:%s",
                        *connection.remote,
                        exc_info=True,
                    )
            if framer.error is not None:
                self._log.log(
                    logging.WARNING,
                    "unframeable connections",
                    "closing %s connection %s: %s",
                    self.name,
                    connection.remote,
                    framer.error,
                )
                return True

    def _message_timed_out(self, connection: Connection) -> None:
        self.connections_timed_out += 1
        self._log.log(
            logging.INFO,
            "connections timed out",
            "closing %s connection %s:%s: a message not complete within %g s",
            self.name,
            *connection.remote,
            self._limits.message_timeout,
        )

    def _quiet_limit(self, connection: Connection) -> float:
        """How long ``connection`` may stay quiet before :meth:`_still_wanted` is asked."""
        kept = connection.remote in self._kept
        return self._keepalive_interval if kept else self._idle_timeout

    def _still_wanted(self, connection: Connection) -> bool:
        """Nothing came for a while: a kept connection gets a keep-alive; False when an
        idle one should close."""
        quiet = trio.current_time() - connection.last_activity
        if connection.remote in self._kept:
            if quiet >= self._keepalive_interval:
                connection.send_channel.send_nowait(self._keepalive)
                connection.last_activity = trio.current_time()
            return True
        return quiet < self._idle_timeout

    async def _writer(self, connection: Connection, stream: trio.abc.Stream) -> None:
        async for data in connection.receive_channel:
            await stream.send_all(data)
            connection.last_activity = trio.current_time()

    def _drop(self, connection: Connection) -> None:
        if self._connections.get(connection.remote) is connection:
            del self._connections[connection.remote]
        connection.send_channel.close()


def _connect_failure(exc: OSError) -> str:
    """Why a connect failed ("Connection refused"): trio's "all attempts to connect to ...
    failed" keeps the reasons in an exception group in ``__cause__``."""
    cause = exc.__cause__
    causes = cause.exceptions if isinstance(cause, BaseExceptionGroup) else (exc,)
    reasons: list[str] = []
    for error in causes:
        code = getattr(error, "errno", None)
        reason = os.strerror(code) if code else str(error)
        if reason not in reasons:
            reasons.append(reason)
    return "; ".join(reasons) or str(exc)
