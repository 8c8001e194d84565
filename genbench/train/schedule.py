"""Learning-rate schedules: a multiplier of the base rate as a function of the epoch, and
``ScheduledRates``, the one way a run (alone or as a seed ensemble) applies one to an optimizer.

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


class ScheduledRates:
    """An optimizer's rates over a run: each parameter group's initial rate x the schedule at the
    epoch (a GAN's critic may start at a multiple of lr: the schedule scales each group's own rate).

    ``initial`` is read before a resumed run restores its optimizer (whose rates are then scaled).
    The rates are written only where the scale changes: at a few stage boundaries."""

    def __init__(self, initial: list[float], schedule: Callable[[float], float]):
        self.initial, self.schedule = list(initial), schedule
        self.scale: float | None = None

    def apply(self, optimizer, epoch: float) -> None:
        """Set ``optimizer``'s rates for ``epoch`` (any optimizer whose groups match ``initial``)."""
        scale = self.schedule(epoch)
        if scale != self.scale:
            for group, initial in zip(optimizer.param_groups, self.initial, strict=True):
                group["lr"] = initial * scale
            self.scale = scale
