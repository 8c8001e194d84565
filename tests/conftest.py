"""Shared fixtures: the toy data set, small models, a temporary results database."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from genbench.data.toy import make_toy

REAL_DATA = Path(os.environ.get("GENBENCH_DATA", "")).expanduser()


def has_real_mnist() -> bool:
    return bool(os.environ.get("GENBENCH_DATA")) and (
        REAL_DATA / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    ).exists()


@pytest.fixture(autouse=True)
def _threads_and_seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def toy():
    return make_toy(n_train=400, n_test=200)
