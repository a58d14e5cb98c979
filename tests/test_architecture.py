"""The layering of the project, read from the source with ``ast`` (nothing is imported).

- (a) No import cycle among the modules of ``convattn``. An edge A -> B is any import of B
  by A outside an ``if TYPE_CHECKING:`` block: at module level (in ``if``/``try`` too) and
  inside functions and methods alike. A deferred import only hides a cycle until the
  function runs; the library keeps imports in functions for cost (cleanlab, captum), never
  to break a loop, so they count. ``from P import name`` is an edge to ``P.name`` when that
  is a module, else to ``P`` (its ``__init__``); importing a module is not counted as an
  edge to its parent packages' ``__init__`` (Python runs those first, but they only gather
  names from below).
- (b) No module of ``convattn/`` imports streamlit, plotly or appkit, anywhere in it.
- (c) Nothing in ``convattn/`` (but ``convattn/cli/`` and the five ``python -m`` shims
  ``convattn/{train,evaluate,ablation,checks,data}.py``), ``appkit/``, ``app_pages/`` or
  ``app.py`` imports ``convattn.cli`` or a shim: a command is a leaf.
- (d) Argument parsing and ``if __name__ == "__main__":`` live in ``convattn/cli/`` and
  the shims only (``scripts/``, ``bench/`` and ``tests/`` are exempt; ``convattn/``,
  ``appkit/``, ``app_pages/`` and ``app.py`` are checked).
- (e) Every module of ``convattn/`` has at most 400 lines.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LIBRARY = REPO / "convattn"
SHIMS = {f"convattn.{name}" for name in ("train", "evaluate", "ablation", "checks", "data")}
APP_ONLY = ("streamlit", "plotly", "appkit")
MAX_LINES = 400


@dataclass(frozen=True)
class Source:
    name: str  # the dotted module name: "convattn.nn.models", "app_pages.1_Inspect"
    path: Path
    tree: ast.Module
    is_package: bool = False

    @property
    def where(self) -> str:
        return str(self.path.relative_to(REPO))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def parse(path: Path) -> Source:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return Source(module_name(path), path, tree, path.name == "__init__.py")


def python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


LIBRARY_SOURCES = [parse(p) for p in python_files(LIBRARY)]
LIBRARY_MODULES = {s.name: s for s in LIBRARY_SOURCES}
APP_SOURCES = [parse(p) for p in [REPO / "app.py", *python_files(REPO / "appkit"),
                                  *python_files(REPO / "app_pages")]]


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement in ``tree``, but those under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, dict[str, int]]:
    graph: dict[str, dict[str, int]] = {}
    for source in LIBRARY_SOURCES:
        edges: dict[str, int] = {}
        for node in import_nodes(source.tree):
            for target in targets(source, node):
                if target != source.name:
                    edges.setdefault(target, node.lineno)
        graph[source.name] = edges
    return graph


def base_of(source: Source, node: ast.ImportFrom) -> str:
    """The module a ``from ... import`` reads from, relative imports resolved."""
    if not node.level:
        return node.module or ""
    package = source.name if source.is_package else source.name.rpartition(".")[0]
    anchor = package.split(".")
    anchor = anchor[:len(anchor) - (node.level - 1)]
    return ".".join([*anchor, node.module] if node.module else anchor)


def targets(source: Source, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The convattn modules one import statement loads (beyond its parent packages)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in LIBRARY_MODULES]
    base = base_of(source, node)
    if base not in LIBRARY_MODULES:
        return []
    found = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in LIBRARY_MODULES]
    if len(found) < len(node.names):  # some names are attributes of base itself
        found.append(base)
    return found


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as a
    cycle through them, shortest found by breadth-first search."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                connect(w)
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
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [shortest_cycle(graph, c) for c in components]


def shortest_cycle(graph: dict[str, dict[str, int]], component: list[str]) -> list[str]:
    inside = set(component)
    best: list[str] = []
    for start in component:
        paths = {start: [start]}
        frontier = [start]
        while frontier:
            nxt = []
            for v in frontier:
                for w in graph[v]:
                    if w == start and (not best or len(paths[v]) < len(best)):
                        best = paths[v]
                    if w in inside and w not in paths:
                        paths[w] = [*paths[v], w]
                        nxt.append(w)
            frontier = nxt
    return [*best, best[0]]


def describe(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    steps = [f"{a} (line {graph[a][b]}) -> {b}" for a, b in zip(cycle, cycle[1:])]
    return "import cycle: " + "; ".join(steps)


def tangles(graph: dict[str, dict[str, int]]) -> list[str]:
    """One line per knot of mutually importing modules: its shortest cycle, and every
    module caught in the knot when there are more."""
    lines = []
    for cycle in cycles(graph):
        knot = component_of(graph, cycle[0])
        line = describe(graph, cycle)
        if len(knot) > len(cycle) - 1:
            line += f" (the knot holds {len(knot)} modules: {', '.join(sorted(knot))})"
        lines.append(line)
    return lines


def component_of(graph: dict[str, dict[str, int]], start: str) -> set[str]:
    """The modules that both reach ``start`` and are reached from it."""
    def reach(edges: dict[str, set[str]]) -> set[str]:
        seen, todo = {start}, [start]
        while todo:
            for w in edges.get(todo.pop(), ()):
                if w not in seen:
                    seen.add(w)
                    todo.append(w)
        return seen

    forward = {v: set(ws) for v, ws in graph.items()}
    backward: dict[str, set[str]] = {}
    for v, ws in graph.items():
        for w in ws:
            backward.setdefault(w, set()).add(v)
    return reach(forward) & reach(backward)


def test_no_import_cycle_in_the_library():
    found = tangles(import_graph())
    assert not found, "\n".join(found)


def is_cli(name: str) -> bool:
    return name == "convattn.cli" or name.startswith("convattn.cli.") or name in SHIMS


def imports_of(source: Source) -> list[tuple[list[str], ast.Import | ast.ImportFrom]]:
    """Each import statement of ``source`` with the dotted names it reads: ``from P import
    a`` gives both P and P.a (a may be a module); relative imports resolved."""
    found = []
    for node in import_nodes(source.tree):
        if isinstance(node, ast.Import):
            found.append(([a.name for a in node.names], node))
        else:
            base = base_of(source, node)
            found.append(([base, *(f"{base}.{a.name}" for a in node.names if a.name != "*")],
                          node))
    return found


def offending(sources: list[Source], bad) -> list[str]:
    """``path:line: the import statement`` for every import of ``sources`` that reads a
    name ``bad`` says yes to."""
    return [f"{s.where}:{node.lineno}: {ast.unparse(node)}" for s in sources
            for names, node in imports_of(s) if any(bad(name) for name in names)]


def test_the_library_imports_no_app_code():
    offences = offending(LIBRARY_SOURCES, lambda name: name.split(".")[0] in APP_ONLY)
    assert not offences, ("the library must run without streamlit, plotly and appkit:\n"
                          + "\n".join(offences))


def test_nothing_but_the_commands_imports_the_commands():
    importers = [s for s in LIBRARY_SOURCES if not is_cli(s.name)] + APP_SOURCES
    offences = offending(importers, is_cli)
    assert not offences, ("convattn.cli and the python -m shims are leaves: the library "
                          "and the app call convattn.jobs instead:\n" + "\n".join(offences))


def is_main_guard(test: ast.expr) -> bool:
    return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name)
            and test.left.id == "__name__" and len(test.comparators) == 1
            and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value == "__main__")


def script_signs(source: Source) -> list[str]:
    signs = [f"imports argparse (line {node.lineno})" for names, node in imports_of(source)
             if any(name.split(".")[0] == "argparse" for name in names)]
    signs += [f'has if __name__ == "__main__" (line {node.lineno})'
              for node in source.tree.body if isinstance(node, ast.If)
              and is_main_guard(node.test)]
    return signs


def test_only_the_commands_are_scripts():
    offences = [f"{s.where} {sign}" for s in LIBRARY_SOURCES + APP_SOURCES
                if not is_cli(s.name) for sign in script_signs(s)]
    assert not offences, ("argument parsing and __main__ blocks belong in convattn/cli/ "
                          "(or a shim):\n" + "\n".join(offences))


def test_the_shims_stay_shims():
    for name in sorted(SHIMS):
        assert name in LIBRARY_MODULES, f"the python -m shim {name} is missing"


@pytest.mark.parametrize("source", LIBRARY_SOURCES, ids=lambda s: s.name)
def test_a_library_module_is_at_most_400_lines(source):
    lines = len(source.path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, (f"{source.where} has {lines} lines (at most {MAX_LINES}): "
                                "split it")


def test_the_checker_sees_what_it_checks():
    """The parser itself: a relative import, a function-level import and a TYPE_CHECKING
    one, on a made-up module."""
    code = ("from typing import TYPE_CHECKING\n"
            "from . import models\n"
            "from ..files.info import CheckpointInfo\n"
            "if TYPE_CHECKING:\n    from convattn.trust import ood\n"
            "def f():\n    import convattn.readout.attention\n")
    source = Source("convattn.nn.example", LIBRARY / "nn" / "example.py", ast.parse(code))
    assert set(library_targets(source)) == {"convattn.nn.models", "convattn.files.info",
                                            "convattn.readout.attention"}
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3, "b": 4}, "d": {"a": 5}}
    assert cycles(graph) == [["b", "c", "b"]]
    assert tangles(graph) == ["import cycle: b (line 2) -> c; c (line 4) -> b (the knot "
                              "holds 3 modules: a, b, c)"]


def library_targets(source: Source) -> list[str]:
    return [t for node in import_nodes(source.tree) for t in targets(source, node)]
