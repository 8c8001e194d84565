"""MNIST through torchvision: dynamically binarized (``mnist``) and 8-bit gray (``mnist8``)."""

from __future__ import annotations

from pathlib import Path

import torch

from genbench.core.errors import GenbenchError
from genbench.data.base import EVAL_BINARIZATION_SEED, ImageDataset, binarize_once
from genbench.data.download import folders_removed_on_failure, missing_files_error

RAW_FILES = [
    "MNIST/raw/train-images-idx3-ubyte",
    "MNIST/raw/train-labels-idx1-ubyte",
    "MNIST/raw/t10k-images-idx3-ubyte",
    "MNIST/raw/t10k-labels-idx1-ubyte",
]


def read_mnist(root: Path, download: bool) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """uint8 images ``[N, 1, 28, 28]`` and labels for train and test.

    torchvision downloads from its canonical mirrors and checks its md5s; with the files
    already under ``root/MNIST/raw`` it only reads them (nothing is written).
    """
    from torchvision.datasets import MNIST  # imported when used: torchvision takes ~1 s

    out = {}
    for split, train in (("train", True), ("test", False)):
        try:
            with folders_removed_on_failure(root / "MNIST" / "raw"):
                ds = MNIST(str(root), train=train, download=download)
        except Exception as exc:
            reason = "download disabled" if not download else f"download failed: {exc}"
            raise missing_files_error("mnist", root, RAW_FILES, reason) from None
        images = ds.data.unsqueeze(1).contiguous()
        if images.dtype != torch.uint8 or images.shape[1:] != (1, 28, 28):
            raise GenbenchError(f"MNIST files under {root} are not 28x28 uint8 images")
        out[split] = (images, ds.targets.clone())
    return out


def load_dynamic_mnist(root: Path, download: bool) -> ImageDataset:
    raw = read_mnist(root, download)
    return ImageDataset(
        name="mnist",
        kind="binary",
        splits={
            "train": raw["train"][0],
            "test": binarize_once(raw["test"][0], EVAL_BINARIZATION_SEED),
        },
        labels={"train": raw["train"][1], "test": raw["test"][1]},
        dynamic_binarization=True,
        feature_source="mnist8",
        description="MNIST, dynamically binarized (Burda et al. 2015): train re-sampled per "
        f"batch, test binarized once (seed {EVAL_BINARIZATION_SEED})",
        source="torchvision.datasets.MNIST",
    )


def load_mnist8(root: Path, download: bool) -> ImageDataset:
    raw = read_mnist(root, download)
    return ImageDataset(
        name="mnist8",
        kind="gray8",
        splits={"train": raw["train"][0], "test": raw["test"][0]},
        labels={"train": raw["train"][1], "test": raw["test"][1]},
        feature_source="mnist8",
        description="MNIST, 8-bit gray levels as pixel/255 in [0, 1]",
        source="torchvision.datasets.MNIST",
    )
