"""Tests for sipx._core.message: typed views, validation, serialisation, round trips."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipx._core.headers import Headers
from sipx._core.message import Request, Response
from sipx._core.parser import parse_message
from sipx._core.sdp import SDPBody
from sipx._core.uri import URI
from sipx._errors import ParseError

SDP = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 atlanta.example.com\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.101\r\n"
    b"t=0 0\r\n"
    b"m=audio 49172 RTP/AVP 0\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
)


def invite() -> Request:
    return Request(
        "INVITE",
        "sip:bob@biloxi.example.com",
        [
            ("Content-Type", "application/sdp"),
            ("X-Custom", "1"),
            ("Contact", "<sip:alice@client.atlanta.example.com;transport=tcp>"),
            ("CSeq", "314159 INVITE"),
            ("Call-ID", "3848276298220188511@atlanta.example.com"),
            ("To", "Bob <sip:bob@biloxi.example.com>"),
            ("From", "Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl"),
            ("Route", "<sip:p1.example.com;lr>"),
            ("Max-Forwards", "70"),
            ("Via", "SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9"),
            ("Content-Length", "9999"),  # wrong on purpose: to_bytes writes the right one
            ("Subject", "lunch"),
            ("Via", "SIP/2.0/UDP second.example.com;branch=z9hG4bK2"),
        ],
        SDP,
    )


# -- serialisation -------------------------------------------------------------------------------


def test_to_bytes_uses_the_conventional_order_and_a_correct_content_length() -> None:
    data = invite().to_bytes()
    head, _, body = data.partition(b"\r\n\r\n")
    assert body == SDP
    assert head.decode().split("\r\n") == [
        "INVITE sip:bob@biloxi.example.com SIP/2.0",
        "Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9",
        "Via: SIP/2.0/UDP second.example.com;branch=z9hG4bK2",
        "Max-Forwards: 70",
        "Route: <sip:p1.example.com;lr>",
        "From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl",
        "To: Bob <sip:bob@biloxi.example.com>",
        "Call-ID: 3848276298220188511@atlanta.example.com",
        "CSeq: 314159 INVITE",
        "Contact: <sip:alice@client.atlanta.example.com;transport=tcp>",
        "X-Custom: 1",
        "Subject: lunch",
        "Content-Type: application/sdp",
        f"Content-Length: {len(SDP)}",
    ]
    assert bytes(invite()) == data


def test_content_length_is_written_even_without_a_body() -> None:
    request = Request("OPTIONS", URI.parse("sip:a@b"), {"Call-ID": "x"})
    assert (
        request.to_bytes() == b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n"
    )


def test_content_length_counts_bytes_not_characters() -> None:
    request = Request("MESSAGE", "sip:a@b", {"Content-Type": "text/plain"}, "héllo ☃")
    assert request.content == "héllo ☃".encode()
    assert b"Content-Length: 10\r\n" in request.to_bytes()
    assert request.text == "héllo ☃"


def test_compact_names_are_written_long() -> None:
    message = parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h\r\ni: x\r\nl: 0\r\n\r\n")
    assert message.to_bytes() == (
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n"
    )


def test_response_start_line_and_reason_phrases() -> None:
    assert Response(180).to_bytes().startswith(b"SIP/2.0 180 Ringing\r\n")
    assert Response(299).reason_phrase == ""
    assert Response(200, "Fine").to_bytes().startswith(b"SIP/2.0 200 Fine\r\n")
    ok = Response(200)
    assert ok.is_success and not ok.is_provisional
    assert Response(100).is_provisional
    assert repr(ok) == "<Response 200 OK>"


def test_str_decodes_the_bytes() -> None:
    assert str(Request("OPTIONS", "sip:a@b")).startswith("OPTIONS sip:a@b SIP/2.0\r\n")


def test_request_uri_is_parsed_lazily_and_can_be_replaced() -> None:
    request = Request("INVITE", "sip:bob@biloxi.com;transport=tcp")
    assert request.uri.params == {"transport": "tcp"}
    request.uri = URI.parse("sip:carol@chicago.com")
    assert request.to_bytes().startswith(b"INVITE sip:carol@chicago.com SIP/2.0")
    request.uri = "sip:dave@example.org"
    assert request.uri.user == "dave"
    assert repr(request) == "<Request INVITE sip:dave@example.org>"


# -- typed views ---------------------------------------------------------------------------------


def test_typed_views_of_a_built_request() -> None:
    request = invite()
    assert [v.host for v in request.via] == ["client.atlanta.example.com", "second.example.com"]
    assert request.top_via.branch == "z9hG4bK74bf9"
    assert request.top_via.port == 5060
    assert request.from_.display_name == "Alice"
    assert request.from_.tag == "9fxced76sl"
    assert request.to.tag is None
    assert request.call_id == "3848276298220188511@atlanta.example.com"
    assert (request.cseq.seq, request.cseq.method) == (314159, "INVITE")
    assert [str(c.uri) for c in request.contact] == [
        "sip:alice@client.atlanta.example.com;transport=tcp"
    ]
    assert [str(r.uri) for r in request.route] == ["sip:p1.example.com;lr"]
    assert request.record_route == []
    assert request.max_forwards == 70
    assert request.expires is None
    assert request.content_type is not None and request.content_type.mime_type == "application/sdp"
    body = request.body
    assert isinstance(body, SDPBody)
    assert body is request.body  # cached
    assert body.origin.username == "alice"


def test_top_via_parses_only_the_first_of_a_comma_joined_list() -> None:
    message = Response(200, headers=[("Via", "SIP/2.0/UDP a;branch=z9hG4bK1, this is not a via")])
    assert message.top_via.host == "a"
    with pytest.raises(ParseError):
        message.via  # noqa: B018


def test_missing_and_bad_headers_raise_parse_error() -> None:
    empty = Request("OPTIONS", "sip:a@b")
    for name in ("top_via", "from_", "to", "call_id", "cseq"):
        with pytest.raises(ParseError, match="no "):
            getattr(empty, name)
    assert empty.via == []
    assert empty.contact == []
    assert empty.max_forwards is None
    assert empty.content_type is None
    assert empty.body is None
    bad = Request(
        "OPTIONS",
        "sip:a@b",
        {"Call-ID": "has space", "Max-Forwards": "256", "Expires": "soon", "CSeq": "x OPTIONS"},
    )
    for name, match in [
        ("call_id", "Call-ID"),
        ("max_forwards", "Max-Forwards"),
        ("expires", "Expires"),
        ("cseq", "CSeq"),
    ]:
        with pytest.raises(ParseError, match=match):
            getattr(bad, name)


def test_body_is_text_unless_sdp() -> None:
    text = Request("MESSAGE", "sip:a@b", {"Content-Type": "text/plain"}, b"hi \xff")
    assert text.body == "hi \ufffd"
    sdp_with_params = Request("INVITE", "sip:a@b", {"c": "Application/SDP; charset=utf-8"}, SDP)
    assert isinstance(sdp_with_params.body, SDPBody)
    not_sdp = Request("INVITE", "sip:a@b", {"Content-Type": "application/sdpx"}, SDP)
    assert isinstance(not_sdp.body, str)
    bad_sdp = Request("INVITE", "sip:a@b", {"Content-Type": "application/sdp"}, b"nonsense")
    with pytest.raises(ParseError):
        bad_sdp.body  # noqa: B018


def test_body_cache_follows_the_content() -> None:
    message = Request("MESSAGE", "sip:a@b", {"Content-Type": "text/plain"}, b"one")
    assert message.body == "one"
    message.content = b"two"
    assert message.body == "two"


# -- validation ----------------------------------------------------------------------------------


def test_validate_accepts_a_good_request_and_is_idempotent() -> None:
    request = invite()
    del request.headers["Content-Length"]
    request.validate()
    request.validate()
    assert request.defects == []


def test_validate_records_a_missing_max_forwards_once() -> None:
    request = invite()
    del request.headers["Max-Forwards"]
    request.validate()
    request.validate()
    assert request.defects == ["request has no Max-Forwards header"]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda h: h.__delitem__("Via"), "no Via"),
        (lambda h: h.__delitem__("From"), "no From"),
        (lambda h: h.add("To", "<sip:x@y>"), "To appears 2 times"),
        (lambda h: h.__setitem__("CSeq", "1 BYE"), "CSeq method BYE does not match INVITE"),
        (lambda h: h.__setitem__("Contact", "<sip:a@b>;expires=4294967296"), "expires"),
        (lambda h: h.__setitem__("Contact", "<sip:a b@c>"), "URI"),
        (lambda h: h.__setitem__("Route", "<sip:a@b>, <sip:c@d;x=%>"), "escape"),
        (lambda h: h.__setitem__("Date", "Sat, 13 Nov 2010 23:29:00 PST"), "Date"),
        (lambda h: h.__setitem__("Content-Type", "sdp"), "media type"),
        (lambda h: h.__setitem__("Warning", '1812 overture "In Progress"'), "Warning"),
        (lambda h: h.__setitem__("Max-Forwards", "300"), "Max-Forwards"),
    ],
)
def test_validate_rejects(change: Callable[[Headers], object], match: str) -> None:
    request = invite()
    del request.headers["Content-Length"]
    change(request.headers)
    with pytest.raises(ParseError, match=match):
        request.validate()


def test_validate_rejects_headers_in_the_request_uri_and_other_versions() -> None:
    request = invite()
    request.uri = "sip:bob@biloxi.com?Route=%3Csip:x%3E"
    with pytest.raises(ParseError, match="must not carry headers"):
        request.validate()
    old = Request("OPTIONS", "sip:a@b", version="SIP/1.0")
    with pytest.raises(ParseError, match=r"SIP/1\.0"):
        old.validate()


def test_wildcard_contact_validates() -> None:
    request = invite()
    request.headers["Contact"] = "*"
    request.validate()
    assert request.contact[0].is_wildcard


# -- equality and round trips --------------------------------------------------------------------


def test_equality_ignores_content_length_and_header_order_between_names() -> None:
    a = invite()
    b = parse_message(a.to_bytes())
    assert b == a
    assert a == b
    assert b.headers["Content-Length"] == str(len(SDP))
    c = invite()
    c.headers["Subject"] = "dinner"
    assert c != a
    d = invite()
    d.content = b"other"
    assert d != a
    assert a != Response(200)
    assert Response(200) != a
    assert Response(200, "OK") == Response(200)
    assert Response(200, "Fine") != Response(200)


_token = st.from_regex(r"[A-Za-z0-9\-.!%*_+`'~]{1,10}", fullmatch=True)
# Extension headers only: a random value under a name sipx parses (Via, v, Contact...) would
# be invalid on both sides of the round trip.
_header_name = _token.map(lambda n: f"X-{n}")
# Header values: any text without CR/LF, including quotes, commas, non-ASCII; trimmed.
_header_value = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="\r\n"),
    max_size=30,
).map(lambda v: v.strip(" \t"))
_host = st.from_regex(r"[a-z]{1,8}(\.[a-z]{1,8}){0,2}", fullmatch=True)
_user = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=10)
_display = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="\r\n"), max_size=12
)


@st.composite
def uris(draw: st.DrawFn) -> URI:
    return URI(
        draw(st.sampled_from(["sip", "sips"])),
        user=draw(st.none() | _user),
        host=draw(_host | st.just("[2001:db8::7]")),
        port=draw(st.none() | st.integers(1, 65535)),
        params=draw(st.dictionaries(_token.map(str.lower), st.none() | _token, max_size=2)),
    )


@st.composite
def name_addr_values(draw: st.DrawFn) -> str:
    uri = draw(uris())
    display = draw(st.none() | _display)
    tag = draw(st.none() | _token)
    name = ""
    if display is not None:
        name = '"' + display.replace("\\", "\\\\").replace('"', '\\"') + '" '
    return f"{name}<{uri}>" + (f";tag={tag}" if tag else "")


@st.composite
def via_values(draw: st.DrawFn) -> str:
    transport = draw(st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS"]))
    port = draw(st.none() | st.integers(1, 65535))
    host = draw(_host)
    branch = "z9hG4bK" + draw(_token)
    rport = draw(st.sampled_from(["", ";rport", ";rport=5060"]))
    return f"SIP/2.0/{transport} {host}{'' if port is None else f':{port}'};branch={branch}{rport}"


@st.composite
def header_lists(draw: st.DrawFn) -> list[tuple[str, str]]:
    fields = [("Via", v) for v in draw(st.lists(via_values(), min_size=1, max_size=4))]
    fields.append(("From", draw(name_addr_values())))
    fields.append(("To", draw(name_addr_values())))
    fields.append(("Call-ID", draw(_token)))
    fields.extend(("Contact", v) for v in draw(st.lists(name_addr_values(), max_size=2)))
    fields.extend(draw(st.lists(st.tuples(_header_name, _header_value), max_size=6)))
    return draw(st.permutations(fields))


_methods = st.sampled_from(["INVITE", "ACK", "BYE", "OPTIONS", "REGISTER", "MESSAGE"]) | _token


@st.composite
def requests(draw: st.DrawFn) -> Request:
    method = draw(_methods)
    fields = draw(header_lists())
    fields.append(("CSeq", f"{draw(st.integers(0, 2**32 - 1))} {method}"))
    return Request(method, draw(uris()), fields, draw(st.binary(max_size=80)))


@st.composite
def responses(draw: st.DrawFn) -> Response:
    reason = draw(
        st.text(
            st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="\r\n"),
            max_size=20,
        )
    )
    fields = draw(header_lists())
    fields.append(("CSeq", f"{draw(st.integers(0, 2**32 - 1))} {draw(_methods)}"))
    return Response(draw(st.integers(100, 699)), reason, fields, draw(st.binary(max_size=80)))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(requests() | responses())
def test_round_trip(message: Request | Response) -> None:
    data = message.to_bytes()
    parsed = parse_message(data)
    assert parsed == message
    assert parsed.to_bytes() == data
    # The typed views agree too.
    assert parsed.via == message.via
    assert parsed.from_ == message.from_
    assert parsed.to == message.to
    assert parsed.contact == message.contact
    assert parsed.cseq == message.cseq
    assert parsed.call_id == message.call_id
    assert parsed.content == message.content


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_generated_requests_pass_strict_parsing(message: Request) -> None:
    message.headers["Max-Forwards"] = "70"
    parsed = parse_message(message.to_bytes(), strict=True)
    assert parsed == message
    assert parsed.defects == []
