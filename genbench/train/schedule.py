"""Learning-rate schedules as a multiplier of the base rate, a function of training progress.

Expressed in progress (step / total steps) so that a short budget keeps the shape of the
paper's schedule: ``iwae`` is Burda et al.'s 8 stages i = 0..7 lasting 3^i epochs each with
rate 10^(-i/7) (3280 epochs in all); with 3280 epochs it is exactly the paper's, with fewer
every stage is shortened in proportion.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from itertools import accumulate

from genbench.registry import Registry

IWAE_STAGES = 8
_iwae_lengths = [3**i for i in range(IWAE_STAGES)]
_iwae_ends = [c / sum(_iwae_lengths) for c in accumulate(_iwae_lengths)]


def constant(progress: float) -> float:
    return 1.0


def iwae(progress: float) -> float:
    stage = min(bisect.bisect_right(_iwae_ends, progress), IWAE_STAGES - 1)
    return 10 ** (-stage / 7)


SCHEDULES: Registry[Callable[[float], float]] = Registry("schedule")
SCHEDULES.register("constant", constant)
SCHEDULES.register("iwae", iwae)
