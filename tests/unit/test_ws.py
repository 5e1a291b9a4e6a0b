"""SIP over WebSocket (RFC 7118): the WS/WSS client transport against an in-process
trio-websocket server, and ``sipx serve``'s WebSocket listener with sipx clients.

The raw server (:class:`WSPeer`) records every WebSocket message the client sends, as it
came (text or binary), and sends what a test asks over the client's connection: SIP
requests, answers, and junk. Real loopback sockets; no test sleeps on the wall clock (the
idle timeout runs on the autojump clock).
"""

from __future__ import annotations

import functools
import math
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
import trustme
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    WebSocketRequest,
    open_websocket,
    serve_websocket,
)
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection
from wsproto.events import Request as WsRequest

import sipx
from sipx._core.message import Request
from sipx._core.parser import parse_message
from sipx._core.transaction import make_response
from sipx._trio.transport import Address, Transport
from sipx._trio.ws import WSTransport, frame
from sipx.testing import DevServer

LOOPBACK = "127.0.0.1"
INVALID_HOST = r"[0-9a-f]{12}\.invalid"


class WSPeer:
    """A WebSocket server that speaks SIP by hand: it records what each connection sends
    and lets the test send anything back over it."""

    def __init__(self, *, subprotocol: str | None = "sip", reject: int | None = None) -> None:
        self.subprotocol = subprotocol
        self.reject = reject
        self.connections: list[WebSocketConnection] = []
        self.closed: list[int | None] = []  # the close code of each ended connection
        self.send, self.received = trio.open_memory_channel[tuple[int, str | bytes]](math.inf)
        self.port = 0

    async def handler(self, request: WebSocketRequest) -> None:
        if self.reject is not None:
            await request.reject(self.reject)
            return
        ws = await request.accept(subprotocol=self.subprotocol)
        index = len(self.connections)
        self.connections.append(ws)
        try:
            while True:
                self.send.send_nowait((index, await ws.get_message()))
        except ConnectionClosed as closed:
            self.closed.append(closed.reason.code if closed.reason else None)

    async def next(self) -> tuple[int, str | bytes]:
        with trio.fail_after(5):
            return await self.received.receive()

    async def next_sip(self) -> tuple[int, Request | sipx.Response, str | bytes]:
        index, message = await self.next()
        data = message.encode() if isinstance(message, str) else message
        return index, parse_message(data), message


@asynccontextmanager
async def ws_peer(peer: WSPeer, ssl_context: object = None) -> AsyncIterator[WSPeer]:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            serve_websocket,
            peer.handler,
            LOOPBACK,
            0,
            ssl_context,  # type: ignore[arg-type]
        )
        peer.port = server.port
        yield peer
        nursery.cancel_scope.cancel()


def answer(request: Request, status: int = 200) -> str:
    return make_response(request, status).to_bytes().decode()


def header(message: Request | sipx.Response, name: str) -> list[str]:
    return list(message.headers.get_all(name))


def sip_request(method: str, branch: str, *, via: str = "WS 127.0.0.1:9") -> str:
    return (
        f"{method} sip:sipx@{LOOPBACK} SIP/2.0\r\n"
        f"Via: SIP/2.0/{via};branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:server@127.0.0.1>;tag=srv\r\n"
        "To: <sip:sipx@127.0.0.1>\r\n"
        f"Call-ID: {branch}@server\r\n"
        f"CSeq: 1 {method}\r\n"
        "Content-Length: 5\r\n"
        "\r\n"
        "hello"
    )


# -- the client side -------------------------------------------------------------------------
async def test_a_request_is_one_text_message_with_an_invalid_via_host_and_contact() -> None:
    """RFC 7118: one SIP message per WebSocket message (text: it is UTF-8); Via
    ``SIP/2.0/WS <random>.invalid`` and a Contact at that host with ``;transport=ws``."""
    async with ws_peer(WSPeer()) as peer, sipx.AsyncClient(LOOPBACK, 0, "WS", timeout=5) as client:
        assert client.transports == ("WS",)
        assert client.local_address.port == 0 and client.local_addresses == {}
        async with trio.open_nursery() as nursery:
            responses: list[sipx.Response] = []

            async def ask() -> None:
                responses.append(await client.options(f"sip:uas@{LOOPBACK}:{peer.port}"))

            nursery.start_soon(ask)
            index, request, raw = await peer.next_sip()
            assert isinstance(raw, str)  # a text message
            assert isinstance(request, Request) and request.method == "OPTIONS"
            [via] = header(request, "Via")
            assert re.fullmatch(rf"SIP/2\.0/WS {INVALID_HOST};branch=z9hG4bK\w+", via), via
            host = via.split()[1].split(";")[0]
            assert header(request, "Contact") == [f"<sip:sipx@{host};transport=ws>"]
            await peer.connections[index].send_message(answer(request))
        [response] = responses
        assert response.status_code == 200
        # The same host in every request of the client, over the same connection.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            index2, second, _ = await peer.next_sip()
            assert header(second, "Via")[0].split()[1].startswith(host + ";")
            assert index2 == index and len(peer.connections) == 1
            await peer.connections[index].send_message(answer(second))  # type: ignore[arg-type]


async def test_the_server_reaches_the_client_over_its_connection() -> None:
    """A request from the server arrives over the connection the client opened; the answer
    goes back over it (there is nowhere else: the client listens on no port)."""
    inbox: list[str] = []
    async with ws_peer(WSPeer()) as peer, sipx.AsyncClient(LOOPBACK, 0, "WS", timeout=5) as client:
        client.on_request("MESSAGE", lambda incoming: inbox.append(incoming.text))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.options, f"sip:uas@{LOOPBACK}:{peer.port}")
            index, request, _ = await peer.next_sip()
            ws = peer.connections[index]
            await ws.send_message(answer(request))  # type: ignore[arg-type]
        await ws.send_message(sip_request("MESSAGE", "z9hG4bKsrv1"))
        _, response, raw = await peer.next_sip()
    assert inbox == ["hello"]
    assert isinstance(response, sipx.Response) and response.status_code == 200
    assert isinstance(raw, str)
    assert header(response, "Via") == ["SIP/2.0/WS 127.0.0.1:9;branch=z9hG4bKsrv1"]


async def test_binary_messages_carry_sip_too() -> None:
    async with ws_peer(WSPeer()) as peer, sipx.AsyncClient(LOOPBACK, 0, "WS", timeout=5) as client:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.options, f"sip:uas@{LOOPBACK}:{peer.port}")
            index, request, _ = await peer.next_sip()
            ws = peer.connections[index]
            await ws.send_message(answer(request).encode())  # type: ignore[arg-type]
        await ws.send_message(sip_request("OPTIONS", "z9hG4bKbin1").encode())
        _, response, _ = await peer.next_sip()
    assert isinstance(response, sipx.Response) and response.status_code == 200


def test_frames_are_text_when_utf8_else_binary() -> None:
    assert frame("OPTIONS é".encode()) == "OPTIONS é"
    assert frame(b"OPTIONS \xff") == b"OPTIONS \xff"


async def test_a_server_without_the_sip_subprotocol_is_a_transport_error() -> None:
    async with (
        ws_peer(WSPeer(subprotocol=None)) as peer,
        sipx.AsyncClient(LOOPBACK, 0, "WS", timeout=5) as client,
    ):
        with pytest.raises(sipx.TransportError, match="did not agree to the 'sip' subprotocol"):
            await client.options(f"sip:uas@{LOOPBACK}:{peer.port}")


async def test_a_refused_handshake_is_a_transport_error() -> None:
    async with (
        ws_peer(WSPeer(reject=403)) as peer,
        sipx.AsyncClient(LOOPBACK, 0, "WS", timeout=5) as client,
    ):
        with pytest.raises(sipx.TransportError, match="refused with HTTP 403"):
            await client.options(f"sip:uas@{LOOPBACK}:{peer.port}")
        # The client goes on: the next request tries again (and is refused again).
        with pytest.raises(sipx.TransportError, match="refused with HTTP 403"):
            await client.options(f"sip:uas@{LOOPBACK}:{peer.port}")


async def test_a_server_that_closes_during_the_handshake_fails_the_request_at_once() -> None:
    """Not after the handshake timeout (10 s) nor the request's (5 s): TransportError."""

    async def close_at_once(stream: trio.SocketStream) -> None:
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(
            functools.partial(trio.serve_tcp, host=LOOPBACK), close_at_once, 0
        )
        port = listener.socket.getsockname()[1]
        async with sipx.AsyncClient(LOOPBACK, 0, "WS", timeout=5) as client:
            with pytest.raises(sipx.TransportError, match="closed during the WebSocket handshake"):
                await client.options(f"sip:uas@{LOOPBACK}:{port}")
        nursery.cancel_scope.cancel()


async def test_bad_input_never_crashes_the_client() -> None:
    """Text that is not SIP, a binary blob, a broken SIP message and an empty message are
    dropped, and the connection goes on; a message over the size limit (64 KiB) closes it
    with 1009 (Message Too Big). The client keeps working throughout."""
    async with ws_peer(WSPeer()) as peer, sipx.AsyncClient(LOOPBACK, 0, "WS", timeout=5) as client:
        uri = f"sip:uas@{LOOPBACK}:{peer.port}"
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.options, uri)
            index, request, _ = await peer.next_sip()
            ws = peer.connections[index]
            await ws.send_message(answer(request))  # type: ignore[arg-type]
        for junk in (
            "hello, this is not SIP",
            bytes(range(256)) * 4,
            "OPTIONS sip:x SIP/2.0\r\nVia: nonsense\r\n\r\n",
            "SIP/2.0 200 OK\r\nCSeq: x\r\n\r\n",
            "",
            "\r\n\r\n",
        ):
            await ws.send_message(junk)
        await ws.send_message(sip_request("OPTIONS", "z9hG4bKafter1"))
        _, response, _ = await peer.next_sip()
        assert isinstance(response, sipx.Response) and response.status_code == 200
        assert header(response, "Via") == ["SIP/2.0/WS 127.0.0.1:9;branch=z9hG4bKafter1"]

        await ws.send_message("OPTIONS " + "x" * 70_000)
        with trio.fail_after(5):
            while not peer.closed:
                await trio.sleep(0.01)
        assert peer.closed == [1009]
        # A new request opens a new connection.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.options, uri)
            index, request, _ = await peer.next_sip()
            assert index == 1
            await peer.connections[index].send_message(answer(request))  # type: ignore[arg-type]


async def test_a_kept_connection_sends_a_pong_frame_every_100_quiet_seconds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The keep-alive of a kept WebSocket connection (the registrar's): an unsolicited
    pong frame (RFC 6455 5.5.3) per 100 quiet seconds, seen by a wsproto server."""
    events: list[object] = []

    async def server(stream: trio.SocketStream) -> None:
        connection = WSConnection(ConnectionType.SERVER)
        async with stream:
            while data := await stream.receive_some(65_536):
                connection.receive_data(data)
                for event in connection.events():
                    events.append(event)
                    if isinstance(event, WsRequest):
                        accept = AcceptConnection(subprotocol="sip")
                        await stream.send_all(connection.send(accept))

    def collect(data: bytes, source: Address, transport: Transport) -> None:
        pass

    async with trio.open_nursery() as nursery:
        serve = functools.partial(trio.serve_tcp, host=LOOPBACK)
        [listener] = await nursery.start(serve, server, 0)
        address = (LOOPBACK, listener.socket.getsockname()[1])
        transport = WSTransport(collect, idle_timeout=300, keepalive_interval=100)
        await nursery.start(transport.serve, LOOPBACK, 0)
        transport.send_nowait(sip_request("OPTIONS", "z9hG4bKpong").encode(), address)
        transport.keep_alive(address)
        await trio.sleep(350)
        assert transport.has_connection(address)
        kinds = [type(event).__name__ for event in events]
        assert kinds == ["Request", "TextMessage", "Pong", "Pong", "Pong"]
        nursery.cancel_scope.cancel()


async def test_an_idle_connection_closes_and_a_kept_one_stays(
    autojump_clock: trio.testing.MockClock,
) -> None:
    received: list[tuple[bytes, Address]] = []

    def collect(data: bytes, source: Address, transport: Transport) -> None:
        received.append((data, source))

    async with ws_peer(WSPeer()) as peer, trio.open_nursery() as nursery:
        transport = WSTransport(collect, idle_timeout=300, keepalive_interval=100)
        await nursery.start(transport.serve, LOOPBACK, 0)
        address = (LOOPBACK, peer.port)
        transport.send_nowait(sip_request("OPTIONS", "z9hG4bKkeep").encode(), address)
        transport.keep_alive(address)
        await peer.next()
        await trio.sleep(350)
        assert transport.has_connection(address) and peer.closed == []
        transport.keep_alive(address, enabled=False)
        await trio.sleep(301)
        assert not transport.has_connection(address)
        assert peer.closed == [1000]  # closed properly, with a close frame
        nursery.cancel_scope.cancel()


# -- WSS -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    ca = trustme.CA()
    folder = tmp_path_factory.mktemp("ws_pki")
    ca_file = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = ca.issue_cert(LOOPBACK, "localhost")
    context = __import__("ssl").create_default_context(__import__("ssl").Purpose.CLIENT_AUTH)
    server.configure_cert(context)
    server_pem = folder / "server.pem"  # key and chain in one file, as sipx serve --cert takes
    server.private_key_and_cert_chain_pem.write_to_path(str(server_pem))
    return {"ca": str(ca_file), "context": context, "server_pem": str(server_pem)}


async def test_wss_checks_the_certificate_and_says_wss_in_via(pki: dict[str, object]) -> None:
    peer = WSPeer()
    responses: list[sipx.Response] = []
    async with (
        ws_peer(peer, pki["context"]),
        sipx.AsyncClient(LOOPBACK, 0, "WSS", verify=str(pki["ca"]), timeout=5) as client,
        trio.open_nursery() as nursery,
    ):

        async def ask() -> None:
            responses.append(await client.options(f"sip:uas@{LOOPBACK}:{peer.port};transport=ws"))

        nursery.start_soon(ask)
        index, request, _ = await peer.next_sip()
        [via] = header(request, "Via")
        assert re.fullmatch(rf"SIP/2\.0/WSS {INVALID_HOST};branch=z9hG4bK\w+", via), via
        assert header(request, "Contact")[0].endswith(".invalid;transport=ws>")
        await peer.connections[index].send_message(answer(request))  # type: ignore[arg-type]
    assert [r.status_code for r in responses] == [200]
    async with (
        ws_peer(WSPeer(), pki["context"]) as other,
        sipx.AsyncClient(LOOPBACK, 0, "WSS", timeout=5) as client,
    ):
        with pytest.raises(sipx.TransportError, match="certificate verify failed"):
            await client.options(f"sip:uas@{LOOPBACK}:{other.port};transport=ws")


# -- sipx serve's WebSocket listener ---------------------------------------------------------
def ws_client(server: DevServer, user: str) -> sipx.AsyncClient:
    """A WS client whose requests all go to the server's WebSocket port (RFC 7118 clients
    reach everyone through their WebSocket server)."""
    return sipx.AsyncClient(
        LOOPBACK,
        0,
        "WS",
        sipx.Auth.Digest(user, f"{user}xxx"),
        outbound_proxy=server.uri(transport="WS"),
        timeout=5,
    )


async def test_sipx_serve_routes_to_websocket_clients_by_connection() -> None:
    inbox: list[str] = []
    udp_inbox: list[str] = []
    async with DevServer(LOOPBACK, 0, ws_port=0) as server:
        ws_address = server.ws_address
        assert ws_address is not None and ws_address[1] != server.address[1]
        assert server.uri("1111", "WS") == f"sip:1111@{LOOPBACK}:{ws_address[1]};transport=ws"
        async with (
            ws_client(server, "1111") as alice,
            sipx.AsyncClient(
                LOOPBACK, 0, auth=sipx.Auth.Digest("2222", "2222xxx"), timeout=5
            ) as bob,
        ):
            alice.on_request("MESSAGE", lambda incoming: inbox.append(incoming.text))
            bob.on_request("MESSAGE", lambda incoming: udp_inbox.append(incoming.text))
            registered = await alice.register(server.uri("1111"))
            assert registered.status_code == 200
            assert [r.status_code for r in registered.history] == [401]
            [binding] = server.registrations["1111"]
            assert binding.transport == "WS"
            assert re.fullmatch(rf"sip:1111@{INVALID_HOST};transport=ws", str(binding.uri))
            assert (await bob.register(server.uri("2222"))).status_code == 200
            # UDP -> WS: the server reaches alice over her connection.
            assert (await bob.message(server.uri("1111"), "to ws")).status_code == 200
            assert inbox == ["to ws"]
            # WS -> UDP
            assert (await alice.message(server.uri("2222"), "from ws")).status_code == 200
            assert udp_inbox == ["from ws"]
            # A call to extension 100 over WebSocket, and one from bob (UDP) to alice (WS).
            echo = await alice.call(server.uri("100"))
            assert echo.established
            assert (await echo.bye()).status_code == 200

            calls, received = trio.open_memory_channel[sipx.Call](math.inf)

            async def answer_calls() -> None:
                async for incoming in alice.calls():
                    incoming.answer()
                    calls.send_nowait(incoming)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(answer_calls)
                with trio.fail_after(5):
                    call = await bob.call(server.uri("1111"))
                    answered = await received.receive()
                    assert call.established and answered.established
                    while not answered.acked:
                        await trio.sleep(0.01)
                    assert (await answered.bye()).status_code == 200
                    assert await call.wait_ended() == "remote"
                nursery.cancel_scope.cancel()


async def test_sipx_serve_serves_secure_websocket_clients(pki: dict[str, object]) -> None:
    """``wss_port``: a WSS client registers over TLS (checking the server's certificate),
    is reached from UDP over its connection, and calls extension 100."""
    inbox: list[str] = []
    with pytest.raises(ValueError, match="wss_port needs a certificate"):
        DevServer(LOOPBACK, 0, wss_port=0)
    async with DevServer(LOOPBACK, 0, cert=str(pki["server_pem"]), wss_port=0) as server:
        wss_address = server.wss_address
        assert wss_address is not None and server.ws_address is None
        assert server.uri("1111", "WSS") == f"sip:1111@{LOOPBACK}:{wss_address[1]};transport=wss"
        async with (
            sipx.AsyncClient(
                LOOPBACK,
                0,
                "WSS",
                sipx.Auth.Digest("1111", "1111xxx"),
                outbound_proxy=server.uri(transport="WSS"),
                verify=str(pki["ca"]),
                timeout=5,
            ) as alice,
            sipx.AsyncClient(
                LOOPBACK, 0, auth=sipx.Auth.Digest("2222", "2222xxx"), timeout=5
            ) as bob,
        ):
            alice.on_request("MESSAGE", lambda incoming: inbox.append(incoming.text))
            assert (await alice.register(server.uri("1111"))).status_code == 200
            [binding] = server.registrations["1111"]
            assert binding.transport == "WSS"
            assert (await bob.message(server.uri("1111"), "to wss")).status_code == 200
            assert inbox == ["to wss"]
            echo = await alice.call(server.uri("100"))
            assert echo.established
            assert (await echo.bye()).status_code == 200

            async def answer_one() -> None:
                async for incoming in alice.calls():
                    incoming.answer()
                    answered.append(incoming)
                    return

            answered: list[sipx.Call] = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(answer_one)
                with trio.fail_after(5):
                    call = await bob.call(server.uri("1111"))  # UDP in, WSS out
            [callee] = answered
            assert callee.dialog is not None
            # The server record-routes both sides: alice reaches it again over WSS.
            wss_routes = [
                r.uri for r in callee.dialog.route_set if r.uri.params.get("transport") == "wss"
            ]
            assert [u.port for u in wss_routes] == [wss_address[1]], wss_routes
            with trio.fail_after(5):
                while not callee.acked:
                    await trio.sleep(0.01)
                assert (await callee.bye()).status_code == 200  # alice -> server over WSS
                assert await call.wait_ended() == "remote"
    async with (
        DevServer(LOOPBACK, 0, cert=str(pki["server_pem"]), wss_port=0) as server,
        sipx.AsyncClient(LOOPBACK, 0, "WSS", timeout=5) as stranger,
    ):
        with pytest.raises(sipx.TransportError, match="certificate verify failed"):
            await stranger.options(server.uri(transport="WSS"))


async def test_sipx_serve_refuses_a_websocket_without_the_sip_subprotocol() -> None:
    async with DevServer(LOOPBACK, 0, ws_port=0) as server:
        assert server.ws_address is not None
        with pytest.raises(ConnectionRejected) as refused:
            async with open_websocket(LOOPBACK, server.ws_address[1], "/", use_ssl=False):
                pass  # pragma: no cover - refused before
        assert refused.value.status_code == 400
        async with open_websocket(
            LOOPBACK, server.ws_address[1], "/", use_ssl=False, subprotocols=["sip"]
        ) as ws:
            assert ws.subprotocol == "sip"
            await ws.send_message("not SIP at all")  # dropped; the server goes on
            await ws.send_message(
                sip_request("OPTIONS", "z9hG4bKraw").replace(
                    f"sip:sipx@{LOOPBACK}", f"sip:{LOOPBACK}:{server.ws_address[1]}"
                )
            )
            with trio.fail_after(5):
                reply = await ws.get_message()
        assert isinstance(reply, str) and reply.startswith("SIP/2.0 200 OK\r\n")


def test_cli_serves_websocket_on_ws_port(serve_banner: Callable[..., str]) -> None:
    banner = serve_banner("--ws-port", "0")
    assert re.search(r"WebSocket on port \d+", banner), banner


def test_cli_wss_port_needs_a_certificate() -> None:
    command = [sys.executable, "-m", "sipx", "serve", "--port", "0", "--wss-port", "0"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "wss_port needs a certificate" in done.stderr, done.stderr


def test_cli_serves_secure_websocket_on_wss_port(
    pki: dict[str, object], serve_banner: Callable[..., str]
) -> None:
    banner = serve_banner("--wss-port", "0", "--cert", str(pki["server_pem"]))
    assert re.search(r"secure WebSocket on port \d+", banner), banner


async def test_cli_options_over_websocket() -> None:
    """``sipx options URI --transport ws``: to the WebSocket server of the URI."""
    async with DevServer(LOOPBACK, 0, ws_port=0) as server:
        assert server.ws_address is not None
        uri = f"sip:{LOOPBACK}:{server.ws_address[1]}"
        command = [sys.executable, "-m", "sipx", "options", uri, "--transport", "ws", "-l"]
        done = await trio.run_process(command, capture_stdout=True, check=False)
    assert done.returncode == 0, done.stdout
    assert b"(WS)" in done.stdout and b"200" in done.stdout
