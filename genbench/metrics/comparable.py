"""Which column a likelihood may be shown in: columns with an arrow compare like with like.

Two numbers are recorded under likelihood keys but must not be ranked beside the discrete NLLs:

- **An AIS NLL that is looser than -L_k.** AIS and the IWAE bound are both stochastic lower bounds
  on log p(x); the ``ais`` metric records their paired difference on the AIS points,
  ``ais_minus_iwae`` = mean (AIS log p - L_k) with its s.e. The rule (:func:`ais_is_tight`): the AIS
  NLL ranks with the NLLs only where that difference is >= 0 within one s.e. (difference + s.e. >= 0;
  with no s.e., difference >= 0). Otherwise the number says more about the annealing budget than
  about the model, and it is shown in a diagnostic column (no arrow). A model without -L_k (a
  generator's AIS NLL) cannot be checked this way, so its AIS NLL is a diagnostic too.
- **A density on discrete data** (``log_prob_is_density``: PPCA's Gaussian on binary pixels). Its
  -log p(x) is in nats of a density, not of a probability: the ``nll`` metric records it as
  ``density_nll`` and the ``ais`` metric as ``ais_density_nll``, columns without an arrow.

:func:`comparable_view` applies the AIS rule to the metrics of one leaderboard row's runs; density
NLLs are recorded under their own keys by the metrics themselves. (A local database from before
that change still holds a density's NLL under ``nll``: re-score those runs. A guess from which
other keys a record has would misfile hand-made and external records.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping

#: where the ``ais`` metric's NLL is shown when AIS is not at least as tight as -L_k
AIS_LOOSE = "ais_nll_loose"
#: where a density's -log p(x) is kept (the ``nll`` and ``ais`` metrics write these keys)
DENSITY_NLL = "density_nll"
AIS_DENSITY_NLL = "ais_density_nll"


def ais_is_tight(metrics: Mapping[str, float]) -> bool:
    """Whether AIS log p - L_k on the same points is >= 0 within its s.e. (False where there is no
    paired difference, or it is not a number)."""
    gain = metrics.get("ais_minus_iwae")
    if gain is None or not math.isfinite(gain):
        return False
    se = metrics.get("ais_minus_iwae_se")
    return gain + (se if se is not None and math.isfinite(se) else 0.0) >= 0.0


def _moved(metrics: dict[str, float], key: str, to: str) -> None:
    """``key`` and its ``_se`` renamed to ``to`` and ``to_se`` (in place)."""
    for suffix in ("", "_se"):
        if key + suffix in metrics:
            metrics[to + suffix] = metrics.pop(key + suffix)


def comparable_view(row: list[Mapping[str, float]]) -> list[dict[str, float]]:
    """The metrics of one leaderboard row's runs (its seeds), each value under the column it may be
    compared in: the row's AIS NLL under ``ais_nll_loose`` unless every run's AIS is tight (one row,
    one column: a row's seeds are never split between two columns)."""
    views = [dict(metrics) for metrics in row]
    with_ais = [view for view in views if "ais_nll" in view]
    if with_ais and not all(ais_is_tight(view) for view in with_ais):
        for view in with_ais:
            _moved(view, "ais_nll", AIS_LOOSE)
    return views
