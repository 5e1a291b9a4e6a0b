"""``sipx demo`` plays a tone to extension 100 and checks that the echo comes back."""

from __future__ import annotations

import re

import pytest

from sipx._demo import run_demo
from sipx._serve.server import RtpEcho

pytestmark = pytest.mark.filterwarnings("ignore::trio.TrioDeprecationWarning")


def test_the_demo_hears_the_echo_of_its_tone(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_demo() == 0
    out = capsys.readouterr().out
    found = re.search(r"^  ok  Echo from extension 100: (\d+) packets, (\d+) Hz$", out, re.M)
    assert found is not None, out
    assert int(found.group(1)) >= 40 and abs(int(found.group(2)) - 1000) <= 20
    assert "FAILED" not in out
    assert out.rstrip().splitlines()[-1] == "Demo finished: every flow worked."


def test_the_demo_fails_without_an_echo(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(RtpEcho, "open", lambda self, call: None)  # nothing echoes
    assert run_demo() == 1
    captured = capsys.readouterr()
    assert re.search(
        r"^  FAILED Echo from extension 100: 0 packets, 0 Hz \(expected the 1000 Hz tone back\)$",
        captured.out,
        re.M,
    ), captured.out
    assert "Demo finished" not in captured.out
    assert captured.err.startswith("demo failed: Echo from extension 100")
