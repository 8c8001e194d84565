"""Learning-rate schedules: a multiplier of the base rate as a function of the epoch.

``iwae`` is Burda et al.'s: 8 stages i = 0..7, stage i lasting 3^i epochs at rate
10^(-i/7) (3280 epochs in all). A shorter budget runs the first epochs of exactly that
schedule, so a short run is the paper's run stopped early, not a different protocol.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from itertools import accumulate

from genbench.core.registry import Registry

IWAE_STAGES = 8
IWAE_STAGE_ENDS = list(accumulate(3**i for i in range(IWAE_STAGES)))  # 1, 4, 13, ..., 3280


def constant(epoch: float) -> float:
    return 1.0


def iwae(epoch: float) -> float:
    stage = min(bisect.bisect_right(IWAE_STAGE_ENDS, epoch), IWAE_STAGES - 1)
    return 10 ** (-stage / 7)


SCHEDULES: Registry[Callable[[float], float]] = Registry("schedule")
SCHEDULES.register("constant", constant)
SCHEDULES.register("iwae", iwae)
