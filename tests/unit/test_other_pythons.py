"""CI runs the unit tests on every newer Python the machine has: scripts/other-pythons.sh."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "other-pythons.sh"


def test_ci_runs_the_unit_tests_on_the_other_pythons() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^\./scripts/other-pythons\.sh$", ci, re.M), ci


def test_the_interpreters_present_are_found() -> None:
    """Each of 3.12 and 3.13 is found when pyenv (or PATH) has it, and is that version."""
    done = subprocess.run(
        [str(SCRIPT), "--list"], capture_output=True, text=True, timeout=60, check=True
    )
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for version in ("3.12", "3.13"):
        line = next(x for x in done.stdout.splitlines() if x.startswith(f"Python {version}:"))
        present = any(pyenv.glob(f"{version}.*/bin/python{version}"))
        if not present:
            assert line.endswith("not found, skipped") or "/" in line
            continue
        interpreter = line.split(": ", 1)[1]
        reported = subprocess.run(
            [interpreter, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert reported == version
