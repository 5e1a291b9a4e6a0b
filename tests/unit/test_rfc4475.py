"""The 49 torture-test messages of RFC 4475 section 3, one by one.

Each message is classified as the RFC's section describes it:

* ``VALID``: syntactically valid (3.1.1, and the 3.2 / 3.3 / 3.4 messages whose problem is
  one of transaction or application semantics). They parse with ``strict=True`` and the
  values the RFC points out are checked.
* ``REJECTED_400``: section 3.3 messages that are well-formed line by line but that the RFC
  says a UAS answers with 400 Bad Request (missing or repeated mandatory headers,
  conflicting Content-Length). ``strict=True`` rejects them.
* ``INVALID``: the 3.1.2 messages. ``strict=True`` raises ParseError, for the reason the RFC
  gives (the ``match`` pattern checks it is rejected for that reason and not another).

Whatever the outcome, nothing but ParseError may escape, from parsing or from any typed
property of a parsed message.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sipx._core.header_types import NameAddr
from sipx._core.message import Message, Request, Response
from sipx._core.parser import parse_message
from sipx._core.sdp import SDPBody
from sipx._errors import ParseError

DATA = Path(__file__).resolve().parent.parent / "data" / "rfc4475"
ALL = sorted(path.stem for path in DATA.glob("*.dat"))


def load(name: str) -> bytes:
    return (DATA / f"{name}.dat").read_bytes()


def parse_valid(name: str) -> Request | Response:
    return parse_message(load(name), strict=True)


def request(name: str) -> Request:
    message = parse_valid(name)
    assert isinstance(message, Request)
    return message


def response(name: str) -> Response:
    message = parse_valid(name)
    assert isinstance(message, Response)
    return message


# -- 3.1.1 valid messages --------------------------------------------------------------------


def check_wsinv(m: Request) -> None:
    # 3.1.1.1: unusual whitespace everywhere, folding, compact forms, unknown headers.
    assert m.method == "INVITE"
    assert m.uri.user == "vivekg"
    assert m.uri.host == "chair-dnrc.example.com"
    assert m.uri.params == {"unknownparam": None}
    assert m.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert (m.cseq.seq, m.cseq.method) == (9, "INVITE")
    assert m.max_forwards == 68
    assert [(v.transport, v.host, v.branch) for v in m.via] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert all(v.protocol == "SIP/2.0" for v in m.via)
    assert m.to.tag == "1918181833n"
    assert m.to.display_name is None
    assert m.to.uri.user == "vivekg"
    # "J Rosenberg \\\"" : the display name ends with a backslash and a quote.
    assert m.from_.display_name == 'J Rosenberg \\"'
    assert m.from_.tag == "98asjd8"
    assert str(m.from_.uri) == "sip:jdrosen@example.com"
    (contact,) = m.contact
    assert contact.display_name == 'Quoted string ""'
    assert str(contact.uri) == "sip:jdrosen@example.com"
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert contact.q == 0.33
    (route,) = m.route
    assert route.uri.params == {"lr": None, "unknownwith": "value", "unknown-no-value": None}
    assert m.headers["NewFangledHeader"] == "newfangled value continued newfangled value"
    assert m.headers["UnknownHeaderWithUnusualValue"] == ";;,,;;,;"
    assert m.headers["Subject"] == ""
    assert "s" in m.headers
    assert m.content_type is not None and m.content_type.mime_type == "application/sdp"
    assert len(m.content) == 150
    assert isinstance(m.body, SDPBody)


def check_intmeth(m: Request) -> None:
    # 3.1.1.2: a method and many fields made of every legal odd token character.
    method = "!interesting-Method0123456789_*+`.%indeed'~"
    assert m.method == method
    assert m.cseq.method == method
    assert m.cseq.seq == 139122385
    assert m.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert m.uri.host == "example.com"
    assert m.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    assert m.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert m.to.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert m.from_.tag == "_token~1'+`*%!-."
    assert m.from_.params["fromparam''~+*_!.-%"] == '"работающий"'
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.max_forwards == 255
    assert m.headers["extensionHeader-!.%*+_`'~"] == "\ufeff大停電"


def check_esc01(m: Request) -> None:
    # 3.1.1.3: %-escapes in user parts and URI parameters (unescaped once, not recursively).
    assert m.uri.user == "sips:user@example.com"
    assert m.uri.host == "example.net"
    assert m.to.uri.user == "user"
    assert m.from_.uri.user == "I have spaces"
    assert m.from_.tag == "938"
    (contact,) = m.contact
    assert contact.uri.user == "caller"
    assert contact.uri.params == {"lr": None, "name": "value%41"}
    assert m.call_id == "esc01.239409asdfakjkn23onasd0-3234"
    assert m.content_type is not None and m.content_type.mime_type == "application/sdp"


def check_escnull(m: Request) -> None:
    # 3.1.1.4: %00 in user parts.
    assert m.to.uri.user == "null-\x00-null"
    assert m.from_.uri.user == "null-\x00-null"
    assert m.from_.tag == "839923423"
    assert [c.uri.user for c in m.contact] == ["\x00", "\x00\x00"]
    assert m.to.uri == m.from_.uri


def check_esc02(m: Request) -> None:
    # 3.1.1.5: escapes are not unescaped in a method, a quoted display name, a header name.
    assert m.method == "RE%47IST%45R"
    assert m.cseq.method == "RE%47IST%45R"
    assert m.to.display_name == "%Z%45"
    assert m.from_.display_name == "%Z%45"
    assert m.top_via.branch == "z9hG4bK209%fzsnel234"
    assert [str(c.uri) for c in m.contact] == [
        "sip:alias1@host1.example.com",
        "sip:alias3@host3.example.com",
    ]
    assert m.headers["C%6Fntact"] == "<sip:alias2@host2.example.com>"


def check_lwsdisp(m: Request) -> None:
    # 3.1.1.6: no LWS between a token display name and "<".
    assert m.from_.display_name == "caller"
    assert m.from_.tag == "323"
    assert str(m.from_.uri) == "sip:caller@example.com"


def check_longreq(m: Request) -> None:
    # 3.1.1.7: long values, long names, 34 Via fields in many spellings.
    assert len(m.via) == 34
    assert [v.host for v in m.via[:3]] == [
        "sip33.example.com",
        "sip32.example.com",
        "sip31.example.com",
    ]
    assert m.via[-1].host == "host.example.com"
    assert m.via[-1].received == "192.0.2.5"
    assert m.via[-1].branch == "verylong" + "long" * 49 + "branchvalue"
    assert m.to.display_name == ("I have a user name of " + "extreme" * 10 + " proportion")
    assert m.to.uri.port == 6000
    assert m.to.uri.params == {
        "unknownparam1": "verylong" + "long" * 19 + "value",
        "longparamname" + "name" * 24: "shortvalue",
        ("verylong" + "long" * 24 + "ParameterNameWithNoValue").lower(): None,
    }
    assert m.from_.uri.user == "amazinglylongcallername" * 5
    assert (
        m.from_.tag is not None and m.from_.tag.startswith("1298298298") and len(m.from_.tag) == 155
    )
    assert m.from_.params["unknownheaderparamname" + "name" * 19] == (
        "unknowheaderparamvalue" + "value" * 14
    )
    assert m.call_id == "longreq.one" + "really" * 20 + "longcallid"
    long_name = "Unknown-" + "Long" * 20 + "-Name"
    assert m.headers[long_name.lower()].startswith("unknown-" + "long" * 20 + "-value;")
    assert len(m.content) == 150


def check_dblreq(m: Request) -> None:
    # 3.1.1.8: a datagram with two requests; only the first one (Content-Length 0) counts.
    assert m.method == "REGISTER"
    assert m.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"
    assert m.content == b""
    assert m.to.tag is None


def check_semiuri(m: Request) -> None:
    # 3.1.1.9: a ';' in the user part of the Request-URI is not a parameter separator.
    assert m.uri.user == "user;par=u@example.net"
    assert m.uri.host == "example.com"
    assert m.uri.params == {}
    assert m.headers.get_list("Accept") == [
        "application/sdp",
        "application/pkcs7-mime",
        "multipart/mixed",
        "multipart/signed",
        "message/sip",
        "message/sipfrag",
    ]


def check_transports(m: Request) -> None:
    # 3.1.1.10: Via with SCTP, TLS and an unknown transport.
    assert [(v.transport, v.host) for v in m.via] == [
        ("UDP", "t1.example.com"),
        ("SCTP", "t2.example.com"),
        ("TLS", "t3.example.com"),
        ("UNKNOWN", "t4.example.com"),
        ("TCP", "t5.example.com"),
    ]
    assert m.call_id == "transports.kijh4akdnaqjkwendsasfdj"


def check_mpart01(m: Request) -> None:
    # 3.1.1.11: a multipart body with binary content, kept byte for byte.
    raw = load("mpart01")
    assert m.content == raw[raw.index(b"\r\n\r\n") + 4 :]
    assert len(m.content) == 553
    assert m.content.startswith(b"--7a9cbec02ceef655\r\nContent-Type: text/plain\r\n")
    assert m.content.endswith(b"--7a9cbec02ceef655--\r\n")
    content_type = m.content_type
    assert content_type is not None
    assert content_type.mime_type == "multipart/mixed"
    assert content_type.params == {"boundary": "7a9cbec02ceef655"}
    assert m.top_via.has_rport and m.top_via.rport is None
    assert m.top_via.port == 5070
    assert m.headers["Content-Transfer-Encoding"] == "binary"


def check_unreason(m: Response) -> None:
    # 3.1.1.12: a reason phrase in UTF-8 with odd characters.
    assert m.status_code == 200
    assert m.reason_phrase == "= 2**3 * 5**2 но сто девяносто девять - простое"
    assert m.to.tag == "2229"


def check_noreason(m: Response) -> None:
    # 3.1.1.13: an empty reason phrase.
    assert m.status_code == 100
    assert m.reason_phrase == ""
    assert m.to.tag == "902jndnke3"


# -- 3.2, 3.3, 3.4 messages that are syntactically valid ------------------------------------


def check_badbranch(m: Request) -> None:
    # 3.2.1: the branch is only the magic cookie; a transaction-layer matter.
    assert m.top_via.branch == "z9hG4bK"


def check_unkscm(m: Request) -> None:
    # 3.3.2: an unknown Request-URI scheme (answered 416, not 400).
    assert m.uri.scheme == "nobodyknowsthisscheme"
    assert str(m.uri) == "nobodyKnowsThisScheme:totallyopaquecontent"


def check_novelsc(m: Request) -> None:
    # 3.3.3: a known but unusual scheme in the Request-URI (416).
    assert m.uri.scheme == "soap.beep"
    assert str(m.uri) == "soap.beep://192.0.2.103:3002"


def check_unksm2(m: Request) -> None:
    # 3.3.4: unknown schemes in To, From and Contact are kept.
    assert m.to.uri.scheme == "isbn"
    assert str(m.to.uri) == "isbn:2983792873"
    assert m.from_.uri.scheme == "http"
    assert str(m.from_.uri) == "http://www.example.com"
    assert m.from_.tag == "3234233"
    assert [str(c.uri) for c in m.contact] == ["name:John_Smith"]


def check_bext01(m: Request) -> None:
    # 3.3.5: option tags nobody supports (420 Bad Extension, an application decision).
    assert m.headers.get_list("Require") == ["nothingSupportsThis", "nothingSupportsThisEither"]
    assert m.headers.get_list("Proxy-Require") == [
        "noProxiesSupportThis",
        "norDoAnyProxiesSupportThis",
    ]
    assert m.top_via.transport == "TLS"


def check_invut(m: Request) -> None:
    # 3.3.6: an unknown Content-Type (415): the body is kept as text.
    assert m.content_type is not None and m.content_type.mime_type == "application/unknownformat"
    assert m.content == b'<audio>\r\n <pcmu port="443"/>\r\n</audio>\r\n'
    assert m.body == '<audio>\r\n <pcmu port="443"/>\r\n</audio>\r\n'


def check_regaut01(m: Request) -> None:
    # 3.3.7: an unknown authorization scheme is kept verbatim.
    assert m.headers["Authorization"] == "NoOneKnowsThisScheme opaque-data=here"
    assert m.headers["Content-Length"] == "0"


def check_bcast(m: Response) -> None:
    # 3.3.10: a 200 whose second Via is the broadcast address.
    assert m.status_code == 200
    assert [v.host for v in m.via] == ["192.0.2.198", "255.255.255.255"]
    assert m.via[1].branch == "z9hG4bK1saber23"


def check_zeromf(m: Request) -> None:
    # 3.3.11: Max-Forwards 0 is legal syntax (483 or a response to OPTIONS).
    assert m.max_forwards == 0


def check_cparam01(m: Request) -> None:
    # 3.3.12: Contact without <>: the parameter is a header parameter.
    (contact,) = m.contact
    assert contact.params == {"unknownparam": None}
    assert contact.uri.params == {}
    assert contact.uri.user == "+19725552222"


def check_cparam02(m: Request) -> None:
    # 3.3.13: Contact with <>: the parameter belongs to the URI.
    (contact,) = m.contact
    assert contact.params == {}
    assert contact.uri.params == {"unknownparam": None}


def check_regescrt(m: Request) -> None:
    # 3.3.14: an escaped header in a Contact URI.
    (contact,) = m.contact
    assert contact.uri.headers == {"Route": "<sip:sip.example.com>"}
    assert contact.uri.user == "user"


def check_sdp01(m: Request) -> None:
    # 3.3.15: an Accept the UAS cannot satisfy (406); the SDP body itself is fine.
    assert m.headers["Accept"] == "text/nobodyKnowsThis"
    assert isinstance(m.body, SDPBody)


def check_inv2543(m: Request) -> None:
    # 3.4.1: RFC 2543 style: no branch, no Max-Forwards, no From tag, no Content-Length.
    assert m.top_via.branch is None
    assert m.max_forwards is None
    assert "request has no Max-Forwards header" in m.defects
    assert m.from_.tag is None
    assert m.from_.uri.params == {"user": "phone"}
    assert m.to.params == {"user": "phone"}  # addr-spec: a header parameter
    assert m.record_route[0].uri.params == {"maddr": "ss1.example.com"}
    raw = load("inv2543")
    assert m.content == raw[raw.index(b"\r\n\r\n") + 4 :]
    assert m.content.startswith(b"v=0\r\n")


VALID: dict[str, Callable[..., None]] = {
    name.removeprefix("check_"): function
    for name, function in globals().items()
    if name.startswith("check_")
}

# Section 3.3 messages the RFC says a UAS rejects with 400 (not a syntax error of one line).
REJECTED_400 = {
    "insuf": r"no From header",  # 3.3.1: no Call-ID, From, To
    "multi01": r"appears 2 times",  # 3.3.8: two To, two From, two Call-ID, two CSeq
    "mcl01": r"conflicting Content-Length",  # 3.3.9: Content-Length 13 and 5
}

# Section 3.1.2: invalid messages, with the reason each one must be rejected for.
INVALID = {
    "badinv01": r"empty parameter in Via",  # 3.1.2.1 ";;,;,," separators
    "clerr": r"Content-Length 9999 is larger",  # 3.1.2.2
    "ncl": r"bad Content-Length '-999'",  # 3.1.2.3
    "scalar02": r"out of range",  # 3.1.2.4
    "scalarlg": r"CSeq number out of range",  # 3.1.2.5
    "quotbal": r"unterminated quoted",  # 3.1.2.6
    "ltgtruri": r"bad Request-URI '<sip:",  # 3.1.2.7
    "lwsruri": r"bad request line",  # 3.1.2.8
    "lwsstart": r"bad request line",  # 3.1.2.9
    "trws": r"bad request line",  # 3.1.2.10
    "escruri": r"Request-URI must not carry headers",  # 3.1.2.11
    "baddate": r"bad Date",  # 3.1.2.12
    "regbadct": r"must be enclosed in <>",  # 3.1.2.13
    "badaspec": r"padded URI inside <>",  # 3.1.2.14
    "baddn": r"no empty line",  # 3.1.2.15 (the archive's copy lacks the final CRLF)
    "badvers": r"unsupported SIP version SIP/7\.0",  # 3.1.2.16
    "mismatch01": r"CSeq method INVITE does not match OPTIONS",  # 3.1.2.17
    "mismatch02": r"CSeq method INVITE does not match NEWMETHOD",  # 3.1.2.18
    "bigcode": r"bad status code '4294967301'",  # 3.1.2.19
}

PROPERTIES = [
    *("via", "top_via", "from_", "to", "call_id", "cseq", "contact", "route", "record_route"),
    *("max_forwards", "expires", "content_type", "body", "text"),
]


def test_every_file_is_classified_once() -> None:
    assert len(ALL) == 49
    assert len(VALID) == 27
    assert set(VALID).isdisjoint(REJECTED_400)
    assert set(VALID).isdisjoint(INVALID)
    assert set(REJECTED_400).isdisjoint(INVALID)
    assert set(VALID) | set(REJECTED_400) | set(INVALID) == set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_outcome(name: str) -> None:
    if name in VALID:
        message = parse_valid(name)
        VALID[name](message)
        message.validate()  # idempotent: a second check gives the same answer
    else:
        reason = REJECTED_400.get(name) or INVALID[name]
        with pytest.raises(ParseError, match=reason):
            parse_message(load(name), strict=True)


@pytest.mark.parametrize("strict", [False, True], ids=["tolerant", "strict"])
@pytest.mark.parametrize("name", ALL)
def test_nothing_but_parse_error_escapes(name: str, strict: bool) -> None:
    try:
        message = parse_message(load(name), strict=strict)
    except ParseError:
        return
    touch_everything(message)


def touch_everything(message: Message) -> None:
    """Read every typed view; only ParseError may come out."""
    for name in PROPERTIES:
        try:
            value = getattr(message, name)
        except ParseError:
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, NameAddr) and not item.is_wildcard:
                try:
                    str(item.uri)
                except ParseError:
                    pass
    if isinstance(message, Request):
        try:
            str(message.uri)
        except ParseError:
            pass
    try:
        message.validate()
    except ParseError:
        pass
    parse_message(message.to_bytes())  # what was read can be written and read back


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_messages_round_trip(name: str) -> None:
    message = parse_valid(name)
    again = parse_message(message.to_bytes(), strict=True)
    assert again == message
    assert again.to_bytes() == message.to_bytes()


# -- the invalid ones, one problem at a time ---------------------------------------------------


def tolerant(name: str) -> Request | Response:
    return parse_message(load(name))


def test_badinv01_separators_in_via_and_contact() -> None:
    message = tolerant("badinv01")
    with pytest.raises(ParseError, match="Via"):
        message.via  # noqa: B018
    with pytest.raises(ParseError, match="empty parameter"):
        message.contact  # noqa: B018


def test_scalar02_every_overlarge_value() -> None:
    message = tolerant("scalar02")
    with pytest.raises(ParseError, match="CSeq number out of range: 36893488147419103232"):
        message.cseq  # noqa: B018
    with pytest.raises(ParseError, match="Max-Forwards value out of range: 300"):
        message.max_forwards  # noqa: B018
    with pytest.raises(ParseError, match="Expires value out of range"):
        message.expires  # noqa: B018
    with pytest.raises(ParseError, match="Contact expires parameter value out of range"):
        message.validate()
    (contact,) = message.contact
    assert contact.expires == 2**32 - 1  # capped, as RFC 4475 allows


def test_scalarlg_every_overlarge_value() -> None:
    message = tolerant("scalarlg")
    assert isinstance(message, Response)
    assert message.status_code == 503
    with pytest.raises(ParseError, match="CSeq number out of range"):
        message.cseq  # noqa: B018
    del message.headers["CSeq"]
    message.headers["CSeq"] = "1 OPTIONS"
    with pytest.raises(ParseError, match="Warning"):
        message.validate()  # warn-code 1812 has four digits


def test_quotbal_unterminated_display_name() -> None:
    with pytest.raises(ParseError, match="unterminated quoted"):
        tolerant("quotbal").to  # noqa: B018


def test_baddn_with_the_missing_crlf_restored() -> None:
    data = load("baddn")
    assert not data.endswith(b"\r\n\r\n")
    message = parse_message(data + b"\r\n")
    with pytest.raises(ParseError, match="bad display name 'Bell, Alexander'"):
        message.from_  # noqa: B018
    with pytest.raises(ParseError, match="bad display name 'Watson, Thomas'"):
        message.to  # noqa: B018
    with pytest.raises(ParseError, match="display name"):
        parse_message(data + b"\r\n", strict=True)


def test_badaspec_spaces_inside_angle_brackets() -> None:
    message = tolerant("badaspec")
    assert message.from_.display_name == "Bell, Alexander"  # quoted: the comma is fine
    with pytest.raises(ParseError, match="padded URI"):
        message.to  # noqa: B018


def test_regbadct_addr_spec_with_headers() -> None:
    with pytest.raises(ParseError, match="must be enclosed in <>"):
        tolerant("regbadct").contact  # noqa: B018


def test_escruri_request_uri_headers_are_parsed_but_refused_strictly() -> None:
    message = tolerant("escruri")
    assert isinstance(message, Request)
    assert message.uri.headers == {"Route": "<sip:example.com>"}


def test_baddate_time_zone() -> None:
    message = tolerant("baddate")
    assert message.headers["Date"] == "Fri, 01 Jan 2010 16:00:00 EST"


def test_badvers_is_a_defect_when_tolerant() -> None:
    message = tolerant("badvers")
    assert message.version == "SIP/7.0"
    assert message.defects == ["unsupported SIP version SIP/7.0"]
    assert message.call_id == "badvers.31417@c.example.com"
    assert message.top_via.protocol == "SIP/7.0"
    with pytest.raises(ParseError, match="unsupported SIP version"):
        message.validate()


def test_mismatch_methods_parse_when_tolerant() -> None:
    first = tolerant("mismatch01")
    assert isinstance(first, Request)
    assert (first.method, first.cseq.method) == ("OPTIONS", "INVITE")
    second = tolerant("mismatch02")
    assert isinstance(second, Request)
    assert (second.method, second.cseq.method) == ("NEWMETHOD", "INVITE")


@pytest.mark.parametrize(
    "name", ["clerr", "ncl", "ltgtruri", "lwsruri", "lwsstart", "trws", "bigcode"]
)
def test_framing_and_start_line_errors_raise_even_when_tolerant(name: str) -> None:
    with pytest.raises(ParseError, match=INVALID[name]):
        tolerant(name)


def test_insuf_missing_headers() -> None:
    message = tolerant("insuf")
    for name in ("from_", "to", "call_id"):
        with pytest.raises(ParseError, match="message has no"):
            getattr(message, name)
    assert message.cseq.seq == 193942


def test_multi01_repeated_single_value_headers() -> None:
    message = tolerant("multi01")
    assert message.headers.get_list("Call-ID") == [
        "multi01.98asdh@192.0.2.1",
        "multi01.98asdh@192.0.2.2",
    ]
    assert message.headers.get_list("CSeq") == ["5 INVITE", "59 INVITE"]
    assert len(message.headers.get_list("To")) == 2
    assert len(message.headers.get_list("Max-Forwards")) == 2


def test_mcl01_conflicting_content_length_even_when_tolerant() -> None:
    with pytest.raises(ParseError, match="conflicting Content-Length values"):
        tolerant("mcl01")
