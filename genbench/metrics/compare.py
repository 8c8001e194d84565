"""Whether two models differ beyond noise: paired on the same test points, or by independent errors.

The NLL of two models on the same points is paired: the difference per point removes the
variation between points that both share (a hard digit is hard for both), so the paired
standard error is much smaller than either model's own. FID is computed from independent
samples of each model against the same real statistics: the difference's standard error is
the two delta-method errors in quadrature.
"""

from __future__ import annotations

import math

from scipy import stats
from torch import Tensor

#: two-sided confidence level of the reported intervals
LEVEL = 0.95


def paired_difference(a: Tensor, b: Tensor) -> dict[str, float]:
    """Mean of ``a - b`` over points paired by position, its standard error, a 95% t-interval and
    the two-sided p-value of no difference (paired t-test)."""
    if a.shape != b.shape or a.dim() != 1 or len(a) < 2:
        raise ValueError(f"paired values must be two [N] tensors with N >= 2; got {tuple(a.shape)}, "
                         f"{tuple(b.shape)}")
    d = (a.double() - b.double()).cpu().numpy()
    n, mean = len(d), float(d.mean())
    se = float(d.std(ddof=1) / math.sqrt(n))
    if se == 0:
        return {"difference": mean, "se": 0.0, "low": mean, "high": mean, "p_value": float(mean == 0), "n": n}
    half = float(stats.t.ppf(0.5 + LEVEL / 2, n - 1)) * se
    p = float(2 * stats.t.sf(abs(mean) / se, n - 1))
    return {"difference": mean, "se": se, "low": mean - half, "high": mean + half, "p_value": p, "n": n}


def independent_difference(a: float, se_a: float, b: float, se_b: float) -> dict[str, float]:
    """``a - b`` of two estimates with independent standard errors: a normal interval and p-value."""
    se = math.hypot(se_a, se_b)
    mean = a - b
    if se == 0:
        return {"difference": mean, "se": 0.0, "low": mean, "high": mean, "p_value": float(mean == 0)}
    half = float(stats.norm.ppf(0.5 + LEVEL / 2)) * se
    return {"difference": mean, "se": se, "low": mean - half, "high": mean + half,
            "p_value": float(2 * stats.norm.sf(abs(mean) / se))}
