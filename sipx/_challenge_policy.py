"""Which digest challenges the client answers with your credentials (the credentials policy).

Over UDP anyone who sees (or guesses) a request's branch can send a 401/407 for it, with a
realm and nonce of their choosing; answering would hand them a digest of the password to
attack offline, or to replay toward the real server. So a challenge is answered only when it
came from the IP address the request was sent to, its next hop: the target domain's
server, or the outbound proxy (or first Route), which relays the challenges of the servers
behind it; or from a host listed in ``Auth.Digest(..., hosts=[...])`` (a name, an address,
either with a port to allow only that one). With ``realm=`` set, the realm must
match too. A challenge refused is returned to the caller with the reason in
``response.challenge_unanswered``.

:class:`ChallengeSources` holds the addresses of the listed host names (resolved before a
request is sent: the flow that checks them is synchronous) and says why a response's
source is not trusted.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable

import trio

from ._auth import Auth, split_host
from ._core.message import Response
from ._trio.transport import Address

log = logging.getLogger("sipx")

_RESOLVED_FOR = 300.0  # seconds a listed host name's addresses are kept


def _normal(host: str) -> str:
    """One spelling per IP address (``::ffff:192.0.2.1`` is ``192.0.2.1``); names as given."""
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return host.lower()
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return False
    return True


def same_host(a: Address, b: Address) -> bool:
    """The same IP address, whatever the ports: a server may answer from another port
    (over TCP from a new connection when ours broke, RFC 3261 18.2.2)."""
    return _normal(a[0]) == _normal(b[0])


class ChallengeSources:
    """The addresses of the hosts credentials list (``hosts=``), and the policy check."""

    def __init__(self) -> None:
        self._names: dict[str, tuple[float, frozenset[str]]] = {}  # name -> (until, IPs)

    async def prepare(self, credentials: Iterable[Auth.Digest | None]) -> None:
        """Resolve the host names the credentials list (once per 300 s each)."""
        now = trio.current_time()
        for entry in credentials:
            if entry is None:
                continue
            for host, _ in map(split_host, entry.hosts):
                if _is_ip(host):
                    continue
                name = host.lower()
                known = self._names.get(name)
                if known is not None and known[0] > now:
                    continue
                self._names[name] = (now + _RESOLVED_FOR, await _addresses(name))

    def refusal(
        self, response: Response, sent_to: Address | None, credentials: Auth.Digest
    ) -> str | None:
        """Why ``response``'s challenge must not be answered, or None when it may be.

        ``sent_to`` is where the request went; a response that did not come over the
        network (no ``source``), or whose request's destination is unknown, is not refused.
        """
        source = response.source
        if source is None or sent_to is None or same_host(source, sent_to):
            return None
        ip = _normal(source[0])
        for host, port in map(split_host, credentials.hosts):
            if port is not None and port != source[1]:
                continue
            name = _normal(host)
            if ip == name or ip in self._names.get(name, (0.0, frozenset()))[1]:
                return None
        shown = f"[{source[0]}]" if ":" in source[0] else source[0]
        target = f"[{sent_to[0]}]" if ":" in sent_to[0] else sent_to[0]
        return (
            f"the {response.status_code} challenge came from {shown}:{source[1]}, not from"
            f" {target}:{sent_to[1]} where the request was sent; not answered (list"
            f" {shown!r} in Auth.Digest(hosts=[...]) if that host may challenge you)"
        )


async def _addresses(name: str) -> frozenset[str]:
    try:
        infos = await trio.socket.getaddrinfo(name, None, type=socket.SOCK_DGRAM)
    except (OSError, UnicodeError) as exc:
        log.warning("cannot resolve %s (listed in Auth.Digest hosts=): %s", name, exc)
        return frozenset()
    return frozenset(_normal(str(info[4][0])) for info in infos)


__all__ = ["ChallengeSources", "same_host"]
