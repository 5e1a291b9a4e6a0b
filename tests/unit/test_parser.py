"""Tests for sipx._core.parser: start lines, header sections, bodies, limits, robustness."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sipx
from sipx._core.header_types import NameAddr
from sipx._core.message import Message, Request, Response
from sipx._core.parser import DEFAULT_LIMITS, ParserLimits, parse_message
from sipx._errors import ParseError

RFC4475 = Path(__file__).resolve().parent.parent / "data" / "rfc4475"

OPTIONS = (
    b"OPTIONS sip:carol@chicago.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKhjhs8ass877\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n"
    b"To: <sip:carol@chicago.com>\r\n"
    b"Call-ID: a84b4c76e66710\r\n"
    b"CSeq: 63104 OPTIONS\r\n"
    b"Contact: <sip:alice@pc33.atlanta.com>\r\n"
    b"Accept: application/sdp\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

RINGING = (
    b"SIP/2.0 180 Ringing\r\n"
    b"Via: SIP/2.0/UDP server10.biloxi.com;branch=z9hG4bK4b43c2ff8.1;received=192.0.2.3\r\n"
    b"Via: SIP/2.0/UDP bigbox3.site3.atlanta.com;branch=z9hG4bK77ef4c2312983.1\r\n"
    b"From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n"
    b"To: Bob <sip:bob@biloxi.com>;tag=a6c85cf\r\n"
    b"Call-ID: a84b4c76e66710\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def test_request() -> None:
    message = parse_message(OPTIONS, strict=True)
    assert isinstance(message, Request)
    assert message.method == "OPTIONS"
    assert str(message.uri) == "sip:carol@chicago.com"
    assert message.version == "SIP/2.0"
    assert message.top_via.branch == "z9hG4bKhjhs8ass877"
    assert message.from_.tag == "1928301774"
    assert message.call_id == "a84b4c76e66710"
    assert message.cseq.seq == 63104
    assert message.content == b""
    assert message.defects == []
    assert message.to_bytes() == OPTIONS


def test_response() -> None:
    message = parse_message(RINGING, strict=True)
    assert isinstance(message, Response)
    assert (message.status_code, message.reason_phrase) == (180, "Ringing")
    assert [v.received for v in message.via] == ["192.0.2.3", None]
    assert message.to.tag == "a6c85cf"
    assert message.request is None and message.history == []
    assert message.to_bytes() == RINGING


def test_bytearray_and_memoryview_are_accepted() -> None:
    assert parse_message(bytearray(OPTIONS)) == parse_message(memoryview(OPTIONS))


def test_text_is_refused() -> None:
    with pytest.raises(TypeError):
        parse_message(OPTIONS.decode())  # type: ignore[arg-type]


def test_body_and_content_length() -> None:
    head = b"MESSAGE sip:a@b SIP/2.0\r\nContent-Type: text/plain\r\n"
    message = parse_message(head + b"Content-Length: 5\r\n\r\nhello")
    assert message.content == b"hello"
    # Over a datagram, bytes past Content-Length are dropped (RFC 3261 18.3).
    assert parse_message(head + b"l: 2\r\n\r\nhello").content == b"he"
    # Without Content-Length, the body is the rest of the datagram.
    assert parse_message(head + b"\r\nhello\r\n\r\nworld").content == b"hello\r\n\r\nworld"
    # A body with a CRLF CRLF in it is not confused with the end of the headers.
    assert parse_message(head + b"l: 9\r\n\r\n\r\n\r\nabcde").content == b"\r\n\r\nabcde"
    # Two equal Content-Length fields are tolerated.
    assert parse_message(head + b"l: 2\r\nContent-Length: 2\r\n\r\nhi").content == b"hi"


@pytest.mark.parametrize(
    ("length", "match"),
    [
        (b"6", "larger than the 5 bytes"),
        (b"-1", "bad Content-Length"),
        (b"five", "bad Content-Length"),
        (b"\xc2\xb2", "bad Content-Length"),  # "²" is a digit to str.isdigit
        (b"9" * 5000, "larger than"),
        (b"", "bad Content-Length"),
    ],
)
def test_bad_content_length(length: bytes, match: str) -> None:
    with pytest.raises(ParseError, match=match):
        parse_message(b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: " + length + b"\r\n\r\nhello")


def test_conflicting_content_lengths() -> None:
    with pytest.raises(ParseError, match="conflicting Content-Length"):
        parse_message(b"MESSAGE sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\nhello")


def test_leading_crlfs_are_ignored() -> None:
    assert parse_message(b"\r\n\r\n\r\n" + OPTIONS) == parse_message(OPTIONS)
    with pytest.raises(ParseError):
        parse_message(b"\r\n\r\n")


def test_bare_lf_line_ends() -> None:
    lf = OPTIONS.replace(b"\r\n", b"\n")
    message = parse_message(lf + b"body", strict=True)
    assert message == parse_message(OPTIONS)
    assert message.content == b""
    with_body = b"MESSAGE sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h\nl: 10\n\nab\r\n\r\ncdef"
    assert parse_message(with_body).content == b"ab\r\n\r\ncdef"
    mixed = b"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\nl: 2\r\n\nhi"
    parsed = parse_message(mixed)
    assert parsed.headers["Via"] == "SIP/2.0/UDP h"
    assert parsed.content == b"hi"


def test_folded_headers() -> None:
    message = parse_message(
        b"OPTIONS sip:a@b SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP h\r\n ;branch=z9hG4bK1\r\n"
        b"Subject: a\r\n\tb\r\n  c\r\n"
        b"l: 0\r\n\r\n"
    )
    assert message.top_via.branch == "z9hG4bK1"
    assert message.headers["Subject"] == "a b c"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n",  # no empty line
        b" OPTIONS sip:a@b SIP/2.0\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\n folded onto the start line\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nNo colon here\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\n: x\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: a\rb\r\n\r\n",  # bare CR
        b"OPTIONS sip:a@b\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0 \r\n\r\n",
        b"OPTIONS  sip:a@b SIP/2.0\r\n\r\n",
        b"OPTIONS sip:a@b HTTP/1.1\r\n\r\n",
        b"OPTIONS sip:a@b SIP/two\r\n\r\n",
        b"OPT(IONS sip:a@b SIP/2.0\r\n\r\n",
        b"OPTIONS <sip:a@b> SIP/2.0\r\n\r\n",
        b"OPTIONS a-b SIP/2.0\r\n\r\n",
        b"SIP/2.0 99 Low\r\n\r\n",
        b"SIP/2.0 700 High\r\n\r\n",
        b"SIP/2.0 2000 OK\r\n\r\n",
        b"SIP/2.0 2O0 OK\r\n\r\n",
        b"SIP/2.0 \xd9\xa1\xd9\xa0\xd9\xa0 Arabic-Indic digits\r\n\r\n",
        b"SIP/2.0\r\n\r\n",
        b"SIP/x 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n",
    ],
)
def test_malformed_messages(data: bytes) -> None:
    with pytest.raises(ParseError):
        parse_message(data)


def test_other_versions_are_defects() -> None:
    message = parse_message(b"SIP/3.0 200 OK\r\nl: 0\r\n\r\n")
    assert message.defects == ["unsupported SIP version SIP/3.0"]
    with pytest.raises(ParseError, match="unsupported SIP version"):
        parse_message(b"SIP/3.0 200 OK\r\nl: 0\r\n\r\n", strict=True)


def test_parse_error_offset() -> None:
    with pytest.raises(ParseError) as info:
        parse_message(b"OPTIONS sip:a@b SIP/2.0\r\n")
    assert info.value.offset == 25


def test_strict_checks_values_tolerant_defers_them() -> None:
    data = OPTIONS.replace(b"CSeq: 63104 OPTIONS", b"CSeq: many OPTIONS")
    message = parse_message(data)
    with pytest.raises(ParseError, match="CSeq"):
        message.cseq  # noqa: B018
    with pytest.raises(ParseError, match="CSeq"):
        parse_message(data, strict=True)


# -- limits ------------------------------------------------------------------------------------


def test_default_limits() -> None:
    assert ParserLimits(65_535, 256, 8_192) == DEFAULT_LIMITS


def test_oversize_message() -> None:
    limits = ParserLimits(max_message_size=len(OPTIONS) - 1)
    with pytest.raises(ParseError, match="exceeds the limit"):
        parse_message(OPTIONS, limits=limits)
    assert parse_message(OPTIONS, limits=ParserLimits(max_message_size=len(OPTIONS)))


def test_too_many_headers() -> None:
    many = b"OPTIONS sip:a@b SIP/2.0\r\n" + b"X-A: 1\r\n" * 257 + b"\r\n"
    with pytest.raises(ParseError, match="more than 256 header lines"):
        parse_message(many)
    assert (
        len(parse_message(many, limits=ParserLimits(max_headers=257)).headers.get_list("X-A"))
        == 257
    )
    with pytest.raises(ParseError, match="more than 3"):
        parse_message(OPTIONS, limits=ParserLimits(max_headers=3))


def test_too_long_line() -> None:
    long_line = b"OPTIONS sip:a@b SIP/2.0\r\nSubject: " + b"x" * 9000 + b"\r\n\r\n"
    with pytest.raises(ParseError, match="longer than 8192"):
        parse_message(long_line)
    assert parse_message(long_line, limits=ParserLimits(max_line_length=10_000))
    with pytest.raises(ParseError, match="longer than 100"):
        parse_message(
            OPTIONS.replace(b"a84b4c76e66710", b"c" * 200), limits=ParserLimits(max_line_length=100)
        )
    folded = b"OPTIONS sip:a@b SIP/2.0\r\nSubject: " + b"x\r\n " * 5000 + b"\r\n\r\n"
    assert parse_message(folded.replace(b"x\r\n " * 5000, b"x\r\n " * 3000))  # 6000 unfolded
    with pytest.raises(ParseError, match="longer than 8192"):
        parse_message(folded)
    long_start = b"OPTIONS sip:" + b"a" * 9000 + b"@b SIP/2.0\r\n\r\n"
    with pytest.raises(ParseError, match="longer than 8192"):
        parse_message(long_start)


# -- robustness ----------------------------------------------------------------------------------

PROPERTIES = [
    *("via", "top_via", "from_", "to", "call_id", "cseq", "contact", "route", "record_route"),
    *("max_forwards", "expires", "content_type", "body", "text"),
]


def read_everything(message: Message) -> None:
    """Every typed view, URI and check; only ParseError may come out of any of them."""
    for name in PROPERTIES:
        try:
            value = getattr(message, name)
        except ParseError:
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, NameAddr):
                item.tag, item.q, item.expires, str(item)
                if not item.is_wildcard:
                    try:
                        item.uri  # noqa: B018
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
    message.to_bytes()


def parse_and_read(data: bytes) -> None:
    for strict in (False, True):
        try:
            message = parse_message(data, strict=strict)
        except ParseError:
            continue
        read_everything(message)


SEEDS = [OPTIONS, RINGING] + [path.read_bytes() for path in sorted(RFC4475.glob("*.dat"))]


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_parse_error(data: bytes) -> None:
    parse_and_read(data)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_after_a_start_line_raise_only_parse_error(tail: bytes) -> None:
    parse_and_read(b"INVITE sip:bob@biloxi.com SIP/2.0\r\n" + tail)
    parse_and_read(b"SIP/2.0 200 OK\r\n" + tail + b"\r\n\r\n")


_interesting = st.sampled_from(
    [
        b" ",
        b"\t",
        b"\r",
        b"\n",
        b"\r\n",
        b"\r\n ",
        b":",
        b";",
        b",",
        b'"',
        b"\\",
        b"<",
        b">",
        b"@",
        b"=",
        b"%",
        b"?",
        b"[",
        b"]",
        b"/",
        b"\x00",
        b"\xff",
        b"\xc2\xb2",
        b"9" * 12,
        b"9" * 5000,
        b"SIP/2.0",
        b"sip:",
        b"tel:",
        b"Via: ",
        b"l: ",
        b"*",
        b"z9hG4bK",
    ]
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, len(data)))
        action = draw(st.integers(0, 3))
        if action == 0:
            del data[position : position + draw(st.integers(1, 8))]
        elif action == 1:
            data[position:position] = draw(_interesting)
        elif action == 2:
            data[position : position + 1] = draw(_interesting)
        else:
            start = draw(st.integers(0, len(data)))
            data[position:position] = data[start : start + draw(st.integers(1, 40))]
    return bytes(data)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_messages_raise_only_parse_error(data: bytes) -> None:
    parse_and_read(data)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), st.integers(0, 2000))
def test_truncated_messages_raise_only_parse_error(data: bytes, cut: int) -> None:
    parse_and_read(data[:cut])


# Header lines built around n repetitions of what a pattern or a loop repeats on, with an
# ending that makes the value fail late.
HOSTILE_LINES: dict[str, Callable[[int], bytes]] = {
    "via-host": lambda n: b"Via: SIP/2.0/UDP " + b"a" * n + b"-",
    "via-params": lambda n: b"Via: SIP/2.0/UDP h" + b";a" * (n // 2) + b";=",
    "display-name": lambda n: b"From: " + b"tok " * (n // 4) + b"<",
    "quoted-escapes": lambda n: b'Contact: "' + b"\\" * n,
    "contact-list": lambda n: b"Contact: " + b"<sip:a@b>, " * (n // 11) + b'"',
    "uri-user": lambda n: b"To: <sip:" + b"a" * n + b"@>",
    "cseq-digits": lambda n: b"CSeq: " + b"1" * n,
}
SIPX = Path(sipx.__file__).resolve().parent


def sipx_lines_run(data: bytes) -> int:
    """How many lines of sipx code ``parse_and_read(data)`` executes (a sys.settrace count:
    deterministic, unlike a duration)."""
    count = 0

    def count_lines(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return count_lines

    def in_sipx(frame: FrameType, event: str, arg: object) -> Any:
        return count_lines if frame.f_code.co_filename.startswith(str(SIPX)) else None

    previous = sys.gettrace()
    sys.settrace(in_sipx)
    try:
        parse_and_read(data)
    finally:
        sys.settrace(previous)
    return count


@pytest.mark.parametrize("line", HOSTILE_LINES.values(), ids=HOSTILE_LINES.keys())
def test_hostile_values_cost_linear_work(line: Callable[[int], bytes]) -> None:
    """Four times the input costs at most ~four times the work (a quadratic loop: 16x).

    Counts Python lines run in sipx; the regex engine's own steps are not visible this way,
    only the Python loops around and between the patterns."""
    small, large = (
        sipx_lines_run(b"OPTIONS sip:a@b SIP/2.0\r\n" + line(n) + b"\r\n\r\n") for n in (2000, 8000)
    )
    assert 0 < large <= 5 * small, (small, large)
