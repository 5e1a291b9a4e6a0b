"""Where a request goes, and how we name ourselves to the hop it goes to.

:class:`NextHop` chooses the next hop of a request (first Route, outbound proxy or
Request-URI; RFC 3261 8.1.2) and resolves it to the addresses to try in order (RFC 3263),
stamps our top Via (fresh branch, ``rport``; ``alias`` over TCP/TLS, RFC 5923) and, where due,
a Contact, and learns our public address from ``received``/``rport`` (RFC 3581) so that a
client behind a NAT writes a Contact its peers can reach.
"""

from __future__ import annotations

from ._core.ids import IdSource
from ._core.message import Request, Response
from ._core.uri import URI
from ._engine import Engine
from ._errors import ProtocolError
from ._trio.resolver import Resolver
from ._trio.transport import Address, routable_host

# Methods whose requests carry a Contact (they create dialogs or refresh targets).
CONTACT_METHODS = frozenset(
    {"INVITE", "SUBSCRIBE", "REFER", "REGISTER", "NOTIFY", "UPDATE", "OPTIONS"}
)


class NextHop:
    """Next-hop choice, address resolution and our Via/Contact for one user agent."""

    def __init__(
        self,
        engine: Engine,
        resolver: Resolver,
        ids: IdSource,
        *,
        transport_name: str,
        outbound_proxy: URI | None,
        default_user: str,
    ) -> None:
        self.engine = engine
        self.resolver = resolver
        self.ids = ids
        self.transport_name = transport_name
        self.outbound_proxy = outbound_proxy
        self.default_user = default_user
        self.last_destination: str | None = None
        # Our address as each next hop saw it (Via received/rport, RFC 3581), for Contact.
        self.public_addresses: dict[Address, Address] = {}
        self.generated_contacts: dict[str, str] = {}  # Call-ID -> Contact we wrote

    # -- choosing the next hop -----------------------------------------------------------------
    def add_outbound_route(self, request: Request, host: str | None) -> None:
        """RFC 3261 8.1.2: the outbound proxy is a preloaded loose route."""
        proxy = self.outbound_proxy
        if proxy is not None and host is None and "Route" not in request.headers:
            request.headers.add("Route", f"<{proxy.replace(params={**proxy.params, 'lr': None})}>")

    async def candidates(
        self, request: Request, host: str | None = None, port: int | None = None
    ) -> list[Address]:
        """Where to send ``request``, in the order to try (several with DNS SRV, RFC 3263)."""
        if host is not None:
            return await self.resolver.locate_all(
                host,
                port or request.uri.port,
                scheme=request.uri.scheme,
                transport=self.transport_name,
            )
        routes = request.route
        if routes:
            target = routes[0].uri
        elif self.outbound_proxy is not None:
            target = self.outbound_proxy
        else:
            target = request.uri
        return await self.hop_candidates(target, port)

    async def hop_candidates(self, target: URI, port: int | None = None) -> list[Address]:
        """The addresses of the next hop ``target`` (maddr, else host), in the order to try."""
        if target.scheme not in ("sip", "sips"):
            raise ProtocolError(f"cannot send to a {target.scheme}: URI without a proxy")
        return await self.resolver.locate_all(
            target.params.get("maddr") or target.host,
            port or target.port,
            scheme=target.scheme,
            transport=self.transport_name,
        )

    async def address(self, target: URI) -> Address:
        return (await self.hop_candidates(target))[0]

    # -- naming ourselves ----------------------------------------------------------------------
    def local_host(self) -> str:
        """Our bound host; a wildcard bind reports the interface that routes onwards."""
        host = self.engine.require_transport().local_address[0]
        if host in ("0.0.0.0", "::"):
            host = routable_host(host, self.last_destination or "192.0.2.1")
        return host

    def contact_host(self, address: Address) -> tuple[str, int]:
        learned = self.public_addresses.get(address)
        if learned is not None:
            return learned
        host, port = self.engine.require_transport().local_address
        return routable_host(host, address[0]), port

    def contact(self, user: str, host: str, port: int) -> str:
        """Our Contact for ``user`` at ``host:port``, naming the transport unless UDP."""
        transport = self.engine.require_transport().name
        suffix = "" if transport == "UDP" else f";transport={transport.lower()}"
        host = f"[{host}]" if ":" in host else host
        return f"<sip:{user}@{host}:{port}{suffix}>"

    def contact_for(self, request: Request) -> str:
        """The Contact of our responses to ``request`` (toward the last hop we used)."""
        host, port = self.contact_host((self.last_destination or "127.0.0.1", 0))
        return self.contact(request.uri.user or self.default_user, host, port)

    def stamp(self, request: Request, address: Address) -> None:
        """Add our top Via (fresh branch, rport) and, where due, a Contact."""
        transport = self.engine.require_transport()
        host, port = self.contact_host(address)
        via_host = routable_host(transport.local_address[0], address[0])
        via_host = f"[{via_host}]" if ":" in via_host else via_host
        request.headers.prepend(
            "Via",
            f"SIP/2.0/{transport.name} {via_host}:{transport.local_address[1]}"
            f";branch={self.ids.branch()};rport" + ("" if transport.name == "UDP" else ";alias"),
        )
        if request.method in CONTACT_METHODS and "Contact" not in request.headers:
            contact = self.contact(request.from_.uri.user or self.default_user, host, port)
            request.headers["Contact"] = contact
            self.generated_contacts[request.call_id] = contact
            while len(self.generated_contacts) > 256:
                self.generated_contacts.pop(next(iter(self.generated_contacts)))
        self.last_destination = address[0]

    def learn_public_address(self, response: Response, source: Address) -> None:
        """Remember how ``source`` saw us (received/rport): behind a NAT, later Contacts
        toward it carry that address."""
        via = response.top_via
        received, rport = via.received, via.rport
        if received is None and rport is None:
            return
        transport = self.engine.require_transport()
        host = received or via.host
        port = rport or via.port or transport.local_address[1]
        if transport.reliable:
            # over TCP rport is the ephemeral port of our outgoing connection, which takes
            # no new connections: a Contact carrying it would be unreachable (and an
            # un-REGISTER with it would not match the binding). Keep our listening port.
            port = via.port or transport.local_address[1]
        if (host, port) != (via.host, via.port):
            self.public_addresses[source] = (host, port)
        else:
            self.public_addresses.pop(source, None)


__all__ = ["CONTACT_METHODS", "NextHop"]
