"""What the training loop does beside the updates, as callbacks the trainer owns.

Each callback sees the run through :class:`TrainState`, may add values to the learning
curve's row at every epoch end, and keeps its own state in ``state_dict``, which goes into
every checkpoint, so a killed run resumes every callback exactly where it was. Models never
see a run directory: what is written there (sample grids, best weights) is written here.

- :class:`LearningCurve`: the mean of each optimizer's loss per epoch and its update count,
  plus whatever the other callbacks measured; the curve comes back with ``train()``'s result.
- :class:`EarlyStopping`: the validation ELBO after each epoch, the best weights kept in
  ``best.safetensors``, training stopped after ``patience`` epochs without improvement.
- :class:`SampleGrids`: ``samples_epoch{N}.png`` from the same seed at every epoch end.
- :class:`QualityMonitor`: a measure of the model (IS/FID of a few samples) at every epoch end.
- :class:`TrainingClock`: the seconds spent training, summed over every process that trained the run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from genbench.core.distributed import all_reduce_sum, global_mean, rank_and_world
from genbench.core.image_grid import grid_png
from genbench.core.protocols import ExactLikelihood, LatentVariableModel, Sampler
from genbench.core.rng import seeded_rng
from genbench.core.weights import load_state_dict_checked, read_weights, save_weights
from genbench.metrics.importance import importance_bounds
from genbench.train.seeding import step_seed


@dataclass
class TrainState:
    """What callbacks may read of the run in progress."""

    model: nn.Module
    run_dir: Path
    seed: int
    rank: int
    steps_per_epoch: int
    step: int = 0
    """Steps done so far."""
    stop: bool = False
    """Set by a callback to end training after this step."""

    @property
    def epoch(self) -> float:
        return self.step / self.steps_per_epoch


class Callback:
    """The hooks; every one is optional."""

    #: key of this callback's state in the checkpoint
    name = "callback"

    def on_step_end(self, state: TrainState, losses: list[tuple[str, Tensor]]) -> None:
        """After every step, with the (optimizer name, loss) pairs it stepped; each loss is a
        detached 0-d tensor on the device (reading it, ``float(loss)``, waits for the device)."""

    def on_epoch_end(self, state: TrainState) -> dict[str, float]:
        """At every epoch end (and the end of a run that stops mid-epoch): values for the curve."""
        return {}

    def on_train_end(self, state: TrainState) -> None:
        """After the last step, before the final checkpoint."""

    def finished(self) -> bool:
        """Whether this callback ended training for good (a rerun must not train on)."""
        return False

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def watches_samples(model: object) -> bool:
    """A sampler with no likelihood to watch (a GAN): its training is followed through its
    samples, a grid per epoch and, where the run asks for sample quality, their FID."""
    return isinstance(model, Sampler) and not isinstance(model, LatentVariableModel | ExactLikelihood)


@dataclass
class LearningCurve(Callback):
    """One row per epoch end: each optimizer's mean loss and its updates so far, then the
    values the other callbacks measured."""

    name = "learning_curve"
    rows: list[dict[str, float]] = field(default_factory=list)
    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    updates: dict[str, int] = field(default_factory=dict)

    def on_step_end(self, state, losses):
        for name, loss in losses:  # summed on the device, in float64, read at the epoch's end
            self.sums[name] = self.sums[name] + loss.double() if name in self.sums else loss.double()
            self.counts[name] = self.counts.get(name, 0) + 1
            self.updates[name] = self.updates.get(name, 0) + 1

    def on_epoch_end(self, state):
        world = rank_and_world()[1]  # the mean over every rank's losses
        means = {name: float(all_reduce_sum(total)) / world / self.counts[name]
                 for name, total in self.sums.items()}
        self.sums, self.counts = {}, {}
        return {**means, **{f"{name}_steps": float(n) for name, n in self.updates.items()}}

    def record(self, epoch: float, values: dict[str, float]) -> None:
        self.rows.append({"epoch": epoch, **values})

    def state_dict(self):
        sums = {name: float(total) for name, total in self.sums.items()}
        return {"rows": self.rows, "sums": sums, "counts": self.counts, "updates": self.updates}

    def load_state_dict(self, state):
        self.rows = list(state["rows"])
        self.sums = {name: torch.tensor(total, dtype=torch.float64) for name, total in state["sums"].items()}
        self.counts, self.updates = dict(state["counts"]), dict(state["updates"])


class TrainingClock(Callback):
    """The run's training time in seconds: this process's since it began, plus what the earlier
    processes that trained the run (killed and resumed) recorded in the checkpoint, so that a
    resumed run reports its whole training time, not its last stretch."""

    name = "training_clock"

    def __init__(self) -> None:
        self.earlier = 0.0
        self.began = time.perf_counter()

    def seconds(self) -> float:
        return self.earlier + time.perf_counter() - self.began

    def state_dict(self):
        return {"seconds": self.seconds()}

    def load_state_dict(self, state):
        self.earlier = float(state["seconds"])
        self.began = time.perf_counter()


#: the weights of the best validation ELBO so far, beside the checkpoint
BEST_WEIGHTS = "best.safetensors"


@dataclass
class EarlyStopping(Callback):
    """Validation-ELBO early stopping: stop after ``patience`` epochs without a new best and
    end with the best weights."""

    valid: Tensor
    patience: int
    best: float = -math.inf
    best_epoch: int = 0
    stopped: bool = False
    name = "early_stopping"

    @torch.no_grad()
    def on_epoch_end(self, state):
        if not state.epoch.is_integer():  # a run that stops mid-epoch is validated at whole epochs only
            return {}
        epoch = int(state.epoch)
        model = state.model
        model.eval()
        torch.manual_seed(step_seed(state.seed, -2 - epoch))
        rank, world = rank_and_world()
        value = global_mean(importance_bounds(model, self.valid[rank::world], k=1).elbo)
        model.train()
        if value > self.best:
            self.best, self.best_epoch = value, epoch
            if state.rank == 0:
                save_weights(state.run_dir / BEST_WEIGHTS, model)
        elif epoch - self.best_epoch >= self.patience:
            self.stopped = state.stop = True
        return {"valid_elbo": value}

    def on_train_end(self, state):
        path = state.run_dir / BEST_WEIGHTS
        if path.exists():
            load_state_dict_checked(state.model, read_weights(path), str(path))
            self.stopped = True  # the weights are final: a rerun must not train on from them

    def finished(self):
        return self.stopped

    def state_dict(self):
        return {"best": self.best, "best_epoch": self.best_epoch, "stopped": self.stopped}

    def load_state_dict(self, state):
        self.best, self.best_epoch, self.stopped = state["best"], state["best_epoch"], state["stopped"]


#: seed of the samples of every grid: one set of latent draws, evolving over training
GRID_SEED = 1234


class SampleGrids(Callback):
    """``samples_epoch{epoch}.png``: 64 samples drawn under one fixed seed at every epoch end."""

    name = "sample_grids"

    def __init__(self, n: int = 64):
        self.n = n

    @torch.no_grad()
    def on_epoch_end(self, state):
        if state.rank != 0:
            return {}
        model, was_training = state.model, state.model.training
        model.eval()
        try:
            with seeded_rng(GRID_SEED):
                images = model.sample(self.n).float().clamp(0, 1).cpu()
        finally:
            model.train(was_training)
        state.run_dir.mkdir(parents=True, exist_ok=True)
        (state.run_dir / f"samples_epoch{state.epoch:g}.png").write_bytes(grid_png(images, nrow=8))
        return {}


class QualityMonitor(Callback):
    """``measure(model)`` at every epoch end, into the curve (it must leave the RNG and the
    model's mode as it found them: ``genbench.metrics.sample_quality.curve_monitor`` does)."""

    name = "quality_monitor"

    def __init__(self, measure: Callable[[nn.Module], dict[str, float]]):
        self.measure = measure

    def on_epoch_end(self, state):
        return self.measure(state.model) if state.rank == 0 else {}
