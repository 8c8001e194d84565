"""Dependencies point one way: each module imports only from its own unit or from layers below.

The layers, bottom up: the contract (``genbench.core``), then data sets and the zoo (which see
only the contract, and not each other), metrics, training, suites, results, and the harness on
top. genbench never imports the zoo: the zoo comes in through its entry point like any plugin.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: unit -> layer; a module may import its own unit and units of strictly lower layers
LAYERS = {"core": 0, "data": 1, "zoo": 1, "metrics": 2, "train": 3, "suites": 4, "results": 5, "harness": 6}
#: genbench modules outside a sub-package: which unit they belong to
TOP_LEVEL = {"genbench": "core", "genbench.protocols": "core", "genbench.runner": "harness",
             "genbench.scoring": "harness", "genbench.sample_sets": "harness", "genbench.cli": "harness",
             "genbench.user_models": "harness", "genbench.generators": "harness",
             "genbench.__main__": "harness", "genbench.adapters": "harness", "genbench.launch": "harness",
             "genbench.report": "harness"}


def unit_of(module: str) -> str | None:
    """The unit of a genbench or zoo module (None for third-party modules)."""
    parts = module.split(".")
    if parts[0] == "zoo":
        return "zoo"
    if parts[0] != "genbench":
        return None
    if len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    return TOP_LEVEL.get(".".join(parts[:2])) or TOP_LEVEL.get("genbench")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(source: str, package: str) -> list[tuple[int, str]]:
    """(line, module) of every import in a module of ``package``, inside functions too."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parents, base]).strip(".")
            found.append((node.lineno, base))
    return found


def violations(modules: list[tuple[str, str, str]]) -> list[str]:
    """Upward imports in (module name, package, source) triples."""
    found = []
    for module, package, source in modules:
        own = unit_of(module)
        for line, target in imports(source, package):
            theirs = unit_of(target)
            if theirs is None or theirs == own:
                continue
            where = f"{module}:{line} imports {target}"
            if own != "zoo" and theirs == "zoo":
                found.append(f"{where} (genbench never imports the zoo by name: it is a plugin)")
            elif LAYERS[theirs] >= LAYERS[own]:
                found.append(f"{where} ({own}, layer {LAYERS[own]}, may not import {theirs}, layer "
                             f"{LAYERS[theirs]})")
    return found


def source_modules() -> list[tuple[str, str, str]]:
    paths = sorted([*(ROOT / "genbench").rglob("*.py"), *(ROOT / "zoo").rglob("*.py")])
    return [(module_name(p), module_name(p) if p.name == "__init__.py" else module_name(p).rpartition(".")[0],
             p.read_text()) for p in paths]


def test_every_module_belongs_to_a_layer():
    assert all(unit_of(module) for module, _, _ in source_modules())


def test_no_module_imports_from_a_layer_above_it():
    assert violations(source_modules()) == []


@pytest.mark.parametrize("module, source, message", [
    ("genbench.metrics.probe", "from genbench.train.checkpoint import read_checkpoint\n",
     "metrics, layer 2, may not import train"),
    ("zoo.probe", "import genbench.metrics\n", "zoo, layer 1, may not import metrics"),
    ("zoo.probe", "from genbench.data import DATASETS\n", "zoo, layer 1, may not import data"),
    ("genbench.metrics.probe", "from ..results import db\n",
     "imports genbench.results (metrics, layer 2, may not import results"),
    ("genbench.cli", "def f():\n    from zoo import MODELS\n", "never imports the zoo"),
])
def test_the_scan_catches_an_upward_import(module, source, message):
    [problem] = violations([(module, module.rpartition(".")[0], source)])
    assert message in problem
