"""A malformed or hostile packet never stops the client: it is dropped (or answered 400/500)
and the next request is served as usual."""

from __future__ import annotations

import pathlib
import random
import socket
import ssl
import struct

import pytest
import trio
import trio.testing
import trustme

import sipx
from sipx._core.framer import StreamFramer
from sipx._trio.resolver import is_ip
from sipx.testing import MemoryNetwork

PEER = ("127.0.0.1", 5090)
CLIENT = ("127.0.0.1", 5062)

SEEDS = [
    b"INVITE sip:alice@127.0.0.1:5062 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bKfuzz{n};rport\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:bob@127.0.0.1>;tag=b{n}\r\nTo: <sip:alice@127.0.0.1>\r\n"
    b"Call-ID: fuzz-{n}\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@127.0.0.1:5090>\r\n"
    b"Content-Type: application/sdp\r\nContent-Length: 60\r\n\r\n"
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKx{n}\r\n"
    b"From: <sip:alice@127.0.0.1>;tag=a\r\nTo: <sip:bob@127.0.0.1>;tag=b{n}\r\n"
    b"Call-ID: r-{n}\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@127.0.0.1:5090>\r\n"
    b"Record-Route: <sip:127.0.0.1:5091;lr>\r\nContent-Length: 0\r\n\r\n",
    b"BYE sip:alice@127.0.0.1:5062 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bKy{n}\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:bob@127.0.0.1>;tag=b\r\n"
    b"To: <sip:alice@127.0.0.1>;tag=a{n}\r\n"
    b"Call-ID: x-{n}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
]


async def _resolve_literals_only(host: str, port: int) -> tuple[str, int]:
    host = host[1:-1] if host.startswith("[") else host
    if not is_ip(host):
        raise sipx.TransportError(f"cannot resolve {host}: not resolved in this test")
    return (host, port)


def _mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        choice = rng.random()
        position = rng.randrange(len(out) or 1)
        if choice < 0.3 and out:
            del out[position : position + rng.randint(1, 20)]
        elif choice < 0.6:
            out[position:position] = rng.choice(
                [
                    b"\r\n",
                    b":",
                    b";",
                    b"<",
                    b">",
                    b'"',
                    b",",
                    b"\x00",
                    b"\xff",
                    b" ",
                    b"%",
                    b"9" * 30,
                ]
            )
        elif out:
            out[position] = rng.randrange(256)
    return bytes(out)


@pytest.mark.parametrize("seed", [4475, 3261, 6026, 3581, 8866])
async def test_mutated_messages_never_stop_the_client(
    autojump_clock: trio.testing.MockClock, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    network = MemoryNetwork()
    async with network.socket(PEER) as peer, sipx.AsyncClient(*CLIENT, network=network) as client:
        # Mutated hosts must never reach a real DNS server: only IP literals resolve here.
        monkeypatch.setattr(client._resolver, "resolve", _resolve_literals_only)

        async def no_dns(name: str, kind: str, cache: object) -> list[object]:
            return []  # nor NAPTR/SRV lookups (RFC 3263) of mutated names

        monkeypatch.setattr(client._resolver, "_records", no_dns)
        client.on_request("INVITE", lambda call: call.answer())
        for n in range(400):
            seed = rng.choice(SEEDS).replace(b"{n}", str(n).encode())
            peer.send(_mutate(rng, seed) if n % 4 else seed, CLIENT)
            if n % 50 == 0:
                await trio.sleep(1)
        await trio.sleep(40)  # let every timer (2xx retransmissions, Timer H/J...) run out
        # Still alive: it answers an OPTIONS and sends its own request.
        while True:
            try:
                peer.receive_nowait()
            except trio.WouldBlock:
                break
        options = (
            b"OPTIONS sip:alice@127.0.0.1:5062 SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bKalive\r\nMax-Forwards: 70\r\n"
            b"From: <sip:bob@127.0.0.1>;tag=z\r\nTo: <sip:alice@127.0.0.1>\r\n"
            b"Call-ID: alive\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        peer.send(options, CLIENT)
        with trio.fail_after(5):
            while True:
                data, _ = await peer.receive()
                answer = sipx.parse_message(data)
                if isinstance(answer, sipx.Response) and answer.call_id == "alive":
                    break
        assert answer.status_code == 200 and "INVITE" in answer.headers["Allow"]

        async def peer_answers_options() -> None:
            data, source = await peer.receive()
            request = sipx.parse_message(data)
            assert isinstance(request, sipx.Request)
            response = sipx.Response(200)
            for name in ("Via", "From", "To", "Call-ID", "CSeq"):
                response.headers[name] = request.headers[name]
            peer.send(response.to_bytes(), source)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer_answers_options)
            response = await client.options(f"sip:{PEER[0]}:{PEER[1]}")
        assert response.status_code == 200


async def _hostile_stream(
    rng: random.Random, address: tuple[str, int], context: ssl.SSLContext | None
) -> None:
    """One connection: mutated messages in random chunks, then a close, a reset or a cut."""
    tcp = await trio.open_tcp_stream(*address)
    stream: trio.abc.Stream = tcp
    if context is not None:
        if rng.random() < 0.3:  # not TLS at all
            await tcp.send_all(rng.randbytes(rng.randint(1, 300)))
            await trio.aclose_forcefully(tcp)
            return
        stream = trio.SSLStream(tcp, context, server_hostname="127.0.0.1")
    data = b"".join(
        _mutate(rng, rng.choice(SEEDS).replace(b"UDP", b"TCP").replace(b"{n}", b"%d" % n))
        for n in range(rng.randint(1, 5))
    )
    try:
        while data:
            cut = rng.randint(1, 200)
            await stream.send_all(data[:cut])
            data = data[cut:]
        ending = rng.random()
        if ending < 0.3:
            tcp.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            tcp.socket.close()  # reset
        elif ending < 0.6:
            await trio.aclose_forcefully(tcp)  # cut (no TLS close_notify)
        else:
            await stream.aclose()
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        await trio.aclose_forcefully(tcp)  # the client closed first: fine


@pytest.mark.parametrize("kind", ["TCP", "TLS"])
async def test_hostile_streams_never_stop_the_client(
    kind: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(5922)
    options: dict[str, object] = {}
    context = None
    if kind == "TLS":
        ca = trustme.CA()
        pem = tmp_path / "server.pem"
        ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
        options["cert"] = str(pem)
        context = ssl.create_default_context()
        ca.configure_trust(context)
    async with sipx.AsyncClient("127.0.0.1", 0, kind, **options) as client:  # type: ignore[arg-type]
        monkeypatch.setattr(client._resolver, "resolve", _resolve_literals_only)
        client.on_request("INVITE", lambda call: call.answer())
        address = client.local_address
        for _ in range(40):
            await _hostile_stream(rng, address, context)
        await trio.sleep(0.3)
        # Still serving: a whole OPTIONS gets its 200 over a new connection.
        tcp = await trio.open_tcp_stream(*address)
        stream: trio.abc.Stream = tcp
        if context is not None:
            stream = trio.SSLStream(tcp, context, server_hostname="127.0.0.1")
        async with stream:
            await stream.send_all(
                b"OPTIONS sip:alice@127.0.0.1 SIP/2.0\r\n"
                b"Via: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKalive\r\nMax-Forwards: 70\r\n"
                b"From: <sip:bob@127.0.0.1>;tag=z\r\nTo: <sip:alice@127.0.0.1>\r\n"
                b"Call-ID: alive\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            )
            framer = StreamFramer()
            with trio.fail_after(5):
                while True:
                    messages = framer.feed(await stream.receive_some(65_536))
                    answers = [sipx.parse_message(m) for m in messages]
                    alive = [a for a in answers if getattr(a, "call_id", None) == "alive"]
                    if alive:
                        break
    [answer] = alive
    assert isinstance(answer, sipx.Response) and answer.status_code == 200
