"""Calls per second with one and with several sipx processes behind Kamailio's dispatcher.

Run from the repository root (needs ``kamailio`` and ``sipp``; about 1 minute per config
with the defaults)::

    .venv/bin/python bench/bench_dispatcher.py                      # 1 then 2 workers
    .venv/bin/python bench/bench_dispatcher.py --workers 1 2 3 --rates 100 200 300
    .venv/bin/python bench/bench_dispatcher.py --direct             # + SIPp -> 1 worker
    .venv/bin/python bench/bench_dispatcher.py --media              # workers carry RTP
    .venv/bin/python bench/bench_dispatcher.py --reference --direct --workers   # issue 14:
        # SIPp's own UAS, then one sipx worker, as the callee of SIPp (no Kamailio)
    .venv/bin/python bench/bench_dispatcher.py --workers --split 2   # 2 workers, a SIPp each
    .venv/bin/python bench/bench_dispatcher.py --floor --direct --workers   # the floor of
        # pure Python on trio (floor_uas.py, no SIP stack), then one sipx worker

A *config* is N worker processes (``examples/dispatcher_worker.py --quiet --no-media``
unchanged, each an ``AsyncClient`` answering every call in a plain INVITE handler, or in a
task per call with ``--task-per-call``, started through a few lines that time its garbage
collections) behind one Kamailio
(``tests/integration/peers/kamailio-dispatcher.cfg``, round robin, 4 UDP children, no
per-request logging, OPTIONS probes every second, ``FR_TIMER`` 1 s, 1 GB of shared
memory). ``--direct`` adds the config "SIPp straight to one worker" (no Kamailio: what the
balancer's hop costs); ``--split N`` adds "N workers, each called by a SIPp of its own at
rate/N" (no Kamailio: what N processes answer when nothing stands between them and the
callers; the figures are summed); ``--reference`` adds "SIPp straight to SIPp's own UAS" (``sipp -sn
uas``: the rate a C++ UAS reaches on the same machine, the yardstick of issue 14), and
``--workers`` with no number leaves out the Kamailio configs.

For each config and each ``--rates`` value, fresh processes are started and SIPp places
calls at that rate for ``--seconds`` with ``tests/integration/peers/sipp/uac_call_rr.xml``
(INVITE with a PCMU offer, 200, ACK, BYE at once (``-d 0``), 200; ACK and BYE through
Kamailio by the Record-Route). A step is *clean* when every call succeeded, SIPp
retransmitted nothing, it achieved 95 % of the target rate and 99 % of the INVITEs got
their 200 within 500 ms; a config's sweep stops after the first step that is not clean.
Reported per step: the rate SIPp achieved, calls failed, retransmissions, the INVITE->200
time (mean, and the 99th percentile as SIPp's bucket), the CPU (% of one core,
user+system) of each worker and the time it was runnable but waiting for a CPU
(schedstat), the CPU of Kamailio (all its processes) and of SIPp, the CPU milliseconds per
call of the workers together and of Kamailio, the longest full garbage collection in a
worker, and how many calls each worker answered (its own count). ``--repeat R`` runs every
sweep R times; ``--gc default`` runs the workers with Python's own garbage-collector settings
(``--gc-default``: they tune it otherwise), ``--gc off`` disables it (a diagnosis).

On a machine with few cores SIPp, Kamailio and the workers compete for them: read the
"waiting" and CPU columns along with the rates (bench/README.md, "Scale-out"). Nothing
here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from _procstat import CLK_TCK, SIPP_TUNING, cpu_seconds, machine, sipp_totals  # noqa: E402  (bench/, beside this script)
from peers import HOST, Kamailio, free_port  # noqa: E402  (the tests' peer kit)

WORKER = ROOT / "examples" / "dispatcher_worker.py"
FLOOR = ROOT / "bench" / "floor_uas.py"
SCENARIO = ROOT / "tests" / "integration" / "peers" / "sipp" / "uac_call_rr.xml"


def _runqueue_wait_seconds(pid: int) -> float:
    """Seconds the threads of ``pid`` spent runnable but waiting for a CPU (schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(task.read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def _groupcpu_seconds(pgid: int) -> float:
    """CPU seconds of every live process in process group ``pgid`` (Kamailio's children)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[2] == str(pgid):
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


# -- the processes ---------------------------------------------------------------------------


#: runs the worker example unchanged, with its garbage collections timed (and, with
#: argv[1] == "off", disabled); prints one JSON line of GC figures when the worker exits
_LAUNCHER = """
import atexit, gc, json, runpy, sys, time
pauses, started = [], [0.0]
def timed(phase, info):
    if phase == "start":
        started[0] = time.perf_counter()
    else:
        pauses.append((info["generation"], time.perf_counter() - started[0]))
gc.callbacks.append(timed)
if sys.argv[1] == "off":
    gc.disable()
def report():
    full = [p for g, p in pauses if g == 2]
    print(json.dumps({"gc_s": sum(p for _, p in pauses), "gen2": len(full),
                      "gen2_max_s": max(full, default=0.0)}), flush=True)
atexit.register(report)
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


class Worker:
    """One ``dispatcher_worker.py`` (quiet: it prints its address, then its count at exit)."""

    def __init__(self, media: bool, gc_mode: str = "on", task_per_call: bool = False) -> None:
        self.port = free_port()
        self.name = f"w{self.port}"
        args = ["--local-host", HOST, "--local-port", str(self.port), "--name", self.name]
        args += ["--quiet"] + ([] if media else ["--no-media"])
        args += ["--gc-default"] if gc_mode == "default" else []
        args += ["--task-per-call"] if task_per_call else []
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-c", _LAUNCHER, gc_mode, str(WORKER), *args]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        #: the worker's garbage-collector figures, read at stop()
        self.gc: dict[str, float] = {}

    @property
    def uri(self) -> str:
        return f"sip:{HOST}:{self.port}"

    def wait_listening(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"worker did not start: {line!r}")

    def stop(self) -> int:
        """SIGTERM; the number of calls it says it answered (-1 when it did not say)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        for line in (out or "").splitlines():
            if line.startswith("{"):
                self.gc = json.loads(line)
        found = re.search(r": (\d+) call\(s\) answered", out or "")
        return int(found[1]) if found else -1


def _sipp(target: str, rate: int, seconds: float, workdir: Path) -> dict[str, float]:
    """SIPp places ``rate`` calls/s for ``seconds``; its cumulative statistics and CPU."""
    return _sipp_all([target], rate, seconds, workdir)


def _sipp_all(targets: list[str], rate: int, seconds: float, workdir: Path) -> dict[str, float]:
    """One SIPp per target, each placing ``rate / len(targets)`` calls/s for ``seconds`` at
    the same time; their statistics added up (rates, counts, CPU), the worst p99 and the
    mean INVITE->200 time weighted by calls."""
    share = rate / len(targets)
    runs = [
        _sipp_start(target, share, seconds, workdir, f"{rate}_{n}")
        for n, target in enumerate(targets)
    ]
    results = [_sipp_finish(*run) for run in runs]
    if len(results) == 1:
        return results[0]
    order = ["<1", "<10", "<20", "<50", "<100", "<200", "<500", ">=500"]
    combined: dict[str, float] = {}
    for key in ("calls", "ok", "failed", "retrans", "rate", "cpu"):
        combined[key] = sum(float(r[key]) for r in results)
    combined["wall"] = max(float(r["wall"]) for r in results)
    ok = max(combined["ok"], 1)
    combined["rt_ms"] = sum(float(r["rt_ms"]) * float(r["ok"]) for r in results) / ok
    worst = max(results, key=lambda r: order.index(str(r["p99"])) if r["p99"] in order else 99)
    combined["p99"] = worst["p99"]
    return combined


def _sipp_start(
    target: str, rate: float, seconds: float, workdir: Path, tag: str
) -> tuple[subprocess.Popen[bytes], Path, float, int]:
    stat = workdir / f"sipp_{tag}.csv"
    calls = int(rate * seconds)
    command = [
        "sipp",
        target,
        "-sf",
        str(SCENARIO),
        "-s",
        "100",
        "-i",
        HOST,
        "-p",
        str(free_port()),
        "-r",
        f"{rate:g}",
        "-m",
        str(calls),
        "-d",
        "0",
        "-recv_timeout",
        "10000",
        "-timeout",
        f"{int(seconds + 30)}s",
        *SIPP_TUNING,
        "-trace_stat",
        "-stf",
        str(stat),
        "-fd",
        "1",
        "-nostdin",
    ]
    started = time.perf_counter()
    sipp = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return sipp, stat, started, calls


def _sipp_finish(
    sipp: subprocess.Popen[bytes], stat: Path, started: float, calls: int
) -> dict[str, float]:
    _, _, usage = os.wait4(sipp.pid, 0)
    sipp.returncode = 0  # reaped by wait4
    wall = time.perf_counter() - started
    totals, last = sipp_totals(stat)
    # the INVITE->200 times by bucket ("<1", "<2", ... "<500", ">=500" ms): the 99th percentile
    buckets = [
        (k.rsplit("_", 1)[1], int(v or 0)) for k, v in last.items() if k and "Repartition1_" in k
    ]
    total, seen, p99 = sum(n for _, n in buckets), 0, ">=500"
    for bound, n in buckets:
        seen += n
        if total and seen >= 0.99 * total:
            p99 = bound
            break
    return {
        "calls": calls,
        **totals,
        "p99": p99,
        "wall": wall,
        "cpu": (usage.ru_utime + usage.ru_stime) / wall * 100,
    }


class FloorUAS(Worker):
    """``floor_uas.py``: a bare trio UAS with no SIP stack, the floor of a call answered in
    pure Python here (``--floor``); ``tasks`` adds a trio task per call. Quacks like a
    :class:`Worker` (it prints its address, then its count at exit)."""

    def __init__(self, tasks: bool) -> None:  # not super().__init__: another command
        self.port = free_port()
        command = [sys.executable, str(FLOOR), "--local-host", HOST, "--local-port", str(self.port)]
        command += ["--task-per-call"] if tasks else []
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        self.gc = {}


class SippUAS:
    """SIPp's own UAS (``sipp -sn uas``) as the callee: the reference the workers are
    measured against (issue 14). Quacks like a :class:`Worker` for :func:`step`."""

    def __init__(self) -> None:
        self.port = free_port()
        command = ["sipp", "-sn", "uas", "-i", HOST, "-p", str(self.port), *SIPP_TUNING]
        command += ["-nostdin", "-fd", "1"]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.gc: dict[str, float] = {}

    def wait_listening(self) -> None:
        time.sleep(0.5)
        if self.proc.poll() is not None:
            raise RuntimeError("sipp -sn uas did not start")

    def stop(self) -> int:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return -1  # SIPp does not say how many it answered


def step(config: str, workers_n: int, rate: int, args: argparse.Namespace) -> dict[str, object]:
    """Fresh workers (and Kamailio), one SIPp run at ``rate``; the figures of the step."""
    workers: list[Worker | SippUAS] = (
        [SippUAS()]
        if config == "sipp-uas"
        else [FloorUAS(config == "floor-tasks")]
        if config.startswith("floor")
        else [Worker(args.media, args.gc, args.task_per_call) for _ in range(workers_n)]
    )
    kamailio: Kamailio | None = None
    try:
        for worker in workers:
            worker.wait_listening()
        with tempfile.TemporaryDirectory(prefix="bench-dispatcher-") as tmp:
            workdir = Path(tmp)
            targets = [f"{HOST}:{w.port}" for w in workers]
            if config in ("direct", "sipp-uas", "split", "floor", "floor-tasks"):
                target = targets[0]
            else:
                kamailio = Kamailio.start_dispatcher(
                    [w.uri for w in workers], quiet=True, shm_mb=1024, run_dir=workdir / "kamailio"
                )
                target = kamailio.hostport
            time.sleep(1.2)  # one probe cycle: every worker seen alive
            cpu0 = [cpu_seconds(w.proc.pid) for w in workers]
            wait0 = [_runqueue_wait_seconds(w.proc.pid) for w in workers]
            k0 = _groupcpu_seconds(kamailio.proc.pid) if kamailio else 0.0
            t0 = time.perf_counter()
            if config == "split":  # one SIPp per worker, the rate shared
                result = _sipp_all(targets, rate, args.seconds, workdir)
            else:
                result = _sipp(target, rate, args.seconds, workdir)
            elapsed = time.perf_counter() - t0
            worker_cpu = [
                (cpu_seconds(w.proc.pid) - c) / elapsed * 100 for w, c in zip(workers, cpu0)
            ]
            worker_wait = [
                (_runqueue_wait_seconds(w.proc.pid) - c) / elapsed * 100
                for w, c in zip(workers, wait0)
            ]
            k_cpu = (_groupcpu_seconds(kamailio.proc.pid) - k0) / elapsed * 100 if kamailio else 0
            if kamailio is not None:
                kamailio.stop()
                kamailio = None
    finally:
        if kamailio is not None:
            kamailio.stop()
        answered = [w.stop() for w in workers]
    gen2_max = max((w.gc.get("gen2_max_s", 0.0) for w in workers), default=0.0)
    clean = (
        result["failed"] == 0
        and result["retrans"] == 0
        and result["ok"] == result["calls"]
        and result["rate"] >= 0.95 * rate
        and result["p99"] != ">=500"
    )
    ok = max(result["ok"], 1)
    return {
        **result,
        "worker_cpu": worker_cpu,
        "worker_wait": worker_wait,
        "gen2_max_ms": gen2_max * 1000,
        "kamailio_cpu": k_cpu,
        # CPU milliseconds per call: what one call costs each side, however busy the machine
        "worker_ms": sum(worker_cpu) / 100 * elapsed / ok * 1000,
        "kamailio_ms": k_cpu / 100 * elapsed / ok * 1000,
        "answered": answered,
        "clean": clean,
    }


def sweep(config: str, workers_n: int, args: argparse.Namespace) -> tuple[int, float] | None:
    label = {
        "direct": "SIPp -> 1 worker (no Kamailio)",
        "split": f"{workers_n} SIPp -> {workers_n} workers, one each (no Kamailio)",
        "sipp-uas": "SIPp -> SIPp's own UAS (sipp -sn uas, the reference)",
        "floor": "SIPp -> floor_uas.py (no SIP stack: the floor of pure Python on trio)",
        "floor-tasks": "SIPp -> floor_uas.py --task-per-call (the floor, a trio task per call)",
    }.get(config, f"SIPp -> Kamailio -> {workers_n} worker(s)")
    print(
        f"\n{label}, {args.seconds:g} s per rate"
        + (", with media" if args.media else "")
        + (", gc disabled in the workers" if args.gc == "off" else "")
        + (", the workers' gc untuned (--gc-default)" if args.gc == "default" else "")
        + (", a task per call (--task-per-call)" if args.task_per_call else "")
    )
    print(
        f"{'target/s':>8} {'achieved/s':>10} {'failed':>6} {'retrans':>7} {'200 mean':>8} "
        f"{'p99':>6} {'workers CPU':>16} {'(waiting)':>11} {'Kamailio':>8} {'SIPp':>5} "
        f"{'ms/call w+K':>11} {'gen2 max':>8}  "
        "answered per worker"
    )
    best = None
    for rate in args.rates:
        r = step(config, workers_n, rate, args)
        cpu = " ".join(f"{c:3.0f}%" for c in r["worker_cpu"])  # type: ignore[attr-defined]
        waits = " ".join(f"{c:3.0f}%" for c in r["worker_wait"])  # type: ignore[attr-defined]
        kam = f"{r['kamailio_cpu']:.0f}%" if config == "dispatcher" else "-"
        per_call = f"{r['worker_ms']:.2f}+{r['kamailio_ms']:.2f}"
        print(
            f"{rate:>8} {r['rate']:>10,.0f} {r['failed']:>6} {r['retrans']:>7} "
            f"{r['rt_ms']:>6.0f}ms {r['p99'] + 'ms':>6} {cpu:>16} {waits:>11} {kam:>8} "
            f"{r['cpu']:>4.0f}% "
            f"{per_call:>11} {r['gen2_max_ms']:>6.0f}ms  {r['answered']}  "
            f"{'clean' if r['clean'] else 'NOT clean'}",
            flush=True,
        )
        if not r["clean"]:
            break
        best = (rate, float(r["rate"]))  # type: ignore[arg-type]
    if best is None:
        print("no clean rate")
    else:
        print(f"highest clean rate: {best[0]}/s target, {best[1]:,.0f}/s achieved")
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--workers", type=int, nargs="*", default=[1, 2], help="configs (1 2; none: no Kamailio)"
    )
    parser.add_argument(
        "--rates",
        type=int,
        nargs="+",
        default=[100, 200, 300, 400, 500, 600, 800, 1000],
        help="call rates to try, in order",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="SIPp run per rate (10)")
    parser.add_argument("--repeat", type=int, default=1, help="run every sweep R times")
    parser.add_argument("--direct", action="store_true", help="also SIPp straight to 1 worker")
    parser.add_argument(
        "--split",
        type=int,
        default=0,
        metavar="N",
        help="also N workers, each called by a SIPp of its own at rate/N (no Kamailio)",
    )
    parser.add_argument(
        "--reference", action="store_true", help="also SIPp straight to SIPp's own UAS"
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also SIPp straight to floor_uas.py, without and with a task per call",
    )
    parser.add_argument("--media", action="store_true", help="workers carry the calls' RTP")
    parser.add_argument(
        "--task-per-call",
        action="store_true",
        help="workers serve each call in a task (client.calls()), not in an INVITE handler",
    )
    parser.add_argument(
        "--gc",
        choices=["on", "default", "off"],
        default="on",
        help="on: the workers' GC as they tune it; default: Python's (--gc-default); "
        "off: gc.disable() in the workers (a diagnosis, not a setting to deploy)",
    )
    args = parser.parse_args()
    for binary in ("sipp", "kamailio"):
        if shutil.which(binary) is None and not Path("/usr/sbin", binary).exists():
            sys.exit(f"{binary} is not installed")
    print(machine())
    configs = [("sipp-uas", 1)] if args.reference else []
    configs += [("floor", 1), ("floor-tasks", 1)] if args.floor else []
    configs += ([("direct", 1)] if args.direct else []) + [("dispatcher", n) for n in args.workers]
    configs += [("split", args.split)] if args.split else []
    summary: list[tuple[str, int, tuple[int, float] | None]] = []
    for run in range(args.repeat):
        for config, n in configs:
            summary.append((config, n, sweep(config, n, args)))
        print(f"\nrun {run + 1} done; {machine()}")
    print("\nhighest clean rate per config (target/s, achieved/s):")
    for config, n, best in summary:
        name = {
            "direct": "direct, 1 worker",
            "sipp-uas": "sipp -sn uas",
            "split": f"direct, {n} workers",
            "floor": "floor_uas.py",
            "floor-tasks": "floor_uas.py, tasks",
        }.get(config, f"Kamailio, {n} worker(s)")
        print(f"  {name:<22} {'none' if best is None else f'{best[0]}/s, {best[1]:,.0f}/s'}")


if __name__ == "__main__":
    main()
