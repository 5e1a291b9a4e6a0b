"""Limits on accepted TCP/TLS connections (sipx.Limits), on real loopback sockets.

Over ``max_connections`` or ``max_connections_per_address`` a new connection is closed at
once; a connection that delivers no complete message within ``first_message_timeout`` (TLS
handshake included) is closed: a sender of one byte per second no longer holds a connection
for ever. The deadlines run on the autojump clock (loopback data is readable at once, so
trio sees it before it declares every task blocked and jumps the clock).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
import trustme

import sipx
from sipx._trio.tcp import TCPTransport
from sipx._trio.tls import TLSTransport, client_context
from sipx._trio.transport import Address, Transport
from sipx.testing import DevServer

LOOPBACK = "127.0.0.1"


def options(branch: str = "z9hG4bKlimits1") -> bytes:
    return (
        "OPTIONS sip:limits@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 127.0.0.1:5999;branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:peer@127.0.0.1>;tag=1\r\n"
        "To: <sip:limits@127.0.0.1>\r\n"
        f"Call-ID: {branch}@127.0.0.1\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


class Collector:
    def __init__(self) -> None:
        self.received: list[tuple[bytes, Address]] = []

    def __call__(self, data: bytes, source: Address, transport: Transport) -> None:
        self.received.append((data, source))


@asynccontextmanager
async def serving(transport: TCPTransport) -> AsyncIterator[Address]:
    async with trio.open_nursery() as nursery:
        address: Address = await nursery.start(transport.serve, LOOPBACK, 0)
        yield address
        nursery.cancel_scope.cancel()


async def closed_by_peer(stream: trio.abc.Stream, seconds: float = 5.0) -> bool:
    """True when the other side closes (or resets) the connection within ``seconds``."""
    with trio.move_on_after(seconds):
        try:
            while await stream.receive_some(65_536):
                pass
        except trio.BrokenResourceError:
            pass
        return True
    return False


# -- how many connections ------------------------------------------------------------------------
async def test_connections_over_the_total_are_closed_at_once() -> None:
    collector = Collector()
    transport = TCPTransport(collector, limits=sipx.Limits(max_connections=2))
    async with serving(transport) as address:
        first = await trio.open_tcp_stream(*address)
        second = await trio.open_tcp_stream(*address)
        await trio.testing.wait_all_tasks_blocked()
        assert transport.connection_count == 2
        third = await trio.open_tcp_stream(*address)
        assert await closed_by_peer(third)
        assert transport.connections_refused == 1
        assert transport.connection_count == 2
        # the two admitted ones still work
        await first.send_all(options("z9hG4bKfirst"))
        await second.send_all(options("z9hG4bKsecond"))
        with trio.fail_after(5):
            while len(collector.received) < 2:
                await trio.sleep(0.01)
        # a slot freed is a slot for the next connection
        await first.aclose()
        with trio.fail_after(5):
            while transport.connection_count != 1:
                await trio.sleep(0.01)
        fourth = await trio.open_tcp_stream(*address)
        await fourth.send_all(options("z9hG4bKfourth"))
        with trio.fail_after(5):
            while len(collector.received) < 3:
                await trio.sleep(0.01)
        assert transport.connections_refused == 1
        for stream in (second, third, fourth):
            await stream.aclose()


async def test_connections_per_address_are_counted_by_ip() -> None:
    transport = TCPTransport(Collector(), limits=sipx.Limits(max_connections_per_address=2))
    async with serving(transport) as address:
        mine = [await trio.open_tcp_stream(*address) for _ in range(2)]
        await trio.testing.wait_all_tasks_blocked()
        refused = await trio.open_tcp_stream(*address)
        assert await closed_by_peer(refused)
        assert transport.connections_refused == 1
        # another address (127.0.0.2 is loopback too on Linux) has its own allowance
        other = await trio.open_tcp_stream(*address, local_address="127.0.0.2")
        assert not await closed_by_peer(other, seconds=0.2)
        assert transport.connections_refused == 1
        assert transport.connection_count == 3
        for stream in (*mine, refused, other):
            await stream.aclose()


async def test_connections_the_client_opens_are_never_refused() -> None:
    """The total bounds what peers open; the client's own connections still go out."""
    peer = TCPTransport(Collector())
    ours = TCPTransport(Collector(), limits=sipx.Limits(max_connections=1))
    async with serving(peer) as peer_address, serving(ours) as our_address:
        inbound = await trio.open_tcp_stream(*our_address)
        await trio.testing.wait_all_tasks_blocked()
        ours.send_nowait(options(), peer_address)  # a second connection, opened by us
        with trio.fail_after(5):
            while not ours.has_connection(peer_address):
                await trio.sleep(0.01)
        assert ours.connection_count == 2
        assert ours.connections_refused == 0
        await inbound.aclose()


# -- the first message ---------------------------------------------------------------------------
async def test_a_sender_of_one_byte_per_second_is_cut_at_the_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    collector = Collector()
    transport = TCPTransport(collector)  # the default: 10 s
    async with serving(transport) as address:
        stream = await trio.open_tcp_stream(*address)
        start = trio.current_time()
        data = options()
        closed_at = None
        with trio.fail_after(120):
            for byte in data:
                try:
                    await stream.send_all(bytes([byte]))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
                if await closed_by_peer(stream, seconds=1):
                    closed_at = trio.current_time() - start
                    break
        assert closed_at == 10  # virtual time: exact
        await trio.testing.wait_all_tasks_blocked()  # the transport has finished with it
        assert collector.received == []
        assert transport.connections_timed_out == 1
        assert transport.connection_count == 0
        await stream.aclose()


async def test_a_connection_that_sent_a_message_lives_until_idle(
    autojump_clock: trio.testing.MockClock,
) -> None:
    collector = Collector()
    limits = sipx.Limits(first_message_timeout=5)
    transport = TCPTransport(collector, limits=limits)
    async with serving(transport) as address:
        stream = await trio.open_tcp_stream(*address)
        start = trio.current_time()
        await trio.sleep(4)
        await stream.send_all(options())
        assert not await closed_by_peer(stream, seconds=100)  # well past the 5 s
        assert len(collector.received) == 1
        assert await closed_by_peer(stream, seconds=300)  # the idle timeout, 300 s
        assert trio.current_time() - start == 304
        assert transport.connections_timed_out == 0
        await stream.aclose()


# -- later messages ------------------------------------------------------------------------------
async def trickle(stream: trio.abc.Stream, data: bytes, every: float) -> float | None:
    """Send ``data`` a byte every ``every`` seconds; when the peer closes, the time since
    the first byte (None if it never does)."""
    start = trio.current_time()
    for byte in data:
        try:
            await stream.send_all(bytes([byte]))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return trio.current_time() - start
        if await closed_by_peer(stream, seconds=every):
            return trio.current_time() - start
    return None


async def test_a_message_trickled_after_the_first_is_cut_at_message_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Before, each byte reset the 300 s idle timeout: a second message trickled at a byte
    per second held the connection for as long as the peer liked."""
    collector = Collector()
    transport = TCPTransport(collector, limits=sipx.Limits(message_timeout=7))
    async with serving(transport) as address:
        stream = await trio.open_tcp_stream(*address)
        await stream.send_all(options())
        assert not await closed_by_peer(stream, seconds=30)  # quiet: the idle timeout rules
        closed_after = await trickle(stream, options("z9hG4bKlimits2"), every=1)
        assert closed_after == 7  # virtual time: exact, counted from the first byte
        await trio.testing.wait_all_tasks_blocked()
        assert [data for data, _ in collector.received] == [options()]
        assert transport.connections_timed_out == 1
        assert transport.connection_count == 0
        await stream.aclose()


async def test_messages_each_complete_within_message_timeout_keep_the_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The bound is per message: a slow but steady peer (each message in 4 s of a 5 s
    bound, one after another for 40 s) is not cut."""
    collector = Collector()
    transport = TCPTransport(collector, limits=sipx.Limits(message_timeout=5))
    async with serving(transport) as address:
        stream = await trio.open_tcp_stream(*address)
        for number in range(10):
            data = options(f"z9hG4bKsteady{number}")
            half = len(data) // 2
            await stream.send_all(data[:half])
            await trio.sleep(4)
            await stream.send_all(data[half:])
            await trio.testing.wait_all_tasks_blocked()
        assert not await closed_by_peer(stream, seconds=1)
        assert len(collector.received) == 10
        assert transport.connections_timed_out == 0
        await stream.aclose()


async def test_a_keepalive_cr_left_over_is_not_a_begun_message(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A lone CR (the first half of a CRLF keep-alive) starts no message deadline."""
    transport = TCPTransport(Collector(), limits=sipx.Limits(message_timeout=2))
    async with serving(transport) as address:
        stream = await trio.open_tcp_stream(*address)
        await stream.send_all(options() + b"\r")
        assert not await closed_by_peer(stream, seconds=60)
        assert transport.connections_timed_out == 0
        await stream.aclose()


async def test_a_tls_connection_that_never_shakes_hands_is_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    serving_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert(LOOPBACK).configure_cert(serving_context)
    transport = TLSTransport(
        Collector(),
        client_context=client_context(False),
        server_context=serving_context,
        limits=sipx.Limits(first_message_timeout=3),
    )
    async with serving(transport) as address:
        stream = await trio.open_tcp_stream(*address)  # TCP only: no ClientHello, ever
        start = trio.current_time()
        assert await closed_by_peer(stream, seconds=60)
        assert trio.current_time() - start == 3
        await trio.testing.wait_all_tasks_blocked()
        assert transport.connections_timed_out == 1
        await stream.aclose()


# -- through the public API ----------------------------------------------------------------------
async def test_client_limits_reach_its_tcp_transport(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limits = sipx.Limits(first_message_timeout=2, max_connections_per_address=1)
    async with sipx.AsyncClient(LOOPBACK, 0, transport="TCP", limits=limits) as client:
        assert client.limits is limits
        address = (LOOPBACK, client.local_address.port)
        quiet = await trio.open_tcp_stream(*address)
        refused = await trio.open_tcp_stream(*address)
        assert await closed_by_peer(refused, seconds=1)
        assert await closed_by_peer(quiet, seconds=60)
        await trio.testing.wait_all_tasks_blocked()
        stats = client.limit_stats
        assert (stats.connections_refused, stats.connections_timed_out) == (1, 1)
        await quiet.aclose()
        await refused.aclose()


async def test_dev_server_limits_reach_its_tcp_transport(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limits = sipx.Limits(first_message_timeout=2)
    async with DevServer(LOOPBACK, 0, transports=("TCP",), limits=limits) as server:
        stream = await trio.open_tcp_stream(*server.address)
        await stream.send_all(b"OPTIONS sip:100@127.0.0.1 SIP/2.0\r\n")  # and then nothing
        assert await closed_by_peer(stream, seconds=60)
        await trio.testing.wait_all_tasks_blocked()
        assert server.limit_stats.connections_timed_out == 1
        await stream.aclose()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_connections", 0),
        ("max_connections_per_address", -1),
        ("first_message_timeout", 0),
        ("message_timeout", -1),
        ("max_server_transactions", 0),
        ("max_message_size", 0),
    ],
)
def test_limits_refuse_values_that_cannot_work(field: str, value: int) -> None:
    with pytest.raises(ValueError, match=field):
        sipx.Limits(**{field: value})  # type: ignore[arg-type]
