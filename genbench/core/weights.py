"""Weights on disk: safetensors written atomically, read without ever unpickling.

``atomic_write`` is the one way genbench replaces a file (checkpoints, cached feature
networks, cached features, their JSON records): the new content goes to a temporary file
beside it, named by the process id so concurrent writers never share one, and replaces the
old file in one ``os.replace``. A crash leaves the previous file intact.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from genbench.core.errors import GenbenchError


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` into a temporary file beside ``path``, then replace ``path`` with it."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def state_tensors(model: nn.Module, prefix: str = "") -> dict[str, Tensor]:
    """The model's state dict as contiguous CPU tensors (what safetensors stores)."""
    return {f"{prefix}{k}": v.detach().contiguous().cpu().clone() for k, v in model.state_dict().items()}


def save_tensors(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str] | None = None) -> None:
    """A safetensors file of ``tensors``, replaced atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    contiguous = {k: v.contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(contiguous, str(tmp), metadata=metadata))


def save_weights(path: Path, model: nn.Module) -> None:
    """Model weights only, as a plain safetensors file, replaced atomically."""
    save_tensors(path, state_tensors(model))


def read_weights(path: Path) -> dict[str, Tensor]:
    """The tensors of a safetensors file, or one clear error."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise GenbenchError(f"{path}: not a readable safetensors file ({exc})") from None


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
