"""``DevServer`` on real loopback sockets (port 0), driven by a tiny trio socket client."""

from __future__ import annotations

import itertools
import socket
from collections.abc import AsyncIterator

import pytest
import trio

from sipx._core.digest import build_credentials, parse_challenge
from sipx._core.message import Request, Response
from sipx._core.parser import parse_message
from sipx._core.timers import TimerConfig
from sipx._errors import TransportError
from sipx._serve import DevServer

HOST = "127.0.0.1"
_counter = itertools.count(1)


class Peer:
    """A UDP or TCP socket that speaks just enough SIP for these tests."""

    def __init__(self, server: tuple[str, int], transport: str = "UDP") -> None:
        self.server = server
        self.transport = transport
        kind = socket.SOCK_STREAM if transport == "TCP" else socket.SOCK_DGRAM
        self.sock = trio.socket.socket(socket.AF_INET, kind)
        self.port = 0
        self._buffer = b""

    async def open(self) -> Peer:
        await self.sock.bind((HOST, 0))
        self.port = self.sock.getsockname()[1]
        if self.transport == "TCP":
            await self.sock.connect(self.server)
        return self

    def close(self) -> None:
        self.sock.close()

    def build(
        self,
        method: str,
        uri: str,
        *,
        user: str = "1111",
        to: str | None = None,
        call_id: str | None = None,
        cseq: int = 1,
        extra: tuple[str, ...] = (),
        body: str = "",
        content_type: str = "text/plain",
    ) -> bytes:
        branch = f"z9hG4bKpeer{next(_counter)}"
        host, port = self.server
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/{self.transport} {HOST}:{self.port};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: <sip:{user}@{host}:{port}>;tag=t{self.port}",
            f"To: {to or '<' + uri + '>'}",
            f"Call-ID: {call_id or f'call-{self.port}-{next(_counter)}'}",
            f"CSeq: {cseq} {method}",
            *extra,
        ]
        if body:
            lines.append(f"Content-Type: {content_type}")
        return ("\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode()

    async def send(self, data: bytes, to: tuple[str, int] | None = None) -> None:
        if self.transport == "TCP":
            await self.sock.send(data)
        else:
            await self.sock.sendto(data, to or self.server)

    async def receive(self, timeout: float = 2.0) -> tuple[Request | Response, tuple[str, int]]:
        with trio.fail_after(timeout):
            if self.transport == "UDP":
                data, source = await self.sock.recvfrom(65535)
                return parse_message(data), source[:2]
            while True:
                end = self._buffer.find(b"\r\n\r\n")
                if end != -1:
                    head = parse_message(self._buffer[: end + 4])
                    length = int(head.headers.get_first("Content-Length") or "0")
                    total = end + 4 + length
                    if len(self._buffer) >= total:
                        data, self._buffer = self._buffer[:total], self._buffer[total:]
                        return parse_message(data), self.server
                chunk = await self.sock.recv(65535)
                if not chunk:
                    raise ConnectionError("closed")
                self._buffer += chunk

    async def final(self, data: bytes) -> Response:
        """Send a request; the first final response with its Call-ID (others are skipped)."""
        call_id = parse_message(data).call_id
        await self.send(data)
        while True:
            message, _ = await self.receive()
            if (
                isinstance(message, Response)
                and message.status_code >= 200
                and message.headers.get_first("Call-ID") == call_id
            ):
                return message

    async def with_auth(self, method: str, uri: str, *, password: str, **kw: object) -> Response:
        """Send, answer one 401/407 with digest credentials, return the final response."""
        user = str(kw.get("user", "1111"))
        response = await self.final(self.build(method, uri, **kw))  # type: ignore[arg-type]
        if response.status_code not in (401, 407):
            return response
        header = "WWW-Authenticate" if response.status_code == 401 else "Proxy-Authenticate"
        challenge = parse_challenge(response.headers[header], header)
        credentials = build_credentials(
            challenge, username=user, password=password, method=method, uri=uri, cnonce="c0ffee"
        )
        name = "Authorization" if response.status_code == 401 else "Proxy-Authorization"
        extra = (*kw.pop("extra", ()), f"{name}: {credentials.to_header_value()}")  # type: ignore[misc]
        return await self.final(self.build(method, uri, cseq=2, extra=extra, **kw))  # type: ignore[arg-type]


@pytest.fixture
async def server() -> AsyncIterator[DevServer]:
    async with DevServer(HOST, 0, timers=TimerConfig(t1=0.05, t2=0.4)) as running:
        yield running


@pytest.fixture
async def peer(server: DevServer) -> AsyncIterator[Peer]:
    p = await Peer(server.address).open()
    try:
        yield p
    finally:
        p.close()


def aor(server: DevServer, user: str | None = None) -> str:
    return server.uri(user)


# -- the basics --------------------------------------------------------------------------------


async def test_binds_udp_and_tcp_on_the_same_port(server: DevServer) -> None:
    host, port = server.address
    assert host == HOST and port != 0
    for transport in ("UDP", "TCP"):
        peer = await Peer(server.address, transport).open()
        try:
            response = await peer.final(peer.build("OPTIONS", server.uri()))
        finally:
            peer.close()
        assert response.status_code == 200
        assert "REGISTER" in response.headers["Allow"]
        assert response.headers["Server"] == "sipx-serve"


async def test_register_is_challenged_then_accepted(server: DevServer, peer: Peer) -> None:
    uri = aor(server)
    contact = (f"Contact: <sip:1111@{HOST}:{peer.port}>",)
    challenge = await peer.final(
        peer.build("REGISTER", uri, to=f"<{aor(server, '1111')}>", extra=contact)
    )
    assert challenge.status_code == 401
    assert 'realm="sipx"' in challenge.headers["WWW-Authenticate"]
    response = await peer.with_auth(
        "REGISTER", uri, password="1111xxx", to=f"<{aor(server, '1111')}>", extra=contact
    )
    assert response.status_code == 200
    assert response.headers["Contact"] == f"<sip:1111@{HOST}:{peer.port}>;expires=3600"
    (binding,) = server.registrations["1111"]
    assert binding.source == (HOST, peer.port) and binding.transport == "UDP"


async def test_message_to_unregistered_user_is_480_and_unknown_404(
    server: DevServer, peer: Peer
) -> None:
    for user, code in (("3333", 480), ("9999", 404)):
        response = await peer.with_auth("MESSAGE", aor(server, user), password="1111xxx", body="hi")
        assert response.status_code == code, response


async def test_garbage_does_not_stop_the_server(server: DevServer, peer: Peer) -> None:
    seen: list[tuple[str, bytes]] = []
    server.trace = lambda direction, data, address, transport: seen.append((direction, data))
    for junk in (
        b"garbage\r\n\r\n",
        b"\x00\xff\xfe" * 50,
        b"INVITE sip:x SIP/2.0\r\n\r\n",  # no Via, no anything
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP nowhere\r\nCSeq: x\r\n\r\n",
        b"\r\n\r\n",
    ):
        await peer.send(junk)
    response = await peer.final(peer.build("OPTIONS", server.uri()))
    assert response.status_code == 200
    assert sum(1 for direction, _ in seen if direction == "in") >= 7
    assert seen[-1][0] == "out" and seen[-1][1].startswith(b"SIP/2.0 200 OK")


async def test_message_is_proxied_to_a_registered_user(server: DevServer, peer: Peer) -> None:
    callee = await Peer(server.address).open()
    try:
        contact = (f"Contact: <sip:2222@{HOST}:{callee.port}>",)
        registered = await callee.with_auth(
            "REGISTER",
            aor(server),
            user="2222",
            password="2222xxx",
            to=f"<{aor(server, '2222')}>",
            extra=contact,
        )
        assert registered.status_code == 200

        async def answer() -> Request:
            message, source = await callee.receive()
            assert isinstance(message, Request)
            ok = (
                "SIP/2.0 200 OK\r\n"
                + "".join(f"Via: {v}\r\n" for v in message.headers.get_list("Via"))
                + f"From: {message.headers['From']}\r\nTo: {message.headers['To']};tag=callee\r\n"
                + f"Call-ID: {message.call_id}\r\nCSeq: {message.headers['CSeq']}\r\n"
                + "Content-Length: 0\r\n\r\n"
            )
            await callee.send(ok.encode(), source)
            return message

        async with trio.open_nursery() as nursery:
            received: list[Request] = []

            async def run_callee() -> None:
                received.append(await answer())

            nursery.start_soon(run_callee)
            response = await peer.with_auth(
                "MESSAGE", aor(server, "2222"), password="1111xxx", body="hello 2222"
            )
        assert response.status_code == 200
        assert response.to.tag == "callee"
        (message,) = received
        assert message.content == b"hello 2222"
        assert str(message.uri) == f"sip:2222@{HOST}:{callee.port}"
        assert len(message.via) == 2 and message.max_forwards == 69
    finally:
        callee.close()


async def test_call_to_the_echo_extension(server: DevServer, peer: Peer) -> None:
    sdp = (
        f"v=0\r\no=t 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
        "m=audio 7000 RTP/AVP 0\r\n"
    )
    call_id = "echo-call-1"
    uri = aor(server, "100")
    response = await peer.with_auth(
        "INVITE",
        uri,
        password="1111xxx",
        body=sdp,
        content_type="application/sdp",
        call_id=call_id,
    )
    assert response.status_code == 200
    assert b"m=audio" in response.content
    # no ACK yet: the 2xx comes again (T1 = 50 ms here)
    again, _ = await peer.receive(timeout=1.0)
    assert isinstance(again, Response) and again.status_code == 200
    to = response.headers["To"]
    ack = peer.build("ACK", uri, to=to, call_id=call_id, cseq=2)
    await peer.send(ack)
    bye = await peer.final(peer.build("BYE", uri, to=to, call_id=call_id, cseq=3))
    assert bye.status_code == 200
    echo = server.echo
    assert echo is not None and echo.calls == []


# -- forms of running and configuration --------------------------------------------------------


async def test_nursery_start_form_and_udp_only() -> None:
    server = DevServer(HOST, 0, transports=("udp",))
    async with trio.open_nursery() as nursery:
        address = await nursery.start(server.serve)
        assert address == server.address
        peer = await Peer(address).open()
        try:
            assert (await peer.final(peer.build("OPTIONS", server.uri()))).status_code == 200
        finally:
            peer.close()
        with pytest.raises(OSError):
            await trio.open_tcp_stream(*address)
        server.close()
    with pytest.raises(RuntimeError):
        server.address  # noqa: B018


async def test_port_in_use_is_a_transport_error(server: DevServer) -> None:
    with pytest.raises(TransportError, match=str(server.address[1])):
        async with DevServer(HOST, server.address[1]):
            pass


def test_bad_configuration() -> None:
    with pytest.raises(ValueError):
        DevServer(transports=("TLS",))
    with pytest.raises(ValueError):
        DevServer(transports=())
    with pytest.raises(ValueError):
        DevServer(algorithm="SHA-1")
    server = DevServer(users={"alice": "secret"}, realm="dev", algorithm="sha-256")
    assert server.users == {"alice": "secret"}
    assert (server.realm, server.algorithm) == ("dev", "SHA-256")
    assert server.registrations == {}


# -- the command line --------------------------------------------------------------------------


def test_cli_parses_users_and_options() -> None:
    from sipx._serve.cli import build_parser, parse_users

    assert parse_users(None) == {"1111": "1111xxx", "2222": "2222xxx", "3333": "3333xxx"}
    assert parse_users(["alice:pw:with:colons", "bob:x"]) == {"alice": "pw:with:colons", "bob": "x"}
    with pytest.raises(ValueError):
        parse_users(["nopassword"])
    args = build_parser().parse_args(
        ["--port", "5070", "--transport", "tcp", "--algorithm", "sha-256", "--user", "a:b", "-v"]
    )
    assert (args.port, args.transport, args.algorithm, args.user, args.verbose) == (
        5070,
        "tcp",
        "SHA-256",
        ["a:b"],
        True,
    )
    defaults = build_parser().parse_args([])
    assert (defaults.host, defaults.port, defaults.transport, defaults.realm) == (
        "127.0.0.1",
        5060,
        "both",
        "sipx",
    )


async def test_cli_reports_a_busy_port(
    server: DevServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from sipx._serve.cli import main

    port = server.address[1]
    code = await trio.to_thread.run_sync(main, ["--port", str(port), "--transport", "udp"])
    assert code == 1
    assert f"cannot bind UDP 127.0.0.1:{port}" in capsys.readouterr().err


async def test_an_error_in_the_body_propagates_unwrapped() -> None:
    with pytest.raises(KeyError):
        async with DevServer(HOST, 0):
            raise KeyError("mine")
