"""Extension 100 of ``sipx serve``: the built-in answering UA, sans-I/O, explicit ``now``."""

from __future__ import annotations

import itertools

import pytest

from sipx._core.ids import IdSource, counter_token
from sipx._core.message import Request, Response
from sipx._core.parser import parse_message
from sipx._core.sdp import SDPBody
from sipx._core.timers import TimerConfig
from sipx._serve.common import Outgoing, ServerIdentity
from sipx._serve.echo import MEDIA_PORT, EchoUA

SERVER = "127.0.0.1:5070"
SOURCE = ("127.0.0.1", 5091)
TIMERS = TimerConfig(t1=0.5, t2=4.0)
OFFER = (
    "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 6000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
)


def make(answer_delay: float = 0.0, early_media: bool = False) -> EchoUA:
    return EchoUA(
        ServerIdentity("127.0.0.1", 5070),
        ids=IdSource(counter_token()),
        timers=TIMERS,
        answer_delay=answer_delay,
        early_media=early_media,
    )


def build(
    method: str,
    *,
    branch: str = "z9hG4bKinv1",
    cseq: int = 1,
    to_tag: str | None = None,
    body: str = "",
    call_id: str = "echo-call",
) -> Request:
    to = f"<sip:100@{SERVER}>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} sip:100@{SERVER} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:5091;branch={branch};rport=5091",
        "Max-Forwards: 70",
        f"From: <sip:1111@{SERVER}>;tag=alice",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        "Contact: <sip:1111@127.0.0.1:5091>",
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    text = "\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


def responses(out: list[Outgoing]) -> list[Response]:
    found = [o.message for o in out if isinstance(o.message, Response)]
    assert len(found) == len(out)
    return found


def codes(out: list[Outgoing]) -> list[int]:
    return [r.status_code for r in responses(out)]


def call(echo: EchoUA, transport: str = "UDP", **kw: object) -> Response:
    """Send an INVITE with an offer; return the 200."""
    out = echo.handle(build("INVITE", body=OFFER, **kw), 0.0, transport=transport, source=SOURCE)  # type: ignore[arg-type]
    assert codes(out) == [100, 180, 200]
    return responses(out)[-1]


def test_invite_is_answered_with_100_180_200_and_an_sdp_answer() -> None:
    echo = make()
    out = echo.handle(build("INVITE", body=OFFER), 0.0, transport="UDP", source=SOURCE)
    assert codes(out) == [100, 180, 200]
    assert all((o.transport, o.address) == ("UDP", SOURCE) for o in out)
    ringing, ok = responses(out)[1:]
    assert ringing.to.tag is not None and ringing.to.tag == ok.to.tag
    assert ok.headers["Contact"] == f"<sip:100@{SERVER}>"
    assert ok.headers["Content-Type"] == "application/sdp"
    answer = SDPBody.parse(ok.content)
    assert answer.media[0].port == MEDIA_PORT
    assert answer.get_codecs_summary()[:2] == ["PCMU/8000", "PCMA/8000"]
    assert len(echo.calls) == 1


def test_contact_says_tcp_for_calls_over_tcp() -> None:
    ok = call(make(), transport="TCP")
    assert ok.headers["Contact"] == f"<sip:100@{SERVER};transport=tcp>"


def test_2xx_is_retransmitted_until_the_ack() -> None:
    echo = make()
    ok = call(echo)
    sent_at = []
    now = 0.0
    while (deadline := echo.next_deadline()) is not None and deadline < 3.0:
        now = deadline
        for out in echo.handle_timers(now):
            assert out.message is ok
            sent_at.append(now)
    # T1, then doubling: 0.5, 1.5 (1.0 later), 3.5 (2.0 later) ...
    assert sent_at == [0.5, 1.5]
    ack = build("ACK", branch="z9hG4bKack1", to_tag=ok.to.tag)
    assert echo.handle(ack, now, transport="UDP", source=SOURCE) == []
    assert echo.handle_timers(10.0) == []
    (state,) = echo.calls
    assert state.confirmed


def test_2xx_retransmission_interval_is_capped_at_t2_and_gives_up_after_64_t1() -> None:
    echo = make()
    call(echo)
    times = []
    while (deadline := echo.next_deadline()) is not None:
        if any(isinstance(o.message, Response) for o in echo.handle_timers(deadline)):
            times.append(deadline)
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(times)]
    assert gaps[:3] == [1.0, 2.0, 4.0]
    assert max(gaps) == 4.0
    assert times[-1] < 64 * TIMERS.t1
    assert echo.calls == []  # no ACK: the call is dropped


def test_2xx_over_tcp_is_resent_too_and_the_call_dropped_without_ack() -> None:
    """RFC 3261 13.3.1.4: the 2xx is the UA's to resend whatever the transport (the ACK is
    end to end); a call never ACKed is dropped after 64*T1 (it used to stay for ever)."""
    echo = make()
    call(echo, transport="TCP")
    resent: list[int] = []
    while (deadline := echo.next_deadline()) is not None:
        resent += codes(echo.handle_timers(deadline))
    assert resent and set(resent) == {200}
    assert echo.calls == []


def test_bye_ends_the_call_and_an_unknown_bye_is_481() -> None:
    echo = make()
    ok = call(echo)
    bye = build("BYE", branch="z9hG4bKbye1", cseq=2, to_tag=ok.to.tag)
    assert codes(echo.handle(bye, 1.0, transport="UDP", source=SOURCE)) == [200]
    assert echo.calls == []
    again = build("BYE", branch="z9hG4bKbye2", cseq=3, to_tag=ok.to.tag)
    assert codes(echo.handle(again, 1.0, transport="UDP", source=SOURCE)) == [481]


def test_reinvite_gets_a_new_answer_with_the_version_bumped() -> None:
    echo = make()
    ok = call(echo)
    first = SDPBody.parse(ok.content)
    echo.handle(
        build("ACK", branch="z9hG4bKa1", to_tag=ok.to.tag), 0.1, transport="UDP", source=SOURCE
    )
    reinvite = build("INVITE", branch="z9hG4bKre1", cseq=2, to_tag=ok.to.tag, body=OFFER)
    out = echo.handle(reinvite, 1.0, transport="UDP", source=SOURCE)
    assert codes(out) == [100, 200]
    second = SDPBody.parse(responses(out)[-1].content)
    assert second.origin.sess_id == first.origin.sess_id
    assert int(second.origin.sess_version) == int(first.origin.sess_version) + 1


def test_reinvite_outside_a_dialog_is_481() -> None:
    echo = make()
    out = echo.handle(
        build("INVITE", to_tag="nope", body=OFFER), 0.0, transport="UDP", source=SOURCE
    )
    assert codes(out) == [100, 481]


def test_late_offer_gets_an_offer_and_the_answer_comes_in_the_ack() -> None:
    echo = make()
    out = echo.handle(build("INVITE"), 0.0, transport="UDP", source=SOURCE)
    ok = responses(out)[-1]
    assert ok.status_code == 200
    offer = SDPBody.parse(ok.content)
    assert offer.get_codecs_summary()[:2] == ["PCMU/8000", "PCMA/8000"]
    answer = SDPBody.create_answer(offer, "alice", "127.0.0.1", "127.0.0.1")
    ack = build("ACK", branch="z9hG4bKack", to_tag=ok.to.tag, body=answer.to_string())
    echo.handle(ack, 0.1, transport="UDP", source=SOURCE)
    (state,) = echo.calls
    assert state.confirmed and not state.awaiting_answer
    assert state.remote_sdp is not None and state.remote_sdp.origin.username == "alice"


def test_offer_without_a_common_codec_is_488() -> None:
    echo = make()
    offer = OFFER.replace("RTP/AVP 0 8", "RTP/AVP 98").replace(
        "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000", "a=rtpmap:98 opus/48000/2"
    )
    out = echo.handle(build("INVITE", body=offer), 0.0, transport="UDP", source=SOURCE)
    assert codes(out) == [100, 180, 488]
    assert echo.calls == []


def test_cancel_while_ringing_gives_487_and_200() -> None:
    echo = make(answer_delay=5.0)
    out = echo.handle(build("INVITE", body=OFFER), 0.0, transport="UDP", source=SOURCE)
    assert codes(out) == [100, 180]
    assert echo.next_deadline() is not None
    cancel = build("CANCEL")
    out = echo.handle(cancel, 1.0, transport="UDP", source=SOURCE)
    assert sorted(codes(out)) == [200, 487]
    terminated = next(r for r in responses(out) if r.status_code == 487)
    assert terminated.cseq.method == "INVITE"
    assert echo.calls == []
    # the delayed answer never goes out; the ACK for the 487 is absorbed
    ack = build("ACK", to_tag=terminated.to.tag)
    assert echo.handle(ack, 1.1, transport="UDP", source=SOURCE) == []
    assert not any(r.status_code == 200 for r in responses(echo.handle_timers(6.0)))


def test_delayed_answer_is_sent_when_due() -> None:
    echo = make(answer_delay=2.0)
    echo.handle(build("INVITE", body=OFFER), 0.0, transport="UDP", source=SOURCE)
    assert echo.handle_timers(1.0) == []
    assert 200 in codes(echo.handle_timers(2.0))


def test_early_media_sends_183_with_the_answer_and_the_200_repeats_it() -> None:
    echo = make(answer_delay=2.0, early_media=True)
    out = echo.handle(build("INVITE", body=OFFER), 0.0, transport="UDP", source=SOURCE)
    assert codes(out) == [100, 183]
    progress = responses(out)[1]
    assert progress.to.tag is not None and progress.headers["Content-Type"] == "application/sdp"
    early = SDPBody.parse(progress.content)
    assert early.get_codecs_summary()[:2] == ["PCMU/8000", "PCMA/8000"]
    [ok] = [r for r in responses(echo.handle_timers(2.0)) if r.status_code == 200]
    assert ok.to.tag == progress.to.tag
    assert ok.content == progress.content  # the same answer, version not bumped (RFC 3264)
    # without a delay there is nothing to ring with: 180 and 200 as before
    assert codes(
        make(early_media=True).handle(
            build("INVITE", body=OFFER), 0.0, transport="UDP", source=SOURCE
        )
    ) == [100, 180, 200]


def test_early_media_with_no_common_codec_is_488_without_a_183() -> None:
    echo = make(answer_delay=2.0, early_media=True)
    offer = OFFER.replace("RTP/AVP 0 8", "RTP/AVP 98").replace(
        "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000", "a=rtpmap:98 opus/48000/2"
    )
    out = echo.handle(build("INVITE", body=offer), 0.0, transport="UDP", source=SOURCE)
    assert codes(out) == [100, 488]
    assert echo.calls == []
    assert 200 not in codes(echo.handle_timers(3.0))  # no delayed answer (488 resent: Timer G)


def test_cancel_after_the_answer_only_gets_200_and_unknown_cancel_481() -> None:
    echo = make()
    call(echo)
    assert codes(echo.handle(build("CANCEL"), 0.2, transport="UDP", source=SOURCE)) == [200]
    assert len(echo.calls) == 1
    stray = build("CANCEL", branch="z9hG4bKunknown")
    assert codes(echo.handle(stray, 0.2, transport="UDP", source=SOURCE)) == [481]


@pytest.mark.parametrize(
    ("method", "code"), [("OPTIONS", 200), ("MESSAGE", 200), ("SUBSCRIBE", 405)]
)
def test_other_methods(method: str, code: int) -> None:
    echo = make()
    out = echo.handle(build(method, branch=f"z9hG4bK{method}"), 0.0, transport="UDP", source=SOURCE)
    (response,) = responses(out)
    assert response.status_code == code
    assert response.to.tag is not None
    if code != 200 or method == "OPTIONS":
        assert "INVITE" in response.headers["Allow"]


def test_calls_never_hung_up_are_bounded() -> None:
    echo = EchoUA(ServerIdentity("127.0.0.1", 5070), ids=IdSource(counter_token()), max_calls=3)
    for number in range(5):
        request = build("INVITE", branch=f"z9hG4bKn{number}", call_id=f"c{number}", body=OFFER)
        echo.handle(request, 0.0, transport="TCP", source=SOURCE)
    assert [c.call_id for c in echo.calls] == ["c2", "c3", "c4"]
