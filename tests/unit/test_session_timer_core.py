"""Session timers (RFC 4028), sans-I/O: headers, the UAS's choice, the UAC's reading of the
2xx, the 422 retry and the deadlines, with explicit ``now``."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from sipx import ParseError
from sipx._core.message import Request, Response
from sipx._core.parser import parse_message
from sipx._core.session_timer import (
    EXPIRE,
    REFRESH,
    SessionExpires,
    SessionTimer,
    choose_as_uas,
    interval_retry_flow,
    negotiated,
    parse_min_se,
    request_headers,
    retry_after_422,
    session_expires_of,
    supports_timer,
    with_option_tag,
)


def invite(*headers: str, cseq: int = 1) -> Request:
    lines = [
        "INVITE sip:bob@127.0.0.1 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKone;rport",
        "Max-Forwards: 70",
        "From: <sip:alice@127.0.0.1>;tag=a1",
        "To: <sip:bob@127.0.0.1>",
        "Call-ID: st-1",
        f"CSeq: {cseq} INVITE",
        "Contact: <sip:alice@127.0.0.1:5061>",
        *headers,
    ]
    message = parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


def response(status: int, *headers: str, method: str = "INVITE") -> Response:
    lines = [
        f"SIP/2.0 {status} Whatever",
        "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKone",
        "From: <sip:alice@127.0.0.1>;tag=a1",
        "To: <sip:bob@127.0.0.1>;tag=b1",
        "Call-ID: st-1",
        f"CSeq: 1 {method}",
        *headers,
    ]
    message = parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(message, Response)
    return message


# -- headers ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "delta", "refresher", "written"),
    [
        ("1800", 1800, None, "1800"),
        ("1800;refresher=uac", 1800, "uac", "1800;refresher=uac"),
        ("90 ; refresher = UAS", 90, "uas", "90;refresher=uas"),
        ("600;foo=bar;refresher=uas", 600, "uas", "600;refresher=uas"),
    ],
)
def test_session_expires_parses_and_renders(
    text: str, delta: int, refresher: str | None, written: str
) -> None:
    value = SessionExpires.parse(text)
    assert (value.delta, value.refresher) == (delta, refresher)
    assert str(value) == written


@pytest.mark.parametrize("text", ["", "abc", "0", "-5", "90;refresher=both", "9" * 30])
def test_bad_session_expires_is_a_parse_error(text: str) -> None:
    with pytest.raises(ParseError):
        SessionExpires.parse(text)


def test_compact_form_and_min_se() -> None:
    request = invite("x: 300;refresher=uac", "Min-SE: 120;x=1", "k: 100rel, timer")
    assert session_expires_of(request) == SessionExpires(300, "uac")
    assert parse_min_se("120;x=1") == 120 and supports_timer(request)
    assert not supports_timer(invite("Supported: 100rel"))
    with pytest.raises(ParseError):
        parse_min_se("ninety")


def test_request_headers_and_option_tags() -> None:
    assert request_headers(1800, 90) == {
        "Supported": "timer",
        "Session-Expires": "1800",
        "Min-SE": "90",
    }
    assert request_headers(600, 90, "uas")["Session-Expires"] == "600;refresher=uas"
    assert with_option_tag("100rel", "timer") == "100rel, timer"
    assert with_option_tag("Timer, 100rel", "timer") == "Timer, 100rel"
    assert with_option_tag(None, "timer") == "timer"


# -- the UAS's choice (RFC 4028 9) -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "interval", "keep", "status", "expected"),
    [
        # The UAC does not support timers: the UAS refreshes, no Require.
        ((), 1800, None, 200, {"Session-Expires": "1800;refresher=uas"}),
        # It supports them and asks for nothing: the UAS picks the UAC (Require: timer).
        (("Supported: timer",), 1800, None, 200, {"Session-Expires": "1800;refresher=uac"}),
        # The refresher it names is kept; the interval may be lowered to ours.
        (
            ("Supported: timer", "Session-Expires: 3600;refresher=uas"),
            1800,
            None,
            200,
            {"Session-Expires": "1800;refresher=uas"},
        ),
        # ... but not below its Min-SE.
        (
            ("Supported: timer", "Session-Expires: 3600", "Min-SE: 1000"),
            600,
            None,
            200,
            {"Session-Expires": "1000;refresher=uac"},
        ),
        # Never raised above what was asked.
        (
            ("Supported: timer", "Session-Expires: 300"),
            1800,
            None,
            200,
            {"Session-Expires": "300;refresher=uac"},
        ),
        # Too small, and the UAC supports timers: 422 with our minimum.
        (("Supported: timer", "Session-Expires: 60"), 1800, None, 422, {"Min-SE": "90"}),
        # Too small, put there by a proxy (no Supported: timer): raised to our minimum.
        (("Session-Expires: 60",), 1800, None, 200, {"Session-Expires": "90;refresher=uas"}),
        # In a running session: whoever refreshes keeps doing it.
        (("Supported: timer",), 600, "uas", 200, {"Session-Expires": "600;refresher=uas"}),
        (("Supported: timer",), 600, "uac", 200, {"Session-Expires": "600;refresher=uac"}),
    ],
)
def test_uas_choice(
    headers: tuple[str, ...],
    interval: int,
    keep: str | None,
    status: int,
    expected: dict[str, str],
) -> None:
    choice = choose_as_uas(invite(*headers), interval=interval, min_se=90, keep=keep)
    assert choice.status == status
    for name, value in expected.items():
        assert choice.headers[name] == value
    if status == 422:
        assert choice.session is None and "Session-Expires" not in choice.headers
        return
    assert choice.session is not None
    assert str(choice.session) == choice.headers["Session-Expires"]
    # Require: timer exactly when the UAC is to refresh (RFC 4028 9).
    assert ("Require" in choice.headers) == (choice.session.refresher == "uac")
    assert choice.headers["Supported"] == "timer"


def test_uas_choice_of_a_malformed_request_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        choose_as_uas(invite("Session-Expires: soon"), interval=1800, min_se=90)
    with pytest.raises(ParseError):
        choose_as_uas(invite("Min-SE: -1"), interval=1800, min_se=90)


# -- the UAC (RFC 4028 7) --------------------------------------------------------------------------
def test_the_2xx_settles_the_session() -> None:
    assert negotiated(response(200, "Session-Expires: 600;refresher=uas")) == SessionExpires(
        600, "uas"
    )
    # No refresher named: the UAC refreshes. No Session-Expires: no expiry.
    assert negotiated(response(200, "Session-Expires: 6")) == SessionExpires(6, "uac")
    assert negotiated(response(200)) is None
    assert negotiated(response(200, "Session-Expires: never")) is None


def test_a_422_gives_the_retry_with_its_min_se() -> None:
    request = invite("Supported: timer", "Session-Expires: 90", "Min-SE: 90", cseq=3)
    retry = retry_after_422(request, response(422, "Min-SE: 300"))
    assert retry is not None
    assert retry is not request and "Via" not in retry.headers
    assert str(retry.cseq) == "4 INVITE" and retry.call_id == request.call_id
    assert retry.from_.tag == "a1" and retry.to.tag is None
    assert retry.headers["Session-Expires"] == "300" and retry.headers["Min-SE"] == "300"
    assert request.headers["Session-Expires"] == "90"  # the original is untouched
    # Nothing larger to ask for, no Min-SE, not a 422, nothing asked: no retry.
    assert retry_after_422(request, response(422, "Min-SE: 90")) is None
    assert retry_after_422(request, response(422)) is None
    assert retry_after_422(request, response(486, "Min-SE: 300")) is None
    assert retry_after_422(invite(), response(422, "Min-SE: 300")) is None


def _answer_with(statuses: list[Response]) -> tuple[list[Request], Response]:
    """Drive interval_retry_flow around a one-shot inner flow; the requests it sent."""
    sent: list[Request] = []

    def inner(request: Request) -> Generator[Request, Response, None]:
        yield request

    flow = interval_retry_flow(invite("Session-Expires: 90"), inner)
    request = next(flow)
    replies = iter(statuses)
    while True:
        sent.append(request)
        reply = next(replies)
        reply.request = request
        try:
            request = flow.send(reply)
        except StopIteration:
            return sent, reply


def test_the_flow_retries_a_422_then_stops() -> None:
    sent, last = _answer_with([response(422, "Min-SE: 120"), response(200)])
    assert [r.headers["Session-Expires"] for r in sent] == ["90", "120"]
    assert last.status_code == 200
    # A UAS that keeps asking for more: two retries, then its 422 is the answer.
    sent, last = _answer_with(
        [response(422, "Min-SE: 120"), response(422, "Min-SE: 150"), response(422, "Min-SE: 180")]
    )
    assert len(sent) == 3 and last.status_code == 422


# -- the deadlines (RFC 4028 10) -------------------------------------------------------------------
def test_refresher_refreshes_at_half_the_interval() -> None:
    timer = SessionTimer(120, we_refresh=True, refreshed_at=1000.0)
    assert timer.next_deadline() == 1060.0
    assert timer.due(1059.9) is None and timer.due(1060.0) == REFRESH
    timer.refresh_started()
    assert timer.next_deadline() == 1088.0  # while the refresh is out, only the expiry
    timer.refreshed(1061.0, 120, we_refresh=True)
    assert timer.next_deadline() == 1121.0


def test_non_refresher_expires_before_the_interval_ends() -> None:
    # BYE at interval - min(32, interval / 3).
    assert SessionTimer(1800, False, 0.0).next_deadline() == 1768.0
    assert SessionTimer(90, False, 0.0).next_deadline() == 60.0
    timer = SessionTimer(6, False, 10.0)
    assert timer.next_deadline() == 14.0
    assert timer.due(13.9) is None and timer.due(14.0) == EXPIRE


def test_a_failed_refresh_is_tried_again_halfway_to_the_expiry() -> None:
    timer = SessionTimer(120, True, 0.0)
    timer.refresh_started()
    timer.refresh_failed(60.0)
    assert timer.next_deadline() == 74.0  # 60 + (88 - 60) / 2
    timer.refresh_started()
    timer.refresh_failed(87.0)  # under 2 s left: nothing before the expiry
    assert timer.next_deadline() == 88.0 and timer.due(88.0) == EXPIRE
