"""Checkpoints: safetensors weights + a JSON config, written atomically, never unpickled.

One file ``checkpoint.safetensors`` holds the model's tensors (``model.*``), the optimizer
state for resuming (``optim.*``) and, as safetensors metadata, the JSON config (model,
hyperparameters, data set, seed, step, genbench version, git commit). A readable copy of
that JSON sits beside it as ``checkpoint.json``. Writing goes to a temporary file that
replaces the old one (``genbench.core.weights``), so a crash leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import Tensor, nn

import genbench
from genbench.core.errors import GenbenchError
from genbench.core.weights import atomic_write, save_tensors, state_tensors

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
    tensors = state_tensors(model, prefix="model.")
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
    save_tensors(path, tensors, metadata)
    atomic_write(run_dir / "checkpoint.json",
                 lambda tmp: tmp.write_text(json.dumps(meta, indent=2, sort_keys=True)))
    return path


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
