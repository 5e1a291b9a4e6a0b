"""The fuzz run's report: how many inputs each target ran (see tests/fuzz/test_fuzz.py)."""

from __future__ import annotations

import fuzz_targets
import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    counts = fuzz_targets.COUNTS
    if not counts:
        return
    terminalreporter.section("fuzzing")
    for name in fuzz_targets.TARGETS:
        terminalreporter.write_line(f"{name:12} {counts[name]:>10,} inputs")
    terminalreporter.write_line(f"{'total':12} {sum(counts.values()):>10,} inputs")
