"""Which transports a client runs, on which ports, and how they are made.

A client always runs the transport of its requests (``transport=``). By default a client
left on UDP also listens on TCP, on the same port, as softphones do; with a certificate
(``cert=``) a UDP or TCP client listens on TLS too. Those extra listeners are best effort:
on a given port already taken for them (by another program, or by another client on the
same port, as in the guide's "Transport Personalizado" with a TCP client and a UDP client
on 5060) the client runs without them, and says so in the log (``sipx.transport``). A
client that chose TCP, TLS, WS or WSS does not listen on UDP: TLS, WS and WSS are chosen
where plain SIP cannot go or should not be answered in clear. ``transports=`` names the set
instead; it must include ``transport=``, and every transport in it must start.

Ports: UDP and TCP share ``local_port`` (port 0: one port free for both). TLS takes
``tls_port`` when given, else ``local_port`` when TCP does not run, else ``local_port + 1``
(a free port when ``local_port`` is 0). WS and WSS listen on nothing: an RFC 7118 client is
reached over the connections it opens.

A client on a memory network (``network=``) runs ``transport=`` alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from ._engine import Engine, PortGroup, TransportFactory
from ._trio.resolver import Resolver
from ._trio.tcp import TCPTransport
from ._trio.tls import TLSCert, TLSTransport, TLSVerify, client_context, server_context
from ._trio.transport import MessageHandler, Network, Transport
from ._trio.udp import UDPTransport
from ._trio.ws import WSTransport

TRANSPORT_NAMES = ("UDP", "TCP", "TLS", "WS", "WSS")
"""Every transport a client can run."""

LISTENING = frozenset({"UDP", "TCP", "TLS"})
"""The transports that listen on a port (WS and WSS only connect out)."""


def _names(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(
            f"{name} names a transport ('UDP', 'TCP', 'TLS', 'WS', 'WSS'), not {value!r}"
        )
    upper = value.upper()
    if upper not in TRANSPORT_NAMES:
        raise ValueError(f"unsupported transport {value!r}: use 'UDP', 'TCP', 'TLS', 'WS' or 'WSS'")
    return upper


class ClientTransports:
    """The transports one client runs (``names``, the default one first) and their ports."""

    def __init__(
        self,
        transport: str,
        transports: Sequence[str] | None = None,
        *,
        local_port: int = 5060,
        tls_port: int | None = None,
        verify: TLSVerify = True,
        cert: TLSCert | None = None,
        network: Network | None = None,
    ) -> None:
        self.default = _names("transport", transport)
        if network is not None and self.default not in LISTENING:
            raise ValueError(
                f"a memory network (network=) carries UDP, TCP and TLS, not {transport!r}"
            )
        self.optional: frozenset[str] = frozenset()
        if transports is None:
            names: tuple[str, ...] = (self.default,)
            if network is None and self.default == "UDP":
                names += ("TCP",)
            if network is None and self.default in ("UDP", "TCP") and cert is not None:
                names += ("TLS",)
            self.optional = frozenset(names) - {self.default}
        else:
            if isinstance(transports, str) or not isinstance(transports, Sequence):
                raise TypeError(f"transports is a sequence of transport names, not {transports!r}")
            names = tuple(dict.fromkeys(_names("transports", t) for t in transports))
            if self.default not in names:
                raise ValueError(
                    f"transports={tuple(transports)!r} must include transport={transport!r}"
                    " (the transport of the client's requests)"
                )
            if network is not None and names != (self.default,):
                raise ValueError(
                    "a client on a memory network (network=) runs one transport: transport="
                )
        self.names = (self.default, *(n for n in names if n != self.default))
        self.local_port = local_port
        if tls_port is not None:
            self.tls_port = tls_port
        elif "TCP" not in self.names:
            self.tls_port = local_port
        else:
            self.tls_port = local_port + 1 if 0 < local_port < 65535 else 0
        self._network = network
        secure = network is None and ("TLS" in self.names or "WSS" in self.names)
        # Checked now, so that a wrong file is an error here rather than at first send.
        self._client_context = client_context(verify, cert) if secure else None
        self._server_context = server_context(cert) if secure and cert is not None else None

    def groups(self, engine: Engine, resolver: Resolver) -> list[PortGroup]:
        """What :meth:`Engine.run` starts: UDP and TCP on one port, TLS on its own, the
        WebSocket transports on none."""
        if self._network is not None:
            return [(self.local_port, [self._memory(self._network)], frozenset())]
        shared = [self._factory(n, engine, resolver) for n in self.names if n in ("UDP", "TCP")]
        groups: list[PortGroup] = []
        if shared:
            groups.append((self.local_port, shared, self.optional))
        if "TLS" in self.names:
            tls = [self._factory("TLS", engine, resolver)]
            groups.append((self.tls_port, tls, self.optional))
        websockets = [self._factory(n, engine, resolver) for n in self.names if n in ("WS", "WSS")]
        if websockets:
            groups.append((0, websockets, frozenset()))
        return groups

    def running(self, engine: Engine) -> tuple[str, ...]:
        """The transports running (once the client is open; before, those it will try),
        ``transport=`` first."""
        if not engine.transports:
            return self.names
        return tuple(name for name in self.names if name in engine.transports)

    def _memory(self, network: Network) -> TransportFactory:
        def make(on_message: MessageHandler) -> Transport:
            return network.transport(on_message, self.default)

        return make

    def _factory(self, name: str, engine: Engine, resolver: Resolver) -> TransportFactory:
        on_error = partial(engine.transport_error, transport=name)

        def make(on_message: MessageHandler) -> Transport:
            if name == "UDP":
                return UDPTransport(on_message, on_error=on_error)
            if name == "TCP":
                return TCPTransport(on_message, on_error=on_error, limits=engine.limits)
            if name == "TLS":
                assert self._client_context is not None
                return TLSTransport(
                    on_message,
                    client_context=self._client_context,
                    server_context=self._server_context,
                    server_name=resolver.name_for,
                    on_error=on_error,
                    limits=engine.limits,
                )
            return WSTransport(
                on_message,
                secure=name == "WSS",
                client_context=self._client_context,
                server_name=resolver.name_for,
                on_error=on_error,
                limits=engine.limits,
            )

        return make

    @staticmethod
    def listening_port(engine: Engine) -> int:
        """The port of the default transport; for WS/WSS (which listen on nothing), that
        of the first transport that listens, else 0."""
        default = engine.require_transport()
        if default.name in LISTENING or default.local_address[1]:
            return default.local_address[1]
        for transport in engine.transports.values():
            if transport.name in LISTENING:
                return transport.local_address[1]
        return 0


__all__ = ["LISTENING", "TRANSPORT_NAMES", "ClientTransports"]
