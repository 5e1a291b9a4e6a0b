"""Floods on loopback: what a sipx endpoint holds and logs while it is flooded.

Run from the repository root::

    .venv/bin/python bench/bench_flood.py                     # both parts, defaults
    .venv/bin/python bench/bench_flood.py --part transactions --rate 2500 --seconds 20
    .venv/bin/python bench/bench_flood.py --part log --rate 5000 --seconds 20
    .venv/bin/python bench/bench_flood.py --sipx /tmp/sipx-before   # another sipx tree

``--part transactions``: an :class:`sipx.AsyncClient` (UDP, 127.0.0.1, default handlers:
OPTIONS gets 200) runs in a child process; this process sends it OPTIONS, each with a new
branch, at ``--rate`` per second for ``--seconds``, and counts the answers by status. Every
answered OPTIONS leaves a server transaction for 32 s (Timer J over UDP), so without a
bound they pile up for the whole run. Reported: the child's server transactions alive at
the end, its RSS growth and peak (``VmRSS``, ``VmHWM`` of ``/proc/PID/status``), the
growth per transaction alive, the answers (200, 503) and ``limit_stats``.
``--max-transactions N`` sets ``Limits(max_server_transactions=N)`` (default: the
library's default).

``--part log``: a ``DevServer`` (UDP, logging configured as ``sipx serve`` does it: INFO)
in a child process gets malformed datagrams at ``--rate`` per second for ``--seconds``
(half of them answerable with a 400, half garbage); reported: the log lines written.

``--sipx DIR`` imports sipx from ``DIR`` (a checkout's root, e.g. the commit before the
limits, extracted with ``git archive 0589041 sipx | tar -x -C /tmp/sipx-before``) to
measure the same flood against it. Nothing here asserts anything; the figures go to
bench/README.md and docs/SECURITY.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


def _status(pid: int) -> dict[str, int]:
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024
    return fields


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


# -- the flooded process ---------------------------------------------------------------------
def _serve(part: str, port: int, tree: str, max_transactions: int | None, pipe: Any) -> None:
    sys.path.insert(0, tree)
    import logging

    import trio

    import sipx

    class Count(logging.Handler):
        lines = 0

        def emit(self, record: logging.LogRecord) -> None:
            Count.lines += 1

    logging.basicConfig(level=logging.INFO, handlers=[Count()])
    kwargs: dict[str, Any] = {}
    if max_transactions is not None:
        kwargs["limits"] = sipx.Limits(max_server_transactions=max_transactions)

    async def main() -> None:
        if part == "log":
            from sipx.testing import DevServer

            server = DevServer(HOST, port, transports=("UDP",), **kwargs)
            async with server:
                await _report(server, None)
            return
        async with sipx.AsyncClient(HOST, port, **kwargs) as client:
            await _report(None, client)

    async def _report(server: Any, client: Any) -> None:
        pipe.send({"ready": True, **_status(os.getpid())})
        while not pipe.poll():
            await trio.sleep(0.2)
        pipe.recv()
        report: dict[str, Any] = {**_status(os.getpid()), "log_lines": Count.lines}
        if client is not None:
            engine = client._engine  # a bench may look inside
            report["transactions"] = len(engine.layer)
            stats = getattr(client, "limit_stats", None)
            report["limit_stats"] = None if stats is None else stats.__repr__()
        pipe.send(report)

    trio.run(main)


# -- the flood ---------------------------------------------------------------------------------
def _options(n: int, port: int) -> bytes:
    return (
        f"OPTIONS sip:flood@{HOST}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {HOST}:{port + 1};branch=z9hG4bK-flood-{n};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:flood@{HOST}>;tag=f{n}\r\n"
        f"To: <sip:flood@{HOST}:{port}>\r\n"
        f"Call-ID: flood-{n}@{HOST}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def _malformed(n: int) -> bytes:
    if n % 2:
        return f"GARBAGE {n}\r\n\r\n".encode()
    return (
        "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-m{n}\r\n"
        "CSeq: 1 OPTIONS\r\nContent-Length: 99\r\n\r\n"
    ).encode()


def flood(part: str, rate: int, seconds: float, tree: str, max_transactions: int | None) -> None:
    port = _free_port()
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=_serve, args=(part, port, tree, max_transactions, theirs))
    child.start()
    start_status = ours.recv()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind((HOST, 0))
    sock.setblocking(False)
    answers: dict[int, int] = {}

    def drain() -> None:
        while True:
            try:
                data = sock.recv(65_535)
            except BlockingIOError:
                return
            code = int(data[8:11]) if data.startswith(b"SIP/2.0 ") else 0
            answers[code] = answers.get(code, 0) + 1

    began = time.monotonic()
    sent = 0
    make = _options if part == "transactions" else (lambda n, _port: _malformed(n))
    while (now := time.monotonic() - began) < seconds:
        due = int(now * rate)
        while sent < due:
            try:
                sock.sendto(make(sent, port), (HOST, port))
            except BlockingIOError:
                break
            sent += 1
        drain()
        time.sleep(0.001)
    time.sleep(1.0)
    drain()
    ours.send("report")
    report = ours.recv()
    child.terminate()
    child.join()
    growth = report["VmRSS"] - start_status["VmRSS"]
    print(f"sipx from {tree}")
    print(f"  part {part}: {sent:,} datagrams in {seconds:g} s ({sent / seconds:,.0f}/s)")
    print(f"  answers by status: {dict(sorted(answers.items()))}")
    if part == "transactions":
        alive = report["transactions"]
        print(f"  server transactions alive at the end: {alive:,}")
        print(
            f"  RSS {start_status['VmRSS'] / 2**20:.1f} MiB -> {report['VmRSS'] / 2**20:.1f} MiB"
            f" (peak {report['VmHWM'] / 2**20:.1f} MiB): +{growth / 2**20:.1f} MiB,"
            f" {growth / max(alive, 1) / 1024:.2f} KiB per transaction alive"
        )
        print(f"  limit_stats: {report['limit_stats']}")
    print(f"  log lines written by the flooded process: {report['log_lines']:,}")
    print(json.dumps({"part": part, "sent": sent, "answers": answers, **report}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["transactions", "log", "both"], default="both")
    parser.add_argument("--rate", type=int, default=2500, help="datagrams per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--max-transactions", type=int, default=None)
    parser.add_argument("--sipx", default=str(ROOT), help="the tree to import sipx from")
    args = parser.parse_args()
    print(f"load {os.getloadavg()[0]:.2f}; {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    parts = ["transactions", "log"] if args.part == "both" else [args.part]
    for part in parts:
        flood(part, args.rate, args.seconds, str(Path(args.sipx).resolve()), args.max_transactions)


if __name__ == "__main__":
    main()
