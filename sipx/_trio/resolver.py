"""Name resolution: RFC 3263 NAPTR and SRV lookups (dnspython, on trio), A/AAAA, cached.

``locate_all`` is what the client calls for a next hop: a host name without a port is looked up
as NAPTR (for the SRV name of our transport), then SRV (``_sip._udp.example.com``... when
NAPTR names none; see ``sipx._core.locate``), its targets tried
in RFC 2782 order until one resolves; otherwise, or when DNS has no SRV records, the host is
resolved with the default port. WebSocket next hops (RFC 7118) are not looked up in SRV:
their host is resolved with the URI's port, else 80 (WS) or 443 (WSS). By default SRV queries
follow the system's resolver configuration and addresses come from ``getaddrinfo`` (so
/etc/hosts applies); with ``nameservers`` every query goes to those servers (``localhost``
excepted).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import random
import socket
from collections.abc import Sequence
from typing import Any

import trio

from .._core.locate import (
    NaptrRecord,
    SrvRecord,
    is_localhost,
    order_srv,
    srv_name,
    srv_name_from_naptr,
    uses_srv,
)
from .._errors import TransportError
from .transport import Address

log = logging.getLogger("sipx.resolver")

_SRV_CACHE_SECONDS = 300.0  # at most; a record's TTL shortens it

WS_DEFAULT_PORTS = {"WS": 80, "WSS": 443}
"""The port of a WebSocket server whose URI names none: HTTP's (RFC 6455 3)."""


@functools.lru_cache(maxsize=1024)
def is_ip(host: str) -> bool:
    """Is ``host`` an IP address literal? Remembered per host: every request asks."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def address_literal(host: str, port: int | None) -> Address | None:
    """``(host, port)`` when ``host`` is an IP address (brackets allowed) and the port is
    given: where a request goes with no look-up at all (RFC 3263 4.1, 4.2); else None."""
    if port is None:
        return None
    host = host[1:-1] if host.startswith("[") else host
    return (host, port) if is_ip(host) else None


def _nameserver(text: str) -> tuple[str, int]:
    """``"10.0.0.53"``, ``"10.0.0.53:5353"``, ``"[::1]:53"`` -> (address, port)."""
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 53
    elif text.count(":") == 1:
        host, _, number = text.partition(":")
        port = int(number)
    if not is_ip(host):
        raise ValueError(f"a name server must be an IP address (with an optional port): {text!r}")
    return host, port


def _target(text: str) -> str:
    return "" if text == "." else text  # "." : the service is not offered (RFC 2782)


class Resolver:
    def __init__(self, nameservers: Sequence[str] | None = None, *, lifetime: float = 5.0) -> None:
        self._servers = [_nameserver(text) for text in nameservers] if nameservers else None
        self._lifetime = lifetime
        self._dns: Any = None  # dns.asyncresolver.Resolver, built on first use
        self._cache: dict[tuple[str, int], Address] = {}
        # name -> (until, dnspython records), per record type
        self._srv_cache: dict[str, tuple[float, list[Any]]] = {}
        self._naptr_cache: dict[str, tuple[float, list[Any]]] = {}
        self._names: dict[Address, str] = {}  # address -> the name it was reached by

    def name_for(self, address: Address) -> str | None:
        """The host name last resolved to ``address`` (TLS checks certificates against it)."""
        return self._names.get(address)

    async def locate_all(
        self, host: str, port: int | None, *, scheme: str, transport: str
    ) -> list[Address]:
        """Every address to try, in order: one, or one per SRV target that resolves (the
        client moves to the next when a transaction fails on the transport, RFC 3263 4.3)."""
        default = 5061 if scheme == "sips" or transport.upper() == "TLS" else 5060
        host = host[1:-1] if host.startswith("[") else host
        websocket = WS_DEFAULT_PORTS.get(transport.upper())
        if websocket is not None:  # RFC 7118 defines no SRV use: the URI's host and port
            return [await self.resolve(host, port or websocket)]
        if not uses_srv(host, port):
            return [await self.resolve(host, port or default)]
        naptr = srv_name_from_naptr(await self._naptr(host), scheme, transport)
        name = naptr or srv_name(host, scheme, transport)
        records = await self._srv(name)
        addresses: list[Address] = []
        failures: list[str] = []
        for record in order_srv(records, random.random):
            try:
                address = await self.resolve(record.target, record.port)
            except TransportError as exc:
                failures.append(str(exc))
                continue
            # RFC 5922 4: a TLS certificate must name the URI's domain, not the SRV target.
            self._names[address] = host
            if address not in addresses:
                addresses.append(address)
        if addresses:
            return addresses
        if records and not failures:
            raise TransportError(f"{name}: the domain says it offers no such service")
        if failures:
            log.info("no SRV target of %s resolved (%s); trying %s", name, failures, host)
        return [await self.resolve(host, default)]

    async def resolve(self, host: str, port: int) -> Address:
        host = host[1:-1] if host.startswith("[") else host
        if is_ip(host):
            return (host, port)
        key = (host.lower(), port)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        if self._servers is not None and not is_localhost(host):
            address = (await self._query_address(host), port)
        else:
            try:
                infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            except (OSError, UnicodeError) as exc:  # UnicodeError: not a valid IDNA name
                raise TransportError(f"cannot resolve {host}: {exc}") from exc
            # Prefer IPv4: most SIP servers and NATs still speak it first.
            infos.sort(key=lambda info: info[0] != socket.AF_INET)
            address = (str(infos[0][4][0]), port)
        self._cache[key] = address
        self._names[address] = host
        return address

    # -- DNS ---------------------------------------------------------------------------------
    def _resolver(self) -> Any:
        if self._dns is None:
            import dns.asyncresolver
            import dns.nameserver
            import dns.resolver

            if self._servers is None:
                try:
                    self._dns = dns.asyncresolver.Resolver()
                except dns.resolver.NoResolverConfiguration:
                    self._dns = False  # no DNS configured: addresses come from getaddrinfo
            else:
                self._dns = dns.asyncresolver.Resolver(configure=False)
                self._dns.nameservers = [
                    dns.nameserver.Do53Nameserver(address, port) for address, port in self._servers
                ]
        return self._dns

    async def _srv(self, name: str) -> list[SrvRecord]:
        records = await self._records(name, "SRV", self._srv_cache)
        return [
            SrvRecord(r.priority, r.weight, r.port, _target(r.target.to_text(True)))
            for r in records
        ]

    async def _naptr(self, domain: str) -> list[NaptrRecord]:
        records = await self._records(domain, "NAPTR", self._naptr_cache)
        return [
            NaptrRecord(
                r.order,
                r.preference,
                r.flags.decode("ascii", "replace"),
                r.service.decode("ascii", "replace"),
                _target(r.replacement.to_text(True)),
            )
            for r in records
        ]

    async def _records(
        self, name: str, kind: str, cache: dict[str, tuple[float, list[Any]]]
    ) -> list[Any]:
        """The ``kind`` records of ``name`` (cached for their TTL, at most 300 s); [] when
        there are none or DNS does not answer."""
        now = trio.current_time()
        cached = cache.get(name)
        if cached is not None and cached[0] > now:
            return list(cached[1])
        import dns.exception
        import dns.resolver

        resolver = self._resolver()
        if resolver is False:
            return []
        try:
            answer = await resolver.resolve(name, kind, lifetime=self._lifetime)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            records: list[Any] = []
            ttl = _SRV_CACHE_SECONDS
        except dns.exception.DNSException as exc:  # timeout, no name server answered...
            log.info("%s lookup of %s failed: %s", kind, name, exc)
            return []
        else:
            records = list(answer)
            ttl = min(float(answer.rrset.ttl), _SRV_CACHE_SECONDS)
        cache[name] = (now + ttl, records)
        return records

    async def _query_address(self, host: str) -> str:
        import dns.exception

        resolver = self._resolver()
        failures = []
        for kind in ("A", "AAAA"):
            try:
                answer = await resolver.resolve(host, kind, lifetime=self._lifetime)
            except dns.exception.DNSException as exc:
                failures.append(f"{kind}: {exc}")
                continue
            return str(next(iter(answer)))
        raise TransportError(f"cannot resolve {host}: {'; '.join(failures)}")
