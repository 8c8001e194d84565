"""A run's identity: one record for the database row, the run directory and the checkpoint.

Two runs with the same identity are the same experiment: the second resumes or reuses the
first. The key hashes everything that changes the numbers: suite, run name, model and its
hyperparameters, data set, training config (seed included), budget name and evaluation
settings, except the settings of metrics a finished run can add later from its checkpoint
(``ADDABLE_LATER``: asking a budget for sample quality or AIS later never retrains a run).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from genbench.core.names import inside

#: evaluation settings left out of the key: their metrics (sample quality, AIS) are computed later
#: from the checkpoint, so a budget asking for them, or for more of them, never retrains a run
ADDABLE_LATER = ("quality_samples", "ais_steps", "ais_chains", "ais_points", "ais_sigma_points",
                 "ais_bdmc_points")
#: evaluation settings that say where files are, not what is computed
LOCATIONS = ("cache_root",)
#: training settings that change no number, only how often the loop reads the device
#: (tests/train/test_train.py: the check window changes no number)
TRAIN_BOOKKEEPING = ("check_every",)


@dataclass(frozen=True)
class RunIdentity:
    suite: str
    name: str
    model: str
    config: dict[str, Any]
    dataset: str
    data_shape: tuple[int, ...]
    budget: str
    train: dict[str, Any]
    """The TrainConfig as a dict (its ``seed`` is the run's seed)."""
    eval: dict[str, Any] = field(default_factory=dict)
    """The EvalSettings as a dict."""

    @property
    def seed(self) -> int:
        return int(self.train["seed"])

    @property
    def key(self) -> str:
        evaluation = {k: v for k, v in self.eval.items() if k not in ADDABLE_LATER + LOCATIONS}
        train = {k: v for k, v in self.train.items() if k not in TRAIN_BOOKKEEPING}
        ident = {**asdict(self), "data_shape": list(self.data_shape), "train": train, "eval": evaluation}
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]

    def run_dir(self, runs_dir: Path) -> Path:
        """The run's folder, inside ``runs_dir`` (a name that would put it elsewhere is refused)."""
        folder = f"{self.name}-seed{self.seed}-{self.key[:8]}"
        return inside(runs_dir, Path(runs_dir) / self.suite / self.budget / folder)

    def checkpoint_meta(self) -> dict[str, Any]:
        """What the checkpoint records of the run (the loop adds seed, train and step)."""
        return {"name": self.name, "model": self.model, "config": self.config, "dataset": self.dataset,
                "data_shape": list(self.data_shape), "suite": self.suite, "budget": self.budget,
                "run_key": self.key}
