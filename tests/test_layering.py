"""Layering, checked over every module: imports run models → devices → bench → reports and never back up, and
no two modules import each other, directly or around a loop.

Every import counts, including those inside functions and under TYPE_CHECKING: a lazy import still ties the
two modules' designs together. The layers (README, Layout):

    ticketbench/ (shared) ← models ← devices ← bench → reports
                                               reports ← shared only (no torch, no bench)
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYER_FOLDERS = ("bench", "models", "devices", "reports")

# Which layers each layer may import, besides itself.
ALLOWED = {
    "shared": set(),
    "models": {"shared"},
    "devices": {"shared", "models"},
    "bench": {"shared", "models", "devices", "reports"},
    "reports": {"shared"},
}


def module_name(path: Path) -> str:
    """The README's rule: `<folder>/<m>.py` is `ticketbench.<folder>.<m>`; `ticketbench/<m>.py` is `ticketbench.<m>`."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts if parts[0] == "ticketbench" else ["ticketbench", *parts])


def all_modules() -> dict[str, Path]:
    files = [p for d in ("ticketbench", *LAYER_FOLDERS) for p in (REPO / d).rglob("*.py")]
    return {module_name(p): p for p in files if "__pycache__" not in p.parts}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYER_FOLDERS else "shared"


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The ticketbench modules `module` imports, each resolved to the module file that holds the name."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            # `from pkg import sub` imports the submodule `pkg.sub` when there is one, else a name of `pkg`.
            found.update(f"{name}.{a.name}" if f"{name}.{a.name}" in modules else name for a in node.names)
    targets = set()
    for name in found:
        if not name.startswith("ticketbench"):
            continue
        while name not in modules:  # `import ticketbench.x.y` of a name inside module x: the module is x
            name = name.rpartition(".")[0]
        targets.add(name)
    return targets - {module}


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {m: imports_of(m, p, modules) for m, p in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
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
    return found


def test_the_graph_sees_every_module_and_the_imports_we_know():
    graph = import_graph()
    assert len(graph) > 70 and all(layer(m) in ALLOWED for m in graph)
    assert "ticketbench.devices.base" in graph["ticketbench.devices.cpu"]
    assert "ticketbench.models.zoo.base" in graph["ticketbench.models.zoo.vgg"]  # `from x.base import name`
    assert "ticketbench.models.zoo.vgg" in graph["ticketbench.models.zoo"]  # `from pkg import submodule`


def test_no_layer_imports_upward():
    graph = import_graph()
    upward = sorted(
        f"{m} ({layer(m)}) imports {t} ({layer(t)})"
        for m, targets in graph.items()
        for t in targets
        if layer(t) != layer(m) and layer(t) not in ALLOWED[layer(m)]
    )
    assert upward == []


def test_no_import_circles():
    assert cycles(import_graph()) == []


def test_the_circle_finder_finds_circles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
