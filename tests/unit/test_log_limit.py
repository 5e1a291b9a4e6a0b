"""Logging of dropped and malformed input is rate-limited and summarised (sipx._log_limit).

``sipx serve`` once wrote 75 000 INFO lines in 20 s under a flood: one per datagram. Now at
most a few lines per kind and interval are written, then one summary with the count.
"""

from __future__ import annotations

import logging
import socket

import pytest
import trio
import trio.testing

import sipx
from sipx._log_limit import LogLimiter
from sipx.testing import DevServer, MemoryNetwork

LOOPBACK = "127.0.0.1"


def malformed(n: int) -> bytes:
    """Alternately a request answered 400 (Via and CSeq readable) and plain garbage."""
    if n % 2:
        return f"GARBAGE {n} \x00\x01\r\n\r\n".encode()
    return (
        "OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-m{n}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 99\r\n\r\n"  # more than there is: malformed
    ).encode()


def lines(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger]


async def test_a_burst_then_one_summary_per_interval(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="test.limited")
    limiter = LogLimiter(logging.getLogger("test.limited"), burst=5, interval=10)
    for n in range(100):
        limiter.log(logging.INFO, "malformed messages", "dropped %d", n)
        await trio.sleep(0.01)
    assert lines(caplog, "test.limited") == [f"dropped {n}" for n in range(5)]
    assert limiter.suppressed == 95
    await trio.sleep(10)  # the interval is over: the next line brings the summary first
    limiter.log(logging.INFO, "malformed messages", "dropped %d", 100)
    assert lines(caplog, "test.limited")[5:] == [
        "... 95 more malformed messages in 10 s (not logged: at most 5 lines per 10 s)",
        "dropped 100",
    ]
    # kinds are limited apart
    limiter.log(logging.WARNING, "requests refused", "refused")
    assert lines(caplog, "test.limited")[-1] == "refused"
    # flush() writes what is still owed, at the level of the lines it stands for
    for _ in range(10):
        limiter.log(logging.WARNING, "malformed messages", "again")
    limiter.flush()
    last = caplog.records[-1]
    assert last.getMessage().startswith("... 6 more malformed messages in ")
    assert last.levelno == logging.WARNING
    assert limiter.suppressed == 0


def test_a_disabled_level_costs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="test.quiet")
    limiter = LogLimiter(logging.getLogger("test.quiet"))
    assert not any(limiter.log(logging.INFO, "k", "x") for _ in range(100))
    assert limiter.suppressed == 0
    limiter.flush()
    assert lines(caplog, "test.quiet") == []


async def test_a_flood_of_malformed_datagrams_to_the_dev_server_logs_a_few_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="sipx.serve")
    async with DevServer(LOOPBACK, 0, transports=("UDP",)) as server:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as flood:
            flood.bind((LOOPBACK, 0))
            flood.setblocking(False)
            for n in range(10_000):
                flood.sendto(malformed(n), server.address)
                if n % 200 == 199:  # let the server drain its socket: nothing is lost
                    await trio.testing.wait_all_tasks_blocked()
                    try:
                        while flood.recv(65_535):  # the 400s
                            pass
                    except BlockingIOError:
                        pass
            await trio.testing.wait_all_tasks_blocked()
        assert server.limit_stats.malformed_messages == 10_000
    written = [line for line in lines(caplog, "sipx.serve") if "malformed" in line]
    # a burst per interval and its summary: bounded whatever the time the flood took
    assert 5 <= len(written) <= 60
    summaries = [line for line in written if line.startswith("... ")]
    assert summaries
    total = sum(int(line.split()[1]) for line in summaries)
    assert total + len(written) - len(summaries) == 10_000


async def test_a_flood_of_malformed_messages_to_a_client_logs_a_few_lines(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sipx")
    network = MemoryNetwork()
    async with (
        sipx.AsyncClient(LOOPBACK, 5060, network=network) as client,
        network.socket((LOOPBACK, 5999)) as flood,
    ):
        for n in range(10_000):
            flood.send(malformed(n), (LOOPBACK, 5060))
            if n % 1000 == 999:
                await trio.sleep(1)  # 10 s of flood in all
        await trio.testing.wait_all_tasks_blocked()
        assert client.limit_stats.malformed_messages == 10_000
    written = [line for line in lines(caplog, "sipx") if "malformed" in line]
    assert len(written) <= 2 * 6  # two 10 s windows at most: 5 lines and a summary each
    assert written[-1].startswith("... ") and "more malformed messages" in written[-1]
