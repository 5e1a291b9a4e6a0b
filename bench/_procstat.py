"""What the benchmark scripts read about processes and the machine (Linux /proc), and the
SIPp options they share."""

from __future__ import annotations

import csv
import os
import sys

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
SIPP_TUNING = ["-buff_size", "4194304", "-max_recv_loops", "10000", "-max_sched_loops", "10000"]
"""SIPp options for load runs: a 4 MiB socket buffer, long receive and scheduling loops."""


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pid``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (0 once it is gone)."""
    try:
        return sum(cpu_times(pid))
    except OSError:
        return 0.0


def machine() -> str:
    """Python version, CPUs and how busy the machine was (other work skews every figure)."""
    text = f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}"
    try:
        with open("/proc/pressure/cpu") as f:
            some = f.readline().split()[1]  # avg10=...: % of time runnable tasks waited
        text += f", CPU pressure {some.split('=')[1]}%"
    except OSError:
        pass
    return text


def sipp_totals(stat_file: str | os.PathLike[str]) -> tuple[dict[str, float], dict[str, str]]:
    """The cumulative figures of a SIPp ``-trace_stat`` CSV: calls ok and failed,
    retransmissions, the achieved rate and the mean response time in ms; and the last row
    as it is (for the columns a script reads itself)."""
    with open(stat_file, newline="") as f:
        last = list(csv.DictReader(f, delimiter=";"))[-1]
    h, m, s, us = (int(x) for x in last["ResponseTime1(C)"].split(":"))  # HH:MM:SS:micro
    totals = {
        "ok": int(last["SuccessfulCall(C)"]),
        "failed": int(last["FailedCall(C)"]),
        "retrans": int(last["Retransmissions(C)"]),
        "rate": float(last["CallRate(C)"]),
        "rt_ms": ((h * 60 + m) * 60 + s) * 1000 + us / 1000,
    }
    return totals, last
