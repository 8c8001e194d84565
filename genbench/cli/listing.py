"""``genbench list``: everything genbench knows by name (the module is not named ``list``, which
would hide the builtin in the package)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    sub.add_parser("list", help="suites, models, capabilities, datasets, metrics, budgets, papers",
                   description="Everything genbench knows by name.")


def command(args: argparse.Namespace) -> int:
    from genbench.core.models import MODELS
    from genbench.core.protocols import CAPABILITIES
    from genbench.data import DATASETS
    from genbench.metrics.registry import METRICS
    from genbench.results.paper_tables import available_papers
    from genbench.suites import BUDGET_DEFAULTS, SUITES
    from genbench.user_models import protocol_methods

    print("suites:")
    for name, suite in SUITES.items():
        print(f"  {name:<18} {suite.dataset}: {', '.join(r.name for r in suite.runs)}")
    print("models:")
    for name, entry in MODELS.items():
        caps = [c for c, proto in CAPABILITIES.items() if issubclass(entry.model_cls, proto)]
        print(f"  {name:<18} {entry.summary} [{', '.join(caps)}]")
    print("capabilities (genbench.protocols; a model implements these methods):")
    for name, proto in CAPABILITIES.items():
        print(f"  {name:<20} {', '.join(f'{method}()' for method in protocol_methods(proto))}")
    print("datasets:")
    for name, spec in DATASETS.items():
        print(f"  {name:<18} {spec.summary}")
    print("metrics:")
    for name, spec in METRICS.items():
        needs = " or ".join(c.__name__ for c in spec.requires)
        print(f"  {name:<18} {spec.summary} [needs {needs}]")
        columns = ", ".join(_column(c) for c in spec.columns if c.shown)
        reads = f"; reads {', '.join(spec.settings)}" if spec.settings else ""
        print(f"  {'':<18} columns: {columns}{reads}")
    print("budgets:")
    for budget in BUDGET_DEFAULTS.values():
        print(f"  {budget.describe()}")
    print("papers:")
    print(f"  {', '.join(available_papers())}")
    return 0


def _column(column) -> str:
    """A metric's column as ``list`` names it: its key, unit and the direction that is better."""
    from genbench.metrics.columns import ARROWS

    unit = f" ({column.unit})" if column.unit else ""
    arrow = f" {ARROWS[column.better]}" if column.better else ""
    return f"{column.key}{unit}{arrow}"
