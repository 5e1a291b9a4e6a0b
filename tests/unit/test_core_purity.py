"""The sans-I/O core must not do I/O, read the clock or draw random numbers itself."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "sipx" / "_core"
FORBIDDEN = {"trio", "socket", "time", "random", "asyncio", "anyio", "threading", "select", "os"}


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


CORE_FILES = sorted(CORE.glob("*.py"))


def test_core_has_modules() -> None:
    assert len(CORE_FILES) >= 5


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_core_module_is_pure(path: Path) -> None:
    assert not (_imported_roots(path) & FORBIDDEN), f"{path.name} imports I/O, clock or random"


def test_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nfrom trio import sleep\n")
    assert _imported_roots(bad) & FORBIDDEN == {"time", "trio"}
