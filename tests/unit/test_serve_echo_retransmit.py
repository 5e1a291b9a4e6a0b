"""Extension 100's 2xx retransmission runs on a TwoXXRetransmitter; its memory is released."""

from __future__ import annotations

from sipx._core.ids import IdSource, counter_token
from sipx._core.message import Request, Response
from sipx._core.parser import parse_message
from sipx._core.timers import TimerConfig
from sipx._serve.common import ServerIdentity
from sipx._serve.echo import EchoUA

SERVER = "127.0.0.1:5070"
SOURCE = ("127.0.0.1", 5091)


def make(max_calls: int = 1024) -> EchoUA:
    return EchoUA(
        ServerIdentity("127.0.0.1", 5070),
        ids=IdSource(counter_token()),
        timers=TimerConfig(t1=0.5, t2=4.0),
        max_calls=max_calls,
    )


def build(
    method: str, *, branch: str, call_id: str = "c1", cseq: int = 1, to_tag: str | None = None
) -> Request:
    to = f"<sip:100@{SERVER}>" + (f";tag={to_tag}" if to_tag else "")
    text = (
        f"{method} sip:100@{SERVER} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5091;branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:1111@{SERVER}>;tag=alice\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Contact: <sip:1111@127.0.0.1:5091>\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


def answer(echo: EchoUA, call_id: str = "c1", now: float = 0.0) -> Response:
    out = echo.handle(
        build("INVITE", branch=f"z9hG4bK{call_id}", call_id=call_id),
        now,
        transport="UDP",
        source=SOURCE,
    )
    ok = out[-1].message
    assert isinstance(ok, Response) and ok.status_code == 200
    return ok


def test_ack_releases_the_retransmission() -> None:
    echo = make()
    ok = answer(echo)
    assert len(echo._retransmitter) == 1
    ack = build("ACK", branch="z9hG4bKack", to_tag=ok.to.tag)
    assert echo.handle(ack, 0.1, transport="UDP", source=SOURCE) == []
    assert len(echo._retransmitter) == 0


def test_bye_before_the_ack_releases_it() -> None:
    echo = make()
    ok = answer(echo)
    bye = build("BYE", branch="z9hG4bKbye", cseq=2, to_tag=ok.to.tag)
    echo.handle(bye, 0.2, transport="UDP", source=SOURCE)
    assert len(echo._retransmitter) == 0
    assert echo.handle_timers(0.5) == []


def test_forgotten_calls_release_it() -> None:
    echo = make(max_calls=3)
    for n in range(50):
        answer(echo, call_id=f"call-{n}")
    assert len(echo.calls) == 3 and len(echo._retransmitter) == 3


def test_no_ack_drops_the_call_at_64_t1() -> None:
    echo = make()
    answer(echo)
    echo.handle_timers(31.9)
    assert len(echo.calls) == 1
    assert echo.next_deadline() == 32.0
    assert echo.handle_timers(32.0) == []
    assert echo.calls == [] and len(echo._retransmitter) == 0


def test_a_late_timer_call_resends_once() -> None:
    echo = make()
    ok = answer(echo)
    out = echo.handle_timers(10.0)
    assert [o.message for o in out] == [ok]
