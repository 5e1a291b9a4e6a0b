"""Concurrent two-way G.711 streams in one sipx process, against SIPp ``-rtp_echo``.

Run from the repository root (needs ``sipp`` on PATH)::

    .venv/bin/python bench/bench_media.py                       # N = 10 50 100 200
    .venv/bin/python bench/bench_media.py --calls 10 100 500 --seconds 10

For each N: a SIPp UAS answers N calls from one ``sipx.AsyncClient`` (all on loopback) and
echoes their RTP; every call sends 50 packets/s (silence when it plays nothing) and receives
the echo. Over ``--seconds`` of steady state it reports the packets sent and received per
second, the CPU of this process per stream (user+system, % of one core), and the pacing
error: how late each packet left after its absolute deadline (p50, p99, max). Nothing here
asserts a time; the figures go to bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

import sipx
import sipx._media_stream as media_stream

SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="UAS echo">
  <recv request="INVITE" crlf="true" />
  <send retrans="500"><![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:echo@[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=sipp 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000

  ]]></send>
  <recv request="ACK" crlf="true" />
  <recv request="BYE" />
  <send><![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

  ]]></send>
</scenario>
"""


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


async def measure(calls: int, seconds: float, sip_port: int) -> dict[str, float]:
    async with sipx.AsyncClient("127.0.0.1", 0, rtp_ports=(33000, 60999)) as client:
        placed: list[sipx.Call] = []
        limit = trio.CapacityLimiter(20)

        async def place() -> None:
            async with limit:
                placed.append(await client.call(f"sip:echo@127.0.0.1:{sip_port}", timeout=20))

        async with trio.open_nursery() as nursery:
            for _ in range(calls):
                nursery.start_soon(place)
        assert all(call.established for call in placed), "a call was not answered"
        await trio.sleep(1.0)  # every stream running
        media_stream.PACING = []
        sent0 = sum(c.media_stats.packets_sent for c in placed)  # type: ignore[union-attr]
        received0 = sum(c.media_stats.packets_received for c in placed)  # type: ignore[union-attr]
        cpu0, wall0 = cpu_seconds(), time.monotonic()
        await trio.sleep(seconds)
        cpu1, wall1 = cpu_seconds(), time.monotonic()
        lateness = sorted(media_stream.PACING)
        media_stream.PACING = None
        sent = sum(c.media_stats.packets_sent for c in placed) - sent0  # type: ignore[union-attr]
        received = sum(c.media_stats.packets_received for c in placed) - received0  # type: ignore[union-attr]
        async with trio.open_nursery() as nursery:
            for call in placed:
                nursery.start_soon(call.bye)
    wall = wall1 - wall0
    return {
        "sent/s": sent / wall,
        "received/s": received / wall,
        "cpu %/stream": 100 * (cpu1 - cpu0) / wall / calls,
        "cpu % total": 100 * (cpu1 - cpu0) / wall,
        "p50 ms": 1000 * statistics.median(lateness),
        "p99 ms": 1000 * lateness[int(0.99 * (len(lateness) - 1))],
        "max ms": 1000 * lateness[-1],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[10, 50, 100, 200])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    sipp = shutil.which("sipp")
    if sipp is None:
        print("sipp is not installed (Debian: sip-tester)", file=sys.stderr)
        return 2
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    print("calls   sent/s  received/s  CPU/stream  CPU total  pacing p50   p99    max")
    with tempfile.TemporaryDirectory() as work:
        scenario = Path(work) / "uas_echo.xml"
        scenario.write_text(SCENARIO)
        for calls in args.calls:
            sip_port, media_port = free_udp_port(), free_udp_port()
            uas = subprocess.Popen(
                [sipp, "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(sip_port),
                 "-mi", "127.0.0.1", "-mp", str(media_port), "-rtp_echo", "-m", str(calls),
                 "-nostdin"],
                cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(0.5)
            try:
                figures = trio.run(measure, calls, args.seconds, sip_port)
            finally:
                uas.terminate()
                uas.wait(5)
            print(
                f"{calls:5d} {figures['sent/s']:8.0f} {figures['received/s']:11.0f}"
                f" {figures['cpu %/stream']:10.2f}% {figures['cpu % total']:8.0f}%"
                f" {figures['p50 ms']:9.2f}ms {figures['p99 ms']:5.2f}ms {figures['max ms']:6.2f}ms"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
