"""Offer/answer to media parameters (sipx._core.media_params.negotiate)."""

from __future__ import annotations

import pytest

from sipx import SDPBody
from sipx._core.media_params import negotiate


def sdp(
    port: int = 4000,
    formats: str = "0 8 101",
    *,
    address: str = "127.0.0.1",
    extra: str = "",
    events: str = "101",
) -> SDPBody:
    lines = [
        "v=0",
        f"o=- 1 1 IN IP4 {address}",
        "s=-",
        f"c=IN IP4 {address}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {formats}",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        f"a=rtpmap:{events} telephone-event/8000",
    ]
    return SDPBody.parse("\r\n".join(lines + [x for x in extra.split("|") if x]) + "\r\n")


def test_the_answer_chooses_the_codec_and_each_side_its_payload_numbers() -> None:
    offer = sdp(4000, "0 8 101")
    answer = sdp(5000, "8 96", events="96")  # PCMA first; telephone-event as 96
    ours = negotiate(offer, answer, we_offered=True)
    assert ours is not None
    assert (ours.codec, ours.send_payload, ours.receive_payload) == ("PCMA", 8, 8)
    # RFC 3264 5.1: we send events with the number the peer's SDP gave (96), receive on ours
    assert (ours.event_send_payload, ours.event_receive_payload) == (96, 101)
    assert ours.remote == ("127.0.0.1", 5000)
    theirs = negotiate(answer, offer, we_offered=False)
    assert theirs is not None and theirs.codec == "PCMA"
    assert (theirs.event_send_payload, theirs.event_receive_payload) == (101, 96)


@pytest.mark.parametrize(
    ("ours", "theirs", "expected"),
    [
        ("sendrecv", "sendrecv", "sendrecv"),
        ("sendonly", "recvonly", "sendonly"),
        ("recvonly", "sendonly", "recvonly"),
        ("sendrecv", "recvonly", "sendonly"),
        ("sendrecv", "inactive", "inactive"),
        ("inactive", "sendrecv", "inactive"),
    ],
)
def test_direction_from_our_point_of_view(ours: str, theirs: str, expected: str) -> None:
    result = negotiate(sdp(extra=f"a={ours}"), sdp(5000, extra=f"a={theirs}"), we_offered=True)
    assert result is not None and result.direction == expected
    assert result.sends == (expected in ("sendrecv", "sendonly"))
    assert result.receives == (expected in ("sendrecv", "recvonly"))


def test_ptime_rtcp_mux_and_hold_by_address() -> None:
    result = negotiate(
        sdp(extra="a=rtcp-mux"), sdp(5000, extra="a=ptime:30|a=rtcp-mux"), we_offered=True
    )
    assert result is not None
    assert (result.ptime, result.samples_per_packet, result.rtcp_mux) == (30, 240, True)
    held = negotiate(sdp(), sdp(5000, address="0.0.0.0"), we_offered=True)
    assert held is not None and held.remote is None and not held.sends


@pytest.mark.parametrize(
    "answer",
    [sdp(0, "0"), sdp(5000, "18"), sdp(5000, "101")],
    ids=["rejected stream", "no G.711", "only events"],
)
def test_no_usable_audio_is_none(answer: SDPBody) -> None:
    assert negotiate(sdp(), answer, we_offered=True) is None


def test_events_need_both_sides() -> None:
    result = negotiate(sdp(formats="0 101"), sdp(5000, "0"), we_offered=True)
    assert result is not None and result.event_send_payload is None
    assert result.event_receive_payload is None
