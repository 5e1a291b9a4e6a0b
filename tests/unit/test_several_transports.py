"""A client running several transports at once: UDP and TCP on one port by default.

Real loopback sockets: raw peers send requests over UDP and over TCP to one client and read
what comes back, and read what the client sends them (its Via and Contact for each
transport). Also the transport choice of outgoing requests (``transport=`` and the URI's
``transport`` parameter), the ``transports=`` option, its checks, and starting several
transports on one port (``start_on_one_port``), including the retry on another port.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Sequence

import pytest
import trio
import trio.testing

import sipx
from sipx._core.framer import StreamFramer
from sipx._trio.ports import start_on_one_port
from sipx._trio.transport import Address, Transport
from sipx.testing import MemoryNetwork

LOOPBACK = "127.0.0.1"


def request(method: str = "OPTIONS", *, transport: str, branch: str, extra: str = "") -> bytes:
    text = (
        f"{method} sip:uas@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:5999;branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:raw@127.0.0.1>;tag=raw\r\n"
        "To: <sip:uas@127.0.0.1>\r\n"
        f"Call-ID: {branch}@raw\r\n"
        f"CSeq: 1 {method}\r\n"
        f"{extra}"
        "Content-Length: 0\r\n"
        "\r\n"
    )
    return text.encode()


def header(data: bytes, name: str) -> list[str]:
    found = re.findall(rb"^" + name.encode() + rb": *(.*?)\r$", data, re.M | re.I)
    return [value.decode() for value in found]


async def read_message(stream: trio.abc.Stream) -> bytes:
    framer = StreamFramer()
    with trio.fail_after(5):
        while True:
            messages = framer.feed(await stream.receive_some(65_536))
            if messages:
                return messages[0]


def free_udp_tcp_port() -> int:
    """A port free for UDP and TCP on the loopback (a moment ago)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((LOOPBACK, 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((LOOPBACK, port))
                except OSError:
                    continue
        return port
    raise AssertionError("no port free for UDP and TCP")


async def udp_exchange(data: bytes, address: Address) -> tuple[bytes, Address]:
    """Send ``data`` from a fresh UDP socket; return the first datagram back and its source."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        await sock.bind((LOOPBACK, 0))
        await sock.sendto(data, address)
        with trio.fail_after(5):
            reply, source = await sock.recvfrom(65_535)
    return reply, source[:2]


# -- listening on UDP and TCP together -------------------------------------------------------
async def test_a_client_answers_over_udp_and_over_tcp_on_one_port() -> None:
    """``local_port=0``: one port for both; each request is answered over the transport it
    came in on (the TCP one over its very connection)."""
    async with sipx.AsyncClient(LOOPBACK, 0) as client:
        assert client.transports == ("UDP", "TCP")
        port = client.local_address.port
        assert client.local_addresses == {
            "UDP": (LOOPBACK, port),
            "TCP": (LOOPBACK, port),
        }
        reply, source = await udp_exchange(
            request(transport="UDP", branch="z9hG4bKudp1"), (LOOPBACK, port)
        )
        assert reply.startswith(b"SIP/2.0 200 OK\r\n")
        assert source == (LOOPBACK, port)
        [via] = header(reply, "Via")
        assert via.startswith("SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKudp1;rport=")

        stream = await trio.open_tcp_stream(LOOPBACK, port)
        async with stream:
            await stream.send_all(request(transport="TCP", branch="z9hG4bKtcp1"))
            answer = await read_message(stream)
        assert answer.startswith(b"SIP/2.0 200 OK\r\n")
        assert header(answer, "Via")[0].startswith("SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKtcp1")


async def test_a_tcp_client_answers_a_udp_request_over_udp() -> None:
    """The transport of the answer is the request's, not the client's ``transport=``."""
    async with sipx.AsyncClient(LOOPBACK, 0, "TCP", transports=("UDP", "TCP")) as client:
        assert client.transports == ("TCP", "UDP")
        reply, _ = await udp_exchange(
            request(transport="UDP", branch="z9hG4bKudp2"), client.local_address
        )
    assert reply.startswith(b"SIP/2.0 200 OK\r\n")


async def test_transports_udp_alone_listens_on_no_tcp_port() -> None:
    async with sipx.AsyncClient(LOOPBACK, 0, transports=("UDP",)) as client:
        assert client.transports == ("UDP",)
        assert set(client.local_addresses) == {"UDP"}
        with pytest.raises(OSError):
            await trio.open_tcp_stream(*client.local_address)
        reply, _ = await udp_exchange(
            request(transport="UDP", branch="z9hG4bKudp3"), client.local_address
        )
    assert reply.startswith(b"SIP/2.0 200 OK\r\n")


async def test_a_default_tcp_listener_whose_port_is_taken_is_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The default TCP listener is best effort on a given port; one asked for with
    ``transports=`` must bind."""
    caplog.set_level(logging.INFO, logger="sipx.transport")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with sipx.AsyncClient(LOOPBACK, port) as client:
            assert client.transports == ("UDP",)
            assert set(client.local_addresses) == {"UDP"}
            reply, _ = await udp_exchange(
                request(transport="UDP", branch="z9hG4bKudp4"), (LOOPBACK, port)
            )
            assert reply.startswith(b"SIP/2.0 200 OK\r\n")
        assert f"cannot bind TCP {LOOPBACK}:{port}" in caplog.text
        assert "listening without TCP" in caplog.text
        with pytest.raises(sipx.TransportError, match=f"TCP {LOOPBACK}:{port}"):
            async with sipx.AsyncClient(LOOPBACK, port, transports=("UDP", "TCP")):
                pass  # pragma: no cover - the bind fails first


async def test_a_tcp_client_and_a_udp_client_share_a_port() -> None:
    """The guide's "Transport Personalizado": a TCP client, then a UDP client, one port."""
    port = free_udp_tcp_port()
    async with (
        sipx.AsyncClient(LOOPBACK, port, "TCP") as tcp,
        sipx.AsyncClient("0.0.0.0", port, "UDP") as udp,
    ):
        assert tcp.transports == ("TCP",) and udp.transports == ("UDP",)
        assert tcp.local_address.port == udp.local_address.port == port
        reply, _ = await udp_exchange(
            request(transport="UDP", branch="z9hG4bKudp5"), (LOOPBACK, port)
        )
        assert reply.startswith(b"SIP/2.0 200 OK\r\n")


# -- what goes out: the transport of each request, its Via and Contact -----------------------
class RawPeers:
    """A UDP socket and a TCP listener on one port that record what they receive."""

    def __init__(self) -> None:
        self.udp = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.received: list[tuple[str, bytes]] = []
        self.arrived = trio.Event()
        self.port = 0

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        for _ in range(50):  # a TCP port whose number is free for UDP too
            listeners = await trio.open_tcp_listeners(0, host=LOOPBACK)
            self.port = listeners[0].socket.getsockname()[1]
            try:
                await self.udp.bind((LOOPBACK, self.port))
                break
            except OSError:
                for listener in listeners:
                    await listener.aclose()
        else:
            raise RuntimeError("no port free for both TCP and UDP")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._udp)
            await nursery.start(trio.serve_listeners, self._tcp, listeners)
            task_status.started(self.port)

    async def _udp(self) -> None:
        while True:
            data, _ = await self.udp.recvfrom(65_535)
            self._note("UDP", data)

    async def _tcp(self, stream: trio.SocketStream) -> None:
        framer = StreamFramer()
        async with stream:
            while data := await stream.receive_some(65_536):
                for message in framer.feed(data):
                    self._note("TCP", message)

    def _note(self, kind: str, data: bytes) -> None:
        self.received.append((kind, data))
        self.arrived.set()

    async def next(self) -> tuple[str, bytes]:
        with trio.fail_after(5):
            while not self.received:
                self.arrived = trio.Event()
                await self.arrived.wait()
        return self.received.pop(0)


@pytest.mark.parametrize(
    ("transport", "uri_suffix", "expected"),
    [
        ("UDP", "", "UDP"),
        ("UDP", ";transport=tcp", "TCP"),
        ("UDP", ";transport=TCP", "TCP"),
        ("TCP", "", "TCP"),
        ("TCP", ";transport=udp", "UDP"),
    ],
)
async def test_each_request_names_its_transport_in_via_and_contact(
    transport: str, uri_suffix: str, expected: str
) -> None:
    """``transport=`` chooses, the URI's transport parameter overrides; Via and Contact
    name the transport in use and the one port UDP and TCP share."""
    peers = RawPeers()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(peers.run)
        async with sipx.AsyncClient(
            LOOPBACK, 0, transport, timeout=0.5, transports=("UDP", "TCP")
        ) as client:
            ours = client.local_address.port
            with pytest.raises(sipx.TimeoutError):  # the raw peers never answer
                await client.options(f"sip:peer@{LOOPBACK}:{port}{uri_suffix}")
        kind, data = await peers.next()
        nursery.cancel_scope.cancel()
    assert kind == expected
    [via] = header(data, "Via")
    assert via.startswith(f"SIP/2.0/{expected} {LOOPBACK}:{ours};branch=z9hG4bK")
    assert via.endswith(";rport" if expected == "UDP" else ";rport;alias")
    suffix = "" if expected == "UDP" else ";transport=tcp"
    assert header(data, "Contact") == [f"<sip:sipx@{LOOPBACK}:{ours}{suffix}>"]


@pytest.mark.parametrize(
    "uri", ["sip:peer@127.0.0.1:5999;transport=tls", "sips:peer@127.0.0.1:5999"]
)
async def test_a_uri_asking_for_tls_is_never_sent_in_clear(uri: str) -> None:
    """A client without TLS refuses, naming what it runs, instead of sending over UDP."""
    async with sipx.AsyncClient(LOOPBACK, 0, timeout=0.5, transports=("UDP", "TCP")) as client:
        with pytest.raises(sipx.TransportError, match=r"asks for TLS.*runs UDP, TCP"):
            await client.options(uri)


async def test_an_incoming_call_over_tcp_is_answered_with_a_tcp_contact() -> None:
    """The Contact of our 2xx names the transport the INVITE came over (a UDP client)."""
    sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    sdp += "m=audio 9 RTP/AVP 0\r\n"
    async with (
        sipx.AsyncClient(LOOPBACK, 0, rtp_ports=(41000, 41100)) as client,
        trio.open_nursery() as nursery,
    ):
        port = client.local_address.port

        async def answer() -> None:
            async for call in client.calls():
                call.answer()
                return

        nursery.start_soon(answer)
        await trio.testing.wait_all_tasks_blocked()
        invite = request(
            "INVITE",
            transport="TCP",
            branch="z9hG4bKinv1",
            extra="Contact: <sip:raw@127.0.0.1:5999;transport=tcp>\r\n"
            "Content-Type: application/sdp\r\n",
        )
        invite = invite.replace(
            b"Content-Length: 0\r\n\r\n", f"Content-Length: {len(sdp)}\r\n\r\n{sdp}".encode()
        )
        stream = await trio.open_tcp_stream(*client.local_address)
        async with stream:
            await stream.send_all(invite)
            while True:
                response = await read_message(stream)
                if not response.startswith(b"SIP/2.0 1"):
                    break
        nursery.cancel_scope.cancel()
    assert response.startswith(b"SIP/2.0 200 OK\r\n")
    assert header(response, "Contact") == [f"<sip:uas@{LOOPBACK}:{port};transport=tcp>"]


# -- checks of the options -------------------------------------------------------------------
def test_transports_must_include_transport() -> None:
    with pytest.raises(ValueError, match="must include transport='TCP'"):
        sipx.AsyncClient(LOOPBACK, 0, "TCP", transports=("UDP",))
    with pytest.raises(ValueError, match="unsupported transport 'SCTP'"):
        sipx.AsyncClient(LOOPBACK, 0, transports=("UDP", "SCTP"))
    with pytest.raises(TypeError, match="sequence of transport names"):
        sipx.AsyncClient(LOOPBACK, 0, transports="UDP")  # type: ignore[arg-type]


def test_a_memory_client_runs_one_transport() -> None:
    network = MemoryNetwork()
    assert sipx.AsyncClient(LOOPBACK, 5060, network=network).transports == ("UDP",)
    with pytest.raises(ValueError, match="runs one transport"):
        sipx.AsyncClient(LOOPBACK, 5060, network=network, transports=("UDP", "TCP"))
    with pytest.raises(ValueError, match="carries UDP, TCP and TLS"):
        sipx.AsyncClient(LOOPBACK, 5060, "WS", network=network)


def test_default_transport_sets() -> None:
    assert sipx.AsyncClient(LOOPBACK, 0).transports == ("UDP", "TCP")
    assert sipx.AsyncClient(LOOPBACK, 0, "tcp").transports == ("TCP",)
    assert sipx.AsyncClient(LOOPBACK, 0, "TLS").transports == ("TLS",)
    assert sipx.AsyncClient(LOOPBACK, 0, "WS").transports == ("WS",)
    assert sipx.AsyncClient(LOOPBACK, 0, "WSS").transports == ("WSS",)
    both = sipx.AsyncClient(LOOPBACK, 0, "WS", transports=["ws", "udp", "UDP"])
    assert both.transports == ("WS", "UDP")


async def test_with_a_certificate_tls_listens_on_a_port_of_its_own(tmp_path: object) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    pem = str(tmp_path) + "/client.pem"  # type: ignore[operator]
    ca.issue_cert(LOOPBACK).private_key_and_cert_chain_pem.write_to_path(pem)
    async with sipx.AsyncClient(LOOPBACK, 0, cert=pem) as client:
        assert client.transports == ("UDP", "TCP", "TLS")
        addresses = client.local_addresses
        assert addresses["UDP"] == addresses["TCP"] == client.local_address
        assert addresses["TLS"].port not in (0, client.local_address.port)
        # A TLS client reaches it on that port (and checks its certificate).
        ca_file = str(tmp_path) + "/ca.pem"  # type: ignore[operator]
        ca.cert_pem.write_to_path(ca_file)
        async with sipx.AsyncClient(LOOPBACK, 0, "TLS", verify=ca_file, timeout=5) as caller:
            tls_port = addresses["TLS"].port
            response = await caller.options(f"sip:uas@{LOOPBACK}:{tls_port};transport=tls")
    assert response.status_code == 200
    assert response.top_via.transport == "TLS"


def test_tls_port_rules() -> None:
    """TLS takes ``tls_port``, else ``local_port`` when TCP does not run, else the next
    port (any free one for port 0)."""
    from sipx._transports import ClientTransports

    assert ClientTransports("TLS", local_port=5061).tls_port == 5061
    assert ClientTransports("UDP", ("UDP", "TCP", "TLS"), local_port=5060).tls_port == 5061
    assert ClientTransports("UDP", ("UDP", "TCP", "TLS"), local_port=0).tls_port == 0
    assert ClientTransports("UDP", ("UDP", "TLS"), local_port=5060).tls_port == 5060
    assert ClientTransports("TLS", ("TLS", "TCP"), local_port=5060, tls_port=5071).tls_port == 5071


# -- start_on_one_port -----------------------------------------------------------------------
class Fake:
    """A transport that binds ``(host, port)`` in a shared table (or fails if taken)."""

    reliable = False

    def __init__(self, name: str, taken: set[tuple[str, int]], log: list[str]) -> None:
        self.name = name
        self.taken = taken
        self.log = log
        self.local_address: Address = ("", 0)

    async def serve(
        self,
        host: str,
        port: int,
        *,
        task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        if port == 0:
            port = 40000 + sum(1 for entry in self.log if entry.startswith("bind"))
        if (self.name, port) in self.taken:
            self.log.append(f"refused {self.name} {port}")
            raise sipx.TransportError(f"cannot bind {self.name} {host}:{port}: in use")
        self.taken.add((self.name, port))
        self.log.append(f"bind {self.name} {port}")
        self.local_address = (host, port)
        try:
            task_status.started(self.local_address)
            await trio.sleep_forever()
        finally:
            self.taken.discard((self.name, port))
            self.log.append(f"unbind {self.name} {port}")


async def test_port_zero_moves_every_transport_to_a_port_free_for_all() -> None:
    taken = {("TCP", 40000)}  # UDP gets 40000 first, where TCP is taken
    log: list[str] = []

    def make() -> Sequence[Transport]:
        return [Fake("UDP", taken, log), Fake("TCP", taken, log)]  # type: ignore[list-item]

    async with trio.open_nursery() as nursery:

        async def start(
            transport: Transport, host: str, port: int
        ) -> tuple[Address, trio.CancelScope]:
            scope = trio.CancelScope()

            async def run(*, task_status: trio.TaskStatus[Address]) -> None:
                with scope:
                    await transport.serve(host, port, task_status=task_status)

            return await nursery.start(run), scope

        transports, address = await start_on_one_port(make, LOOPBACK, 0, start)
        await trio.testing.wait_all_tasks_blocked()
        assert address[1] != 40000
        assert [t.local_address for t in transports] == [address] * 2
        assert log[:2] == ["bind UDP 40000", "refused TCP 40000"]
        assert "unbind UDP 40000" in log  # the first attempt was stopped
        with pytest.raises(sipx.TransportError, match=r"TCP 127\.0\.0\.1:40000"):
            await start_on_one_port(make, LOOPBACK, 40000, start)  # a given port: no retry
        nursery.cancel_scope.cancel()
