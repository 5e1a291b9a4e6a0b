"""Starting several transports on one port (UDP and TCP on 5060, as softphones listen).

:func:`start_on_one_port` starts each transport in turn on the same port. With port 0 the
first one binds wherever the kernel puts it and the others follow it to that port; when one
of them finds the port taken, every transport of the attempt is stopped and the whole set
tries again on a new port (a few times). The client and ``sipx serve`` both use it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import trio

from .._errors import TransportError
from .transport import Address, Transport

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
    attempts: int = ATTEMPTS,
) -> tuple[list[Transport], Address]:
    """Start the transports ``make()`` returns, all on ``port`` (0: one port free for all
    of them); return them and their common address. TransportError when ``port`` is taken,
    or when port 0 found no port free for all of them within ``attempts`` tries."""
    last: TransportError | None = None
    for _ in range(attempts if port == 0 else 1):
        transports = list(make())
        scopes: list[trio.CancelScope] = []
        address: Address | None = None
        try:
            for transport in transports:
                bound, scope = await start(transport, host, port if address is None else address[1])
                scopes.append(scope)
                address = address or bound
        except TransportError as exc:
            last = exc
            for scope in scopes:
                scope.cancel()
            continue
        assert address is not None, "no transport to start"
        return transports, (str(address[0]), int(address[1]))
    assert last is not None
    if port == 0:
        names = "+".join(t.name for t in make())
        raise TransportError(f"no port on {host} was free for {names}: {last}") from last
    raise last


__all__ = ["ATTEMPTS", "Starter", "start_on_one_port"]
