"""The subscription state machines of RFC 6665, sans-I/O, with explicit ``now``."""

from __future__ import annotations

import math

import pytest

from sipx import EventHeader, SubscriptionState
from sipx._core.parser import parse_message
from sipx._core.subscription import (
    NotifierState,
    SubscriberState,
    default_accept,
    event_of,
    grant_expires,
    refresh_period,
    same_event,
    subscription_state_of,
)
from sipx._errors import ParseError

MWI = EventHeader("message-summary")
TIMER_N = 32.0


def subscriber(expires: int = 3600, now: float = 0.0) -> SubscriberState:
    return SubscriberState(MWI, expires, now, timer_n=TIMER_N)


@pytest.mark.parametrize(
    ("granted", "period"),
    [(10, 5.0), (60, 30.0), (64, 32.0), (120, 88.0), (600, 480.0), (3600, 2880.0)],
)
def test_refresh_period(granted: int, period: float) -> None:
    assert refresh_period(granted) == period


def test_refresh_is_due_from_the_granted_expiry_then_from_each_notify() -> None:
    core = subscriber(3600)
    assert core.state == "init" and core.next_deadline() == TIMER_N  # Timer N first
    core.accepted(600, now=1.0)  # the 2xx grants less than asked
    assert core.expires_at == 601.0 and core.refresh_at == 481.0
    core.notify(SubscriptionState.parse("active;expires=100"), now=2.0)  # the notifier shortens
    assert core.state == "active"
    assert (core.expires_at, core.refresh_at) == (102.0, 70.0)
    assert core.next_deadline() == 70.0  # Timer N no longer matters
    assert core.poll(69.9) is None
    assert core.poll(70.0) == "refresh" and core.refresh_at is None
    assert core.poll(70.0) is None  # once
    core.accepted(100, now=71.0)
    assert core.refresh_at == 71.0 + 68.0  # 100 s: 32 s before it runs out


def test_timer_n_ends_a_subscription_that_never_got_a_notify() -> None:
    core = subscriber()
    core.accepted(3600, now=0.5)
    assert core.poll(31.9) is None
    assert core.poll(32.0) == "terminated"
    assert (core.state, core.reason) == ("terminated", "timeout")
    assert core.next_deadline() == math.inf and core.poll(99.0) is None


def test_a_lapsed_subscription_terminates_with_timeout() -> None:
    core = subscriber(60)
    core.notify(SubscriptionState.parse("pending;expires=60"), now=0.0)
    assert core.state == "pending"
    assert core.poll(30.0) == "refresh"
    core.refresh_failed(30.0, 4.0)
    assert core.poll(34.0) == "refresh"
    core.refresh_failed(34.0, 40.0)  # the back-off goes past the expiry
    assert core.next_deadline() == 60.0
    assert core.poll(60.0) == "terminated" and core.reason == "timeout"


def test_terminated_notify_carries_reason_and_retry_after() -> None:
    core = subscriber()
    core.notify(SubscriptionState.parse("terminated;reason=probation;retry-after=30"), now=5.0)
    assert (core.state, core.reason, core.retry_after) == ("terminated", "probation", 30)
    core.notify(SubscriptionState.parse("active;expires=60"), now=6.0)  # too late: ignored
    assert core.terminated


def test_unknown_subscription_state_counts_as_active() -> None:
    core = subscriber()
    core.notify(SubscriptionState.parse("x-waiting;expires=60"), now=0.0)
    assert core.state == "active"


def test_a_fetch_or_unsubscribe_waits_only_for_the_final_notify() -> None:
    core = subscriber(0)
    core.accepted(0, now=1.0)
    assert core.unsubscribing and core.refresh_at is None
    assert core.next_deadline() == TIMER_N  # Timer N, from the SUBSCRIBE, for the NOTIFY
    core.notify(SubscriptionState.parse("active;expires=0"), now=2.0)
    assert core.refresh_at is None  # never refreshed
    core.notify(SubscriptionState.parse("terminated;reason=timeout"), now=3.0)
    assert core.terminated and core.reason == "timeout"


def test_unsubscribing_stops_refreshes() -> None:
    core = subscriber()
    core.accepted(600, now=0.0)
    core.unsubscribe()
    assert core.refresh_at is None
    core.notify(SubscriptionState.parse("active;expires=600"), now=1.0)
    assert core.refresh_at is None
    core.refresh_failed(1.0, 4.0)
    assert core.refresh_at is None


def test_notifier_state() -> None:
    core = NotifierState(EventHeader("presence", "7"), 600, now=10.0, state="pending")
    assert str(core.header(10.0)) == "pending;expires=600"
    core.set_state("active")
    assert str(core.header(100.2)) == "active;expires=510"  # rounded up
    core.refresh(120, now=200.0)
    assert core.expires_at == 320.0 and not core.expired(319.9) and core.expired(320.0)
    core.refresh(0, now=300.0)  # Expires: 0
    assert str(core.header(300.0)) == "terminated;reason=timeout"
    assert not core.expired(999.0)


def test_notifier_state_checks_arguments() -> None:
    with pytest.raises(ValueError, match="active or pending"):
        NotifierState(MWI, 60, 0.0, state="terminated")
    core = NotifierState(MWI, 60, 0.0)
    with pytest.raises(ValueError, match="reason"):
        core.terminate("bored")
    core.terminate("giveup", retry_after=30)
    assert str(core.header(1.0)) == "terminated;reason=giveup;retry-after=30"
    core.set_state("active")  # no effect once ended
    assert core.terminated


def test_helpers() -> None:
    assert default_accept("Presence") == "application/pidf+xml"
    assert default_accept("message-summary") == "application/simple-message-summary"
    assert default_accept("dialog") == "application/dialog-info+xml"
    assert default_accept("x-other") is None
    assert grant_expires(None, default=3600, maximum=600) == 600
    assert grant_expires(30, default=3600, maximum=600) == 30
    assert same_event(EventHeader.parse("dialog;id=1"), EventHeader.parse("Dialog;id=1"))
    assert not same_event(EventHeader.parse("dialog;id=1"), EventHeader.parse("dialog"))
    assert not same_event(EventHeader.parse("dialog"), EventHeader.parse("presence"))


def _notify(*headers: str) -> bytes:
    lines = [
        "NOTIFY sip:a@127.0.0.1 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1",
        "From: <sip:b@127.0.0.1>;tag=1",
        "To: <sip:a@127.0.0.1>;tag=2",
        "Call-ID: c",
        "CSeq: 1 NOTIFY",
        *headers,
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_event_and_subscription_state_of_a_notify() -> None:
    request = parse_message(_notify("o: presence;id=x", "Subscription-State: active;expires=9"))
    assert isinstance(request, type(request))
    assert event_of(request) == EventHeader("presence", "x")  # type: ignore[arg-type]
    assert subscription_state_of(request).expires == 9  # type: ignore[arg-type]
    for headers, why in [
        ((), "no Event"),
        (("Event: a", "Event: b"), "exactly one Event"),
        (("Event: a;;",), "Event"),
    ]:
        with pytest.raises(ParseError, match=why):
            event_of(parse_message(_notify(*headers)))  # type: ignore[arg-type]
    with pytest.raises(ParseError, match="no Subscription-State"):
        subscription_state_of(parse_message(_notify("Event: a")))  # type: ignore[arg-type]
