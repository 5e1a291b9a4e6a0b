"""Name resolution through trio's getaddrinfo, with a small cache.

This is the seam for RFC 3263 (NAPTR/SRV) later: the client asks for the addresses of a
SIP URI's host and port; today that is an A/AAAA lookup with the default port.
"""

from __future__ import annotations

import ipaddress
import socket

import trio

from .._errors import TransportError
from .transport import Address


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Resolver:
    def __init__(self) -> None:
        self._cache: dict[tuple[str, int], Address] = {}
        self._names: dict[Address, str] = {}  # address -> the name resolved to it

    def name_for(self, address: Address) -> str | None:
        """The host name last resolved to ``address`` (TLS checks certificates against it)."""
        return self._names.get(address)

    async def resolve(self, host: str, port: int) -> Address:
        host = host[1:-1] if host.startswith("[") else host
        if is_ip(host):
            return (host, port)
        key = (host.lower(), port)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
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
