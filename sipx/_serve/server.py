"""The trio half of ``sipx serve``: transports, the timer task, and the wiring.

:class:`DevServer` binds one UDP and one TCP transport on the same host and port (TLS and
WebSocket on ports of their own when asked), feeds every received message to the sans-I/O
:class:`~sipx._serve.proxy.Proxy` and sends what it returns. The receive callback is
synchronous (as the transports require); besides the transports there is the timer task
that sleeps until the built-in UA's next deadline, and one task per call of the built-in UA
that echoes its RTP (:class:`RtpEcho`: the UA asks it for a port when it writes its SDP, and
tells it when the call ends). A datagram that does not parse,
or that trips any bug, is logged and dropped: the server keeps going.
"""

from __future__ import annotations

import logging
import math
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from .._core.ids import IdSource
from .._core.malformed import answer_malformed
from .._core.message import Response
from .._core.mwi import MessageCounts
from .._core.parser import parse_message
from .._core.rtp import RtpPacket
from .._core.timers import DEFAULT_TIMERS, TimerConfig
from .._errors import ParseError, SIPError, TransportError
from .._ladder import wire_fields
from .._limits import DEFAULT_LIMITS, Limits, LimitStats
from .._log_limit import LogLimiter
from .._media_stream import bind_rtp_socket
from .._trio.groups import single_exception
from .._trio.lifetime import Lifetime, task_nursery
from .._trio.ports import start_on_one_port
from .._trio.tcp import TCPTransport
from .._trio.tls import TLSCert, TLSTransport, client_context, server_context
from .._trio.transport import Address, Transport, routable_host, serve_in_scope
from .._trio.udp import UDPTransport
from .._trio.ws import WSTransport
from .auth import DEFAULT_USERS, DigestAuthenticator
from .common import TRANSPORTS, Outgoing, ServerIdentity
from .echo import CallKey, EchoUA
from .notifier import EventNotifier
from .proxy import Proxy
from .registrar import Binding, Registrar

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger("sipx.serve")
wire_log = logging.getLogger("sipx.serve.wire")

TraceCallback = Callable[[str, bytes, Address, str], None]
"""``trace(direction, data, address, transport)``: direction is "in" or "out"."""

DEFAULT_RTP_PORTS = (10000, 20000)


class DevServer(Lifetime):
    """A development SIP server: registrar, record-routing stateless proxy, extension 100.

    ::

        async with DevServer("127.0.0.1", 0) as server:
            host, port = server.address
            ...

    or ``await nursery.start(server.serve)`` (which reports the bound address). Port 0
    picks a port that is free for both UDP and TCP. ``users`` maps user to password
    (default 1111/1111xxx, 2222/2222xxx, 3333/3333xxx). Extension 100 echoes each call's
    RTP from an even UDP port of ``rtp_ports`` (low, high) on ``host``. With ``ws_port``
    it also serves SIP over WebSocket (RFC 7118, subprotocol ``sip``) on that port (0: any),
    reaching each WebSocket client over the connection it opened; with ``wss_port`` (and
    ``cert``) it serves secure WebSocket (WSS) the same way.
    SUBSCRIBEs for the
    users' ``message-summary`` (counts from ``mwi``: ``{"1111": (new, old)}``, changed with
    :meth:`set_message_summary`) and ``presence`` (open while registered) are served by the
    server itself (:mod:`sipx._serve.notifier`).
    ``limits``
    (:class:`sipx.Limits`) bounds connections, message sizes and extension 100's server
    transactions; :attr:`limit_stats` counts what they turned away.
    """

    _already_running = "the server is already running"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 5060,
        *,
        transports: Sequence[str] = TRANSPORTS,
        users: Mapping[str, str] | None = None,
        realm: str = "sipx",
        algorithm: str = "MD5",
        echo_extension: str = "100",
        trace: TraceCallback | None = None,
        nonce_lifetime: float = 300.0,
        echo_answer_delay: float = 0.0,
        echo_early_media: bool = False,
        timers: TimerConfig = DEFAULT_TIMERS,
        max_expires: int = 3600,
        min_expires: int = 0,
        aliases: Iterable[str] = (),
        cert: TLSCert | None = None,
        tls_port: int | None = None,
        rtp_ports: tuple[int, int] = DEFAULT_RTP_PORTS,
        ws_port: int | None = None,
        wss_port: int | None = None,
        mwi: Mapping[str, tuple[int, int]] | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        if not isinstance(limits, Limits):
            raise TypeError(f"limits is a sipx.Limits, not {limits!r}")
        if wss_port is not None and cert is None:
            raise ValueError("wss_port needs a certificate (cert=): WSS is WebSocket over TLS")
        low, high = rtp_ports
        if not 0 < low <= high <= 65535:
            raise ValueError(f"rtp_ports must be (low, high) within 1-65535, not {rtp_ports!r}")
        names = tuple(dict.fromkeys(t.upper() for t in transports))
        unknown = [t for t in names if t not in TRANSPORTS]
        if not names or unknown:
            raise ValueError(f"transports must be some of {TRANSPORTS}, not {tuple(transports)}")
        self.host = host
        self.port = port
        self.transports = names
        # TLS on a port of its own: ``tls_port``, else port + 1 (5061 beside 5060), else any.
        # UAs' certificates are not checked when the server connects to them (a lab tool).
        self._tls = (server_context(cert), client_context(False)) if cert is not None else None
        self.tls_port = tls_port if tls_port is not None else (port + 1 if port else 0)
        self._tls_address: Address | None = None
        self.ws_port = ws_port
        self._ws_address: Address | None = None
        self.wss_port = wss_port
        self._wss_address: Address | None = None
        self.echo_extension = echo_extension
        self.rtp_ports = (low, high)
        self.rtp_echo: RtpEcho | None = None  # extension 100's media (while serving)
        self.echo_answer_delay = echo_answer_delay
        self.echo_early_media = echo_early_media
        self.timers = timers
        self.aliases = tuple(aliases)
        self.trace = trace
        self.limits = limits
        self.malformed_messages = 0  # messages that did not parse
        self._log = LogLimiter(log)  # what floods of bad input make us log, rate-limited
        self._secret = secrets.token_bytes(32)
        self.registrar = Registrar(
            default_expires=max_expires, max_expires=max_expires, min_expires=min_expires
        )
        self.authenticator = DigestAuthenticator(
            DEFAULT_USERS if users is None else users,
            realm=realm,
            algorithm=algorithm,
            secret=self._secret,
            nonce_lifetime=nonce_lifetime,
        )
        self.mwi = {user: _counts(user, value) for user, value in (mwi or {}).items()}
        self._proxy: Proxy | None = None
        self._transports: dict[str, Transport] = {}
        self._address: Address | None = None
        self._nursery: trio.Nursery | None = None
        self._wakeup = trio.Event()
        self._armed = math.inf
        self._now = 0.0

    # -- public view -------------------------------------------------------------------------
    @property
    def address(self) -> Address:
        """The bound ``(host, port)`` (the same port for UDP and TCP)."""
        if self._address is None:
            raise RuntimeError("the server is not running")
        return self._address

    @property
    def users(self) -> Mapping[str, str]:
        return self.authenticator.users

    @property
    def realm(self) -> str:
        return self.authenticator.realm

    @property
    def algorithm(self) -> str:
        return self.authenticator.algorithm

    @property
    def proxy(self) -> Proxy:
        if self._proxy is None:
            raise RuntimeError("the server is not running")
        return self._proxy

    @property
    def echo(self) -> EchoUA | None:
        return self._proxy.echo if self._proxy is not None else None

    @property
    def notifier(self) -> EventNotifier | None:
        """The notifier of message-summary and presence subscriptions (while serving)."""
        return self._proxy.notifier if self._proxy is not None else None

    def set_message_summary(self, user: str, new: int, old: int = 0) -> None:
        """Set ``user``'s voicemail counts (``new``/``old``); while serving, the user's
        message-summary watchers get a NOTIFY. Call it from the server's trio thread."""
        counts = _counts(user, (new, old))
        self.mwi[user] = counts
        notifier = self.notifier
        if notifier is not None:
            self._send(notifier.set_message_summary(user, counts, self._clock()))
            self._rearm()

    @property
    def registrations(self) -> dict[str, list[Binding]]:
        """Current bindings per user, most recent first (a snapshot; expired ones dropped)."""
        return self.registrar.snapshot(self._clock())

    @property
    def limit_stats(self) -> LimitStats:
        """What the limits turned away so far (see :class:`sipx.LimitStats`)."""
        echo = self.echo
        transports = list(self._transports.values())
        return LimitStats(
            requests_refused=echo.requests_refused if echo is not None else 0,
            connections_refused=sum(getattr(t, "connections_refused", 0) for t in transports),
            connections_timed_out=sum(getattr(t, "connections_timed_out", 0) for t in transports),
            malformed_messages=self.malformed_messages,
        )

    @property
    def tls_address(self) -> Address | None:
        """The bound TLS ``(host, port)``; None without a certificate or when not running."""
        return self._tls_address

    @property
    def ws_address(self) -> Address | None:
        """The bound WebSocket ``(host, port)``; None without ``ws_port`` or when not running."""
        return self._ws_address

    @property
    def wss_address(self) -> Address | None:
        """The bound secure WebSocket ``(host, port)``; None without ``wss_port`` or when not
        running."""
        return self._wss_address

    def uri(self, user: str | None = None, transport: str = "UDP") -> str:
        """``sip:[user@]host:port`` of the running server (``;transport=tcp``/``tls``/``ws``/
        ``wss`` too)."""
        kind = transport.upper()
        host, port = self.address
        listeners = {
            "TLS": (self._tls_address, "TLS listener (give it a certificate)"),
            "WS": (self._ws_address, "WebSocket listener (give it ws_port=)"),
            "WSS": (self._wss_address, "secure WebSocket listener (give it wss_port= and cert=)"),
        }
        if kind in listeners:
            bound, missing = listeners[kind]
            if bound is None:
                raise RuntimeError(f"the server has no {missing}")
            port = bound[1]
        host = f"[{host}]" if ":" in host else host
        text = f"sip:{user}@{host}:{port}" if user else f"sip:{host}:{port}"
        return text + ("" if kind == "UDP" else f";transport={kind.lower()}")

    # -- running -----------------------------------------------------------------------------
    async def serve(self, *, task_status: TaskStatus[Address] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind the transports, report the bound address and serve until cancelled."""
        if self._address is not None:
            raise RuntimeError("the server is already running")
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                address = await self._bind(nursery)
                if self._tls is not None:
                    tls = TLSTransport(
                        self._on_message,
                        server_context=self._tls[0],
                        client_context=self._tls[1],
                        limits=self.limits,
                    )
                    self._tls_address = await nursery.start(tls.serve, self.host, self.tls_port)
                    self._transports["TLS"] = tls
                if self.ws_port is not None:
                    ws = WSTransport(self._on_message, listen=True, limits=self.limits)
                    self._ws_address = await nursery.start(ws.serve, self.host, self.ws_port)
                    self._transports["WS"] = ws
                if self.wss_port is not None and self._tls is not None:
                    wss = WSTransport(
                        self._on_message,
                        secure=True,
                        listen=True,
                        server_context=self._tls[0],
                        client_context=self._tls[1],
                        limits=self.limits,
                    )
                    self._wss_address = await nursery.start(wss.serve, self.host, self.wss_port)
                    self._transports["WSS"] = wss
                self._setup(address)
                nursery.start_soon(self._timer_loop)
                log.info(
                    "sipx dev server on %s:%s (%s)%s%s%s",
                    *address,
                    "+".join(t.lower() for t in self.transports),
                    f", tls on port {self._tls_address[1]}" if self._tls_address else "",
                    f", ws on port {self._ws_address[1]}" if self._ws_address else "",
                    f", wss on port {self._wss_address[1]}" if self._wss_address else "",
                )
                task_status.started(address)
        except BaseExceptionGroup as group:
            single = single_exception(group)
            if single is group:
                raise
            raise single from None
        finally:
            self._log.flush()
            if self.rtp_echo is not None:
                self.rtp_echo.stop()
            self._nursery = None
            self._address = None
            self._tls_address = None
            self._ws_address = None
            self._wss_address = None
            self._transports = {}

    @asynccontextmanager
    async def _lifetime(self) -> AsyncIterator[None]:
        """``serve()`` in a nursery of its own for the body of the ``async with``.

        Leaving cancels it; the body's exception comes out unchanged and an error of the
        server's tasks as itself (a group only when there are several).
        """
        async with task_nursery() as nursery:
            await nursery.start(self.serve)
            yield

    def close(self) -> None:
        """Stop serving (cancels the server's tasks; ``serve()`` then returns)."""
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def _bind(self, nursery: trio.Nursery) -> Address:
        """Start every transport on one port; with port 0 find a port free for all of them."""

        async def start(
            transport: Transport, host: str, port: int
        ) -> tuple[Address, trio.CancelScope]:
            scope = trio.CancelScope()
            return await nursery.start(serve_in_scope, scope, transport, host, port), scope

        transports, address = await start_on_one_port(
            lambda: [self._make_transport(name) for name in self.transports],
            self.host,
            self.port,
            start,
        )
        self._transports = {transport.name: transport for transport in transports}
        assert address is not None  # none of them is optional
        return address

    def _make_transport(self, name: str) -> Transport:
        if name == "TCP":
            return TCPTransport(self._on_message, limits=self.limits)
        return UDPTransport(self._on_message)

    def _setup(self, address: Address) -> None:
        host = address[0]
        if host in ("0.0.0.0", "::"):
            host = routable_host(host, "192.0.2.1" if host == "0.0.0.0" else "2001:db8::1")
        if ":" in host:
            host = f"[{host}]"
        identity = ServerIdentity(
            host,
            address[1],
            transports=self.transports,
            aliases=(self.host, *self.aliases),
            tls_port=self._tls_address[1] if self._tls_address is not None else None,
            ws_port=self._ws_address[1] if self._ws_address is not None else None,
            wss_port=self._wss_address[1] if self._wss_address is not None else None,
        )
        assert self._nursery is not None
        self.rtp_echo = RtpEcho(self.host, self.rtp_ports, self._nursery)
        echo = EchoUA(
            identity,
            ids=IdSource(secrets.token_hex),
            extension=self.echo_extension,
            timers=self.timers,
            answer_delay=self.echo_answer_delay,
            early_media=self.echo_early_media,
            media=self.rtp_echo,
            max_server_transactions=self.limits.max_server_transactions,
            retry_after=self.limits.retry_after,
        )
        notifier = EventNotifier(
            identity,
            registrar=self.registrar,
            users=self.authenticator.users,
            ids=IdSource(secrets.token_hex),
            route=lambda uri: proxy.next_hop(uri),
            mwi=self.mwi,
            timers=self.timers,
            max_expires=self.registrar.max_expires,
        )
        proxy = Proxy(
            identity,
            registrar=self.registrar,
            authenticator=self.authenticator,
            secret=self._secret,
            echo=echo,
            echo_extension=self.echo_extension,
            connected=self._connected,
            notifier=notifier,
        )
        self._proxy = proxy
        self._address = address

    def _connected(self, transport: str, address: Address) -> bool:
        """Is a connection to ``address`` open on ``transport``? (False when unknown.)"""
        found = self._transports.get(transport)
        return found is not None and found.has_connection(address)

    # -- the receive path (synchronous, inside the transports' loops) -------------------------
    def _on_message(self, data: bytes, source: Address, transport: Transport) -> None:
        name = transport.name
        if self.trace is not None:
            self._call_trace("in", data, source, name)
        if wire_log.isEnabledFor(logging.DEBUG):
            wire_log.debug(
                "%s in from %s:%s\n%s",
                name,
                *source,
                data.decode("utf-8", "replace"),
                extra=wire_fields("in", data, source, transport.local_address, name),
            )
        if not data.strip(b"\r\n\t "):
            return  # keep-alive
        proxy = self._proxy
        if proxy is None:
            return
        now = self._clock()
        try:
            message = parse_message(data, limits=self.limits.parser)
            outgoing = proxy.handle(message, now, transport=name, source=source)
        except (SIPError, ValueError) as exc:
            self.malformed_messages += 1
            answer = answer_malformed(data, str(exc), to_tag=secrets.token_hex(6))
            if answer is None:
                self._log.log(
                    logging.INFO,
                    "malformed messages",
                    "dropping a malformed message from %s:%s: %s",
                    *source,
                    exc,
                    now=now,
                )
                return
            self._log.log(
                logging.INFO,
                "malformed messages",
                "answering a malformed request from %s:%s with %s",
                *source,
                answer.status_code,
                now=now,
            )
            outgoing = [Outgoing(answer, name, source)]
        except Exception:
            self._log.log(
                logging.ERROR,
                "messages the server choked on",
                "dropping a message from %s:%s that the server choked on",
                *source,
                exc_info=True,
                now=now,
            )
            return
        self._send(outgoing)
        self._rearm()

    def _send(self, outgoing: list[Outgoing]) -> None:
        for out in outgoing:
            transport = self._transports.get(out.transport)
            if transport is None:
                log.info("cannot send over %s: not running", out.transport)
                continue
            try:
                data = out.message.to_bytes()
            except (SIPError, ValueError) as exc:
                log.warning("cannot serialise %r: %s", out.message, exc)
                continue
            if self.trace is not None:
                self._call_trace("out", data, out.address, out.transport)
            if wire_log.isEnabledFor(logging.DEBUG):
                wire_log.debug(
                    "%s out to %s:%s\n%s",
                    out.transport,
                    *out.address,
                    data.decode("utf-8", "replace"),
                    extra=wire_fields(
                        "out", data, out.address, transport.local_address, out.transport
                    ),
                )
            try:
                transport.send_nowait(data, out.address)
            except (OSError, trio.ClosedResourceError, trio.BrokenResourceError) as exc:
                kind = "response" if isinstance(out.message, Response) else "request"
                log.info("sending a %s to %s:%s failed: %s", kind, *out.address, exc)

    def _call_trace(self, direction: str, data: bytes, address: Address, transport: str) -> None:
        assert self.trace is not None
        try:
            self.trace(direction, data, address, transport)
        except Exception:
            log.exception("the trace callback failed")

    # -- timers --------------------------------------------------------------------------------
    def _clock(self) -> float:
        try:
            self._now = trio.current_time()
        except RuntimeError:  # outside trio (a test thread peeking at registrations)
            pass
        return self._now

    def _rearm(self) -> None:
        proxy = self._proxy
        deadline = proxy.next_deadline() if proxy is not None else None
        if deadline is not None and deadline < self._armed:
            self._wakeup.set()

    async def _timer_loop(self) -> None:
        proxy = self._proxy
        assert proxy is not None
        while True:
            deadline = proxy.next_deadline()
            self._armed = math.inf if deadline is None else deadline
            with trio.move_on_at(self._armed):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            try:
                outgoing = proxy.handle_timers(self._clock())
            except Exception:
                log.exception("a timer of the built-in UA failed")
                continue
            self._send(outgoing)


@dataclass(eq=False)
class _EchoSocket:
    """One call's RTP socket and the cancel scope of the task that echoes on it."""

    sock: socket.socket
    port: int
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    closed: bool = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.scope.cancel()
        try:
            trio.lowlevel.notify_closing(self.sock.fileno())  # wakes a waiting task
        except RuntimeError:  # outside trio
            pass
        self.sock.close()


class RtpEcho:
    """Extension 100's media: per call, a UDP socket that sends every RTP packet back.

    The built-in UA calls :meth:`open` when it writes a call's SDP (the port goes in it) and
    :meth:`close` when the call ends (it is the UA's
    :class:`~sipx._serve.echo.MediaPorts`). Each socket is bound on ``host``, on an even
    port of ``ports``; a task in the server's nursery receives on it and sends each datagram
    that looks like RTP straight back to its source (symmetric: the SDP's address is not
    used). Anything else is dropped. :meth:`stop` (the server stops) closes them all.
    """

    def __init__(self, host: str, ports: tuple[int, int], nursery: trio.Nursery) -> None:
        self.host = host
        self.ports = ports
        self._nursery: trio.Nursery | None = nursery
        self._sockets: dict[CallKey, _EchoSocket] = {}

    @property
    def calls(self) -> dict[CallKey, int]:
        """The calls that have an echo socket, and its port (a snapshot)."""
        return {key: echo.port for key, echo in self._sockets.items()}

    def open(self, call: CallKey) -> int | None:
        if self._nursery is None:
            return None
        self.close(call)
        try:
            sock = bind_rtp_socket(self.host, self.ports)
        except (TransportError, OSError) as exc:
            log.warning("no RTP echo for call %s: %s", call[0], exc)
            return None
        echo = _EchoSocket(sock, int(sock.getsockname()[1]))
        self._sockets[call] = echo
        self._nursery.start_soon(self._run, call, echo)
        log.debug("echoing RTP of call %s on %s:%s", call[0], self.host, echo.port)
        return echo.port

    def close(self, call: CallKey) -> None:
        echo = self._sockets.pop(call, None)
        if echo is not None:
            echo.close()

    def stop(self) -> None:
        """Close every socket; later :meth:`open` calls get no port."""
        self._nursery = None
        for call in list(self._sockets):
            self.close(call)

    async def _run(self, call: CallKey, echo: _EchoSocket) -> None:
        try:
            if echo.closed:
                return
            with echo.scope:
                await _echo_rtp(echo.sock)
        except trio.ClosedResourceError:  # closed while waiting for a datagram
            pass
        except Exception:
            log.exception("the RTP echo of call %s failed", call[0])
        finally:
            echo.close()
            if self._sockets.get(call) is echo:
                del self._sockets[call]


async def _echo_rtp(sock: socket.socket) -> None:
    """Send every RTP datagram back to its source, forever."""
    local = sock.getsockname()[:2]
    while True:
        await trio.lowlevel.wait_readable(sock.fileno())
        for _ in range(64):  # drain, then let the other tasks run
            try:
                data, source = sock.recvfrom(4096)
            except BlockingIOError:
                break
            except OSError:  # an ICMP error from an earlier send, ...
                continue
            if source[:2] == local:
                continue  # our own packet (a spoofed source): no loop
            try:
                RtpPacket.parse(data)
            except ParseError:
                continue
            try:
                sock.sendto(data, source)
            except OSError as exc:  # a full buffer, an unreachable source
                log.debug("RTP echo to %s:%s failed: %s", source[0], source[1], exc)
        else:
            await trio.lowlevel.checkpoint()


def _counts(user: str, value: tuple[int, int] | MessageCounts) -> MessageCounts:
    """``(new, old)`` -> MessageCounts, checked (ValueError)."""
    if not isinstance(user, str) or not user:
        raise ValueError(f"mwi is keyed by user names, not {user!r}")
    if isinstance(value, MessageCounts):
        return value
    try:
        new, old = value
    except (TypeError, ValueError):
        raise ValueError(f"mwi counts of {user} are (new, old), not {value!r}") from None
    return MessageCounts(new, old)
