"""The package's stages import one way (docs/architecture.md): geometry -> workload -> planning
-> evaluation -> actuation -> cluster -> cli, each using only the stages before it, and no
module imports itself back through others. Every import counts, those inside functions too:
a lazy import is still a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import migrator

# The installed package's own files (an editable install's resources path is a multiplexed view).
PACKAGE = Path(migrator.__file__).resolve().parent

# Rank of each top-level part of ``migrator``: a module may import ranks up to its own.
# errors and the compiled core sit under everything; the package's __init__ (the public API,
# re-exporting from several stages) and __main__ sit above everything.
RANKS = {
    "_core": 0,
    "errors": 0,
    "_moved": 0,
    "_files": 0,
    "geometry": 1,
    "workload": 2,
    "planning": 3,
    "evaluation": 4,
    "actuation": 5,
    "cluster": 6,
    "cli": 7,
    "": 8,  # migrator/__init__.py
    "__main__": 9,
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, name: str, is_package: bool, known: set[str]) -> set[str]:
    """The modules of ``known`` that the module ``name``'s source imports, anywhere in it."""
    found = set()
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # ``from . import greedy`` imports the submodule greedy, not an attribute
            found.update(f"{target}.{alias.name}" for alias in node.names)
    # A module's own packages are imported before it: naming them (``from . import x``) adds
    # no dependency.
    ancestors = {".".join(name.split(".")[:k]) for k in range(1, name.count(".") + 1)}
    return {m for m in found if m in known} - ancestors


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    known = set(files) | {"migrator._core"}
    return {
        name: imported_modules(path.read_text(encoding="utf-8"), name, path.name == "__init__.py", known) - {name}
        for name, path in files.items()
    }


def rank(module: str) -> int:
    parts = module.split(".")
    return RANKS[parts[1] if len(parts) > 1 else ""]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets if rank(b) > rank(a))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_every_module_belongs_to_a_stage(graph):
    assert all(rank(m) >= 0 for m in graph)  # a KeyError names a folder RANKS does not know


def test_the_walk_sees_imports_of_every_kind(graph):
    # top-level, relative from a sibling stage, inside a function, and ``from . import module``
    assert "migrator.workload.goodput" in graph["migrator.planning.planner"]
    assert "migrator.geometry._nvml_read" in graph["migrator.workload.scenario"]  # inside a function
    assert "migrator._core" in graph["migrator.geometry.geometry"]
    assert "migrator.workload._kernels" in graph["migrator.evaluation.simulate"]


def test_no_stage_imports_a_later_one(graph):
    assert upward_imports(graph) == []


def test_no_import_cycles(graph):
    assert cycles(graph) == []


def test_nothing_imports_the_command_line(graph):
    importers = {a for a, targets in graph.items() for b in targets if b.startswith("migrator.cli")}
    assert {a for a in importers if not a.startswith("migrator.cli")} == {"migrator.__main__"}


def test_the_checks_catch_an_upward_import_and_a_cycle(tmp_path):
    root = tmp_path / "migrator"
    for folder in ("geometry", "planning"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "geometry" / "layout.py").write_text("def f():\n    from ..planning import planner\n")
    (root / "planning" / "planner.py").write_text("from ..geometry.layout import f\n")
    graph = import_graph(root)
    assert upward_imports(graph) == [
        "migrator.geometry.layout -> migrator.planning",
        "migrator.geometry.layout -> migrator.planning.planner",
    ]
    assert cycles(graph) == [["migrator.geometry.layout", "migrator.planning.planner"]]
