"""The package's layout rules that import-linter and ruff do not check (docs/architecture.md, "Layout"), and the
tests' own: no test module imports another."""

from __future__ import annotations

import ast
from pathlib import Path

import agentlog

PACKAGE = Path(agentlog.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_LINES = 700
MAX_TOP_LEVEL = 12


def dotted(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_module(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute name an ImportFrom reads from (relative imports resolved against `module`)."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def test_no_module_is_longer_than_the_bar():
    long = {dotted(p): n for p in MODULES if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_top_level_holds_at_most_a_dozen_modules():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL, top


def test_every_part_says_what_it_does_and_may_import_and_holds_nothing_else():
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        tree = ast.parse(init.read_text())
        doc = ast.get_docstring(tree) or ""
        assert "may import" in doc.lower(), f"{dotted(init)}: its docstring does not say what it may import"
        assert len(tree.body) == 1, f"{dotted(init)}: an __init__ holds only its docstring (imports stay lazy)"


def test_no_module_imports_another_modules_private_name():
    found = []
    for path in MODULES:
        module = dotted(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            source = imported_module(node, module, path.name == "__init__.py")
            if not source.startswith("agentlog") or source == module:
                continue
            found += [f"{module}: from {source} import {a.name}" for a in node.names
                      if a.name.startswith("_") and not a.name.startswith("__")]
    assert found == []


def test_the_private_name_check_sees_relative_and_absolute_imports():
    code = "from .store import _head\nfrom agentlog.store.keys import _pos\nfrom agentlog.errors import StoreError\n"
    names = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.ImportFrom):
            source = imported_module(node, "agentlog.store.compaction", False)
            names += [(source, a.name) for a in node.names if a.name.startswith("_")]
    assert names == [("agentlog.store.store", "_head"), ("agentlog.store.keys", "_pos")]


def test_no_test_module_imports_another_and_every_helper_says_what_it_is():
    """Helpers shared between test files live in tests/helpers/, fixtures in conftest.py; tests import neither
    another test module nor conftest."""
    tests = Path(__file__).resolve().parent
    found = []
    for path in sorted(tests.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
                if node.level:
                    found.append(f"{path.relative_to(tests)}: a relative import")
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            found += [f"{path.relative_to(tests)}: imports {name}" for name in names
                      if any(part.startswith("test_") or part == "conftest" for part in name.split("."))]
    assert found == []
    helpers = sorted((tests / "helpers").glob("*.py"))
    assert [p.name for p in helpers if not ast.get_docstring(ast.parse(p.read_text()))] == []
