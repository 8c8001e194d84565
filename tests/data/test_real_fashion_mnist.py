"""The offline Fashion-MNIST copy under GENBENCH_DATA loads as it is (a recompressed .gz, no md5 pinned)."""

from __future__ import annotations

import os

import pytest

from genbench.data import DATASETS, load_dataset
from genbench.data.fashion_mnist import FILES
from tests.conftest import REAL_DATA


def has_real_fashion_mnist() -> bool:
    return bool(os.environ.get("GENBENCH_DATA")) and all(
        (REAL_DATA / f.relpath).exists() for pair in FILES.values() for f in pair)


pytestmark = [pytest.mark.real_data, pytest.mark.skipif(not has_real_fashion_mnist(),
                                                        reason="GENBENCH_DATA has no Fashion-MNIST files")]


def test_real_fashion_mnist_loads_with_its_published_sizes_and_writes_nothing():
    folder = REAL_DATA / "FashionMNIST"
    before = sorted((p.relative_to(folder), p.stat().st_mtime_ns) for p in folder.rglob("*"))
    gray = load_dataset("fashion_mnist", REAL_DATA, download=False)
    assert gray.size("train") == 60000 and gray.size("test") == 10000
    assert gray.shape == DATASETS["fashion_mnist"].shape == (1, 28, 28)
    assert gray.labels["train"].bincount().tolist() == [6000] * 10  # balanced, as published
    assert gray.labels["test"].bincount().tolist() == [1000] * 10
    # mean gray level 0.2860 (the value normalisation code commonly uses): 72.94 of 255
    assert gray.splits["train"].float().mean().item() == pytest.approx(72.94, abs=0.01)
    binary = load_dataset("fashion_mnist_binary", REAL_DATA, download=False)
    assert set(binary.splits["test"].unique().tolist()) == {0, 1}
    for dataset in (gray, binary):
        declared = DATASETS[dataset.name].split_sizes
        assert declared == {split: dataset.size(split) for split in declared}
    assert sorted((p.relative_to(folder), p.stat().st_mtime_ns) for p in folder.rglob("*")) == before
