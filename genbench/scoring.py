"""Loading a model to score: a genbench checkpoint, or a foreign state dict with --model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from genbench.core.errors import GenbenchError
from genbench.core.models import MODELS, config_dict
from genbench.core.weights import atomic_write, load_foreign_state_dict, load_state_dict_checked
from genbench.data import DATASETS
from genbench.train import checkpoint as ckpt
from genbench.train.identity import LOCATIONS

#: the data set of foreign weights when --dataset does not say otherwise
FOREIGN_DATASET = "mnist"


@dataclass
class LoadedModel:
    model: nn.Module
    model_name: str
    config: dict[str, Any]
    dataset: str
    data_shape: tuple[int, ...]
    evaluation: dict[str, Any] | None = None
    """The evaluation settings its run recorded (a genbench run directory), else None."""


#: what a finished run's directory says of its evaluation: the settings its row's numbers had
EVALUATION_FILE = "evaluation.json"


def write_evaluation(run_dir: Path, settings: dict[str, Any]) -> None:
    """Record in the run directory the evaluation settings of the run's results, so that
    ``genbench score RUN_DIR`` reproduces them (replaced atomically)."""
    recorded = {k: v for k, v in settings.items() if k not in LOCATIONS}
    atomic_write(Path(run_dir) / EVALUATION_FILE,
                 lambda tmp: tmp.write_text(json.dumps(recorded, indent=2, sort_keys=True)))


def read_evaluation(path: Path) -> dict[str, Any] | None:
    """The settings ``write_evaluation`` recorded beside a checkpoint (None where there are none)."""
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    record = folder / EVALUATION_FILE
    if not record.is_file():
        return None
    try:
        settings = json.loads(record.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise GenbenchError(f"{record}: unreadable evaluation record ({exc})") from None
    if not isinstance(settings, dict):
        raise GenbenchError(f"{record}: not an evaluation record")
    return settings


def load_for_scoring(path: Path, model_name: str | None, overrides: dict[str, str],
                     dataset: str | None) -> LoadedModel:
    path = Path(path)
    if not path.exists():
        raise GenbenchError(f"no file or directory at {path}")
    if model_name is None:
        if path.suffix in (".pt", ".pth"):
            raise GenbenchError(f"{path}: a foreign state dict needs --model NAME (and --set "
                                "KEY=VALUE for its hyperparameters)")
        meta, tensors, _ = ckpt.read_checkpoint(path)
        if overrides:
            raise GenbenchError("--set applies only with --model (a genbench checkpoint "
                                "carries its hyperparameters)")
        entry = MODELS[meta["model"]]
        model = entry.build(meta["config"], tuple(meta["data_shape"]))
        load_state_dict_checked(model, ckpt.model_state(tensors), str(path))
        return LoadedModel(model.eval(), meta["model"], meta["config"], dataset or meta["dataset"],
                           tuple(meta["data_shape"]), read_evaluation(path))
    entry = MODELS[model_name]
    dataset = dataset or FOREIGN_DATASET
    shape = DATASETS[dataset].shape
    if path.suffix == ".safetensors":
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise GenbenchError(f"{path}: not a readable safetensors file ({exc})") from None
        state = ckpt.model_state(state) or state
    else:
        state = load_foreign_state_dict(path)
    config = entry.make_config(overrides)
    model = entry.model_cls(config, shape)
    load_state_dict_checked(model, state, str(path))
    return LoadedModel(model.eval(), model_name, config_dict(config), dataset, shape)
