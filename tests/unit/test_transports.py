"""UDPTransport, TCPTransport and Resolver on real loopback sockets.

Also AsyncClient on real sockets where the transport layer decides what goes on the wire:
bind errors, wildcard binds, name resolution, IPv6, TCP connect failures. No test sleeps: a
test waits for the event it needs, or for ``trio.testing.wait_all_tasks_blocked()`` (every
task, the transport's included, has handled what the loopback delivered and waits again).
The idle timeout and the keep-alives run on the autojump clock (``autojump_clock``): on
loopback, data sent is readable at once, and trio polls the sockets before it declares every
task blocked and jumps the clock.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

import sipx
from sipx._core.framer import StreamFramer
from sipx._core.message import Request
from sipx._core.parser import parse_message
from sipx._core.transaction import make_response
from sipx._trio import tcp
from sipx._trio.resolver import Resolver, is_ip
from sipx._trio.tcp import TCPTransport
from sipx._trio.transport import Address, Transport
from sipx._trio.udp import UDPTransport
from sipx.testing import DevServer

Received = list[tuple[bytes, Address]]
LOOPBACK = "127.0.0.1"


def _ipv6_loopback_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


IPV6 = _ipv6_loopback_available()
needs_ipv6 = pytest.mark.skipif(not IPV6, reason="IPv6 loopback (::1) is not available here")


def dead_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """A port nothing listens on (bound a moment ago, then released)."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
    return port


def options_request(branch: str = "z9hG4bKraw1", body: bytes = b"") -> bytes:
    request = (
        "OPTIONS sip:uas@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 127.0.0.1:5999;branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:raw@127.0.0.1>;tag=raw\r\n"
        "To: <sip:uas@127.0.0.1>\r\n"
        f"Call-ID: {branch}@raw\r\n"
        "CSeq: 1 OPTIONS\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return request.encode() + body


def answer(data: bytes, status: int = 200) -> bytes:
    request = parse_message(data)
    assert isinstance(request, Request)
    return make_response(request, status, to_tag="rawtag").to_bytes()


def header_values(data: bytes, name: str) -> list[str]:
    head = data.partition(b"\r\n\r\n")[0].decode()
    found = []
    for line in head.split("\r\n")[1:]:
        field, _, value = line.partition(":")
        if field.strip().lower() == name.lower():
            found.append(value.strip())
    return found


class Collector:
    """A transport's on_message: records every message and wakes waiters."""

    def __init__(self, fail_on: bytes | None = None) -> None:
        self.received: Received = []
        self.fail_on = fail_on
        self._changed = trio.Event()

    def __call__(self, data: bytes, source: Address, transport: Transport | None) -> None:
        if data == self.fail_on:
            raise ValueError("handler failed on purpose")
        self.received.append((data, source))
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, count: int, seconds: float = 5.0) -> Received:
        with trio.fail_after(seconds):
            while len(self.received) < count:
                await self._changed.wait()
        return self.received


class RawPeer:
    """A hand-written SIP peer on a real socket (UDP or TCP): records each request that
    arrives and answers it with a 200 (on the TCP connection it came in on)."""

    def __init__(self, transport: str, host: str = LOOPBACK) -> None:
        self.transport = transport
        self.host = host
        self.port = 0
        self.received = Collector()
        self.connections = 0

    @property
    def bracketed(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        if self.transport == "UDP":
            sock = trio.socket.socket(family, socket.SOCK_DGRAM)
            with sock:
                await sock.bind((self.host, 0))
                self.port = sock.getsockname()[1]
                task_status.started(self.port)
                while True:
                    data, source = await sock.recvfrom(65_535)
                    self.received(data, source[:2], None)
                    await sock.sendto(answer(data), source)
        listeners = await trio.open_tcp_listeners(0, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started(self.port)
            await trio.serve_listeners(self._serve_stream, listeners, handler_nursery=nursery)

    async def _serve_stream(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        source = stream.socket.getpeername()[:2]
        framer = StreamFramer()
        async with stream:
            while data := await stream.receive_some(65_536):
                for message in framer.feed(data):
                    self.received(message, source, None)
                    await stream.send_all(answer(message))


@asynccontextmanager
async def running(peer: RawPeer) -> AsyncIterator[RawPeer]:
    async with trio.open_nursery() as nursery:
        await nursery.start(peer.run)
        yield peer
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def serving(
    transport: UDPTransport | TCPTransport, host: str = LOOPBACK
) -> AsyncIterator[Address]:
    async with trio.open_nursery() as nursery:
        address: Address = await nursery.start(transport.serve, host, 0)
        yield address
        nursery.cancel_scope.cancel()


# -- binding ---------------------------------------------------------------------------------------
async def test_udp_binds_port_0_and_reports_the_address() -> None:
    collector = Collector()
    transport = UDPTransport(collector)
    async with serving(transport) as address:
        host, port = address
        assert host == LOOPBACK and port != 0
        assert transport.local_address == address
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.bind((LOOPBACK, 0))
            raw.sendto(b"ping", address)
            [(data, source)] = await collector.wait_for(1)
            assert (data, source) == (b"ping", raw.getsockname())
            transport.send_nowait(b"pong", source)
            raw.settimeout(2)
            assert raw.recvfrom(100) == (b"pong", address)


async def test_tcp_binds_port_0_and_reports_the_address() -> None:
    transport = TCPTransport(Collector())
    async with serving(transport) as address:
        host, port = address
        assert host == LOOPBACK and port != 0
        assert transport.local_address == address
        stream = await trio.open_tcp_stream(*address)
        await stream.aclose()


@pytest.mark.parametrize("kind", ["UDP", "TCP"])
async def test_a_busy_port_is_a_transport_error_naming_it(kind: str) -> None:
    sock_type = socket.SOCK_DGRAM if kind == "UDP" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, sock_type) as holder:
        holder.bind((LOOPBACK, 0))
        if kind == "TCP":
            holder.listen()
        port = holder.getsockname()[1]
        transport = UDPTransport(Collector()) if kind == "UDP" else TCPTransport(Collector())
        async with trio.open_nursery() as nursery:
            with pytest.raises(sipx.TransportError) as caught:
                await nursery.start(transport.serve, LOOPBACK, port)
        assert f"{LOOPBACK}:{port}" in str(caught.value)
        assert kind in str(caught.value)
        assert "in use" in str(caught.value).lower()

        # Through the client: one plain exception out of `async with`, no ExceptionGroup.
        with pytest.raises(sipx.TransportError) as caught:
            async with sipx.AsyncClient(LOOPBACK, port, transport=kind):
                pytest.fail("the client opened on a busy port")
        assert type(caught.value) is sipx.TransportError
        assert f"{LOOPBACK}:{port}" in str(caught.value)


# -- UDP receive loop ------------------------------------------------------------------------------
async def test_udp_burst_of_500_datagrams_is_drained() -> None:
    """Every datagram of a burst is handled, many per scheduler pass (the drain loop)."""
    passes = 0
    seen_at: list[int] = []

    def on_message(data: bytes, source: Address, transport: Transport) -> None:
        seen_at.append(passes)
        collector(data, source, transport)

    async def count_passes() -> None:
        nonlocal passes
        while True:
            passes += 1
            await trio.lowlevel.checkpoint()

    collector = Collector()
    transport = UDPTransport(on_message)
    async with serving(transport) as address, trio.open_nursery() as nursery:
        nursery.start_soon(count_passes)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            payloads = [b"datagram %03d" % n for n in range(500)]
            for payload in payloads:  # all sent before the transport runs again
                raw.sendto(payload, address)
            received = await collector.wait_for(500)
        nursery.cancel_scope.cancel()
    assert [data for data, _ in received] == payloads
    # A loop that read one datagram per wake-up would need ~500 scheduler passes.
    assert len(set(seen_at)) <= 10, f"{len(set(seen_at))} passes for 500 datagrams"


async def test_udp_loop_survives_a_failing_handler(caplog: pytest.LogCaptureFixture) -> None:
    collector = Collector(fail_on=b"boom")
    transport = UDPTransport(collector)
    async with serving(transport) as address:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            for payload in (b"one", b"boom", b"two"):
                raw.sendto(payload, address)
            await collector.wait_for(2)
            await trio.testing.wait_all_tasks_blocked()  # the loop waits for the socket again
            raw.sendto(b"three", address)
            received = await collector.wait_for(3)
    assert [data for data, _ in received] == [b"one", b"two", b"three"]
    assert "dropping a datagram" in caplog.text


async def test_udp_send_before_serve_is_a_transport_error() -> None:
    with pytest.raises(sipx.TransportError, match="not running"):
        UDPTransport(Collector()).send_nowait(b"x", (LOOPBACK, 9))


# -- TCP framing and connections -------------------------------------------------------------------
async def test_tcp_framing_split_writes_and_several_messages_per_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chunks: list[bytes] = []  # what the transport read, in order

    class RecordingFramer(StreamFramer):
        def feed(self, data: bytes) -> list[bytes]:
            chunks.append(bytes(data))
            return super().feed(data)

    monkeypatch.setattr(tcp, "StreamFramer", RecordingFramer)
    collector = Collector()
    transport = TCPTransport(collector)
    first = options_request("z9hG4bKone", body=b"hello")
    second = options_request("z9hG4bKtwo")
    third = options_request("z9hG4bKthree", body=b"x" * 300)
    async with serving(transport) as address:
        stream = await trio.open_tcp_stream(*address)
        async with stream:
            me = stream.socket.getsockname()[:2]
            # One message in three writes: within the headers, within the body.
            pieces = [first[:20], first[20:-3], first[-3:]]
            for piece in pieces:
                await stream.send_all(piece)
                await trio.testing.wait_all_tasks_blocked()  # the transport has read it
            await collector.wait_for(1)
            assert chunks == pieces  # three reads, not one
            # Two messages (and a keep-alive CRLF between them) in one write.
            await stream.send_all(second + b"\r\n\r\n" + third)
            received = await collector.wait_for(3)
            assert transport.connection_count == 1
    assert [data for data, _ in received] == [first, second, third]
    assert {source for _, source in received} == {me}


async def test_tcp_reuses_the_connection_to_a_peer() -> None:
    peer = RawPeer("TCP")
    collector = Collector()
    transport = TCPTransport(collector)
    async with running(peer), serving(transport):
        target = (LOOPBACK, peer.port)
        transport.send_nowait(options_request("z9hG4bKa"), target)
        transport.send_nowait(options_request("z9hG4bKb"), target)  # while connecting
        await peer.received.wait_for(2)
        transport.send_nowait(options_request("z9hG4bKc"), target)  # once connected
        await peer.received.wait_for(3)
        responses = await collector.wait_for(3)
        assert transport.connection_count == 1
        assert transport.has_connection(target)
    assert peer.connections == 1
    # The peer's answers came back on that connection, from the peer's address.
    assert {source for _, source in responses} == {target}
    assert [header_values(data, "Via")[0].split("branch=")[1] for data, _ in responses] == [
        "z9hG4bKa;rport",
        "z9hG4bKb;rport",
        "z9hG4bKc;rport",
    ]


async def test_tcp_response_goes_back_on_the_incoming_connection() -> None:
    def on_message(data: bytes, source: Address, transport: Transport) -> None:
        transport.send_nowait(answer(data), source)

    transport = TCPTransport(on_message)
    async with serving(transport) as address:
        stream = await trio.open_tcp_stream(*address)
        async with stream:
            await stream.send_all(options_request())
            framer = StreamFramer()
            with trio.fail_after(2):
                messages: list[bytes] = []
                while not messages:
                    messages = framer.feed(await stream.receive_some(65_536))
            assert messages[0].startswith(b"SIP/2.0 200 OK\r\n")
            # No connection was opened towards the stream's ephemeral port.
            assert transport.connection_count == 1


async def test_client_over_tcp_answers_on_the_incoming_connection() -> None:
    async with sipx.AsyncClient(LOOPBACK, 0, transport="TCP") as client:
        stream = await trio.open_tcp_stream(*client.local_address)
        async with stream:
            await stream.send_all(options_request())
            framer = StreamFramer()
            with trio.fail_after(2):
                messages: list[bytes] = []
                while not messages:
                    messages = framer.feed(await stream.receive_some(65_536))
    response = parse_message(messages[0])
    assert isinstance(response, sipx.Response)
    assert response.status_code == 200
    assert response.top_via.branch == "z9hG4bKraw1"


async def test_tcp_idle_connection_is_closed(autojump_clock: trio.testing.MockClock) -> None:
    collector = Collector()
    transport = TCPTransport(collector)  # the default idle_timeout: 300 s
    async with serving(transport) as address:
        stream = await trio.open_tcp_stream(*address)
        async with stream:
            await stream.send_all(options_request())
            await collector.wait_for(1)
            start = trio.current_time()
            await trio.sleep(299)
            assert transport.connection_count == 1
            with trio.fail_after(10):
                data = await stream.receive_some(100)
            elapsed = trio.current_time() - start
        assert data == b""  # closed by the transport
        assert elapsed == 300  # after 300 s without traffic (virtual time: exact)
        assert transport.connection_count == 0


async def test_tcp_connect_failure_calls_on_error() -> None:
    failures: list[tuple[Address, Exception]] = []
    failed = trio.Event()

    def on_error(address: Address, error: Exception) -> None:
        failures.append((address, error))
        failed.set()

    transport = TCPTransport(Collector(), on_error=on_error)
    port = dead_port()
    async with serving(transport):
        transport.send_nowait(options_request(), (LOOPBACK, port))
        with trio.fail_after(2):
            await failed.wait()
        assert transport.connection_count == 0
    [(address, error)] = failures
    assert address == (LOOPBACK, port)
    assert isinstance(error, sipx.TransportError)
    assert f"{LOOPBACK}:{port}" in str(error) and "refused" in str(error).lower()


async def test_client_request_over_tcp_to_a_dead_port_fails_fast() -> None:
    port = dead_port()
    async with sipx.AsyncClient(LOOPBACK, 0, transport="TCP") as client:
        start = trio.current_time()
        with trio.fail_after(10), pytest.raises(sipx.TransportError) as caught:
            await client.options(f"sip:bob@{LOOPBACK}:{port}")
        assert trio.current_time() - start < 10  # at once, not after Timer F's 32 s
    message = str(caught.value)
    assert "OPTIONS" in message and f"{LOOPBACK}:{port}" in message
    assert "refused" in message.lower()


async def test_tcp_send_before_serve_is_a_transport_error() -> None:
    with pytest.raises(sipx.TransportError, match="not running"):
        TCPTransport(Collector()).send_nowait(b"x", (LOOPBACK, 9))


# -- addresses the client writes -------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["UDP", "TCP"])
async def test_wildcard_bind_writes_a_real_host(kind: str) -> None:
    async with (
        running(RawPeer(kind)) as peer,
        sipx.AsyncClient("0.0.0.0", 0, transport=kind) as client,
    ):
        before = client.local_address.host
        assert not ipaddress.ip_address(before).is_unspecified
        with trio.fail_after(5):
            response = await client.options(f"sip:bob@{LOOPBACK}:{peer.port}")
        assert response.status_code == 200
        assert client.local_address == (LOOPBACK, client.local_address.port)
        port = client.local_address.port
    [(data, _)] = peer.received.received
    assert b"0.0.0.0" not in data
    [via] = header_values(data, "Via")
    assert via.startswith(f"SIP/2.0/{kind} {LOOPBACK}:{port};branch=z9hG4bK")
    # RFC 5923: over a connection, ask the peer to reuse it for requests to us.
    assert via.endswith(";rport;alias" if kind == "TCP" else ";rport")
    suffix = ";transport=tcp" if kind == "TCP" else ""
    assert header_values(data, "Contact") == [f"<sip:sipx@{LOOPBACK}:{port}{suffix}>"]


@pytest.mark.parametrize("kind", ["UDP", "TCP"])
async def test_options_to_localhost_reaches_127_0_0_1(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups: list[str] = []
    real_getaddrinfo = trio.socket.getaddrinfo

    async def counting(host: str, *args: Any, **kwargs: Any) -> Any:
        lookups.append(host)
        return await real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(trio.socket, "getaddrinfo", counting)
    async with (
        running(RawPeer(kind)) as peer,
        sipx.AsyncClient(LOOPBACK, 0, transport=kind) as client,
    ):
        with trio.fail_after(5):
            first = await client.options(f"sip:bob@localhost:{peer.port}")
            second = await client.options(f"sip:bob@LOCALHOST:{peer.port}")
    assert first.status_code == second.status_code == 200
    # One lookup of the name: the second request used the cache. (trio's connect may pass
    # the literal address through getaddrinfo too, which asks no resolver.)
    assert [host for host in lookups if not is_ip(host)] == ["localhost"]
    first_request, second_request = (data for data, _ in peer.received.received)
    assert first_request.startswith(f"OPTIONS sip:bob@localhost:{peer.port} SIP/2.0".encode())
    assert header_values(first_request, "Via")[0].startswith(f"SIP/2.0/{kind} {LOOPBACK}:")
    assert second_request.startswith(b"OPTIONS sip:bob@LOCALHOST:")


async def test_resolver_uses_trio_getaddrinfo_and_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int]] = []

    async def fake(host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        calls.append((host, port))
        # IPv6 listed first: the resolver still prefers the IPv4 address.
        return [
            (socket.AF_INET6, socket.SOCK_DGRAM, 17, "", ("2001:db8::5", port, 0, 0)),
            (socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("192.0.2.5", port)),
        ]

    monkeypatch.setattr(trio.socket, "getaddrinfo", fake)
    resolver = Resolver()
    assert await resolver.resolve("sip.example.com", 5060) == ("192.0.2.5", 5060)
    assert await resolver.resolve("SIP.example.com", 5060) == ("192.0.2.5", 5060)
    assert await resolver.resolve("sip.example.com", 5070) == ("192.0.2.5", 5070)
    assert calls == [("sip.example.com", 5060), ("sip.example.com", 5070)]
    # Literal addresses are never looked up; IPv6 references lose their brackets.
    assert await resolver.resolve("192.0.2.9", 5060) == ("192.0.2.9", 5060)
    assert await resolver.resolve("[2001:db8::9]", 5062) == ("2001:db8::9", 5062)
    assert len(calls) == 2


async def test_resolver_failure_is_a_transport_error(monkeypatch: pytest.MonkeyPatch) -> None:
    async def fail(host: str, *args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(trio.socket, "getaddrinfo", fail)
    with pytest.raises(sipx.TransportError, match=r"cannot resolve nowhere\.invalid"):
        await Resolver().resolve("nowhere.invalid", 5060)
    async with sipx.AsyncClient(LOOPBACK, 0) as client:
        with pytest.raises(sipx.TransportError, match=r"nowhere\.invalid"):
            await client.options("sip:bob@nowhere.invalid")


# -- IPv6 ------------------------------------------------------------------------------------------
@needs_ipv6
@pytest.mark.parametrize(("kind", "bind"), [("UDP", "::1"), ("UDP", "::"), ("TCP", "::1")])
async def test_ipv6_options_exchange(kind: str, bind: str) -> None:
    async with (
        running(RawPeer(kind, "::1")) as peer,
        sipx.AsyncClient(bind, 0, transport=kind) as client,
    ):
        with trio.fail_after(5):
            response = await client.options(f"sip:bob@[::1]:{peer.port}")
        assert response.status_code == 200
        assert client.local_address.host == "::1"
        port = client.local_address.port
    [(data, source)] = peer.received.received
    assert source[0] == "::1"
    assert data.startswith(f"OPTIONS sip:bob@[::1]:{peer.port} SIP/2.0\r\n".encode())
    [via] = header_values(data, "Via")
    assert via.startswith(f"SIP/2.0/{kind} [::1]:{port};branch=z9hG4bK")
    suffix = ";transport=tcp" if kind == "TCP" else ""
    assert header_values(data, "Contact") == [f"<sip:sipx@[::1]:{port}{suffix}>"]


async def test_a_reset_connection_does_not_stop_the_client() -> None:
    async with sipx.AsyncClient(LOOPBACK, 0, transport="TCP") as client:
        for _ in range(3):
            raw = socket.create_connection(client.local_address, timeout=2)
            raw.sendall(options_request()[:40])  # half a message, then a reset (RST)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            raw.close()
        await trio.testing.wait_all_tasks_blocked()  # the client has handled the resets
        # Still serving: a whole request over a new connection gets its answer.
        stream = await trio.open_tcp_stream(*client.local_address)
        async with stream:
            await stream.send_all(options_request())
            framer = StreamFramer()
            messages: list[bytes] = []
            with trio.fail_after(2):
                while not messages:
                    messages = framer.feed(await stream.receive_some(65_536))
    assert messages[0].startswith(b"SIP/2.0 200 OK\r\n")


async def test_a_kept_connection_sends_keepalives_instead_of_idling_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    received = bytearray()
    arrived = trio.Event()
    closed = trio.Event()

    async def peer(stream: trio.SocketStream) -> None:
        async with stream:
            while data := await stream.receive_some(65_536):
                received.extend(data)
                arrived.set()
        closed.set()

    transport = TCPTransport(Collector(), idle_timeout=300, keepalive_interval=100)
    async with trio.open_nursery() as nursery:
        [listener] = await trio.open_tcp_listeners(0, host=LOOPBACK)
        await nursery.start(trio.serve_listeners, peer, [listener])
        address = (LOOPBACK, listener.socket.getsockname()[1])
        async with serving(transport):
            start = trio.current_time()
            transport.send_nowait(options_request(), address)
            transport.keep_alive(address)
            await arrived.wait()
            await trio.sleep(350)
            assert transport.has_connection(address)  # past the 300 s idle timeout
            # One CRLFCRLF per 100 s of quiet (RFC 5626 4.4.1): at 100, 200 and 300 s.
            assert bytes(received) == options_request() + b"\r\n\r\n" * 3
            transport.keep_alive(address, enabled=False)
            with trio.fail_after(400):
                await closed.wait()  # idle again: closed 300 s after the last ping
            assert trio.current_time() - start == 600
            assert not transport.has_connection(address)
        nursery.cancel_scope.cancel()


async def test_registering_over_tcp_keeps_the_registrar_connection() -> None:
    async with DevServer(LOOPBACK, 0, transports=("TCP",)) as server:
        registrar = server.address
        aor = server.uri("1111", "TCP")
        async with sipx.AsyncClient(
            LOOPBACK, 0, "TCP", sipx.Auth.Digest("1111", "1111xxx")
        ) as client:
            transport = client._engine.transport
            assert isinstance(transport, TCPTransport)
            assert (await client.register(aor)).status_code == 200
            assert transport._kept == {registrar}
            assert (await client.unregister(aor)).status_code == 200
            assert transport._kept == set()


async def test_a_request_to_a_closed_udp_port_fails_at_once() -> None:
    """ICMP port unreachable (read from the socket's error queue, IP_RECVERR) fails the
    transaction with a TransportError naming the address, instead of Timer F's 32 s."""
    if not sys.platform.startswith("linux"):
        pytest.fail("IP_RECVERR is Linux's; sipx's CI runs on Linux")
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    async with sipx.AsyncClient("127.0.0.1", 0) as client:
        started = trio.current_time()
        with pytest.raises(sipx.TransportError, match=f"127.0.0.1:{port}"):
            await client.options(f"sip:nobody@127.0.0.1:{port}")
        assert trio.current_time() - started < 2  # not Timer F (32 s)
        # the client goes on: a request to a live peer still works
        async with sipx.AsyncClient("127.0.0.1", 0) as peer:
            response = await client.options(f"sip:x@127.0.0.1:{peer.local_address.port}")
            assert response.status_code == 200


async def test_an_icmp_error_fails_only_the_request_it_answers() -> None:
    """The ICMP error of one destination surfaces on the next send to another: that send
    still goes out, and only the request to the closed port fails."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    closed = probe.getsockname()[1]
    probe.close()
    async with (
        sipx.AsyncClient("127.0.0.1", 0) as client,
        sipx.AsyncClient("127.0.0.1", 0) as peer,
    ):
        live = f"sip:x@127.0.0.1:{peer.local_address.port}"
        results: dict[str, object] = {}

        async def ask(name: str, uri: str) -> None:
            try:
                results[name] = (await client.options(uri)).status_code
            except sipx.TransportError as exc:
                results[name] = exc

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ask, "closed", f"sip:x@127.0.0.1:{closed}")
                for n in range(5):
                    nursery.start_soon(ask, f"live{n}", live)
        assert isinstance(results.pop("closed"), sipx.TransportError)
        assert set(results.values()) == {200}
