"""The one training loop, for every Trainable model (and closed-form DataInitialized ones).

Reproducible and resumable by construction (``genbench.train.seeding``): the data order of
epoch e comes from a generator seeded with (seed, e) and the global RNG is re-seeded with
(seed, step) before every step, so step s sees the same batch and the same noise whether or not
the run was interrupted before it. A checkpoint (weights, optimizer state and every callback's
state) is written every ``checkpoint_every`` steps and at the end; running again resumes from it.

When losses are read, epochs end and checkpoints are written is the cadence every way of
training shares (``genbench.train.cadence``); what a run starts, resumes and finishes with is a
``genbench.train.run.Run``. This module keeps only how a single run takes a step.

Everything beside the updates (the learning curve, early stopping, sample grids, quality
measures) is a callback of ``genbench.train.callbacks``.

Under ``torchrun`` (``torch.distributed`` initialised) every rank takes its share of each
batch and gradients are averaged across ranks before each step; rank 0 writes checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from genbench.core import compile as compilation
from genbench.data.base import ImageDataset
from genbench.train.cadence import progress_bar
from genbench.train.callbacks import BEST_WEIGHTS, Callback
from genbench.train.config import BEST_EPOCH, EPOCHS_TRAINED, TrainConfig, TrainResult
from genbench.train.run import FIT_POINTS, Optimizers, Run, fit_tensor, set_progress
from genbench.train.seeding import epoch_permutation

__all__ = [  # the loop's public names, where they have always been imported from
    "BEST_EPOCH", "BEST_WEIGHTS", "EPOCHS_TRAINED", "FIT_POINTS", "Optimizers", "TrainConfig",
    "TrainResult", "epoch_permutation", "fit_tensor", "loss_function", "train",
]


def train(
    model: nn.Module,
    dataset: ImageDataset,
    config: TrainConfig,
    run_dir: Path,
    meta: dict[str, Any],
    max_steps: int | None = None,
    progress: bool = True,
    callbacks: list[Callback] = (),
) -> TrainResult:
    """Train ``model`` on ``dataset`` into ``run_dir``, resuming from its checkpoint.

    ``meta`` (model name, hyperparameters, data set ...) is stored in every checkpoint and
    must match on resume. ``max_steps`` stops early (used to simulate an interrupted run).
    ``callbacks`` run after the learning curve and the default ones (``default_callbacks``).
    """
    run = Run.begin(model, dataset, config, run_dir, meta, callbacks)
    cadence = run.cadence(max_steps)
    images = (cadence.end_step - run.start) * config.batch_size
    bar = progress_bar(images, meta.get("name", "train"), progress)
    losses_of = loss_function(model, run.optimizers, run.total_steps)  # resumed, it compiles as it did
    model.train()
    cadence.run(_Alone(run, losses_of, bar), run.start)
    bar.close()
    return run.finish()


class _Alone:
    """A single run's steps (``genbench.train.cadence.Steps``): every optimizer of the model in turn."""

    def __init__(self, run: Run, losses_of, bar):
        self.run, self.losses_of, self.bar = run, losses_of, bar

    def take(self, step: int) -> None:
        run = self.run
        x = run.batch(step)
        run.record(step, _step(run, x, step, self.losses_of))
        self.bar.update(run.config.batch_size)

    def check(self) -> bool:
        if (last := self.run.window.check()) is not None:
            self.bar.set_postfix(loss=f"{last:.3f}")
        return True

    def diverged_before(self) -> None:
        self.run.window.check()

    def end_epoch(self) -> bool:
        return self.run.end_epoch()

    def save(self, step: int) -> None:
        self.run.save(step)


def loss_function(model: nn.Module, optimizers: Optimizers, steps: int):
    """The (optimizer, loss) pairs of a batch as one function, compiled where a run of ``steps`` steps
    pays for it (``genbench.core.compile``, workload "train step"); None: the model's own generator,
    eagerly. ``steps`` is the whole run's, not what is left of it, so a run resumed late compiles
    exactly where its uninterrupted twin did (same numbers). Only a model with one optimizer:
    several alternate, each loss asked for after the last step."""
    if len(optimizers.named) != 1:
        return None

    def losses(x):
        return list(model.training_losses(x))

    fn = compilation.compiled(losses, calls=steps, workload="train step")
    return None if fn is losses else fn


def _step(run: Run, x, step: int, losses_of=None):
    """One training step: every (optimizer, loss) pair the model yields (or ``losses_of`` returns),
    each stepped before the next is asked for. Returns the pairs with their losses detached, still
    on the device."""
    epoch = step / run.steps_per_epoch
    set_progress(run.model, run.config, epoch)
    values = []
    for name, loss in (losses_of(x) if losses_of is not None else run.model.training_losses(x)):
        run.optimizers.step(name, loss, epoch)
        values.append((name, loss.detach()))
    return values
