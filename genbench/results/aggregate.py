"""Summaries over seeds: the numbers a table cell shows."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    mean: float
    std: float | None  # None with a single seed
    n: int

    def format(self, digits: int = 2) -> str:
        if self.std is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


def cell(runs: list[dict], key: str, error: str | None = None, scale: float = 1.0,
         digits: int = 2) -> str:
    """A table cell of metric ``key`` over ``runs`` (the seeds of one row): mean ± std over seeds,
    or, for a single run, its value ± its own uncertainty ``error`` where recorded (blank: no run
    has the metric)."""
    values = [scale * r["metrics"][key] for r in runs if key in r["metrics"]]
    summary = summarize(values)
    if summary is None:
        return ""
    own = [r["metrics"].get(error) for r in runs if key in r["metrics"]] if error else []
    if summary.n == 1 and own and own[0] is not None and math.isfinite(own[0]):
        return f"{summary.mean:.{digits}f} ± {abs(scale) * own[0]:.{digits}f}"
    return summary.format(digits)


def summarize(values: list[float]) -> Summary | None:
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else None
    return Summary(statistics.fmean(values), std, len(values))


def layered_cell(runs: list[dict], key: str, layers: str, error: str | None = None, digits: int = 0) -> str:
    """A per-layer metric's cell (active units): the total as :func:`cell` gives it, followed by
    the mean of each layer's part as ``(a+b)`` where there are several layers."""
    total = cell(runs, key, error, 1.0, digits)
    by_layer = active_units_by_layer(runs, layers) if total else None
    return f"{total} ({by_layer})" if by_layer else total


def active_units_by_layer(runs: list[dict], prefix: str) -> str | None:
    """Mean of a per-layer metric (keys ``prefix1``, ``prefix2`` ...) as ``a+b`` (None for one layer)."""
    layers = sorted(m for m in runs[0]["metrics"] if m.startswith(prefix) and m[len(prefix):].isdigit())
    if not layers:
        return None
    return "+".join(f"{summarize([r['metrics'][m] for r in runs]).mean:.0f}" for m in layers)


#: budgets from largest to smallest: a table prefers the largest that has results
BUDGET_ORDER = ("paper", "short", "smoke")


def budget_rank(name: str) -> int:
    return BUDGET_ORDER.index(name) if name in BUDGET_ORDER else len(BUDGET_ORDER)
