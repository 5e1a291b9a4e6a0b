"""The UAS core's 2xx retransmitter (RFC 3261 13.3.1.4), driven with explicit ``now``."""

from __future__ import annotations

from collections.abc import Hashable

import pytest

from sipx._core.message import Response
from sipx._core.retransmit import AckTimeout, Retransmit, TwoXXRetransmitter
from sipx._core.timers import TimerConfig

TIMERS = TimerConfig(t1=0.5, t2=4.0)
# T1, then doubling to T2: 0.5, 1.5, 3.5, 7.5, then every 4 s; AckTimeout at 64*T1 = 32.
RESENDS = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]


def ok(tag: str = "a") -> Response:
    return Response(200, None, [("To", f"<sip:bob@example.com>;tag={tag}"), ("CSeq", "1 INVITE")])


def run(
    retransmitter: TwoXXRetransmitter, until: float = 1000.0
) -> list[tuple[float, Retransmit | AckTimeout]]:
    """Call handle_timers at each deadline up to ``until``: (time, action) for each action."""
    timeline: list[tuple[float, Retransmit | AckTimeout]] = []
    while (deadline := retransmitter.next_deadline()) is not None and deadline <= until:
        timeline.extend((deadline, action) for action in retransmitter.handle_timers(deadline))
    return timeline


def test_resend_times_and_ack_timeout() -> None:
    r = TwoXXRetransmitter(TIMERS)
    response = ok()
    r.start("k", response, 0.0)
    assert r.next_deadline() == 0.5 and "k" in r and len(r) == 1
    timeline = run(r)
    assert [at for at, action in timeline if isinstance(action, Retransmit)] == RESENDS
    assert timeline[-1] == (32.0, AckTimeout("k", response))
    assert all(action.response is response for _, action in timeline)
    assert len(r) == 0 and "k" not in r and r.next_deadline() is None and r._heap == []


@pytest.mark.parametrize(
    ("t1", "t2", "start", "expected", "timeout"),
    [
        (0.5, 4.0, 10.0, [10.5, 11.5, 13.5, 17.5, 21.5, 25.5, 29.5, 33.5, 37.5, 41.5], 42.0),
        (0.5, 0.5, 0.0, [0.5 * n for n in range(1, 64)], 32.0),  # T2 = T1: a steady T1
        (1.0, 2.0, 0.0, [1.0, 3.0, *range(5, 64, 2)], 64.0),
        (0.1, 4.0, 0.0, [0.1, 0.3, 0.7, 1.5, 3.1, 6.3], 6.4),  # 64*T1 before T2 is reached
    ],
)
def test_schedules(
    t1: float, t2: float, start: float, expected: list[float], timeout: float
) -> None:
    r = TwoXXRetransmitter(TimerConfig(t1=t1, t2=t2))
    r.start("k", ok(), start)
    timeline = run(r)
    resends = [at for at, action in timeline if isinstance(action, Retransmit)]
    assert resends == pytest.approx(expected)
    assert timeline[-1][0] == pytest.approx(timeout)
    assert isinstance(timeline[-1][1], AckTimeout)
    assert len(r) == 0


def test_ack_stops_it() -> None:
    r = TwoXXRetransmitter(TIMERS)
    r.start("k", ok(), 0.0)
    assert [at for at, _ in run(r, until=2.0)] == [0.5, 1.5]
    assert r.ack("k") is True
    assert r.ack("k") is False  # an ACK retransmission
    assert len(r) == 0 and r.next_deadline() is None
    assert r.handle_timers(100.0) == []
    assert r._heap == []


def test_ack_for_an_unknown_key_is_false() -> None:
    assert TwoXXRetransmitter(TIMERS).ack("nobody") is False


def test_cancel_stops_it_silently() -> None:
    r = TwoXXRetransmitter(TIMERS)
    r.start("k", ok(), 0.0)
    r.start("other", ok("b"), 0.0)
    r.cancel("k")
    r.cancel("never started")
    assert "k" not in r and len(r) == 1
    assert {action.key for _, action in run(r)} == {"other"}
    assert len(r) == 0


def test_start_again_restarts_the_schedule_with_the_new_response() -> None:
    r = TwoXXRetransmitter(TIMERS)
    first, second = ok("a"), ok("b")
    r.start("k", first, 0.0)
    assert run(r, until=2.0) == [(0.5, Retransmit("k", first)), (1.5, Retransmit("k", first))]
    assert len(r) == 1
    r.start("k", second, 2.0)  # e.g. the 2xx of a re-INVITE
    assert len(r) == 1
    timeline = run(r)
    assert [at for at, a in timeline if isinstance(a, Retransmit)] == [2.0 + t for t in RESENDS]
    assert timeline[-1] == (34.0, AckTimeout("k", second))
    assert all(action.response is second for _, action in timeline)


def test_many_keys_interleave_in_deadline_order() -> None:
    r = TwoXXRetransmitter(TIMERS)
    starts = {"a": 0.0, "b": 0.2, "c": 0.1, ("d", 1): 0.3}
    for key, at in starts.items():
        r.start(key, ok(), at)
    timeline = run(r)
    times = [at for at, _ in timeline]
    assert times == sorted(times)
    expected: list[tuple[float, Hashable]] = []
    for key, at in starts.items():
        expected += [(round(at + t, 6), key) for t in RESENDS]
        expected.append((round(at + 32.0, 6), key))
    expected.sort(key=lambda item: item[0])
    assert [(round(at, 6), action.key) for at, action in timeline] == expected
    assert len(r) == 0


def test_equal_deadlines_come_out_in_start_order() -> None:
    r = TwoXXRetransmitter(TIMERS)
    for key in ("x", "y", "z"):
        r.start(key, ok(), 0.0)
    assert [action.key for action in r.handle_timers(0.5)] == ["x", "y", "z"]


def test_keys_need_not_be_orderable() -> None:
    r = TwoXXRetransmitter(TIMERS)
    r.start(frozenset({1}), ok(), 0.0)
    r.start(None, ok(), 0.0)
    assert len(r.handle_timers(0.5)) == 2


def test_handle_timers_before_the_deadline_does_nothing() -> None:
    r = TwoXXRetransmitter(TIMERS)
    r.start("k", ok(), 0.0)
    assert r.handle_timers(0.0) == []
    assert r.handle_timers(0.49) == []
    assert r.next_deadline() == 0.5


def test_a_late_call_resends_once_and_reschedules_from_now() -> None:
    r = TwoXXRetransmitter(TIMERS)
    response = ok()
    r.start("k", response, 0.0)
    r.start("j", response, 0.0)
    # 10 s late: five resends were due, one goes out per key
    assert r.handle_timers(10.0) == [Retransmit("k", response), Retransmit("j", response)]
    assert r.next_deadline() == 11.0  # the interval doubled once, from now
    assert r.handle_timers(11.0) == [Retransmit("k", response), Retransmit("j", response)]
    assert r.next_deadline() == 13.0


def test_a_call_far_in_the_future_only_times_out() -> None:
    r = TwoXXRetransmitter(TIMERS)
    response = ok()
    r.start("k", response, 0.0)
    assert r.handle_timers(1000.0) == [AckTimeout("k", response)]
    assert len(r) == 0 and r.next_deadline() is None


def test_a_late_call_just_before_the_timeout_still_resends_then_times_out_at_64_t1() -> None:
    r = TwoXXRetransmitter(TIMERS)
    response = ok()
    r.start("k", response, 0.0)
    assert r.handle_timers(31.9) == [Retransmit("k", response)]
    assert r.next_deadline() == 32.0
    assert r.handle_timers(32.0) == [AckTimeout("k", response)]


def test_ten_thousand_calls_and_memory_released() -> None:
    r = TwoXXRetransmitter(TIMERS)
    response = ok()
    for n in range(10_000):
        r.start(n, response, n * 0.001)
    assert len(r) == 10_000
    actions = r.handle_timers(0.5 + 9.999)
    assert len(actions) == 10_000 and all(isinstance(a, Retransmit) for a in actions)
    assert len({a.key for a in actions}) == 10_000
    for n in range(0, 10_000, 2):
        assert r.ack(n)
    for n in range(1, 10_000, 4):
        r.cancel(n)
    assert len(r) == 2_500
    # stale heap entries are compacted away, not kept until they come due
    assert len(r._heap) < 2 * 2_500 + 64
    timeline = run(r)
    assert sum(isinstance(a, AckTimeout) for _, a in timeline) == 2_500
    assert {a.key for _, a in timeline} == set(range(3, 10_000, 4))
    assert len(r) == 0 and r._heap == [] and r.next_deadline() is None


def test_restarts_do_not_grow_the_heap() -> None:
    r = TwoXXRetransmitter(TIMERS)
    for n in range(10_000):
        r.start("k", ok(), float(n))
    assert len(r) == 1
    assert len(r._heap) <= 2 * 65
