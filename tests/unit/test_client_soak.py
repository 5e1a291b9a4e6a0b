"""Calls in and out for minutes leave nothing behind once the timers have run.

Before: every answered incoming call stayed in ``UserAgentServer.calls`` for ever (an
AsyncClient answering 500 calls/s from SIPp grew by about 7 MiB/s).
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import trio.testing

import sipx
from sipx.testing import MemoryNetwork

T1 = 0.5
# Most calls carry an SDP of their own (no sipx media: RTP ticks would dominate the run time);
# every tenth uses sipx media, so that its sockets and streams are checked for leaks too.
SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


@asynccontextmanager
async def client_on(network: MemoryNetwork) -> AsyncIterator[sipx.AsyncClient]:
    async with sipx.AsyncClient("127.0.0.1", 0, network=network) as client:
        yield client


def uri_of(client: sipx.AsyncClient) -> str:
    return f"sip:bob@127.0.0.1:{client.local_address.port}"


def live_calls() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, sipx.Call))


def state_sizes(client: sipx.AsyncClient) -> dict[str, int]:
    engine = client._engine
    return {
        "calls": len(engine.calls),
        "pending calls": len(engine.pending_calls),
        "dialogs": len(engine.dialogs),
        "transactions": len(engine.layer),
        "2xx retransmissions": len(engine.retransmitter),
        "waiters": engine.waiting(),
    }


def answer(call: sipx.Call) -> None:
    """Answer in kind: our fixed SDP to a fixed offer (port 9), sipx media to sipx media."""
    fixed = call.offer is not None and call.offer.media[0].port == 9
    call.answer(SDP if fixed else None)


async def calls_both_ways(a: sipx.AsyncClient, b: sipx.AsyncClient, rounds: int) -> None:
    """Each round: a calls b and b calls a; the caller hangs up one, the callee the other."""
    for index in range(rounds):
        for caller, callee in ((a, b), (b, a)):
            call = await caller.call(uri_of(callee), body=None if index % 10 == 0 else SDP)
            assert call.established
            await trio.sleep(1)
            if index % 2:
                await call.bye()
            else:
                [peer_call] = [
                    c for c in callee._engine.calls.values() if c.call_id == call.call_id
                ]
                await peer_call.bye()
            assert call.ended


async def test_memory_returns_to_its_baseline_after_minutes_of_calls(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()

    tracemalloc.start()  # from the start, so that what the warm-up kept and frees counts
    try:
        async with client_on(network) as a, client_on(network) as b:
            for client in (a, b):
                client.on_request("INVITE", answer)
            # Warm up: bounded caches (the last 256 destinations and Contacts) fill first.
            await calls_both_ways(a, b, 300)
            await trio.sleep(64 * T1)
            network.clear_log()  # the network's own log of every datagram is not the client's
            gc.collect()
            baseline = tracemalloc.get_traced_memory()[0]
            started = trio.current_time()
            await calls_both_ways(a, b, 250)  # 500 more calls over minutes of call time
            assert trio.current_time() - started > 4 * 60
            await trio.sleep(64 * T1 + 1)  # every timer (H, J, K, L, 2xx resends) has run
            network.clear_log()
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - baseline
            empty = dict.fromkeys(state_sizes(a), 0)
            assert state_sizes(a) == empty
            assert state_sizes(b) == empty
            assert live_calls() == 0
    finally:
        tracemalloc.stop()
    # Before the fix each call kept kilobytes; allow a little noise, not a leak.
    assert grown < 500 * 100, f"{grown} bytes kept after 500 calls"
