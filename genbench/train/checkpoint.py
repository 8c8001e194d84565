"""Checkpoints: safetensors weights + a JSON config, written atomically, never unpickled.

One file ``checkpoint.safetensors`` holds the model's tensors (``model.*``), the optimizer
state for resuming (``optim.*``) and, as safetensors metadata, the JSON config (model,
hyperparameters, data set, seed, step, genbench version, git commit). A readable copy of
that JSON sits beside it as ``checkpoint.json``. Writing goes to a temporary file that
replaces the old one, so a crash leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

import genbench
from genbench.errors import GenbenchError

FORMAT = "genbench-checkpoint"
FORMAT_VERSION = 1
FILENAME = "checkpoint.safetensors"
META_KEY = "genbench"


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(genbench.__file__).parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _split_tensors(obj: Any, prefix: str, tensors: dict[str, Tensor]) -> Any:
    """Replace every tensor in a nested structure by a reference; collect the tensors."""
    if isinstance(obj, Tensor):
        tensors[prefix] = obj.detach().contiguous().cpu().clone()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {str(k): _split_tensors(v, f"{prefix}.{k}", tensors) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_split_tensors(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    return obj


def _join_tensors(obj: Any, tensors: dict[str, Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        return {k: _join_tensors(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join_tensors(v, tensors) for v in obj]
    return obj


def save_checkpoint(run_dir: Path, model: nn.Module, meta: dict[str, Any],
                    optimizers: dict[str, torch.optim.Optimizer] | None = None) -> Path:
    """Write ``run_dir/checkpoint.safetensors`` (+ ``checkpoint.json``) atomically."""
    run_dir.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().contiguous().cpu().clone()
               for k, v in model.state_dict().items()}
    optim_skeleton = {name: _split_tensors(opt.state_dict(), f"optim.{name}", tensors)
                      for name, opt in (optimizers or {}).items()}
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "genbench_version": genbench.__version__,
        "git_commit": git_commit(),
        **meta,
    }
    metadata = {META_KEY: json.dumps(meta), "optimizers": json.dumps(optim_skeleton)}
    path = run_dir / FILENAME
    _atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    _atomic_write(run_dir / "checkpoint.json",
                  lambda tmp: tmp.write_text(json.dumps(meta, indent=2, sort_keys=True)))
    return path


def save_weights(path: Path, model: nn.Module) -> None:
    """Model weights only, as a plain safetensors file, replaced atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu().clone() for k, v in model.state_dict().items()}
    _atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))


def read_weights(path: Path) -> dict[str, Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise GenbenchError(f"{path}: not a readable safetensors file ({exc})") from None


def read_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, Tensor], dict[str, Any]]:
    """(config, tensors, optimizer skeleton) of a genbench checkpoint, or one clear error."""
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    if not path.exists():
        raise GenbenchError(f"no checkpoint at {path}")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise GenbenchError(f"{path}: not a readable safetensors checkpoint ({exc})") from None
    if META_KEY not in metadata:
        raise GenbenchError(f"{path}: a safetensors file without genbench metadata (foreign "
                            "weights: use --model NAME to load it as a state dict)")
    try:
        meta = json.loads(metadata[META_KEY])
        optim = json.loads(metadata.get("optimizers", "{}"))
    except json.JSONDecodeError:
        raise GenbenchError(f"{path}: corrupt genbench metadata") from None
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise GenbenchError(f"{path}: unsupported checkpoint format {meta.get('format')!r} "
                            f"version {meta.get('format_version')!r}")
    return meta, tensors, optim


def model_state(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}


def restore_optimizers(optimizers: dict[str, torch.optim.Optimizer],
                       skeleton: dict[str, Any], tensors: dict[str, Tensor]) -> None:
    for name, opt in optimizers.items():
        if name not in skeleton:
            raise GenbenchError(f"checkpoint has no state for optimizer {name!r}")
        state = _join_tensors(skeleton[name], tensors)
        state["state"] = {int(k): v for k, v in state["state"].items()}
        opt.load_state_dict(state)


def load_state_dict_checked(model: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """Load weights strictly; a missing/extra key or wrong shape is one line naming the key."""
    expected = model.state_dict()
    for key in expected:
        if key not in state:
            raise GenbenchError(f"{source}: missing key {key!r} for {type(model).__name__}")
    for key, value in state.items():
        if key not in expected:
            raise GenbenchError(f"{source}: unexpected key {key!r} for {type(model).__name__}")
        if not isinstance(value, Tensor):
            raise GenbenchError(f"{source}: key {key!r} is not a tensor")
        if tuple(value.shape) != tuple(expected[key].shape):
            raise GenbenchError(f"{source}: key {key!r} has shape {list(value.shape)}, "
                                f"the model expects {list(expected[key].shape)}")
    model.load_state_dict(state)


def load_foreign_state_dict(path: Path) -> dict[str, Tensor]:
    """A plain ``.pt``/``.pth`` state dict via ``torch.load(weights_only=True)`` only."""
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise GenbenchError(f"no file at {path}") from None
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GenbenchError(f"{path}: refused, not a weights-only state dict ({first})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise GenbenchError(f"{path}: refused, expected a dict of tensors (a state dict)")
    return obj
