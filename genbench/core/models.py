"""The one model registry: name -> (model class, config dataclass).

Every model comes in through the ``genbench.zoo`` entry-point group, genbench's own zoo
exactly as a third-party package: an entry point loads to a :class:`ModelEntry` or a
sequence of them (the zoo's ``zoo:ENTRIES``). genbench never imports a model package by name.
A model class is constructed as ``cls(config, data_shape)``.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import torch
from torch import nn

from genbench.core.errors import GenbenchError
from genbench.core.hyperparameters import check_hyperparameters
from genbench.core.registry import Registry

#: the most bytes of parameters and buffers a model may hold; every model is sized on the meta
#: device (no memory) before it is built, so a config asking for more is refused, never allocated
MAX_MODEL_BYTES = 2 << 30


@dataclass(frozen=True)
class ModelEntry:
    name: str
    model_cls: type[nn.Module]
    config_cls: type
    summary: str
    #: Config values this name fixes (``vae`` is the IWAE class with objective "vae").
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)

    def make_config(self, overrides: dict[str, Any] | None = None) -> Any:
        """The config dataclass from this entry's defaults plus ``overrides``, validated."""
        values = {**self.defaults, **(overrides or {})}
        fields = {f.name: f for f in dataclasses.fields(self.config_cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise GenbenchError(
                f"model {self.name!r} has no hyperparameter {unknown[0]!r}; "
                f"valid: {', '.join(sorted(fields))}"
            )
        hints = typing.get_type_hints(self.config_cls)
        coerced = {k: _coerce(self.name, k, v, hints[k]) for k, v in values.items()}
        try:
            check_hyperparameters(self.config_cls, coerced)  # before the config's own checks see them
            return self.config_cls(**coerced)
        except (TypeError, ValueError) as exc:
            raise GenbenchError(f"model {self.name!r}: {exc}") from None

    def skeleton(self, config: Any, data_shape: tuple[int, ...]) -> nn.Module:
        """The model of ``config`` on the meta device: its parameters' and buffers' shapes and dtypes
        without their memory. Refused where they exceed ``MAX_MODEL_BYTES``."""
        with torch.device("meta"):
            model = self.model_cls(config, tuple(data_shape))
        size = model_bytes(model)
        if size > MAX_MODEL_BYTES:
            raise GenbenchError(f"model {self.name!r} with these hyperparameters needs {size / 2**30:.3g} "
                                f"GiB of parameters and buffers on data {list(data_shape)}, over genbench's "
                                f"limit of {MAX_MODEL_BYTES / 2**30:g} GiB")
        return model

    def build(self, overrides: dict[str, Any] | None, data_shape: tuple[int, ...]) -> nn.Module:
        """The model of this entry's defaults plus ``overrides``, sized on the meta device first."""
        config = self.make_config(overrides)
        self.skeleton(config, data_shape)
        return self.model_cls(config, tuple(data_shape))


def model_bytes(model: nn.Module) -> int:
    """Bytes of a model's parameters and buffers (persistent or not); meta tensors count as real ones."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def _coerce(model: str, key: str, value: Any, hint: Any) -> Any:
    """Values from the command line arrive as strings: convert them to the field's type."""
    if not isinstance(value, str) or hint is str:
        return value
    try:
        if hint is bool:
            if value.lower() in ("1", "true", "yes"):
                return True
            if value.lower() in ("0", "false", "no"):
                return False
            raise ValueError(value)
        if hint in (int, float):
            return hint(value)
    except ValueError:
        raise GenbenchError(
            f"model {model!r}: hyperparameter {key}={value!r} is not a {hint.__name__}"
        ) from None
    return value


def config_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


#: the entry-point group models register under
ENTRY_POINT_GROUP = "genbench.zoo"


def _load_plugins(registry: Registry[ModelEntry]) -> None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = ep.load()
        except Exception as exc:
            raise GenbenchError(f"plugin model {ep.name!r} failed to load: {exc}") from None
        entries = loaded if isinstance(loaded, list | tuple) else [loaded]
        if not entries or not all(isinstance(entry, ModelEntry) for entry in entries):
            raise GenbenchError(f"plugin {ep.name!r} must load to a genbench.core.models.ModelEntry "
                                "(or a list of them)")
        for entry in entries:
            registry.register(entry.name, entry)


MODELS: Registry[ModelEntry] = Registry("model", loader=_load_plugins)
