"""Fuzz targets: what sipx does with bytes a peer chose, and the properties that must hold.

Each target takes one input and fails (raises AssertionError or an unexpected exception)
only on a bug. The rules, from sipx's contract with the network:

* a parser raises only :class:`sipx.ParseError` on bad input (never IndexError, ValueError,
  UnicodeError, RecursionError...), and reading any typed view of what it accepted raises
  only ParseError too;
* what parses serialises, and the serialised form is a fixed point (parse, write, parse,
  write gives the same bytes): what sipx puts on the wire, sipx reads back;
* the 400 sipx answers a malformed request with is itself a message sipx can parse (no
  bare CR or NUL copied from the peer into it);
* a stream is framed the same whether it arrives whole or byte by byte;
* the client's digest flow answers a challenge or raises only :class:`sipx.AuthError`,
  and the credentials it writes verify against the same password on the other side;
* RTP, RTCP and RFC 4733 payloads parse or raise ParseError, and round-trip.

``COUNTS`` records how many inputs each target ran (printed at the end of a pytest run by
``tests/fuzz/conftest.py``).
"""

from __future__ import annotations

from collections import Counter

from sipx import Auth, ParseError
from sipx._auth_flow import DigestAuth
from sipx._core import digest
from sipx._core.dtmf import TelephoneEvent
from sipx._core.framer import StreamFramer
from sipx._core.ids import IdSource
from sipx._core.malformed import answer_malformed
from sipx._core.message import Message, Request, Response
from sipx._core.parser import DEFAULT_LIMITS, ParserLimits, parse_message
from sipx._core.rtcp import build_compound, parse_compound
from sipx._core.rtp import RtpPacket
from sipx._core.sdp import SDPBody
from sipx._errors import AuthError

COUNTS: Counter[str] = Counter()

_VIEWS = (
    *("via", "top_via", "from_", "to", "call_id", "cseq", "contact", "route", "record_route"),
    *("max_forwards", "expires", "content_type", "body", "text"),
)


def _read_everything(message: Message) -> None:
    for name in _VIEWS:
        try:
            value = getattr(message, name)
        except ParseError:
            continue
        for item in value if isinstance(value, list) else [value]:
            for attribute in ("tag", "q", "expires", "is_wildcard", "branch", "host", "port"):
                try:
                    getattr(item, attribute, None)
                except ParseError:
                    pass
            str(item)
            if getattr(item, "is_wildcard", True) is False:
                try:
                    str(item.uri)
                except ParseError:
                    pass
    if isinstance(message, Request):
        try:
            message.uri.params  # noqa: B018
        except ParseError:
            pass
        try:
            message.check_essentials()
        except ParseError:
            pass
    try:
        message.validate()
    except ParseError:
        pass


def sip_message(data: bytes) -> None:
    """parse_message in both modes, every view, the serialised fixed point, the 400."""
    COUNTS["sip_message"] += 1
    for strict in (False, True):
        try:
            message = parse_message(data, strict=strict)
        except ParseError:
            continue
        _read_everything(message)
        wire = message.to_bytes()
        again = parse_message(wire)
        assert again.to_bytes() == wire, "serialising what was parsed is not a fixed point"
    answer = answer_malformed(data, "fuzzed", to_tag="fuzz")
    if answer is not None:
        wire = answer.to_bytes()
        response = parse_message(wire)
        assert isinstance(response, Response) and response.status_code in (400, 505)


def stream(data: bytes) -> None:
    """StreamFramer: the same messages and the same fault, whole or one byte at a time."""
    COUNTS["stream"] += 1

    def frame(chunks: list[bytes]) -> tuple[list[bytes], str | None, bytes]:
        framer = StreamFramer()
        out: list[bytes] = []
        for chunk in chunks:
            try:
                out += framer.feed(chunk)
            except ParseError:
                break
        error = str(framer.error) if framer.error is not None else None
        return out, error, framer.pending() if error is None else b""

    whole = frame([data])
    bytewise = frame([data[i : i + 1] for i in range(len(data))])
    assert whole[0] == bytewise[0][: len(whole[0])], "framing depends on how the bytes arrive"
    if whole[1] is None and bytewise[1] is None:
        assert whole == bytewise


def sdp(data: bytes) -> None:
    """SDPBody.parse: ParseError only; what parses writes a fixed point."""
    COUNTS["sdp"] += 1
    try:
        body = SDPBody.parse(data)
    except ParseError:
        return
    text = body.to_string()
    again = SDPBody.parse(text)
    assert again.to_string() == text, "SDP serialisation is not a fixed point"


def digest_header(data: bytes) -> None:
    """The digest parsers, and the client's answer verified as a server would."""
    COUNTS["digest"] += 1
    text = data.decode("utf-8", "surrogateescape")
    try:
        digest.parse_credentials(text)
    except ParseError:
        pass
    try:
        challenge = digest.parse_challenge(text)
    except ParseError:
        return
    if "\r" in text or "\n" in text or len(text) > DEFAULT_LIMITS.max_line_length:
        return  # no header line the message parser delivers carries these
    request = Request(
        "REGISTER",
        "sip:example.com",
        {
            "Via": "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKfuzz",
            "From": "<sip:alice@example.com>;tag=1",
            "To": "<sip:alice@example.com>",
            "Call-ID": "fuzz",
            "CSeq": "1 REGISTER",
        },
    )
    response = Response(401, headers={"WWW-Authenticate": text})
    flow = DigestAuth(IdSource(lambda n: "c0ffee"[:n].ljust(n, "0")), {})
    try:
        retry = flow.authorize(request, response, Auth.Digest("alice", "pw"), strict_realm=True)
    except AuthError:
        return
    assert retry is not None
    params = digest.parse_credentials(retry.headers["Authorization"])
    assert params["realm"] == challenge.realm and params["nonce"] == challenge.nonce
    assert digest.verify_credentials(params, password="pw", method="REGISTER")
    # the retry, as the server reads it (the answer to a challenge near the line limit may
    # pass it: the server's limit, not the round trip, is what that tests)
    reread = parse_message(retry.to_bytes(), limits=ParserLimits(max_line_length=1 << 20))
    assert digest.parse_credentials(reread.headers["Authorization"]) == params


def rtp(data: bytes) -> None:
    """RtpPacket.parse: ParseError only; a parsed packet round-trips; its payload read as an
    RFC 4733 event parses or raises ParseError."""
    COUNTS["rtp"] += 1
    try:
        packet = RtpPacket.parse(data)
    except ParseError:
        return
    assert RtpPacket.parse(packet.to_bytes()) == packet
    try:
        event = TelephoneEvent.parse(packet.payload)
    except ParseError:
        return
    assert TelephoneEvent.parse(event.to_bytes()) == event


def rtcp(data: bytes) -> None:
    """parse_compound: ParseError only; the packets it returns round-trip."""
    COUNTS["rtcp"] += 1
    try:
        packets = parse_compound(data)
    except ParseError:
        return
    if packets:
        assert parse_compound(build_compound(packets)) == packets


TARGETS = {
    "sip_message": sip_message,
    "stream": stream,
    "sdp": sdp,
    "digest": digest_header,
    "rtp": rtp,
    "rtcp": rtcp,
}
