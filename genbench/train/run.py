"""One run's parts as it starts or resumes, and what a run does alike however its steps are taken.

A ``Run`` is one model trained into one run directory: its optimizers, its batches, its
callbacks (the learning curve first), its loss window and the ``TrainState`` the callbacks see.
``Run.begin`` resumes it from its checkpoint (weights, optimizers and every callback's state)
or starts it fresh (a ``DataInitialized`` model's one look at the data); the single-run loop
makes one, the seed ensemble one per member, so that both checkpoint, resume, end epochs and
report exactly alike.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genbench.core.distributed import average_gradients, rank_and_world
from genbench.core.errors import GenbenchError
from genbench.core.protocols import DataInitialized, ProgressAware, Trainable
from genbench.core.rng import seeded_rng
from genbench.core.weights import load_state_dict_checked
from genbench.data.base import ImageDataset
from genbench.train import checkpoint as ckpt
from genbench.train.cadence import Cadence, LossWindow
from genbench.train.callbacks import (
    Callback,
    EarlyStopping,
    LearningCurve,
    SampleGrids,
    TrainingClock,
    TrainState,
    watches_samples,
)
from genbench.train.config import TrainConfig, TrainResult
from genbench.train.identity import TRAIN_BOOKKEEPING
from genbench.train.schedule import SCHEDULES, ScheduledRates
from genbench.train.seeding import epoch_permutation, seed_step, step_seed

#: most training points a model's one look at the data (init_from_data) sees
FIT_POINTS = 60_000


def fit_tensor(dataset: ImageDataset, seed: int, max_points: int = FIT_POINTS) -> torch.Tensor:
    """The training split as a model sees it once (a fixed draw where binarization is dynamic).

    Larger splits (dSprites: 737,280 images, 12 GB as floats) give a seeded random subset
    of ``max_points``; MNIST's 60,000 are used whole.
    """
    with seeded_rng(step_seed(seed, -1), dataset.device):
        n = dataset.size("train")
        if n <= max_points:
            idx = torch.arange(n)
        else:
            idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_points].sort().values
        return dataset.train_batch(idx.to(dataset.device))


class Batches:
    """Step s's batch: the (seed, epoch) permutation's s-th slice, this rank's share of it."""

    def __init__(self, dataset: ImageDataset, config: TrainConfig):
        self.dataset, self.config = dataset, config
        self.n = dataset.size("train")
        self.steps_per_epoch = math.ceil(self.n / config.batch_size)
        self._perm, self._epoch = None, -1

    def __call__(self, step: int) -> torch.Tensor:
        epoch, i = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._perm = epoch_permutation(self.config.seed, epoch, self.n).to(self.dataset.device)
            self._epoch = epoch
        rank, world = rank_and_world()
        size = self.config.batch_size
        return self.dataset.train_batch(self._perm[i * size:(i + 1) * size][rank::world])


class Optimizers:
    """The model's named optimizers, each parameter group's rate its initial rate x the schedule."""

    def __init__(self, model: nn.Module, config: TrainConfig):
        self.named = model.configure_optimizers(config.lr) if isinstance(model, Trainable) else {}
        schedule = SCHEDULES[config.schedule]
        self.rates = {name: ScheduledRates([g["lr"] for g in opt.param_groups], schedule)
                      for name, opt in self.named.items()}

    def step(self, name: str, loss: torch.Tensor, epoch: float) -> None:
        opt = self.named[name]
        self.rates[name].apply(opt, epoch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(p for group in opt.param_groups for p in group["params"])
        opt.step()


def set_progress(model: nn.Module, config: TrainConfig, epoch: float) -> None:
    """Tell a ``ProgressAware`` model where training is (its KL weight during warm-up)."""
    if isinstance(model, ProgressAware):
        model.set_training_progress(epoch, config.kl_weight(epoch))


def default_callbacks(model: nn.Module, dataset: ImageDataset, config: TrainConfig) -> list[Callback]:
    """The callbacks every run has: its training clock, early stopping where configured, sample
    grids for models followed through their samples."""
    callbacks: list[Callback] = [TrainingClock()]
    if config.early_stopping_epochs:
        callbacks.append(EarlyStopping(_validation_split(dataset), config.early_stopping_epochs))
    if watches_samples(model):
        callbacks.append(SampleGrids())
    return callbacks


def _validation_split(dataset: ImageDataset) -> torch.Tensor:
    if "valid" not in dataset.splits:
        raise GenbenchError(
            f"early stopping needs a 'valid' split; data set {dataset.name!r} has "
            f"{', '.join(dataset.splits)}"
        )
    return dataset.eval_tensor("valid")


@dataclass
class Run:
    """One run in progress: its model, optimizers, batches, callbacks, loss window and state."""

    model: nn.Module
    config: TrainConfig
    run_dir: Path
    meta: dict[str, Any]
    """What every checkpoint stores and a resumed run must match (with the seed and config)."""
    optimizers: Optimizers
    batches: Batches
    callbacks: list[Callback]
    """The learning curve first, then the defaults, then the caller's."""
    total_steps: int
    start: int
    state: TrainState
    window: LossWindow

    @classmethod
    def begin(cls, model: nn.Module, dataset: ImageDataset, config: TrainConfig, run_dir: Path,
              meta: dict[str, Any], callbacks: list[Callback] = ()) -> Run:
        """The run on ``dataset``'s device, resumed from ``run_dir``'s checkpoint or started fresh."""
        model.to(dataset.device)
        meta = {**meta, "seed": config.seed, "train": asdict(config)}
        batches, optimizers = Batches(dataset, config), Optimizers(model, config)
        callbacks = [LearningCurve(), *default_callbacks(model, dataset, config), *callbacks]
        per_epoch = batches.steps_per_epoch
        total_steps = round(config.epochs * per_epoch) if isinstance(model, Trainable) else 0
        start = resume_run(model, optimizers, callbacks, run_dir, meta)
        if start is None:
            start = 0
            if isinstance(model, DataInitialized):
                model.init_from_data(fit_tensor(dataset, config.seed))
        state = TrainState(model, run_dir, config.seed, rank_and_world()[0], per_epoch, start)
        return cls(model, config, run_dir, meta, optimizers, batches, callbacks, total_steps, start, state,
                   LossWindow(per_epoch))

    @property
    def curve(self) -> LearningCurve:
        return self.callbacks[0]

    @property
    def steps_per_epoch(self) -> int:
        return self.batches.steps_per_epoch

    def cadence(self, max_steps: int | None) -> Cadence:
        """This run's cadence from its config, stopped at ``max_steps`` (or where a callback
        ended it for good before it was interrupted: early stopping)."""
        end = self.total_steps if max_steps is None else min(self.total_steps, max_steps)
        if any(cb.finished() for cb in self.callbacks):
            end = self.start
        return Cadence(self.steps_per_epoch, self.total_steps, end, self.config.checkpoint_every,
                       self.config.check_every)

    def batch(self, step: int) -> torch.Tensor:
        """Step ``step``'s batch, the generators seeded for the step first (binarization and the
        step's noise draw from them)."""
        seed_step(step_seed(self.config.seed, step) + self.state.rank, self.batches.dataset.device)
        return self.batches(step)

    def record(self, step: int, losses: list[tuple[str, torch.Tensor]]) -> None:
        """Step ``step`` is done with these (optimizer name, detached loss) pairs."""
        self.window.add(step, losses)
        self.state.step = step + 1
        for cb in self.callbacks:
            cb.on_step_end(self.state, losses)

    def end_epoch(self) -> bool:
        """The curve's row of every callback's values; False where a callback stops the run."""
        row = {}
        for cb in self.callbacks:
            row |= cb.on_epoch_end(self.state)
        self.curve.record(self.state.epoch, row)
        return not self.state.stop

    def save(self, step: int) -> None:
        save_run(self.run_dir, self.model, self.optimizers, self.callbacks, self.meta, step, self.total_steps)

    def finish(self) -> TrainResult:
        """After the last step (losses checked): the end callbacks, the final checkpoint, the result
        (its seconds: the training clock's, every process that trained the run)."""
        end = max(self.state.step, self.start)
        self.model.eval()
        for cb in self.callbacks:
            cb.on_train_end(self.state)
        self.save(end)
        stopping = next((cb for cb in self.callbacks if isinstance(cb, EarlyStopping)), None)
        clock = next(cb for cb in self.callbacks if isinstance(cb, TrainingClock))
        return TrainResult(end, self.start, clock.seconds(), self.window.last,
                           epochs_trained=end / self.steps_per_epoch,
                           best_epoch=stopping.best_epoch if stopping else None, curve=self.curve.rows)


def save_run(run_dir, model, optimizers: Optimizers, callbacks, meta, step, total_steps) -> None:
    """A run's checkpoint at ``step``: weights, optimizers and every callback's state (rank 0 writes it)."""
    if rank_and_world()[0] == 0:
        states = {cb.name: cb.state_dict() for cb in callbacks}
        ckpt.save_checkpoint(run_dir, model, {**meta, "callbacks": states, "step": step,
                                              "total_steps": total_steps}, optimizers.named)


#: checkpoint fields that must match for a run to resume from it
_IDENTITY = ("model", "config", "dataset", "data_shape", "seed", "train")


def _identity_value(meta: dict[str, Any], key: str):
    """A checkpoint field as resuming compares it: the training config without its bookkeeping."""
    value = meta.get(key)
    if key == "train" and isinstance(value, dict):
        return {k: v for k, v in value.items() if k not in TRAIN_BOOKKEEPING}
    return value


def resume_run(model, optimizers: Optimizers, callbacks, run_dir: Path, meta: dict[str, Any]) -> int | None:
    """The step to continue from (None: a fresh run), with weights, optimizers and callbacks restored."""
    path = run_dir / ckpt.FILENAME
    if not path.exists():
        return None
    saved, tensors, optim = ckpt.read_checkpoint(path)
    for key in _IDENTITY:
        if _identity_value(saved, key) != _identity_value(meta, key):
            raise GenbenchError(
                f"{path} was written by a different run ({key}: {saved.get(key)!r} vs "
                f"{meta.get(key)!r}); use another run directory or delete it"
            )
    load_state_dict_checked(model, ckpt.model_state(tensors), str(path))
    ckpt.restore_optimizers(optimizers.named, optim, tensors)
    states = saved.get("callbacks", {})
    for cb in callbacks:
        if cb.name in states:
            cb.load_state_dict(states[cb.name])
    return int(saved["step"])
