"""List reads of another module's underscored attributes in sipx/ (``obj._name`` where obj
is not ``self``, ``cls`` or ``super()`` and the reading module does not define ``_name``
itself): the check behind "no module uses another module's private state". Exits 1 when
one is found. A name defined in several modules counts as each one's own, so a read of
another module's attribute of the same name is missed: a guard, not a proof.

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


def main(root: pathlib.Path | None = None) -> int:
    root = root or pathlib.Path(__file__).resolve().parent.parent / "sipx"
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
            if isinstance(node.value, ast.Call) and ast.unparse(node.value.func) == "super":
                continue  # a subclass extending its base's hook
            if path in definers.get(name, ()):
                continue  # the module's own private name (on another instance of its class)
            found += 1
            print(f"{path.relative_to(root)}:{node.lineno}: .{name}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else None))
