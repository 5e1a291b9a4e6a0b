"""The parser's and the typed views' fast paths: the usual shapes take them, and every
other shape reaches the general path and reads the same.

Each fast-path test makes the general path unavailable (monkeypatch) and checks the
usual shape still parses, so removing a fast path fails here; each also compares with
what the general path gives for the same text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sipx._core import header_types
from sipx._core.header_types import CSeq, NameAddr, Via, parse_cseq, parse_name_addr, parse_via
from sipx._core.headers import Headers
from sipx._core.parser import parse_message
from sipx._errors import ParseError


def _no_general_path(monkeypatch: pytest.MonkeyPatch, cls: type) -> None:
    def refuse(text: str) -> object:
        raise AssertionError(f"general path taken for {text!r}")

    monkeypatch.setattr(cls, "_parse_general", refuse)


@pytest.mark.parametrize(
    "text",
    [
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK.Hq3Zx9PiQ;rport",
        "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK-1",
        "SIP/2.0/TLS proxy.example.com:5061;branch=z9hG4bK~a'b",
        "SIP/2.0/WSS [2001:db8::9]:443;branch=z9hG4bKx",
    ],
)
def test_usual_via_takes_the_fast_path_and_reads_as_the_general_path(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    general = Via._parse_general(text)
    _no_general_path(monkeypatch, Via)
    fast = parse_via(text)
    assert fast == general
    assert list(fast.params) == list(general.params)  # same order too
    assert str(fast) == str(general) == text
    assert Via.parse(text) == general


@pytest.mark.parametrize(
    "text",
    [
        "SIP/2.0/udp h;branch=z9hG4bKa",  # lower-case transport
        "SIP/2.0/UDP h;rport;branch=z9hG4bKa",  # rport first
        "SIP/2.0/UDP h;branch=z9hG4bKa;received=192.0.2.1",
        "SIP/2.0/UDP h",  # no branch
        "SIP/2.0/UDP h ; branch = z9hG4bKa",  # whitespace
        "SIP / 2.0 / UDP h;branch=z9hG4bKa",
        'SIP/2.0/UDP h;branch=z9hG4bKa;x="q"',
        "SIP/2.0/UDP h:5060;BRANCH=z9hG4bKa",
    ],
)
def test_other_vias_take_the_general_path(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _assert_general_path(Via, parse_via, text, monkeypatch)


def _assert_general_path(
    kind: Any, parse: Callable[[str], object], text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``parse(text)`` reaches ``kind._parse_general`` once and reads the same."""
    expected = kind._parse_general(text)
    taken: list[str] = []
    general = kind._parse_general

    def spy(text: str) -> object:
        taken.append(text)
        return general(text)

    monkeypatch.setattr(kind, "_parse_general", spy)
    assert parse(text) == expected
    assert taken == [text]


@pytest.mark.parametrize(
    "text",
    [
        "SIP/2.0/UDP h:5060;branch=z9hG4bKa",
        "SIP/2.0/UDP h:50601;branch=z9hG4bKa",  # starts like 5060
        "SIP/2.0/UDP h:506;branch=z9hG4bKa;rport",
        "SIP/2.0/UDP h:05060;branch=z9hG4bKa",
        "SIP/2.0/UDP h:5061;branch=z9hG4bKa",
        "SIP/2.0/UDPX h:5060;branch=z9hG4bKa",  # starts like UDP
        "SIP/2.0/TCP h:5060;branch=z9hG4bKa;rport",
        "SIP/2.0/UD h;branch=rport",
        "SIP/2.0/SCTP [::1]:5060;branch=z9hG4bK;rport",
    ],
)
def test_fast_via_transport_port_and_rport_read_as_the_general_path(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    general = Via._parse_general(text)
    _no_general_path(monkeypatch, Via)
    fast = parse_via(text)
    assert fast == general
    assert (fast.transport, fast.port, fast.branch, fast.has_rport) == (
        general.transport,
        general.port,
        general.branch,
        general.has_rport,
    )
    assert list(fast.params.items()) == list(general.params.items())
    assert str(fast) == str(general)


def test_fast_via_makes_no_string_for_the_usual_transport_and_port() -> None:
    # UDP and port 5060 are recognised by the expression, not cut out of the text: two
    # Vias parsed apart share the transport string and the port number.
    text = "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK.Hq3Zx9PiQ;rport"
    first, second = parse_via(text), parse_via(text[:-6] + ";rport")
    assert first.transport == "UDP" and first.port == 5060
    assert first.transport is second.transport
    assert first.port is second.port


def test_fast_via_still_checks_the_port() -> None:
    with pytest.raises(ParseError, match="bad port 65536"):
        parse_via("SIP/2.0/UDP h:65536;branch=z9hG4bKa")


@pytest.mark.parametrize(
    "text",
    [
        '"Alice Liddell" <sip:alice@example.com>;tag=P3xCg~Ujl',
        '"" <sip:alice@example.com>',
        "<sip:bob@example.com>",
        "<sip:bob@example.com;transport=tcp>;tag=1",
        "sipp <sip:sipp@127.0.0.1:5061>;tag=1234SIPpTag001",
        '"A, B" <sips:[2001:db8::1]:5061;lr>',
    ],
)
def test_usual_name_addr_takes_the_fast_path_and_reads_as_the_general_path(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    general = NameAddr._parse_general(text)
    _no_general_path(monkeypatch, NameAddr)
    fast = parse_name_addr(text)
    assert fast == general  # display name, parameters and URI
    assert (fast.display_name, fast.params, fast.tag) == (
        general.display_name,
        general.params,
        general.tag,
    )
    assert str(fast) == str(general)


@pytest.mark.parametrize(
    "text",
    [
        "sip:alice@example.com;tag=1",  # addr-spec
        "Alice Liddell <sip:alice@example.com>",  # two-token display name
        '"Al\\"ice" <sip:alice@example.com>',  # quoted-pair
        "<sip:alice@example.com>;TAG=1",
        "<sip:alice@example.com>;tag=1;x=2",
        "<sip:alice@example.com> ;tag=1",
        "*",
    ],
)
def test_other_name_addrs_take_the_general_path(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _assert_general_path(NameAddr, parse_name_addr, text, monkeypatch)


def test_fast_name_addr_leaves_a_bad_uri_for_the_uri_read() -> None:
    name_addr = parse_name_addr("<bad>;tag=1")
    assert name_addr.tag == "1"
    with pytest.raises(ParseError):
        name_addr.uri  # noqa: B018


@pytest.mark.parametrize("text", ["20 INVITE", "0 ACK", "999999999 OPTIONS"])
def test_usual_cseq_takes_the_fast_path(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    general = CSeq._parse_general(text)
    _no_general_path(monkeypatch, CSeq)
    assert parse_cseq(text) == general == CSeq.parse(text)
    assert type(parse_cseq(text)) is CSeq


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4294967295 INVITE", CSeq(2**32 - 1, "INVITE")),  # ten digits
        ("0009 \t INVITE", CSeq(9, "INVITE")),
        ("1 FOO", CSeq(1, "FOO")),  # an extension method
        ("1 invite", CSeq(1, "invite")),
    ],
)
def test_other_cseqs_take_the_general_path(text: str, expected: CSeq) -> None:
    assert parse_cseq(text) == expected


@pytest.mark.parametrize("text", ["4294967296 INVITE", "1  INVITE x", "²0 INVITE", "-1 BYE"])
def test_bad_cseqs_still_raise(text: str) -> None:
    with pytest.raises(ParseError):
        parse_cseq(text)


def test_a_cseq_is_immutable_and_hashable() -> None:
    cseq = parse_cseq("20 INVITE")
    with pytest.raises(AttributeError):
        cseq.seq = 21  # type: ignore[misc]
    assert str(cseq) == "20 INVITE"
    assert repr(cseq) == "CSeq(seq=20, method='INVITE')"
    assert hash(cseq) == hash(CSeq(20, "INVITE"))


_HEAD = (
    "OPTIONS sip:a@example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP p.example.com;branch=z9hG4bK2\r\n"
    "v:SIP/2.0/UDP h.example.com;branch=z9hG4bK1\r\n"  # compact, no space after the colon
    "From: <sip:b@example.com>;tag=1\r\n"
    "TO : <sip:a@example.com>\r\n"  # whitespace before the colon, upper case
    "Call-ID:   c1@h   \r\n"  # extra whitespace around the value
    "CSeq: 1 OPTIONS\r\n"
    "X-Custom: one\r\n"  # a name sipx does not know
    "x-custom: two\r\n"
    "Subject: \r\n"  # an empty value
    "Record-Route: <sip:p1;lr>, <sip:p2;lr>\r\n"
    "Record-Route: <sip:p3;lr>\r\n"
    "Content-Length: 0\r\n"
    "\r\n"
)


def test_every_line_shape_reads_the_same_as_fields_added_one_by_one() -> None:
    message = parse_message(_HEAD.encode())
    expected = Headers()
    for line in _HEAD.split("\r\n")[1:-2]:
        name, _, value = line.partition(":")
        expected.add(name.strip(), value)
    assert message.headers.multi_items() == expected.multi_items()
    assert message.headers.lookup() == expected.lookup()
    assert message.headers.get_first("Via") == "SIP/2.0/UDP p.example.com;branch=z9hG4bK2"
    assert message.headers.get_list("Via") == [
        "SIP/2.0/UDP p.example.com;branch=z9hG4bK2",
        "SIP/2.0/UDP h.example.com;branch=z9hG4bK1",
    ]
    assert message.headers.get_list("x-CUSTOM") == ["one", "two"]
    assert message.headers["Subject"] == ""
    assert message.headers.get_list("Record-Route") == ["<sip:p1;lr>", "<sip:p2;lr>", "<sip:p3;lr>"]
    assert message.call_id == "c1@h"
    assert message.top_via.branch == "z9hG4bK2"
    assert [via.branch for via in message.via] == ["z9hG4bK2", "z9hG4bK1"]
    assert message.to.uri.user == "a"
    assert message.headers == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        # A bare CR inside a value, and a bad header name after it: the bare CR is reported
        # (as by the normalising path), not the name.
        (b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\ry\r\nBad Name: 1\r\n\r\n", "bare CR"),
        (b"OPTIONS sip:a@b SIP/2.0\rX\r\nCSeq: 1 OPTIONS\r\n\r\n", "bare CR"),
    ],
)
def test_bare_line_ends_go_first(data: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_message(data)


@pytest.mark.parametrize(
    "data",
    [
        # in the value of a name given twice (the second value)
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nVia: x\ry\r\n\r\n",
        # in the value of a name sipx does not know
        b"OPTIONS sip:a@b SIP/2.0\r\nCSeq: 1 OPTIONS\r\nX-Thing: x\ry\r\n\r\n",
        # in the start line of a message with one header line, and with none
        b"OPTIONS sip:a@b SIP/2.0\rX\r\nCall-ID: c\r\n\r\n",
        b"OPTIONS sip:a@b\r SIP/2.0\r\n\r\n",
        # in a value given with a compact name and no space after the colon
        b"OPTIONS sip:a@b SIP/2.0\r\ni:x\ry\r\n\r\n",
    ],
)
def test_a_bare_cr_anywhere_in_the_header_section_is_found(data: bytes) -> None:
    with pytest.raises(ParseError, match="bare CR"):
        parse_message(data)


def test_bare_lf_line_ends_in_a_value_are_line_ends() -> None:
    message = parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\nCSeq: 1 OPTIONS\r\n\r\n")
    assert message.call_id == "x"
    assert message.cseq == CSeq(1, "OPTIONS")


def test_field_list_and_index_of_a_parsed_message_are_built_on_use() -> None:
    message = parse_message(_HEAD.encode())
    headers = message.headers
    assert headers.index is None  # nothing asked for every value yet
    assert message.call_id == "c1@h" and message.cseq.seq == 1
    assert headers.index is None  # the first values were enough
    index = headers.lookup()
    assert index["via"] == (
        "SIP/2.0/UDP p.example.com;branch=z9hG4bK2",
        "SIP/2.0/UDP h.example.com;branch=z9hG4bK1",
    )
    entries = headers.entries
    assert entries[0] == ("via", "Via", "SIP/2.0/UDP p.example.com;branch=z9hG4bK2")
    assert entries[3] == ("to", "To", "<sip:a@example.com>")
    # A value given once is the same string in the field list and the first values.
    assert entries[4][2] is headers.first["call-id"]


def test_a_change_after_parsing_is_seen_by_every_read() -> None:
    message = parse_message(_HEAD.encode())
    assert message.cseq.seq == 1
    message.headers["CSeq"] = "2 OPTIONS"
    message.headers["Call-ID"] = "c2@h"
    message.headers.prepend("Via", "SIP/2.0/TCP n.example.com;branch=z9hG4bK3")
    assert message.cseq.seq == 2
    assert message.call_id == "c2@h"
    assert message.top_via.branch == "z9hG4bK3"
    assert message.headers.get_first("call-id") == "c2@h"
    assert len(message.headers.get_list("Via")) == 3


def test_content_length_fast_check_and_the_general_one() -> None:
    base = b"OPTIONS sip:a@b SIP/2.0\r\nCSeq: 1 OPTIONS\r\nContent-Length: %s\r\n\r\nabc"
    assert parse_message(base % b"3").content == b"abc"
    assert parse_message(base % b"003").content == b"abc"
    assert parse_message(base % b"2").content == b"ab"
    with pytest.raises(ParseError, match="larger than"):
        parse_message(base % b"4")
    with pytest.raises(ParseError, match="bad Content-Length"):
        parse_message(base % b"\xc2\xb3")  # a superscript three: a digit, not ASCII
    twice = b"OPTIONS sip:a@b SIP/2.0\r\nl: 3\r\nContent-Length: 2\r\n\r\nabc"
    with pytest.raises(ParseError, match="conflicting"):
        parse_message(twice)


def test_status_codes_must_be_ascii_digits() -> None:
    with pytest.raises(ParseError, match="bad status code"):
        parse_message("SIP/2.0 1²3 Odd\r\nCSeq: 1 OPTIONS\r\n\r\n".encode())


def test_module_exports_the_parse_functions() -> None:
    assert header_types.parse_via is parse_via
    assert Via.parse("SIP/2.0/UDP h;branch=z9hG4bKa").branch == "z9hG4bKa"


def test_the_usual_request_built_at_once_is_still_checked_when_strict() -> None:
    # A usual request line and Content-Length (the one-call path), a value only a full
    # check rejects: lenient parsing keeps it for later, strict=True raises now.
    data = (
        b"INVITE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        b"From: <sip:a@h>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: c\r\n"
        b"CSeq: 1 INVITE\r\nMax-Forwards: seventy\r\nContent-Length: 3\r\n\r\nabc"
    )
    message = parse_message(data)
    assert message.content == b"abc"
    assert message.headers.get_first("Max-Forwards") == "seventy"
    with pytest.raises(ParseError, match="Max-Forwards"):
        parse_message(data, strict=True)
    # Bytes past Content-Length are cut (RFC 3261 18.3) on the same request line.
    assert parse_message(data + b"def").content == b"abc"


def test_a_parsed_message_makes_its_defects_list_on_first_use() -> None:
    import gc

    message = parse_message(
        b"OPTIONS sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        b"Call-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    # One GC-tracked list fewer per message: none is held until defects is read.
    assert not [o for o in gc.get_referents(message) if isinstance(o, list)]
    assert message.defects == []
    message.defects.append("noted")
    assert message.defects == ["noted"]
    old = parse_message(b"OPTIONS sip:b@h SIP/3.0\r\nCall-ID: c\r\n\r\n")
    assert old.defects == ["unsupported SIP version SIP/3.0"]
