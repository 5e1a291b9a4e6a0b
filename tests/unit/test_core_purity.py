"""The sans-I/O core must not do I/O, read the clock or draw random numbers itself."""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import pytest

import sipx._core

CORE = Path(__file__).resolve().parents[2] / "sipx" / "_core"
FORBIDDEN = {"trio", "socket", "time", "random", "asyncio", "anyio", "threading", "select", "os"}


def _imported_roots(source: str, filename: str = "<string>") -> set[str]:
    """The top-level packages ``source`` imports (relative imports stay inside sipx)."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def _forbidden_imports(path: Path) -> set[str]:
    return _imported_roots(path.read_text(), str(path)) & FORBIDDEN


CORE_FILES = sorted(CORE.rglob("*.py"))


def test_every_core_module_is_scanned() -> None:
    """The files checked below are exactly the modules Python finds in sipx._core
    (subpackages included), so a new module cannot escape the rule."""
    modules = {
        name for _, name, _ in pkgutil.walk_packages(sipx._core.__path__, prefix="sipx._core.")
    }
    scanned = {
        ".".join(("sipx", "_core", *path.relative_to(CORE).with_suffix("").parts)).removesuffix(
            ".__init__"
        )
        for path in CORE_FILES
    }
    assert scanned - {"sipx._core"} == modules
    assert {"sipx._core.parser", "sipx._core.transaction", "sipx._core.timers"} <= modules


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(CORE)))
def test_core_module_is_pure(path: Path) -> None:
    assert not _forbidden_imports(path), f"{path.name} imports I/O, clock or random"


@pytest.mark.parametrize(
    ("source", "caught"),
    [
        ("import trio\n", {"trio"}),
        ("import os.path\n", {"os"}),
        ("from socket import socket\n", {"socket"}),
        ("import json, random as r\n", {"random"}),
        ("def later():\n    import time\n    return time.monotonic()\n", {"time"}),
        ("try:\n    import anyio\nexcept ImportError:\n    pass\n", {"anyio"}),
        ("from . import parser\nfrom .timers import TimerConfig\nimport re\n", set()),
    ],
)
def test_checker_flags_forbidden_imports(source: str, caught: set[str]) -> None:
    assert _imported_roots(source) & FORBIDDEN == caught


def test_checker_flags_an_impure_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text('"""Looks pure."""\n\nimport time\nfrom trio import sleep\n')
    assert _forbidden_imports(bad) == {"time", "trio"}
