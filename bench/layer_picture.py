"""The layer picture of a checkout: library modules per subpackage, import cycles, which
modules parse arguments, and who imports them (the figures of the house-v2 report).

    python -m bench.layer_picture [--repo OTHER_CHECKOUT]

Reads the imports with ``ast``; nothing is imported. Imports under ``if TYPE_CHECKING:``
count here (tests/test_architecture.py, which guards the rules, leaves them out).
"""

from __future__ import annotations

import argparse
import ast
import collections
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def modules(root: Path) -> dict[str, Path]:
    files = [*root.glob("convattn/**/*.py"), *root.glob("appkit/**/*.py"),
             *root.glob("app_pages/*.py"), root / "app.py"]
    return {str(p.relative_to(root).with_suffix("")).replace("/", ".").removesuffix(
        ".__init__"): p for p in sorted(files) if p.is_file()}


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - (node.level - 1)] \
                if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{module}.{alias.name}"
                found.add(full if full in known else module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {f for f in found if f in known and f != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, default=ROOT, help="the checkout to read")
    root = parser.parse_args(argv).repo.resolve()
    known = modules(root)
    if not known:
        print(f"error: {root} holds no convattn checkout.", file=sys.stderr)
        return 2
    graph = {n: imports(n, p, known) for n, p in known.items()}
    library = [n for n in known if n.startswith("convattn.") and known[n].name != "__init__.py"]
    per = collections.Counter(n.split(".")[1] if n.count(".") > 1 else "(top level)"
                              for n in library)
    clis = {n for n in library
            if "__main__" in known[n].read_text() or "argparse" in known[n].read_text()}
    app = [n for n in known if not n.startswith("convattn")]
    print(f"{root}")
    print(f"library modules: {len(library)} {dict(sorted(per.items()))}")
    print(f"import cycles in convattn: "
          f"{[c for c in cycles(graph) if all(m.startswith('convattn') for m in c)]}")
    print(f"modules that parse arguments or run as __main__: {sorted(clis)}")
    print(f"app files importing one of them: {sum(bool(graph[a] & clis) for a in app)}")
    print(f"library modules importing one of them: "
          f"{sorted(n for n in library if n not in clis and graph[n] & clis)}")
    print(f"appkit modules: {sum(n.startswith('appkit') for n in known)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
