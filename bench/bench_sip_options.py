"""SIP-level load on loopback: OPTIONS answered by sipx, and OPTIONS sent by sipx.

Run from the repository root (needs ``sipp`` on PATH)::

    .venv/bin/python bench/bench_sip_options.py                 # both parts, defaults
    .venv/bin/python bench/bench_sip_options.py --part uas --rates 2000 4000 6000
    .venv/bin/python bench/bench_sip_options.py --part client --peer devserver

``--part uas``: an :class:`sipx.AsyncClient` (``local_host="127.0.0.1"``, default handlers:
OPTIONS gets 200) runs in a child process (this script started again with ``--serve``);
SIPp runs ``tests/integration/peers/sipp/uac_options.xml`` against it at each ``--rates``
value for ``--seconds`` (``-r RATE -m RATE*SECONDS -buff_size 4194304``, bounded by
``-timeout``). A fresh sipx process serves each rate, so every step starts with an empty
transaction table. A step is *clean* with 0 failed calls, 0 retransmissions and every call
successful; the sweep stops after the first step that is not clean. Reported per step: the
rate SIPp achieved, failures, retransmissions, SIPp's mean response time (1 ms
resolution), datagrams dropped for a full receive buffer during the step (``RcvbufErrors``
of ``/proc/net/snmp``: system-wide, so other work on the machine can add to it), the CPU
of the sipx process (% of one core, user+system, and the system part, from
``/proc/PID/stat``), its peak RSS (``VmHWM``; the server transactions of a run are all
still alive at its end: Timer J is 32 s), its longest full (generation 2) garbage
collection and the longest stall of its event loop (how late a 10 ms sleep woke up).
``--profile`` runs the sipx process under cProfile (which slows it) and prints its busiest
functions after each rate, by own time and (sipx's functions) by time including callees,
per request answered (``epoll.poll`` is the loop waiting for work: idle time).

``--part client``: an ``AsyncClient`` in this process sends ``client.options()`` to a peer
in another process: SIPp ``uas_options.xml`` (``--peer sipp``, default) or sipx's
``DevServer`` (``--peer devserver``): first ``--sequential`` requests one after the other,
then ``--requests`` requests from ``--concurrency`` tasks. Reported: requests/s, the CPU
of this process and of the peer, the share of the time this process spent in the garbage
collector and its longest full collection.

``--part reference``: SIPp's ``uas_options.xml`` loaded by SIPp's ``uac_options.xml`` at
each ``--rates`` for ``--seconds``: the yardstick both parts are compared with, to run in
the same minutes (the machine is shared).

Nothing here asserts a time; the numbers go to bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _procstat import SIPP_TUNING, cpu_seconds, cpu_times, machine, sipp_totals  # noqa: E402  (bench/, beside this script)

from examples.dispatcher_worker import tune_gc  # noqa: E402  (the worker's GC settings)

SCENARIOS = ROOT / "tests" / "integration" / "peers" / "sipp"
_HOST = "127.0.0.1"


def _peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((_HOST, 0))
        return int(s.getsockname()[1])


# -- child processes -------------------------------------------------------------------------


def _serve(kind: str, lifetime: float, rcvbuf: int, gc_mode: str, profile: str | None) -> None:
    """The child: serve until SIGINT (or ``lifetime``), then print GC and loop-lag figures."""
    import gc
    import json

    import trio

    import sipx
    from sipx._serve import DevServer

    pauses: list[float] = []
    gen2: list[float] = []
    started = [0.0]
    lag = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pause = time.perf_counter() - started[0]
            pauses.append(pause)
            if info["generation"] == 2:
                gen2.append(pause)

    gc.callbacks.append(on_gc)
    if gc_mode == "off":
        gc.disable()
    # A shell that starts a job in the background makes it ignore SIGINT, which the parent
    # sends to collect these figures: take SIGINT back.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    async def watch_lag() -> None:  # how late a 10 ms sleep wakes up: the longest stall
        while True:
            before = time.perf_counter()
            await trio.sleep(0.01)
            lag[0] = max(lag[0], time.perf_counter() - before - 0.01)

    async def main() -> None:
        with trio.move_on_after(lifetime):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch_lag)
                if kind == "uas":
                    # Load, not a flood: no bound on server transactions (the default of
                    # 10 000 answers 503 beyond about 300 new requests/s over UDP).
                    unbounded = sipx.Limits(max_server_transactions=100_000_000)
                    async with sipx.AsyncClient(
                        local_host=_HOST, local_port=0, limits=unbounded
                    ) as client:
                        if gc_mode == "tuned":
                            tune_gc()
                        if rcvbuf:  # an experiment: the transport's socket, enlarged from outside
                            sock = client._engine.transports["UDP"]._sock  # type: ignore[attr-defined]
                            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
                        print(client.local_address.port, flush=True)
                        await trio.sleep_forever()
                else:
                    async with DevServer(_HOST, 0, transports=("UDP",)) as server:
                        if gc_mode == "tuned":
                            tune_gc()
                        print(server.address[1], flush=True)
                        await trio.sleep_forever()

    import cProfile

    profiler = cProfile.Profile() if profile else None
    try:
        if profiler is not None:
            profiler.runcall(trio.run, main)
        else:
            trio.run(main)
    except* KeyboardInterrupt:
        pass
    if profiler is not None and profile:
        profiler.dump_stats(profile)
    figures = {
        "gc_total": sum(pauses),
        "gen2_count": len(gen2),
        "gen2_max": max(gen2, default=0.0),
        "lag_max": lag[0],
        "gc_objects": len(gc.get_objects()),
    }
    print(json.dumps(figures), flush=True)


def _start_child(
    kind: str, lifetime: float, rcvbuf: int = 0, gc_mode: str = "on", profile: str | None = None
) -> tuple[subprocess.Popen[str], int]:
    child = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            kind,
            "--lifetime",
            str(lifetime),
            "--rcvbuf",
            str(rcvbuf),
            "--gc",
            gc_mode,
            *(["--profile-out", profile] if profile else []),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    return child, int(child.stdout.readline())


def _stop(process: subprocess.Popen[str], sig: int = signal.SIGINT) -> dict[str, float]:
    """Stop a child (SIGINT, so that it reports) or SIPp; returns the child's figures."""
    import json

    process.send_signal(sig)
    try:
        out, _ = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
    for line in reversed((out or "").splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    return {}


# -- part 1: sipx answers, SIPp loads --------------------------------------------------------


def _sipp_uac(port: int, rate: int, seconds: float, workdir: str) -> dict[str, float]:
    stat = Path(workdir) / f"uac_{rate}.csv"
    calls = int(rate * seconds)
    command = [
        "sipp",
        f"{_HOST}:{port}",
        "-sf",
        str(SCENARIOS / "uac_options.xml"),
        "-i",
        _HOST,
        "-p",
        str(_free_udp_port()),
        "-r",
        str(rate),
        "-m",
        str(calls),
        "-timeout",
        f"{int(seconds + 10)}s",
        *SIPP_TUNING,
        "-trace_stat",
        "-stf",
        str(stat),
        "-fd",
        "1",
        "-nostdin",
    ]
    started = time.perf_counter()
    overran = False
    try:
        subprocess.run(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=seconds + 20,
        )
    except subprocess.TimeoutExpired:  # SIPp still waiting for answers: not clean
        overran = True
    wall = time.perf_counter() - started
    totals, _ = sipp_totals(stat)
    return {
        "calls": calls,
        **totals,
        "wall": wall,
        "overran": overran,
    }


def _udp_rcvbuf_errors() -> int:
    """System-wide UDP RcvbufErrors (datagrams dropped because a receive buffer was full)."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    return int(rows[1][rows[0].index("RcvbufErrors")])


def _profile_top(path: str, requests: float) -> str:
    """The sipx process's busiest functions, per request answered: by own time (tottime),
    then sipx's own functions by time including callees (cumtime)."""
    import io
    import pstats

    prefixes = [sysconfig.get_paths()["purelib"] + "/", str(ROOT) + "/"]
    rows = []
    for key, column, restriction in (
        ("tottime", 1, (12,)),
        ("cumulative", 3, (str(ROOT / "sipx"), 12)),
    ):
        out = io.StringIO()
        stats = pstats.Stats(path, stream=out)
        stats.sort_stats(key).print_stats(*restriction)
        lines = out.getvalue().splitlines()
        start = next(i for i, line in enumerate(lines) if line.strip().startswith("ncalls"))
        rows.append(f"    by {key}, in us per request answered:")
        for line in [line for line in lines[start:] if line.strip()]:
            for prefix in prefixes:
                line = line.replace(prefix, "")
            fields = line.split(None, 5)
            if len(fields) == 6 and fields[column].replace(".", "").isdigit():
                per = float(fields[column]) / max(requests, 1) * 1e6
                line = f"{per:7.1f}  {line}"
            else:
                line = f"{'':>7}  {line}"
            rows.append("    " + line)
    return "\n".join(rows)


def part_uas(args: argparse.Namespace) -> None:
    print(
        f"sipx UAS (AsyncClient) loaded by SIPp uac_options.xml, {args.seconds:g} s per rate"
        + (f", SO_RCVBUF set to {args.rcvbuf}" if args.rcvbuf else "")
        + (", gc disabled" if args.gc == "off" else "")
        + (", gc tuned" if args.gc == "tuned" else "")
    )
    print(
        f"{'target/s':>8} {'achieved/s':>10} {'ok':>6} {'failed':>6} {'retrans':>7} "
        f"{'mean RT':>7} {'drops':>5} {'CPU (sys)':>9} {'RSS':>7} {'gen2 max':>8} "
        f"{'stall':>6}  verdict"
    )
    best = None
    with tempfile.TemporaryDirectory() as workdir:
        for rate in args.rates:
            profile = None
            if args.profile:
                fd, profile = tempfile.mkstemp(suffix=".prof")
                os.close(fd)
            child, port = _start_child("uas", args.seconds + 30, args.rcvbuf, args.gc, profile)
            try:
                time.sleep(0.2)
                drops0 = _udp_rcvbuf_errors()
                (user0, sys0), t0 = cpu_times(child.pid), time.perf_counter()
                result = _sipp_uac(port, rate, args.seconds, workdir)
                user1, sys1 = cpu_times(child.pid)
                elapsed = time.perf_counter() - t0
                cpu = (user1 + sys1 - user0 - sys0) / elapsed * 100
                sys_cpu = (sys1 - sys0) / elapsed * 100
                drops = _udp_rcvbuf_errors() - drops0
                rss = _peak_rss_mib(child.pid)
            finally:
                figures = _stop(child)
            clean = (
                result["failed"] == 0
                and result["retrans"] == 0
                and result["ok"] == result["calls"]
                and not result["overran"]
            )
            print(
                f"{rate:>8} {result['rate']:>10,.0f} {result['ok']:>6} {result['failed']:>6} "
                f"{result['retrans']:>7} {result['rt_ms']:>5.0f}ms {drops:>5} "
                f"{cpu:>3.0f}% ({sys_cpu:>2.0f}%) "
                f"{rss:>4.0f}MiB {figures.get('gen2_max', 0) * 1000:>6.0f}ms "
                f"{figures.get('lag_max', 0) * 1000:>4.0f}ms  {'clean' if clean else 'NOT clean'}"
                + (" (SIPp overran its run by 20 s)" if result["overran"] else ""),
                flush=True,
            )
            if profile:
                print(_profile_top(profile, result["ok"]), flush=True)
                os.unlink(profile)
            if not clean:
                break
            best = (rate, result["rate"], cpu)
    if best is None:
        print("no clean rate")
    else:
        print(
            f"highest clean rate: {best[0]}/s target, {best[1]:,.0f}/s achieved, "
            f"sipx CPU {best[2]:.0f}%"
        )


def part_reference(args: argparse.Namespace) -> None:
    """SIPp's own UAS (``uas_options.xml``) loaded by SIPp's UAC at each rate: the yardstick
    of both parts (SIPp's UAS rate for the UAS part, its UAC's for the client part)."""
    print(f"SIPp uas_options.xml loaded by SIPp uac_options.xml, {args.seconds:g} s per rate")
    print(f"{'target/s':>8} {'achieved/s':>10} {'ok':>6} {'failed':>6} {'retrans':>7} UAS CPU")
    with tempfile.TemporaryDirectory() as workdir:
        for rate in args.rates:
            peer, port = _start_peer("sipp")
            try:
                (user0, sys0), t0 = cpu_times(peer.pid), time.perf_counter()
                result = _sipp_uac(port, rate, args.seconds, workdir)
                user1, sys1 = cpu_times(peer.pid)
                cpu = (user1 + sys1 - user0 - sys0) / (time.perf_counter() - t0) * 100
            finally:
                peer.kill()
                peer.wait()
            clean = result["failed"] == 0 and result["retrans"] == 0 and not result["overran"]
            print(
                f"{rate:>8} {result['rate']:>10,.0f} {result['ok']:>6} {result['failed']:>6} "
                f"{result['retrans']:>7} {cpu:>6.0f}%  {'clean' if clean else 'NOT clean'}",
                flush=True,
            )


# -- part 2: sipx sends ----------------------------------------------------------------------


def _start_peer(peer: str) -> tuple[subprocess.Popen[str], int]:
    if peer == "devserver":
        return _start_child("devserver", lifetime=120)
    port = _free_udp_port()
    process = subprocess.Popen(
        [
            "sipp",
            "-sf",
            str(SCENARIOS / "uas_options.xml"),
            "-i",
            _HOST,
            "-p",
            str(port),
            *SIPP_TUNING,
            "-nostdin",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    time.sleep(0.3)
    return process, port


def part_client(args: argparse.Namespace) -> None:
    import gc

    import trio

    import sipx

    peer, port = _start_peer(args.peer)
    uri = f"sip:{_HOST}:{port}"
    results: list[tuple[str, int, float, float, float, float, float]] = []
    pauses: list[tuple[int, float]] = []  # (generation, seconds) of every GC pass
    started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append((info["generation"], time.perf_counter() - started[0]))

    async def run() -> None:
        with trio.fail_after(50):
            await session()

    async def session() -> None:
        async with sipx.AsyncClient(local_host=_HOST, local_port=0) as client:
            for _ in range(50):  # warm-up
                await client.options(uri)
            if args.gc == "tuned":
                tune_gc()

            async def timed(label: str, total: int, tasks: int) -> None:
                per_task = total // tasks

                async def worker() -> None:
                    for _ in range(per_task):
                        response = await client.options(uri)
                        if response.status_code != 200:
                            raise RuntimeError(f"unexpected {response.status_code}")

                own0, peer0 = cpu_seconds(os.getpid()), cpu_seconds(peer.pid)
                pauses.clear()
                t0 = time.perf_counter()
                async with trio.open_nursery() as nursery:
                    for _ in range(tasks):
                        nursery.start_soon(worker)
                elapsed = time.perf_counter() - t0
                own = (cpu_seconds(os.getpid()) - own0) / elapsed * 100
                peer_cpu = (cpu_seconds(peer.pid) - peer0) / elapsed * 100
                gc_share = sum(p for _, p in pauses) / elapsed * 100
                gen2_max = max((p for g, p in pauses if g == 2), default=0.0)
                count = per_task * tasks
                results.append((label, count, count / elapsed, own, peer_cpu, gc_share, gen2_max))

            await timed("sequential", args.sequential, 1)
            await timed(f"{args.concurrency} concurrent tasks", args.requests, args.concurrency)

    gc.callbacks.append(on_gc)
    if args.gc == "off":
        gc.disable()
    try:
        trio.run(run)
    finally:
        gc.callbacks.remove(on_gc)
        gc.enable()
        _stop(peer, signal.SIGINT if args.peer == "devserver" else signal.SIGTERM)
    print(
        f"sipx AsyncClient.options() against {args.peer} (another process)"
        + (", gc disabled" if args.gc == "off" else "")
        + (", gc tuned" if args.gc == "tuned" else "")
    )
    print(
        f"{'mode':<22} {'requests':>8} {'requests/s':>10} {'sipx CPU':>8} {'peer CPU':>8} "
        f"{'in GC':>6} {'gen2 max':>8}"
    )
    for label, count, rate, own, peer_cpu, gc_share, gen2_max in results:
        print(
            f"{label:<22} {count:>8} {rate:>10,.0f} {own:>7.0f}% {peer_cpu:>7.0f}% "
            f"{gc_share:>5.0f}% {gen2_max * 1000:>6.0f}ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["uas", "client", "both", "reference"], default="both")
    parser.add_argument(
        "--rates",
        type=int,
        nargs="+",
        default=[1000, 2000, 3000, 4000, 5000, 6000, 8000, 10000],
        help="SIPp call rates to try, in order (UAS part)",
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="SIPp run per rate")
    parser.add_argument("--peer", choices=["sipp", "devserver"], default="sipp")
    parser.add_argument("--sequential", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument(
        "--rcvbuf",
        type=int,
        default=0,
        help="set SO_RCVBUF of the sipx UAS socket (0: leave it as sipx sets it); Linux "
        "doubles the value, so 106496 gives its usual default of 212992 bytes",
    )
    parser.add_argument(
        "--gc",
        choices=["on", "tuned", "off"],
        default="on",
        help="the sipx process's garbage collector (UAS child, or this one for the client): "
        "on: Python's settings; tuned: as examples/dispatcher_worker.py tunes it once "
        "started (start-up objects frozen, first threshold 50 000); off: gc.disable()",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run the sipx UAS under cProfile and print its busiest functions per rate",
    )
    parser.add_argument("--serve", choices=["uas", "devserver"], help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", help=argparse.SUPPRESS)
    parser.add_argument("--lifetime", type=float, default=60.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve, args.lifetime, args.rcvbuf, args.gc, args.profile_out)
        return
    if (args.peer == "sipp" or args.part != "client") and shutil.which("sipp") is None:
        sys.exit("sipp is not on PATH")
    print(machine())
    if args.part in ("uas", "both"):
        part_uas(args)
    if args.part in ("client", "both"):
        part_client(args)
    if args.part == "reference":
        part_reference(args)


if __name__ == "__main__":
    main()
