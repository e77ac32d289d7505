"""The import graph of a package, read with :mod:`ast` without importing anything, and the rules of
docs/architecture.md checked on it: layers, cycles, built-ins reached through the catalog, no lookups in ``models/``,
public names only from outside. ``tests/test_architecture.py`` applies them to ``a2k_toolkit``; the functions take
the package, its layers and the allowlist as arguments, so that test can try them on small made-up packages too.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT_MODULE = "__init__"  # how the layers name a package's own __init__ (a2k_toolkit's: the public facade)
Layers = list[tuple[str, tuple[str, ...]]]  # (layer name, its groups), bottom to top; "name/" is a whole package


# ---------------------------------------------------------------------------------------------------- the graph


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    path: Path
    line: int
    implicit: bool = False  # the __init__ of a package that an import of one of its modules runs
    type_only: bool = False  # under `if TYPE_CHECKING:`: a dependency, but never run, so it closes no cycle
    base: Path = Path()  # file names are shown relative to this folder

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(self.base)}:{self.line}"

    def __str__(self) -> str:
        how = " (its package __init__, run by that import)" if self.implicit else ""
        return f"{self.where}: {self.importer} imports {self.imported}{how}"


def package_modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file under ``root`` (the folder of ``package``)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if "__pycache__" in parts:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join([package, *parts])] = path
    return modules


def _existing(name: str, modules: dict[str, Path]) -> str | None:
    """``name`` or its longest prefix that is a module (``pkg.mod.attr`` -> ``pkg.mod``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _targets(
    node: ast.Import | ast.ImportFrom, importer: str, is_package: bool, modules: dict, package: str
) -> list[str]:
    """The modules of the package an import statement imports, resolved as Python resolves them."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:
            base = importer.split(".") if is_package else importer.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        # `from x import y` imports the module x.y when there is one, else the name y of module x
        names = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names]
    found = (_existing(n, modules) for n in names if n == package or n.startswith(package + "."))
    return list(dict.fromkeys(t for t in found if t))


def import_edges(modules: dict[str, Path], base: Path, package: str) -> list[Edge]:
    """Every import between modules of ``modules``, wherever the statement is (module level, functions, classes)."""
    edges = []
    for importer, path in modules.items():
        tree = ast.parse(path.read_text("utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        type_only = {id(n) for block in ast.walk(tree) if _is_type_checking(block) for n in _walk_body(block)}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            where = {"path": path, "line": node.lineno, "type_only": id(node) in type_only, "base": base}
            for target in _targets(node, importer, is_package, modules, package):
                if target != importer:
                    edges.append(Edge(importer, target, **where))
                # the packages above the target run their __init__ first, unless the importer is inside them
                parts = target.split(".")
                for i in range(len(parts) - 1, 1, -1):
                    parent = ".".join(parts[:i])
                    if importer != parent and not importer.startswith(parent + "."):
                        edges.append(Edge(importer, parent, implicit=True, **where))
    return edges


def _is_type_checking(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` or ``if typing.TYPE_CHECKING:``."""
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk_body(node: ast.If):
    """Every node under the ``if`` branch (not the ``else``)."""
    for stmt in node.body:
        yield from ast.walk(stmt)


def layer_of(module: str, layers: Layers, package: str) -> int | None:
    rel = ROOT_MODULE if module == package else module[len(package) + 1 :]
    for index, (_, groups) in enumerate(layers):
        if any(rel == g.rstrip("/") or (g.endswith("/") and rel.startswith(g[:-1] + ".")) for g in groups):
            return index
    return None


# ---------------------------------------------------------------------------------------------------- the rules


@dataclass(frozen=True)
class Violation:
    rule: str
    importer: str
    imported: str
    message: str


def layer_violations(edges: list[Edge], layers: Layers, package: str) -> list[Violation]:
    out = []
    for e in edges:
        low, high = layer_of(e.importer, layers, package), layer_of(e.imported, layers, package)
        if low is not None and high is not None and high > low:
            out.append(
                Violation(
                    "upward",
                    e.importer,
                    e.imported,
                    f"{e} -- layer {low + 1} ({layers[low][0]}) imports layer {high + 1} ({layers[high][0]}), "
                    "which is above it",
                )
            )
    return out


def builtin_violations(edges: list[Edge], package: str) -> list[Violation]:
    builtin = f"{package}.builtin"
    return [
        Violation(
            "builtin",
            e.importer,
            e.imported,
            f"{e} -- built-in plugin modules are reached through the catalog (Catalog.get / Catalog.build by "
            "name), and what several layers share lives in a module below them",
        )
        for e in edges
        if e.imported.startswith(builtin + ".") and not (e.importer == builtin or e.importer.startswith(builtin + "."))
    ]


def models_lookup_violations(edges: list[Edge], package: str) -> list[Violation]:
    lookups = {f"{package}.catalog", f"{package}.plugins"}
    return [
        Violation(
            "models-lookup",
            e.importer,
            e.imported,
            f"{e} -- models/ builds networks from the parts it is given and never looks components up",
        )
        for e in edges
        if e.importer.startswith(f"{package}.models") and e.imported in lookups
    ]


def find_cycles(edges: list[Edge]) -> list[list[Edge]]:
    """One cycle (as its edges, in order) per strongly connected group of modules (Tarjan's algorithm)."""
    graph: dict[str, dict[str, Edge]] = defaultdict(dict)
    for e in edges:
        graph[e.importer].setdefault(e.imported, e)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(v: str) -> None:  # recursive: the package's import graph is a few hundred modules deep at most
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
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    cycles = []
    for group in groups:
        members, start = set(group), min(group)
        # breadth-first from `start` inside the group, back to `start`: the shortest cycle through it
        came_from: dict[str, Edge] = {}
        frontier = [start]
        while frontier and start not in came_from:
            nxt = []
            for v in frontier:
                for w, e in sorted(graph[v].items()):
                    if w in members and w not in came_from:
                        came_from[w] = e
                        nxt.append(w)
            frontier = nxt
        path, v = [], start
        while True:
            e = came_from[v]
            path.append(e)
            v = e.importer
            if v == start:
                break
        cycles.append(path[::-1])
    return cycles


def format_cycle(cycle: list[Edge]) -> str:
    chain = " -> ".join([cycle[0].importer, *(f"{e.imported} ({e.where})" for e in cycle)])
    return f"import cycle: {chain}"


def check_package(root: Path, package: str, layers: Layers, known: dict) -> tuple[list[str], list[str]]:
    """``(failures, notes)`` of every rule on the package in ``root`` (``known``: the allowlist, (importer,
    imported) -> who removes it)."""
    modules = package_modules(root, package)
    edges = import_edges(modules, root.parent, package)
    failures = [
        f"{path.relative_to(root.parent)}: module {name} has no layer; add it to LAYERS in tests/test_architecture.py "
        "and to the layer table of docs/architecture.md"
        for name, path in modules.items()
        if layer_of(name, layers, package) is None
    ]
    violations = layer_violations(edges, layers, package)
    violations += builtin_violations(edges, package) + models_lookup_violations(edges, package)
    failures += [v.message for v in violations if (v.importer, v.imported) not in known]
    # an allowlisted import is left out of the graph too, so the cycle it closes is not reported either
    runtime = [e for e in edges if not e.type_only and (e.importer, e.imported) not in known]
    failures += [format_cycle(c) for c in find_cycles(runtime)]
    present = {(e.importer, e.imported) for e in edges}
    notes = [
        f"KNOWN_VIOLATIONS: {importer} no longer imports {imported} ({who}); remove the entry"
        for (importer, imported), who in known.items()
        if (importer, imported) not in present
    ]
    return failures, notes


# ------------------------------------------------------------------------------------------------- public names


def _module_all(path: Path) -> set[str] | None:
    """The names in a module's literal ``__all__``, or None when it has none."""
    for node in ast.parse(path.read_text("utf-8")).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
    return None


def public_name_violations(
    files: list[Path], modules: dict[str, Path], public: frozenset, package: str, base: Path
) -> list[str]:
    """The imports of ``package`` in ``files`` that use a name outside the ``public`` modules' public names."""
    exported = {m: _module_all(modules[m]) for m in public if m in modules}

    def allowed(module: str, name: str) -> bool:
        if f"{module}.{name}" in modules:  # a submodule
            return f"{module}.{name}" in public
        if module not in public:
            return False
        names = exported.get(module)
        return name in names if names is not None else not name.startswith("_")

    out = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text("utf-8"), filename=str(path))):
            where = f"{path.relative_to(base) if path.is_relative_to(base) else path}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith(package + ".") and a.name not in public:
                        out.append(f"{where}: import {a.name} -- not a public module")
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                if node.module != package and not node.module.startswith(package + "."):
                    continue
                for a in node.names:
                    if not allowed(node.module, a.name):
                        out.append(f"{where}: from {node.module} import {a.name} -- not a public name")
    return out
