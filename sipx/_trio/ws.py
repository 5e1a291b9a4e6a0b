"""WebSocket transport (RFC 7118): SIP over WebSocket connections, through trio-websocket.

Each SIP message travels as one WebSocket message (a text message when it is UTF-8, else a
binary one): the WebSocket framing delimits it, so there is no stream framing here. The
opening handshake asks for the ``sip`` subprotocol; a server that does not agree to it is a
:class:`~sipx.TransportError` for the requests waiting on that connection (so is a handshake
refused or not answered within ``handshake_timeout``).

A client transport (the default) listens on no port: an RFC 7118 client is reached over the
connections it opened, one per server address, reused like TCP's (requests and responses
both ways). With ``listen=True`` (``sipx serve --ws-port``) it accepts connections on its
port, answers the handshake, and sends only over connections that are open: it cannot
connect to a WebSocket client.

WSS is the same over TLS, with the TLS transport's handshake and ``verify=``/``cert=``
contexts (:mod:`sipx._trio.tls`). Connections idle out and are kept alive like TCP's; the
keep-alive is a WebSocket pong frame (RFC 6455 5.5.3: an unsolicited pong is a heartbeat).

Bad input closes, at worst, the one connection: a message over the size limit closes it
with code 1009 (Message Too Big), a broken frame ends it, and a message that is not SIP
goes to the client, which logs and drops it.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import trio
from trio_websocket import (
    ConnectionClosed,
    HandshakeError,
    WebSocketConnection,
    wrap_client_stream,
    wrap_server_stream,
)

from .._errors import TransportError
from .._limits import DEFAULT_LIMITS, Limits
from .tcp import Connection, TCPTransport
from .tls import secure_client_stream, secure_server_stream
from .transport import Address, MessageHandler

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger("sipx.transport")

SUBPROTOCOL = "sip"
"""The WebSocket subprotocol of SIP (RFC 7118 section 4)."""

T = TypeVar("T")


def frame(data: bytes) -> str | bytes:
    """What to send for ``data``: text when it is UTF-8 (RFC 7118 section 5.2), else binary."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


class WSTransport(TCPTransport):
    """SIP over WebSocket (``secure=False``: WS) or over secure WebSocket (WSS)."""

    reliable = True
    _keepalive = b""  # the writer sends a pong frame for it

    def __init__(
        self,
        on_message: MessageHandler,
        *,
        secure: bool = False,
        listen: bool = False,
        client_context: ssl.SSLContext | None = None,
        server_context: ssl.SSLContext | None = None,
        server_name: Callable[[Address], str | None] | None = None,
        resource: str = "/",
        handshake_timeout: float = 10.0,
        idle_timeout: float = 300.0,
        keepalive_interval: float = 100.0,
        on_error: Callable[[Address, Exception], None] | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__(
            on_message,
            idle_timeout=idle_timeout,
            keepalive_interval=keepalive_interval,
            on_error=on_error,
            limits=limits,
        )
        if secure and client_context is None and not listen:
            raise ValueError("a WSS client transport needs a TLS client context")
        self.name = "WSS" if secure else "WS"
        self.secure = secure
        self.listening = listen
        self._client_context = client_context
        self._server_context = server_context
        self._server_name = server_name
        self._resource = resource
        self._handshake_timeout = handshake_timeout

    async def serve(
        self,
        host: str,
        port: int,
        *,
        task_status: TaskStatus[Address] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``(host, port)`` with ``listen=True``; else bind nothing, report
        ``(host, 0)`` and run the connections the client opens until cancelled."""
        if self.listening:
            await super().serve(host, port, task_status=task_status)
            return
        self._address = (host, 0)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started(self._address)
            await trio.sleep_forever()

    def send_nowait(self, data: bytes, address: Address) -> None:
        if self.listening and not self.has_connection(address):
            raise TransportError(
                f"no {self.name} connection from {address[0]}:{address[1]}: a WebSocket"
                " server cannot open one"
            )
        super().send_nowait(data, address)

    # -- connections ---------------------------------------------------------------------
    def _name_of(self, address: Address) -> str:
        return (self._server_name(address) if self._server_name else None) or address[0]

    async def _open_stream(self, host: str, port: int) -> trio.abc.Stream:
        tcp = await super()._open_stream(host, port)
        if not self.secure:
            return tcp
        assert self._client_context is not None
        name = self._name_of((host, port))
        return await secure_client_stream(
            tcp, self._client_context, (host, port), name, self._handshake_timeout
        )

    async def _accept_stream(self, stream: trio.SocketStream, remote: Address) -> trio.abc.Stream:
        if not self.secure:
            return stream
        return await secure_server_stream(
            stream, self._server_context, remote, self._handshake_timeout
        )

    async def _speak(
        self,
        connection: Connection,
        stream: trio.abc.Stream,
        nursery: trio.Nursery,
        *,
        outgoing: bool,
    ) -> bool:
        """The opening handshake, then SIP messages both ways until either side closes
        (False: a WebSocket message is framed by the library, never unframeable).

        The library's reader task runs in a nursery of this connection's own, so that
        whatever ends the connection (a refused handshake, a broken frame) ends it alone.
        """
        host, port = connection.remote
        watched = _Watched(stream)
        try:
            async with trio.open_nursery() as session:
                handshake = self._client_handshake if outgoing else self._server_handshake
                with trio.fail_after(self._handshake_timeout):
                    ws = await _unless_ended(
                        watched.ended, lambda: handshake(session, watched, connection.remote)
                    )
                session.start_soon(self._send_messages, connection, ws)
                await self._receive_messages(connection, ws)
                session.cancel_scope.cancel()
        except* (HandshakeError, TransportError, trio.TooSlowError) as group:
            error = _handshake_error(_first(group), self.name, connection.remote)
            log.info("%s", error)
            self._drop(connection)  # first: a request sent now must open a new connection
            if outgoing and self._on_error is not None:
                self._on_error(connection.remote, error)
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as group:
            log.debug("%s connection %s:%s closed: %r", self.name, host, port, _first(group))
        except* Exception as group:  # the peer made the library fail: end this connection
            log.warning("closing %s connection %s:%s: %r", self.name, host, port, _first(group))
        return False

    async def _client_handshake(
        self, nursery: trio.Nursery, stream: trio.abc.Stream, remote: Address
    ) -> WebSocketConnection:
        host, port = remote
        name = self._name_of(remote)
        name = f"[{name}]" if ":" in name else name
        ws = await wrap_client_stream(
            nursery,
            stream,  # type: ignore[arg-type]  # any trio stream will do
            f"{name}:{port}",
            self._resource,
            subprotocols=[SUBPROTOCOL],
            max_message_size=self._limits.max_message_size,
        )
        if ws.subprotocol != SUBPROTOCOL:
            chose = f"it chose {ws.subprotocol!r}" if ws.subprotocol else "it chose none"
            raise TransportError(
                f"{self.name} server {host}:{port} did not agree to the '{SUBPROTOCOL}'"
                f" subprotocol of RFC 7118 ({chose})"
            )
        return ws

    async def _server_handshake(
        self, nursery: trio.Nursery, stream: trio.abc.Stream, remote: Address
    ) -> WebSocketConnection:
        host, port = remote
        request = await wrap_server_stream(
            nursery, stream, max_message_size=self._limits.max_message_size
        )
        if SUBPROTOCOL not in request.proposed_subprotocols:
            await request.reject(400, body=b"the 'sip' WebSocket subprotocol is required")
            raise TransportError(
                f"{self.name} connection from {host}:{port} refused: it did not ask for the"
                f" '{SUBPROTOCOL}' subprotocol"
            )
        return await request.accept(subprotocol=SUBPROTOCOL)

    async def _receive_messages(self, connection: Connection, ws: WebSocketConnection) -> None:
        while True:
            deadline = connection.last_activity + self._quiet_limit(connection)
            with trio.CancelScope(deadline=deadline) as wait:
                connection.wait = wait
                try:
                    message = await ws.get_message()
                except ConnectionClosed as closed:
                    log.debug("%s connection %s closed: %s", self.name, connection.remote, closed)
                    return
            connection.wait = None
            if wait.cancelled_caught:  # quiet for a while, or keep_alive() changed it
                if not self._still_wanted(connection):
                    with trio.move_on_after(1):
                        await ws.aclose()
                    return
                continue
            connection.last_activity = trio.current_time()
            self._delivered(connection)  # a whole message: no first-message deadline now
            data = message.encode("utf-8") if isinstance(message, str) else message
            try:
                self._on_message(data, connection.remote, self)
            except Exception:
                log.exception("dropping a message from %s:%s", *connection.remote)

    async def _send_messages(self, connection: Connection, ws: WebSocketConnection) -> None:
        async for data in connection.receive_channel:
            try:
                if data:
                    await ws.send_message(frame(data))
                else:
                    await ws.pong()
            except ConnectionClosed:
                return
            connection.last_activity = trio.current_time()


class _Watched(trio.abc.Stream):
    """A stream that notes when the peer ends it (end of file, or a broken read), so that
    a handshake the peer walked away from fails at once."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.ended = trio.Event()

    async def send_all(self, data: bytes | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        try:
            data = await self.stream.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.ended.set()
            raise
        if not data:
            self.ended.set()
        return data

    async def aclose(self) -> None:
        self.ended.set()
        await self.stream.aclose()


async def _unless_ended(ended: trio.Event, handshake: Callable[[], Awaitable[T]]) -> T:
    """``await handshake()``, unless the connection ends first (TransportError)."""
    result: list[T] = []
    async with trio.open_nursery() as race:

        async def run() -> None:
            result.append(await handshake())
            race.cancel_scope.cancel()

        async def watch() -> None:
            await ended.wait()
            race.cancel_scope.cancel()

        race.start_soon(run)
        race.start_soon(watch)
    if not result:
        raise TransportError("the connection closed during the WebSocket handshake")
    return result[0]


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first leaf exception of a (nested) group."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def _handshake_error(error: BaseException, name: str, remote: Address) -> TransportError:
    """A TransportError saying why the opening handshake with ``remote`` failed."""
    host, port = remote
    if isinstance(error, TransportError):
        if str(error).startswith("the connection closed"):
            return TransportError(f"{name} handshake with {host}:{port} failed: {error}")
        return error
    if isinstance(error, trio.TooSlowError):
        why = "no answer"
    else:
        status = getattr(error, "status_code", None)
        why = f"refused with HTTP {status}" if status else (str(error) or type(error).__name__)
    return TransportError(f"{name} handshake with {host}:{port} failed: {why}")


__all__ = ["SUBPROTOCOL", "WSTransport", "frame"]
