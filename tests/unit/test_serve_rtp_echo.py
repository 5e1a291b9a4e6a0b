"""Extension 100 of ``sipx serve`` echoes the caller's RTP (as Asterisk's echo test does).

The sans-I/O UA asks its :class:`~sipx._serve.echo.MediaPorts` for a port once per call and
gives it back exactly once when the call ends; the DevServer binds a real UDP socket for
it and sends every RTP datagram back to its source. Checked end to end with a sipx client
on loopback: the tone it plays comes back at its frequency, garbage does not stop the
echo, and the socket is closed when the call (or the server) ends.
"""

from __future__ import annotations

import argparse
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

import sipx
from sipx._core.ids import IdSource, counter_token
from sipx._core.message import Response
from sipx._core.sdp import SDPBody
from sipx._serve import DevServer
from sipx._serve.cli import build_parser, parse_port_range
from sipx._serve.common import ServerIdentity
from sipx._serve.echo import MEDIA_PORT, CallKey, EchoUA
from sipx.media import dominant_frequency, tone

pytestmark = pytest.mark.filterwarnings("ignore::trio.TrioDeprecationWarning")

HOST = "127.0.0.1"
AUTH = sipx.Auth.Digest("1111", "1111xxx")
RTP_PORTS = (40000, 50000)


# -- the sans-I/O UA and its MediaPorts ---------------------------------------------------
# The hand-made requests and response helpers of the echo UA's own tests.
from test_serve_echo import OFFER, SOURCE, TIMERS, build, codes, responses  # noqa: E402


class FakePorts:
    """Lends ports 50000, 50002, ... and records what was opened and closed."""

    def __init__(self, *, free: bool = True) -> None:
        self.free = free
        self.opened: list[CallKey] = []
        self.closed: list[CallKey] = []

    def open(self, call: CallKey) -> int | None:
        self.opened.append(call)
        return 50000 + 2 * (len(self.opened) - 1) if self.free else None

    def close(self, call: CallKey) -> None:
        assert call in self.opened and call not in self.closed
        self.closed.append(call)

    @property
    def open_now(self) -> list[CallKey]:
        return [call for call in self.opened if call not in self.closed]


def make(ports: FakePorts, *, max_calls: int = 1024, answer_delay: float = 0.0) -> EchoUA:
    return EchoUA(
        ServerIdentity("127.0.0.1", 5070),
        ids=IdSource(counter_token()),
        timers=TIMERS,
        max_calls=max_calls,
        answer_delay=answer_delay,
        media=ports,
    )


def answered(echo: EchoUA, call_id: str = "echo-call", body: str = OFFER) -> Response:
    out = echo.handle(
        build("INVITE", branch=f"z9hG4bK{call_id}", call_id=call_id, body=body),
        0.0,
        transport="UDP",
        source=SOURCE,
    )
    assert codes(out) == [100, 180, 200]
    return responses(out)[-1]


def port_of(response: Response) -> int:
    return SDPBody.parse(response.content).media[0].port


def test_the_answer_carries_the_lent_port_and_bye_gives_it_back() -> None:
    ports = FakePorts()
    echo = make(ports)
    ok = answered(echo)
    assert port_of(ok) == 50000 and len(ports.opened) == 1
    tag = ok.to.tag
    echo.handle(build("ACK", to_tag=tag), 0.1, transport="UDP", source=SOURCE)
    # a re-INVITE keeps the call's port; nothing more is opened
    out = echo.handle(
        build("INVITE", branch="z9hG4bKre", cseq=2, to_tag=tag, body=OFFER),
        0.2,
        transport="UDP",
        source=SOURCE,
    )
    assert codes(out) == [100, 200] and port_of(responses(out)[-1]) == 50000
    assert len(ports.opened) == 1 and ports.closed == []
    out = echo.handle(
        build("BYE", branch="z9hG4bKbye", cseq=3, to_tag=tag), 0.3, transport="UDP", source=SOURCE
    )
    assert codes(out) == [200]
    assert ports.open_now == [] and ports.closed == ports.opened


def test_every_accepted_stream_gets_the_one_port() -> None:
    ports = FakePorts()
    offer = OFFER.replace("m=audio 6000", "m=video 7000 RTP/AVP 96\r\nm=audio 6000")
    answer = SDPBody.parse(answered(make(ports), body=offer).content)
    assert [m.port for m in answer.media] == [0, 50000]  # video refused, audio echoed


def test_a_late_offer_carries_the_lent_port() -> None:
    ports = FakePorts()
    ok = answered(make(ports), body="")
    assert port_of(ok) == 50000 and len(ports.opened) == 1


def test_the_port_is_given_back_when_the_call_ends_without_bye() -> None:
    # 64*T1 without ACK
    ports = FakePorts()
    echo = make(ports)
    answered(echo)
    now = 0.0
    while (deadline := echo.next_deadline()) is not None:
        now = deadline
        echo.handle_timers(now)
    assert echo.calls == [] and ports.open_now == [] and len(ports.closed) == 1
    # the oldest call evicted by max_calls
    ports = FakePorts()
    echo = make(ports, max_calls=2)
    for n in range(3):
        answered(echo, call_id=f"call-{n}")
    assert [key[0] for key in ports.closed] == ["call-0"]
    assert [key[0] for key in ports.open_now] == ["call-1", "call-2"]
    # 488: no codec in common
    ports = FakePorts()
    echo = make(ports)
    gsm = OFFER.replace("RTP/AVP 0 8", "RTP/AVP 3").replace("PCMU", "GSM").replace("PCMA", "X")
    out = echo.handle(build("INVITE", body=gsm), 0.0, transport="UDP", source=SOURCE)
    assert codes(out) == [100, 180, 488]
    assert echo.calls == [] and ports.open_now == []


def test_cancel_while_ringing_opens_nothing() -> None:
    ports = FakePorts()
    echo = make(ports, answer_delay=5.0)
    echo.handle(build("INVITE", body=OFFER), 0.0, transport="UDP", source=SOURCE)
    out = echo.handle(build("CANCEL"), 0.5, transport="UDP", source=SOURCE)
    assert sorted(codes(out)) == [200, 487]
    assert echo.calls == [] and ports.opened == []


def test_without_a_free_port_the_call_is_answered_anyway() -> None:
    ports = FakePorts(free=False)
    echo = make(ports)
    assert port_of(answered(echo)) == MEDIA_PORT
    assert ports.closed == []


def test_the_cli_takes_an_rtp_port_range() -> None:
    assert parse_port_range("10000-10100") == (10000, 10100)
    for bad in ("10000", "a-b", "200-100", "0-10", "1-70000"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_port_range(bad)
    args = build_parser().parse_args(["--rtp-ports", "12000-12999"])
    assert args.rtp_ports == (12000, 12999)
    assert build_parser().parse_args([]).rtp_ports == (10000, 20000)
    with pytest.raises(ValueError, match="rtp_ports"):
        DevServer(rtp_ports=(20000, 10000))


# -- a DevServer on loopback and a sipx client --------------------------------------------
@asynccontextmanager
async def a_call(
    transport: str = "UDP",
) -> AsyncIterator[tuple[DevServer, sipx.Call, int]]:
    """A call from 1111 to extension 100, answered: (server, call, the echo's RTP port)."""
    async with (
        DevServer(HOST, 0, rtp_ports=RTP_PORTS) as server,
        sipx.AsyncClient(HOST, 0, transport, AUTH, timeout=5) as client,
    ):
        uri = server.uri("100", transport)
        with trio.fail_after(5):
            call = await client.call(uri)
        assert call.established
        assert call.remote_sdp is not None
        port = call.remote_sdp.media[0].port
        yield server, call, port


async def echoed(call: sipx.Call, frequency: float = 1000) -> bytes:
    """Play one second of ``frequency`` and return what comes back in 0.8 s."""
    received: list[bytes] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call.play, tone(frequency, 1.0))
        with trio.move_on_after(0.8):
            async for frame in call.audio_frames():
                received.append(frame)
        nursery.cancel_scope.cancel()
    return b"".join(received)


def bindable(port: int) -> bool:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((HOST, port))
    except OSError:
        return False
    finally:
        sock.close()
    return True


def rtp(sequence: int, payload: bytes = b"\xff" * 160) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, sequence, 160 * sequence, 0x1234) + payload


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
async def test_a_played_tone_comes_back_and_bye_closes_the_socket(transport: str) -> None:
    async with a_call(transport) as (server, call, port):
        assert RTP_PORTS[0] <= port <= RTP_PORTS[1] and port % 2 == 0
        assert server.rtp_echo is not None
        assert list(server.rtp_echo.calls.values()) == [port]
        assert not bindable(port)  # the echo listens there
        heard = await echoed(call)
        assert len(heard) >= 30 * 320
        assert abs(dominant_frequency(heard) - 1000) <= 20
        stats = call.media_stats
        assert stats is not None and stats.remote_address == (HOST, port)  # symmetric
        await call.bye()
        assert server.rtp_echo.calls == {}
        assert server.echo is not None and server.echo.calls == []
        assert bindable(port)


async def test_garbage_does_not_stop_the_echo_and_goes_unanswered() -> None:
    async with a_call() as (server, call, port):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.bind((HOST, 0))
            raw.setblocking(False)
            for garbage in (b"", b"x", b"\x00" * 11, b"\x40" * 40, b"\xff" * 3000, b"hello"):
                raw.sendto(garbage, (HOST, port))
            raw.sendto(rtp(1), (HOST, port))  # a real packet comes back to its source
            with trio.fail_after(2):
                await trio.lowlevel.wait_readable(raw.fileno())
            data, source = raw.recvfrom(4096)
            assert (data, source) == (rtp(1), (HOST, port))
            await trio.sleep(0.05)
            with pytest.raises(BlockingIOError):  # nothing else: the garbage was dropped
                raw.recvfrom(4096)
        heard = await echoed(call, 700)
        assert abs(dominant_frequency(heard) - 700) <= 20
        assert server.rtp_echo is not None and len(server.rtp_echo.calls) == 1


async def test_the_server_closes_the_echo_sockets_when_it_stops() -> None:
    # Over TCP the client's BYE to the stopped server fails at once (connection refused).
    async with sipx.AsyncClient(HOST, 0, "TCP", AUTH, timeout=2) as client:
        async with DevServer(HOST, 0, rtp_ports=RTP_PORTS) as server:
            call = await client.call(server.uri("100", "TCP"))
            assert call.established and call.remote_sdp is not None
            port = call.remote_sdp.media[0].port
            assert not bindable(port)
            rtp_echo = server.rtp_echo
        assert rtp_echo is not None and rtp_echo.calls == {}
        assert bindable(port)
        assert rtp_echo.open(("late", "a", "b")) is None  # a stopped server lends no port
