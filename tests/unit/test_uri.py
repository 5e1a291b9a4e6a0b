"""Tests for sipx._core.uri: parsing, rendering and RFC 3261 section 19.1.4 comparison."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipx._core.uri import URI, parse_uri
from sipx._errors import ParseError

# -- parsing -----------------------------------------------------------------------------------


def test_full_sip_uri() -> None:
    uri = URI.parse(
        "sip:alice:secret@atlanta.com:5070;transport=tcp;lr?subject=project&priority=urgent"
    )
    assert uri.scheme == "sip"
    assert uri.user == "alice"
    assert uri.password == "secret"
    assert uri.host == "atlanta.com"
    assert uri.port == 5070
    assert uri.params == {"transport": "tcp", "lr": None}
    assert uri.headers == {"subject": "project", "priority": "urgent"}
    assert uri.transport == "TCP"
    assert not uri.is_secure


def test_minimal_uri_has_no_user_port_or_params() -> None:
    uri = URI.parse("sip:example.com")
    assert (uri.user, uri.password, uri.host, uri.port) == (None, None, "example.com", None)
    assert uri.params == {} and uri.headers == {}
    assert uri.transport is None


def test_sips_and_scheme_case() -> None:
    uri = URI.parse("SIPS:Bob@Biloxi.example.com")
    assert uri.scheme == "sips"
    assert uri.is_secure
    assert uri.user == "Bob"  # userinfo keeps its case
    assert uri.host == "Biloxi.example.com"


@pytest.mark.parametrize(
    ("text", "host", "plain", "port"),
    [
        ("sip:alice@[2001:db8::1]:5060", "[2001:db8::1]", "2001:db8::1", 5060),
        ("sip:[2001:db8::1]", "[2001:db8::1]", "2001:db8::1", None),
        (
            "sip:alice@[::ffff:192.0.2.1];transport=udp",
            "[::ffff:192.0.2.1]",
            "::ffff:192.0.2.1",
            None,
        ),
        ("sip:192.0.2.4:5061", "192.0.2.4", "192.0.2.4", 5061),
    ],
)
def test_hosts(text: str, host: str, plain: str, port: int | None) -> None:
    uri = URI.parse(text)
    assert uri.host == host
    assert uri.host_plain == plain
    assert uri.port == port


def test_constructor_brackets_an_ipv6_host() -> None:
    uri = URI(user="alice", host="2001:db8::1", port=5060)
    assert uri.host == "[2001:db8::1]"
    assert str(uri) == "sip:alice@[2001:db8::1]:5060"


def test_escapes_in_user_password_params_and_headers() -> None:
    uri = URI.parse(
        "sip:I%20have%20spaces:p%40ss@example.net;n%61me=v%61lue%25%34%31?Sub%6aect=a%20b"
    )
    assert uri.user == "I have spaces"
    assert uri.password == "p@ss"
    assert uri.params == {"name": "value%41"}  # unescaped once, never recursively
    assert uri.headers == {"Subject": "a b"}


def test_user_with_reserved_characters() -> None:
    uri = URI.parse("sip:user;par=u%40example.net@example.com")
    assert uri.user == "user;par=u@example.net"
    assert uri.host == "example.com"
    assert uri.params == {}


def test_telephone_subscriber_user_and_user_param() -> None:
    uri = URI.parse("sip:+1-212-555-1212:1234@gateway.com;user=phone")
    assert uri.user == "+1-212-555-1212"
    assert uri.password == "1234"
    assert uri.params == {"user": "phone"}


def test_param_names_are_lower_cased_values_kept() -> None:
    uri = URI.parse("sip:alice@atlanta.com;Transport=UDP;MAddr=239.255.255.1")
    assert uri.params == {"transport": "UDP", "maddr": "239.255.255.1"}
    assert uri.transport == "UDP"


def test_unknown_scheme_is_kept_opaque() -> None:
    uri = URI.parse("http://www.example.com/a?b")
    assert uri.scheme == "http"
    assert uri.host == "//www.example.com/a?b"
    assert str(uri) == "http://www.example.com/a?b"


def test_parse_uri_alias_and_surrounding_whitespace() -> None:
    assert parse_uri("  sip:bob@biloxi.com \t") == URI(user="bob", host="biloxi.com")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "alice@example.com",  # no scheme
        "1sip:alice@example.com",  # scheme must start with a letter
        "sip:",  # no host
        "sip:@example.com",  # empty user
        "sip:alice@",  # no host
        "sip:alice@exa mple.com",
        "sip:alice@example.com:",  # empty port
        "sip:alice@example.com:65536",
        "sip:alice@example.com:5o60",
        "sip:alice@example.com:99999999999999999999999999",
        "sip:alice@example.com:²",
        "sip:alice@[2001:db8::1",  # unterminated IPv6 reference
        "sip:alice@[2001:db8::1]x",
        "sip:alice@[zz::1]",
        "sip:alice@-example.com",
        "sip:alice@example.com;",  # empty parameter
        "sip:alice@example.com;a=",  # empty value
        "sip:alice@example.com;a=%4",  # bad escape
        "sip:al%zzice@example.com",
        "sip:alice@example.com?=x",  # empty header name
        "sip:<alice>@example.com",
        'sip:"alice"@example.com',
        "tel:",
        "tel:abc-def-ghij",
        "tel:+1-212;=x",
        "http:",
        "http:a b",
    ],
)
def test_bad_uris_raise_parse_error(text: str) -> None:
    with pytest.raises(ParseError):
        URI.parse(text)


# -- rendering ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "sip:alice@atlanta.com",
        "sips:bob:pw@biloxi.example.com:5061;transport=tls;lr",
        "sip:%61lice@AtLanTa.CoM;Transport=tcp",
        "sip:alice@[2001:db8::1]:5060;maddr=[2001:db8::2]?subject=hi%20there",
        "tel:+1-201-555-0123;phone-context=example.com",
    ],
)
def test_parsed_text_is_kept_verbatim(text: str) -> None:
    assert str(URI.parse(text)) == text


def test_built_uri_renders_with_escapes() -> None:
    uri = URI(
        "sip",
        user="I have spaces@home",
        host="example.net",
        port=5070,
        params={"transport": "tcp", "lr": None},
        headers={"Subject": "a b&c"},
    )
    assert (
        str(uri)
        == "sip:I%20have%20spaces%40home@example.net:5070;transport=tcp;lr?Subject=a%20b%26c"
    )
    again = URI.parse(str(uri))
    assert again.user == "I have spaces@home"
    assert again.headers == {"Subject": "a b&c"}
    assert again == uri


def test_replace_returns_a_changed_copy() -> None:
    uri = URI.parse("sip:alice@atlanta.com;transport=udp")
    moved = uri.replace(host="biloxi.com", port=5080)
    assert str(moved) == "sip:alice@biloxi.com:5080;transport=udp"
    assert str(uri) == "sip:alice@atlanta.com;transport=udp"
    assert str(uri.without_params("transport")) == "sip:alice@atlanta.com"


def test_repr() -> None:
    assert repr(URI.parse("sip:a@b")) == "URI('sip:a@b')"


# -- comparison (RFC 3261 section 19.1.4) ------------------------------------------------------

# Every pair the RFC lists as equivalent.
RFC_EQUAL = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    (
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
    ),
    (
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
    ),
]

# Every pair the RFC lists as not equivalent.
RFC_NOT_EQUAL = [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),  # usernames
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),  # can resolve to different ports
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),  # different transports
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),  # port and transport
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),  # header
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),  # even if that is its address
]


@pytest.mark.parametrize(("left", "right"), RFC_EQUAL)
def test_rfc3261_equal_examples(left: str, right: str) -> None:
    a, b = URI.parse(left), URI.parse(right)
    assert a == b
    assert b == a
    assert hash(a) == hash(b)
    assert a == right  # a str is parsed for the comparison


@pytest.mark.parametrize(("left", "right"), RFC_NOT_EQUAL)
def test_rfc3261_not_equal_examples(left: str, right: str) -> None:
    a, b = URI.parse(left), URI.parse(right)
    assert a != b
    assert b != a


def test_equality_is_not_transitive() -> None:
    # The RFC's own example: each of on/off matches the bare URI but not each other.
    bare = URI.parse("sip:carol@chicago.com")
    on = URI.parse("sip:carol@chicago.com;security=on")
    off = URI.parse("sip:carol@chicago.com;security=off")
    assert bare == on and bare == off
    assert on != off


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("sip:alice@atlanta.com", "sips:alice@atlanta.com"),  # sip and sips never match
        ("sip:alice@atlanta.com", "sip:atlanta.com"),  # user only in one
        ("sip:alice:pw@atlanta.com", "sip:alice@atlanta.com"),  # password only in one
        ("sip:alice@atlanta.com;user=phone", "sip:alice@atlanta.com"),
        ("sip:alice@atlanta.com;ttl=1", "sip:alice@atlanta.com"),
        ("sip:alice@atlanta.com;method=INVITE", "sip:alice@atlanta.com"),
        ("sip:alice@atlanta.com;maddr=192.0.2.1", "sip:alice@atlanta.com"),
        ("sip:alice@atlanta.com;maddr=192.0.2.1", "sip:alice@atlanta.com;maddr=192.0.2.2"),
        ("sip:alice@atlanta.com?a=1", "sip:alice@atlanta.com?a=2"),
    ],
)
def test_more_differences(left: str, right: str) -> None:
    assert URI.parse(left) != URI.parse(right)


def test_comparison_with_garbage_and_other_types() -> None:
    uri = URI.parse("sip:alice@atlanta.com")
    assert uri != "not a uri"
    assert uri != 42
    assert (uri == 42) is False


def test_usable_as_dict_key() -> None:
    table = {URI.parse("sip:alice@AtLanTa.com"): 1}
    assert table[URI.parse("sip:%61lice@atlanta.com")] == 1


# -- tel (RFC 3966) ---------------------------------------------------------------------------


def test_tel_uri() -> None:
    uri = URI.parse("tel:+1-201-555-0123;ext=42")
    assert uri.scheme == "tel"
    assert uri.user == "+1-201-555-0123"
    assert uri.host == ""
    assert uri.params == {"ext": "42"}
    assert str(uri) == "tel:+1-201-555-0123;ext=42"


def test_tel_local_number_with_context() -> None:
    uri = URI.parse("tel:7042;phone-context=example.com")
    assert uri.user == "7042"
    assert uri.params == {"phone-context": "example.com"}


def test_tel_comparison_ignores_visual_separators() -> None:
    a = URI.parse("tel:+1-201-555-0123")
    b = URI.parse("tel:+1(201)555.0123")
    assert a == b
    assert hash(a) == hash(b)
    assert a != URI.parse("tel:+1-201-555-0124")
    assert a != URI.parse("tel:+1-201-555-0123;ext=1")
    assert a != URI.parse("sip:+1-201-555-0123@example.com")


def test_built_tel_uri() -> None:
    assert (
        str(URI("tel", user="+4930123456", params={"isub": "1234"})) == "tel:+4930123456;isub=1234"
    )


# -- properties --------------------------------------------------------------------------------

_user_text = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=12
)
_host = st.one_of(
    st.from_regex(r"[a-z][a-z0-9\-]{0,8}(\.[a-z][a-z0-9\-]{0,8}){0,2}", fullmatch=True).filter(
        lambda h: not h.endswith("-")
    ),
    st.from_regex(
        r"(25[0-5]|1[0-9]{2}|[1-9]?[0-9])(\.(25[0-5]|1[0-9]{2}|[1-9]?[0-9])){3}", fullmatch=True
    ),
    st.just("[2001:db8::1]"),
)
_token = st.from_regex(r"[A-Za-z0-9\-.!*_+~]{1,8}", fullmatch=True)
_value = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=8)


@st.composite
def sip_uris(draw: st.DrawFn) -> URI:
    user = draw(st.none() | _user_text)
    password = draw(st.none() | _user_text) if user is not None else None
    return URI(
        draw(st.sampled_from(["sip", "sips"])),
        user=user,
        password=password,
        host=draw(_host),
        port=draw(st.none() | st.integers(0, 65535)),
        params=draw(st.dictionaries(_token.map(str.lower), st.none() | _value, max_size=3)),
        headers=draw(st.dictionaries(_token, _value, max_size=2)),
    )


@given(sip_uris())
def test_render_parse_round_trip(uri: URI) -> None:
    text = str(uri)
    again = URI.parse(text)
    assert again == uri
    assert (again.user, again.password, again.port) == (uri.user, uri.password, uri.port)
    assert again.host.lower() == uri.host.lower()
    assert again.params == uri.params
    assert again.headers == uri.headers
    assert str(again) == text


@given(st.text(max_size=60))
def test_parse_raises_only_parse_error(text: str) -> None:
    try:
        uri = URI.parse(text)
    except ParseError:
        return
    str(uri)
    hash(uri)
    assert uri == uri


@given(st.text(alphabet='sip:@;=?&%[]<>.:0123456789abcAB \t+-"', max_size=40))
def test_parse_raises_only_parse_error_on_uri_like_text(text: str) -> None:
    try:
        URI.parse(text)
    except ParseError:
        pass
