"""UDP transport: one socket, a drain loop on receive, sends without a scheduler round trip.

On each wake-up the receive loop reads every datagram that is ready (non-blocking
``recvfrom`` until it would block, then ``trio.lowlevel.wait_readable``), which is what lets
trio handle far more than one message per scheduler pass.
"""

from __future__ import annotations

import errno
import logging
import socket
import sys
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from .._errors import TransportError
from .._log_limit import LogLimiter
from .transport import Address, MessageHandler, family_for

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger("sipx.transport")

_MAX_DATAGRAM = 65_535
_BATCH = 256  # datagrams handled before yielding to other tasks
# Receive buffer asked for: room for ~3000 datagrams while the loop is busy elsewhere (a
# full GC pass of a loaded process takes 100-400 ms). Linux caps it at net.core.rmem_max;
# see bench/README.md, "SIP OPTIONS".
_RECEIVE_BUFFER = 4 * 1024 * 1024
# Linux's IP_RECVERR and MSG_ERRQUEUE (not in the socket module on every Python build).
_IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
_MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)


def on_error_queue_supported(sock: socket.socket) -> bool:
    """IP_RECVERR exists on Linux, for IPv4 sockets."""
    return sys.platform.startswith("linux") and sock.family == socket.AF_INET


class UDPTransport:
    name = "UDP"
    reliable = False

    def __init__(
        self,
        on_message: MessageHandler,
        *,
        on_error: Callable[[Address, Exception], None] | None = None,
    ) -> None:
        self._on_message = on_message
        self._on_error = on_error
        self._log = LogLimiter(log)
        self._sock: socket.socket | None = None
        self._pending: deque[tuple[bytes, Address]] = deque()
        self._writable = trio.Event()
        self._address: Address = ("0.0.0.0", 0)

    @property
    def local_address(self) -> Address:
        return self._address

    async def serve(
        self,
        host: str,
        port: int,
        *,
        task_status: TaskStatus[Address] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        sock = socket.socket(family_for(host), socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            _enlarge_receive_buffer(sock)
            if on_error_queue_supported(sock):
                # Linux: ICMP errors (port unreachable) queued with the destination they
                # answer, so a request to a closed port fails at once (RFC 3261 8.1.3.1).
                sock.setsockopt(socket.SOL_IP, _IP_RECVERR, 1)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise TransportError(f"cannot bind UDP {host}:{port}: {exc.strerror or exc}") from exc
        self._sock = sock
        self._address = sock.getsockname()[:2]
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._flush_loop)
                task_status.started(self._address)
                await self._receive_loop(sock)
        finally:
            sock.close()

    async def _receive_loop(self, sock: socket.socket) -> None:
        recvfrom = sock.recvfrom
        handle = self._on_message
        # The last source address handed on: the next datagram from the same peer gets this
        # same tuple, not recvfrom's new one (a str and an int in a tuple, which each Timer J
        # record and each transaction of a request from there would keep for 32 s).
        last: Address = ("", 0)
        while True:
            for _ in range(_BATCH):
                try:
                    data, source = recvfrom(_MAX_DATAGRAM)
                except BlockingIOError:
                    break
                except OSError as exc:
                    # ICMP port unreachable and friends surface here on Linux; not fatal.
                    self._read_error_queue(sock, exc)
                    continue
                address = source[:2]  # (an IPv4 pair: the same tuple, no copy)
                if address == last:
                    address = last
                else:
                    last = address
                try:
                    handle(data, address, self)
                except Exception:
                    self._log.log(
                        logging.ERROR,
                        "datagrams that failed",
                        "dropping a datagram from %s:%s",
                        *source[:2],
                        exc_info=True,
                    )
            else:
                await trio.lowlevel.checkpoint()
                continue
            await trio.lowlevel.wait_readable(sock.fileno())

    def _sendto(self, sock: socket.socket, data: bytes, address: Address) -> None:
        """Send; an ICMP error queued by an earlier datagram (to another address) surfaces
        here as ECONNREFUSED: report it for its own destination, then send once more."""
        try:
            sock.sendto(data, address)
        except ConnectionRefusedError as exc:
            self._read_error_queue(sock, exc)
            sock.sendto(data, address)

    def _read_error_queue(self, sock: socket.socket, error: OSError) -> None:
        """Report each queued ICMP error for the destination it answers (IP_RECVERR puts
        that destination in the message's address)."""
        reported = False
        for _ in range(64):
            try:
                _, _, _, destination = sock.recvmsg(1, 1024, _MSG_ERRQUEUE)
            except OSError:
                break
            reported = True
            if self._on_error is not None and destination:
                self._on_error((destination[0], destination[1]), error)
        if not reported:
            log.debug("UDP receive error ignored: %s", error)

    def has_connection(self, address: Address) -> bool:
        """Datagrams have no connections."""
        return False

    def keep_alive(self, address: Address, enabled: bool = True) -> None:
        """UDP has no connection to keep."""

    def send_nowait(self, data: bytes, address: Address) -> None:
        sock = self._sock
        if sock is None:
            raise TransportError("UDP transport is not running")
        if not self._pending:
            try:
                try:  # self._sendto(sock, data, address), inline: every datagram sent
                    sock.sendto(data, address)
                except ConnectionRefusedError as refused:
                    self._read_error_queue(sock, refused)
                    sock.sendto(data, address)
                return
            except BlockingIOError:
                pass
            except OSError as exc:
                if exc.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                    log.debug("UDP send to %s failed: %s", address, exc)
                    return
                raise TransportError(
                    f"UDP send to {address[0]}:{address[1]} failed: {exc}"
                ) from exc
        self._pending.append((data, address))
        self._writable.set()

    async def _flush_loop(self) -> None:
        while True:
            await self._writable.wait()
            self._writable = trio.Event()
            sock = self._sock
            assert sock is not None
            while self._pending:
                data, address = self._pending[0]
                try:
                    self._sendto(sock, data, address)
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(sock.fileno())
                    continue
                except OSError as exc:
                    log.debug("UDP send to %s failed: %s", address, exc)
                self._pending.popleft()


def _enlarge_receive_buffer(sock: socket.socket) -> None:
    """Ask for ``_RECEIVE_BUFFER`` bytes of receive buffer, never for less than the default.

    Best effort: Linux silently caps the value, macOS refuses one above its limit.
    """
    try:
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < _RECEIVE_BUFFER:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER)
    except OSError as exc:
        log.debug("UDP receive buffer left at the default: %s", exc)
