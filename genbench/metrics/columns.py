"""What a metric writes: its output columns, declared once beside the metric.

Leaderboards, paper tables and ``genbench list`` read these declarations; nothing else
lists metric keys. A column whose key holds ``{net}`` is one column per feature network
(``fid_{net}`` is ``fid_lenet``, ``fid_inception``, ``fid_ts_mynet``): values of different
networks are never comparable, so each gets its own column.

A column with an uncertainty (``error``) also says what that uncertainty is over
(``error_points``): evaluation points every seed of a row shares, which a table's interval adds to
the seeds' spread, or each run's own noise, which that spread already holds
(``genbench.results.intervals``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

NET = "{net}"

#: how a table header marks which direction of a column is better
ARROWS = {"lower": "↓", "higher": "↑", None: ""}


@dataclass(frozen=True)
class Group:
    """What a leaderboard table compares rows on: each metric declares its group (``MetricSpec.group``),
    and a leaderboard has one table per group, holding the rows that have numbers there."""

    name: str
    title: str
    summary: str


#: the groups in table order; a metric that names none is in ``other``
GROUPS = (
    Group("likelihood", "Likelihood", "how well each model explains held-out test points: NLL (exact, or "
          "-L_k with k importance samples), bits/dim, the test ELBO, active units"),
    Group("sample_quality", "Sample quality", "the model's samples against real images, in the features of "
          "one network (values of different networks are not comparable)"),
    Group("latent", "Latent diagnostics", "what the latent code holds: ELBO surgery on training points "
          "(average KL = mutual information + marginal KL) and, on data with known factors, the "
          "disentanglement scores"),
    Group("copying", "Copying and overfitting", "whether samples copy the training set (C_T, authenticity, "
          "nearest-neighbour distances, in the sample-quality network's features, against held-out images) "
          "and the likelihood models' train-minus-test NLL"),
    Group("other", "Other metrics", "metrics declared without a group"),
)
GROUP_NAMES = tuple(group.name for group in GROUPS)


@dataclass(frozen=True, kw_only=True)
class EvalPoints:
    """The evaluation points a column's ``error`` is over, where every seed of a row is scored on the
    same ones (paired evaluation, ``EvalSettings.points_seed``): the seeds' spread does not contain
    that error and more seeds do not shrink it, so a table adds it to the spread.

    How many points: the smallest of the EvalSettings fields ``counts`` that is set (none set: the
    whole split). Which population: the split ``split``, or the one the EvalSettings field
    ``split_setting`` names; ``finite=False`` where the points are drawn from a distribution (the
    factors of a ground-truth data set), not taken from a split of N points."""

    counts: tuple[str, ...]
    what: str
    """How a legend names the points ("test points")."""
    split: str = "test"
    split_setting: str | None = None
    finite: bool = True


@dataclass(frozen=True, kw_only=True)
class Column:
    key: str
    """Metric key in the results (``{net}``: one column per feature network)."""
    label: str
    """Table header (``{net}`` becomes the network's label)."""
    unit: str = ""
    digits: int = 2
    better: str | None = None
    """Which direction is better: "lower", "higher", or None (a diagnostic)."""
    scale: float = 1.0
    """Shown value = scale x stored value (100: a fraction shown as %)."""
    layers: str | None = None
    """Key prefix of per-layer parts (``active_units_l``: the total is shown with "a+b")."""
    shown: bool = True
    """A leaderboard column; False for stored details (standard deviations, train accuracies)."""
    error: str | None = None
    """Key of this value's own uncertainty (a standard error or std, same units)."""
    error_kind: str = ""
    """What ``error`` is, as a table legend says it ("s.e. over test points")."""
    error_points: EvalPoints | None = None
    """The evaluation points ``error`` is over, shared by the seeds of a row; None where it is each
    run's own noise (samples, chains, simulated points), which the seeds' spread already holds."""

    def __post_init__(self):
        if self.better not in (None, "lower", "higher"):
            raise ValueError(f"column {self.key!r}: better must be 'lower', 'higher' or None")

    def heading(self) -> str:
        """The table header: the label, its unit where the label does not say it, and the
        direction that is better (``FID-LeNet ↓``, ``avg KL (train) (nats)``)."""
        unit = f" ({self.unit})" if self.unit and self.unit not in self.label else ""
        arrow = f" {ARROWS[self.better]}" if self.better else ""
        return f"{self.label}{unit}{arrow}"

    @property
    def per_network(self) -> bool:
        return NET in self.key

    def pattern(self) -> re.Pattern:
        """The keys this column stands for (a per-layer column also owns its parts)."""
        key = re.escape(self.key).replace(re.escape(NET), r"(?P<net>\w+?)")
        parts = f"|{re.escape(self.layers)}\\d+" if self.layers else ""
        return re.compile(f"(?:{key}{parts})")

    def matches(self, key: str) -> bool:
        return self.pattern().fullmatch(key) is not None

    def for_network(self, net: str, label: str) -> Column:
        """The concrete column of one feature network."""
        return replace(self, key=self.key.replace(NET, net), label=self.label.replace(NET, label),
                       error=self.error.replace(NET, net) if self.error else None)


def error_column(column: Column) -> Column:
    """The stored (not shown) column of a column's own uncertainty."""
    return Column(key=column.error, label=f"{column.label} {column.error_kind}", unit=column.unit,
                  digits=column.digits, scale=column.scale, shown=False)


def with_errors(*columns: Column) -> tuple[Column, ...]:
    """The columns, each followed by the column of its uncertainty where it declares one."""
    return tuple(c for column in columns for c in (column, *([error_column(column)] if column.error else [])))


def networks(columns: tuple[Column, ...] | list[Column], keys) -> list[str]:
    """The feature networks that ``keys`` hold values of, sorted.

    A key several per-network columns match belongs to the most specific one: ``is_lenet_std``
    is ``is_{net}_std`` of ``lenet``, not ``is_{net}`` of a network called ``lenet_std``."""
    found = set()
    for key in keys:
        candidates = [m.group("net") for c in columns if c.per_network and (m := c.pattern().fullmatch(key))]
        if candidates:
            found.add(min(candidates, key=len))
    return sorted(found)
