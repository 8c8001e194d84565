"""Canonical downloads with checksums, and the one clear error when files are missing.

A download writes through ``atomic_write`` (a locked temporary file, replaced once its checksum
matches), and a failed one leaves nothing it created: no partial file, no empty folder
(``folders_removed_on_failure``, which the torchvision data sets use too).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from genbench.core.errors import GenbenchError
from genbench.core.weights import atomic_write

#: seconds a download waits for the server to answer (connecting, or between two reads)
TIMEOUT = 60


@dataclass(frozen=True)
class RemoteFile:
    """A file of a data set: where it goes under the data root, its URL and checksum."""

    relpath: str
    url: str
    sha1: str | None = None
    md5: str | None = None


def file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path: Path, spec: RemoteFile) -> bool:
    if spec.md5 and file_digest(path, "md5") != spec.md5:
        return False
    if spec.sha1 and file_digest(path, "sha1") != spec.sha1:
        return False
    return True


def missing_files_error(dataset: str, root: Path, files: list[str], reason: str = "") -> GenbenchError:
    names = ", ".join(files)
    why = f" ({reason})" if reason else ""
    return GenbenchError(
        f"data set {dataset!r}: missing {names} under {root}{why}; download them "
        f"(genbench fetches them when online) or put them there, or point --data-root / "
        f"GENBENCH_DATA at a folder that has them"
    )


def ensure_files(dataset: str, root: Path, files: list[RemoteFile], download: bool) -> list[Path]:
    """Paths of ``files`` under ``root``, downloading and checksumming the missing ones.

    Files already present are accepted as they are (the loader validates their content);
    a freshly downloaded file must match its checksum or it is deleted and refused.
    """
    paths = [root / f.relpath for f in files]
    missing = [(f, p) for f, p in zip(files, paths, strict=True) if not p.exists()]
    if not missing:
        return paths
    if not download:
        raise missing_files_error(dataset, root, [f.relpath for f, _ in missing], "download disabled")
    for spec, path in missing:
        try:
            with folders_removed_on_failure(path.parent):
                _fetch(spec, path, dataset)
        except Exception as exc:  # offline, HTTP error, read-only root ...
            if isinstance(exc, GenbenchError):
                raise
            raise missing_files_error(
                dataset, root, [f.relpath for f, _ in missing], f"download failed: {exc}"
            ) from None
    return paths


def _fetch(spec: RemoteFile, path: Path, dataset: str) -> None:
    """Download ``spec`` to ``path`` (atomically), refused unless its checksum matches."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: _download_checked(spec, tmp, dataset))


def _download_checked(spec: RemoteFile, tmp: Path, dataset: str) -> None:
    """Write the file at ``spec.url`` into ``tmp``; a checksum mismatch is one error."""
    request = urllib.request.Request(spec.url, headers={"User-Agent": "genbench"})
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response, open(tmp, "wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)
    if not verify(tmp, spec):
        raise GenbenchError(f"data set {dataset!r}: checksum mismatch for {spec.url}; refused")


@contextmanager
def folders_removed_on_failure(folder: Path) -> Iterator[None]:
    """Run the body (a download into ``folder``, which it may create); if it fails, remove the folders
    that did not exist before it and are left empty, ``folder``'s missing parents included. A folder
    holding a file (another process's download, a file that did arrive) is kept."""
    created = _topmost_missing(Path(folder))
    try:
        yield
    except BaseException:
        if created is not None:
            _remove_empty_folders(created)
        raise


def _topmost_missing(folder: Path) -> Path | None:
    """The outermost of ``folder`` and its parents that does not exist (None: ``folder`` exists)."""
    missing = None
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        missing = candidate
    return missing


def _remove_empty_folders(top: Path) -> None:
    """Remove ``top`` and the folders below it, deepest first, where they are empty."""
    for here, _, _ in os.walk(top, topdown=False):
        try:
            os.rmdir(here)
        except OSError:
            continue
