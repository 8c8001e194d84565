"""Data sets: a registry of names -> loaders, and ``load_dataset``.

Each loader takes ``(root, download)`` and returns an :class:`ImageDataset`; files come
from their canonical URLs with checksums, and missing files give one clear error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from genbench.core.registry import Registry
from genbench.data.base import ImageDataset
from genbench.data.binarized_mnist import load_binarized_mnist
from genbench.data.cifar10 import load_cifar10
from genbench.data.dsprites import load_dsprites, load_dsprites_rendered
from genbench.data.fashion_mnist import load_fashion_mnist, load_fashion_mnist_binary
from genbench.data.mnist import load_dynamic_mnist, load_mnist8
from genbench.data.omniglot import load_omniglot
from genbench.data.root import data_root
from genbench.data.toy import load_toy


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    summary: str
    #: shape of one item, known without loading the files
    shape: tuple[int, ...]
    loader: Callable[[Path, bool], ImageDataset]
    #: items per split, known without loading the files (a table's finite-population correction);
    #: a split not named here is of unknown size
    split_sizes: dict[str, int] = field(default_factory=dict)


DATASETS: Registry[DatasetSpec] = Registry("dataset")
for _spec in (
    DatasetSpec("mnist", "MNIST dynamically binarized (IWAE paper)", (1, 28, 28), load_dynamic_mnist,
                {"train": 60000, "test": 10000}),
    DatasetSpec("binarized_mnist", "MNIST statically binarized (Larochelle & Murray)", (1, 28, 28),
                load_binarized_mnist, {"train": 50000, "valid": 10000, "test": 10000}),
    DatasetSpec("mnist8", "MNIST 8-bit gray levels", (1, 28, 28), load_mnist8,
                {"train": 60000, "test": 10000}),
    DatasetSpec("fashion_mnist", "Fashion-MNIST 8-bit gray levels (Xiao et al. 2017)", (1, 28, 28),
                load_fashion_mnist, {"train": 60000, "test": 10000}),
    DatasetSpec("fashion_mnist_binary", "Fashion-MNIST dynamically binarized (as mnist)", (1, 28, 28),
                load_fashion_mnist_binary, {"train": 60000, "test": 10000}),
    DatasetSpec("toy", "synthetic 8x8 binary images (no files)", (1, 8, 8), load_toy,
                {"train": 2000, "valid": 500, "test": 500}),
    DatasetSpec("omniglot", "Omniglot 28x28 dynamically binarized (Burda et al.)", (1, 28, 28),
                load_omniglot, {"train": 24345, "test": 8070}),
    DatasetSpec("dsprites", "dSprites, DeepMind's file (ground-truth factors)", (1, 64, 64), load_dsprites,
                {"train": 737280, "test": 10000}),
    DatasetSpec("dsprites_rendered", "dSprites grid re-rendered by genbench (no files; not DeepMind's)",
                (1, 64, 64), load_dsprites_rendered, {"train": 737280, "test": 10000}),
    DatasetSpec("cifar10", "CIFAR-10 32x32 color, 8-bit levels (Krizhevsky 2009)", (3, 32, 32), load_cifar10,
                {"train": 50000, "test": 10000}),
):
    DATASETS.register(_spec.name, _spec)


def load_dataset(
    name: str,
    root: str | Path | None = None,
    device: torch.device | str = "cpu",
    download: bool = True,
) -> ImageDataset:
    """The data set ``name`` with every split on ``device``."""
    spec = DATASETS[name]
    return spec.loader(data_root(root), download).to(device)


__all__ = ["DATASETS", "DatasetSpec", "ImageDataset", "data_root", "load_dataset"]
