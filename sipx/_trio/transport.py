"""What every transport offers the client: a sync send and a receive callback."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import trio

if TYPE_CHECKING:
    from trio_typing import TaskStatus

Address = tuple[str, int]


class Transport(Protocol):
    """A bound transport. ``send_nowait`` never blocks the caller: data that cannot be
    written at once is queued and written by the transport's own task."""

    name: str  # "UDP", "TCP", "TLS"
    reliable: bool

    @property
    def local_address(self) -> Address: ...

    async def serve(self, host: str, port: int, *, task_status: TaskStatus[Address] = ...) -> None:
        """Bind ``(host, port)``, report the bound address, deliver messages until cancelled."""

    def send_nowait(self, data: bytes, address: Address) -> None: ...

    def keep_alive(self, address: Address, enabled: bool = True) -> None:
        """Keep the connection to ``address`` open (a no-op without connections)."""

    def has_connection(self, address: Address) -> bool:
        """True while a connection to or from ``address`` is open (never, without any)."""


# Called for every complete message received: (data, source address, transport).
MessageHandler = Callable[[bytes, Address, "Transport"], None]


class Network(Protocol):
    """Something that makes transports: ``sipx.testing.MemoryNetwork`` (``network=``)."""

    def transport(self, on_message: MessageHandler, name: str = "UDP") -> Transport: ...


def family_for(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


_ROUTE_CACHE: dict[tuple[str, str], str] = {}


def routable_host(bound_host: str, destination_ip: str) -> str:
    """The local address that routes to ``destination_ip`` when bound to a wildcard.

    A connected UDP socket asks the kernel's routing table; nothing is sent.
    """
    if bound_host not in ("0.0.0.0", "::", ""):
        return bound_host
    key = (bound_host, destination_ip)
    cached = _ROUTE_CACHE.get(key)
    if cached is not None:
        return cached
    family = family_for(destination_ip)
    probe = socket.socket(family, socket.SOCK_DGRAM)
    try:
        probe.connect((destination_ip, 9))
        host = str(probe.getsockname()[0])
    except OSError:
        host = "127.0.0.1" if family == socket.AF_INET else "::1"
    finally:
        probe.close()
    _ROUTE_CACHE[key] = host
    return host


async def serve_in_scope(
    scope: trio.CancelScope,
    transport: Transport,
    host: str,
    port: int,
    *,
    task_status: TaskStatus[Address] = trio.TASK_STATUS_IGNORED,
) -> None:
    """``transport.serve(host, port)`` inside ``scope``, so that one listener can be stopped
    alone (``nursery.start`` reports the bound address)."""
    with scope:
        await transport.serve(host, port, task_status=task_status)
