"""The 49 RFC 4475 messages sent to ``sipx serve`` and to an AsyncClient over UDP and TCP:
what each receiver answers, checked against the RFC's text.

* An invalid request (3.1.2) or one the RFC says is rejected (3.3.1, 3.3.8, 3.3.9) gets 400
  with a reason phrase naming the fault; 505 for SIP/7.0 (3.1.2.16). Before, seven of them
  got no answer at all and badvers got 400.
* A valid request gets an answer that is not 400 or 505 (what it is depends on the
  receiver: 403 from a proxy that does not relay, 405 from a client that is no registrar).
* A response is never answered.

Each message goes to a receiver of its own: many of them share a branch, and a second
request with the branch of the first is, rightly, taken for a retransmission of it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

import sipx
from sipx.testing import DevServer

DATA = Path(__file__).resolve().parent.parent / "data" / "rfc4475"
ALL = sorted(path.stem for path in DATA.glob("*.dat"))
HOST = "127.0.0.1"

# 3.1.2 and the 3.3 messages the RFC rejects: the status and a word of the fault.
REJECTED = {
    "badinv01": (400, "Via"),
    "clerr": (400, "Content-Length"),
    "ncl": (400, "Content-Length"),
    "scalar02": (400, "out of range"),
    "quotbal": (400, "quoted"),
    "ltgtruri": (400, "Request-URI"),
    "lwsruri": (400, "request line"),
    "lwsstart": (400, "request line"),
    "trws": (400, "request line"),
    "escruri": (400, "Request-URI"),
    "baddate": (400, "Date"),
    "regbadct": (400, "<>"),
    "badaspec": (400, "<>"),
    "baddn": (400, "empty line"),
    "badvers": (505, "Version Not Supported"),
    "mismatch01": (400, "CSeq method"),
    "mismatch02": (400, "CSeq method"),  # 3.1.2.18: 501 or 400
    "insuf": (400, "has no"),
    "multi01": (400, "appears 2 times"),
    "mcl01": (400, "Content-Length"),
}
# A client acts on fewer headers than a proxy and registrar; where the RFC lets an element
# that does not use a header accept the message, the client does (3.1.2.12: "an element
# shouldn't reject it unless the Date was important to its processing"). A client is no
# registrar: a REGISTER gets 405 before its Contact is looked at.
CLIENT_ACCEPTS = {"baddate", "regbadct"}
# Over a stream, a Content-Length larger than the body (3.1.2.2), or no empty line after the
# headers (3.1.2.15), means "wait for more".
STREAM_WAITS = {"clerr", "baddn"}


def is_response(name: str) -> bool:
    return (DATA / f"{name}.dat").read_bytes().startswith(b"SIP/")


Send = Callable[[str, tuple[str, int]], Awaitable[str | None]]


async def over_udp(name: str, address: tuple[str, int]) -> str | None:
    """Send one message from a socket of its own; the first status line back, if any."""
    with trio.socket.socket(type=trio.socket.SOCK_DGRAM) as sock:
        await sock.bind((HOST, 0))
        await sock.sendto((DATA / f"{name}.dat").read_bytes(), address)
        with trio.move_on_after(1.5):
            return (await sock.recv(65536)).split(b"\r\n", 1)[0].decode()
    return None


async def over_tcp(name: str, address: tuple[str, int]) -> str | None:
    stream = await trio.open_tcp_stream(*address)
    async with stream:
        await stream.send_all((DATA / f"{name}.dat").read_bytes())
        received = b""
        with trio.move_on_after(1.5):
            while b"\r\n" not in received:
                data = await stream.receive_some()
                if not data:
                    break
                received += data
    return received.split(b"\r\n", 1)[0].decode() if b"\r\n" in received else None


@asynccontextmanager
async def serve(transport: str) -> AsyncIterator[tuple[str, int]]:
    async with DevServer(HOST, 0) as server:
        yield server.address


@asynccontextmanager
async def client(transport: str) -> AsyncIterator[tuple[str, int]]:
    async with sipx.AsyncClient(HOST, 0, transport=transport) as receiver:
        yield (HOST, receiver.local_address.port)


async def answers(receiver: str, transport: str) -> dict[str, str | None]:
    """Every message to a fresh receiver, all at once; the first status line of each."""
    start = serve if receiver == "serve" else client
    send: Send = over_udp if transport == "UDP" else over_tcp
    found: dict[str, str | None] = {}

    async def one(name: str) -> None:
        async with start(transport) as address:
            found[name] = await send(name, address)

    async with trio.open_nursery() as nursery:
        for name in ALL:
            nursery.start_soon(one, name)
    return found


def expected(name: str, receiver: str, transport: str) -> str:
    """What the RFC asks of this receiver: "none", "accepted" or "<status> <fault>"."""
    if is_response(name):
        return "none"
    if transport == "TCP" and name in STREAM_WAITS:
        return "none"
    if name in REJECTED and not (receiver == "client" and name in CLIENT_ACCEPTS):
        status, fault = REJECTED[name]
        return f"{status} {fault}"
    return "accepted"


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
@pytest.mark.parametrize("receiver", ["serve", "client"])
async def test_each_torture_message_gets_the_rfc_answer(receiver: str, transport: str) -> None:
    found = await answers(receiver, transport)
    wrong = {}
    for name in ALL:
        want, got = expected(name, receiver, transport), found[name]
        if want == "none":
            ok = got is None
        elif want == "accepted":
            ok = got is not None and not re.match(r"SIP/2\.0 (400|505) ", got)
        else:
            status, fault = want.split(" ", 1)
            ok = got is not None and got.startswith(f"SIP/2.0 {status} ") and fault in got
        if not ok:
            wrong[name] = (want, got)
    assert not wrong, wrong
    assert len(found) == 49


async def test_an_unreadable_request_is_dropped_and_counted() -> None:
    """No top Via or no CSeq: no response could be matched by its sender, so none is sent;
    the client counts what it dropped from that address."""
    message = (
        b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nCall-ID: a\r\nFrom: <sip:a@b>;tag=1\r\n"
        b"To: <sip:x@127.0.0.1>\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    async with sipx.AsyncClient(HOST, 0) as receiver:
        with trio.socket.socket(type=trio.socket.SOCK_DGRAM) as sock:
            await sock.bind((HOST, 0))
            await sock.sendto(message, (HOST, receiver.local_address.port))
            with trio.move_on_after(0.5):
                await sock.recv(65536)
                pytest.fail("a request without Via was answered")
            drops = receiver._engine.malformed_from(sock.getsockname())
    assert drops is not None and drops.startswith("1 malformed message from")
