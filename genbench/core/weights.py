"""Weights on disk: safetensors written atomically, read without ever unpickling.

``atomic_write`` is the one way genbench replaces a file (checkpoints, cached feature
networks, cached features, their JSON records, leaderboards): the new content goes to a
temporary file of a unique name beside it (created exclusively, so concurrent writers, threads
or processes, never share one), is flushed to disk, and replaces the old file in one
``os.replace``, whose directory entry is flushed too. A crash leaves the previous file intact;
a failed write leaves no temporary file behind.

A killed writer cannot remove its temporary file, so the next ``atomic_write`` into the same folder
does (``remove_stale_temporaries``). A live writer holds an ``flock`` on its temporary file from
creation to replacement, and only an unlocked one is removed: no age threshold, so a slow writer
(a sweep's worker filling a shared cache) never loses its file. Every file is created with the
permissions the user's umask gives (``0666 & ~umask``), so teammates read checkpoints and caches
as they read the rest.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import Tensor, nn

from genbench.core.errors import GenbenchError
from genbench.core.state_specs import check_state_specs, model_specs, spec_of

#: the name of ``atomic_write``'s temporary files: ``.{target's name}.{16 hex digits}.tmp``
TEMPORARY_NAME = re.compile(r"\..+\.[0-9a-f]{16}\.tmp")


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` into a temporary file of a unique name beside ``path``, flush it to disk,
    then replace ``path`` with it; on any failure the temporary file is removed. ``write`` writes
    into the file it is given (it must not replace it: the lock is on that file); stale temporary
    files of killed writers in the folder are removed first."""
    path = Path(path)
    remove_stale_temporaries(path.parent)
    fd, tmp = _new_temporary(path)
    try:
        mode = os.fstat(fd).st_mode & 0o777  # what the umask gave: kept whatever ``write`` does
        write(tmp)
        os.chmod(tmp, mode)
        _fsync(tmp, os.O_RDWR)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)  # releases the lock, once the file is in place (or gone)
    _fsync(path.parent, getattr(os, "O_DIRECTORY", None))


def _new_temporary(path: Path) -> tuple[int, Path]:
    """A new empty file beside ``path`` whose random name no other writer holds (created with
    O_EXCL and ``0666 & ~umask``, unlike ``tempfile.mkstemp``'s 0600), and a descriptor that holds
    its lock. A sweeper that removed it between its creation and the lock is seen (the name no
    longer leads to it), and another name is taken."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        _lock(fd, fcntl.LOCK_EX)
        if _names(fd, tmp):
            return fd, tmp
        os.close(fd)


def _lock(fd: int, how: int) -> bool:
    """Whether the flock ``how`` was taken on ``fd``; False where it is held elsewhere (with
    LOCK_NB) or the file system has no locks (then nothing is ever swept: nothing is known stale)."""
    try:
        fcntl.flock(fd, how)
    except OSError:
        return False
    return True


def _names(fd: int, path: Path) -> bool:
    """Whether ``path`` still leads to the open file ``fd``."""
    try:
        here, there = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files of ``atomic_write`` in ``folder`` that no live writer holds (those
    of writers that were killed); return them. Other files, and a folder genbench may not write in,
    are left as they are."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return [Path(folder) / name for name in names
            if TEMPORARY_NAME.fullmatch(name) and _remove_if_unlocked(Path(folder) / name)]


def _remove_if_unlocked(tmp: Path) -> bool:
    """Remove ``tmp`` if nobody holds its lock (opened without following a link or blocking on a
    special file); whether it was removed."""
    try:
        fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        if not (_lock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB) and _names(fd, tmp)):
            return False
        tmp.unlink()
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


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
    # serialized here and written into atomic_write's file: safetensors' save_file writes a 0600
    # file of its own and renames it over the one it is given
    atomic_write(path, lambda tmp: tmp.write_bytes(save(contiguous, metadata=metadata)))


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
