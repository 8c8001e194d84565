"""The uncertainty of a table cell: the mean over a row's seeds and the standard error of that mean.

The seeds of a row are trained apart but scored on the same evaluation points (paired evaluation),
so the mean carries two errors. The spread of the seeds' values holds everything that differs
between runs: training, and each run's own Monte Carlo draws (importance samples, model samples,
chains). The error the evaluation points add, where they are a subset of their split, is the same
for every seed: the spread does not see it, and more seeds do not shrink it. So

    se = sqrt(s^2 / S + e^2),    e = mean(e_s) x sqrt(1 - n / N),

with s the std of the S seeds' values, e_s each run's own standard error over its n of the split's
N points, and sqrt(1 - n / N) the finite-population correction: scored on all N points, the points
add no error against the split itself, the number a paper reports. Where N is unknown (or the
points are drawn from a distribution) there is no correction, the conservative choice. A spread of
fewer than ``MIN_SEEDS`` values is no estimate, so no interval is made from it. A 95% interval is
Student's t with the Welch-Satterthwaite degrees of freedom of the two parts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

#: fewest seeds whose spread a table turns into an interval: the std of two values is one difference
MIN_SEEDS = 3


def finite_population_correction(n: int | None, total: int | None) -> float:
    """sqrt(1 - n/N) for n of N points: 0 where all are used (``n`` None, or at least N), 1 where
    N is unknown (``total`` None: no correction)."""
    if n is None or (total is not None and n >= total):
        return 0.0
    if total is None:
        return 1.0
    return math.sqrt(1.0 - n / total)


def welch_satterthwaite(parts: Sequence[tuple[ArrayLike, ArrayLike]]) -> np.ndarray:
    """Degrees of freedom of a sum of variance estimates, each ``(variance, its degrees of freedom)``,
    elementwise: (sum v)^2 / sum(v^2 / df). A part with no variance, or infinite degrees of freedom,
    adds nothing below the line; infinite where nothing is left there."""
    total = sum(np.asarray(v, dtype=float) for v, _ in parts)
    below = sum(np.square(np.asarray(v, dtype=float)) / np.asarray(df, dtype=float) for v, df in parts)
    return np.where(below > 0, np.square(total) / np.where(below > 0, below, 1.0), np.inf)


@dataclass(frozen=True)
class MeanError:
    """A mean over seeds with the standard error of that mean and its degrees of freedom."""

    mean: float
    se: float
    df: float

    def half_width(self, level: float = 0.95) -> float:
        """Half the width of the ``level`` interval: Student's t quantile at ``df`` times ``se``."""
        return float(half_widths(self.se, self.df, level))


def mean_errors(values: ArrayLike, shared: ArrayLike = 0.0,
                shared_points: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, standard error and degrees of freedom over the last axis of ``values`` (the seeds, at
    least two), for every row at once: se = sqrt(s^2/S + shared^2), ``shared`` the error every
    seed of a row has in common, estimated from ``shared_points`` points (None: many, its degrees
    of freedom infinite)."""
    values = np.asarray(values, dtype=float)
    count = values.shape[-1]
    if count < 2:
        raise ValueError("a standard error over seeds needs at least two values")
    spread = values.var(axis=-1, ddof=1) / count
    common = np.square(np.broadcast_to(np.asarray(shared, dtype=float), spread.shape))
    points_df = math.inf if shared_points is None else max(shared_points - 1, 1)
    df = welch_satterthwaite([(spread, count - 1), (common, points_df)])
    return values.mean(axis=-1), np.sqrt(spread + common), df


def half_widths(se: ArrayLike, df: ArrayLike, level: float = 0.95) -> np.ndarray:
    """Half the width of the ``level`` interval, elementwise: Student's t quantile at ``df`` (the
    normal one where infinite) times ``se``."""
    from scipy.stats import t  # scipy is a second to import: only where an interval is drawn

    return t.ppf(0.5 + level / 2, df) * np.asarray(se, dtype=float)


def mean_error(values: Sequence[float], shared: float = 0.0, shared_points: int | None = None) -> MeanError:
    """``mean_errors`` of one row of seeds' values."""
    mean, se, df = mean_errors(values, shared, shared_points)
    return MeanError(float(mean), float(se), float(df))


def apportion(values: Sequence[float], digits: int) -> list[float]:
    """``values`` rounded to ``digits`` so that they add up to their sum rounded to ``digits``
    (largest remainders; ties to the earlier part): each part is less than one unit of the last
    digit from its value, and the parts a table shows add up to the total it shows (96.5 + 2.5 is
    97 + 2 = 99, where rounding each alone gives 96 + 2 beside a total of 99)."""
    unit = 10 ** digits
    scaled = [v * unit for v in values]
    floors = [math.floor(x) for x in scaled]
    left = round(math.fsum(scaled)) - sum(floors)
    order = sorted(range(len(scaled)), key=lambda i: (floors[i] - scaled[i], i))  # largest remainder first
    for i in order[:left]:
        floors[i] += 1
    return [f / unit for f in floors]
