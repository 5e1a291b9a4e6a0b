"""Tests for sipx._core.rtcp: SR, RR, BYE and compound RTCP packets (RFC 3550 6.1, 6.4, 6.6)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipx._core.rtcp import (
    NTP_UNIX_OFFSET,
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpPacket,
    SenderReport,
    build_compound,
    ntp_from_seconds,
    ntp_from_unix,
    ntp_middle32,
    parse_compound,
    round_trip_delay,
    seconds_from_ntp,
)
from sipx._errors import ParseError

BLOCK = ReportBlock(
    ssrc=0xAABBCCDD,
    fraction_lost=0x40,
    cumulative_lost=-1,
    highest_seq=0x00010005,
    jitter=0x20,
    lsr=0x12345678,
    dlsr=0x00010000,
)
# ssrc, fraction lost 0x40 and cumulative -1 as 24-bit two's complement, highest, jitter, LSR, DLSR
BLOCK_HEX = "aabbccdd 40ffffff 00010005 00000020 12345678 00010000"

# (packet, wire bytes worked out by hand from the figures in RFC 3550 6.4.1, 6.4.2, 6.6)
WIRE_CASES = [
    pytest.param(
        ReceiverReport(ssrc=0x01020304),
        # V=2 P=0 RC=0 -> 0x80, PT=201 -> 0xc9, length 2 words - 1
        "80c90001 01020304",
        id="rr-empty",
    ),
    pytest.param(
        ReceiverReport(ssrc=0x01020304, reports=(BLOCK,)),
        "81c90007 01020304 " + BLOCK_HEX,
        id="rr-one-block",
    ),
    pytest.param(
        SenderReport(
            ssrc=0x01020304,
            ntp_timestamp=0xE1E2E3E4_00008000,
            rtp_timestamp=160,
            packet_count=7,
            octet_count=1120,
        ),
        # PT=200 -> 0xc8, 7 words - 1; NTP msw, lsw, RTP ts, packets, octets
        "80c80006 01020304 e1e2e3e4 00008000 000000a0 00000007 00000460",
        id="sr-no-blocks",
    ),
    pytest.param(
        SenderReport(
            ssrc=1,
            ntp_timestamp=(1 << 64) - 1,
            rtp_timestamp=0xFFFFFFFF,
            packet_count=0,
            octet_count=0,
            reports=(BLOCK, BLOCK),
        ),
        "82c80012 00000001 ffffffff ffffffff ffffffff 00000000 00000000 " + BLOCK_HEX + BLOCK_HEX,
        id="sr-two-blocks",  # (4 + 24 + 2 * 24) / 4 - 1 = 18 words
    ),
    pytest.param(
        Bye(ssrcs=(0x01020304,)),
        # SC=1 -> 0x81, PT=203 -> 0xcb
        "81cb0001 01020304",
        id="bye",
    ),
    pytest.param(
        Bye(ssrcs=(1, 2), reason="bye"),
        # reason: length octet 3 then "bye", exactly one word
        "82cb0003 00000001 00000002 03627965",
        id="bye-reason",
    ),
    pytest.param(
        Bye(ssrcs=(1,), reason="ok"),
        # "ok" padded with one null octet to the word boundary
        "81cb0002 00000001 026f6b00",
        id="bye-reason-padded",
    ),
    pytest.param(
        Bye(ssrcs=(1,), reason=""),
        "81cb0002 00000001 00000000",
        id="bye-empty-reason",
    ),
    pytest.param(Bye(ssrcs=()), "80cb0000", id="bye-no-sources"),
]


@pytest.mark.parametrize(("packet", "wire"), WIRE_CASES)
def test_to_bytes_matches_hand_built_packet(packet: RtcpPacket, wire: str) -> None:
    assert packet.to_bytes() == bytes.fromhex(wire)


@pytest.mark.parametrize(("packet", "wire"), WIRE_CASES)
def test_parse_hand_built_packet(packet: RtcpPacket, wire: str) -> None:
    assert parse_compound(bytes.fromhex(wire)) == [packet]


SDES = "81ca0003 01020304 0105616c696365 00"  # one chunk: CNAME "alice", end of list
APP = "80cc0002 01020304 6e616d65"  # name "name", no data
XR = "80cf0000"


def test_compound_keeps_order_and_skips_unknown_types() -> None:
    rr = ReceiverReport(ssrc=0x01020304, reports=(BLOCK,))
    bye = Bye(ssrcs=(0x01020304,), reason="ok")
    wire = rr.to_bytes() + bytes.fromhex(SDES + APP + XR) + bye.to_bytes()
    assert parse_compound(wire) == [rr, bye]
    assert build_compound([rr, bye]) == rr.to_bytes() + bye.to_bytes()


def test_only_unknown_types_give_an_empty_list() -> None:
    assert parse_compound(bytes.fromhex(SDES + APP)) == []


def test_padding_and_profile_extensions_are_skipped() -> None:
    # RR with P=1 and one padding word; SR with one word of profile-specific extension
    padded_rr = "a0c90002 01020304 00000004"
    sr_ext = "80c80007 00000009 00000001 00000002 00000003 00000004 00000005 cafebabe"
    assert parse_compound(bytes.fromhex(padded_rr + sr_ext)) == [
        ReceiverReport(ssrc=0x01020304),
        SenderReport(
            ssrc=9, ntp_timestamp=1 << 32 | 2, rtp_timestamp=3, packet_count=4, octet_count=5
        ),
    ]


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        ("", "empty"),
        ("80c900", "header truncated: 3 bytes"),
        ("80c90001 01020304 80c9", "header truncated: 2 bytes"),
        ("40c90001 01020304", "version 1"),
        ("c0c90001 01020304", "version 3"),
        ("80c90002 01020304", "length 2 words"),
        ("80c90001 010203", "length 1 words"),
        ("81c90001 01020304", "RR with 1 report blocks needs 28"),
        ("80c90000", "RR with 0 report blocks needs 4"),
        ("80c80001 01020304", "SR with 0 report blocks needs 24"),
        ("81c80006 01020304 00000000 00000000 00000000 00000000 00000000", "SR with 1"),
        ("82cb0001 00000001", "BYE with 2 sources"),
        ("81cb0002 00000001 05616263", "reason of 5 bytes"),
        ("81cb0002 00000001 02ff fe00", "not UTF-8"),
        ("a0c90001 01020300", "padding count 0"),
        ("a0c90001 01020305", "padding count 5"),
        ("80c90001 01020304 a0cc0000", "padding count 0"),
    ],
)
def test_malformed_compounds_raise_parse_error(wire: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_compound(bytes.fromhex(wire))


@pytest.mark.parametrize("lost", [-1, -(1 << 23), (1 << 23) - 1, 0, 12345])
def test_cumulative_lost_is_signed_24_bit(lost: int) -> None:
    block = ReportBlock(ssrc=1, cumulative_lost=lost)
    (parsed,) = parse_compound(ReceiverReport(ssrc=2, reports=(block,)).to_bytes())
    assert isinstance(parsed, ReceiverReport)
    assert parsed.reports[0].cumulative_lost == lost


@pytest.mark.parametrize(
    ("cls", "fields", "message"),
    [
        (ReportBlock, {"ssrc": 1, "fraction_lost": 256}, "fraction lost"),
        (ReportBlock, {"ssrc": 1, "cumulative_lost": 1 << 23}, "24 signed bits"),
        (ReportBlock, {"ssrc": 1, "cumulative_lost": -(1 << 23) - 1}, "24 signed bits"),
        (ReportBlock, {"ssrc": 1 << 32}, "ssrc"),
        (ReportBlock, {"ssrc": 1, "jitter": -1}, "jitter"),
        (ReceiverReport, {"ssrc": 1, "reports": (BLOCK,) * 32}, "31 report blocks"),
        (ReceiverReport, {"ssrc": -1}, "ssrc"),
        (
            SenderReport,
            {
                "ssrc": 1,
                "ntp_timestamp": 1 << 64,
                "rtp_timestamp": 0,
                "packet_count": 0,
                "octet_count": 0,
            },
            "64 bits",
        ),
        (
            SenderReport,
            {
                "ssrc": 1,
                "ntp_timestamp": 0,
                "rtp_timestamp": 0,
                "packet_count": 1 << 32,
                "octet_count": 0,
            },
            "packet_count",
        ),
        (Bye, {"ssrcs": tuple(range(32))}, "31 sources"),
        (Bye, {"ssrcs": (1,), "reason": "é" * 128}, "255 octets"),
    ],
)
def test_out_of_range_fields_raise_value_error(
    cls: type[Any], fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        cls(**fields)


def test_lists_become_tuples() -> None:
    assert ReceiverReport(ssrc=1, reports=[BLOCK]).reports == (BLOCK,)  # type: ignore[arg-type]
    assert Bye(ssrcs=[1, 2]).ssrcs == (1, 2)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "ntp"),
    [
        (0.0, 0),
        (0.25, 1 << 30),
        (1.5, 1 << 32 | 1 << 31),
        (3_600.75, 3_600 << 32 | 3 << 30),
        (2.0**32 + 1, 1 << 32),  # era 1 wraps to era 0
        (1 - 2.0**-40, 1 << 32),  # the fraction rounds up into the seconds
    ],
)
def test_ntp_from_seconds(seconds: float, ntp: int) -> None:
    assert ntp_from_seconds(seconds) == ntp


def test_ntp_from_unix_and_back() -> None:
    assert ntp_from_unix(0) == NTP_UNIX_OFFSET << 32
    assert seconds_from_ntp(ntp_from_unix(1.5)) == NTP_UNIX_OFFSET + 1.5
    with pytest.raises(ValueError, match="negative"):
        ntp_from_seconds(-1.0)


def test_ntp_middle32() -> None:
    assert ntp_middle32(0x0123456789ABCDEF) == 0x456789AB


def test_round_trip_delay_example_of_rfc_figure_2() -> None:
    # RFC 3550 6.4.1: A = 0xb710:8000, LSR = 0xb705:2000, DLSR = 0x0005:4000 -> 6.125 s
    block = ReportBlock(ssrc=1, lsr=0xB7052000, dlsr=0x00054000)
    assert round_trip_delay(block, 0xB7108000 << 16) == 6.125
    assert round_trip_delay(ReportBlock(ssrc=1), 0xB7108000 << 16) is None


u32 = st.integers(0, 0xFFFFFFFF)
blocks = st.builds(
    ReportBlock,
    ssrc=u32,
    fraction_lost=st.integers(0, 255),
    cumulative_lost=st.integers(-(1 << 23), (1 << 23) - 1),
    highest_seq=u32,
    jitter=u32,
    lsr=u32,
    dlsr=u32,
)
block_lists = st.lists(blocks, max_size=31).map(tuple)
rtcp_packets: st.SearchStrategy[RtcpPacket] = st.one_of(
    st.builds(
        SenderReport,
        ssrc=u32,
        ntp_timestamp=st.integers(0, (1 << 64) - 1),
        rtp_timestamp=u32,
        packet_count=u32,
        octet_count=u32,
        reports=block_lists,
    ),
    st.builds(ReceiverReport, ssrc=u32, reports=block_lists),
    st.builds(
        Bye,
        ssrcs=st.lists(u32, max_size=31).map(tuple),
        reason=st.none() | st.text(max_size=60),
    ),
)


@given(st.lists(rtcp_packets, min_size=1, max_size=5))
def test_compound_round_trip(packets: list[RtcpPacket]) -> None:
    wire = build_compound(packets)
    assert len(wire) % 4 == 0
    assert parse_compound(wire) == packets


def _mutated(rng: random.Random) -> bytes:
    packets: list[RtcpPacket] = [
        ReceiverReport(ssrc=rng.randrange(1 << 32), reports=(BLOCK,) * rng.randrange(3)),
        Bye(ssrcs=(1, 2)[: rng.randrange(3)], reason=rng.choice((None, "", "gone", "ciao é"))),
        SenderReport(ssrc=1, ntp_timestamp=2, rtp_timestamp=3, packet_count=4, octet_count=5),
    ]
    rng.shuffle(packets)
    wire = bytearray(build_compound(packets[: rng.randrange(1, 4)]) + bytes.fromhex(SDES))
    for _ in range(rng.randrange(1, 4)):
        choice = rng.random()
        if choice < 0.6:
            wire[rng.randrange(len(wire))] = rng.randrange(256)
        elif choice < 0.8:
            del wire[rng.randrange(len(wire)) :]
        else:
            wire += rng.randbytes(rng.randrange(1, 9))
        if not wire:
            break
    return bytes(wire)


def test_fuzz_only_parse_errors() -> None:
    rng = random.Random(6)
    parsed = failed = 0
    for i in range(6000):
        if i % 2:
            data = _mutated(rng)
        else:
            data = bytes([rng.choice((0x80, 0x81, 0xA1, rng.randrange(256)))])
            data += bytes([rng.choice((200, 201, 203, rng.randrange(256)))])
            data += rng.randbytes(rng.randrange(40))
        try:
            packets = parse_compound(data)
        except ParseError:
            failed += 1
        else:
            parsed += 1
            if packets:
                assert parse_compound(build_compound(packets)) == packets
    assert parsed > 500 and failed > 500  # both paths were exercised


def test_sdes_cname_chunk_bytes_and_compound_parse() -> None:
    from sipx._core.rtcp import SourceDescription

    sdes = SourceDescription(ssrc=0x01020304, cname="ab").to_bytes()
    # V=2 SC=1 PT=202, length 3 (4 words less one); SSRC; CNAME (1), 2 octets, "ab"; the
    # null octet that ends the item list, padded to a 32-bit boundary
    assert sdes == bytes.fromhex("81ca0003010203040102616200000000")
    compound = build_compound(
        [ReceiverReport(ssrc=5), SourceDescription(ssrc=5, cname="sipx@127.0.0.1")]
    )
    assert parse_compound(compound) == [ReceiverReport(ssrc=5)]  # SDES skipped, not an error
    with pytest.raises(ValueError):
        SourceDescription(ssrc=1, cname="")
