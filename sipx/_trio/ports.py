"""Starting several transports on one port (UDP and TCP on 5060, as softphones listen).

:func:`start_on_one_port` starts each transport in turn on the same port. With port 0 the
first one binds wherever the kernel puts it and the others follow it to that port; when one
of them finds the port taken, every transport of the attempt is stopped and the whole set
tries again on a new port (a few times). On a given port, the transports said to be
optional are left out when their port is taken (a client's default TCP listener beside its
UDP one: another program may hold TCP on that port). The client and ``sipx serve`` both use
it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Sequence

import trio

from .._errors import TransportError
from .transport import Address, Transport

log = logging.getLogger("sipx.transport")

ATTEMPTS = 25
"""How many ports port 0 tries before giving up."""

Starter = Callable[[Transport, str, int], Awaitable[tuple[Address, trio.CancelScope]]]
"""Start ``transport.serve(host, port)`` in some nursery; return the bound address and a
scope whose cancellation stops it again. A bind failure raises TransportError."""


async def start_on_one_port(
    make: Callable[[], Sequence[Transport]],
    host: str,
    port: int,
    start: Starter,
    *,
    optional: Collection[str] = (),
    attempts: int = ATTEMPTS,
) -> tuple[list[Transport], Address | None]:
    """Start the transports ``make()`` returns, all on ``port`` (0: one port free for all
    of them); return those running and their common address (None when none runs).

    On a given port, a transport named in ``optional`` that finds it taken is left out
    (logged); any other is a TransportError. Port 0 tries again on another port until all
    of them bind, ``attempts`` times at most (then TransportError)."""
    last: TransportError | None = None
    names = ""
    for _ in range(attempts if port == 0 else 1):
        transports = list(make())
        names = "+".join(t.name for t in transports)
        running: list[Transport] = []
        scopes: list[trio.CancelScope] = []
        address: Address | None = None
        try:
            for transport in transports:
                try:
                    bound, scope = await start(
                        transport, host, port if address is None else address[1]
                    )
                except TransportError as exc:
                    if port == 0 or transport.name not in optional:
                        raise
                    log.info("%s; listening without %s", exc, transport.name)
                    continue
                running.append(transport)
                scopes.append(scope)
                address = address or bound
        except TransportError as exc:
            last = exc
            for scope in scopes:
                scope.cancel()
            continue
        if address is None:
            return [], None
        return running, (str(address[0]), int(address[1]))
    assert last is not None
    if port == 0:
        raise TransportError(f"no port on {host} was free for {names}: {last}") from last
    raise last


__all__ = ["ATTEMPTS", "Starter", "start_on_one_port"]
