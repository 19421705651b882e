"""The import walls of the tree and the absence of import cycles, read from the source with ``ast`` (nothing is
imported): every ``import`` counts, at module level, inside functions and under ``TYPE_CHECKING``.

- the GIMP plug-in imports the standard library, ``gi`` and ``bridge`` only;
- the bridge imports the standard library only, and ``zmq`` only where it may be missing (inside ``try``);
- the walls of the engine (``WALLS``): the paper's stages and the generator contract never import the model
  families, the server, the CLI or training; the families never import the server, the CLI, training or the
  photo pipeline; the server never imports the CLI; training imports of the CLI only its files;
- the layers below the server import only downwards (``ONLY``): sites <- generator <- models, project, collage
  <- blend; arrays <- compose; all of them <- edit;
- no import cycles between modules, nor between packages at any depth.

``test_checker_sees_violations`` feeds the checks a small tree that breaks each rule, and
``test_the_real_rules_catch_a_break_in_a_copy_of_the_tree`` breaks a copy of this tree, so this file can fail.
"""
from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "bridge")  # the importable packages whose modules form the graph

# The walls: (importer, forbidden imports, allowed exceptions): a module under ``importer`` may import nothing
# under ``forbidden`` unless it is under one of the exceptions.  Prefixes are dotted names.
STAGES = ("engine.project", "engine.collage", "engine.blend", "engine.compose", "engine.edit")
CORE = ("engine.generator", "engine.sites")
WALLS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("bridge", ("engine",), ()),
    *[(p, ("engine.models", "engine.serve", "engine.cli", "engine.train"), ()) for p in STAGES + CORE],
    ("engine.models", ("engine.serve", "engine.cli", "engine.train", "engine.edit"), ()),
    ("engine.serve", ("engine.cli", "engine.train"), ()),
    ("engine.train", ("engine.serve", "engine.cli"), ("engine.cli.files",)),
]

# The layers below the server, from the bottom up: a module under the key imports nothing of the tree but its own
# package and these.  (The server, the CLI and training sit on top and may use any of them, within WALLS.)
ONLY: dict[str, tuple[str, ...]] = {
    "engine.sites": (),  # sCBN and blending at one site
    "engine.arrays": (),
    "engine.classes": (),
    "engine.device": (),
    "engine.tiles": (),  # tile geometry for tiled rendering and calibration
    "engine.generator": ("engine.sites",),  # the contract
    "engine.models": ("engine.generator", "engine.sites"),  # the families implement it
    "engine.project": ("engine.generator", "engine.sites", "engine.tiles"),
    "engine.collage": ("engine.generator", "engine.sites"),
    "engine.blend": ("engine.generator", "engine.sites", "engine.collage"),
    "engine.compose": ("engine.arrays",),
    # the pipeline may take the bridge's typed requests (stdlib dataclasses shared by both ends) and asks the
    # device module (a leaf) which precision the device computes natively
    "engine.edit": ("engine.arrays", "engine.device", "engine.generator", "engine.sites", "engine.tiles",
                    "bridge.requests", "bridge.errors") + STAGES,
    "bridge": (),
}


# -- reading the tree --------------------------------------------------------------------------------------------
def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules(root: Path, packages: Sequence[str] = PACKAGES) -> dict[str, Path]:
    """Every module of ``packages`` under ``root``: dotted name -> file."""
    out = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            out[module_name(path, root)] = path
    return out


def imported_modules(path: Path, name: str, known: Mapping[str, Path]) -> dict[str, int]:
    """The modules of ``known`` that the file imports -> the first line that does.  ``from a import b`` counts
    as an import of ``a.b`` when that is a module, else of ``a``; a name outside ``known`` counts as its longest
    dotted prefix in ``known`` (or not at all)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:
                sub = f"{mod}.{a.name}"
                targets.append((sub if sub in known else mod, node.lineno))
    out: dict[str, int] = {}
    for target, line in sorted(targets, key=lambda t: t[1]):
        got = resolve(target, known)
        if got is not None and got != name:
            out.setdefault(got, line)
    return out


def resolve(target: str, known: Mapping[str, Path]) -> str | None:
    """The module of ``known`` that ``target`` names: itself, or its longest dotted prefix that is a module."""
    while target:
        if target in known:
            return target
        target = target.rpartition(".")[0]
    return None


def import_graph(root: Path, packages: Sequence[str] = PACKAGES) -> dict[str, dict[str, int]]:
    """module -> {imported module of the tree: first line}."""
    known = modules(root, packages)
    return {name: imported_modules(path, name, known) for name, path in known.items()}


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


# -- the checks --------------------------------------------------------------------------------------------------
def wall_violations(graph: Mapping[str, Mapping[str, int]], walls=WALLS) -> list[str]:
    out = []
    for importer, targets in sorted(graph.items()):
        for src, forbidden, allowed in walls:
            if not under(importer, src):
                continue
            for t, line in sorted(targets.items()):
                if any(under(t, f) for f in forbidden) and not any(under(t, a) for a in allowed):
                    out.append(f"{importer} imports {t} (line {line}): {src} must not import {', '.join(forbidden)}")
    return out


def layer_violations(graph: Mapping[str, Mapping[str, int]], only: Mapping[str, Sequence[str]] = ONLY) -> list[str]:
    out = []
    for importer, targets in sorted(graph.items()):
        for layer, allowed in only.items():
            if not under(importer, layer):
                continue
            for t, line in sorted(targets.items()):
                if not under(t, layer) and not any(under(t, a) for a in allowed):
                    out.append(f"{importer} imports {t} (line {line}): {layer} may import only "
                               f"{', '.join(allowed) or 'itself'}")
    return out


def cycles(graph: Mapping[str, Iterable[str]]) -> list[tuple[str, ...]]:
    """Strongly connected components with more than one member (Tarjan), each sorted; the list sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(tuple(sorted(comp)))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def package_graph(graph: Mapping[str, Iterable[str]], depth: int) -> dict[str, set[str]]:
    """The graph with every module cut to its first ``depth`` dotted parts (its package at that depth)."""
    def cut(n: str) -> str:
        return ".".join(n.split(".")[:depth])

    out: dict[str, set[str]] = {}
    for a, targets in graph.items():
        out.setdefault(cut(a), set())
        for b in targets:
            if cut(a) != cut(b) and not under(cut(b), cut(a)) and not under(cut(a), cut(b)):
                out[cut(a)].add(cut(b))
    return out


def package_cycles(graph: Mapping[str, Iterable[str]]) -> list[tuple[str, ...]]:
    """Cycles between packages at every depth below the top (engine.x at depth 2, engine.x.y at 3, ...)."""
    depth = max((n.count(".") + 1 for n in graph), default=1)
    packages = {n.rpartition(".")[0] for n in graph}
    found: list[tuple[str, ...]] = []
    for d in range(2, depth):
        for c in cycles(package_graph(graph, d)):
            if c not in found and any(m in packages for m in c):  # modules alone: a module cycle, seen above
                found.append(c)
    return sorted(found)


def outside_imports(root: Path, folder: str, allowed: set[str], guarded: set[str] = frozenset()) -> list[str]:
    """Imports in ``root/folder`` of top-level modules outside the standard library and ``allowed``; ``guarded``
    modules are allowed only inside a ``try`` block (optional dependencies)."""
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    own = {p.stem for p in (root / folder).rglob("*.py")}
    out = []
    for path in sorted((root / folder).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        in_try: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Try):
                for child in node.body:
                    in_try.update(id(n) for n in ast.walk(child))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for n in names:
                top = n.split(".")[0]
                if top in stdlib or top in allowed or top in own:
                    continue
                if top in guarded and id(node) in in_try:
                    continue
                rel = path.relative_to(root)
                what = "outside a try block" if top in guarded else "(not standard library)"
                out.append(f"{rel}:{node.lineno} imports {n} {what}")
    return out


# -- the tests ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def graph():
    return import_graph(ROOT)


def test_graph_reads_the_tree(graph):
    """The reader finds the modules and a few edges everyone knows, so the checks below are not vacuous."""
    assert len(graph) > 30
    assert "engine.collage.label" in graph["engine.edit.pipeline"]
    assert "bridge.protocol" in graph["bridge.client"]


def test_plugin_imports_only_the_bridge():
    assert outside_imports(ROOT, "gimp_plugin", allowed={"gi", "bridge"}) == []


def test_bridge_imports_only_the_standard_library():
    assert outside_imports(ROOT, "bridge", allowed={"bridge"}, guarded={"zmq"}) == []


def test_walls(graph):
    assert wall_violations(graph) == []


def test_layers(graph):
    assert layer_violations(graph) == []


def test_no_module_cycles(graph):
    assert cycles(graph) == []


def test_no_package_cycles(graph):
    assert package_cycles(graph) == []


def test_checker_sees_violations(tmp_path):
    """A small tree that breaks each rule once: every check reports it."""
    files = {
        "engine/__init__.py": "",
        "engine/generator.py": "from engine.sites import scbn\n",
        "engine/sites/__init__.py": "",
        "engine/sites/scbn.py": "import torch\n",
        "engine/collage/__init__.py": "",
        "engine/collage/label.py": "def f():\n    from engine.models.family import Family\n",
        "engine/models/__init__.py": "",
        "engine/models/family.py": "from engine.generator import Contract\nfrom . import store\n",
        "engine/models/store.py": "import engine.models.family\n",
        "bridge/__init__.py": "",
        "bridge/protocol.py": "import numpy\nimport zmq\ntry:\n    import zmq\nexcept ImportError:\n    zmq = None\n",
        "gimp_plugin/nc/plugin.py": "import bridge.protocol\nimport engine.generator\n",
    }
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    g = import_graph(tmp_path)
    assert g["engine.generator"] == {"engine.sites.scbn": 1}
    assert set(g["engine.models.family"]) == {"engine.generator", "engine.models.store"}
    walls = [("engine.collage", ("engine.models",), ())]
    assert wall_violations(g, walls) == [
        "engine.collage.label imports engine.models.family (line 2): engine.collage must not import engine.models"]
    assert layer_violations(g, {"engine.sites": (), "engine.generator": ("engine.sites",)}) == []
    assert layer_violations(g, {"engine.models": ("engine.generator",)}) == []  # its own package is allowed
    assert layer_violations(g, {"engine.models": ("engine.sites",)}) == [
        "engine.models.family imports engine.generator (line 1): engine.models may import only engine.sites"]
    assert cycles(g) == [("engine.models.family", "engine.models.store")]
    # package level: engine.sites <- engine.generator <- engine.models; add engine.sites -> engine.models
    (tmp_path / "engine/sites/scbn.py").write_text("from engine.models.store import x\n")
    g = import_graph(tmp_path)
    assert ("engine.generator", "engine.models", "engine.sites") in package_cycles(g)
    assert outside_imports(tmp_path, "bridge", allowed={"bridge"}, guarded={"zmq"}) == [
        "bridge/protocol.py:1 imports numpy (not standard library)",
        "bridge/protocol.py:2 imports zmq outside a try block"]
    assert outside_imports(tmp_path, "gimp_plugin", allowed={"gi", "bridge"}) == [
        "gimp_plugin/nc/plugin.py:2 imports engine.generator (not standard library)"]


def test_the_real_rules_catch_a_break_in_a_copy_of_the_tree(tmp_path):
    """The rules above, on a copy of engine/ and bridge/ where sCBN imports the model registry and the bridge
    imports numpy: walls, layers and package cycles all say so."""
    for pkg in PACKAGES:
        for src in (ROOT / pkg).rglob("*.py"):
            dst = tmp_path / src.relative_to(ROOT)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(src.read_text(encoding="utf-8"), encoding="utf-8")
    scbn = tmp_path / "engine" / "sites" / "scbn.py"
    scbn.write_text(scbn.read_text(encoding="utf-8") + "\n\ndef _load():\n    from engine.models.registry import "
                    "load_model\n    return load_model\n", encoding="utf-8")
    protocol = tmp_path / "bridge" / "protocol.py"
    protocol.write_text("import numpy\n" + protocol.read_text(encoding="utf-8"), encoding="utf-8")
    g = import_graph(tmp_path)
    assert any(v.startswith("engine.sites.scbn imports engine.models.registry") for v in wall_violations(g))
    assert any(v.startswith("engine.sites.scbn imports engine.models.registry") for v in layer_violations(g))
    assert any({"engine.models", "engine.sites"} <= set(c) for c in package_cycles(g))
    assert outside_imports(tmp_path, "bridge", allowed={"bridge"}, guarded={"zmq"}) == [
        "bridge/protocol.py:1 imports numpy (not standard library)"]
