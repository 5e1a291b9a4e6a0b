"""CPU per OPTIONS answered by an AsyncClient UAS, in one process, without sockets.

Run from the repository root::

    .venv/bin/python bench/bench_uas_cpu.py            # options: --count N --repeat R
    .venv/bin/python bench/bench_uas_cpu.py --rport    # Via with rport, as SIPp sends it

An :class:`sipx.AsyncClient` with its default handlers (OPTIONS gets 200) listens on a
:class:`sipx.testing.MemoryNetwork`; a raw endpoint of the same network sends it OPTIONS
shaped like SIPp's ``uac_options.xml`` (a new branch and Call-ID each), at most 50 in
flight, and reads the 200s. The figure is this process's CPU time (``time.process_time``)
per request answered, the best of ``--repeat`` rounds of ``--count`` requests, with the
garbage collector off: the whole UAS path (parse, checks, transaction layer, one task per
request, dispatch, building and serialising the 200) plus the memory network's delivery,
which is the same before and after a change. ``--rport`` adds ``;rport`` to the Via, as
SIPp's scenario has it (the UAS then stamps ``received``/``rport`` into the top Via).
``--floor`` measures the memory network's share alone: a raw endpoint of the same network
in place of the client answers each request with ready-made bytes (no parsing); what the
UAS costs above it is sipx's own path. ``--profile`` prints a cProfile of the last round.
Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sipx
from sipx.testing import MemoryNetwork

_PEER = ("127.0.0.1", 5999)
OPTIONS_TEMPLATE = (
    "OPTIONS sip:uas@{host}:{port} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-{i}{rport}\r\n"
    "From: sipp <sip:sipp@127.0.0.1:5999>;tag={i}\r\n"
    "To: sut <sip:uas@{host}:{port}>\r\n"
    "Call-ID: {i}-bench@127.0.0.1\r\n"
    "CSeq: 1 OPTIONS\r\n"
    "Contact: <sip:sipp@127.0.0.1:5999>\r\n"
    "Max-Forwards: 70\r\n"
    "Subject: Performance Test\r\n"
    "Content-Length: 0\r\n\r\n"
)


_ANSWER = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-0;rport=5999\r\n"
    b"From: sipp <sip:sipp@127.0.0.1:5999>;tag=0\r\n"
    b"To: sut <sip:uas@127.0.0.1:5060>;tag=1\r\n"
    b"Call-ID: 0-bench@127.0.0.1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Content-Length: 0\r\n\r\n"
)


@asynccontextmanager
async def _raw_uas(network: MemoryNetwork) -> AsyncIterator[None]:
    """The floor: a raw endpoint that answers every datagram with the same bytes."""
    async with network.socket(("127.0.0.1", 0)) as uas, trio.open_nursery() as nursery:

        async def answer_all() -> None:
            while True:
                _, source = await uas.receive()
                uas.send(_ANSWER, source)

        nursery.start_soon(answer_all)
        yield
        nursery.cancel_scope.cancel()


async def _run(
    count: int, repeat: int, rport: bool, floor: bool = False, profile: bool = False
) -> list[float]:
    gc.disable()
    network = MemoryNetwork(seed=1)
    rounds: list[float] = []
    uas = (
        _raw_uas(network)
        if floor
        else sipx.AsyncClient(
            "127.0.0.1",
            0,
            network=network,
            limits=sipx.Limits(max_server_transactions=10**7),  # no 503s: 32 s of requests
        )
    )
    profiler = cProfile.Profile() if profile else None
    async with uas, network.socket(_PEER) as peer:
        host, port = next(a for a in network.bound_addresses if a != _PEER)
        for number in range(repeat):
            if profiler is not None and number == repeat - 1:
                profiler.enable()
            started = time.process_time()
            answered = 0
            for i in range(count):
                data = OPTIONS_TEMPLATE.format(
                    host=host, port=port, i=f"{number}-{i}", rport=";rport" if rport else ""
                ).encode()
                peer.send(data, (host, port))
                if i % 50 == 49:
                    while answered <= i - 10:
                        await peer.receive()
                        answered += 1
            while answered < count:
                await peer.receive()
                answered += 1
            rounds.append((time.process_time() - started) / count * 1e6)
    if profiler is not None:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(40)
    gc.enable()
    return rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=10_000, help="requests per round")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (the best is kept)")
    parser.add_argument("--rport", action="store_true", help="Via with rport (RFC 3581)")
    parser.add_argument(
        "--floor", action="store_true", help="a raw endpoint instead of the client (the network)"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the last round")
    args = parser.parse_args()
    rounds = trio.run(_run, args.count, args.repeat, args.rport, args.floor, args.profile)
    shown = ", ".join(f"{r:.1f}" for r in rounds)
    print(f"Python {sys.version.split()[0]}, sipx from {Path(sipx.__file__).parent}")
    what = "network floor per OPTIONS" if args.floor else "CPU per OPTIONS answered"
    print(f"{what}: {min(rounds):.1f} µs (best of {shown} µs)")


if __name__ == "__main__":
    main()
