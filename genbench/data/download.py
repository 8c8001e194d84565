"""Canonical downloads with checksums, and the one clear error when files are missing."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path

from genbench.core.errors import GenbenchError


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
        # a name of its own: two processes fetching the same file never write into one
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.part")
        try:
            _fetch(spec, path, tmp, dataset)
        except Exception as exc:  # offline, HTTP error, read-only root ...
            if isinstance(exc, GenbenchError):
                raise
            raise missing_files_error(
                dataset, root, [f.relpath for f, _ in missing], f"download failed: {exc}"
            ) from None
        finally:
            tmp.unlink(missing_ok=True)
    return paths


def _fetch(spec: RemoteFile, path: Path, tmp: Path, dataset: str) -> None:
    """Download ``spec`` into ``tmp`` and, if its checksum matches, move it to ``path``."""
    from torchvision.datasets.utils import download_url  # imported when used: torchvision takes ~1 s

    path.parent.mkdir(parents=True, exist_ok=True)
    download_url(spec.url, str(tmp.parent), filename=tmp.name)
    if not verify(tmp, spec):
        raise GenbenchError(f"data set {dataset!r}: checksum mismatch for {spec.url}; refused")
    tmp.replace(path)
