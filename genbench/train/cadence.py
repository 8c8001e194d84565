"""The one training cadence: when a run of steps reads its losses, ends an epoch, checkpoints.

A single run (``genbench.train.loop``) and a seed ensemble (``genbench.train.ensemble``) take
their steps differently and save differently; everything else is here, once:

- the losses stay on the device in a ``LossWindow`` and are read (one transfer) every
  ``check_every`` steps, at every epoch end and before every checkpoint: the only host
  synchronisation; a non-finite loss then stops the run naming the exact step it appeared at,
  and no checkpoint is ever written after it;
- an epoch ends every ``steps_per_epoch`` steps and where the run ends mid-epoch;
- a checkpoint is written every ``checkpoint_every`` steps (the run's end writes its own);
- a step that fails is blamed on a loss that went non-finite before it, where one did.

``Cadence.run`` drives any ``Steps`` (what a way of training does at each of those points)
from a start step to the cadence's end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
from tqdm import tqdm

from genbench.core.distributed import all_reduce_sum, rank_and_world
from genbench.core.errors import TrainingDiverged


class Steps(Protocol):
    """What a way of training does at each point of the cadence."""

    def take(self, step: int) -> None:
        """Train step ``step`` (0-based) and keep its losses for the next check."""

    def check(self) -> bool:
        """Read the losses since the last check; False: nothing is left to train."""

    def diverged_before(self) -> None:
        """After a step failed: raise the ``TrainingDiverged`` of an earlier non-finite loss."""

    def end_epoch(self) -> bool:
        """An epoch (or the run) ends: the epoch-end callbacks; False: stop (early stopping)."""

    def save(self, step: int) -> None:
        """Write the checkpoint of ``step`` steps done."""


@dataclass(frozen=True)
class Cadence:
    """Which step ends an epoch, writes a checkpoint, reads the losses; where the run stops."""

    steps_per_epoch: int
    total_steps: int
    """The whole run's steps (a resumed run's epochs end where its uninterrupted twin's did)."""
    end_step: int
    """Where this call stops: ``total_steps``, or earlier (``max_steps``, a finished run)."""
    checkpoint_every: int
    check_every: int

    def epoch_ends(self, done: int) -> bool:
        return done % self.steps_per_epoch == 0 or done == self.total_steps

    def checkpoints(self, done: int) -> bool:
        """A checkpoint between steps (the run's end writes its own)."""
        return done % self.checkpoint_every == 0 and done < self.end_step

    def checks(self, done: int) -> bool:
        """The losses are read every ``check_every`` steps, at epoch ends and before checkpoints."""
        return self.epoch_ends(done) or self.checkpoints(done) or done % self.check_every == 0

    def run(self, steps: Steps, start: int) -> None:
        """Take steps ``start`` to ``end_step``, reading losses, ending epochs and checkpointing
        on cadence; the losses of the last steps are read before it returns."""
        for step in range(start, self.end_step):
            try:
                steps.take(step)
            except Exception:
                steps.diverged_before()  # a loss that went non-finite before is the real cause
                raise
            done = step + 1
            if self.checks(done) and not steps.check():
                break
            if self.epoch_ends(done) and not steps.end_epoch():
                break
            if self.checkpoints(done):
                steps.save(done)
        steps.check()


class LossWindow:
    """The losses of the steps since the last check, on the device: read in one transfer.

    ``check`` averages them over ranks (a NaN on any rank stops every rank at the same step)
    and raises ``TrainingDiverged`` naming the first step whose loss is not finite."""

    def __init__(self, steps_per_epoch: int):
        self.steps_per_epoch = steps_per_epoch
        self.steps: list[int] = []
        self.losses: list[torch.Tensor] = []
        self.last: float | None = None
        """The last checked loss (the last optimizer's, of the last step)."""

    def add(self, step: int, losses: list[tuple[str, torch.Tensor]]) -> None:
        for _, loss in losses:
            self.steps.append(step)
            self.losses.append(loss)

    def check(self) -> float | None:
        if not self.losses:
            return None
        values = (all_reduce_sum(torch.stack(self.losses).float()) / rank_and_world()[1]).tolist()
        steps, self.steps, self.losses = self.steps, [], []
        for step, value in zip(steps, values, strict=True):
            if not math.isfinite(value):
                raise TrainingDiverged(f"loss became {value} at step {step} "
                                       f"(epoch {step // self.steps_per_epoch}); run stopped")
        self.last = values[-1]
        return self.last


def progress_bar(images: int, desc: str, progress: bool) -> tqdm:
    """The images still to train on, counted as they are (off where ``progress`` is False)."""
    return tqdm(total=images, unit="img", unit_scale=True, disable=not progress, desc=desc, leave=False)
