"""The sans-I/O pieces of transfer: message/sipfrag (RFC 3420), Event and Subscription-State
(RFC 6665), Refer-To with an embedded Replaces (RFC 3515, RFC 3891)."""

from __future__ import annotations

import pytest

from sipx import ParseError, SipFrag
from sipx._core.event import EventHeader, SubscriptionState
from sipx._core.refer import Replaces, build_refer_to, parse_refer_to
from sipx._core.sipfrag import build_sipfrag, is_sipfrag, parse_sipfrag
from sipx._core.uri import URI


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"SIP/2.0 100 Trying\r\n", SipFrag(100, "Trying")),
        (b"SIP/2.0 200 OK", SipFrag(200, "OK")),
        ("sip/2.0 486 Busy Here\r\nContent-Length: 0\r\n\r\n", SipFrag(486, "Busy Here")),
        (b"\r\nSIP/2.0 603 Decline\n", SipFrag(603, "Decline")),
        (b"SIP/2.0 180", SipFrag(180, "")),
    ],
)
def test_parse_sipfrag(body: bytes | str, expected: SipFrag) -> None:
    assert parse_sipfrag(body) == expected


@pytest.mark.parametrize(
    "body",
    [b"", b"INVITE sip:a@b SIP/2.0\r\n", b"SIP/2.0 20 OK", b"SIP/2.0 999 No", b"HTTP/1.1 200"],
)
def test_parse_sipfrag_rejects(body: bytes) -> None:
    with pytest.raises(ParseError):
        parse_sipfrag(body)


def test_build_sipfrag() -> None:
    assert build_sipfrag(100) == "SIP/2.0 100 Trying\r\n"
    assert build_sipfrag(486, "Busy") == "SIP/2.0 486 Busy\r\n"
    assert build_sipfrag(469) == "SIP/2.0 469 Bad Info Package\r\n"
    assert parse_sipfrag(build_sipfrag(200)) == SipFrag(200, "OK")
    with pytest.raises(ValueError):
        build_sipfrag(99)
    with pytest.raises(ValueError):
        build_sipfrag(200, "OK\r\nX: injected")


def test_is_sipfrag() -> None:
    assert is_sipfrag("message/sipfrag;version=2.0")
    assert is_sipfrag("Message/SIPfrag")
    assert not is_sipfrag("text/plain")
    assert not is_sipfrag(None)
    assert not is_sipfrag("garbage")


def test_event_header() -> None:
    event = EventHeader.parse("Refer ;id=93809824;x")
    assert (event.package, event.id, event.params) == ("refer", "93809824", {"x": None})
    assert str(EventHeader("refer", "3")) == "refer;id=3"
    assert str(EventHeader("message-summary")) == "message-summary"
    for bad in ("", ";id=1", "a b"):
        with pytest.raises(ParseError):
            EventHeader.parse(bad)


@pytest.mark.parametrize(
    ("text", "state", "expires", "reason", "retry"),
    [
        ("active;expires=60", "active", 60, None, None),
        ("Terminated;reason=NoResource", "terminated", None, "noresource", None),
        ("terminated;reason=probation;retry-after=30", "terminated", None, "probation", 30),
        ("pending", "pending", None, None, None),
    ],
)
def test_subscription_state(
    text: str, state: str, expires: int | None, reason: str | None, retry: int | None
) -> None:
    parsed = SubscriptionState.parse(text)
    assert (parsed.state, parsed.expires, parsed.reason, parsed.retry_after) == (
        state,
        expires,
        reason,
        retry,
    )
    assert parsed.terminated == (state == "terminated")
    assert SubscriptionState.parse(str(parsed)) == parsed


@pytest.mark.parametrize("text", ["", "active;expires=soon", "active;expires=-1", "a b"])
def test_subscription_state_rejects(text: str) -> None:
    with pytest.raises(ParseError):
        SubscriptionState.parse(text)


def test_replaces_header() -> None:
    replaces = Replaces.parse("98732@sip.example.com;from-tag=r33th4x0r;to-tag=ff87ff;early-only")
    assert replaces == Replaces("98732@sip.example.com", "ff87ff", "r33th4x0r", early_only=True)
    assert str(replaces) == "98732@sip.example.com;to-tag=ff87ff;from-tag=r33th4x0r;early-only"
    assert Replaces.parse(str(replaces)) == replaces
    # the peer's view: our remote tag is its local tag (to-tag)
    peer = Replaces.for_peer_of("id", local_tag="mine", remote_tag="theirs")
    assert (peer.to_tag, peer.from_tag) == ("theirs", "mine")
    assert peer.matches("id", local_tag="theirs", remote_tag="mine")
    assert not peer.matches("id", local_tag="mine", remote_tag="theirs")
    for bad in ("", "id", "id;to-tag=a", "id;from-tag=b", ";to-tag=a;from-tag=b"):
        with pytest.raises(ParseError):
            Replaces.parse(bad)


def test_refer_to_with_replaces_is_escaped_and_round_trips() -> None:
    replaces = Replaces("a1@host.example", to_tag="t.1~", from_tag="f+2")
    value = build_refer_to("sip:carol@10.0.0.3:5062;transport=tcp", replaces)
    assert value == (
        "<sip:carol@10.0.0.3:5062;transport=tcp"
        "?Replaces=a1%40host.example%3Bto-tag%3Dt.1~%3Bfrom-tag%3Df+2>"
    )
    target = parse_refer_to(value)
    assert target.uri == URI.parse("sip:carol@10.0.0.3:5062;transport=tcp")
    assert target.uri.headers == {}
    assert target.replaces == replaces
    with pytest.raises(ValueError):
        build_refer_to("tel:+15551234", replaces)


def test_parse_refer_to() -> None:
    blind = parse_refer_to("<sip:bob@example.com>")
    assert (str(blind.uri), blind.replaces, blind.headers) == ("sip:bob@example.com", None, {})
    attended = parse_refer_to(
        '"Bob" <sip:bob@example.com?Replaces=x%40y%3Bto-tag%3D1%3Bfrom-tag%3D2&Subject=hi>'
    )
    assert attended.replaces == Replaces("x@y", "1", "2")
    assert attended.headers == {"Subject": "hi"}
    assert build_refer_to("sip:bob@example.com") == "<sip:bob@example.com>"
    assert build_refer_to("tel:+15551234") == "<tel:+15551234>"
    with pytest.raises(ValueError):
        build_refer_to("mailto:bob@example.com")
    with pytest.raises(ParseError):
        parse_refer_to("<sip:bob@example.com?Replaces=only-an-id>")
