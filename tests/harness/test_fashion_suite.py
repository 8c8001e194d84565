"""The fashion suite: the mnist suite's rows and budgets on Fashion-MNIST (8-bit and dynamically
binarized), and one smoke run of it on the real files."""

from __future__ import annotations

from dataclasses import replace

import pytest

from genbench.cli import main
from genbench.data import DATASETS
from genbench.results.db import ResultsDB
from genbench.suites import SUITES
from tests.conftest import REAL_DATA
from tests.data.test_real_fashion_mnist import has_real_fashion_mnist


def test_the_fashion_suite_has_the_mnist_suites_rows_configs_and_budgets():
    fashion, mnist = SUITES["fashion"], SUITES["mnist"]
    def rows(suite):
        return [(r.name, r.model, r.config) for r in suite.runs]

    assert rows(fashion) == rows(mnist)
    assert fashion.budgets == mnist.budgets and fashion.train == mnist.train
    for entry, theirs in zip(fashion.runs, mnist.runs, strict=True):
        gray = DATASETS[mnist.dataset_of(theirs)].summary.startswith("MNIST 8-bit")
        expected = "fashion_mnist" if gray else "fashion_mnist_binary"  # 8-bit stays 8-bit, binary is dynamic
        assert fashion.dataset_of(entry) == expected, entry.name
        assert entry.budgets == theirs.budgets, entry.name
        # Fashion-MNIST has no validation split: no early stopping, the rest of each row's training as mnist's
        for budget in fashion.budgets.values():
            ours, its = fashion.train_config(budget, 0, entry), mnist.train_config(budget, 0, theirs)
            assert ours.early_stopping_epochs == 0
            assert ours == replace(its, early_stopping_epochs=0), entry.name
    assert {fashion.dataset_of(r) for r in fashion.runs if r.model in ("gan", "wgan", "wgan-gp", "bigan")} \
        == {"fashion_mnist"}


@pytest.mark.real_data
@pytest.mark.slow
@pytest.mark.skipif(not has_real_fashion_mnist(), reason="GENBENCH_DATA has no Fashion-MNIST files")
def test_one_smoke_run_of_the_fashion_suite_trains_and_is_recorded(tmp_path):
    argv = ["run", "--suite", "fashion", "--budget", "smoke", "--models", "vae-L1-k1",
            "--data-root", str(REAL_DATA), "--db", str(tmp_path / "db.sqlite"),
            "--runs-dir", str(tmp_path / "runs"), "--leaderboards", str(tmp_path / "lb"), "--no-progress"]
    assert main(argv) == 0
    [run] = ResultsDB(tmp_path / "db.sqlite").runs()
    assert run["name"] == "vae-L1-k1" and run["dataset"] == "fashion_mnist_binary"
    # 784 ln 2 = 543.4 nats is a coin flip per pixel; 150 steps already do better
    assert 150 < run["metrics"]["nll"] < 543 and run["metrics"]["elbo"] < -run["metrics"]["nll"] + 1e-6
    assert "`fashion_mnist_binary`" in (tmp_path / "lb" / "fashion.md").read_text()
