"""Summaries over seeds: the numbers a table cell shows, and the legend that says what they are.

A cell leads with the mean over its row's seeds. With ``MIN_SEEDS`` or more it is ``mean ± se``,
the standard error of that mean (``genbench.results.intervals``): the seeds' spread, plus the
error of the evaluation points every seed shares where the column's own error is over such points
(``Column.error_points``). With two seeds it is the mean and both values, ``mean (seeds a, b)``;
with one, the value alone. So a column holds one kind of ± only, and every cell of it leads with
a mean over seeds.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass

from genbench.data import DATASETS
from genbench.metrics.columns import Column, EvalPoints
from genbench.results import intervals
from genbench.results.intervals import MIN_SEEDS, MeanError, apportion, mean_error

#: the key of a split's size in a run's recorded evaluation settings (``test_size``), read before
#: the data set's declared sizes
RECORDED_SIZE = "{split}_size"


@dataclass(frozen=True)
class SeedCell:
    """One metric over a row's seeds: their values in seed order and, with ``MIN_SEEDS`` or more,
    the mean's standard error (None with fewer: no interval)."""

    values: tuple[float, ...]
    interval: MeanError | None

    @property
    def mean(self) -> float:
        return math.fsum(self.values) / len(self.values)


def seed_cell(runs: list[dict], column: Column, scale: float = 1.0) -> SeedCell | None:
    """Metric ``column.key`` over ``runs`` (the seeds of one row), times ``scale``; None where no
    run has it."""
    have = sorted((r for r in runs if column.key in r["metrics"]), key=lambda r: r["seed"])
    if not have:
        return None
    values = tuple(scale * r["metrics"][column.key] for r in have)
    if len(values) < MIN_SEEDS:
        return SeedCell(values, None)
    shared, points = shared_error(have, column)
    return SeedCell(values, mean_error(values, abs(scale) * shared, points))


def shared_error(runs: list[dict], column: Column) -> tuple[float, int | None]:
    """The error every seed of the row has in common, e = mean(e_s) x sqrt(1 - n/N), and the n
    points it is over (None: unknown). 0 where the column's error is each run's own noise, where no
    run recorded it, or where the seeds were scored on different points (records from before
    paired evaluation: their spread holds the points' error)."""
    points = column.error_points
    if points is None or column.error is None or not points_shared(runs):
        return 0.0, None
    errors = [r["metrics"][column.error] for r in runs if column.error in r["metrics"]]
    if not errors:
        return 0.0, None
    correction, n = points_correction(runs[0], points)
    return statistics.fmean(errors) * correction, n


def points_key(run: Mapping) -> tuple[str, object]:
    """What chose a run's evaluation points: the table's ``points_seed``; in records from before
    paired evaluation, which have none, the evaluation seed (the run's own)."""
    settings = run["eval"]
    if "points_seed" in settings:
        return "points_seed", settings["points_seed"]
    return "seed", settings.get("seed", run["seed"])


def points_shared(runs: list[dict]) -> bool:
    """Whether the seeds share their evaluation points: False only where every seed had its own."""
    keys = [points_key(r) for r in runs]
    return len(set(keys)) < len(keys) or len(keys) == 1


def split_size(run: Mapping, split: str) -> int | None:
    """Items in ``split`` of the run's data set: recorded with the run, else declared by the data
    set (``DatasetSpec.split_sizes``); None where genbench cannot know it without loading data."""
    recorded = run["eval"].get(RECORDED_SIZE.format(split=split))
    if isinstance(recorded, int) and not isinstance(recorded, bool) and recorded > 0:
        return recorded
    return DATASETS[run["dataset"]].split_sizes.get(split) if run["dataset"] in DATASETS else None


def points_used(run: Mapping, points: EvalPoints) -> tuple[int | None, int | None, bool]:
    """(n, N, known) for the points a run's error is over: n None where the whole split was used,
    N None where unknown or infinite; ``known`` False where the record lacks a count setting."""
    settings = run["eval"]
    if any(name not in settings for name in points.counts):
        return None, None, False
    counts = [settings[name] for name in points.counts if settings[name] is not None]
    n = min(counts) if counts else None
    if not points.finite:
        return n, None, n is not None
    split = settings.get(points.split_setting, points.split) if points.split_setting else points.split
    total = split_size(run, str(split))
    if n is not None and total is not None:
        n = None if n >= total else n
    return n, total, True


def points_correction(run: Mapping, points: EvalPoints) -> tuple[float, int | None]:
    """sqrt(1 - n/N) for the points a run's error is over (1: a subset of an unknown or infinite
    population, or counts the record lacks), and how many points (None: unknown)."""
    n, total, known = points_used(run, points)
    if not known:
        return 1.0, None
    if not points.finite:
        return 1.0, n
    return intervals.finite_population_correction(n, total), n if n is not None else total


def _number(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def cell(runs: list[dict], column: Column, scale: float | None = None, digits: int | None = None) -> str:
    """A table cell of ``column`` over ``runs`` (the seeds of one row): ``mean ± se`` with
    ``MIN_SEEDS`` or more seeds, ``mean (seeds a, b)`` with two, the value with one (blank: no run
    has the metric). ``scale`` and ``digits`` default to the column's."""
    scale = column.scale if scale is None else scale
    digits = column.digits if digits is None else digits
    if column.layers:
        return layered_cell(runs, column, digits)
    found = seed_cell(runs, column, scale)
    if found is None:
        return ""
    mean = _number(found.mean, digits)
    if found.interval is not None:
        return f"{mean} ± {_number(found.interval.se, digits)}"
    if len(found.values) > 1:
        return f"{mean} (seeds {', '.join(_number(v, digits) for v in found.values)})"
    return mean


def layered_cell(runs: list[dict], column: Column, digits: int | None = None) -> str:
    """A per-layer count's cell (active units): the mean of each layer's part, rounded so that the
    parts add up to the total shown, ``98 (97+1)``; the total's ± with ``MIN_SEEDS`` or more seeds
    (``98 ± 1 (97+1)``), each seed's total with two (``98 (97+1; seeds 98, 97)``)."""
    digits = column.digits if digits is None else digits
    found = seed_cell(runs, column)
    if found is None:
        return ""
    parts = layer_means([r for r in runs if column.key in r["metrics"]], column.layers)
    if parts:
        shown = apportion(parts, digits)
        total = _number(math.fsum(shown), digits)
        layers = "+".join(_number(p, digits) for p in shown)
    else:
        total, layers = _number(found.mean, digits), ""
    if found.interval is not None:
        return f"{total} ± {_number(found.interval.se, digits)}" + (f" ({layers})" if layers else "")
    seeds = (f"seeds {', '.join(_number(v, digits) for v in found.values)}"
             if len(found.values) > 1 else "")
    inner = "; ".join(text for text in (layers, seeds) if text)
    return f"{total} ({inner})" if inner else total


def layer_means(runs: list[dict], prefix: str) -> list[float]:
    """The mean over ``runs`` of each layer's part (keys ``prefix1``, ``prefix2`` ...), in layer
    order; none for a single layer (or where a run lacks a part)."""
    layers = sorted((m for m in runs[0]["metrics"] if m.startswith(prefix) and m[len(prefix):].isdigit()),
                    key=lambda m: int(m[len(prefix):]))
    if not layers or any(m not in r["metrics"] for r in runs for m in layers):
        return []
    return [statistics.fmean(r["metrics"][m] for r in runs) for m in layers]


def interval_legend(columns: list[tuple[str, Column]], rows: list[list[dict]]) -> str:
    """What a cell's ± is, column by column (``columns``: each shown label with its declaration),
    for tables of ``rows`` (each the runs of one row); where no row has ``MIN_SEEDS`` seeds, that
    no cell has one."""
    fewest = ("A cell is the mean over its row's seeds (`seeds`) and their values, `m (seeds a, b)`, or "
              "with 1 seed the value alone: no row here has the 3 seeds an interval needs, so no cell has "
              "a ±.")
    if not any(len(group) >= MIN_SEEDS for group in rows):
        return fewest + (_PARTS if any(column.layers for _, column in columns) else "")
    shared: dict[str, list[str]] = {}
    own: dict[str, list[str]] = {}
    bare = []
    for label, column in columns:
        if column.error and column.error_points:
            unbounded = ("" if column.error_points.finite
                         else " (points drawn from a distribution: no correction)")
            shared.setdefault(column.error_kind + unbounded, []).append(label)
        elif column.error:
            own.setdefault(column.error_kind, []).append(label)
        else:
            bare.append(label)
    text = ("A cell leads with the mean over its row's seeds (`seeds`). With 3 or more seeds it is mean ± "
            "the standard error of that mean, √(s²/S + e²): s, the std of the S seeds' values, holds "
            "all that differs between runs (training, and each run's own draws of importance samples, "
            "model samples and chains); e is the error of the evaluation points every seed is scored "
            "on (paired evaluation: more seeds do not shrink it), the runs' mean own error times "
            "√(1 − n/N) for n of the split's N points, so 0 where all are scored.")
    if shared:
        text += " e comes from: " + "; ".join(f"{_labels(labels)}: {kind}"
                                              for kind, labels in shared.items()) + "."
    if own:
        text += (" e is 0 for " + "; ".join(f"{_labels(labels)} ({kind})" for kind, labels in own.items())
                 + ": those errors are over each run's own draws, which s already holds.")
    if bare:
        text += f" {_labels(bare)}: no error of their own recorded, ± is s/√S alone."
    if any(len(group) >= MIN_SEEDS and not points_shared(group) for group in rows):
        text += (" Rows whose seeds were scored on different points (recorded before paired evaluation) "
                 "add no e: their points' error is in s.")
    text += (" With 2 seeds a cell is the mean and the two seeds' values, `m (seeds a, b)`; with 1, the "
             "value alone: fewer than 3 seeds make no interval.")
    return text + (_PARTS if any(column.layers for _, column in columns) else "")


_PARTS = (" A count per layer shows the mean of each layer's part, rounded so that the parts add up to the "
          "total shown (`98 (97+1)`).")


def _labels(labels: list[str]) -> str:
    return ", ".join(f"`{label}`" for label in labels)


#: budgets from largest to smallest: a table prefers the largest that has results
BUDGET_ORDER = ("paper", "short", "smoke")


def budget_rank(name: str) -> int:
    return BUDGET_ORDER.index(name) if name in BUDGET_ORDER else len(BUDGET_ORDER)
