"""Every runnable example in docs/*.md works against a real ``sipx serve``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_docs_examples_run() -> None:
    result = subprocess.run(
        [sys.executable, str(DOCS / "run_examples.py")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "every example ran" in result.stdout
    assert result.stdout.count("ok ") >= 10  # the docs really have examples to run
