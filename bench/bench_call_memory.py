"""Memory an AsyncClient keeps per established idle call, in one process.

Run from the repository root::

    .venv/bin/python bench/bench_call_memory.py            # options: --calls N, --no-media

An :class:`sipx.AsyncClient` on a :class:`sipx.testing.MemoryNetwork` (trio's MockClock,
so the 32 s timers pass at once) answers every call with ``call.answer()``; a raw endpoint
of the network plays the caller: INVITE with an SDP offer, 200 read, ACK. After one warm-up
call, ``--calls`` calls are set up and left idle for 40 s of mock time (transactions and 2xx
retransmissions are over); the network's message log is cleared. Reported: the growth of
``tracemalloc``'s traced memory per call after ``gc.collect()``, of ``len(gc.get_objects())``
per call (what every full collection walks), those objects by type, and the traced memory
by file. The RTP sockets of each call are real (kernel memory is not counted here); with
``--no-media`` the calls are answered with a fixed SDP (``a=inactive``, no RTP socket).
Nothing here asserts a figure.
"""

from __future__ import annotations

import argparse
import collections
import gc
import sys
import tracemalloc
from pathlib import Path

import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sipx
from sipx.testing import MemoryNetwork

_PEER = ("127.0.0.1", 5999)
_SDP = (
    "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 9000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
)


def _request(method: str, i: int, target: str, to_tag: str = "") -> bytes:
    body = _SDP if method == "INVITE" else ""
    lines = [
        f"{method} sip:bob@{target} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-{method}{i}",
        f"From: sipp <sip:sipp@127.0.0.1:5999>;tag=t{i}",
        f"To: <sip:bob@{target}>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: c{i}@127.0.0.1",
        f"CSeq: 1 {method}",
        "Contact: <sip:sipp@127.0.0.1:5999>",
        "Max-Forwards: 70",
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def _measure() -> tuple[int, collections.Counter[str]]:
    gc.collect()
    objects = gc.get_objects()
    return tracemalloc.get_traced_memory()[0], collections.Counter(
        type(o).__name__ for o in objects
    )


_FIXED = (
    "v=0\r\no=bob 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=inactive\r\n"
)


async def _run(count: int, media: bool, wait: float) -> None:
    network = MemoryNetwork(seed=1)
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(_PEER) as peer,
        trio.open_nursery() as nursery,
    ):
        host, port = next(a for a in network.bound_addresses if a != _PEER)
        target = f"{host}:{port}"

        async def answer_all() -> None:
            async for call in client.calls():
                call.answer() if media else call.answer(_FIXED)

        async def one_call(i: int) -> None:
            peer.send(_request("INVITE", i, target), (host, port))
            while True:
                data, _ = await peer.receive()
                response = sipx.parse_message(data)
                if isinstance(response, sipx.Response) and response.status_code == 200:
                    break
            to_tag = response.to.tag or ""
            peer.send(_request("ACK", i, target, to_tag), (host, port))

        nursery.start_soon(answer_all)
        await one_call(-1)
        await trio.sleep(40)
        network.clear_log()
        tracemalloc.start()
        before, types_before = _measure()
        for i in range(count):
            await one_call(i)
        await trio.sleep(wait)
        network.clear_log()
        after, types_after = _measure()
        grown = types_after - types_before
        print(f"Python {sys.version.split()[0]}, sipx from {Path(sipx.__file__).parent}")
        print(
            f"{count} established idle calls, {wait:g} s after the last:"
            f" {(after - before) / count / 1024:.2f} KiB traced"
            f" and {sum(grown.values()) / count:.1f} GC-tracked objects per call"
        )
        shown = ", ".join(f"{name} {n / count:.1f}" for name, n in grown.most_common(16))
        print(f"GC-tracked objects per call by type: {shown}")
        for stat in tracemalloc.take_snapshot().statistics("filename")[:12]:
            print(f"  {stat.size / count:8.0f} B per call  {stat.traceback}")
        tracemalloc.stop()
        nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="calls held at once")
    parser.add_argument("--no-media", action="store_true", help="answer with a fixed SDP")
    parser.add_argument(
        "--wait",
        type=float,
        default=40,
        help="seconds of mock time after the last call before measuring (40: Timer L over;"
        " 1: every accepted INVITE transaction still waits for Timer L)",
    )
    args = parser.parse_args()
    clock = trio.testing.MockClock(autojump_threshold=0)
    trio.run(_run, args.calls, not args.no_media, args.wait, clock=clock)


if __name__ == "__main__":
    main()
