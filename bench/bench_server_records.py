"""What a Timer J record costs: memory kept per record, and the work of expiring one.

Run from the repository root::

    .venv/bin/python bench/bench_server_records.py --part memory --records 200000
    .venv/bin/python bench/bench_server_records.py --part memory --fresh-source
    .venv/bin/python bench/bench_server_records.py --part expiry [--profile]

``--part memory``: an :class:`sipx.AsyncClient` answers ``--records`` OPTIONS shaped like
SIPp's (handed straight to its receive path, as ``bench_receive_direct.py`` does; what it
sends is dropped); each leaves a Timer J record (32 s). Printed: RSS, blocks
(``sys.getallocatedblocks``) and, with ``--tracemalloc``, traced bytes kept per record (the
difference before and after, divided by the count; the GC collected first). The source
address is one tuple for every datagram (what the UDP transport hands on for one peer
since the thirteenth pass), or with ``--fresh-source`` a new tuple, str and int for each
(what ``recvfrom`` returns, and what the transport handed on before).

``--part expiry``: the steady state past second 32, scaled: a transaction layer with
T1 = 10 ms (Timer J 0.64 s) receives OPTIONS at ``--rate`` per second of its clock,
answers each at once as bytes (the UAS's way) and expires its records every 10 ms
(``RECORD_SLACK``, as the engine's timer loop does) for ``--seconds``. Printed: the time
per record expired (GC off) and, with ``--profile``, the function calls per record expired
(cProfile around the expiry calls only: deterministic). Nothing here asserts a figure.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import sys
import time
import tracemalloc
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sipx
from bench.bench_receive_direct import _OPTIONS
from sipx._core.message import Request
from sipx._core.parser import parse_message
from sipx._core.received import stamp_received
from sipx._core.timers import TimerConfig
from sipx._core.transaction import RequestReceived, TransactionLayer, final_response_bytes

_SOURCE = ("127.0.0.1", 5999)


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


async def _memory(records: int, fresh_source: bool, traced: bool) -> None:
    unbounded = sipx.Limits(max_server_transactions=1_000_000_000)
    async with sipx.AsyncClient(local_host="127.0.0.1", local_port=0, limits=unbounded) as client:
        engine = client._engine
        transport = engine.transports["UDP"]
        transport.send_nowait = lambda data, address: None  # type: ignore[method-assign]
        on_message = engine._on_message
        port = client.local_address.port

        def feed(first: int, n: int) -> None:
            for i in range(first, first + n):
                source = ("".join(["127.0.0", ".1"]), int("5999")) if fresh_source else _SOURCE
                on_message(_OPTIONS.format(i=i, port=port).encode(), source, transport)

        feed(10_000_000, 2000)  # warm up: the layer's dicts and queues exist
        if traced:
            tracemalloc.start()
        gc.collect()
        rss, blocks = _rss(), sys.getallocatedblocks()
        traced_before = tracemalloc.get_traced_memory()[0] if traced else 0
        feed(0, records)
        gc.collect()
        rss, blocks = _rss() - rss, sys.getallocatedblocks() - blocks
        line = f"{records} records: RSS {rss / records:.0f} bytes, {blocks / records:.2f} blocks"
        if traced:
            kept = tracemalloc.get_traced_memory()[0] - traced_before
            line += f", traced {kept / records:.1f} bytes"
        print(line + " per record")


def _expiry(rate: int, seconds: float, profile: bool) -> None:
    layer = TransactionLayer(TimerConfig(t1=0.01))
    datagrams = [_OPTIONS.format(i=i, port=5060).encode() for i in range(int(rate * seconds))]
    profiler = cProfile.Profile()
    expired = 0
    spent = 0.0
    next_pass = 0.01
    gc.disable()
    for i, data in enumerate(datagrams):
        now = i / rate
        if now >= next_pass:
            count = layer._server_count
            started = time.perf_counter()
            if profile:
                profiler.enable()
            layer._expire_records(now)
            if profile:
                profiler.disable()
            spent += time.perf_counter() - started
            expired += count - layer._server_count
            next_pass += 0.01
        request = parse_message(data)
        assert isinstance(request, Request)
        request.check_essentials()
        stamp_received(request, _SOURCE)
        layer.receive_request(request, now, False, _SOURCE, "UDP")
        for event in layer.pop_events():
            if isinstance(event, RequestReceived):
                ok = final_response_bytes(event.request, 200, to_tag="t")
                assert ok is not None
                event.transaction.respond_serialised(200, ok, now)
        layer.pop_events()
    gc.enable()
    line = f"{expired} records expired: {spent / expired * 1e6:.3f} µs per record"
    if profile:
        stats = pstats.Stats(profiler)
        calls = sum(row[1] for row in stats.stats.values())  # type: ignore[attr-defined]
        line += f" (cProfile on), {calls / expired:.2f} function calls per record"
    print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--part", choices=["memory", "expiry"], default="memory")
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--fresh-source", action="store_true")
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--rate", type=int, default=18_000)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}, sipx from {Path(sipx.__file__).parent}")
    if args.part == "memory":
        trio.run(_memory, args.records, args.fresh_source, args.tracemalloc)
    else:
        _expiry(args.rate, args.seconds, args.profile)


if __name__ == "__main__":
    main()
