"""Dependencies point one way, module by module, and never go round in a circle.

``LAYERS`` places every module of genbench and of the zoo, bottom up: the contract
(``genbench.core``), data sets and the zoo (which see only the contract, and not each other),
metrics, training, suites, the results layer module by module (rows and the database at the
bottom, the leaderboard on top), then the harness module by module (scoring, the runner, launch,
the command line). A module imports only modules of strictly lower layers and of its own entry;
genbench never imports the zoo (it comes in through its entry point like any plugin); and no chain
of imports leads from a module back to itself, counting imports inside functions: an import
deferred into a function hides a cycle from Python at import time, not from the design.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: the top-level packages scanned: genbench and the zoo plugin
SCANNED = ("genbench", "zoo")

#: The layers, bottom up. An entry names one module, or with ``.*`` a package and all its modules
#: (the package's inner order is then its own business: only the cycle check looks inside it).
#: A module may import its own entry and any entry of a lower layer; entries sharing a layer are
#: peers that do not import each other. A new module goes in a layer above all it imports.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("genbench",),  # the package itself: its version, nothing else
    ("genbench.core.*",),
    ("genbench.protocols",),  # the contract at its public import path
    ("genbench.data.*", "zoo.*"),
    ("genbench.metrics.*",),
    ("genbench.train.*",),
    ("genbench.suites",),
    ("genbench.results",),
    ("genbench.results.intervals",),
    ("genbench.results.rows",),
    ("genbench.results.db",),
    ("genbench.results.aggregate", "genbench.results.external", "genbench.results.rundir"),
    ("genbench.results.paper_tables", "genbench.results.archive"),
    ("genbench.results.figures",),
    ("genbench.results.pictures", "genbench.results.leaderboard"),
    ("genbench.results.published",),
    ("genbench.report.*", "genbench.sample_sets", "genbench.context"),
    ("genbench.scoring", "genbench.generators"),
    ("genbench.user_models", "genbench.adapters.*", "genbench.comparison"),
    ("genbench.recording", "genbench.runner"),
    ("genbench.scorer", "genbench.launch", "genbench.launch.torchrun", "genbench.launch.executors",
     "genbench.launch.collect"),
    ("genbench.launch.job",),
    ("genbench.launch.sweep",),
    ("genbench.launch.status",),
    ("genbench.cli.*",),
    ("genbench.__main__",),
)


@dataclass(frozen=True)
class Module:
    """A scanned module: its dotted name, the package its relative imports start from, its source."""

    name: str
    package: str
    source: str


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` at ``line`` (at module level or inside a function)."""

    source: str
    line: int
    target: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line} imports {self.target}"


#: entry -> its layer
LAYER_OF = {entry: i for i, layer in enumerate(LAYERS) for entry in layer}


def entry_of(module: str) -> str | None:
    """The entry that places ``module``: the module itself, else its innermost package entry
    (None: placed nowhere)."""
    candidates = [module, *(f"{package}.*" for package in _self_and_packages(module))]
    return next((entry for entry in candidates if entry in LAYER_OF), None)


def _self_and_packages(module: str) -> list[str]:
    """``a.b.c``, ``a.b``, ``a``: innermost first."""
    parts = module.split(".")
    return [".".join(parts[:n]) for n in range(len(parts), 0, -1)]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_modules() -> list[Module]:
    """Every module of genbench and the zoo."""
    paths = sorted(p for top in SCANNED for p in (ROOT / top).rglob("*.py"))
    return [Module(module_name(p), _package(p), p.read_text()) for p in paths]


def _package(path: Path) -> str:
    """The package a module's relative imports start from: itself for an ``__init__.py``."""
    name = module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imported_names(source: str, package: str) -> list[tuple[int, str]]:
    """(line, dotted name) of everything a module imports, inside functions too: ``from a import b``
    gives ``a.b`` (a module, or a name in module ``a``), relative imports made absolute."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative to the package, one level up per dot after the first
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parents, base]).strip(".")
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def resolve(name: str, known: set[str]) -> str | None:
    """The module a dotted name comes from: its longest prefix that is a scanned module (None: a
    third-party one)."""
    return next((prefix for prefix in _self_and_packages(name) if prefix in known), None)


def edges(modules: Iterable[Module], known: set[str]) -> list[Edge]:
    """Every import by one of ``modules`` of another module of ``known``, once per line."""
    found = {}
    for module in modules:
        for line, name in imported_names(module.source, module.package):
            target = resolve(name, known)
            if target is not None and target != module.name:
                found[Edge(module.name, line, target)] = None
    return list(found)


def scanned_edges() -> list[Edge]:
    """Every import between the modules of genbench and the zoo."""
    modules = source_modules()
    return edges(modules, {m.name for m in modules})


def violations(imports: Iterable[Edge]) -> list[str]:
    """Imports of the zoo by genbench, and imports that do not point strictly down the layers."""
    found = []
    for edge in imports:
        own, theirs = entry_of(edge.source), entry_of(edge.target)
        if own is None or theirs is None or own == theirs:
            continue  # an unplaced module is test_every_module_is_placed_in_a_layer's to report
        if own != "zoo.*" and theirs == "zoo.*":
            found.append(f"{edge} (genbench never imports the zoo by name: it is a plugin)")
        elif LAYER_OF[theirs] >= LAYER_OF[own]:
            found.append(f"{edge} ({own}, layer {LAYER_OF[own]}, may not import {theirs}, layer "
                         f"{LAYER_OF[theirs]})")
    return found


#: module -> module it imports -> the line of the (first) import
Graph = dict[str, dict[str, int]]


def cycles(imports: Iterable[Edge]) -> list[str]:
    """One line per tangle of modules importing each other round: its shortest cycle through its
    first module, as ``a:line -> b:line -> a``, and the tangle's other modules."""
    graph: Graph = {}
    for edge in imports:
        graph.setdefault(edge.source, {}).setdefault(edge.target, edge.line)
    reached = {module: _reached_from(graph, module) for module in graph}
    tangles = {frozenset(m for m in graph if m in reached[module] and module in reached[m])
               for module in graph if module in reached[module]}
    return sorted(_cycle_text(_shortest_cycle(reached[min(tangle)], min(tangle)), graph, tangle)
                  for tangle in tangles)


def _reached_from(graph: Graph, start: str) -> dict[str, str]:
    """Each module a chain of imports reaches from ``start``, and the module it is first reached
    from (breadth first, so along a shortest chain); ``start`` itself where a cycle returns to it."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for module in frontier:
            for target in sorted(graph.get(module, {})):
                if target not in came_from:
                    came_from[target] = module
                    following.append(target)
        frontier = following
    return came_from


def _shortest_cycle(came_from: dict[str, str], start: str) -> list[str]:
    """``start``, the modules of its shortest cycle, ``start`` again."""
    chain = [start]
    while len(chain) == 1 or chain[-1] != start:
        chain.append(came_from[chain[-1]])
    return chain[::-1]


def _cycle_text(path: list[str], graph: Graph, tangle: frozenset[str]) -> str:
    """The chain with the line of each import, and every module of its tangle the chain misses."""
    text = " -> ".join([*(f"{a}:{graph[a][b]}" for a, b in zip(path, path[1:], strict=False)), path[-1]])
    missed = sorted(tangle - set(path))
    return f"{text} (and round through {', '.join(missed)})" if missed else text


def placement_problems(names: Iterable[str]) -> list[str]:
    """Modules no entry of ``LAYERS`` places, and entries that place no module."""
    names = list(names)
    unplaced = [f"{name} is in no layer: add it to LAYERS in tests/project/test_layers.py, in a layer above "
                "everything it imports" for name in names if entry_of(name) is None]
    placed = {entry_of(name) for name in names}
    return unplaced + [f"LAYERS places {entry}, which is no module: remove it or correct its name"
                       for entry in LAYER_OF if entry not in placed]


def test_every_module_is_placed_in_a_layer():
    assert placement_problems(m.name for m in source_modules()) == []


def test_each_entry_is_placed_once():
    entries = [entry for layer in LAYERS for entry in layer]
    assert sorted(e for e in entries if entries.count(e) > 1) == []


def test_no_module_imports_from_a_layer_above_it_or_beside_it():
    assert violations(scanned_edges()) == []


def test_no_import_cycle():
    assert cycles(scanned_edges()) == []


def probe(*modules: tuple[str, str]) -> list[Edge]:
    """The imports of ``(name, source)`` probe modules, among themselves and of the real modules."""
    probes = [Module(name, name.rpartition(".")[0], source) for name, source in modules]
    return edges(probes, {m.name for m in [*source_modules(), *probes]})


@pytest.mark.parametrize("module, source, message", [
    ("genbench.metrics.probe", "from genbench.train.checkpoint import read_checkpoint\n",
     "imports genbench.train.checkpoint (genbench.metrics.*, layer 4, may not import genbench.train.*, "
     "layer 5)"),
    ("genbench.core.probe", "from genbench.data import DATASETS\n",
     "genbench.core.*, layer 1, may not import genbench.data.*, layer 3"),  # the contract at the bottom
    ("zoo.probe", "import genbench.metrics\n", "zoo.*, layer 3, may not import genbench.metrics.*, layer 4"),
    ("zoo.probe", "from genbench.data import DATASETS\n", "may not import genbench.data.*, layer 3"),
    ("genbench.metrics.probe", "from ..results import db\n",
     "genbench.metrics.probe:1 imports genbench.results.db (genbench.metrics.*, layer 4"),
    ("genbench.cli.probe", "def f():\n    from zoo import MODELS\n", "never imports the zoo"),
    ("genbench.runner", "def f():\n    from genbench.launch.sweep import run_sweep\n",
     "genbench.runner:2 imports genbench.launch.sweep (genbench.runner"),
    ("genbench.results.db", "from genbench.runner import run_suite\n", "may not import genbench.runner"),
    ("genbench.results.figures", "from genbench.results import leaderboard\n",
     "imports genbench.results.leaderboard (genbench.results.figures, layer"),
    ("genbench.results.aggregate", "from genbench.results.external import is_external\n",
     "may not import genbench.results.external"),  # peers in one layer
])
def test_the_scan_catches_an_upward_import(module, source, message):
    [problem] = violations(probe((module, source)))
    assert message in problem


def test_the_scan_catches_a_cycle_through_a_function_local_import():
    modules = probe(("genbench.core.probe_a", "from genbench.core import probe_b\n"),
                    ("genbench.core.probe_b", "def f():\n    from genbench.core.probe_a import g\n"))
    assert cycles(modules) == ["genbench.core.probe_a:1 -> genbench.core.probe_b:2 -> genbench.core.probe_a"]
    assert violations(modules) == []  # one entry: the layers alone allow it


def test_the_scan_catches_a_longer_cycle_and_relative_imports():
    modules = probe(("genbench.train.probe_a", "import genbench.train.probe_b\n"),
                    ("genbench.train.probe_b", "from . import probe_c\n"),
                    ("genbench.train.probe_c", "x = 1\ndef f():\n    from .probe_a import g\n"))
    assert cycles(modules) == ["genbench.train.probe_a:1 -> genbench.train.probe_b:1 -> "
                               "genbench.train.probe_c:3 -> genbench.train.probe_a"]


def test_the_scan_names_every_module_of_a_tangle_of_cycles():
    modules = probe(("genbench.core.probe_a", "from genbench.core import probe_b, probe_c\n"),
                    ("genbench.core.probe_b", "from genbench.core import probe_a\n"),
                    ("genbench.core.probe_c", "def f():\n    from genbench.core.probe_d import g\n"),
                    ("genbench.core.probe_d", "import genbench.core.probe_a\n"))
    assert cycles(modules) == ["genbench.core.probe_a:1 -> genbench.core.probe_b:1 -> genbench.core.probe_a "
                               "(and round through genbench.core.probe_c, genbench.core.probe_d)"]


def test_a_module_placed_nowhere_is_named_with_what_to_do():
    names = [m.name for m in source_modules()]
    added = set(placement_problems([*names, "genbench.results.probe"])) - set(placement_problems(names))
    assert added == {"genbench.results.probe is in no layer: add it to LAYERS in "
                     "tests/project/test_layers.py, in a layer above everything it imports"}
    assert entry_of("genbench.metrics.probe") == "genbench.metrics.*"  # a package entry places new modules


def test_an_entry_that_places_no_module_is_named():
    assert "LAYERS places genbench.launch.status, which is no module" in "\n".join(
        placement_problems(m.name for m in source_modules() if m.name != "genbench.launch.status"))
