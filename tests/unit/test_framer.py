"""Tests for sipx._core.framer.StreamFramer (RFC 3261 18.3 framing on TCP/TLS)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipx._core.framer import StreamFramer
from sipx._core.parser import ParserLimits, parse_message
from sipx._errors import ParseError


def message(body: bytes = b"", *, call_id: str = "a", length_line: bytes | None = None) -> bytes:
    length = length_line if length_line is not None else b"Content-Length: %d" % len(body)
    return (
        b"MESSAGE sip:bob@biloxi.com SIP/2.0\r\n"
        b"Via: SIP/2.0/TCP client.atlanta.com;branch=z9hG4bK1\r\n"
        + length
        + b"\r\nCall-ID: "
        + call_id.encode()
        + b"\r\nContent-Type: text/plain\r\n\r\n"
        + body
    )


FIRST = message(b"hello\r\n\r\nworld", call_id="one")
SECOND = message(b"", call_id="two")
THIRD = message(b"x" * 100, call_id="three")


def test_several_messages_in_one_chunk() -> None:
    framer = StreamFramer()
    assert framer.feed(FIRST + SECOND + THIRD) == [FIRST, SECOND, THIRD]
    assert framer.buffered == 0
    assert [parse_message(m).call_id for m in (FIRST, SECOND, THIRD)] == ["one", "two", "three"]


def test_a_message_split_byte_by_byte() -> None:
    framer = StreamFramer()
    stream = FIRST + SECOND
    out: list[bytes] = []
    for index in range(len(stream)):
        out += framer.feed(stream[index : index + 1])
        if index < len(FIRST) - 1:
            assert out == []
    assert out == [FIRST, SECOND]
    assert framer.buffered == 0


def test_body_split_across_chunks() -> None:
    framer = StreamFramer()
    head_end = THIRD.index(b"\r\n\r\n") + 4
    assert framer.feed(THIRD[: head_end + 10]) == []
    assert framer.buffered == head_end + 10
    assert framer.feed(THIRD[head_end + 10 : -1]) == []
    assert framer.feed(THIRD[-1:] + FIRST[:5]) == [THIRD]
    assert framer.buffered == 5
    assert framer.feed(FIRST[5:]) == [FIRST]


def test_a_body_holding_crlf_crlf_arriving_late_is_not_rescanned() -> None:
    # Headers complete in the first read; the body (with an empty line in it) comes later.
    framer = StreamFramer()
    head_end = FIRST.index(b"\r\n\r\n") + 4
    assert framer.feed(FIRST[:head_end]) == []
    assert framer.feed(FIRST[head_end:]) == [FIRST]


def test_keepalives_between_messages_are_skipped_and_counted() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n" + FIRST + b"\r\n\r\n\r\n\r\n" + SECOND + b"\r\n") == [
        FIRST,
        SECOND,
    ]
    assert framer.keepalives == 3
    assert framer.crlfs == 7
    assert framer.buffered == 0
    assert framer.feed(THIRD) == [THIRD]  # the lone CRLF before it was no ping
    assert framer.keepalives == 3


def test_a_ping_split_over_two_reads_is_one_ping() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r") == []
    assert framer.feed(b"\n\r") == []
    assert framer.feed(b"\n") == []
    assert (framer.keepalives, framer.crlfs) == (1, 2)
    assert framer.feed(b"\r\n" + FIRST) == [FIRST]  # a lone CRLF (a pong) is not a ping
    assert (framer.keepalives, framer.crlfs) == (1, 3)


def test_bare_lf_framing() -> None:
    head_lines = FIRST[: FIRST.index(b"\r\n\r\n")].count(b"\r\n")
    lf = FIRST.replace(b"\r\n", b"\n", head_lines + 2)  # "...\n\nhello\r\n\r\nworld"
    mixed = FIRST.replace(b"\r\n", b"\n", head_lines + 1)  # "...\n\r\nhello..."
    for data in (lf, mixed):
        framer = StreamFramer()
        assert framer.feed(data + SECOND) == [data, SECOND]
        parsed = parse_message(data)
        assert parsed.content == b"hello\r\n\r\nworld"
        assert parsed.call_id == "one"


@pytest.mark.parametrize(
    "length_line",
    [b"l: 5", b"content-length:5", b"CONTENT-LENGTH  :  5  ", b"Content-Length:\r\n 5"],
)
def test_content_length_spellings(length_line: bytes) -> None:
    data = message(b"12345", length_line=length_line)
    assert StreamFramer().feed(data + SECOND) == [data, SECOND]


def test_content_length_need_not_be_the_last_header() -> None:
    data = message(b"abc")  # Content-Length sits between Via and Call-ID
    assert data.index(b"Content-Length") < data.index(b"Call-ID")
    assert StreamFramer().feed(data) == [data]


@pytest.mark.parametrize(
    ("length_line", "match"),
    [
        (b"X-Content-Length: 3", "no Content-Length"),
        (b"Content-Length: -3", "bad Content-Length"),
        (b"Content-Length: three", "bad Content-Length"),
        (b"Content-Length: 99999999999", "bad Content-Length"),
        (b"Content-Length: 3\r\nl: 4", "conflicting Content-Length"),
    ],
)
def test_bad_or_missing_content_length(length_line: bytes, match: str) -> None:
    with pytest.raises(ParseError, match=match):
        StreamFramer().feed(message(b"abc", length_line=length_line))


def test_equal_repeated_content_length_is_accepted() -> None:
    data = message(b"abc", length_line=b"Content-Length: 3\r\nl: 3")
    assert StreamFramer().feed(data) == [data]


def test_size_limits() -> None:
    limits = ParserLimits(max_message_size=200)
    with pytest.raises(ParseError, match="exceeds the limit"):
        StreamFramer(limits).feed(message(b"x" * 300))
    framer = StreamFramer(limits)
    with pytest.raises(ParseError, match="header section exceeds"):
        framer.feed(b"INVITE sip:a@b SIP/2.0\r\n" + b"X-Padding: yyyyyyyyyy\r\n" * 20)


def test_partial_header_section_waits() -> None:
    framer = StreamFramer()
    assert framer.feed(FIRST[:30]) == []
    assert framer.buffered == 30


@given(st.lists(st.integers(1, 60), max_size=40), st.sampled_from([b"", b"\r\n", b"\r\n\r\n"]))
def test_any_chunking_gives_the_same_messages(cuts: list[int], gap: bytes) -> None:
    stream = gap + FIRST + gap + SECOND + THIRD + gap
    framer = StreamFramer()
    out: list[bytes] = []
    position = 0
    for size in cuts:
        out += framer.feed(stream[position : position + size])
        position += size
    out += framer.feed(stream[position:])
    assert out == [FIRST, SECOND, THIRD]
    assert framer.buffered == 0
    assert framer.keepalives == (3 if gap == b"\r\n\r\n" else 0)


@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_parse_error(data: bytes) -> None:
    framer = StreamFramer(ParserLimits(max_message_size=300))
    try:
        for message_bytes in framer.feed(data):
            try:
                parse_message(message_bytes)
            except ParseError:
                pass
    except ParseError:
        pass


def test_messages_before_an_unframeable_one_are_not_lost() -> None:
    """A chunk holding a good message and then a bad Content-Length: the good one is framed,
    the error is kept (and raised on the next feed), the bad one stays pending for a 400."""
    good = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n"
    bad = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -5\r\n\r\n"
    framer = StreamFramer()
    assert framer.feed(good + bad) == [good]
    assert framer.error is not None and "Content-Length" in str(framer.error)
    assert framer.pending() == bad
    with pytest.raises(ParseError):
        framer.feed(b"more")
