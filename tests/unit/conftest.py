"""Shared fixtures for the unit tests."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest
import trio.testing


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    """Virtual time that jumps ahead whenever every task sleeps (pytest-trio uses it as the
    run's clock), so SIP timers of 32 s or hours of re-registration take no real time."""
    return trio.testing.MockClock(autojump_threshold=0)


@pytest.fixture
def serve_banner() -> Callable[..., str]:
    """``serve_banner(*options)``: start ``sipx serve --port 0 *options``, return the line
    it prints once listening, and stop it."""

    def banner(*options: str) -> str:
        command = [sys.executable, "-m", "sipx", "serve", "--port", "0", *options]
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        ) as process:
            try:
                assert process.stdout is not None
                return process.stdout.readline()
            finally:
                process.terminate()
                process.wait(timeout=10)

    return banner
