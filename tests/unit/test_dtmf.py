"""Tests for sipx._core.dtmf (RFC 4733 telephone-events)."""

from __future__ import annotations

import pytest

from sipx._core.dtmf import (
    MAX_DURATION,
    DtmfDigit,
    DtmfPacket,
    DtmfReceiver,
    DtmfSender,
    TelephoneEvent,
    digit_to_event,
    event_to_digit,
)
from sipx._errors import ParseError

# ----------------------------------------------------------------------------- payload


def test_known_payload_bytes() -> None:
    # event 5 | E=1, R=0, volume 10 -> 0x8a | duration 800 = 0x0320
    assert TelephoneEvent(5, end=True, volume=10, duration=800).to_bytes() == b"\x05\x8a\x03\x20"
    assert TelephoneEvent(11, volume=0, duration=0).to_bytes() == b"\x0b\x00\x00\x00"
    assert TelephoneEvent(255, True, 63, 65535).to_bytes() == b"\xff\xbf\xff\xff"


def test_parse_known_payload() -> None:
    assert TelephoneEvent.parse(b"\x05\x8a\x03\x20") == TelephoneEvent(5, True, 10, 800)
    # The reserved bit is ignored on receipt.
    assert TelephoneEvent.parse(b"\x0c\x4a\x00\xa0") == TelephoneEvent(12, False, 10, 160)


@pytest.mark.parametrize("event", [0, 9, 16, 255])
@pytest.mark.parametrize("end", [False, True])
@pytest.mark.parametrize("volume", [0, 36, 63])
@pytest.mark.parametrize("duration", [0, 1, 800, 65535])
def test_payload_round_trip(event: int, end: bool, volume: int, duration: int) -> None:
    payload = TelephoneEvent(event, end, volume, duration)
    assert TelephoneEvent.parse(payload.to_bytes()) == payload


@pytest.mark.parametrize("data", [b"", b"\x05", b"\x05\x8a\x03", b"\x05\x8a\x03\x20\x00"])
def test_parse_rejects_bad_lengths(data: bytes) -> None:
    with pytest.raises(ParseError, match=f"4 bytes, got {len(data)}"):
        TelephoneEvent.parse(data)


@pytest.mark.parametrize(
    "kwargs",
    [{"event": 256}, {"event": -1}, {"event": 1, "volume": 64}, {"event": 1, "duration": 65536}],
)
def test_payload_field_ranges(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        TelephoneEvent(**kwargs)  # type: ignore[arg-type]


def test_digit_mapping() -> None:
    digits = "0123456789*#ABCD"
    assert [digit_to_event(d) for d in digits] == list(range(16))
    assert [digit_to_event(d) for d in "abcd"] == [12, 13, 14, 15]
    assert digit_to_event("flash") == digit_to_event("Flash") == 16
    assert "".join(str(event_to_digit(e)) for e in range(16)) == digits
    assert event_to_digit(16) == "flash"
    assert event_to_digit(17) is None and event_to_digit(32) is None


@pytest.mark.parametrize("bad", ["", "E", "12", "x", " 1", "**"])
def test_digit_mapping_rejects_non_digits(bad: str) -> None:
    with pytest.raises(ValueError, match="not a DTMF digit"):
        digit_to_event(bad)


# ------------------------------------------------------------------------------ sender


def _decoded(packets: list[DtmfPacket]) -> list[TelephoneEvent]:
    return [TelephoneEvent.parse(p.payload) for p in packets]


def test_sender_packets_for_one_digit() -> None:
    sender = DtmfSender()  # 8 kHz, 20 ms updates, 100 ms tone
    assert sender.duration == 800
    packets = sender.packets("5", timestamp=123456)
    assert len(packets) == 4 + 3
    assert [p.marker for p in packets] == [True] + [False] * 6
    assert {p.timestamp for p in packets} == {123456}
    events = _decoded(packets)
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert {(e.event, e.volume) for e in events} == {(5, 10)}
    assert packets[-1].payload == b"\x05\x8a\x03\x20"
    assert packets[-3] == packets[-2] == packets[-1]


def test_sender_duration_not_a_multiple_of_the_interval() -> None:
    packets = DtmfSender(duration_ms=110, volume=7).packets("#", 0)
    events = _decoded(packets)
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 880, 880, 880]
    assert {e.event for e in events} == {11} and {e.volume for e in events} == {7}


def test_sender_short_tone_opens_with_the_end_packet() -> None:
    packets = DtmfSender(duration_ms=20).packets("1", 0)
    assert [p.marker for p in packets] == [True, False, False]
    assert {p.payload for p in packets} == {TelephoneEvent(1, True, 10, 160).to_bytes()}


def test_sender_other_rates_and_event_codes() -> None:
    sender = DtmfSender(clock_rate=16000, interval=320, duration_ms=60, end_repeats=1)
    assert sender.duration == 960
    packets = sender.packets(16, timestamp=2**32 + 5)  # wraps modulo 2**32
    assert [e.duration for e in _decoded(packets)] == [320, 640, 960]
    assert {p.timestamp for p in packets} == {5}
    assert [e.event for e in _decoded(DtmfSender().packets("d", 0))] == [15] * 7


def test_sender_limits() -> None:
    assert DtmfSender(duration_ms=8191).duration == 65528
    with pytest.raises(ValueError, match="must be 1-65535"):
        DtmfSender(duration_ms=8200)
    with pytest.raises(ValueError):
        DtmfSender(duration_ms=0)
    with pytest.raises(ValueError):
        DtmfSender(volume=64)
    with pytest.raises(ValueError):
        DtmfSender(interval=0)
    with pytest.raises(ValueError, match="not a DTMF digit"):
        DtmfSender().packets("E", 0)
    with pytest.raises(ValueError):
        DtmfSender().packets(300, 0)


# ---------------------------------------------------------------------------- receiver


def _feed(receiver: DtmfReceiver, packet: DtmfPacket) -> list[DtmfDigit]:
    return receiver.feed(packet.payload, packet.timestamp, packet.marker)


def _feed_all(receiver: DtmfReceiver, packets: list[DtmfPacket]) -> list[DtmfDigit]:
    out: list[DtmfDigit] = []
    for packet in packets:
        out += _feed(receiver, packet)
    return out


def test_receiver_reports_once_on_the_first_end_packet() -> None:
    receiver = DtmfReceiver()
    packets = DtmfSender().packets("7", 8000)
    results = [_feed(receiver, p) for p in packets]
    assert results[:4] == [[]] * 4
    assert results[4] == [DtmfDigit("7", 7, 8000, 800, True)]
    assert results[5:] == [[], []]
    assert receiver.flush() is None


def test_receiver_with_lost_first_packets() -> None:
    packets = DtmfSender().packets("3", 1000)
    digits = _feed_all(DtmfReceiver(), packets[3:])  # marker packet and two updates lost
    assert digits == [DtmfDigit("3", 3, 1000, 800, True)]


def test_receiver_with_only_one_end_packet() -> None:
    packets = DtmfSender().packets("9", 1000)
    for kept in range(4, 7):
        digits = _feed_all(DtmfReceiver(), [packets[kept]])
        assert digits == [DtmfDigit("9", 9, 1000, 800, True)]


def test_receiver_ignores_duplicates_and_late_updates() -> None:
    packets = DtmfSender().packets("2", 1000)
    scrambled = [packets[0], packets[0], packets[4], packets[2], packets[5], packets[4]]
    scrambled += [packets[6], packets[1], packets[6]]
    assert _feed_all(DtmfReceiver(), scrambled) == [DtmfDigit("2", 2, 1000, 800, True)]


def test_receiver_same_digit_twice_is_two_events() -> None:
    sender = DtmfSender()
    packets = sender.packets("1", 0) + sender.packets("1", 1600)
    digits = _feed_all(DtmfReceiver(), packets)
    assert [(d.digit, d.timestamp, d.ended) for d in digits] == [("1", 0, True), ("1", 1600, True)]


def test_receiver_reports_an_event_without_end_when_the_next_one_starts() -> None:
    sender = DtmfSender()
    first = sender.packets("4", 0)[:3]  # all end packets lost
    second = sender.packets("4", 1600)
    receiver = DtmfReceiver()
    assert _feed_all(receiver, first) == []
    assert _feed(receiver, second[0]) == [DtmfDigit("4", 4, 0, 480, False)]
    assert _feed_all(receiver, second[1:]) == [DtmfDigit("4", 4, 1600, 800, True)]


def test_receiver_new_event_that_is_already_over() -> None:
    """Only an end packet of the next event arrives: both events come out at once."""
    receiver = DtmfReceiver()
    _feed(receiver, DtmfSender().packets("5", 0)[0])
    end_of_next = DtmfSender().packets("6", 1600)[-1]
    assert _feed(receiver, end_of_next) == [
        DtmfDigit("5", 5, 0, 160, False),
        DtmfDigit("6", 6, 1600, 800, True),
    ]


def test_receiver_flush_reports_the_pending_event_once() -> None:
    receiver = DtmfReceiver()
    _feed_all(receiver, DtmfSender().packets("*", 500)[:2])
    assert receiver.flush() == DtmfDigit("*", 10, 500, 320, False)
    assert receiver.flush() is None
    # Packets of the flushed event arriving later do not report it again.
    assert _feed_all(receiver, DtmfSender().packets("*", 500)[2:]) == []


def test_receiver_ignores_stragglers_from_older_events() -> None:
    receiver = DtmfReceiver()
    older = DtmfSender().packets("8", 0)
    newer = DtmfSender().packets("0", 1600)
    assert _feed_all(receiver, newer[:2]) == []
    assert _feed_all(receiver, older[-1:]) == []  # event 8's only surviving packet, late
    assert _feed_all(receiver, newer[2:]) == [DtmfDigit("0", 0, 1600, 800, True)]


def test_receiver_timestamp_wraparound() -> None:
    sender = DtmfSender()
    packets = sender.packets("1", 2**32 - 800) + sender.packets("2", 800)
    digits = _feed_all(DtmfReceiver(), packets)
    assert [(d.digit, d.timestamp) for d in digits] == [("1", 2**32 - 800), ("2", 800)]


def test_receiver_ignores_garbage_payload_lengths() -> None:
    """Payloads that are not 4 bytes long are counted and ignored, never raised."""
    receiver = DtmfReceiver()
    out: list[DtmfDigit] = []
    for packet in DtmfSender().packets("B", 4000):
        out += receiver.feed(b"\x01\x02", packet.timestamp)
        out += _feed(receiver, packet)
        out += receiver.feed(packet.payload + b"\x00", packet.timestamp)
    assert out == [DtmfDigit("B", 13, 4000, 800, True)]
    assert receiver.malformed == 14


def test_receiver_non_dtmf_events_have_no_digit() -> None:
    digits = _feed_all(DtmfReceiver(), DtmfSender().packets(32, 0))
    assert digits == [DtmfDigit(None, 32, 0, 800, True)]


def test_receiver_joins_segments_of_a_long_event() -> None:
    receiver = DtmfReceiver()
    segment = TelephoneEvent(5, False, 10, MAX_DURATION).to_bytes()
    assert receiver.feed(TelephoneEvent(5, False, 10, 160).to_bytes(), 0, True) == []
    assert receiver.feed(segment, 0) == []
    assert receiver.feed(TelephoneEvent(5, False, 10, 160).to_bytes(), MAX_DURATION) == []
    end = TelephoneEvent(5, True, 10, 1000).to_bytes()
    expected = [DtmfDigit("5", 5, 0, MAX_DURATION + 1000, True)]
    assert receiver.feed(end, MAX_DURATION) == expected
    assert receiver.feed(end, MAX_DURATION) == []
    assert receiver.feed(segment, 0) == []


def test_round_trip_of_a_digit_string() -> None:
    sender = DtmfSender()
    receiver = DtmfReceiver()
    digits = "123*#ABCD"
    out: list[DtmfDigit] = []
    timestamp = 160_000
    for digit in digits:
        out += _feed_all(receiver, sender.packets(digit, timestamp))
        timestamp += sender.duration + 800  # 100 ms tone, 100 ms pause
    assert "".join(str(d.digit) for d in out) == digits
    assert all(d.ended and d.duration == 800 for d in out)
    assert receiver.flush() is None
