"""What a training run is asked to do (``TrainConfig``) and what it reports (``TrainResult``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from genbench.core.errors import GenbenchError
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
