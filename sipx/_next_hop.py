"""Where a request goes, and how we name ourselves to the hop it goes to.

:class:`NextHop` chooses the next hop of a request (first Route, outbound proxy or
Request-URI; RFC 3261 8.1.2), the transport it goes over (the next hop URI's ``transport``
parameter when the client runs that transport, else the client's ``transport=``) and the
addresses to try in order (RFC 3263); it stamps our top Via (fresh branch, ``rport``;
``alias`` over TCP/TLS, RFC 5923) and, where due, a Contact, both naming the transport in
use and its port, and learns our public address from ``received``/``rport`` (RFC 3581) so
that a client behind a NAT writes a Contact its peers can reach.

Over WebSocket (RFC 7118) the client cannot be reached but over its connection: its Via
sent-by and its Contact host are a random name under ``.invalid`` (RFC 7118 section 5.2,
RFC 6761 6.4), the same for the client's lifetime, and the Contact says ``;transport=ws``
(for WSS too). The server routes to the client over the connection the client opened.
"""

from __future__ import annotations

from itertools import islice

from ._core.header_types import parse_via
from ._core.ids import IdSource
from ._core.message import Request, Response
from ._core.request_template import FROM_USER
from ._core.transaction import MAGIC_COOKIE
from ._core.uri import URI, escape_user
from ._engine import Engine
from ._errors import ParseError, ProtocolError, TransportError
from ._trio.resolver import Resolver, address_literal
from ._trio.transport import Address, Transport, routable_host

WEBSOCKETS = frozenset({"WS", "WSS"})
"""The transports reached only over the connections we open (RFC 7118)."""

# How many of the Contacts we wrote are remembered (by Call-ID), so that a digest retry
# writes its Contact anew (the challenge may have taught us our NAT address): at least
# this many, the last ones, and at most twice as many (the oldest are dropped in a batch).
GENERATED_CONTACTS = 256

_UNKNOWN = object()  # (a typed view not there)

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
        self.transport_name = transport_name  # what requests use unless their URI says
        self.outbound_proxy = outbound_proxy
        self.default_user = default_user
        self.last_destination: str | None = None
        # Our address as each next hop saw it (Via received/rport, RFC 3581), for Contact;
        # by (transport, next hop address).
        self.public_addresses: dict[tuple[str, Address], Address] = {}
        # Call-ID -> Contact we wrote, for the last GENERATED_CONTACTS requests (or more)
        self.generated_contacts: dict[str, str] = {}
        self._ws_host: str | None = None
        self._from_users: dict[str, str | None] = {}  # From without its tag -> its user
        # What stamp() writes but the branch, by (transport, its local address, next hop
        # address, Contact user): the Via around the branch and the Contact. Dropped when a
        # public address is learned (the Contact names it).
        self._stamps: dict[tuple[str, Address, Address, str], tuple[str, str, str]] = {}
        # contact_for()'s answers by (transport, its local address, last destination, user);
        # dropped with the stamps when a public address is learned.
        self._contacts: dict[tuple[object, Address, str | None, str], str] = {}

    # -- choosing the next hop -----------------------------------------------------------------
    def add_outbound_route(self, request: Request, host: str | None) -> None:
        """RFC 3261 8.1.2: the outbound proxy is a preloaded loose route."""
        proxy = self.outbound_proxy
        if proxy is not None and host is None and "Route" not in request.headers:
            request.headers.add("Route", f"<{proxy.replace(params={**proxy.params, 'lr': None})}>")

    def target(self, request: Request) -> URI:
        """The URI of ``request``'s next hop: first Route, outbound proxy, Request-URI."""
        if "route" in request.headers.lookup():  # (the index: no get_first() look-up)
            routes = request.route
            if routes:
                return routes[0].uri
        if self.outbound_proxy is not None:
            return self.outbound_proxy
        return request.uri

    def transport_for(self, target: URI) -> str:
        """The transport of a request whose next hop is ``target``: the one its
        ``transport`` parameter names when the client runs it (``ws`` is WS or WSS,
        whichever runs; WSS first for a ``sips:`` URI), else the client's transport."""
        running = self.engine.transports
        wanted = target.params.get("transport")
        wanted = wanted.upper() if wanted else ""
        if wanted == "WS":
            choices = ("WSS", "WS") if target.scheme == "sips" else ("WS", "WSS")
            wanted = next((name for name in choices if name in running), wanted)
        elif not wanted and target.scheme == "sips" and self.transport_name not in ("TLS", "WSS"):
            wanted = "TLS"
        chosen = wanted if wanted in running else self.transport_name
        if (wanted in ("TLS", "WSS") or target.scheme == "sips") and chosen not in ("TLS", "WSS"):
            # Never in clear what the URI asks to be secured (RFC 3261 26.2.2).
            raise TransportError(
                f"{target} asks for {wanted or 'TLS'}, which this client does not run"
                f" (it runs {', '.join(running)}): add it with transport= or transports="
            )
        return chosen

    def request_transport(self, request: Request) -> str:
        """The transport ``request`` goes over (see :meth:`transport_for`)."""
        return self.transport_for(self.target(request))

    async def candidates(
        self, request: Request, host: str | None = None, port: int | None = None
    ) -> list[Address]:
        """Where to send ``request``, in the order to try (several with DNS SRV, RFC 3263)."""
        if host is not None:
            return await self.resolver.locate_all(
                host,
                port or request.uri.port,
                scheme=request.uri.scheme,
                transport=self.request_transport(request),
            )
        return await self.hop_candidates(self.target(request), port)

    async def hop_candidates(self, target: URI, port: int | None = None) -> list[Address]:
        """The addresses of the next hop ``target`` (maddr, else host), in the order to try."""
        literal = self.literal_candidates(target, port)
        if literal is not None:
            return literal
        host = target.params.get("maddr") or target.host
        return await self.resolver.locate_all(
            host, port or target.port, scheme=target.scheme, transport=self.transport_for(target)
        )

    def literal_candidates(self, target: URI, port: int | None = None) -> list[Address] | None:
        """The one address of the next hop ``target`` when it names an IP address and a
        port (nothing to look up, RFC 3263 4.2), else None (see :meth:`hop_candidates`,
        which raises as this does for a target no transport of ours may reach)."""
        return self.literal_hop(target, port)[0]

    def literal_hop(self, target: URI, port: int | None = None) -> tuple[list[Address] | None, str]:
        """:meth:`literal_candidates` and the transport toward ``target``
        (:meth:`transport_for`), found once: :meth:`stamp` takes that name."""
        if target.scheme not in ("sip", "sips"):
            raise ProtocolError(f"cannot send to a {target.scheme}: URI without a proxy")
        name = self.transport_for(target)
        literal = address_literal(target.params.get("maddr") or target.host, port or target.port)
        return (None if literal is None else [literal]), name

    async def address(self, target: URI) -> Address:
        return (await self.hop_candidates(target))[0]

    # -- naming ourselves ----------------------------------------------------------------------
    @property
    def ws_host(self) -> str:
        """Our Via sent-by and Contact host over WebSocket: ``<random>.invalid``."""
        if self._ws_host is None:
            self._ws_host = f"{self.ids.token(6)}.invalid"
        return self._ws_host

    def local_host(self) -> str:
        """Our bound host; a wildcard bind reports the interface that routes onwards."""
        host = self.engine.require_transport().local_address[0]
        if host in ("0.0.0.0", "::"):
            host = routable_host(host, self.last_destination or "192.0.2.1")
        return host

    def contact_host(self, address: Address, transport_name: str | None = None) -> tuple[str, int]:
        """Our host and port in a Contact for ``address`` over a transport (the default
        one for None): learned from ``received``/``rport`` when known."""
        transport = self.engine.require_transport(transport_name)
        learned = self.public_addresses.get((transport.name, address))
        if learned is not None:
            return learned
        host, port = transport.local_address
        return routable_host(host, address[0]), port

    def contact(self, user: str, host: str, port: int, transport_name: str | None = None) -> str:
        """Our Contact for ``user`` at ``host:port`` over a transport (the default one for
        None), naming the transport unless UDP; over WebSocket, the ``.invalid`` host.
        ``user`` is unescaped, as a URI's ``user`` holds it: it is written escaped."""
        transport = self.engine.require_transport(transport_name).name
        user = escape_user(user)
        if transport in WEBSOCKETS:
            return f"<sip:{user}@{self.ws_host};transport=ws>"
        suffix = "" if transport == "UDP" else f";transport={transport.lower()}"
        host = f"[{host}]" if ":" in host else host
        return f"<sip:{user}@{host}:{port}{suffix}>"

    def contact_for(self, request: Request) -> str:
        """The Contact of our responses to ``request``, for the transport its top Via
        names (the one it came over; ours for a request we sent). The same for every
        request of one user over one transport: kept, by what it is made from."""
        try:
            name = request.top_via.transport
        except ParseError:
            name = self.transport_name
        name = name if name in self.engine.transports else self.transport_name
        transport = self.engine.require_transport(name)  # (raises once the client closed)
        user = request.uri.user or self.default_user
        key = (transport, transport.local_address, self.last_destination, user)
        contacts = self._contacts
        contact = contacts.get(key)
        if contact is None:
            host, port = self.contact_host((self.last_destination or "127.0.0.1", 0), name)
            contact = contacts[key] = self.contact(user, host, port, name)
            while len(contacts) > 64:
                del contacts[next(iter(contacts))]
        return contact

    def stamp(
        self, request: Request, address: Address, transport_name: str | None = None
    ) -> tuple[Transport, str]:
        """Add our top Via (fresh branch; ``rport``, and ``alias`` over TCP/TLS) for the
        transport ``request`` goes over (``transport_name`` when the caller found it for
        this request already) and, where due, a Contact; return that transport and the
        Via's branch (the transaction takes it from here: no view of the Via is made for
        it, one is parsed from the text if anything reads it)."""
        if transport_name is None:
            transport_name = self.request_transport(request)
        transport = self.engine.require_transport(transport_name)
        name = transport.name
        # Read what the Contact needs before changing the headers (each change drops
        # their index and parsed views).
        headers = request.headers
        call_id = None
        user = ""
        if request.method in CONTACT_METHODS and "contact" not in headers.lookup():
            from_user = headers.typed.get(FROM_USER, _UNKNOWN)  # a template's request has it
            if from_user is _UNKNOWN:
                from_user = self._from_user(request)
            user = from_user or self.default_user
            call_id = request.call_id
        key = (name, transport.local_address, address, user)
        stamp = self._stamps.get(key)
        if stamp is None:
            stamp = self._stamps[key] = self._stamp_for(name, address, user)
            while len(self._stamps) > 256:
                del self._stamps[next(iter(self._stamps))]
        via_head, via_tail, contact = stamp
        branch = self.ids.branch()
        # (clean: _stamp_for checked its parts, the branch is hex)
        if call_id is None:
            headers.prepend_via(f"{via_head}{branch}{via_tail}", clean=True)
        else:
            headers.prepend_via(f"{via_head}{branch}{via_tail}", contact, clean=True)
            contacts = self.generated_contacts
            contacts[call_id] = contact
            if len(contacts) > 2 * GENERATED_CONTACTS:
                for old in list(islice(contacts, len(contacts) - GENERATED_CONTACTS)):
                    del contacts[old]
        self.last_destination = address[0]
        return transport, branch

    def _from_user(self, request: Request) -> str | None:
        """The user part of ``request``'s From URI. The From of requests made one after
        another differs only by its tag (a token at its end): the user is kept per From
        text without that tag, learned from a full parse."""
        text = request.headers.get_first("From") or ""
        head, _, tag = text.rpartition(";tag=")
        if head and tag.isalnum() and tag.isascii():
            users = self._from_users
            if head in users:
                return users[head]
        from_ = request.from_
        user = from_.uri.user
        if from_.tag is not None and text == f"{head};tag={from_.tag}" and tag.isalnum():
            self._from_users[head] = user
            while len(self._from_users) > 64:
                del self._from_users[next(iter(self._from_users))]
        return user

    def _stamp_for(self, name: str, address: Address, user: str) -> tuple[str, str, str]:
        """The Via before and after its branch and the Contact (for ``user``, or ""),
        checked once here: stamp() writes them as they are."""
        transport = self.engine.require_transport(name)
        if name in WEBSOCKETS:
            head, tail = f"SIP/2.0/{name} {self.ws_host};branch=", ""
        else:
            via_host = routable_host(transport.local_address[0], address[0])
            via_host = f"[{via_host}]" if ":" in via_host else via_host
            head = f"SIP/2.0/{name} {via_host}:{transport.local_address[1]};branch="
            tail = ";rport" + ("" if name == "UDP" else ";alias")
        contact = ""
        if user:
            host, port = self.contact_host(address, name)
            contact = self.contact(user, host, port, name)
        # stamp() writes these as they are (Headers.prepend_via(clean=True)): they begin
        # with "SIP/2.0/", ";" or "<" and end with a letter or ">" (nothing to strip); the
        # user is escaped, but a host with CR or LF is refused here, as the header's check
        # would refuse it.
        for value in (head, tail, contact):
            if "\r" in value or "\n" in value:
                raise ValueError(f"header value must not contain CR or LF: {value!r}")
        parse_via(f"{head}{MAGIC_COOKIE}{tail}")  # a host that makes a bad Via raises here
        return head, tail, contact

    def learn_public_address(self, response: Response, source: Address) -> None:
        """Remember how ``source`` saw us (received/rport): behind a NAT, later Contacts
        toward it over the same transport carry that address."""
        via = response.headers.typed.get("top_via")  # read on receipt: cached
        if via is None:
            via = response.top_via
        params = via.params
        if "received" not in params and not params.get("rport"):
            return  # the usual response: nothing filled in (the views' reads, inline)
        received, rport = via.received, via.rport
        if (received is None and rport is None) or via.transport in WEBSOCKETS:
            return  # over WebSocket we are reached over the connection, whatever we say
        transport = self.engine.require_transport(via.transport)
        host = received or via.host
        port = rport or via.port or transport.local_address[1]
        if transport.reliable:
            # over TCP rport is the ephemeral port of our outgoing connection, which takes
            # no new connections: a Contact carrying it would be unreachable (and an
            # un-REGISTER with it would not match the binding). Keep our listening port.
            port = via.port or transport.local_address[1]
        key = (transport.name, source)
        known = self.public_addresses.get(key)
        if (host, port) != (via.host, via.port):
            self.public_addresses[key] = (host, port)
        else:
            self.public_addresses.pop(key, None)
        if self.public_addresses.get(key) != known:
            self._stamps.clear()  # our Contacts toward ``source`` change
            self._contacts.clear()


__all__ = ["CONTACT_METHODS", "WEBSOCKETS", "NextHop"]
