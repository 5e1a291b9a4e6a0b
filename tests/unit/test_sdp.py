"""Tests for sipx._core.sdp (RFC 8866 SDP, RFC 3264 offer/answer)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipx._core import sdp
from sipx._core.sdp import Codec, Connection, MediaDescription, Origin, SDPBody, SDPLine
from sipx._errors import ParseError

PCMU = {"payload": "0", "name": "PCMU", "rate": "8000"}
PCMA = {"payload": "8", "name": "PCMA", "rate": "8000"}

SIPP_UAC = (
    "v=0\r\n"
    "o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n"
    "s=-\r\n"
    "c=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\n"
    "m=audio 6000 RTP/AVP 0\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
)

ASTERISK = (
    "v=0\r\n"
    "o=- 1856547869 1856547871 IN IP4 192.168.1.10\r\n"
    "s=Asterisk\r\n"
    "c=IN IP4 192.168.1.10\r\n"
    "t=0 0\r\n"
    "m=audio 18204 RTP/AVP 0 8 9 3 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:9 G722/8000\r\n"
    "a=rtpmap:3 GSM/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-16\r\n"
    "a=ptime:20\r\n"
    "a=maxptime:150\r\n"
    "a=sendrecv\r\n"
)

# chan_sip flavour: static payloads without rtpmap for 18, odd attribute values.
ASTERISK_CHAN_SIP = (
    "v=0\r\n"
    "o=root 1821424829 1821424829 IN IP4 10.0.0.5\r\n"
    "s=Asterisk PBX 16.2.1~dfsg-2ubuntu1\r\n"
    "c=IN IP4 10.0.0.5\r\n"
    "t=0 0\r\n"
    "m=audio 12860 RTP/AVP 8 0 18 101\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-16\r\n"
    "a=silenceSupp:off - - - -\r\n"
    "a=ptime:20\r\n"
    "a=sendrecv\r\n"
)

BARESIP = (
    "v=0\n"
    "o=- 1213526281 3093563826 IN IP6 2001:db8::10\n"
    "s=-\n"
    "c=IN IP6 2001:db8::10\n"
    "b=AS:1152\n"
    "t=0 0\n"
    "a=tool:baresip 3.10.1\n"
    "m=audio 10838 RTP/AVP 96 0 8 101\n"
    "b=AS:128\n"
    "a=rtpmap:96 opus/48000/2\n"
    "a=fmtp:96 stereo=1;sprop-stereo=1\n"
    "a=rtpmap:0 PCMU/8000\n"
    "a=rtpmap:8 PCMA/8000\n"
    "a=rtpmap:101 telephone-event/8000\n"
    "a=fmtp:101 0-15\n"
    "a=rtcp-mux\n"
    "a=ssrc:1460291218 cname:7ac9c2f3-16ab-4a55-a33f-2f4de6c9d0d4\n"
    "a=sendrecv\n"
    "a=label:1\n"
    "a=mid:0\n"
    "m=video 10840 RTP/AVPF 96 97\n"
    "b=AS:1024\n"
    "a=rtpmap:96 H264/90000\n"
    "a=fmtp:96 packetization-mode=0;profile-level-id=42e01f\n"
    "a=rtpmap:97 VP8/90000\n"
    "a=rtcp-fb:* nack pli\n"
    "a=rtcp-mux\n"
    "a=sendrecv\n"
)

# Every RFC 8866 line type, plus one the RFC does not define, in canonical order.
ALL_LINE_TYPES = (
    "v=0\r\n"
    "o=jdoe 3724394400 3724394405 IN IP4 198.51.100.1\r\n"
    "s=Call to John Smith\r\n"
    "i=SDP Offer #1\r\n"
    "u=http://www.jdoe.example.com/home.html\r\n"
    "e=Jane Doe <jane@jdoe.example.com>\r\n"
    "p=+1 617 555-6011\r\n"
    "c=IN IP4 198.51.100.1\r\n"
    "b=CT:128\r\n"
    "t=3724394400 3724398000\r\n"
    "r=7d 1h 0 25h\r\n"
    "t=3724484400 3724488000\r\n"
    "z=2882844526 -1h 2898848070 0\r\n"
    "k=prompt\r\n"
    "x=vendor-extension line\r\n"
    "a=recvonly\r\n"
    "m=audio 49170 RTP/AVP 0\r\n"
    "y=unknown right after m\r\n"
    "i=main audio\r\n"
    "c=IN IP4 198.51.100.2\r\n"
    "c=IN IP4 198.51.100.3\r\n"
    "b=AS:64\r\n"
    "k=prompt\r\n"
    "m=video 51372/2 RTP/AVP 99\r\n"
    "c=IN IP6 2001:db8::2\r\n"
    "a=rtpmap:99 h263-1998/90000\r\n"
)


def _offer(**spec: Any) -> SDPBody:
    media_spec: dict[str, Any] = {"media": "audio", "port": 8000, "codecs": [PCMU, PCMA]}
    media_spec.update(spec)
    return SDPBody.create_offer("s", "alice", "192.0.2.1", "192.0.2.1", [media_spec], 42)


# ---------------------------------------------------------------------------------------
# create_offer
# ---------------------------------------------------------------------------------------


def test_create_offer_as_in_the_guide() -> None:
    body = SDPBody.create_offer(
        session_name="My Call",
        origin_username="1111",
        origin_address="127.0.0.1",
        connection_address="127.0.0.1",
        media_specs=[
            {
                "media": "audio",
                "port": 8000,
                "codecs": [
                    {"payload": "0", "name": "PCMU", "rate": "8000"},
                    {"payload": "8", "name": "PCMA", "rate": "8000"},
                ],
            }
        ],
        session_id=123456,
    )
    text = body.to_string()
    assert text.endswith("\r\n")
    assert text.split("\r\n")[:-1] == [
        "v=0",
        "o=1111 123456 123456 IN IP4 127.0.0.1",
        "s=My Call",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        "m=audio 8000 RTP/AVP 0 8",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=sendrecv",
    ]
    assert str(body) == text
    assert body.to_bytes() == text.encode()
    assert SDPBody.parse(text) == body
    assert SDPBody.parse(body.to_bytes()) == body
    assert body.get_codecs_summary() == ["PCMU/8000", "PCMA/8000"]
    assert ", ".join(body.get_codecs_summary()) == "PCMU/8000, PCMA/8000"
    assert body.connection_address == "127.0.0.1"
    assert body.direction == "sendrecv"


def test_create_offer_default_session_id_is_deterministic_and_numeric() -> None:
    def make(user: str) -> SDPBody:
        return SDPBody.create_offer("My Call", user, "127.0.0.1", "127.0.0.1", [])

    first, again, other = make("1111"), make("1111"), make("2222")
    assert first.origin.sess_id.isdigit()
    assert first.origin.sess_version == first.origin.sess_id
    assert first.origin == again.origin
    assert first.origin.sess_id != other.origin.sess_id


def test_create_offer_options_ipv6_int_payloads_and_extras() -> None:
    body = SDPBody.create_offer(
        "v6",
        "bob",
        "2001:db8::1",
        "2001:db8::2",
        [
            {
                "media": "audio",
                "port": 4000,
                "protocol": "RTP/AVPF",
                "direction": "sendonly",
                "ptime": 20,
                "attributes": [("rtcp-mux", None)],
                "codecs": [
                    {
                        "payload": 111,
                        "name": "opus",
                        "rate": 48000,
                        "channels": 2,
                        "fmtp": "useinbandfec=1",
                    },
                    {"payload": 9},
                    {"payload": 101, "name": "telephone-event", "rate": 8000, "fmtp": "0-16"},
                ],
            },
            {
                "media": "video",
                "port": 4002,
                "codecs": [{"payload": 96, "name": "VP8", "rate": 90000}],
            },
        ],
        session_id=7,
        session_version=9,
    )
    assert body.to_lines() == [
        "v=0",
        "o=bob 7 9 IN IP6 2001:db8::1",
        "s=v6",
        "c=IN IP6 2001:db8::2",
        "t=0 0",
        "m=audio 4000 RTP/AVPF 111 9 101",
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 useinbandfec=1",
        "a=rtpmap:9 G722/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=rtcp-mux",
        "a=sendonly",
        "m=video 4002 RTP/AVP 96",
        "a=rtpmap:96 VP8/90000",
        "a=sendrecv",
    ]
    audio = body.media[0]
    assert audio.codecs == [
        Codec("111", "opus", 48000, 2, "useinbandfec=1"),
        Codec("9", "G722", 8000),
        Codec("101", "telephone-event", 8000, None, "0-16"),
    ]
    assert audio.ptime == 20
    assert audio.direction == "sendonly"
    # Only audio streams are summarised.
    assert body.get_codecs_summary() == ["opus/48000/2", "G722/8000", "telephone-event/8000"]
    assert SDPBody.parse(body.to_string()) == body


@pytest.mark.parametrize(
    "spec",
    [
        {"media": "audio", "port": 8000, "codecs": [{"name": "PCMU", "rate": 8000}]},
        {"media": "audio", "port": 8000, "codecs": [{"payload": 96, "name": "opus"}]},
        {"media": "audio", "port": 8000, "codecs": [{"payload": 96, "name": "x", "rate": "fast"}]},
        {"media": "audio", "port": 8000, "codecs": [PCMU], "direction": "sideways"},
        {"media": "audio", "codecs": [PCMU]},
    ],
)
def test_create_offer_rejects_bad_specs(spec: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SDPBody.create_offer("s", "u", "127.0.0.1", "127.0.0.1", [spec])


# ---------------------------------------------------------------------------------------
# create_answer
# ---------------------------------------------------------------------------------------

OFFER_WITH_DTMF = (
    "v=0\r\n"
    "o=- 1 1 IN IP4 203.0.113.5\r\n"
    "s=-\r\n"
    "c=IN IP4 203.0.113.5\r\n"
    "t=0 0\r\n"
    "m=audio 30000 RTP/AVP 18 8 0 101\r\n"
    "a=rtpmap:18 G729/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-16\r\n"
    "a=ptime:30\r\n"
    "a=sendrecv\r\n"
)


def test_create_answer_intersects_codecs_in_offer_order_with_offer_payloads() -> None:
    answer = SDPBody.create_answer(
        OFFER_WITH_DTMF, "bob", "198.51.100.7", "198.51.100.7", session_id=5
    )
    assert answer.to_lines() == [
        "v=0",
        "o=bob 5 5 IN IP4 198.51.100.7",
        "s=-",
        "c=IN IP4 198.51.100.7",
        "t=0 0",
        "m=audio 8000 RTP/AVP 8 0 101",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:30",
        "a=sendrecv",
    ]
    assert SDPBody.parse(answer.to_string()) == answer


def test_create_answer_keeps_dynamic_payload_numbers_of_the_offer() -> None:
    offer = _offer(
        codecs=[
            {"payload": 97, "name": "pcmu", "rate": 8000},  # dynamic number, static codec
            {"payload": 120, "name": "telephone-event", "rate": 8000, "fmtp": "0-15"},
        ]
    )
    answer = SDPBody.create_answer(offer, "bob", "10.0.0.2", "10.0.0.2", port=20000)
    media = answer.media[0]
    assert media.port == 20000
    assert media.formats == ["97", "120"]
    assert media.codecs == [
        Codec("97", "pcmu", 8000),
        Codec("120", "telephone-event", 8000, None, "0-15"),
    ]


def test_create_answer_supplies_our_fmtp_when_offer_has_none() -> None:
    offer = _offer(codecs=[PCMU, {"payload": 101, "name": "telephone-event", "rate": 8000}])
    media = SDPBody.create_answer(offer, "b", "10.0.0.2", "10.0.0.2").media[0]
    assert media.fmtp(101) == "0-16"


def test_create_answer_drops_telephone_event_we_do_not_support() -> None:
    answer = SDPBody.create_answer(
        OFFER_WITH_DTMF,
        "b",
        "10.0.0.2",
        "10.0.0.2",
        supported_codecs=[{"name": "PCMU", "rate": 8000}],
    )
    assert answer.media[0].formats == ["0"]
    assert answer.get_codecs_summary() == ["PCMU/8000"]


@pytest.mark.parametrize(
    ("offered", "expected"),
    [
        ("sendrecv", "sendrecv"),
        ("sendonly", "recvonly"),
        ("recvonly", "sendonly"),
        ("inactive", "inactive"),
    ],
)
def test_create_answer_mirrors_direction(offered: str, expected: str) -> None:
    answer = SDPBody.create_answer(_offer(direction=offered), "b", "10.0.0.2", "10.0.0.2")
    assert answer.media[0].direction == expected
    assert answer.media[0].get_attributes(expected) == [None]
    assert answer.direction == expected


@pytest.mark.parametrize(
    ("offered", "ours", "expected"),
    [
        ("sendrecv", "sendonly", "sendonly"),
        ("sendrecv", "recvonly", "recvonly"),
        ("sendrecv", "inactive", "inactive"),
        ("sendonly", "sendonly", "inactive"),
        ("sendonly", "sendrecv", "recvonly"),
        ("recvonly", "sendonly", "sendonly"),
    ],
)
def test_create_answer_direction_argument_narrows(offered: str, ours: str, expected: str) -> None:
    answer = SDPBody.create_answer(
        _offer(direction=offered), "b", "10.0.0.2", "10.0.0.2", direction=ours
    )
    assert answer.media[0].direction == expected


def test_create_answer_uses_session_level_direction_of_the_offer() -> None:
    offer = SIPP_UAC.replace("t=0 0\r\n", "t=0 0\r\na=sendonly\r\n")
    assert SDPBody.parse(offer).direction == "sendonly"
    answer = SDPBody.create_answer(offer, "b", "10.0.0.2", "10.0.0.2")
    assert answer.media[0].direction == "recvonly"


def test_create_answer_refuses_video_but_accepts_audio() -> None:
    answer = SDPBody.create_answer(BARESIP, "b", "10.0.0.2", "10.0.0.2")
    audio, video = answer.media
    assert (audio.media, audio.port, audio.formats) == ("audio", 8000, ["0", "8", "101"])
    assert (video.media, video.port, video.protocol) == ("video", 0, "RTP/AVPF")
    assert video.formats == ["96", "97"]
    assert video.attributes == []
    assert audio.fmtp(101) == "0-15"  # the offer's DTMF events are echoed
    assert "m=video 0 RTP/AVPF 96 97" in answer.to_lines()
    assert answer.get_codecs_summary() == ["PCMU/8000", "PCMA/8000", "telephone-event/8000"]


def test_create_answer_accepts_video_when_supported_and_uses_port_per_index() -> None:
    supported = [
        {"name": "PCMA", "rate": 8000},
        {"media": "video", "name": "vp8", "rate": 90000},
        {"name": "opus", "rate": 48000, "channels": 2},
    ]
    answer = SDPBody.create_answer(
        BARESIP, "b", "10.0.0.2", "10.0.0.2", supported_codecs=supported, port=9000
    )
    audio, video = answer.media
    assert (audio.port, audio.formats) == (9000, ["96", "8"])
    assert audio.fmtp("96") == "stereo=1;sprop-stereo=1"
    assert (video.port, video.formats) == (9002, ["97"])
    assert answer.get_codecs_summary() == ["opus/48000/2", "PCMA/8000"]


def test_create_answer_channel_count_must_match() -> None:
    answer = SDPBody.create_answer(
        BARESIP, "b", "10.0.0.2", "10.0.0.2", supported_codecs=[{"name": "opus", "rate": 48000}]
    )
    assert answer.media[0].port == 0


def test_create_answer_explicit_ports() -> None:
    answer = SDPBody.create_answer(
        BARESIP,
        "b",
        "10.0.0.2",
        "10.0.0.2",
        supported_codecs=[
            {"name": "PCMU", "rate": 8000},
            {"media": "video", "name": "H264", "rate": 90000},
        ],
        ports=[5000, 6000],
    )
    assert [m.port for m in answer.media] == [5000, 6000]
    with pytest.raises(ValueError):
        SDPBody.create_answer(BARESIP, "b", "10.0.0.2", "10.0.0.2", ports=[5000])
    with pytest.raises(ValueError):
        SDPBody.create_answer(BARESIP, "b", "10.0.0.2", "10.0.0.2", port=1, ports=[1, 2])
    with pytest.raises(ValueError):
        SDPBody.create_answer(BARESIP, "b", "10.0.0.2", "10.0.0.2", direction="up")


def test_create_answer_no_common_codec_refuses_with_port_zero() -> None:
    offer = _offer(
        codecs=[
            {"payload": 18, "name": "G729", "rate": 8000},
            {"payload": 101, "name": "telephone-event", "rate": 8000, "fmtp": "0-16"},
        ],
        ptime=20,
    )
    answer = SDPBody.create_answer(offer, "b", "10.0.0.2", "10.0.0.2")
    media = answer.media[0]
    assert (media.port, media.formats, media.attributes) == (0, ["18", "101"], [])
    assert answer.get_codecs_summary() == []


def test_create_answer_refuses_stream_offered_with_port_zero() -> None:
    offer = SDPBody.parse(ASTERISK)
    offer.media[0].port = 0
    answer = SDPBody.create_answer(offer, "b", "10.0.0.2", "10.0.0.2")
    assert answer.media[0].port == 0
    assert answer.media[0].formats == ["0", "8", "9", "3", "101"]


def test_create_answer_refuses_unsupported_protocol() -> None:
    offer = SIPP_UAC.replace("RTP/AVP", "RTP/SAVP")
    assert SDPBody.create_answer(offer, "b", "10.0.0.2", "10.0.0.2").media[0].port == 0
    answer = SDPBody.create_answer(
        offer, "b", "10.0.0.2", "10.0.0.2", supported_protocols=["rtp/savp"]
    )
    assert answer.media[0].port == 8000


def test_create_answer_matches_static_payload_without_rtpmap() -> None:
    offer = (
        "v=0\no=- 2 2 IN IP4 192.0.2.9\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\n"
        "m=audio 7078 RTP/AVP 3 0 8 13\n"
    )
    answer = SDPBody.create_answer(
        offer,
        "b",
        "10.0.0.2",
        "10.0.0.2",
        supported_codecs=[{"payload": 8}, {"name": "gsm", "rate": 8000}, {"payload": 13}],
    )
    media = answer.media[0]
    assert media.formats == ["3", "8", "13"]
    assert media.get_attributes("rtpmap") == ["3 GSM/8000", "8 PCMA/8000", "13 CN/8000"]


def test_create_answer_accepts_str_bytes_and_body_alike() -> None:
    from_str = SDPBody.create_answer(SIPP_UAC, "b", "10.0.0.2", "10.0.0.2")
    from_bytes = SDPBody.create_answer(SIPP_UAC.encode(), "b", "10.0.0.2", "10.0.0.2")
    from_body = SDPBody.create_answer(SDPBody.parse(SIPP_UAC), "b", "10.0.0.2", "10.0.0.2")
    assert from_str == from_bytes == from_body
    assert from_str.media[0].formats == ["0"]
    assert from_str.origin.sess_id.isdigit()
    # The default session id depends on the offer, so answers to different offers differ.
    other = SDPBody.create_answer(ASTERISK, "b", "10.0.0.2", "10.0.0.2")
    assert other.origin.sess_id != from_str.origin.sess_id


def test_create_answer_ipv6() -> None:
    answer = SDPBody.create_answer(SIPP_UAC, "b", "2001:db8::7", "2001:db8::8")
    assert answer.origin.addrtype == "IP6"
    assert answer.connection == Connection("IN", "IP6", "2001:db8::8")


def test_create_answer_rejects_invalid_offer_with_parse_error() -> None:
    with pytest.raises(ParseError):
        SDPBody.create_answer("not sdp", "b", "10.0.0.2", "10.0.0.2")


# ---------------------------------------------------------------------------------------
# Parsing real-world bodies
# ---------------------------------------------------------------------------------------


def test_parse_sipp() -> None:
    body = SDPBody.parse(SIPP_UAC)
    assert body.version == 0
    assert body.origin == Origin("user1", "53655765", "2353687637", "IN", "IP4", "127.0.0.1")
    assert body.session_name == "-"
    assert body.connection == Connection("IN", "IP4", "127.0.0.1")
    assert body.timing == "0 0"
    media = body.media[0]
    assert (media.media, media.port, media.protocol, media.formats) == (
        "audio",
        6000,
        "RTP/AVP",
        ["0"],
    )
    assert media.rtpmap(0) == Codec("0", "PCMU", 8000)
    assert body.get_codecs_summary() == ["PCMU/8000"]
    assert body.direction == "sendrecv"
    assert body.to_string() == SIPP_UAC


def test_parse_asterisk() -> None:
    body = SDPBody.parse(ASTERISK)
    assert body.get_codecs_summary() == [
        "PCMU/8000",
        "PCMA/8000",
        "G722/8000",
        "GSM/8000",
        "telephone-event/8000",
    ]
    media = body.media[0]
    assert media.ptime == 20
    assert media.get_attribute("maxptime") == "150"
    assert media.fmtp("101") == "0-16"
    assert media.fmtp("0") is None
    assert body.to_string() == ASTERISK


def test_parse_asterisk_chan_sip_with_static_payload_lacking_rtpmap() -> None:
    body = SDPBody.parse(ASTERISK_CHAN_SIP)
    assert body.session_name == "Asterisk PBX 16.2.1~dfsg-2ubuntu1"
    assert body.get_codecs_summary() == [
        "PCMA/8000",
        "PCMU/8000",
        "G729/8000",
        "telephone-event/8000",
    ]
    assert body.media[0].rtpmap(18) is None
    assert body.media[0].get_attribute("silenceSupp") == "off - - - -"
    assert body.to_string() == ASTERISK_CHAN_SIP


def test_parse_baresip_ipv6_lf_only() -> None:
    body = SDPBody.parse(BARESIP)
    assert body.origin.addrtype == "IP6"
    assert body.connection_address == "2001:db8::10"
    assert body.bandwidths == [("AS", "1152")]
    assert body.get_attribute("tool") == "baresip 3.10.1"
    audio, video = body.media
    assert audio.bandwidths == [("AS", "128")]
    assert audio.has_attribute("rtcp-mux")
    assert audio.get_attribute("rtcp-mux") is None
    assert audio.get_attribute("ssrc") == "1460291218 cname:7ac9c2f3-16ab-4a55-a33f-2f4de6c9d0d4"
    assert audio.get_attribute("mid") == "0"
    assert audio.codecs[0] == Codec("96", "opus", 48000, 2, "stereo=1;sprop-stereo=1")
    assert (video.media, video.port, video.protocol, video.formats) == (
        "video",
        10840,
        "RTP/AVPF",
        ["96", "97"],
    )
    assert [str(c) for c in video.codecs] == ["H264/90000", "VP8/90000"]
    assert video.get_attribute("rtcp-fb") == "* nack pli"
    assert body.get_codecs_summary() == [
        "opus/48000/2",
        "PCMU/8000",
        "PCMA/8000",
        "telephone-event/8000",
    ]
    assert body.to_string() == BARESIP.replace("\n", "\r\n")


def test_parse_tolerates_trailing_whitespace_blank_lines_and_bare_cr() -> None:
    messy = (
        "v=0  \r\no=user1  53655765 2353687637 IN IP4 127.0.0.1\t\ns=-\rc=IN IP4 127.0.0.1\n\n"
        "t=0 0\nm=audio 6000 RTP/AVP 0\na=rtpmap:0 PCMU/8000   \r\n\r\n\r\n  \n"
    )
    assert SDPBody.parse(messy) == SDPBody.parse(SIPP_UAC)
    assert SDPBody.parse(messy).to_string() == SIPP_UAC
    assert SDPBody.parse(messy.encode()).to_string() == SIPP_UAC


def test_parse_latin1_bytes_fallback() -> None:
    raw = SIPP_UAC.replace("s=-", "s=Caf\xe9").encode("latin-1")
    assert SDPBody.parse(raw).session_name == "Caf\xe9"
    assert SDPBody.parse(SIPP_UAC.replace("s=-", "s=Caf\xe9").encode()).session_name == "Caf\xe9"


def test_all_line_types_round_trip_and_keep_unknown_lines() -> None:
    body = SDPBody.parse(ALL_LINE_TYPES)
    assert body.to_string() == ALL_LINE_TYPES
    assert body.timing == "3724394400 3724398000"
    assert body.other_lines == [
        SDPLine("i", "SDP Offer #1", "i"),
        SDPLine("u", "http://www.jdoe.example.com/home.html", "u"),
        SDPLine("e", "Jane Doe <jane@jdoe.example.com>", "e"),
        SDPLine("p", "+1 617 555-6011", "p"),
        SDPLine("r", "7d 1h 0 25h", "t"),
        SDPLine("t", "3724484400 3724488000", "t"),
        SDPLine("z", "2882844526 -1h 2898848070 0", "z"),
        SDPLine("k", "prompt", "k"),
        SDPLine("x", "vendor-extension line", "k"),
    ]
    audio, video = body.media
    assert audio.connection == Connection("IN", "IP4", "198.51.100.2")
    assert audio.other_lines == [
        SDPLine("y", "unknown right after m", "m"),
        SDPLine("i", "main audio", "i"),
        SDPLine("c", "IN IP4 198.51.100.3", "c"),
        SDPLine("k", "prompt", "k"),
    ]
    assert body.media_address(audio) == "198.51.100.2"
    assert (video.port, video.port_count) == (51372, 2)
    assert body.media_address(video) == "2001:db8::2"
    assert body.direction == "recvonly"  # session-level default
    assert audio.direction == "sendrecv"  # the section itself says nothing
    assert video.codecs == [Codec("99", "h263-1998", 90000)]


def test_out_of_order_lines_are_written_in_rfc_order() -> None:
    text = (
        "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\na=group:BUNDLE 0\nc=IN IP4 192.0.2.1\n"
        "m=audio 1 RTP/AVP 0\na=sendonly\nc=IN IP4 192.0.2.2\n"
    )
    assert SDPBody.parse(text).to_lines() == [
        "v=0",
        "o=- 1 1 IN IP4 192.0.2.1",
        "s=-",
        "c=IN IP4 192.0.2.1",
        "t=0 0",
        "a=group:BUNDLE 0",
        "m=audio 1 RTP/AVP 0",
        "c=IN IP4 192.0.2.2",
        "a=sendonly",
    ]


def test_out_of_order_unmodelled_lines_compare_equal_after_round_trip() -> None:
    body = SDPBody.parse("v=0\no=- 1 1 IN IP4 192.0.2.1\nk=clear:x\nu=http://x\ni=info\nr=1 2 3\n")
    assert [line.letter for line in body.other_lines] == ["i", "u", "r", "k"]
    assert body.to_lines()[3:] == ["i=info", "u=http://x", "t=0 0", "r=1 2 3", "k=clear:x"]
    assert SDPBody.parse(body.to_string()) == body


def test_multicast_connection_host_strips_ttl() -> None:
    text = "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 233.252.0.1/127\nt=0 0\n"
    body = SDPBody.parse(text)
    assert body.connection is not None and body.connection.address == "233.252.0.1/127"
    assert body.connection_address == "233.252.0.1"


def test_missing_optional_lines_get_defaults() -> None:
    body = SDPBody.parse("v=0\no=- 1 1 IN IP4 192.0.2.1\n")
    assert (body.session_name, body.timing, body.connection, body.media) == ("-", "0 0", None, [])
    assert body.connection_address is None
    assert body.direction == "sendrecv"
    assert body.to_lines() == ["v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "t=0 0"]


def test_codecs_skip_malformed_rtpmap_and_unknown_dynamic_payloads() -> None:
    media = MediaDescription(
        "audio",
        1,
        "RTP/AVP",
        ["96", "97", "98", "0"],
        attributes=[("rtpmap", "96 opus"), ("rtpmap", "97 x/fast"), ("rtpmap", "0 PCMU/8000/x")],
    )
    assert media.codecs == [Codec("0", "PCMU", 8000)]  # falls back to the static table
    assert media.rtpmap("96") is None
    assert media.ptime is None
    media.attributes.append(("ptime", "twenty"))
    assert media.ptime is None


# ---------------------------------------------------------------------------------------
# Direction helpers (hold / unhold)
# ---------------------------------------------------------------------------------------


def test_set_direction_replaces_in_place() -> None:
    media = SDPBody.parse(ASTERISK).media[0]
    media.set_direction("sendonly")
    assert media.attributes[-1] == ("sendonly", None)
    assert media.get_attributes("sendrecv") == []
    media.attributes.append(("inactive", None))
    media.set_direction("recvonly")
    assert [k for k, _ in media.attributes if k in sdp.DIRECTIONS] == ["recvonly"]
    bare = MediaDescription("audio", 1, "RTP/AVP", ["0"])
    bare.set_direction("inactive")
    assert bare.attributes == [("inactive", None)]
    with pytest.raises(ValueError):
        bare.set_direction("hold")


def test_with_direction_copies_and_bumps_version() -> None:
    offer = SDPBody.parse(ALL_LINE_TYPES)
    held = offer.with_direction("sendonly")
    assert held is not offer
    assert offer.origin.sess_version == "3724394405"
    assert held.origin.sess_version == "3724394406"
    assert held.origin.sess_id == offer.origin.sess_id
    assert held.attributes == []  # session-level recvonly dropped
    assert [m.direction for m in held.media] == ["sendonly", "sendonly"]
    assert [m.direction for m in offer.media] == ["sendrecv", "sendrecv"]
    assert held.direction == "sendonly"
    resumed = held.with_direction("sendrecv")
    assert resumed.origin.sess_version == "3724394407"
    assert resumed.media[0].get_attributes("sendrecv") == [None]
    with pytest.raises(ValueError):
        offer.with_direction("hold")


def test_with_direction_leaves_rejected_streams_alone() -> None:
    answer = SDPBody.create_answer(BARESIP, "b", "10.0.0.2", "10.0.0.2")
    held = answer.with_direction("inactive")
    assert held.media[0].direction == "inactive"
    assert held.media[1].attributes == []


def test_origin_bump_non_numeric() -> None:
    assert Origin(sess_version="abc").bumped().sess_version == "1"


# ---------------------------------------------------------------------------------------
# Malformed input
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("o=- 1 1 IN IP4 1.2.3.4\nv=0\n", 1),
        ("", 1),
        ("\r\n\r\n", 1),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nthis is not sdp\n", 3),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nt=0 0\nm=audio eight RTP/AVP 0\n", 5),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nt=0 0\nm=audio 70000 RTP/AVP 0\n", 5),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nt=0 0\nm=audio 8000/x RTP/AVP 0\n", 5),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nt=0 0\nm=audio 8000\n", 5),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nt=0 0\nm=\n", 5),
        ("v=zero\no=- 1 1 IN IP4 1.2.3.4\n", 1),
        ("v=0\no=- 1 1 IN IP4\n", 2),
        ("v=0\nv=0\n", 2),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\no=- 1 1 IN IP4 1.2.3.4\n", 3),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\ns=again\n", 4),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nc=IN IP4\n", 3),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nt=0\n", 3),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nb=64\n", 3),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\na=\n", 3),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nab=c\n", 3),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\n1=c\n", 3),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\n=c\n", 3),
        (" v=0\n", 1),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0\ns=late\n", 4),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0\nc=bogus\n", 4),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0\nb=bogus\n", 4),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0\na=:x\n", 4),
    ],
)
def test_malformed_input_names_the_line(text: str, line: int) -> None:
    with pytest.raises(ParseError, match=f"^SDP line {line}: "):
        SDPBody.parse(text)


def test_missing_origin() -> None:
    with pytest.raises(ParseError, match="o= line"):
        SDPBody.parse("v=0\ns=-\nt=0 0\n")


def test_superscript_digits_are_not_numbers() -> None:
    # str.isdigit() accepts these but int() does not; they must give ParseError.
    with pytest.raises(ParseError):
        SDPBody.parse("v=\u00b2\no=- 1 1 IN IP4 1.2.3.4\n")
    with pytest.raises(ParseError):
        SDPBody.parse("v=0\no=- 1 1 IN IP4 1.2.3.4\nm=audio \u0668 RTP/AVP 0\n")


_LINE_VALUES = st.lists(
    st.sampled_from([*"0123456789 /:=-.abcINPRTV\t\x1c\u2028", "IN IP4 1.2.3.4", "RTP/AVP"]),
    max_size=12,
).map("".join)


@settings(max_examples=300)
@given(st.one_of(st.text(), st.binary().map(bytes)))
def test_arbitrary_input_parses_or_raises_parse_error(data: str | bytes) -> None:
    _parse_or_parse_error(data)


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(st.sampled_from(list("vosiuepcbtrzkamxA1 ")), _LINE_VALUES),
        max_size=15,
    ),
    st.sampled_from(["\r\n", "\n", "\r"]),
)
def test_sdp_like_input_parses_or_raises_parse_error(
    lines: list[tuple[str, str]], newline: str
) -> None:
    head = ["v=0", "o=- 1 1 IN IP4 127.0.0.1"]
    _parse_or_parse_error(newline.join(head + [f"{k}={v}" for k, v in lines]))


def _parse_or_parse_error(data: str | bytes) -> None:
    try:
        body = SDPBody.parse(data)
    except ParseError:
        return
    # Whatever parses serialises, and re-parsing the output is a fixed point.
    text = body.to_string()
    again = SDPBody.parse(text)
    assert again == body
    assert again.to_string() == text


# ---------------------------------------------------------------------------------------
# Generated offers round-trip
# ---------------------------------------------------------------------------------------

_TOKEN = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.",
    min_size=1,
    max_size=12,
)
_ADDRESS = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)
_CODEC = st.fixed_dictionaries(
    {
        "payload": st.one_of(st.integers(0, 127), st.integers(0, 127).map(str)),
        "name": _TOKEN,
        "rate": st.sampled_from([8000, 16000, 48000, 90000]),
    },
    optional={
        "channels": st.integers(1, 8),
        "fmtp": st.text(alphabet="abcdefghij0123456789=;- ", min_size=1, max_size=20)
        .map(str.strip)
        .filter(bool),
    },
)
_MEDIA_SPEC = st.fixed_dictionaries(
    {
        "media": st.sampled_from(["audio", "video", "text"]),
        "port": st.integers(0, 65535),
        "codecs": st.lists(_CODEC, min_size=1, max_size=5, unique_by=lambda c: str(c["payload"])),
    },
    optional={
        "protocol": st.sampled_from(["RTP/AVP", "RTP/AVPF", "RTP/SAVP"]),
        "direction": st.sampled_from(sdp.DIRECTIONS),
        "ptime": st.integers(10, 120),
    },
)


@settings(max_examples=200)
@given(
    session_name=st.text(alphabet="abc XYZ-1", min_size=1, max_size=20).filter(
        lambda s: s == s.rstrip()
    ),
    username=_TOKEN,
    origin_address=_ADDRESS,
    connection_address=_ADDRESS,
    specs=st.lists(_MEDIA_SPEC, max_size=4),
    session_id=st.one_of(st.none(), st.integers(0, 2**63)),
)
def test_generated_offers_round_trip(
    session_name: str,
    username: str,
    origin_address: str,
    connection_address: str,
    specs: list[dict[str, Any]],
    session_id: int | None,
) -> None:
    offer = SDPBody.create_offer(
        session_name, username, origin_address, connection_address, specs, session_id
    )
    text = offer.to_string()
    parsed = SDPBody.parse(text)
    assert parsed == offer
    assert parsed.to_string() == text
    assert len(parsed.media) == len(specs)
    for media, spec in zip(parsed.media, specs):
        assert media.port == spec["port"]
        assert media.direction == spec.get("direction", "sendrecv")
        assert media.ptime == spec.get("ptime")
        assert [c.payload for c in media.codecs] == [str(c["payload"]) for c in spec["codecs"]]
        assert [c.fmtp for c in media.codecs] == [c.get("fmtp") for c in spec["codecs"]]
    # An answer to any generated offer has the same m-lines in the same order.
    answer = SDPBody.create_answer(text, "bob", "10.0.0.2", "10.0.0.2")
    assert [m.media for m in answer.media] == [m.media for m in offer.media]
    assert SDPBody.parse(answer.to_bytes()) == answer


# ---------------------------------------------------------------------------------------
# Module hygiene
# ---------------------------------------------------------------------------------------


def test_module_is_sans_io() -> None:
    tree = ast.parse(Path(sdp.__file__).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & {"trio", "socket", "time", "random", "asyncio"}


def test_default_constructor_is_usable() -> None:
    body = SDPBody(session_name="x", media=[MediaDescription("audio", 5000, "RTP/AVP", ["0"])])
    assert SDPBody.parse(body.to_string()) == body
