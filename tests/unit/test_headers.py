"""Tests for sipx._core.headers and the typed header views of sipx._core.header_types."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipx._core.header_types import (
    CSeq,
    MediaType,
    NameAddr,
    Via,
    parse_int,
    parse_params,
    quote_string,
    unquote_string,
)
from sipx._core.headers import Headers, canonical_name, header_key, split_list
from sipx._core.message import Message
from sipx._core.parser import parse_message
from sipx._core.uri import URI
from sipx._errors import ParseError

# -- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("compact", "long"),
    [
        ("v", "Via"),
        ("f", "From"),
        ("t", "To"),
        ("i", "Call-ID"),
        ("m", "Contact"),
        ("l", "Content-Length"),
        ("c", "Content-Type"),
        ("k", "Supported"),
        ("e", "Content-Encoding"),
        ("s", "Subject"),
        ("o", "Event"),
        ("r", "Refer-To"),
        ("b", "Referred-By"),
        ("u", "Allow-Events"),
        ("x", "Session-Expires"),
    ],
)
def test_compact_forms(compact: str, long: str) -> None:
    headers = Headers([(compact, "value")])
    assert headers[long] == "value"
    assert headers[long.upper()] == "value"
    assert headers[compact.upper()] == "value"
    assert long in headers
    assert compact in headers
    assert list(headers) == [long]  # stored under the long name
    assert header_key(compact) == long.lower()
    assert canonical_name(compact) == long


def test_names_are_case_insensitive_and_keep_a_conventional_spelling() -> None:
    headers = Headers()
    headers.add("call-id", "a@b")
    headers.add("CSEQ", "1 INVITE")
    headers.add("X-Custom-Thing", "1")
    assert headers["CALL-ID"] == "a@b"
    assert headers["Call-Id"] == "a@b"
    assert headers["cseq"] == "1 INVITE"
    assert headers["x-custom-thing"] == "1"
    assert list(headers) == ["Call-ID", "CSeq", "X-Custom-Thing"]
    assert canonical_name("www-authenticate") == "WWW-Authenticate"
    assert canonical_name("X-Odd") == "X-Odd"


def test_mapping_protocol() -> None:
    headers = Headers({"Via": "SIP/2.0/UDP a", "To": "<sip:b@c>"})
    assert "via" in headers
    assert "Route" not in headers
    assert 42 not in headers  # type: ignore[comparison-overlap]
    assert headers.get("Route") is None
    assert headers.get("Route", "none") == "none"
    assert headers.get("to") == "<sip:b@c>"
    assert len(headers) == 2
    assert dict(headers.items()) == {"Via": "SIP/2.0/UDP a", "To": "<sip:b@c>"}
    with pytest.raises(KeyError):
        headers["Route"]


def test_repeated_fields_join_with_comma_and_list_one_by_one() -> None:
    headers = Headers([("Via", "SIP/2.0/UDP a"), ("To", "<sip:b@c>"), ("Via", "SIP/2.0/TCP b")])
    assert headers["Via"] == "SIP/2.0/UDP a, SIP/2.0/TCP b"
    assert headers.get_list("Via") == ["SIP/2.0/UDP a", "SIP/2.0/TCP b"]
    assert headers.get_first("Via") == "SIP/2.0/UDP a"
    assert headers.get_all("via") == headers.get_list("Via")
    assert headers.multi_items() == [
        ("Via", "SIP/2.0/UDP a"),
        ("To", "<sip:b@c>"),
        ("Via", "SIP/2.0/TCP b"),
    ]
    assert len(headers) == 2


def test_get_list_splits_comma_joined_list_headers() -> None:
    headers = Headers(
        [
            ("Via", "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/TCP b;branch=z9hG4bK2"),
            ("Via", "SIP/2.0/UDP c"),
            ("Contact", '"Doe, John" <sip:j@a.com;x=1,2>;q=0.5, <sip:k@b.com>'),
            ("Allow", "INVITE,ACK , BYE"),
        ]
    )
    assert headers.get_list("Via") == [
        "SIP/2.0/UDP a;branch=z9hG4bK1",
        "SIP/2.0/TCP b;branch=z9hG4bK2",
        "SIP/2.0/UDP c",
    ]
    assert headers.get_list("m") == ['"Doe, John" <sip:j@a.com;x=1,2>;q=0.5', "<sip:k@b.com>"]
    assert headers.get_list("Allow") == ["INVITE", "ACK", "BYE"]


def test_get_list_does_not_split_headers_whose_commas_are_not_separators() -> None:
    challenge = 'Digest realm="atlanta.com", nonce="84a4cc6f", qop="auth,auth-int", algorithm=MD5'
    headers = Headers(
        [
            ("WWW-Authenticate", challenge),
            ("Date", "Sat, 13 Nov 2010 23:29:00 GMT"),
            ("Authorization", 'Digest username="bob", realm="b"'),
            ("Subject", "one, two"),
        ]
    )
    assert headers.get_list("WWW-Authenticate") == [challenge]
    assert headers.get_list("Date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]
    assert headers.get_list("Authorization") == ['Digest username="bob", realm="b"']
    assert headers.get_list("Subject") == ["one, two"]
    assert headers.get_list("Nothing") == []


@pytest.mark.parametrize(
    ("value", "items"),
    [
        ("a", ["a"]),
        ("a, b ,c", ["a", "b", "c"]),
        ("a,,b,", ["a", "b"]),
        (",", []),
        ('"x,y" <sip:a>, <sip:b;p=1,2>', ['"x,y" <sip:a>', "<sip:b;p=1,2>"]),
        ('"a \\" , b" <sip:a>, c', ['"a \\" , b" <sip:a>', "c"]),
        ('"unterminated, still one', ['"unterminated, still one']),
        ("<sip:a, b", ["<sip:a, b"]),
        ('a, "b\\', ["a", '"b\\']),
        ('"<", b', ['"<"', "b"]),
    ],
)
def test_split_list(value: str, items: list[str]) -> None:
    assert split_list(value) == items


def test_parsed_folded_lines_and_whitespace_around_the_colon() -> None:
    message = parse_message(
        b"OPTIONS sip:a@b SIP/2.0\r\n"
        b"Via  :  SIP/2.0/UDP a;branch=z9hG4bK1\r\n"
        b"Subject\t:\tlong\r\n"
        b"  folded\r\n"
        b"\tsubject\r\n"
        b"X-Empty:\r\n"
        b"x-odd-case :v \r\n"
        b"l: 0\r\n"
        b"\r\n"
    )
    assert message.headers["Via"] == "SIP/2.0/UDP a;branch=z9hG4bK1"
    assert message.headers["Subject"] == "long folded subject"
    assert message.headers["X-Empty"] == ""
    assert message.headers["X-ODD-CASE"] == "v"
    assert [name for name, _ in message.headers.multi_items()] == [
        "Via",
        "Subject",
        "X-Empty",
        "x-odd-case",
        "Content-Length",
    ]


# -- mutation ----------------------------------------------------------------------------------


def test_setitem_replaces_every_field_of_that_name_in_place() -> None:
    headers = Headers([("Via", "a"), ("To", "t"), ("v", "b")])
    headers["VIA"] = "c"
    assert headers.multi_items() == [("Via", "c"), ("To", "t")]
    headers["Route"] = "<sip:r>"
    assert headers.multi_items()[-1] == ("Route", "<sip:r>")


def test_delitem_add_prepend_remove_first() -> None:
    headers = Headers([("Via", "a, b"), ("Via", "c"), ("To", "t")])
    headers.prepend("Via", "z")
    assert headers.get_list("Via") == ["z", "a", "b", "c"]
    assert headers.remove_first("Via") == "z"
    assert headers.remove_first("Via") == "a"  # a comma-joined field loses its first item
    assert headers.multi_items() == [("Via", "b"), ("Via", "c"), ("To", "t")]
    assert headers.remove_first("Route") is None
    headers.add("Route", "<sip:r>")
    del headers["via"]
    assert "Via" not in headers
    assert headers.multi_items() == [("To", "t"), ("Route", "<sip:r>")]
    with pytest.raises(KeyError):
        del headers["Via"]


def test_values_are_stripped_and_may_not_hold_line_breaks() -> None:
    headers = Headers()
    headers.add("Subject", "  hi \t")
    assert headers["Subject"] == "hi"
    for bad in ("a\r\nInjected: 1", "a\nb", "a\rb"):
        with pytest.raises(ValueError, match="CR or LF"):
            headers.add("Subject", bad)
        with pytest.raises(ValueError):
            headers["Subject"] = bad


@pytest.mark.parametrize("name", ["", "Bad Name", "Via:", "X\r\nY", "Ä"])
def test_header_names_must_be_tokens(name: str) -> None:
    headers = Headers()
    with pytest.raises(ValueError, match="token"):
        headers.add(name, "v")
    with pytest.raises(ValueError):
        headers[name] = "v"
    with pytest.raises(ValueError):
        headers.prepend(name, "v")


def test_copy_is_independent() -> None:
    headers = Headers([("Via", "a")])
    copy = headers.copy()
    copy.add("Via", "b")
    assert headers.get_list("Via") == ["a"]
    assert copy.get_list("Via") == ["a", "b"]


def test_equality_ignores_order_between_names_but_not_within_one() -> None:
    a = Headers([("Via", "1"), ("To", "t"), ("Via", "2")])
    assert a == Headers([("To", "t"), ("v", "1, 2")])
    assert a != Headers([("Via", "2"), ("Via", "1"), ("To", "t")])
    assert a != Headers([("Via", "1"), ("Via", "2")])
    assert Headers({"To": "t"}) == {"to": "t"}
    assert a != 42


def _typed_message() -> Message:
    return parse_message(
        b"INVITE sip:bob@biloxi.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\n"
        b"From: <sip:alice@atlanta.com>;tag=1\r\n"
        b"To: <sip:bob@biloxi.com>\r\n"
        b"Call-ID: c\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"Contact: <sip:alice@a.example.com>\r\n"
        b"Content-Length: 0\r\n\r\n"
    )


@pytest.mark.parametrize(
    "mutate",
    [
        lambda h: h.__setitem__("Via", "SIP/2.0/TCP b.example.com;branch=z9hG4bK2"),
        lambda h: h.prepend("Via", "SIP/2.0/TCP b.example.com;branch=z9hG4bK2"),
        lambda h: (h.__delitem__("Via"), h.add("Via", "SIP/2.0/TCP b.example.com;branch=z9hG4bK2")),
        lambda h: (h.remove_first("Via"), h.add("v", "SIP/2.0/TCP b.example.com;branch=z9hG4bK2")),
    ],
    ids=["set", "prepend", "del+add", "remove_first+add"],
)
def test_mutation_invalidates_the_typed_cache(mutate: Callable[[Headers], object]) -> None:
    message = _typed_message()
    assert message.top_via.branch == "z9hG4bK1"
    assert message.via[0].branch == "z9hG4bK1"
    assert message.from_.tag == "1"
    mutate(message.headers)
    assert message.top_via.branch == "z9hG4bK2"
    assert message.top_via.transport == "TCP"
    assert message.via[0].host == "b.example.com"


def test_each_typed_view_follows_its_header() -> None:
    message = _typed_message()
    assert message.from_.tag == "1"
    assert message.cseq.seq == 1
    assert [str(c.uri) for c in message.contact] == ["sip:alice@a.example.com"]
    assert message.content_type is None
    headers = message.headers
    headers["From"] = "<sip:alice@atlanta.com>;tag=2"
    headers["CSeq"] = "2 INVITE"
    headers.add("Contact", "<sip:alice@b.example.com>")
    headers["Content-Type"] = "text/plain"
    assert message.from_.tag == "2"
    assert message.cseq.seq == 2
    assert len(message.contact) == 2
    content_type = message.content_type
    assert content_type is not None and content_type.mime_type == "text/plain"


def test_cache_slots() -> None:
    headers = Headers()
    assert headers.cached("x") is None
    headers.cache("x", 1)
    assert headers.cached("x") == 1
    headers.add("To", "t")
    assert headers.cached("x") is None


# -- typed views -------------------------------------------------------------------------------


def test_via() -> None:
    via = Via.parse(
        "SIP/2.0/udp 192.0.2.1:5070;branch=z9hG4bKabc;rport=5071;received=198.51.100.7"
        ";maddr=x.example.com"
    )
    assert via.protocol == "SIP/2.0"
    assert via.transport == "UDP"
    assert via.sent_by == ("192.0.2.1", 5070)
    assert via.branch == "z9hG4bKabc"
    assert via.rport == 5071 and via.has_rport
    assert via.received == "198.51.100.7"
    assert via.maddr == "x.example.com"
    assert (
        str(via) == "SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKabc;rport=5071;received=198.51.100.7"
        ";maddr=x.example.com"
    )


def test_via_with_whitespace_everywhere_and_ipv6() -> None:
    via = Via.parse(" SIP / 2.0 / TCP   [2001:db8::9] : 5060 ; Branch = z9hG4bK1 ; rport ")
    assert (via.transport, via.host, via.port) == ("TCP", "[2001:db8::9]", 5060)
    assert via.params == {"branch": "z9hG4bK1", "rport": None}
    assert via.rport is None and via.has_rport
    via = Via.parse("SIP/2.0/UDP [2001:db8::9];received=2001:db8::10")
    assert via.received == "2001:db8::10"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SIP/2.0/UDP",
        "SIP/2.0 host",
        "SIP/2.0/UDPhost",
        "SIP/2.0/UDP host:65536",
        "SIP/2.0/UDP host:²",
        "SIP/2.0/UDP host:99999999999999999999999999999",
        "SIP/2.0/UDP host;;",
        'SIP/2.0/UDP host;branch="quoted"',
        "SIP/2.0/UDP ho st",
        "SIP/2.0/UDP [2001:db8::1",
        'SIP/2.0/UDP host;a="unterminated',
        "SIP/2.0/U<DP host",
    ],
)
def test_bad_vias(text: str) -> None:
    with pytest.raises(ParseError):
        Via.parse(text)


def test_via_rport_ignores_junk() -> None:
    assert Via.parse("SIP/2.0/UDP h;rport=abc").rport is None
    assert Via.parse("SIP/2.0/UDP h;rport=123456789").rport is None


def test_name_addr_forms() -> None:
    quoted = NameAddr.parse(
        '"Alice \\"A\\" Liddell" <sip:alice@atlanta.com;transport=tcp>;tag=88sja8x;x="a;b"'
    )
    assert quoted.display_name == 'Alice "A" Liddell'
    assert quoted.tag == "88sja8x"
    assert quoted.params == {"tag": "88sja8x", "x": '"a;b"'}
    assert quoted.uri.params == {"transport": "tcp"}
    tokens = NameAddr.parse("Bob   Smith <sip:bob@biloxi.com>")
    assert tokens.display_name == "Bob Smith"
    bare = NameAddr.parse("sip:carol@chicago.com;tag=3;expires=60;q=0.7")
    assert bare.display_name is None
    assert bare.params == {"tag": "3", "expires": "60", "q": "0.7"}
    assert bare.uri.params == {}
    assert bare.expires == 60 and bare.q == 0.7
    star = NameAddr.parse("*")
    assert star.is_wildcard
    assert str(star) == "*"


def test_name_addr_uri_is_parsed_lazily() -> None:
    lazy = NameAddr.parse("<sip:alice@bad_host>;tag=1")
    assert lazy.tag == "1"  # the tag does not need the URI
    with pytest.raises(ParseError):
        lazy.uri  # noqa: B018
    assert str(lazy) == "<sip:alice@bad_host>;tag=1"


def test_name_addr_rendering_round_trips() -> None:
    for text in [
        '"Alice \\"A\\"" <sip:alice@atlanta.com>;tag=1',
        "Bob <sip:bob@biloxi.com>",
        "<sip:carol@chicago.com;lr>",
        '"" <sip:x@y>',
        '"tab\there" <sip:x@y>',
    ]:
        parsed = NameAddr.parse(text)
        again = NameAddr.parse(str(parsed))
        assert again == parsed
    built = NameAddr(URI.parse("sip:a@b"), "Doe, John", {"tag": "x"})
    assert str(built) == '"Doe, John" <sip:a@b>;tag=x'
    assert NameAddr("sip:a@b").uri == URI.parse("sip:a@b")
    control = NameAddr("sip:a@b", "BEL\x07 NUL\x00")
    assert NameAddr.parse(str(control)).display_name == "BEL\x07 NUL\x00"
    with pytest.raises(ValueError):
        str(NameAddr("sip:a@b", "line\nbreak"))


def test_name_addr_equality() -> None:
    a = NameAddr.parse("<sip:%61lice@ATLANTA.com>;tag=1")
    assert a == NameAddr.parse("<sip:alice@atlanta.com>;tag=1")
    assert a != NameAddr.parse("<sip:alice@atlanta.com>;tag=2")
    assert a != NameAddr.parse("Alice <sip:alice@atlanta.com>;tag=1")
    assert a != "sip:alice@atlanta.com"


@pytest.mark.parametrize(
    "text",
    [
        '"unterminated <sip:a@b>',
        '"Quoted" sip:a@b',
        "Bell, Alexander <sip:a@b>",
        "<sip:a@b",
        "< sip:a@b>",
        "<sip:a@b> junk",
        "sip:a@b?subject=x",
        "sip:a b@c",
        "<sip:a@b>;;tag=1",
        "<sip:a@b>;tag=",
        "",
    ],
)
def test_bad_name_addrs(text: str) -> None:
    with pytest.raises(ParseError):
        NameAddr.parse(text).uri  # noqa: B018


@pytest.mark.parametrize(
    ("value", "q"),
    [
        ("1", 1.0),
        ("0.5", 0.5),
        ("0.123", 0.123),
        ("1.000", 1.0),
        ("nan", None),
        ("inf", None),
        ("2", None),
        ("0.1234", None),
    ],
)
def test_q_values(value: str, q: float | None) -> None:
    assert NameAddr.parse(f"<sip:a@b>;q={value}").q == q


def test_expires_param_is_capped() -> None:
    assert NameAddr.parse("<sip:a@b>;expires=99999999999999").expires == 2**32 - 1
    assert NameAddr.parse("<sip:a@b>;expires=" + "9" * 5000).expires == 2**32 - 1
    assert NameAddr.parse("<sip:a@b>;expires=soon").expires is None


def test_cseq() -> None:
    assert CSeq.parse("4711 INVITE") == CSeq(4711, "INVITE")
    assert CSeq.parse("  0009 \t INVITE ") == CSeq(9, "INVITE")
    assert str(CSeq(1, "BYE")) == "1 BYE"
    assert CSeq.parse(f"{2**32 - 1} ACK").seq == 2**32 - 1
    for bad in [
        "",
        "1",
        "INVITE 1",
        "1 INVITE x",
        f"{2**32} INVITE",
        "-1 INVITE",
        "² INVITE",
        "9" * 5000 + " INVITE",
    ]:
        with pytest.raises(ParseError):
            CSeq.parse(bad)


def test_media_type() -> None:
    media = MediaType.parse("Application/SDP ; charset=UTF-8")
    assert media.mime_type == "application/sdp"
    assert media.params == {"charset": "UTF-8"}
    assert (
        str(MediaType.parse('multipart/mixed;boundary="a b"')) == 'multipart/mixed;boundary="a b"'
    )
    for bad in ["", "text", "text/", "/plain", "te xt/plain", "text/plain;"]:
        with pytest.raises(ParseError):
            MediaType.parse(bad)


def test_params_and_quoting_helpers() -> None:
    assert parse_params(';a=1;B;c="x;y"', "test") == {"a": "1", "b": None, "c": '"x;y"'}
    assert parse_params(" ; a = 1 ; b ", "test") == {"a": "1", "b": None}
    assert parse_params("", "test") == {}
    assert unquote_string('"a \\"b\\" \\\\"') == 'a "b" \\'
    assert unquote_string("  plain ") == "plain"
    assert quote_string('a "b" \\') == '"a \\"b\\" \\\\"'
    assert parse_int(" 42 ", "X") == 42
    for bad in ["", "-1", "4294967296", "1.5", "²", "9" * 5000]:
        with pytest.raises(ParseError):
            parse_int(bad, "X")


@given(st.text(max_size=50))
def test_typed_views_raise_only_parse_error(text: str) -> None:
    for parse in (Via.parse, CSeq.parse, MediaType.parse):
        try:
            str(parse(text))
        except ParseError:
            pass
    try:
        name_addr = NameAddr.parse(text)
        name_addr.q, name_addr.expires, str(name_addr)
        name_addr.uri  # noqa: B018
    except ParseError:
        pass
    split_list(text)


@given(st.text(alphabet='<>";,\\ \tab=:@', max_size=30))
def test_split_list_loses_no_text(text: str) -> None:
    items = split_list(text)
    # Items come out in order, stripped; only commas between them and whitespace disappear.
    assert all(item and item == item.strip(" \t") for item in items) or items == [text]
    assert "".join(items).replace(",", "").replace(" ", "").replace("\t", "") == (
        text.replace(",", "").replace(" ", "").replace("\t", "")
    ) or items == [text]
