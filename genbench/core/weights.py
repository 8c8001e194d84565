"""Weights on disk: safetensors written atomically, read without ever unpickling.

``atomic_write`` is the one way genbench replaces a file (checkpoints, cached feature
networks, cached features, their JSON records, leaderboards): the new content goes to a
temporary file of a unique name beside it (created exclusively, so concurrent writers, threads
or processes, never share one), is flushed to disk, and replaces the old file in one
``os.replace``, whose directory entry is flushed too. A crash leaves the previous file intact;
a failed write leaves no temporary file behind.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from genbench.core.errors import GenbenchError
from genbench.core.state_specs import check_state_specs, model_specs, spec_of


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` into a temporary file of a unique name beside ``path``, flush it to disk,
    then replace ``path`` with it; on any failure the temporary file is removed."""
    path = Path(path)
    tmp = _new_temporary(path)
    try:
        write(tmp)
        _fsync(tmp, os.O_RDWR)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent, getattr(os, "O_DIRECTORY", None))


def _new_temporary(path: Path) -> Path:
    """An empty file beside ``path`` whose random name no other writer holds (created with
    O_EXCL; unlike ``tempfile.mkstemp``'s 0600, its permissions are what the umask gives)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def _fsync(path: Path, flags: int | None) -> None:
    """Flush a file (or, with O_DIRECTORY, a directory's entries) to disk; a system that cannot
    open directories (``flags`` None) has no directory to flush."""
    if flags is None:
        return
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
    """Load weights strictly; a missing/extra key, a wrong shape or kind of number is one line
    naming the key (``check_state_specs``, the one comparison)."""
    for key, value in state.items():
        if not isinstance(value, Tensor):
            raise GenbenchError(f"{source}: key {key!r} is not a tensor")
    check_state_specs(model_specs(model), {key: spec_of(value) for key, value in state.items()}, source,
                      type(model).__name__)
    model.load_state_dict(state)


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks (weights, checkpoints, feature networks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
