"""A run's identity: one record for the database row, the run directory and the checkpoint.

Two runs with the same identity are the same experiment: the second resumes or reuses the
first. The key hashes everything that changes the numbers: suite, run name, model and its
hyperparameters, data set, training config (seed included), budget name and evaluation
settings, except the settings of metrics a finished run can add later from its checkpoint
(``ADDABLE_LATER``: asking a budget for sample quality later never retrains a run).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: evaluation settings left out of the key: their metrics are computed later from the checkpoint
ADDABLE_LATER = ("quality_samples",)
#: evaluation settings that say where files are, not what is computed
LOCATIONS = ("cache_root",)


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
        ident = {**asdict(self), "data_shape": list(self.data_shape), "eval": evaluation}
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]

    def run_dir(self, runs_dir: Path) -> Path:
        return Path(runs_dir) / self.suite / self.budget / f"{self.name}-seed{self.seed}-{self.key[:8]}"

    def checkpoint_meta(self) -> dict[str, Any]:
        """What the checkpoint records of the run (the loop adds seed, train and step)."""
        return {"name": self.name, "model": self.model, "config": self.config, "dataset": self.dataset,
                "data_shape": list(self.data_shape), "suite": self.suite, "budget": self.budget,
                "run_key": self.key}
