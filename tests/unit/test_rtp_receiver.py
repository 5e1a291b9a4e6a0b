"""Tests for sipx._core.rtp_receiver: ordering, loss and jitter (RFC 3550 A.1, A.3, A.8)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipx._core.rtcp import ReportBlock, SenderReport
from sipx._core.rtp import RtpPacket
from sipx._core.rtp_receiver import RtpReceiver, RtpReceiverStats

SSRC = 0x11223344
RATE = 8000
FRAME = 160  # 20 ms at 8 kHz


def packet(seq: int, timestamp: int | None = None, ssrc: int = SSRC) -> RtpPacket:
    ts = (seq * FRAME if timestamp is None else timestamp) % (1 << 32)
    return RtpPacket(
        payload_type=0, sequence=seq, timestamp=ts, ssrc=ssrc, payload=seq.to_bytes(2, "big")
    )


def feed(receiver: RtpReceiver, seqs: list[int]) -> list[int]:
    """Receive ``seqs`` 20 ms apart; the sequence numbers delivered, in delivery order."""
    out: list[int] = []
    for i, seq in enumerate(seqs):
        out += [p.sequence for p in receiver.receive(packet(seq), i * 0.02, RATE)]
    return out


def counters(stats: RtpReceiverStats) -> dict[str, Any]:
    return {
        "received": stats.received,
        "expected": stats.expected,
        "lost": stats.lost,
        "duplicates": stats.duplicates,
        "reordered": stats.reordered,
        "late": stats.late,
        "stray": stats.stray,
        "restarts": stats.restarts,
        "highest_seq": stats.highest_seq,
    }


def _c(received: int, expected: int, highest: int, **others: int) -> dict[str, Any]:
    base = {"duplicates": 0, "reordered": 0, "late": 0, "stray": 0, "restarts": 0}
    return {
        **base,
        **others,
        "received": received,
        "expected": expected,
        "lost": expected - received,
        "highest_seq": highest,
    }


# arrivals, reorder depth, delivered as they arrive, delivered by flush(), counters
ORDER_CASES = [
    pytest.param(list(range(1, 11)), 5, list(range(1, 11)), [], _c(10, 10, 10), id="in-order"),
    pytest.param(
        [1, 2, 3, 5, 6, 7, 8, 9, 10],
        5,
        [1, 2, 3, 5, 6, 7, 8, 9, 10],
        [],
        _c(9, 10, 10),
        id="one-loss-given-up-after-depth",
    ),
    pytest.param([1, 2, 4], 5, [1, 2], [4], _c(3, 4, 4), id="loss-held-until-flush"),
    pytest.param(
        [1, 2, 4, 3, 5, 6], 5, [1, 2, 3, 4, 5, 6], [], _c(6, 6, 6, reordered=1), id="swap"
    ),
    pytest.param(
        [1, 3, 4, 5, 6, 7, 2, 8],
        5,
        [1, 2, 3, 4, 5, 6, 7, 8],
        [],
        _c(8, 8, 8, reordered=1),
        id="reorder-at-full-depth",
    ),
    pytest.param([1, 2, 2, 3, 1], 5, [1, 2, 3], [], _c(3, 3, 3, duplicates=2), id="duplicates"),
    pytest.param(
        [1, 3, 3, 2], 5, [1, 2, 3], [], _c(3, 3, 3, duplicates=1, reordered=1), id="dup-held"
    ),
    pytest.param(
        [65533, 65534, 65535, 0, 1],
        5,
        [65533, 65534, 65535, 0, 1],
        [],
        _c(5, 5, 65537),
        id="wrap",
    ),
    pytest.param(
        [65534, 0, 65535, 1],
        5,
        [65534, 65535, 0, 1],
        [],
        _c(4, 4, 65537, reordered=1),
        id="wrap-reordered",
    ),
    pytest.param(
        [1, 3, 4, 5, 2],
        2,
        [1, 3, 4, 5],
        [],
        _c(5, 5, 5, reordered=1, late=1),
        id="late-after-depth",
    ),
    pytest.param([1, 3, 2], 0, [1, 3], [], _c(3, 3, 3, reordered=1, late=1), id="depth-0"),
    pytest.param([10, 9], 5, [10], [], _c(2, 2, 10, reordered=1, late=1), id="before-first"),
    pytest.param([10, 8], 5, [10], [], _c(2, 3, 10, reordered=1, late=1), id="before-first-gap"),
    pytest.param([1, 2, 3, 5000, 4], 5, [1, 2, 3, 4], [], _c(4, 4, 4, stray=1), id="stray-forward"),
    pytest.param(
        [1, 2, 3, 3 + 3000, 4], 5, [1, 2, 3, 4], [], _c(4, 4, 4, stray=1), id="dropout-limit"
    ),
    pytest.param(
        [200, 201, 100, 202], 5, [200, 201, 202], [], _c(3, 3, 202, stray=1), id="stray-back"
    ),
    pytest.param(
        [200, 201, 101, 202],
        5,
        [200, 201, 202],
        [],
        _c(4, 102, 202, reordered=1, late=1),
        id="misorder-limit",
    ),
    pytest.param(
        [1, 2, 3, 4 + 2998, 4 + 2999],
        0,
        [1, 2, 3, 3002, 3003],
        [],
        _c(5, 3003, 3003),
        id="largest-dropout-is-loss",
    ),
    pytest.param(
        [1, 2, 3, 5000, 5001, 5002],
        5,
        [1, 2, 3, 5001, 5002],
        [],
        _c(5, 5, 5002, stray=1, restarts=1),
        id="restart",
    ),
    pytest.param(
        [1, 2, 4, 5000, 5001],
        5,
        [1, 2, 4, 5001],
        [],
        _c(4, 5, 5001, stray=1, restarts=1),
        id="restart-flushes-buffer",
    ),
    pytest.param(
        [1, 2, 5000, 3, 5002, 5003],
        5,
        [1, 2, 3, 5003],
        [],
        _c(4, 4, 5003, stray=2, restarts=1),
        id="restart-needs-consecutive-strays",
    ),
]


@pytest.mark.parametrize(("arrivals", "depth", "delivered", "flushed", "expected"), ORDER_CASES)
def test_ordering_and_counters(
    arrivals: list[int],
    depth: int,
    delivered: list[int],
    flushed: list[int],
    expected: dict[str, Any],
) -> None:
    receiver = RtpReceiver(reorder_depth=depth)
    assert feed(receiver, arrivals) == delivered
    assert [p.sequence for p in receiver.flush()] == flushed
    assert receiver.flush() == []
    assert counters(receiver.stats) == expected


def test_delivered_packets_are_the_received_objects() -> None:
    receiver = RtpReceiver()
    first, second = packet(7), packet(8)
    assert receiver.receive(first, 0.0, RATE) == [first]
    assert receiver.receive(second, 0.02, RATE)[0] is second


def test_fresh_receiver_stats() -> None:
    stats = RtpReceiver().stats
    assert stats == RtpReceiverStats()
    assert stats.highest_seq is None


def test_ssrc_is_learnt_then_enforced() -> None:
    receiver = RtpReceiver()
    receiver.receive(packet(1), 0.0, RATE)
    assert receiver.ssrc == SSRC
    with pytest.raises(ValueError, match="SSRC"):
        receiver.receive(packet(2, ssrc=SSRC + 1), 0.02, RATE)
    fixed = RtpReceiver(ssrc=5)
    with pytest.raises(ValueError, match="SSRC"):
        fixed.receive(packet(1), 0.0, RATE)


@pytest.mark.parametrize(
    ("kwargs", "rate", "message"),
    [({"reorder_depth": -1}, RATE, "reorder depth"), ({}, 0, "clock rate")],
)
def test_bad_arguments(kwargs: dict[str, Any], rate: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RtpReceiver(**kwargs).receive(packet(1), 0.0, rate)


@given(
    start=st.integers(0, 0xFFFF),
    count=st.integers(1, 60),
    depth=st.integers(0, 6),
    duplicates=st.integers(0, 10),
    rng=st.randoms(use_true_random=False),
)
def test_any_disorder_within_depth_is_restored(
    start: int, count: int, depth: int, duplicates: int, rng: random.Random
) -> None:
    """Shuffling inside windows of depth + 1 packets (the first packet, delivered at once,
    stays first) and repeating some packets later loses nothing: every packet comes out
    once, in order, across the 16-bit wrap."""
    seqs = [(start + i) % 0x10000 for i in range(count)]
    arrivals = seqs[:1]
    for i in range(1, count, depth + 1):
        window = seqs[i : i + depth + 1]
        rng.shuffle(window)
        arrivals += window
    for _ in range(duplicates):
        at = rng.randrange(len(arrivals))
        arrivals.insert(rng.randrange(at + 1, len(arrivals) + 1), arrivals[at])
    receiver = RtpReceiver(reorder_depth=depth)
    out = feed(receiver, arrivals)
    assert out + [p.sequence for p in receiver.flush()] == seqs
    stats = receiver.stats
    assert (stats.received, stats.lost, stats.duplicates) == (count, 0, duplicates)
    assert stats.highest_seq == start + count - 1


def _stream(receiver: RtpReceiver, transits: list[float], first_ts: int = 0) -> None:
    """Packets 20 ms apart whose network delay is ``transits[i]`` seconds."""
    for i, delay in enumerate(transits):
        p = packet(i % 0x10000, first_ts + i * FRAME)
        receiver.receive(p, 100.0 + i * 0.02 + delay, RATE)


def _rfc_jitter(sent_ts: list[int], arrivals: list[float], rate: int) -> float:
    """RFC 3550 6.4.1 applied independently: D(i-1,i) = (Rj - Ri) - (Sj - Si) in timestamp
    units, J(i) = J(i-1) + (|D(i-1,i)| - J(i-1)) / 16, starting from J = 0."""
    jitter = 0.0
    for i in range(1, len(sent_ts)):
        d = (arrivals[i] - arrivals[i - 1]) * rate - (sent_ts[i] - sent_ts[i - 1])
        jitter = jitter + (abs(d) - jitter) / 16
    return jitter


def test_constant_delay_has_no_jitter() -> None:
    receiver = RtpReceiver()
    _stream(receiver, [0.035] * 200)
    assert receiver.stats.jitter == pytest.approx(0.0, abs=1e-6)


def test_constant_delay_across_timestamp_wrap_has_no_jitter() -> None:
    receiver = RtpReceiver()
    _stream(receiver, [0.035] * 50, first_ts=(1 << 32) - 10 * FRAME)
    assert receiver.stats.jitter == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("count", [2, 3, 10, 300])
def test_alternating_delay_follows_the_rfc_formula(count: int) -> None:
    delays = [0.010 * (i % 2) for i in range(count)]
    receiver = RtpReceiver()
    _stream(receiver, delays)
    sent = [i * FRAME for i in range(count)]
    arrived = [100.0 + i * 0.02 + d for i, d in enumerate(delays)]
    expected = _rfc_jitter(sent, arrived, RATE)
    assert expected > 0
    stats = receiver.stats
    assert stats.jitter == pytest.approx(expected, rel=1e-9)
    assert stats.jitter_seconds == pytest.approx(expected / RATE, rel=1e-9)


def test_alternating_delay_converges_to_the_delay_step() -> None:
    receiver = RtpReceiver()
    _stream(receiver, [0.010 * (i % 2) for i in range(400)])
    assert receiver.stats.jitter == pytest.approx(80.0, rel=1e-6)  # 10 ms at 8 kHz
    assert receiver.stats.jitter_seconds == pytest.approx(0.010, rel=1e-6)


def test_duplicates_and_strays_do_not_touch_jitter() -> None:
    receiver = RtpReceiver()
    _stream(receiver, [0.035] * 20)
    receiver.receive(packet(5, 5 * FRAME), 123.0, RATE)  # duplicate, very late
    receiver.receive(packet(9000, 12345), 100.5, RATE)  # stray
    receiver.receive(packet(20, 20 * FRAME), 100.0 + 20 * 0.02 + 0.035, RATE)
    assert receiver.stats.duplicates == 1
    assert receiver.stats.stray == 1
    assert receiver.stats.jitter == pytest.approx(0.0, abs=1e-6)


def test_restart_does_not_count_the_timestamp_jump_as_jitter() -> None:
    receiver = RtpReceiver()
    _stream(receiver, [0.035] * 10)
    for i, seq in enumerate((40000, 40001, 40002)):
        receiver.receive(packet(seq, 7_000_000 + i * FRAME), 101.0 + i * 0.02, RATE)
    assert receiver.stats.restarts == 1
    assert receiver.stats.jitter == pytest.approx(0.0, abs=1e-6)


def _receive_seqs(receiver: RtpReceiver, seqs: list[int]) -> None:
    for seq in seqs:
        receiver.receive(packet(seq % 0x10000), seq * 0.02, RATE)


def test_report_block_fraction_lost_per_interval() -> None:
    receiver = RtpReceiver()
    _receive_seqs(receiver, [1, 2, 4, 5, 6, 8, 9, 10])  # 3 and 7 lost: 2 of 10
    assert receiver.report_block(now=1.0) == ReportBlock(
        ssrc=SSRC, fraction_lost=2 * 256 // 10, cumulative_lost=2, highest_seq=10
    )
    _receive_seqs(receiver, list(range(11, 21)))  # no loss in this interval
    block = receiver.report_block(now=2.0)
    assert (block.fraction_lost, block.cumulative_lost, block.highest_seq) == (0, 2, 20)
    _receive_seqs(receiver, [21, 24])  # 22 and 23 lost: 2 of 4
    block = receiver.report_block(now=3.0)
    assert (block.fraction_lost, block.cumulative_lost) == (128, 4)
    block = receiver.report_block(now=4.0)  # nothing expected since the last report
    assert (block.fraction_lost, block.cumulative_lost) == (0, 4)


def test_report_block_late_packet_lowers_cumulative_loss() -> None:
    receiver = RtpReceiver(reorder_depth=0)
    _receive_seqs(receiver, [1, 2, 4])
    assert receiver.report_block(now=1.0).cumulative_lost == 1
    _receive_seqs(receiver, [3])  # late: dropped but received, so not lost
    block = receiver.report_block(now=2.0)
    assert (block.fraction_lost, block.cumulative_lost) == (0, 0)
    assert receiver.stats.late == 1


def test_report_block_extended_highest_after_wraps() -> None:
    receiver = RtpReceiver()
    seqs = list(range(65530, 65536 * 2 + 20, 7))  # steps of 7 through two wraps
    _receive_seqs(receiver, seqs)
    block = receiver.report_block(now=0.0)
    assert block.highest_seq == seqs[-1] > 2 * 65536
    assert block.highest_seq == receiver.stats.highest_seq


def test_report_block_jitter_is_truncated_timestamp_units() -> None:
    receiver = RtpReceiver()
    _stream(receiver, [0.010 * (i % 2) for i in range(5)])
    jitter = receiver.stats.jitter
    assert jitter % 1
    assert receiver.report_block(now=0.0).jitter == int(jitter)


def test_report_block_lsr_and_dlsr_from_the_last_sender_report() -> None:
    receiver = RtpReceiver()
    receiver.receive(packet(1), 0.0, RATE)
    assert (receiver.report_block(now=5.0).lsr, receiver.report_block(now=5.0).dlsr) == (0, 0)
    report = SenderReport(
        ssrc=SSRC,
        ntp_timestamp=0x0123456789ABCDEF,
        rtp_timestamp=0,
        packet_count=1,
        octet_count=160,
    )
    receiver.on_sender_report(report, arrival=10.0)
    block = receiver.report_block(now=12.5)
    assert (block.lsr, block.dlsr) == (0x456789AB, 5 * 65536 // 2)
    with pytest.raises(ValueError, match="SSRC"):
        receiver.on_sender_report(
            SenderReport(ssrc=1, ntp_timestamp=0, rtp_timestamp=0, packet_count=0, octet_count=0),
            arrival=11.0,
        )


def test_report_block_cumulative_lost_is_clamped_to_24_bits() -> None:
    receiver = RtpReceiver(reorder_depth=0)
    seq = 0
    for i in range(2900):  # each step skips 2998 packets, just under MAX_DROPOUT
        receiver.receive(packet(seq), i * 0.02, RATE)
        seq = (seq + 2999) % 0x10000
    assert receiver.stats.lost == 2899 * 2998
    assert receiver.stats.stray == 0
    assert receiver.report_block(now=0.0).cumulative_lost == (1 << 23) - 1


def test_report_block_needs_a_packet() -> None:
    with pytest.raises(ValueError, match="no RTP packet"):
        RtpReceiver(ssrc=1).report_block(now=0.0)
