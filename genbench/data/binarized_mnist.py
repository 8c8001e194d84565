"""Statically binarized MNIST of Larochelle & Murray (2011): 50000/10000/10000 .amat rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genbench.core.errors import GenbenchError
from genbench.data.base import ImageDataset
from genbench.data.download import RemoteFile, ensure_files

BASE_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"

#: SHA-1 of the canonical files as recorded by an independent public download of them.
FILES = {
    "train": RemoteFile("binarized_mnist/binarized_mnist_train.amat",
                        BASE_URL + "binarized_mnist_train.amat",
                        sha1="cf70514ec5f481e54ad3eb0e6c03c83326ff96f8"),
    "valid": RemoteFile("binarized_mnist/binarized_mnist_valid.amat",
                        BASE_URL + "binarized_mnist_valid.amat",
                        sha1="13418487742e6ea6d48db7b5187353a20b1b1f8c"),
    "test": RemoteFile("binarized_mnist/binarized_mnist_test.amat",
                       BASE_URL + "binarized_mnist_test.amat",
                       sha1="ca70bd7775e182596dec148d4dc1bc6bd6c4c5f4"),
}
ROWS = {"train": 50000, "valid": 10000, "test": 10000}
PIXELS = 784


def parse_amat(path: Path, rows: int | None = None) -> torch.Tensor:
    """uint8 ``[N, 1, 28, 28]`` from an .amat file of space-separated 0/1 values.

    Each row is 784 single-character values, each followed by one separator (a space, the
    last one a newline), so the digits sit at every other byte: parsing is a strided view,
    not a text parser. Anything else is refused.
    """
    data = np.fromfile(path, dtype=np.uint8)
    if data.size % (2 * PIXELS) != 0:
        raise GenbenchError(f"{path}: not a binarized MNIST .amat file (size {data.size})")
    grid = data.reshape(-1, PIXELS, 2)
    digits, seps = grid[:, :, 0], grid[:, :, 1]
    if not (np.all(seps[:, :-1] == ord(" ")) and np.all(seps[:, -1] == ord("\n"))):
        raise GenbenchError(f"{path}: not a binarized MNIST .amat file (bad separators)")
    values = digits - ord("0")
    if values.max(initial=0) > 1:
        raise GenbenchError(f"{path}: values other than 0/1")
    if rows is not None and values.shape[0] != rows:
        raise GenbenchError(f"{path}: expected {rows} rows, found {values.shape[0]}")
    return torch.from_numpy(values.astype(np.uint8).reshape(-1, 1, 28, 28))


def load_binarized_mnist(root: Path, download: bool) -> ImageDataset:
    splits = list(FILES)
    paths = ensure_files("binarized_mnist", root, [FILES[s] for s in splits], download)
    return ImageDataset(
        name="binarized_mnist",
        kind="binary",
        splits={s: parse_amat(p, ROWS[s]) for s, p in zip(splits, paths, strict=True)},
        feature_source="mnist8",
        description="MNIST statically binarized by Larochelle & Murray (50000/10000/10000)",
        source=BASE_URL,
    )
