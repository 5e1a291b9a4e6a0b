"""RSS growth per established idle call, with calls held up by SIPp (issue 14, figure 3).

Run from the repository root (needs ``sipp``)::

    .venv/bin/python bench/bench_idle_calls.py --calls 2000 4000 9000
    .venv/bin/python bench/bench_idle_calls.py --no-media --calls 10000 20000 50000
    # --rate R (calls/s placed, 500), --direction sendrecv (the offer's a=; inactive)

For each count, a fresh worker process runs an :class:`sipx.AsyncClient` on 127.0.0.1
answering every call with ``call.answer()`` (sipx media: one RTP and one RTCP socket per
call) or, with ``--no-media``, with a fixed SDP (no sockets). SIPp places the calls with
``bench/sipp_idle_uac.xml`` (a PCMU offer, ``a=inactive`` by default: an idle call, no RTP
either way), ACKs and holds each for longer than the run. Once every call is answered and
40 s more have passed (Timer L, the 2xx resends), the worker's ``VmRSS`` (from
``/proc/PID/status``) and ``len(gc.get_objects())`` after ``gc.collect()`` are compared
with the same figures before the first call. The open file descriptors of the worker are
counted too. Nothing here asserts a figure.
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "bench" / "sipp_idle_uac.xml"
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from peers import free_port  # noqa: E402

WORKER = r"""
import gc, os, sys, threading
import trio
import sipx

port, media = int(sys.argv[1]), sys.argv[2] == "media"
FIXED = (
    "v=0\r\no=w 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=inactive\r\n"
)
answered = 0

def report():
    for line in sys.stdin:
        gc.collect()
        objects = len(gc.get_objects())
        with open("/proc/self/status") as status:
            rss = next(int(l.split()[1]) for l in status if l.startswith("VmRSS:"))
        fds = len(os.listdir("/proc/self/fd"))
        print(answered, len(client.dialogs), rss, objects, fds, flush=True)

client = None

async def main():
    global answered, client
    limits = sipx.Limits(max_server_transactions=1_000_000)  # Timer L keeps rate x 32 s
    # RTP above 32767: the integration tests' peers take ports from 20000-32767
    async with sipx.AsyncClient(
        "127.0.0.1", port, rtp_ports=(33000, 60999), limits=limits
    ) as client:
        threading.Thread(target=report, daemon=True).start()
        print("ready", flush=True)
        async for call in client.calls():
            call.answer() if media else call.answer(FIXED)
            answered += 1

trio.run(main)
"""


class Worker:
    def __init__(self, port: int, media: bool) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(port), "media" if media else "fixed"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def measure(self) -> tuple[int, int, int, int, int]:
        """Calls answered, dialogs held, VmRSS in KiB, GC-tracked objects, open fds."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        calls, dialogs, rss, objects, fds = map(int, self.proc.stdout.readline().split())
        return calls, dialogs, rss, objects, fds

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def run(count: int, media: bool, rate: int, direction: str) -> dict[str, float]:
    port = free_port("udp")
    worker = Worker(port, media)
    sipp = None
    try:
        time.sleep(1)
        _, _, rss0, objects0, fds0 = worker.measure()
        hold_ms = int((count / rate + 120) * 1000)
        with tempfile.TemporaryDirectory(prefix="sipx-idle-") as workdir:
            sipp = subprocess.Popen(
                [
                    "sipp",
                    f"127.0.0.1:{port}",
                    "-sf",
                    str(SCENARIO),
                    "-key",
                    "direction",
                    direction,
                    "-i",
                    "127.0.0.1",
                    "-p",
                    str(free_port("udp")),
                    "-r",
                    str(rate),
                    "-m",
                    str(count),
                    "-l",
                    str(count),
                    "-d",
                    str(hold_ms),
                ],
                cwd=workdir,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            started = time.monotonic()
            while True:
                time.sleep(2)
                calls, *_ = worker.measure()
                if calls >= count or time.monotonic() - started > count / rate * 3 + 60:
                    break
            time.sleep(40)
            _, calls, rss, objects, fds = worker.measure()  # calls: the dialogs still up
    finally:
        worker.stop()
        if sipp is not None:  # still holding its calls: stopped by its own pid
            sipp.kill()
            sipp.wait()
    return {
        "calls": calls,
        "rss_kib": (rss - rss0) / max(calls, 1),
        "objects": (objects - objects0) / max(calls, 1),
        "fds": (fds - fds0) / max(calls, 1),
        "rss_mib": rss / 1024,
        "rss": rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[2000, 4000, 9000])
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--no-media", action="store_true", help="answer with a fixed SDP")
    parser.add_argument("--direction", default="inactive", help="the offer's a= direction")
    args = parser.parse_args()
    print(f"sipx from {ROOT}, media {'off' if args.no_media else 'on'}, a={args.direction}")
    print("| calls held | RSS growth per call | GC-tracked objects per call | fds per call | RSS |")
    print("| --- | --- | --- | --- | --- |")
    rows = []
    for count in args.calls:
        r = run(count, not args.no_media, args.rate, args.direction)
        rows.append(r)
        print(
            f"| {r['calls']:.0f} of {count} | {r['rss_kib']:.2f} KiB | {r['objects']:.1f} |"
            f" {r['fds']:.2f} | {r['rss_mib']:.0f} MiB |",
            flush=True,
        )
    for low, high in itertools.pairwise(rows):  # what each further call costs
        if high["calls"] > low["calls"]:
            marginal = (high["rss"] - low["rss"]) / (high["calls"] - low["calls"])
            print(f"marginal RSS {low['calls']:.0f} -> {high['calls']:.0f}: {marginal:.2f} KiB")


if __name__ == "__main__":
    main()
