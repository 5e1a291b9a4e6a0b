"""CPU per ``client.options()`` of an AsyncClient, in one process, without sockets.

Run from the repository root::

    .venv/bin/python bench/bench_client_cpu.py            # options: --count N --repeat R

An :class:`sipx.AsyncClient` on a :class:`sipx.testing.MemoryNetwork` sends OPTIONS from
``--concurrency`` tasks (100, as ``bench_sip_options.py --part client`` does against SIPp)
to a raw endpoint of the same network that answers each with a 200 made by copying the
request's lines (the way SIPp's ``uas_options.xml`` does: Via, From, To with a tag, Call-ID,
CSeq). The figure is this process's CPU time (``time.process_time``) per request, the best
of ``--repeat`` rounds of ``--count`` requests, with the garbage collector off: the whole
client path (building the request, the next hop, the transaction, the response's parse and
match, waking the caller) plus the answering endpoint and the memory network's delivery,
which are the same before and after a change. Nothing here asserts a time.

``--gc`` keeps the garbage collector on and also prints how many collections of each
generation ran per 10 000 requests (``gc.callbacks``), the share of the CPU time spent in
them and how many objects a gen0 collection found in the young generation (counts, not
times, are the steady figures to compare).

``--no-log`` clears the memory network's capture log every 100 requests: the log keeps
about 8 tracked objects per request (it is the test network's: over UDP there is none),
and that growth alone drives most of the gen0 collections ``--gc`` counts; without it what
they count is the client's own (objects in flight, allocated per request).

``--steady SECONDS`` first sends for that long (untimed) so that the rounds run in the
steady state of a client that keeps sending: the Timer K records of earlier requests
(5 s) come due and end while it sends.

``--objects`` counts instead (deterministic): the objects the collector tracks per request
in flight (``--concurrency`` requests sent to a peer that does not answer) and those left
behind per answered request (requests answered one after another, the collector off, no
collection in between: what waits for Timer K, or for nothing).

``--profile`` runs, after the rounds, a cProfile of a round of ``--count`` requests and of
one of twice as many, and prints the function calls per request (the difference of the
two over ``--count``: the rounds' fixed cost cancels) by where the function lives: sipx's
own, ``sipx/testing`` (the memory network), trio and outcome, the rest (built-ins). Unlike
the times, these counts are the same from run to run for the same code.

``--udp`` runs the client on its real UDP transport (sockets on 127.0.0.1) against a UDP
socket of the same process answering the same way (trio's socket: a checkpoint per
datagram on that side), instead of the memory network: the client's receive loop and
``sendto`` as against SIPp, the answering side in the figure too.

``--floor`` measures that fixed part alone: the same tasks send a ready-made OPTIONS from
raw sockets of the same network and wait for its answer (no sipx client at all); what
``options()`` costs above it is the client path itself.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sipx
from sipx.testing import MemoryNetwork

_PEER = ("127.0.0.1", 5999)
_COPIED = (b"via:", b"from:", b"call-id:", b"cseq:")


def _answer(request: bytes) -> bytes:
    """A 200 for ``request``: its Via, From, To (tagged), Call-ID and CSeq lines."""
    lines = [b"SIP/2.0 200 OK"]
    for line in request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        lower = line[:9].lower()
        if lower.startswith(_COPIED):
            lines.append(line)
        elif lower.startswith(b"to:"):
            lines.append(line + b";tag=peer")
    lines.append(b"Content-Length: 0\r\n\r\n")
    return b"\r\n".join(lines)


class _Collections:
    """Garbage collections by generation, and the CPU time spent in them."""

    def __init__(self) -> None:
        self.counts = [0, 0, 0]
        self.young = 0  # objects in the youngest generation when its collections began
        self.cpu = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            if info["generation"] == 0:
                self.young += len(gc.get_objects(generation=0))  # before the clock starts
            self._started = time.process_time()
        else:
            self.counts[info["generation"]] += 1
            self.cpu += time.process_time() - self._started


_COLLECTIONS = _Collections()


async def _rounds(
    caller: Callable[[list[int]], Awaitable[None]], count: int, repeat: int, concurrency: int
) -> list[float]:
    """CPU µs per request of each of ``repeat`` rounds: ``concurrency`` tasks run
    ``caller`` on one shared countdown of ``count`` requests."""
    rounds = []
    for _ in range(repeat):
        left = [count]
        started = time.process_time()
        async with trio.open_nursery() as callers:
            for _ in range(concurrency):
                callers.start_soon(caller, left)
        rounds.append((time.process_time() - started) / count * 1e6)
    return rounds


async def _run(
    count: int,
    repeat: int,
    concurrency: int,
    collect: bool = False,
    keep_log: bool = True,
    steady: float = 0.0,
    profile: bool = False,
    udp: bool = False,
) -> list[float]:
    if not collect:
        gc.disable()
    network = MemoryNetwork(seed=1)
    async with (
        sipx.AsyncClient(
            "127.0.0.1", 0, network=None if udp else network, transports=["UDP"] if udp else None
        ) as client,
        network.socket(_PEER) as peer,
        trio.open_nursery() as nursery,
    ):
        answering = trio.socket.socket(type=trio.socket.SOCK_DGRAM)
        await answering.bind(("127.0.0.1", 0))
        address = answering.getsockname()[:2] if udp else _PEER

        async def answer_all() -> None:
            if udp:
                while True:
                    data, source = await answering.recvfrom(65_535)
                    await answering.sendto(_answer(data), source)
            while True:
                data, source = await peer.receive()
                peer.send(_answer(data), source)

        nursery.start_soon(answer_all)
        uri = f"sip:uas@{address[0]}:{address[1]}"
        await client.options(uri)  # warm-up
        if collect:
            gc.collect()
            gc.callbacks.append(_COLLECTIONS)

        async def caller(left: list[int]) -> None:
            while left[0] > 0:
                left[0] -= 1
                response = await client.options(uri)
                assert response.status_code == 200
                if not keep_log and left[0] % 100 == 0:
                    network.clear_log()

        if steady:
            if collect:
                gc.callbacks.remove(_COLLECTIONS)
            until = trio.current_time() + steady
            while trio.current_time() < until:
                await _rounds(caller, 2000, 1, concurrency)
                network.clear_log()
            if collect:
                gc.collect()
                gc.callbacks.append(_COLLECTIONS)
        rounds = await _rounds(caller, count, repeat, concurrency)
        if collect:
            gc.callbacks.remove(_COLLECTIONS)
        if profile:
            counts = []
            for n in (count, 2 * count):
                profiler = cProfile.Profile()
                profiler.enable()
                await _rounds(caller, n, 1, concurrency)
                profiler.disable()
                counts.append(_calls_by_place(pstats.Stats(profiler)))
            _print_calls(counts, count)
        nursery.cancel_scope.cancel()
    answering.close()
    gc.enable()
    return rounds


def _calls_by_place(stats: pstats.Stats) -> dict[str, int]:
    """Function calls in ``stats`` by where the function lives."""
    places = {"sipx": 0, "sipx/testing": 0, "trio": 0, "other": 0}
    for (filename, _, _), row in stats.stats.items():  # type: ignore[attr-defined]
        if "/sipx/testing/" in filename:
            places["sipx/testing"] += row[1]
        elif "/sipx/" in filename:
            places["sipx"] += row[1]
        elif "/trio/" in filename or "/outcome/" in filename:
            places["trio"] += row[1]
        else:
            places["other"] += row[1]
    return places


def _print_calls(counts: list[dict[str, int]], count: int) -> None:
    """Function calls per request: (the longer run's − the shorter's) / ``count``."""
    short, long = counts
    per = {place: (long[place] - short[place]) / count for place in short}
    shown = ", ".join(f"{place} {calls:.1f}" for place, calls in per.items())
    print(f"function calls per request: {sum(per.values()):.1f} ({shown})")


async def _objects(count: int, concurrency: int) -> tuple[float, float]:
    """Tracked objects per request in flight, and left per answered request."""
    gc.collect()
    gc.disable()
    network = MemoryNetwork(seed=1)
    silent = ("127.0.0.1", 5998)
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(_PEER) as peer,
        network.socket(silent) as deaf,
        trio.open_nursery() as nursery,
    ):

        async def answer_all() -> None:
            while True:
                data, source = await peer.receive()
                peer.send(_answer(data), source)

        async def ignore_all() -> None:
            while True:
                await deaf.receive()

        nursery.start_soon(answer_all)
        nursery.start_soon(ignore_all)
        uri = f"sip:uas@{_PEER[0]}:{_PEER[1]}"
        for _ in range(300):  # warm-up: caches full, Timer K records being made
            await client.options(uri)
        await trio.testing.wait_all_tasks_blocked()
        network.clear_log()  # the memory network's capture log is not the client's
        before = len(gc.get_objects())
        for _ in range(count):
            await client.options(uri)
        await trio.testing.wait_all_tasks_blocked()
        network.clear_log()
        left = (len(gc.get_objects()) - before) / count
        async with trio.open_nursery() as waiting:
            before = len(gc.get_objects())
            for _ in range(concurrency):
                waiting.start_soon(client.options, f"sip:uas@{silent[0]}:{silent[1]}")
            await trio.testing.wait_all_tasks_blocked()
            network.clear_log()
            in_flight = (len(gc.get_objects()) - before) / concurrency
            waiting.cancel_scope.cancel()
        nursery.cancel_scope.cancel()
    gc.enable()
    return in_flight, left


_OPTIONS = (
    b"OPTIONS sip:uas@127.0.0.1:5999 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK0123456789abcdef0123;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:sipx@127.0.0.1:5999>;tag=0123456789abcdef\r\n"
    b"To: <sip:uas@127.0.0.1:5999>\r\n"
    b"Call-ID: 0123456789abcdef0123456789abcdef\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Contact: <sip:sipx@127.0.0.1:5060>\r\n"
    b"User-Agent: sipx/0.1.0\r\n"
    b"Content-Length: 0\r\n\r\n"
)


async def _run_floor(count: int, repeat: int, concurrency: int) -> list[float]:
    """The network and the answering endpoint alone: raw sockets instead of a client."""
    gc.disable()
    network = MemoryNetwork(seed=1)
    async with network.socket(_PEER) as peer, trio.open_nursery() as nursery:

        async def answer_all() -> None:
            while True:
                data, source = await peer.receive()
                peer.send(_answer(data), source)

        nursery.start_soon(answer_all)

        async def caller(left: list[int]) -> None:
            async with network.socket(("127.0.0.1", 0)) as sock:
                while left[0] > 0:
                    left[0] -= 1
                    sock.send(_OPTIONS, _PEER)
                    data, _ = await sock.receive()
                    assert data.startswith(b"SIP/2.0 200")

        rounds = await _rounds(caller, count, repeat, concurrency)
        nursery.cancel_scope.cancel()
    gc.enable()
    return rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--count", type=int, default=10_000, help="requests per round")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (the best is kept)")
    parser.add_argument("--concurrency", type=int, default=100, help="tasks sending")
    parser.add_argument(
        "--floor", action="store_true", help="raw sockets instead of a client (the fixed part)"
    )
    parser.add_argument(
        "--gc", action="store_true", help="collector on: count its collections per generation"
    )
    parser.add_argument(
        "--objects", action="store_true", help="count tracked objects instead of CPU time"
    )
    parser.add_argument(
        "--steady", type=float, default=0.0, help="send this many seconds first (untimed)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="function calls per request (cProfile)"
    )
    parser.add_argument(
        "--udp", action="store_true", help="the client over real UDP sockets (127.0.0.1)"
    )
    parser.add_argument(
        "--no-log", action="store_true", help="clear the memory network's log every 100 requests"
    )
    args = parser.parse_args()
    if args.objects:
        in_flight, left = trio.run(_objects, args.count, args.concurrency)
        print(f"Python {sys.version.split()[0]}, sipx from {Path(sipx.__file__).parent}")
        print(f"GC-tracked objects per request in flight ({args.concurrency}): {in_flight:.1f}")
        print(f"GC-tracked objects left per answered request ({args.count}): {left:.2f}")
        return
    if args.floor:
        rounds = trio.run(_run_floor, args.count, args.repeat, args.concurrency)
    else:
        keep_log = not args.no_log
        rounds = trio.run(
            _run,
            args.count,
            args.repeat,
            args.concurrency,
            args.gc,
            keep_log,
            args.steady,
            args.profile,
            args.udp,
        )
    shown = ", ".join(f"{r:.1f}" for r in rounds)
    print(f"Python {sys.version.split()[0]}, sipx from {Path(sipx.__file__).parent}")
    what = "request answered, raw sockets (--floor)" if args.floor else "options() answered"
    what += " over UDP (--udp)" if args.udp else ""
    print(f"CPU per {what}: {min(rounds):.1f} µs (best of {shown} µs)")
    if args.gc:
        requests = args.count * args.repeat
        per = ", ".join(
            f"gen{g} {n * 10_000 / requests:.1f}" for g, n in enumerate(_COLLECTIONS.counts)
        )
        share = _COLLECTIONS.cpu / (sum(rounds) * args.count / 1e6) * 100
        print(f"GC collections per 10 000 requests: {per}; {share:.1f} % of the CPU time in them")
        young = _COLLECTIONS.young / max(1, _COLLECTIONS.counts[0])
        print(f"objects in the young generation per gen0 collection: {young:.0f}")


if __name__ == "__main__":
    main()
