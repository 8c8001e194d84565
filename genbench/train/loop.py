"""The one training loop, for every Trainable model (and closed-form DataInitialized ones).

Reproducible and resumable by construction: the data order of epoch e comes from a
generator seeded with (seed, e) and the global RNG is re-seeded with (seed, step) before
every step, so step s sees the same batch and the same noise whether or not the run was
interrupted before it. A checkpoint (weights + optimizer state) is written every
``checkpoint_every`` steps and at the end; running again resumes from it.

Under ``torchrun`` (``torch.distributed`` initialised) every rank takes its share of each
batch and gradients are averaged across ranks before each step; rank 0 writes checkpoints.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from genbench.data.base import ImageDataset
from genbench.errors import GenbenchError, TrainingDiverged
from genbench.metrics.distributed import all_reduce_sum, average_gradients, global_mean, rank_and_world
from genbench.metrics.importance import importance_bounds
from genbench.protocols import DataInitialized, EpochCallback, ProgressAware, Trainable
from genbench.train import checkpoint as ckpt
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
    kl_warmup_epochs: float = 0.0
    """KL warm-up: the KL weight of ProgressAware models rises linearly from 0 to 1 over
    these epochs (0: no warm-up)."""
    early_stopping_epochs: int = 0
    """Stop when the validation ELBO has not improved for this many epochs and keep the
    best weights (0: off). Needs a 'valid' split."""

    def __post_init__(self):
        SCHEDULES[self.schedule]  # validates the name
        if (self.epochs < 0 or self.batch_size < 1 or self.lr <= 0 or self.kl_warmup_epochs < 0
                or self.early_stopping_epochs < 0):
            raise GenbenchError(f"invalid training config {self}")

    def kl_weight(self, epoch: float) -> float:
        if self.kl_warmup_epochs <= 0:
            return 1.0
        return min(1.0, epoch / self.kl_warmup_epochs)


@dataclass
class TrainResult:
    steps: int
    resumed_from: int
    seconds: float
    final_loss: float | None
    epochs_trained: float = 0.0
    best_epoch: int | None = None
    """With early stopping: the epoch whose weights were kept."""


@dataclass
class EarlyStopping:
    """Validation-ELBO bookkeeping, saved in every checkpoint so a resumed run continues it."""

    patience: int
    best: float = -math.inf
    best_epoch: int = 0
    stopped: bool = False

    def update(self, value: float, epoch: int) -> bool:
        """Record the validation value after ``epoch`` epochs; True when it is a new best."""
        if value > self.best:
            self.best, self.best_epoch = value, epoch
            return True
        self.stopped = epoch - self.best_epoch >= self.patience
        return False


def step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step) % (2**63 - 1)


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


def train(
    model: nn.Module,
    dataset: ImageDataset,
    config: TrainConfig,
    run_dir: Path,
    meta: dict[str, Any],
    max_steps: int | None = None,
    progress: bool = True,
    monitor: Callable[[nn.Module], dict[str, float]] | None = None,
) -> TrainResult:
    """Train ``model`` on ``dataset`` into ``run_dir``, resuming from its checkpoint.

    ``meta`` (model name, hyperparameters, data set ...) is stored in every checkpoint and
    must match on resume. ``max_steps`` stops early (used to simulate an interrupted run).
    ``monitor`` measures the model at each epoch end (it must leave the RNG and the model's
    mode as it found them); an EpochCallback model receives the values.
    """
    started = time.perf_counter()
    device = dataset.device
    model.to(device)
    meta = {**meta, "seed": config.seed, "train": asdict(config)}
    n_train = dataset.size("train")
    steps_per_epoch = math.ceil(n_train / config.batch_size)
    total_steps = round(config.epochs * steps_per_epoch) if isinstance(model, Trainable) else 0
    optimizers = model.configure_optimizers(config.lr) if isinstance(model, Trainable) else {}
    # the schedule scales each group's initial rate (a GAN's critic may start at a multiple of lr)
    initial_lrs = {name: [group["lr"] for group in opt.param_groups] for name, opt in optimizers.items()}

    stopping = EarlyStopping(config.early_stopping_epochs) if config.early_stopping_epochs else None
    valid = _validation_split(dataset) if stopping else None
    start_step, saved = _resume(model, optimizers, run_dir, meta)
    if start_step is None:
        start_step = 0
        if isinstance(model, DataInitialized):
            model.init_from_data(fit_tensor(dataset, config.seed))
    elif stopping and saved.get("early_stopping"):
        stopping = EarlyStopping(**saved["early_stopping"])
    resumed_from = start_step

    schedule = SCHEDULES[config.schedule]
    rank, world = rank_and_world()
    end_step = total_steps if max_steps is None else min(total_steps, max_steps)
    if stopping and stopping.stopped:
        end_step = start_step  # finished by early stopping before it was interrupted
    bar = tqdm(total=(end_step - start_step) * config.batch_size, unit="img", unit_scale=True,
               disable=not progress, desc=meta.get("name", "train"), leave=False)
    loss_value: float | None = None
    perm, perm_epoch = None, -1
    model.train()
    for step in range(start_step, end_step):
        epoch, i = divmod(step, steps_per_epoch)
        if epoch != perm_epoch:
            perm, perm_epoch = epoch_permutation(config.seed, epoch, n_train).to(device), epoch
        idx = perm[i * config.batch_size : (i + 1) * config.batch_size][rank::world]
        torch.manual_seed(step_seed(config.seed, step) + rank)
        x = dataset.train_batch(idx)
        lr_scale = schedule(step / steps_per_epoch)
        lr = config.lr * lr_scale
        if isinstance(model, ProgressAware):
            model.set_training_progress(step / steps_per_epoch, config.kl_weight(step / steps_per_epoch))
        for name, loss in model.training_losses(x):
            # summed over ranks: a NaN on any rank stops every rank at the same step
            loss_value = all_reduce_sum(loss.detach()).item() / world
            if not math.isfinite(loss_value):
                raise TrainingDiverged(
                    f"loss became {loss_value} at step {step} (epoch {epoch}); run stopped"
                )
            opt = optimizers[name]
            for group, initial in zip(opt.param_groups, initial_lrs[name], strict=True):
                group["lr"] = initial * lr_scale
            opt.zero_grad(set_to_none=True)
            loss.backward()
            average_gradients(p for group in opt.param_groups for p in group["params"])
            opt.step()
        bar.update(config.batch_size)
        if step % 50 == 0 and loss_value is not None:
            bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.2g}")
        done = step + 1
        epoch_ends = done % steps_per_epoch == 0 or done == total_steps
        if isinstance(model, EpochCallback) and rank == 0 and epoch_ends:
            model.on_epoch_end(done / steps_per_epoch, run_dir, monitor(model) if monitor else {})
        if stopping and done % steps_per_epoch == 0:
            _validate(model, valid, stopping, done // steps_per_epoch, run_dir, config.seed)
            model.train()
            if stopping.stopped:
                end_step = done
                break
        if done % config.checkpoint_every == 0 and done < end_step:
            _save(run_dir, model, optimizers, meta, done, total_steps, stopping)
    bar.close()
    model.eval()
    if stopping and (run_dir / BEST_WEIGHTS).exists():
        tensors = ckpt.read_weights(run_dir / BEST_WEIGHTS)
        ckpt.load_state_dict_checked(model, tensors, str(run_dir / BEST_WEIGHTS))
        stopping.stopped = True  # the weights are final: a rerun must not train on from them
    _save(run_dir, model, optimizers, meta, end_step, total_steps, stopping)
    return TrainResult(end_step, resumed_from, time.perf_counter() - started, loss_value,
                       epochs_trained=end_step / steps_per_epoch,
                       best_epoch=stopping.best_epoch if stopping else None)


#: the weights of the best validation ELBO so far, beside the checkpoint
BEST_WEIGHTS = "best.safetensors"


def _validation_split(dataset: ImageDataset) -> torch.Tensor:
    if "valid" not in dataset.splits:
        raise GenbenchError(
            f"early stopping needs a 'valid' split; data set {dataset.name!r} has "
            f"{', '.join(dataset.splits)}"
        )
    return dataset.eval_tensor("valid")


@torch.no_grad()
def _validate(model, valid: torch.Tensor, stopping: EarlyStopping, epoch: int, run_dir: Path,
              seed: int) -> None:
    """Validation ELBO after ``epoch`` epochs; the best weights so far go to best.safetensors."""
    model.eval()
    torch.manual_seed(step_seed(seed, -2 - epoch))
    value = global_mean(importance_bounds(model, valid[rank_and_world()[0]::rank_and_world()[1]], k=1).elbo)
    if stopping.update(value, epoch) and rank_and_world()[0] == 0:
        ckpt.save_weights(run_dir / BEST_WEIGHTS, model)


def _save(run_dir, model, optimizers, meta, step, total_steps, stopping=None) -> None:
    if rank_and_world()[0] == 0:
        extra = {"early_stopping": asdict(stopping)} if stopping else {}
        ckpt.save_checkpoint(run_dir, model, {**meta, **extra, "step": step, "total_steps": total_steps},
                             optimizers)


#: checkpoint fields that must match for a run to resume from it
_IDENTITY = ("model", "config", "dataset", "data_shape", "seed", "train")


def _resume(model, optimizers, run_dir: Path, meta: dict[str, Any]) -> tuple[int | None, dict]:
    """The step to continue from (None: a fresh run) and the saved metadata."""
    path = run_dir / ckpt.FILENAME
    if not path.exists():
        return None, {}
    saved, tensors, optim = ckpt.read_checkpoint(path)
    for key in _IDENTITY:
        if saved.get(key) != meta.get(key):
            raise GenbenchError(
                f"{path} was written by a different run ({key}: {saved.get(key)!r} vs "
                f"{meta.get(key)!r}); use another run directory or delete it"
            )
    ckpt.load_state_dict_checked(model, ckpt.model_state(tensors), str(path))
    ckpt.restore_optimizers(optimizers, optim, tensors)
    return int(saved["step"]), saved
