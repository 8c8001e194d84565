"""The one training loop, for every Trainable model (and closed-form DataInitialized ones).

Reproducible and resumable by construction: the data order of epoch e comes from a
generator seeded with (seed, e) and the global RNG is re-seeded with (seed, step) before
every step, so step s sees the same batch and the same noise whether or not the run was
interrupted before it. A checkpoint (weights, optimizer state and every callback's state) is
written every ``checkpoint_every`` steps and at the end; running again resumes from it.

No host synchronisation per step: each loss stays on the device in a ``LossWindow`` and is
read (one transfer) every ``check_every`` steps, at every epoch end and before every
checkpoint; a non-finite loss then stops the run naming the exact step it appeared at, and no
checkpoint is ever written after it.

Everything beside the updates (the learning curve, early stopping, sample grids, quality
measures) is a callback of ``genbench.train.callbacks``.

Under ``torchrun`` (``torch.distributed`` initialised) every rank takes its share of each
batch and gradients are averaged across ranks before each step; rank 0 writes checkpoints.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from genbench.core import compile as compilation
from genbench.core.distributed import all_reduce_sum, average_gradients, rank_and_world
from genbench.core.errors import GenbenchError, TrainingDiverged
from genbench.core.protocols import DataInitialized, ProgressAware, Trainable
from genbench.core.weights import load_state_dict_checked
from genbench.data.base import ImageDataset
from genbench.train import checkpoint as ckpt
from genbench.train.callbacks import (
    BEST_WEIGHTS,  # noqa: F401  (re-exported: where early stopping keeps the best weights)
    Callback,
    EarlyStopping,
    LearningCurve,
    SampleGrids,
    TrainState,
    _step_seed,
    watches_samples,
)
from genbench.train.identity import TRAIN_BOOKKEEPING
from genbench.train.schedule import SCHEDULES


@dataclass
class TrainConfig:
    epochs: float = 1.0
    batch_size: int = 20
    lr: float = 1e-3
    schedule: str = "iwae"
    seed: int = 0
    checkpoint_every: int = 2000
    """Steps between checkpoints (a killed run loses at most this many)."""
    check_every: int = 100
    """Steps between reads of the losses (finiteness checks): the only host synchronisation."""
    kl_warmup_epochs: float = 0.0
    """KL warm-up: the KL weight of ProgressAware models rises linearly from 0 to 1 over
    these epochs (0: no warm-up)."""
    early_stopping_epochs: int = 0
    """Stop when the validation ELBO has not improved for this many epochs and keep the
    best weights (0: off). Needs a 'valid' split."""

    def __post_init__(self):
        SCHEDULES[self.schedule]  # validates the name
        if (self.epochs < 0 or self.batch_size < 1 or self.lr <= 0 or self.kl_warmup_epochs < 0
                or self.early_stopping_epochs < 0 or self.check_every < 1):
            raise GenbenchError(f"invalid training config {self}")

    def kl_weight(self, epoch: float) -> float:
        if self.kl_warmup_epochs <= 0:
            return 1.0
        return min(1.0, epoch / self.kl_warmup_epochs)


#: keys of a run's results that say how much training its numbers had (early stopping)
EPOCHS_TRAINED, BEST_EPOCH = "epochs_trained", "best_epoch"


@dataclass
class TrainResult:
    steps: int
    resumed_from: int
    seconds: float
    final_loss: float | None
    epochs_trained: float = 0.0
    best_epoch: int | None = None
    """With early stopping: the epoch whose weights were kept."""
    curve: list[dict[str, float]] = field(default_factory=list)
    """The learning curve: one row per epoch end, with its ``epoch``."""

    def bookkeeping(self) -> dict[str, float]:
        """How much training the numbers had, where early stopping ended it (else nothing)."""
        if self.best_epoch is None:
            return {}
        return {EPOCHS_TRAINED: self.epochs_trained, BEST_EPOCH: float(self.best_epoch)}


step_seed = _step_seed


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(step_seed(seed + 7919, epoch))
    return torch.randperm(n, generator=gen)


#: most training points a model's one look at the data (init_from_data) sees
FIT_POINTS = 60_000


def fit_tensor(dataset: ImageDataset, seed: int, max_points: int = FIT_POINTS) -> torch.Tensor:
    """The training split as a model sees it once (a fixed draw where binarization is dynamic).

    Larger splits (dSprites: 737,280 images, 12 GB as floats) give a seeded random subset
    of ``max_points``; MNIST's 60,000 are used whole.
    """
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(step_seed(seed, -1))
    try:
        n = dataset.size("train")
        if n <= max_points:
            idx = torch.arange(n)
        else:
            idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_points].sort().values
        return dataset.train_batch(idx.to(dataset.device))
    finally:
        torch.random.set_rng_state(gen_state)


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
        # a GAN's critic may start at a multiple of lr: the schedule scales each group's own rate
        self.initial = {name: [g["lr"] for g in opt.param_groups] for name, opt in self.named.items()}
        self.schedule = SCHEDULES[config.schedule]

        self.scales: dict[str, float] = {}

    def step(self, name: str, loss: torch.Tensor, epoch: float) -> None:
        opt, scale = self.named[name], self.schedule(epoch)
        if self.scales.get(name) != scale:  # the rate changes at a few stage boundaries only
            for group, initial in zip(opt.param_groups, self.initial[name], strict=True):
                group["lr"] = initial * scale
            self.scales[name] = scale
        opt.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(p for group in opt.param_groups for p in group["params"])
        opt.step()


def default_callbacks(model: nn.Module, dataset: ImageDataset, config: TrainConfig) -> list[Callback]:
    """The callbacks every run has: early stopping where configured, sample grids for models
    followed through their samples."""
    callbacks: list[Callback] = []
    if config.early_stopping_epochs:
        callbacks.append(EarlyStopping(_validation_split(dataset), config.early_stopping_epochs))
    if watches_samples(model):
        callbacks.append(SampleGrids())
    return callbacks


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
    ``callbacks`` run after the default ones (``default_callbacks``) and the learning curve.
    """
    started = time.perf_counter()
    model.to(dataset.device)
    meta = {**meta, "seed": config.seed, "train": asdict(config)}
    batches, optimizers = Batches(dataset, config), Optimizers(model, config)
    curve = LearningCurve()
    callbacks = [curve, *default_callbacks(model, dataset, config), *callbacks]
    per_epoch = batches.steps_per_epoch
    total_steps = round(config.epochs * per_epoch) if isinstance(model, Trainable) else 0
    start_step = resume_run(model, optimizers, callbacks, run_dir, meta)
    if start_step is None:
        start_step = 0
        if isinstance(model, DataInitialized):
            model.init_from_data(fit_tensor(dataset, config.seed))
    end_step = total_steps if max_steps is None else min(total_steps, max_steps)
    if any(cb.finished() for cb in callbacks):
        end_step = start_step  # finished (early stopping) before it was interrupted
    state = TrainState(model, run_dir, config.seed, rank_and_world()[0], per_epoch, start_step)
    bar = tqdm(total=(end_step - start_step) * config.batch_size, unit="img", unit_scale=True,
               disable=not progress, desc=meta.get("name", "train"), leave=False)
    window = LossWindow(per_epoch)
    losses_of = loss_function(model, optimizers, total_steps)  # the whole run: resumed, it compiles as it did
    model.train()
    for step in range(start_step, end_step):
        seed_step(step_seed(config.seed, step) + state.rank, dataset.device)  # before the batch: binarization
        try:
            x = batches(step)
            losses = _step(model, optimizers, x, step, config, per_epoch, losses_of)
        except Exception:
            window.check()  # a loss that went non-finite before is the real cause
            raise
        window.add(step, losses)
        state.step = step + 1
        for cb in callbacks:
            cb.on_step_end(state, losses)
        bar.update(config.batch_size)
        epoch_ends = state.step % per_epoch == 0 or state.step == total_steps
        checkpoints = state.step % config.checkpoint_every == 0 and state.step < end_step
        if epoch_ends or checkpoints or state.step % config.check_every == 0:
            if (last := window.check()) is not None:
                bar.set_postfix(loss=f"{last:.3f}")
        if epoch_ends:  # an epoch (or the run) ends
            row = {}
            for cb in callbacks:
                row |= cb.on_epoch_end(state)
            curve.record(state.epoch, row)
            if state.stop:
                break
        if checkpoints:
            save_run(run_dir, model, optimizers, callbacks, meta, state.step, total_steps)
    window.check()
    loss_value = window.last
    bar.close()
    end_step = max(state.step, start_step)
    model.eval()
    for cb in callbacks:
        cb.on_train_end(state)
    save_run(run_dir, model, optimizers, callbacks, meta, end_step, total_steps)
    stopping = next((cb for cb in callbacks if isinstance(cb, EarlyStopping)), None)
    return TrainResult(end_step, start_step, time.perf_counter() - started, loss_value,
                       epochs_trained=end_step / per_epoch,
                       best_epoch=stopping.best_epoch if stopping else None, curve=curve.rows)


def seed_step(seed: int, device: torch.device) -> None:
    """Seed the generators a step draws from: the CPU's and, on an accelerator, that device's.

    ``torch.manual_seed`` would do both but also queues seeding of every lazily initialised
    backend with a formatted stack trace each call, a millisecond per step on a CPU."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.default_generators[device.index or 0].manual_seed(seed)
    elif device.type != "cpu":
        torch.manual_seed(seed)


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


def _step(model, optimizers: Optimizers, x, step: int, config: TrainConfig, per_epoch: int, losses_of=None):
    """One training step: every (optimizer, loss) pair the model yields (or ``losses_of`` returns),
    each stepped before the next is asked for. Returns the pairs with their losses detached, still
    on the device."""
    epoch = step / per_epoch
    if isinstance(model, ProgressAware):
        model.set_training_progress(epoch, config.kl_weight(epoch))
    values = []
    for name, loss in (losses_of(x) if losses_of is not None else model.training_losses(x)):
        optimizers.step(name, loss, epoch)
        values.append((name, loss.detach()))
    return values


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


def _validation_split(dataset: ImageDataset) -> torch.Tensor:
    if "valid" not in dataset.splits:
        raise GenbenchError(
            f"early stopping needs a 'valid' split; data set {dataset.name!r} has "
            f"{', '.join(dataset.splits)}"
        )
    return dataset.eval_tensor("valid")


def save_run(run_dir, model, optimizers: Optimizers, callbacks, meta, step, total_steps) -> None:
    """A run's checkpoint at ``step``: weights, optimizers and every callback's state (rank 0 writes it;
    also the ensemble's, per member, so that its checkpoints are a single run's)."""
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
