"""Shared fixtures for the unit tests."""

from __future__ import annotations

import pytest
import trio.testing


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    """Virtual time that jumps ahead whenever every task sleeps (pytest-trio uses it as the
    run's clock), so SIP timers of 32 s or hours of re-registration take no real time."""
    return trio.testing.MockClock(autojump_threshold=0)
