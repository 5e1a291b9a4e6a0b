"""No module of sipx reads another module's private (underscored) attributes."""

from __future__ import annotations

import importlib.util
import pathlib
from types import ModuleType

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "private_access.py"


def checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("private_access", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sipx_reads_no_other_modules_private_state(capsys: pytest.CaptureFixture[str]) -> None:
    assert checker().main() == 0, capsys.readouterr().out


def test_the_check_finds_a_private_read(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "engine.py").write_text(
        "class Engine:\n    def __init__(self):\n        self._waiters = {}\n"
        "    def count(self, other):\n        return len(other._waiters)\n"
    )
    (tmp_path / "call.py").write_text(
        "def end(call):\n    call.engine._waiters.clear()\n    super().__init__()\n"
    )
    assert checker().main(tmp_path) == 1
    out = capsys.readouterr().out
    assert out.splitlines() == ["call.py:2: ._waiters"]
