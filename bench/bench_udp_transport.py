"""UDP echo throughput on loopback: a naive trio loop against sipx's ``UDPTransport``.

Run from the repository root::

    .venv/bin/python bench/bench_udp_transport.py          # both variants, window 128
    .venv/bin/python bench/bench_udp_transport.py --variant sipx --window 1 16 64 256

Two echo servers, each in its own trio process (this script started again with
``--serve VARIANT``):

* ``naive``: ``data, addr = await sock.recvfrom()`` then ``await sock.sendto(data, addr)``
  on a ``trio.socket`` socket, one datagram per pass round the loop;
* ``sipx``: :class:`sipx._trio.udp.UDPTransport` (drain loop on receive, ``send_nowait``)
  whose ``on_message`` sends each datagram straight back.

The load generator is this process: one stdlib non-blocking UDP socket that keeps
``--window`` datagrams in flight (each echo received is answered by a new datagram, after
draining what is ready), for a warm-up and then ``--repeat`` timed rounds of ``--seconds``.
A round in which nothing comes back for 200 ms refills the window and counts the missing
datagrams as lost. Reported: echoed datagrams/s (median and each round), lost datagrams,
and the CPU the server process and the generator used (from ``/proc/PID/stat``, in % of one
core; a figure near 100 % marks the side that limits the rate). ``--profile`` runs each
server under cProfile and prints, per echoed datagram, how many ``epoll.poll`` calls and
trio scheduler passes it took, and its busiest functions.

Loopback (127.0.0.1) only. Nothing here asserts a time; the numbers go to bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _procstat import cpu_seconds, machine  # noqa: E402  (bench/, beside this script)

_HOST = "127.0.0.1"


# -- servers (run in the child process) ------------------------------------------------------


async def _serve_naive(lifetime: float, rcvbuf: int) -> None:
    import trio

    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    await sock.bind((_HOST, 0))
    print(sock.getsockname()[1], flush=True)
    with trio.move_on_after(lifetime):
        while True:
            data, address = await sock.recvfrom(65_535)
            await sock.sendto(data, address)


async def _serve_sipx(lifetime: float, rcvbuf: int) -> None:
    import trio

    from sipx._trio.udp import UDPTransport

    def echo(data: bytes, source: tuple[str, int], transport: UDPTransport) -> None:
        transport.send_nowait(data, source)

    transport = UDPTransport(echo)  # type: ignore[arg-type]
    with trio.move_on_after(lifetime):
        async with trio.open_nursery() as nursery:
            _, port = await nursery.start(transport.serve, _HOST, 0)
            if rcvbuf:
                assert transport._sock is not None
                transport._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            print(port, flush=True)


def _serve(variant: str, lifetime: float, rcvbuf: int, profile: str | None) -> None:
    import trio

    serve = _serve_naive if variant == "naive" else _serve_sipx
    if profile is None:
        trio.run(serve, lifetime, rcvbuf)
        return
    import cProfile

    # The parent stops a profiled server with SIGINT (which a shell's background job
    # would otherwise ignore) so that the profile is written.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    profiler = cProfile.Profile()
    try:
        profiler.runcall(trio.run, serve, lifetime, rcvbuf)
    except* KeyboardInterrupt:
        pass
    finally:
        profiler.dump_stats(profile)


def _profile_summary(path: str) -> str:
    """Scheduler passes and epoll waits per echoed datagram, and the top functions."""
    import io
    import pstats

    stats = pstats.Stats(path, stream=io.StringIO())
    calls: dict[str, int] = {}
    for (filename, _line, name), (_, ncalls, *_rest) in stats.stats.items():  # type: ignore[attr-defined]
        if name == "<method 'sendto' of '_socket.socket' objects>":
            calls["sendto"] = calls.get("sendto", 0) + ncalls
        elif name == "<method 'poll' of 'select.epoll' objects>":
            calls["epoll"] = calls.get("epoll", 0) + ncalls
        elif name == "unrolled_run" and filename.endswith("_run.py"):
            calls["passes"] = calls.get("passes", 0) + ncalls
    echoed = max(calls.get("sendto", 0), 1)
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(8)
    prefixes = [sysconfig.get_paths()["purelib"] + "/", str(ROOT) + "/"]
    top = []
    for line in [line for line in out.getvalue().splitlines() if line.strip()][-9:]:
        for prefix in prefixes:
            line = line.replace(prefix, "")
        top.append(line)
    return (
        f"    {echoed:,} datagrams echoed, {calls.get('epoll', 0):,} epoll.poll calls "
        f"({calls.get('epoll', 0) / echoed:.3f} per datagram), "
        f"{calls.get('passes', 0):,} scheduler passes (trio unrolled_run, "
        f"{calls.get('passes', 0) / echoed:.3f} per datagram)\n"
        + "\n".join("    " + line for line in top)
    )


# -- the load generator ----------------------------------------------------------------------


class Generator:
    def __init__(self, port: int, window: int, size: int) -> None:
        self.address = (_HOST, port)
        self.window = window
        self.payload = b"x" * size
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.connect(self.address)
        self.sock.setblocking(False)
        self.in_flight = 0

    def run(self, seconds: float) -> tuple[int, int]:
        """Keep the window full for ``seconds``; returns (echoed, lost)."""
        sock, payload = self.sock, self.payload
        send, recv = sock.send, sock.recv
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        echoed = lost = 0
        deadline = time.perf_counter() + seconds
        while self.in_flight < self.window:
            send(payload)
            self.in_flight += 1
        while True:
            if not poller.poll(200):
                lost += self.in_flight  # nothing for 200 ms: refill the window
                self.in_flight = 0
            got = 0
            try:
                while True:
                    recv(65_535)
                    got += 1
            except BlockingIOError:
                pass
            echoed += got
            self.in_flight -= got
            if time.perf_counter() >= deadline:
                return echoed, lost
            while self.in_flight < self.window:
                try:
                    send(payload)
                except BlockingIOError:
                    break
                self.in_flight += 1

    def settle(self) -> None:
        """Collect what is still in flight so the next round starts with an empty window."""
        end = time.perf_counter() + 0.3
        while self.in_flight > 0 and time.perf_counter() < end:
            try:
                self.sock.recv(65_535)
                self.in_flight -= 1
            except BlockingIOError:
                time.sleep(0.001)
        self.in_flight = 0

    def close(self) -> None:
        self.sock.close()


def _measure(
    variant: str, window: int, args: argparse.Namespace, profile: str | None = None
) -> list[tuple[float, int, float, float]]:
    lifetime = args.warmup + args.repeat * (args.seconds + 0.5) + 10
    server = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            variant,
            "--lifetime",
            str(lifetime),
            "--rcvbuf",
            str(args.rcvbuf),
            *(["--profile-out", profile] if profile else []),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        generator = Generator(port, window, args.size)
        generator.run(args.warmup)
        generator.settle()
        results = []
        for _ in range(args.repeat):
            cpu0, own0, t0 = (
                cpu_seconds(server.pid),
                cpu_seconds(os.getpid()),
                time.perf_counter(),
            )
            echoed, lost = generator.run(args.seconds)
            elapsed = time.perf_counter() - t0
            cpu = (cpu_seconds(server.pid) - cpu0) / elapsed * 100
            own = (cpu_seconds(os.getpid()) - own0) / elapsed * 100
            results.append((echoed / elapsed, lost, cpu, own))
            generator.settle()
        generator.close()
        return results
    finally:
        if profile:
            server.send_signal(signal.SIGINT)
        else:
            server.terminate()
        server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", choices=["naive", "sipx", "both"], default="both")
    parser.add_argument("--window", type=int, nargs="+", default=[128], help="in flight")
    parser.add_argument("--size", type=int, default=400, help="datagram bytes (~an OPTIONS)")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of a timed round")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds per variant")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument(
        "--rcvbuf", type=int, default=0, help="server SO_RCVBUF (0: system default)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run each server under cProfile and print what its loop did per datagram",
    )
    parser.add_argument("--serve", choices=["naive", "sipx"], help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", help=argparse.SUPPRESS)
    parser.add_argument("--lifetime", type=float, default=60.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve, args.lifetime, args.rcvbuf, args.profile_out)
        return

    variants = ["naive", "sipx"] if args.variant == "both" else [args.variant]
    print(
        f"{machine()}; {args.size}-byte datagrams, "
        f"{args.repeat} x {args.seconds:g} s rounds after {args.warmup:g} s warm-up"
    )
    print(
        f"{'variant':<8} {'window':>6} {'echoed/s (median)':>18} {'rounds':>26} "
        f"{'lost':>6} {'server CPU':>10} {'gen. CPU':>9}"
    )
    summaries = []
    for window in args.window:
        for variant in variants:
            profile = None
            if args.profile:
                fd, profile = tempfile.mkstemp(suffix=".prof")
                os.close(fd)
            results = _measure(variant, window, args, profile)
            if profile:
                summaries.append((variant, window, _profile_summary(profile)))
                os.unlink(profile)
            rates = [r[0] for r in results]
            rounds = " ".join(f"{r / 1000:.1f}k" for r in rates)
            lost = sum(r[1] for r in results)
            cpu = statistics.median(r[2] for r in results)
            own = statistics.median(r[3] for r in results)
            print(
                f"{variant:<8} {window:>6} {statistics.median(rates):>18,.0f} {rounds:>26} "
                f"{lost:>6} {cpu:>9.0f}% {own:>9.0f}%",
                flush=True,
            )
    for variant, window, summary in summaries:
        print(
            f"\ncProfile of the {variant} server, window {window} (rates above are slowed by it):"
        )
        print(summary)


if __name__ == "__main__":
    main()
