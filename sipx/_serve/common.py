"""What the sans-I/O parts of ``sipx serve`` share: the server's own address and outputs.

Every decision module (:mod:`.proxy`, :mod:`.echo`, :mod:`.registrar`) returns what should
go on the wire as :class:`Outgoing` values; the trio layer (:mod:`.server`) only serialises
them and hands them to the named transport. Addresses are ``(host, port)`` tuples, the
same shape the transports use; for TCP the address is also the connection key, so a reply
to ``source`` goes back over the connection the request came in on.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

from .._core.message import Request, Response
from .._core.parser import parse_message
from .._core.transaction import Event, Resend, Send, Transaction, TransactionLayer
from .._core.uri import URI

Address = tuple[str, int]

TRANSPORTS = ("UDP", "TCP")
"""Transports ``sipx serve`` runs on its port; TLS is added on a port of its own when the
server has a certificate, WS on one of its own when asked (``--ws-port``), and WSS (WebSocket
over TLS) too when the server has a certificate and is asked (``--wss-port``)."""

ALLOW = (
    "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, REGISTER, REFER, NOTIFY, SUBSCRIBE, UPDATE, INFO"
)
"""The Allow header the server and its built-in UA send (Kamailio's list, minus PRACK)."""

SERVER_AGENT = "sipx-serve"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to put on the wire: ``message`` over ``transport`` (UDP/TCP/TLS/WS) to
    ``address``."""

    message: Request | Response
    transport: str
    address: Address


def destination(transaction: Transaction) -> tuple[str, Address]:
    """The ``(transport, address)`` a server transaction was given as its destination."""
    transport, address = cast("tuple[str, Address]", transaction.destination)
    return transport, address


def resent(data: bytes) -> Response:
    """The final response a record of the transaction layer keeps, parsed back (it is
    sent again for a retransmitted request: rare enough to parse)."""
    message = parse_message(data)
    assert isinstance(message, Response)
    return message


class TransactionUser:
    """Base of the server's sans-I/O UAs (:mod:`.echo`, :mod:`.notifier`): runs the events
    of its transaction layer, queues each Send as :class:`Outgoing` and hands every other
    event to ``_dispatch``; ``_drain()`` returns what is queued."""

    def __init__(self, layer: TransactionLayer) -> None:
        self._layer = layer
        self._out: list[Outgoing] = []

    def _dispatch(self, event: Event, now: float) -> None:
        raise NotImplementedError

    def _pump(self, now: float) -> None:
        # Answering a RequestReceived queues more events (the Send of the response): loop.
        while events := self._layer.pop_events():
            for event in events:
                if isinstance(event, Send):
                    transport, address = destination(event.transaction)
                    self._out.append(Outgoing(event.message, transport, address))
                elif isinstance(event, Resend):  # a retransmission answered from a record
                    transport, address = cast("tuple[str, Address]", event.destination)
                    self._out.append(Outgoing(resent(event.data), transport, address))
                else:
                    self._dispatch(event, now)

    def _drain(self) -> list[Outgoing]:
        out, self._out = self._out, []
        return out


def is_ip(host: str) -> bool:
    """True for an IPv4 address or an IPv6 address (with or without brackets)."""
    try:
        ipaddress.ip_address(host[1:-1] if host.startswith("[") else host)
    except ValueError:
        return False
    return True


def default_port(transport: str) -> int:
    return 5061 if transport.upper() == "TLS" else 5060


class ServerIdentity:
    """The server's own host and port, the names it answers to, and its own URIs.

    ``host`` is the address written into Via, Record-Route and Contact; ``aliases`` are more
    host names that mean "this server" in a Request-URI or Route (``localhost`` is always one,
    and every loopback address when ``host`` is a loopback or wildcard address).
    """

    __slots__ = ("_names", "host", "port", "tls_port", "transports", "ws_port", "wss_port")

    def __init__(
        self,
        host: str,
        port: int,
        *,
        transports: Iterable[str] = TRANSPORTS,
        aliases: Iterable[str] = (),
        tls_port: int | None = None,
        ws_port: int | None = None,
        wss_port: int | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.tls_port = tls_port
        self.ws_port = ws_port
        self.wss_port = wss_port
        self.transports = tuple(t.upper() for t in transports)
        if tls_port is not None and "TLS" not in self.transports:
            self.transports += ("TLS",)
        if ws_port is not None and "WS" not in self.transports:
            self.transports += ("WS",)
        if wss_port is not None and "WSS" not in self.transports:
            self.transports += ("WSS",)
        names = {host.lower(), "localhost", *(a.lower() for a in aliases)}
        plain = host[1:-1] if host.startswith("[") else host
        if plain in ("0.0.0.0", "::") or plain.startswith("127.") or plain == "::1":
            names.update({"127.0.0.1", "::1"})
        # IPv6 literals match with and without brackets ("[::1]" in a URI, "::1" in a socket)
        for name in list(names):
            if ":" in name:
                bare = name.strip("[]")
                names.update({bare, f"[{bare}]"})
        self._names = frozenset(names)

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    def port_for(self, transport: str) -> int:
        """The port we serve ``transport`` on (TLS, WS and WSS have their own)."""
        own = {"TLS": self.tls_port, "WS": self.ws_port, "WSS": self.wss_port}.get(
            transport.upper()
        )
        return self.port if own is None else own

    def _ports(self) -> tuple[int, ...]:
        extra = (p for p in (self.tls_port, self.ws_port, self.wss_port) if p is not None)
        return (self.port, *extra)

    def is_ours(self, uri: URI) -> bool:
        """Does ``uri`` name this server (host is one of ours, port one of ours, or absent
        and the default port is)?"""
        if uri.scheme not in ("sip", "sips"):
            return False
        host = (uri.params.get("maddr") or uri.host).lower()
        if host not in self._names:
            return False
        secure = uri.scheme == "sips" or (uri.transport or "").upper() == "TLS"
        return (uri.port or default_port("TLS" if secure else "UDP")) in self._ports()

    def is_our_address(self, address: Address) -> bool:
        host, port = address
        return port in self._ports() and (host.lower() in self._names or host == self.host)

    def uri(self, transport: str, user: str | None = None, *, lr: bool = False) -> str:
        """``sip:[user@]HOST:PORT[;transport=tcp][;lr]`` for one of our transports."""
        host = f"{self.host}:{self.port_for(transport)}"
        text = "sip:" + (f"{user}@" if user else "") + host
        if transport.upper() != "UDP":
            text += f";transport={transport.lower()}"
        if lr:
            text += ";lr"
        return text

    def record_route(self, transport: str) -> str:
        """The Record-Route value for requests that leave (or arrive) over ``transport``."""
        return f"<{self.uri(transport, lr=True)}>"

    def via(self, transport: str, branch: str) -> str:
        host = f"{self.host}:{self.port_for(transport)}"
        return f"SIP/2.0/{transport.upper()} {host};branch={branch}"

    def pick_transport(self, wanted: str | None) -> str:
        """``wanted`` when we run it, else the first transport we do run."""
        if wanted is not None and wanted.upper() in self.transports:
            return wanted.upper()
        if wanted is None and "UDP" in self.transports:
            return "UDP"
        return self.transports[0]
