"""Locating SIP servers (RFC 3263), sans-I/O: when to ask DNS, which SRV name to ask (from
the domain's NAPTR records, else built from the scheme and transport), and in what order to
try the targets (RFC 2782).

The transport of a request is chosen before (the URI's ``transport`` parameter, else the
client's), so NAPTR does not choose it here: it can only name the SRV records to use for
that transport (RFC 3263 4.1).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SrvRecord:
    """One SRV answer (RFC 2782)."""

    priority: int
    weight: int
    port: int
    target: str  # without the trailing dot; "" when the record says "not offered here"


@dataclass(frozen=True, slots=True)
class NaptrRecord:
    """One NAPTR answer (RFC 3403) as RFC 3263 uses it."""

    order: int
    preference: int
    flags: str
    service: str
    replacement: str  # without the trailing dot; "" for "."


@functools.lru_cache(maxsize=1024)
def _is_ip(host: str) -> bool:
    """Is ``host`` an IP address literal (brackets allowed)? Remembered per host: the
    next hop of every request asks."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def is_localhost(host: str) -> bool:
    """``localhost`` and names under it, which never go to DNS (RFC 6761 6.3)."""
    name = host.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


def uses_srv(host: str, port: int | None) -> bool:
    """RFC 3263 4.2: SRV is looked up for a host name without an explicit port."""
    return port is None and not _is_ip(host) and not is_localhost(host)


def srv_name(host: str, scheme: str, transport: str) -> str:
    """``_sip._udp.example.com``, ``_sip._tcp...`` or ``_sips._tcp...`` (TLS or sips:)."""
    secure = scheme == "sips" or transport.upper() == "TLS"
    service = "_sips" if secure else "_sip"
    protocol = "_udp" if transport.upper() == "UDP" and not secure else "_tcp"
    return f"{service}.{protocol}.{host.rstrip('.')}"


def naptr_service(scheme: str, transport: str) -> str:
    """The NAPTR service field for our transport: ``SIP+D2U``, ``SIP+D2T`` or ``SIPS+D2T``."""
    if scheme == "sips" or transport.upper() == "TLS":
        return "SIPS+D2T"
    return "SIP+D2U" if transport.upper() == "UDP" else "SIP+D2T"


def srv_name_from_naptr(records: Iterable[NaptrRecord], scheme: str, transport: str) -> str | None:
    """The SRV name the best usable NAPTR record points to (lowest order, then preference),
    or None when no record offers our transport (then :func:`srv_name` applies)."""
    wanted = naptr_service(scheme, transport)
    usable = [
        r
        for r in records
        if r.flags.lower() == "s" and r.service.upper() == wanted and r.replacement
    ]
    if not usable:
        return None
    return min(usable, key=lambda r: (r.order, r.preference)).replacement


def order_srv(records: Iterable[SrvRecord], random: Callable[[], float]) -> list[SrvRecord]:
    """The order to try ``records`` in: by priority, then weighted by chance (RFC 2782).

    ``random()`` returns a float in [0, 1). A single record whose target is "." (kept as
    "") says the service is not offered: the result is then empty.
    """
    records = list(records)
    if len(records) == 1 and records[0].target == "":
        return []
    ordered: list[SrvRecord] = []
    for priority in sorted({r.priority for r in records}):
        # Zero-weight records first, so that they keep a small chance (RFC 2782).
        group = sorted((r for r in records if r.priority == priority), key=lambda r: r.weight > 0)
        while group:
            pick = random() * sum(r.weight for r in group)
            index, running = 0, group[0].weight
            while running < pick:  # the first record whose running weight sum reaches pick
                index += 1
                running += group[index].weight
            ordered.append(group.pop(index))
    return [r for r in ordered if r.target != ""]
