"""The package's structure: no import cycle, no overlong function, every module importable on its own."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "atelier"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
#: Longest function or method (its ``def`` line to its last line, decorators excluded) allowed in atelier/.
MAX_FUNCTION_LINES = 80


def _top_level_imports(name: str, path: Path) -> set[str]:
    """Modules of the package imported when *name* is imported (module level, not inside functions)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}  # `from . import x` imports x
    return {module for module in found if module in MODULES and module != name}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], _ = 1, stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node], _ = 2, stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_between_modules():
    """Parent packages excepted (importing a.b runs a/__init__ first, which is not an edge back)."""
    graph = {
        name: {dep for dep in _top_level_imports(name, path) if not name.startswith(dep + ".")}
        for name, path in MODULES.items()
    }
    assert _cycle(graph) is None, " → ".join(_cycle(graph) or [])


def test_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def _long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int, int]]:
    """``(name, first line, length)`` of every function or method (nested ones too) longer than *limit* lines."""
    return [
        (node.name, node.lineno, length)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (length := (node.end_lineno or node.lineno) - node.lineno + 1) > limit
    ]


def test_no_function_is_longer_than_80_lines():
    """A longer function does several jobs: split it into named helpers."""
    too_long = [
        f"{path.relative_to(ROOT)}:{line} {name} ({length} lignes)"
        for path in MODULES.values()
        for name, line, length in _long_functions(path.read_text(encoding="utf-8"))
    ]
    assert not too_long, f"fonctions de plus de {MAX_FUNCTION_LINES} lignes : " + ", ".join(too_long)


def test_long_function_finder_measures_functions_and_methods():
    body = "".join(f"        x{i} = {i}\n" for i in range(4))
    source = f"def short():\n    pass\n\n\nclass A:\n    async def method(self):\n{body}\n    def ok(self):\n{body}"
    assert _long_functions(source, limit=5) == []
    assert _long_functions(source, limit=4) == [("method", 6, 5), ("ok", 12, 5)]


#: Modules that run only in a peer's environment (``bench --peers``), with the package they need there.
PEER_ONLY_MODULES = {"atelier.bench_litserve": "litserve"}


def _import_alone(name: str) -> tuple[str, int, str]:
    result = subprocess.run(
        [sys.executable, "-c", f"import {name}"], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    return name, result.returncode, result.stderr[-2000:]


@pytest.mark.slow
def test_every_module_imports_alone_in_a_fresh_interpreter():
    """An import order problem (a cycle through a function-level import, a missing import) shows up here."""
    importable = [
        name
        for name in MODULES
        if not name.endswith(".__main__")  # __main__ runs the CLI
        and (name not in PEER_ONLY_MODULES or importlib.util.find_spec(PEER_ONLY_MODULES[name]) is not None)
    ]
    with ThreadPoolExecutor(2) as pool:
        failures = [(name, err) for name, code, err in pool.map(_import_alone, importable) if code != 0]
    assert not failures, "\n\n".join(f"import {name} :\n{err}" for name, err in failures)
