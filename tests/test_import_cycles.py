"""No import circles in ``localroute/`` (house rule 7: imports go downward only).

The graph is read from the source with ``ast``, so an import inside a function counts like one
at the top: a circle hidden in a function still ties two modules together. Imports under
``if TYPE_CHECKING:`` are left out: they never run and only name a type for the checker (the
residency manager's tickets and view modules annotate with it that way). ruff and mypy do not
look for circles, hence this test.
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

from tests.support.paths import REPO

PACKAGE = "localroute"


def _module_name(path: Path, top: Path) -> str:
    parts = list(path.relative_to(top).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """Dotted names a statement imports; ``from m import x`` may name module ``m.x``."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    return [target] + [f"{target}.{alias.name}" for alias in node.names]


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports anywhere in its source."""
    files = {_module_name(path, package.parent): path for path in package.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges: set[str] = set()
        for node in _runtime_imports(tree):
            for name in _imported(node, module, path.name == "__init__.py"):
                if name in files and name != module:
                    edges.add(name)
        graph[module] = edges
    return graph


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(node: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement under ``node`` except the bodies of ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            found.append(child)
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                found.extend(_runtime_imports(other))
                if isinstance(other, ast.Import | ast.ImportFrom):
                    found.append(other)
        else:
            found.extend(_runtime_imports(child))
    return found


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Circles in the graph, one per broken edge, until none is left."""
    remaining = {node: set(edges) for node, edges in graph.items()}
    cycles: list[list[str]] = []
    while True:
        try:
            TopologicalSorter(remaining).prepare()
        except CycleError as exc:
            cycle: list[str] = exc.args[1]
            cycles.append(cycle)
            # graphlib reports the circle as [n0, n1, ..., n0] where each node depends on the
            # next one; drop one of its edges so that the next round can find another circle.
            remaining[cycle[1]].discard(cycle[0])
            remaining[cycle[0]].discard(cycle[1])
            continue
        return cycles


def test_the_graph_sees_imports_inside_functions(tmp_path: Path) -> None:
    # The checker itself must find a circle hidden in a function body (a circle it cannot see
    # would make the real test pass for nothing).
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import g\n\ndef f():\n    return g()\n")
    (pkg / "b.py").write_text("def g():\n    from . import a\n    return a\n")
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import f\n"
    )
    graph = import_graph(pkg)
    assert graph["pkg.a"] == {"pkg.b"}
    assert graph["pkg.b"] == {"pkg", "pkg.a"}
    assert graph["pkg.c"] == set()  # a type-only import is no dependency at run time
    assert find_cycles(graph) in (
        [["pkg.a", "pkg.b", "pkg.a"]],
        [["pkg.b", "pkg.a", "pkg.b"]],
    )


def test_no_import_circles_in_the_package() -> None:
    cycles = find_cycles(import_graph(REPO / PACKAGE))
    assert cycles == [], "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)
