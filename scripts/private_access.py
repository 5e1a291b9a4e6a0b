"""List reads of another module's underscored attributes in sipx/ (``obj._name`` where obj
is not ``self`` or ``cls`` and ``_name`` is not defined by the reading module alone): the
check behind "no module uses another module's private state". Exits 1 when one is found.

Run: ``.venv/bin/python scripts/private_access.py``
"""

from __future__ import annotations

import ast
import collections
import pathlib
import sys


def defined_names(tree: ast.Module) -> set[str]:
    """Underscored names a module defines: attributes it assigns, its functions and classes."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
    return {name for name in names if name.startswith("_") and not name.startswith("__")}


def main() -> int:
    root = pathlib.Path(__file__).resolve().parent.parent / "sipx"
    trees = {path: ast.parse(path.read_text(), str(path)) for path in sorted(root.rglob("*.py"))}
    definers: dict[str, set[pathlib.Path]] = collections.defaultdict(set)
    for path, tree in trees.items():
        for name in defined_names(tree):
            definers[name].add(path)
    found = 0
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or isinstance(node.ctx, ast.Store):
                continue
            name = node.attr
            if not name.startswith("_") or name.startswith("__"):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            if definers.get(name) == {path}:
                continue  # the module's own private name, on another instance of its class
            found += 1
            print(f"{path.relative_to(root.parent)}:{node.lineno}: .{name}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
