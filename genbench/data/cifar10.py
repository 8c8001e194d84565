"""CIFAR-10 through torchvision: 32x32 color images as 8-bit levels (``cifar10``)."""

from __future__ import annotations

from pathlib import Path

import torch

from genbench.core.errors import GenbenchError
from genbench.data.base import ImageDataset
from genbench.data.download import folders_removed_on_failure, missing_files_error

FOLDER = "cifar-10-batches-py"  # torchvision's CIFAR10.base_folder
RAW_FILES = [f"{FOLDER}/{name}" for name in (
    *(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")]


def read_cifar10(root: Path, download: bool) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """uint8 images ``[N, 3, 32, 32]`` (R, G, B) and labels for train (50000) and test (10000).

    torchvision downloads the archive from its canonical URL, checks its md5 and unpacks it
    under ``root``; files already there are md5-checked and only read. The batches are
    Python pickles, the data set's own published format, which torchvision unpickles
    (genbench's never-unpickle rule is about checkpoints, which can carry code).
    """
    from torchvision.datasets import CIFAR10  # imported when used: torchvision takes ~1 s

    out = {}
    for split, train in (("train", True), ("test", False)):
        try:
            with folders_removed_on_failure(root / FOLDER):
                ds = CIFAR10(str(root), train=train, download=download)
        except Exception as exc:
            raise _unreadable(root, download, exc) from None
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # HWC -> CHW
        out[split] = (images, torch.tensor(ds.targets, dtype=torch.long))
    return out


def _unreadable(root: Path, download: bool, exc: Exception) -> GenbenchError:
    """Missing files name themselves; present ones failing torchvision's md5s are refused."""
    missing = [f for f in RAW_FILES if not (root / f).exists()]
    if download:
        return missing_files_error("cifar10", root, missing or RAW_FILES, f"download failed: {exc}")
    if missing:
        return missing_files_error("cifar10", root, missing, "download disabled")
    return GenbenchError(f"data set 'cifar10': the files under {root / FOLDER} do not match "
                         f"torchvision's md5 checksums of CIFAR-10 (corrupt or not CIFAR-10's)")


def load_cifar10(root: Path, download: bool) -> ImageDataset:
    raw = read_cifar10(root, download)
    return ImageDataset(
        name="cifar10",
        kind="rgb8",
        splits={"train": raw["train"][0], "test": raw["test"][0]},
        labels={"train": raw["train"][1], "test": raw["test"][1]},
        description="CIFAR-10 (Krizhevsky 2009), 32x32 color, 8-bit levels as pixel/255 in [0, 1]",
        source="torchvision.datasets.CIFAR10",
    )
