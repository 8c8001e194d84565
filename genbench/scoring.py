"""Loading a model to score: a genbench checkpoint, or a foreign state dict with --model.

Every file is untrusted and nothing is allocated before it is known to fit: a checkpoint's
metadata is JSON checked against a schema (``validate_checkpoint_meta``: types, required keys, the
format version, a data shape that is its data set's); hyperparameters are checked against their
bounds (``genbench.core.hyperparameters``); the model is built on the meta device first and its
every key, shape and kind of number compared with the file's tensors, read from the safetensors
header without loading them (``genbench.core.state_specs``), its size with ``MAX_MODEL_BYTES``.
Only then are the tensors read, cast to the model's dtypes, refused if any is NaN or infinite at
that precision, and the model built. A ``.pt`` file is read by ``torch.load(weights_only=True)``
only, once what it can allocate is bounded: a zip archive's members checked, or a legacy-format
(torch < 1.6) file's declared storages found in the file (``check_torch_file``).
"""

from __future__ import annotations

import functools
import json
import math
import re
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor, nn

from genbench.core.errors import GenbenchError
from genbench.core.models import MODELS, ModelEntry, config_dict
from genbench.core.state_specs import (
    SAFETENSORS_DTYPES,
    TensorSpec,
    check_dense,
    check_state_specs,
    check_torch_file,
    finite_state,
    model_specs,
    spec_of,
)
from genbench.core.weights import atomic_write
from genbench.data import DATASETS
from genbench.metrics.registry import EvalSettings
from genbench.sample_sets import DEFAULT_MAX_SAMPLES
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
    except (OSError, ValueError, RecursionError) as exc:
        raise GenbenchError(f"{record}: unreadable evaluation record ({exc})") from None
    if not isinstance(settings, dict):
        raise GenbenchError(f"{record}: not an evaluation record")
    hints = typing.get_type_hints(EvalSettings)
    for name, value in settings.items():
        if name in hints and not _is_setting(value, hints[name]):
            raise GenbenchError(f"{record}: {name} is {_clip(value)}, not a value of EvalSettings.{name}")
    return settings


def _is_setting(value: Any, hint: Any) -> bool:
    """Whether a recorded value fits an EvalSettings field's type (an int a count below 2^63)."""
    for kind in typing.get_args(hint) or (hint,):
        if kind is type(None) and value is None or kind is str and isinstance(value, str):
            return True
        if kind is int and _is_int(value) and 0 <= value < 2**63:
            return True
        if kind is float and isinstance(value, int | float) and not isinstance(value, bool) \
                and math.isfinite(value):
            return True
    return False


#: the longest genbench metadata (JSON characters) a checkpoint may carry; a real one is kilobytes
MAX_META_CHARS = 16 << 20
#: what a genbench checkpoint's metadata must hold, and the JSON type of each
META_SCHEMA = {"format": str, "format_version": int, "model": str, "config": dict, "dataset": str,
               "data_shape": list}
#: JSON's names of the Python types json.loads gives
JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "an integer", float: "a number",
              bool: "a boolean", type(None): "null"}


@dataclass(frozen=True)
class CheckpointMeta:
    """The fields of a genbench checkpoint's metadata that scoring uses, validated."""

    model: str
    config: dict[str, Any]
    dataset: str
    data_shape: tuple[int, ...]


def _json_type(value: Any) -> str:
    return JSON_TYPES.get(type(value), type(value).__name__)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_checkpoint_meta(text: str, source: str) -> CheckpointMeta:
    """The one validator of a checkpoint's genbench metadata (a JSON string): a JSON object of the
    known format and version with every field of ``META_SCHEMA`` of its type, a known model and
    data set, and a data shape that is that data set's. Anything else is one line."""
    if len(text) > MAX_META_CHARS:
        raise GenbenchError(f"{source}: genbench metadata of {len(text):,} characters, over the limit of "
                            f"{MAX_META_CHARS:,}")
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError):  # JSONDecodeError, an integer of too many digits, deep nesting
        raise GenbenchError(f"{source}: corrupt genbench metadata (not JSON)") from None
    if not isinstance(meta, dict):
        raise GenbenchError(f"{source}: genbench metadata is {_json_type(meta)}, expected an object")
    version = meta.get("format_version")
    if meta.get("format") != ckpt.FORMAT or not _is_int(version) or version != ckpt.FORMAT_VERSION:
        raise GenbenchError(f"{source}: unsupported checkpoint format {meta.get('format')!r} "
                            f"version {version!r} (expected {ckpt.FORMAT!r} version {ckpt.FORMAT_VERSION})")
    for key, kind in META_SCHEMA.items():
        if key not in meta:
            raise GenbenchError(f"{source}: genbench metadata lacks {key!r}")
        if not isinstance(meta[key], kind) or (kind is int and isinstance(meta[key], bool)):
            raise GenbenchError(f"{source}: genbench metadata {key!r} is {_json_type(meta[key])}, "
                                f"expected {JSON_TYPES[kind]}")
    shape = meta["data_shape"]
    if not 1 <= len(shape) <= 4 or not all(_is_int(n) and n >= 1 for n in shape):
        raise GenbenchError(f"{source}: genbench metadata 'data_shape' {_clip(shape)} is not a list of 1 "
                            "to 4 positive integers")
    MODELS[meta["model"]]  # an unknown name: one line listing the valid ones
    _check_data_shape(meta["dataset"], tuple(shape), source)
    return CheckpointMeta(meta["model"], meta["config"], meta["dataset"], tuple(shape))


def _clip(value: Any, chars: int = 60) -> str:
    text = json.dumps(value)
    return text if len(text) <= chars else f"{text[:chars]}..."


def _check_data_shape(dataset: str, shape: tuple[int, ...], source: str) -> None:
    """The data set must be known and its images of the model's shape."""
    expected = tuple(DATASETS[dataset].shape)
    if shape != expected:
        raise GenbenchError(f"{source}: data set {dataset!r} has shape {list(expected)}, the model expects "
                            f"{list(shape)}")


def read_safetensors_header(path: Path, what: str = "safetensors file"
                            ) -> tuple[dict[str, str], dict[str, TensorSpec]]:
    """(metadata, tensor specs) of a safetensors file, read from its header: no tensor is loaded."""
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            dtypes = {key: f.get_slice(key).get_dtype() for key in f.keys()}
            shapes = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise GenbenchError(f"{path}: not a readable {what} ({_first_line(exc)})") from None
    unknown = sorted(k for k, dtype in dtypes.items() if dtype not in SAFETENSORS_DTYPES)
    if unknown:
        raise GenbenchError(f"{path}: tensor {unknown[0]!r} has dtype {dtypes[unknown[0]]}, which torch "
                            "cannot hold")
    return metadata, {key: TensorSpec(shapes[key], SAFETENSORS_DTYPES[dtypes[key]]) for key in dtypes}


def read_safetensors(path: Path, keys: dict[str, str]) -> dict[str, Tensor]:
    """The tensors ``keys`` names (file key -> state key) of a safetensors file, only those."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return {state_key: f.get_tensor(file_key) for file_key, state_key in keys.items()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise GenbenchError(f"{path}: unreadable tensors ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _model_keys(names, plain: bool) -> dict[str, str]:
    """File key -> state key: a genbench checkpoint's ``model.*`` tensors (it also holds the
    optimizer's); with ``plain``, where there are none, every tensor (a plain state dict)."""
    prefixed = {name: name[len("model."):] for name in names if name.startswith("model.")}
    return prefixed or ({name: name for name in names} if plain else {})


#: the reason in torch's weights-only refusal, without the advice around it (to load the file unsafely)
_UNPICKLER_REFUSAL = re.compile(r"WeightsUnpickler error: (.*?)(?: Please use|$)", re.M)


def _refusal(exc: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in its own words but never its advice to
    set ``weights_only=False``, which would run the code the file carries."""
    found = _UNPICKLER_REFUSAL.search(str(exc))
    if found:
        return found.group(1).strip()
    first = _first_line(exc)
    return type(exc).__name__ if "weights_only" in first or "can still be loaded" in first else first


#: where training scripts commonly keep the state dict inside a saved dict, in the order looked for
STATE_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "module", "weights")


def read_torch_state_dict(path: Path, state_key: str | None = None) -> dict[str, Tensor]:
    """A state dict from a ``.pt``/``.pth`` file (zip or legacy format) via ``torch.load(weights_only=True)``
    only, once ``check_torch_file`` has bounded what it can allocate: the file's dict of tensors,
    the one under ``state_key``, else the one found under a common key (``STATE_KEYS``); dense
    tensors only (``check_dense``). torch's warnings while loading (a quantized tensor's) are its own."""
    check_torch_file(path, "torch state dict")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise GenbenchError(f"{path}: refused, not a weights-only state dict ({_refusal(exc)}); genbench "
                            "never unpickles code") from None
    state = _nested_state(obj, state_key, path)
    check_dense(state, str(path))
    return state


def _is_state(obj: Any) -> bool:
    return isinstance(obj, dict) and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())


def _nested_state(obj: Any, state_key: str | None, path: Path) -> dict[str, Tensor]:
    """The state dict in what ``torch.load`` gave: itself, ``obj[state_key]``, or the first of
    ``STATE_KEYS`` (then the only value) that is a dict of tensors; anything else is one line."""
    if state_key is not None:
        if not isinstance(obj, dict) or state_key not in obj:
            keys = ", ".join(map(repr, obj)) if isinstance(obj, dict) else "none: not a dict"
            raise GenbenchError(f"{path}: no {state_key!r} in the file (--state-key); its keys: {keys}")
        if not _is_state(obj[state_key]):
            raise GenbenchError(f"{path}: {state_key!r} is not a dict of tensors (a state dict)")
        return obj[state_key]
    if _is_state(obj) and obj:
        return obj
    if isinstance(obj, dict):
        found = [obj[key] for key in STATE_KEYS if _is_state(obj.get(key)) and obj[key]]
        nested = [value for value in obj.values() if _is_state(value) and value]
        if found or len(nested) == 1:
            return (found or nested)[0]
        if nested:
            raise GenbenchError(f"{path}: several dicts of tensors in the file; name one with --state-key "
                                f"(its keys: {', '.join(map(repr, obj))})")
    raise GenbenchError(f"{path}: refused, expected a dict of tensors (a state dict)")


def _checked_model(entry: ModelEntry, values: dict[str, Any], shape: tuple[int, ...],
                   specs: dict[str, TensorSpec], read: Callable[[], dict[str, Tensor]], source: str):
    """The model of ``entry`` with ``values`` for its hyperparameters, loaded with the tensors
    ``read()`` gives once their ``specs`` fit it: checked on the meta device before any allocation."""
    config = entry.make_config(values)
    skeleton = entry.skeleton(config, shape)
    expected = model_specs(skeleton)
    check_state_specs(expected, specs, source, type(skeleton).__name__)
    state = finite_state(read(), expected, source)
    model = entry.model_cls(config, shape)
    model.load_state_dict(state)
    return model.eval(), config


def load_for_scoring(path: Path, model_name: str | None, overrides: dict[str, str],
                     dataset: str | None) -> LoadedModel:
    """A genbench checkpoint (a run directory or its file), or with ``model_name`` a foreign state
    dict (``.safetensors``, ``.pt``/``.pth``) of that model, ready to score on ``dataset``."""
    path = Path(path)
    if not path.exists():
        raise GenbenchError(f"no file or directory at {path}")
    if model_name is None:
        return _load_checkpoint(path, overrides, dataset)
    entry = MODELS[model_name]
    dataset = dataset or FOREIGN_DATASET
    shape = tuple(DATASETS[dataset].shape)
    if path.suffix == ".safetensors":
        _, specs = read_safetensors_header(path)
        keys = _model_keys(specs, plain=True)
        specs = {keys[name]: spec for name, spec in specs.items() if name in keys}
        read = functools.partial(read_safetensors, path, keys)
    else:
        state = read_torch_state_dict(path)
        specs, read = {k: spec_of(v) for k, v in state.items()}, state.copy
    model, config = _checked_model(entry, overrides, shape, specs, read, str(path))
    return LoadedModel(model, model_name, config_dict(config), dataset, shape)


def _load_checkpoint(path: Path, overrides: dict[str, str], dataset: str | None) -> LoadedModel:
    if path.suffix in (".pt", ".pth"):
        raise GenbenchError(f"{path}: a foreign state dict needs --model NAME (and --set "
                            "KEY=VALUE for its hyperparameters)")
    if overrides:
        raise GenbenchError("--set applies only with --model (a genbench checkpoint "
                            "carries its hyperparameters)")
    file = path / ckpt.FILENAME if path.is_dir() else path
    if not file.is_file():
        raise GenbenchError(f"no checkpoint at {file}")
    metadata, specs = read_safetensors_header(file, "safetensors checkpoint")
    if ckpt.META_KEY not in metadata:
        raise GenbenchError(f"{file}: a safetensors file without genbench metadata (foreign "
                            "weights: use --model NAME to load it as a state dict)")
    meta = validate_checkpoint_meta(metadata[ckpt.META_KEY], str(file))
    if dataset is not None:
        _check_data_shape(dataset, meta.data_shape, str(file))
    keys = _model_keys(specs, plain=False)
    model_state = {keys[name]: spec for name, spec in specs.items() if name in keys}
    model, _ = _checked_model(MODELS[meta.model], meta.config, meta.data_shape, model_state,
                              functools.partial(read_safetensors, file, keys), str(file))
    return LoadedModel(model, meta.model, meta.config, dataset or meta.dataset, meta.data_shape,
                       read_evaluation(path))


#: the numeric EvalSettings fields a flag sets, each held to the range a suite's budget is
#: (``genbench.suites.RANGES``); a run's recorded values are checked against them too
NUMERIC_SETTINGS = ("k", "n_test", "quality_samples", "quality_reference", "ais_steps", "ais_chains",
                    "ais_points", "ais_sigma_points", "ais_bdmc_points", "memorization_train",
                    "nll_gap_points", "ode_points", "ode_tolerance")
#: ``genbench score`` flags that override the budget's EvalSettings field of the same name
SETTINGS_FLAGS = ("k", "n_test", "features", "quality_samples", "quality_reference", "quality_split",
                  "ais_steps", "ais_chains", "ais_points", "ais_bdmc_points", "memorization_train",
                  "nll_gap_points", "ode_points", "ode_tolerance")


@dataclass(frozen=True)
class SettingsRequest:
    """What a scored checkpoint's evaluation settings come from: a budget (None: the run's recorded
    settings, else short), the ``SETTINGS_FLAGS`` given (``overrides``) and the most model samples
    that may be drawn."""

    budget: str | None
    overrides: dict[str, Any]
    max_samples: int = DEFAULT_MAX_SAMPLES
    protocol: str | None = None
    """The FID protocol named (``genbench.metrics.fid_protocols``): its settings are in ``overrides``,
    and the scores record its name."""

    def value(self, name: str) -> Any:
        """A setting as given, else EvalSettings' default (for scores without a budget: sample sets)."""
        return self.overrides.get(name, getattr(EvalSettings, name))


def settings_for(loaded: LoadedModel, request: SettingsRequest, data_root: str | None
                 ) -> tuple[EvalSettings, str]:
    """The evaluation settings of a loaded checkpoint and where they came from: its run's recorded
    ones unless a budget is named (else short), with the overrides on top; recorded values are
    checked as the flags are (``NUMERIC_SETTINGS``)."""
    from genbench.suites import BUDGET_DEFAULTS

    if request.budget is not None and request.budget not in BUDGET_DEFAULTS:
        raise GenbenchError(f"unknown budget {request.budget!r}; valid: {', '.join(BUDGET_DEFAULTS)}")
    if request.budget is None and loaded.evaluation is not None:  # the run's own settings: its row again
        base, source = EvalSettings(**_checked_recorded(loaded.evaluation)), "the run's"
    else:
        budget = request.budget or "short"
        base, source = BUDGET_DEFAULTS[budget].eval, f"budget {budget}"
    settings = replace(base, **request.overrides, cache_root=data_root)
    if settings.quality_samples > request.max_samples:
        raise GenbenchError(f"{settings.quality_samples:,} model samples asked for, over the limit of "
                            f"{request.max_samples:,} (--max-samples)")
    if settings.ais_bdmc_points and not settings.ais_steps:
        raise GenbenchError("BDMC runs at AIS's steps and chains, and these settings have no AIS: give "
                            "--ais-steps T too")
    return settings, source


def _checked_recorded(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The EvalSettings fields of a run's recorded settings, each numeric one in its flag's range."""
    from genbench.suites import RANGES

    known = {f.name for f in fields(EvalSettings)}
    recorded = {k: v for k, v in evaluation.items() if k in known}
    for name in NUMERIC_SETTINGS:
        if recorded.get(name) is not None:
            try:  # an int as its digits; anything else (40.5, true, "5") as its repr, which no int parses
                value = recorded[name]
                RANGES[name].parse(str(value) if type(value) is int else repr(value))
            except ValueError as exc:
                raise GenbenchError(f"the run's recorded evaluation settings: {name} {exc}") from None
    return recorded


@dataclass(frozen=True)
class ScoreReport:
    """What ``genbench score`` measured, and of what: a checkpoint (``kind``), a sample set
    (``samples``) or a generator's samples (``generator``) at ``path``. ``as_json`` is its JSON form,
    key for key what ``--json`` has always printed; ``header`` the first line of its text form."""

    kind: str
    path: str
    model: str
    """The zoo model or the user's class scored; ``kind`` for sample sets and generators."""
    reference: str
    """What was scored, named for the results table where no --model-code names it."""
    dataset: str
    metrics: dict[str, float]
    settings: dict[str, Any]
    """The evaluation settings of the numbers, as EvalSettings names them (recorded with them)."""
    header: str
    lead: dict[str, Any]
    """Its JSON fields between ``kind`` and ``dataset``."""
    detail: dict[str, Any]
    """Its JSON fields between ``dataset`` and ``metrics``."""
    config: dict[str, Any] = field(default_factory=dict)
    not_applicable: dict[str, str] | None = None
    """Why a metric of the user's model is absent (None: not the user's code)."""
    recorded: dict[str, str] | None = None
    """Where ``--name`` recorded it (None: not recorded)."""

    def as_json(self) -> dict[str, Any]:
        optional = {"not_applicable": self.not_applicable, "recorded": self.recorded}
        return {self.kind: self.path, **self.lead, "dataset": self.dataset, **self.detail,
                "metrics": self.metrics, **{k: v for k, v in optional.items() if v is not None}}
