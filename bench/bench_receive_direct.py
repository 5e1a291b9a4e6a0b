"""sipx's own CPU per OPTIONS and per call answered, with no network at all.

Run from the repository root::

    .venv/bin/python bench/bench_receive_direct.py               # both parts
    .venv/bin/python bench/bench_receive_direct.py --part call --profile

An :class:`sipx.AsyncClient` listens on UDP 127.0.0.1, but nothing goes through its socket:
each datagram (shaped like SIPp's ``uac_options.xml`` or ``uac_call_rr.xml``, a new
branch, Call-ID and From tag each) is handed straight to the client's receive path (what its
UDP transport calls for each datagram read), and what the client sends is kept in a list
instead of going to the socket. What remains is sipx's whole path per datagram (parse,
checks, transaction layer, dispatch, the answer's bytes, the records for Timer J and L)
without the memory network's delivery, which ``bench_uas_cpu.py`` and
``bench_uas_call_cpu.py`` include, and without the syscalls that a SIPp run includes.

``--part options``: OPTIONS answered by the default handler (200 with Allow, Accept,
Supported). ``--part call``: calls answered as ``examples/dispatcher_worker.py --quiet
--no-media`` answers them (a plain INVITE handler, ``call.answer`` with an ``a=inactive``
SDP), 100 at a time: 100 INVITEs, the trio loop run until their 200s are out, then an ACK
and a BYE each. The figure is wall-clock time per OPTIONS or per call (``perf_counter``:
the process does nothing else), the best of ``--repeat`` rounds, garbage collector off;
``--profile`` prints a cProfile of one more round and the function calls per OPTIONS or
per call (sipx's, trio's, others'), which unlike the times do not vary between runs.
Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_uas_cpu import OPTIONS_TEMPLATE  # (bench/, beside this script)

import sipx
from examples.dispatcher_worker import no_media_sdp  # the worker's SDP: the same calls

_SOURCE = ("127.0.0.1", 5999)
# SIPp's uac_options.xml shape, with rport, as bench_uas_cpu.py sends it
_OPTIONS = OPTIONS_TEMPLATE.replace("{host}", "127.0.0.1").replace("{rport}", ";rport")
_SDP = (
    "v=0\r\no=load 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
_INVITE = (
    "INVITE sip:service@127.0.0.1:{port} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-{i}-1;rport\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:load@127.0.0.1:5999>;tag=77SIPpTag01{i}\r\n"
    "To: <sip:service@127.0.0.1:{port}>\r\n"
    "Call-ID: {i}-77@127.0.0.1\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:load@127.0.0.1:5999>\r\n"
    "Content-Type: application/sdp\r\n"
    f"Content-Length: {len(_SDP)}\r\n\r\n{_SDP}"
)
_IN_DIALOG = (
    "{method} sip:service@127.0.0.1:{port} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-{i}-{seq};rport\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:load@127.0.0.1:5999>;tag=77SIPpTag01{i}\r\n"
    "To: <sip:service@127.0.0.1:{port}>;tag={tag}\r\n"
    "Call-ID: {i}-77@127.0.0.1\r\n"
    "CSeq: {seq} {method}\r\n"
    "Content-Length: 0\r\n\r\n"
)
_BATCH = 100
_OK = b"SIP/2.0 200 "
_CALL_OF_200 = re.compile(rb"\r\nCall-ID: (\d+)-77@")
_TO_TAG = re.compile(rb"\r\nTo: [^\r]*;tag=([^;\r]+)")

Receive = Callable[[bytes], None]


async def _options_round(
    receive: Receive, sent: list[bytes], port: int, first: int, n: int
) -> None:
    datagrams = [_OPTIONS.format(i=i, port=port).encode() for i in range(first, first + n)]
    sent.clear()
    started = time.perf_counter()
    for datagram in datagrams:
        receive(datagram)
    _options_round.elapsed = time.perf_counter() - started  # type: ignore[attr-defined]
    if sum(data.startswith(_OK) for data in sent) != n:
        raise SystemExit(f"{n} OPTIONS sent, {len(sent)} answers")


async def _call_round(receive: Receive, sent: list[bytes], port: int, first: int, n: int) -> None:
    invites = [_INVITE.format(i=i, port=port).encode() for i in range(first, first + n)]
    elapsed = 0.0
    for start in range(0, n, _BATCH):
        sent.clear()
        began = time.perf_counter()
        for datagram in invites[start : start + _BATCH]:
            receive(datagram)
        while sum(data.startswith(_OK) for data in sent) < _BATCH:
            await trio.sleep(0)  # the handlers' tasks, if any
        elapsed += time.perf_counter() - began
        tags: dict[int, str] = {}
        for data in sent:
            call = _CALL_OF_200.search(data)
            tag = _TO_TAG.search(data)
            if data.startswith(_OK) and call is not None and tag is not None:
                tags[int(call.group(1))] = tag.group(1).decode()
        ends = []
        for i in range(first + start, first + start + _BATCH):
            for method, seq in (("ACK", 1), ("BYE", 2)):
                text = _IN_DIALOG.format(method=method, i=i, seq=seq, port=port, tag=tags[i])
                ends.append(text.encode())
        sent.clear()
        began = time.perf_counter()
        for datagram in ends:
            receive(datagram)
        await trio.sleep(0)
        elapsed += time.perf_counter() - began
        if sum(data.startswith(_OK) for data in sent) != _BATCH:
            raise SystemExit(f"{_BATCH} BYEs sent, {len(sent)} answers")
    _call_round.elapsed = elapsed  # type: ignore[attr-defined]


async def _run(part: str, count: int, repeat: int, profile: bool) -> list[float]:
    unbounded = sipx.Limits(max_server_transactions=1_000_000_000)
    async with sipx.AsyncClient(local_host="127.0.0.1", local_port=0, limits=unbounded) as client:
        engine = client._engine  # the receive path, without the socket
        transport = engine.transports["UDP"]
        sent: list[bytes] = []
        transport.send_nowait = lambda data, address: sent.append(data)  # type: ignore[method-assign]
        on_message = engine._on_message

        def receive(datagram: bytes) -> None:
            on_message(datagram, _SOURCE, transport)

        if part == "call":
            host = client.local_address.host

            def on_invite(call: sipx.Call) -> None:  # as the worker's: it returns None
                call.answer(body=no_media_sdp(call, host))

            client.on_request("INVITE", on_invite)
            one_round = _call_round
        else:
            one_round = _options_round
        port = client.local_address.port
        await one_round(receive, sent, port, 10_000_000, min(count, 1000))  # warm up
        gc.collect()
        gc.freeze()
        gc.disable()
        figures = []
        for number in range(repeat):
            await one_round(receive, sent, port, number * count, count)
            figures.append(one_round.elapsed / count)  # type: ignore[attr-defined]
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            await one_round(receive, sent, port, repeat * count, count)
            profiler.disable()
            stats = pstats.Stats(profiler)
            stats.sort_stats("tottime").print_stats(40)
            _print_counts(stats, count)
        gc.enable()
        return figures


def _print_counts(stats: pstats.Stats, count: int) -> None:
    """Function calls per unit by where the function lives: a deterministic figure, the
    same from run to run for the same code, unlike the times."""
    groups = {"sipx": 0, "trio": 0, "other": 0}
    for (filename, _, _), row in stats.stats.items():  # type: ignore[attr-defined]
        where = "sipx" if "/sipx/" in filename else "trio" if "/trio/" in filename else "other"
        groups[where] += row[1]
    per = ", ".join(f"{where} {calls / count:.1f}" for where, calls in groups.items())
    print(f"function calls per unit: {sum(groups.values()) / count:.1f} ({per})")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--part", choices=["options", "call", "both"], default="both")
    parser.add_argument("--count", type=int, default=0, help="per round (20 000 / 4 000)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds (the best is kept)")
    parser.add_argument("--profile", action="store_true", help="cProfile one more round")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}, sipx from {Path(sipx.__file__).parent}")
    parts = ["options", "call"] if args.part == "both" else [args.part]
    for part in parts:
        count = args.count or (20_000 if part == "options" else 4_000)
        figures = trio.run(_run, part, count, args.repeat, args.profile)
        what = "OPTIONS answered" if part == "options" else "call answered (INVITE, ACK, BYE)"
        rounds = ", ".join(f"{figure * 1e6:.1f}" for figure in figures)
        print(f"per {what}: {min(figures) * 1e6:.1f} µs (rounds: {rounds} µs)")


if __name__ == "__main__":
    main()
