"""Property-based fuzzing of every parser that reads what a peer sends (hypothesis).

Each target (tests/fuzz/fuzz_targets.py) gets raw bytes and mutations of real messages
(RFC 4475's torture messages, softphone INVITEs, SDP offers, digest headers, RTP and RTCP
packets): deletions, insertions of syntax characters and long runs, byte flips,
duplicated slices, truncations. The quick profile (the default: ``SIPX_FUZZ_EXAMPLES`` =
100 per test) runs with the rest of the suite in seconds; a campaign sets it higher::

    SIPX_FUZZ_EXAMPLES=200000 .venv/bin/python -m pytest tests/fuzz -p no:cacheprovider

and prints how many inputs each target ran. Failing inputs are kept by hypothesis (in
``.hypothesis/``) and replayed first on the next run.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import fuzz_targets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipx._core.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    SenderReport,
    SourceDescription,
    build_compound,
)
from sipx._core.rtp import RtpExtension, RtpPacket

EXAMPLES = int(os.environ.get("SIPX_FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

RFC4475 = Path(__file__).resolve().parent.parent / "data" / "rfc4475"

_SDP = (
    "v=0\r\n"
    "o=alice 3724394400 3724394401 IN IP4 192.0.2.10\r\n"
    "s=Talk\r\n"
    "c=IN IP4 192.0.2.10\r\n"
    "t=0 0\r\n"
    "a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\r\n"
    "m=audio 7078 RTP/AVP 96 0 8 18 101\r\n"
    "a=rtpmap:96 opus/48000/2\r\n"
    "a=fmtp:96 useinbandfec=1\r\n"
    "a=rtpmap:18 G729/8000\r\n"
    "a=fmtp:18 annexb=yes\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
    "a=ptime:20\r\n"
    "a=sendrecv\r\n"
    "m=video 9078 RTP/AVPF 97\r\n"
    "b=AS:512\r\n"
    "a=rtpmap:97 H264/90000\r\n"
    "a=rtcp:9079 IN IP4 192.0.2.10\r\n"
    "a=inactive\r\n"
)
_INVITE = (
    "INVITE sip:bob@example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK.Hq3Zx9PiQ;rport\r\n"
    'From: "Alice Liddell" <sip:alice@example.com>;tag=P3xCg~Ujl\r\n'
    "To: <sip:bob@example.com>\r\n"
    "CSeq: 20 INVITE\r\n"
    "Call-ID: 3kX2Zh0Tt8\r\n"
    "Max-Forwards: 70\r\n"
    "Supported: replaces, outbound, gruu\r\n"
    "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO, UPDATE\r\n"
    'Contact: <sip:alice@192.0.2.10;transport=udp>;+sip.instance="<urn:uuid:1>"\r\n'
    "Route: <sip:proxy.example.com;lr>\r\n"
    "Content-Type: application/sdp\r\n"
    f"Content-Length: {len(_SDP)}\r\n\r\n{_SDP}"
).encode()
_RESPONSE = (
    b"SIP/2.0 407 Proxy Authentication Required\r\n"
    b"Via: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bK.Hq3Zx9PiQ;received=203.0.113.9;rport=4000\r\n"
    b"From: <sip:alice@example.com>;tag=P3xCg~Ujl\r\n"
    b"To: <sip:bob@example.com>;tag=as1\r\n"
    b"Call-ID: 3kX2Zh0Tt8\r\n"
    b"CSeq: 20 INVITE\r\n"
    b'Proxy-Authenticate: Digest realm="example.com", nonce="abc", qop="auth,auth-int",'
    b" algorithm=SHA-256, stale=FALSE\r\n"
    b"Content-Length: 0\r\n\r\n"
)
SIP_SEEDS = [_INVITE, _RESPONSE] + [path.read_bytes() for path in sorted(RFC4475.glob("*.dat"))]
SDP_SEEDS = [
    _SDP.encode(),
    b"v=0\no=- 0 0 IN IP6 ::1\ns=-\nc=IN IP6 ::1\nt=0 0\nm=audio 0 RTP/AVP 0\n",
]
DIGEST_SEEDS = [
    b'Digest realm="sipx", nonce="AAAA_x-y", qop="auth", algorithm=MD5',
    b'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256,'
    b' nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",'
    b' opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"',
    b'Digest realm="a\\"b\\\\c", nonce="n", algorithm=SHA-512-256-sess, domain="sip:x sip:y"',
    b'Digest username="alice", realm="sipx", nonce="n", uri="sip:x", response="0123", nc=00000001,'
    b' cnonce="c", qop=auth',
    b"Digest realm=x,nonce=y",
]
RTP_SEEDS = [
    RtpPacket(
        payload_type=0, sequence=1, timestamp=160, ssrc=0xDEADBEEF, payload=b"\xff" * 160
    ).to_bytes(),
    RtpPacket(
        payload_type=101,
        sequence=65535,
        timestamp=2**32 - 1,
        ssrc=7,
        marker=True,
        csrcs=(1, 2, 3),
        extension=RtpExtension(profile=0xBEDE, data=b"\x10\xab\x00\x00"),
        payload=b"\x05\x8a\x03\x20",
        padding=True,
    ).to_bytes(),
]
_BLOCK = ReportBlock(
    ssrc=9,
    fraction_lost=12,
    cumulative_lost=-3,
    highest_seq=70000,
    jitter=5,
    lsr=1,
    dlsr=2,
)
RTCP_SEEDS = [
    build_compound(
        [
            SenderReport(
                ssrc=1,
                ntp_timestamp=2**63,
                rtp_timestamp=160,
                packet_count=3,
                octet_count=480,
                reports=(_BLOCK,),
            ),
            SourceDescription(ssrc=1, cname="alice@192.0.2.10"),
            Bye(ssrcs=(1, 2), reason="leaving"),
        ]
    ),
    build_compound([ReceiverReport(ssrc=2, reports=(_BLOCK, _BLOCK))]),
]

_TOKENS = [
    *(b" ", b"\t", b"\r", b"\n", b"\r\n", b"\r\n ", b"\r\n\r\n", b"\x00", b"\xff", b"\xc3\xa9"),
    *(b":", b";", b",", b"=", b'"', b"\\", b"<", b">", b"@", b"%", b"%00", b"?", b"&"),
    *(b"[", b"]", b"/", b"*", b"-", b".", b"9" * 11, b"9" * 3000, b"a" * 9000, b"0x"),
    *(b"SIP/2.0", b"SIP/3.0", b"sip:", b"sips:", b"tel:", b"Via: ", b"l: ", b"v: "),
    *(b"Content-Length: ", b"z9hG4bK", b";branch=", b";tag=", b";lr", b"[::1]"),
    *(b"Digest ", b"realm=", b"nonce=", b"qop=", b"algorithm=", b"-sess"),
    *(b"m=", b"a=", b"c=", b"o=", b"v=0", b"IN IP4 ", b"IN IP6 ", b"RTP/AVP ", b"rtpmap:"),
]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with 1 to 8 edits: delete, insert, overwrite, duplicate, flip, truncate."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 8))):
        position = draw(st.integers(0, len(data)))
        action = draw(st.integers(0, 6))
        if action == 0:
            del data[position : position + draw(st.integers(1, 16))]
        elif action == 1:
            data[position:position] = draw(st.sampled_from(_TOKENS))
        elif action == 2:
            data[position : position + 1] = draw(st.sampled_from(_TOKENS))
        elif action == 3:
            start = draw(st.integers(0, len(data)))
            data[position:position] = data[start : start + draw(st.integers(1, 64))]
        elif action == 4 and position < len(data):
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif action == 5:
            del data[position:]
        elif position + 4 <= len(data):  # an integer field overwritten (binary formats)
            value = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0xFFFFFFFF]))
            struct.pack_into("!I", data, position, value)
    return bytes(data)


# -- SIP messages ------------------------------------------------------------------------------
@FUZZ
@given(st.binary(max_size=600))
def test_sip_message_raw(data: bytes) -> None:
    fuzz_targets.sip_message(data)


@FUZZ
@given(mutated(SIP_SEEDS))
def test_sip_message_mutated(data: bytes) -> None:
    fuzz_targets.sip_message(data)


@FUZZ
@given(st.binary(max_size=400).map(lambda tail: b"INVITE sip:a@b SIP/2.0\r\n" + tail))
def test_sip_message_after_a_start_line(data: bytes) -> None:
    fuzz_targets.sip_message(data)


@FUZZ
@given(st.lists(mutated(SIP_SEEDS), min_size=1, max_size=3).map(b"".join))
def test_stream_framing(data: bytes) -> None:
    fuzz_targets.stream(data)


# -- SDP ---------------------------------------------------------------------------------------
@FUZZ
@given(st.binary(max_size=400))
def test_sdp_raw(data: bytes) -> None:
    fuzz_targets.sdp(data)


@FUZZ
@given(mutated(SDP_SEEDS))
def test_sdp_mutated(data: bytes) -> None:
    fuzz_targets.sdp(data)


# -- digest ------------------------------------------------------------------------------------
@FUZZ
@given(st.binary(max_size=300).map(lambda tail: b"Digest " + tail))
def test_digest_raw(data: bytes) -> None:
    fuzz_targets.digest_header(data)


@FUZZ
@given(mutated(DIGEST_SEEDS))
def test_digest_mutated(data: bytes) -> None:
    fuzz_targets.digest_header(data)


# -- RTP, RTCP ---------------------------------------------------------------------------------
@FUZZ
@given(st.binary(max_size=300))
def test_rtp_raw(data: bytes) -> None:
    fuzz_targets.rtp(data)


@FUZZ
@given(mutated(RTP_SEEDS))
def test_rtp_mutated(data: bytes) -> None:
    fuzz_targets.rtp(data)


@FUZZ
@given(st.binary(max_size=300).map(lambda tail: b"\x80" + tail))
def test_rtcp_raw(data: bytes) -> None:
    fuzz_targets.rtcp(data)


@FUZZ
@given(mutated(RTCP_SEEDS))
def test_rtcp_mutated(data: bytes) -> None:
    fuzz_targets.rtcp(data)
