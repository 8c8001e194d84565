"""Loading a model to score: a genbench checkpoint, or a foreign state dict with --model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from genbench.core.errors import GenbenchError
from genbench.core.models import MODELS, config_dict
from genbench.core.weights import load_foreign_state_dict, load_state_dict_checked
from genbench.data import DATASETS
from genbench.train import checkpoint as ckpt

#: the data set of foreign weights when --dataset does not say otherwise
FOREIGN_DATASET = "mnist"


@dataclass
class LoadedModel:
    model: nn.Module
    model_name: str
    config: dict[str, Any]
    dataset: str
    data_shape: tuple[int, ...]


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
                           tuple(meta["data_shape"]))
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
