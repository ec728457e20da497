"""The import graph of labkit, from the modules' own import statements: no cycle, and a closed backend boundary.

Every ``import``/``from ... import`` of a ``labkit`` module counts, also one inside a function (a
deferred import is still a dependency). A package's ``__init__`` is a module of its own: importing
``labkit.testbed.base`` is an edge to ``labkit.testbed.base``, not to ``labkit.testbed``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import labkit

pytestmark = pytest.mark.unit

PACKAGE = Path(labkit.__file__).parent
#: The backends: only :mod:`labkit.testbed` (the factory) and the backends themselves may import them.
BACKENDS = ("labkit.testbed.embedded", "labkit.testbed.vms")
#: Leaves that live in a backend's package but are no part of it: Linux system calls (setns, mounts,
#: detached processes), which the hosts tier's guest uses too. A leaf imports nothing of the kit.
LEAVES_IN_BACKENDS = ("labkit.testbed.embedded.linux",)
#: What a backend may import of the kit: the layers below the test beds (and the neutral parts of its own package).
BELOW_TESTBEDS = ("labkit.config", "labkit.paths", "labkit.machine", "labkit.setup_steps", "labkit.waiting",
                  "labkit.topology", "labkit.workloads", "labkit.images", "labkit.grid", "labkit.testbed.base",
                  "labkit.testbed.signals", "labkit.testbed.kubeapi", "labkit.testbed.pods", "labkit.testbed.liqoctl",
                  "labkit.timescale", "labkit.gobuild")


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str:
    """The module ``name`` refers to (a name imported from a module resolves to that module)."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _imports(module: str) -> Iterator[tuple[str, int]]:
    """The labkit modules ``module`` imports, with the line of each import."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "labkit":
                    yield _resolve(alias.name), node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package upwards
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] != "labkit":
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield (full if full in MODULES else _resolve(base)), node.lineno


GRAPH = {m: {t for t, _ in _imports(m) if t != m} for m in MODULES}


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return found


def _is_backend(module: str) -> bool:
    return module not in LEAVES_IN_BACKENDS and any(module == b or module.startswith(b + ".") for b in BACKENDS)


def test_the_graph_is_read_from_the_modules() -> None:
    assert "labkit.testbed.embedded" in GRAPH["labkit.testbed"]  # the factory, through a deferred import
    assert "labkit.config" in GRAPH["labkit.topology.planner"]


def test_labkit_imports_no_module_in_a_circle() -> None:
    assert _cycles() == []


def test_nothing_above_the_test_beds_imports_a_backend() -> None:
    above = [m for m in MODULES if not _is_backend(m) and m != "labkit.testbed"]
    crossing = {m: sorted(t for t in GRAPH[m] if _is_backend(t)) for m in above}
    assert {m: t for m, t in crossing.items() if t} == {}


def test_the_leaves_in_a_backend_import_nothing_of_the_kit() -> None:
    assert {leaf: sorted(GRAPH[leaf]) for leaf in LEAVES_IN_BACKENDS} == {leaf: [] for leaf in LEAVES_IN_BACKENDS}


def test_tasks_import_no_backend() -> None:
    tree = ast.parse((PACKAGE.parent / "tasks.py").read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert [n for n in names if _is_backend(n)] == []


def test_a_backend_imports_only_what_lies_below_the_test_beds() -> None:
    def allowed(backend: str, target: str) -> bool:
        own = next(b for b in BACKENDS if backend == b or backend.startswith(b + "."))
        return target in ("labkit", own) or target.startswith(own + ".") or any(
            target == b or target.startswith(b + ".") for b in BELOW_TESTBEDS)

    upward = {m: sorted(t for t in GRAPH[m] if not allowed(m, t)) for m in MODULES if _is_backend(m)}
    assert {m: t for m, t in upward.items() if t} == {}
