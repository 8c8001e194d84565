"""A tiny run on the real MNIST files, when GENBENCH_DATA points at them (CI does)."""

from __future__ import annotations

import pytest
import torch

from genbench.cli import main
from genbench.data import DATASETS, load_dataset
from genbench.results.db import ResultsDB
from tests.conftest import REAL_DATA, has_real_mnist

pytestmark = [pytest.mark.real_data,
              pytest.mark.skipif(not has_real_mnist(), reason="GENBENCH_DATA has no MNIST files")]


def test_real_mnist_splits_load_as_documented():
    ds = load_dataset("mnist", REAL_DATA)
    assert ds.size("train") == 60000 and ds.size("test") == 10000
    assert ds.shape == DATASETS["mnist"].shape == (1, 28, 28)
    assert set(ds.splits["test"].unique().tolist()) == {0, 1}
    gray = load_dataset("mnist8", REAL_DATA)
    assert gray.splits["train"].float().mean().item() == pytest.approx(33.32, abs=0.05)


@pytest.mark.skipif(not (REAL_DATA / "binarized_mnist").exists(), reason="no binarized MNIST")
def test_real_binarized_mnist_has_its_published_split_sizes():
    ds = load_dataset("binarized_mnist", REAL_DATA, download=False)
    assert {k: v.shape[0] for k, v in ds.splits.items()} == {"train": 50000, "valid": 10000, "test": 10000}
    assert 0.12 < ds.splits["test"].float().mean().item() < 0.14


@pytest.mark.slow
def test_tiny_real_mnist_run_learns_something(tmp_path, capsys):
    argv = ["run", "--suite", "mnist", "--budget", "smoke", "--models", "ppca", "vae-L1-k1",
            "--data-root", str(REAL_DATA), "--db", str(tmp_path / "db.sqlite"),
            "--runs-dir", str(tmp_path / "runs"), "--leaderboards", str(tmp_path / "lb"),
            "--no-progress"]
    assert main(argv) == 0
    runs = {r["name"]: r for r in ResultsDB(tmp_path / "db.sqlite").runs()}
    vae = runs["vae-L1-k1"]["metrics"]
    # 784 ln 2 = 543.4 nats is a coin flip per pixel; 150 steps already do far better
    assert 120 < vae["nll"] < 300 and vae["elbo"] < -vae["nll"] + 1e-6
    torch.testing.assert_close(torch.tensor(runs["ppca"]["metrics"]["elbo"]),
                               torch.tensor(-runs["ppca"]["metrics"]["density_nll"]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["mnist", "mnist8", "binarized_mnist"])
def test_declared_split_sizes_are_the_loaded_ones(name):
    """A table's finite-population correction reads the declared sizes: they must be the files'."""
    if name == "binarized_mnist" and not (REAL_DATA / "binarized_mnist").exists():
        pytest.skip("no binarized MNIST")
    ds = load_dataset(name, REAL_DATA, download=False)
    declared = DATASETS[name].split_sizes
    assert declared and declared == {split: ds.size(split) for split in declared}
