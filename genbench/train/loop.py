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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from genbench.data.base import ImageDataset
from genbench.errors import GenbenchError, TrainingDiverged
from genbench.metrics.distributed import all_reduce_sum, average_gradients, rank_and_world
from genbench.protocols import DataInitialized, Trainable
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

    def __post_init__(self):
        SCHEDULES[self.schedule]  # validates the name
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0:
            raise GenbenchError(f"invalid training config {self}")


@dataclass
class TrainResult:
    steps: int
    resumed_from: int
    seconds: float
    final_loss: float | None


def step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step) % (2**63 - 1)


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(step_seed(seed + 7919, epoch))
    return torch.randperm(n, generator=gen)


def fit_tensor(dataset: ImageDataset, seed: int) -> torch.Tensor:
    """The training split as a model sees it once (a fixed draw where binarization is dynamic)."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(step_seed(seed, -1))
    try:
        return dataset.train_batch(torch.arange(dataset.size("train"), device=dataset.device))
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
) -> TrainResult:
    """Train ``model`` on ``dataset`` into ``run_dir``, resuming from its checkpoint.

    ``meta`` (model name, hyperparameters, data set ...) is stored in every checkpoint and
    must match on resume. ``max_steps`` stops early (used to simulate an interrupted run).
    """
    started = time.perf_counter()
    device = dataset.device
    model.to(device)
    meta = {**meta, "seed": config.seed, "train": asdict(config)}
    n_train = dataset.size("train")
    steps_per_epoch = math.ceil(n_train / config.batch_size)
    total_steps = round(config.epochs * steps_per_epoch) if isinstance(model, Trainable) else 0
    optimizers = model.configure_optimizers(config.lr) if isinstance(model, Trainable) else {}

    start_step = _resume(model, optimizers, run_dir, meta)
    if start_step is None:
        start_step = 0
        if isinstance(model, DataInitialized):
            model.init_from_data(fit_tensor(dataset, config.seed))
    resumed_from = start_step

    schedule = SCHEDULES[config.schedule]
    rank, world = rank_and_world()
    end_step = total_steps if max_steps is None else min(total_steps, max_steps)
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
        lr = config.lr * schedule(step / steps_per_epoch)
        for name, loss in model.training_losses(x):
            # summed over ranks: a NaN on any rank stops every rank at the same step
            loss_value = all_reduce_sum(loss.detach()).item() / world
            if not math.isfinite(loss_value):
                raise TrainingDiverged(
                    f"loss became {loss_value} at step {step} (epoch {epoch}); run stopped"
                )
            opt = optimizers[name]
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad(set_to_none=True)
            loss.backward()
            average_gradients(p for group in opt.param_groups for p in group["params"])
            opt.step()
        bar.update(config.batch_size)
        if step % 50 == 0 and loss_value is not None:
            bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.2g}")
        done = step + 1
        if done % config.checkpoint_every == 0 and done < end_step:
            _save(run_dir, model, optimizers, meta, done, total_steps)
    bar.close()
    model.eval()
    _save(run_dir, model, optimizers, meta, end_step, total_steps)
    return TrainResult(end_step, resumed_from, time.perf_counter() - started, loss_value)


def _save(run_dir, model, optimizers, meta, step, total_steps) -> None:
    if rank_and_world()[0] == 0:
        ckpt.save_checkpoint(run_dir, model, {**meta, "step": step, "total_steps": total_steps},
                             optimizers)


#: checkpoint fields that must match for a run to resume from it
_IDENTITY = ("model", "config", "dataset", "data_shape", "seed", "train")


def _resume(model, optimizers, run_dir: Path, meta: dict[str, Any]) -> int | None:
    path = run_dir / ckpt.FILENAME
    if not path.exists():
        return None
    saved, tensors, optim = ckpt.read_checkpoint(path)
    for key in _IDENTITY:
        if saved.get(key) != meta.get(key):
            raise GenbenchError(
                f"{path} was written by a different run ({key}: {saved.get(key)!r} vs "
                f"{meta.get(key)!r}); use another run directory or delete it"
            )
    ckpt.load_state_dict_checked(model, ckpt.model_state(tensors), str(path))
    ckpt.restore_optimizers(optimizers, optim, tensors)
    return int(saved["step"])
