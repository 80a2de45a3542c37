"""The import graph: no role imports the composition root, and no module imports itself back at import time.

Read from the source (ast), so the check holds whatever a test happened to import first. A cycle of
module-level imports makes the import order decide whether a module loads: `import clickbus.logging_setup`
on its own failed with a partially initialized module before `clickbus.worker` existed.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "clickbus"
ROOTS = frozenset({"clickbus.runtime", "clickbus.cli", "clickbus.__main__"})  # the composition root and its callers
# Only the command line may import the root (`__main__` runs the command line).
MAY_IMPORT_ROOT = frozenset({"clickbus.cli", "clickbus.__main__"})


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _statements(body: list[ast.stmt], *, in_functions: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements of `body`, outside `if TYPE_CHECKING:`; inside functions too if `in_functions`."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if in_functions:
                yield from _statements(node.body, in_functions=True)
        else:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    yield from _statements([child], in_functions=in_functions)
                elif isinstance(child, ast.ExceptHandler):
                    yield from _statements(child.body, in_functions=in_functions)


def _named(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    base = node.module or ""
    if node.level:
        parts = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join([*parts, *([node.module] if node.module else [])])
    yield base
    yield from (f"{base}.{alias.name}" for alias in node.names)  # `from package import submodule`


def imports(module: str, *, in_functions: bool) -> set[str]:
    """The clickbus modules that importing `module` runs, packages on the way included (not its own)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in _statements(tree.body, in_functions=in_functions):
        for name in _named(module, node):
            parts = name.split(".")
            for i in range(2, len(parts) + 1):
                prefix = ".".join(parts[:i])
                # a package this module is inside is already being imported: no edge back to it
                if prefix in MODULES and not module.startswith(prefix + ".") and prefix != module:
                    found.add(prefix)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while (top := stack.pop()) != node:
                component.append(top)
            if component:
                found.append(sorted([node, *component]))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_checker_sees_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_but_the_command_line_imports_the_composition_root() -> None:
    offenders = {
        module: sorted(imports(module, in_functions=True) & ROOTS)
        for module in MODULES
        if module not in MAY_IMPORT_ROOT and imports(module, in_functions=True) & ROOTS
    }
    assert offenders == {}


def test_module_level_imports_have_no_cycle() -> None:
    graph = {module: imports(module, in_functions=False) for module in MODULES}
    assert cycles(graph) == []


def test_imports_including_those_inside_functions_have_no_cycle() -> None:
    graph = {module: imports(module, in_functions=True) for module in MODULES}
    assert cycles(graph) == []


@pytest.mark.parametrize("module", ["clickbus.logging_setup", "clickbus.records", "clickbus.edge.app"])
def test_each_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
