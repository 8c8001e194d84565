"""The shipped LeNet: its file is its record's, scoring loads it (never trains, never reads MNIST),
an altered copy is refused, and on the real test split it scores the recorded accuracy."""

from __future__ import annotations

import fnmatch
import json
import shutil
import tomllib
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

import genbench.data
import genbench.data.mnist
from genbench.core.errors import GenbenchError
from genbench.core.weights import load_state_dict_checked, read_weights
from genbench.data.base import ImageDataset
from genbench.metrics import features as feats
from genbench.metrics import lenet
from genbench.metrics import sample_quality as sq
from tests.conftest import REAL_DATA, has_real_mnist

ROOT = Path(__file__).resolve().parents[2]


def _record() -> dict:
    return json.loads(lenet.SHIPPED_RECORD.read_text())


def _fitting_sets() -> list[ImageDataset]:
    """A labelled 28x28 set of its own and an unlabelled one naming 8-bit MNIST (as every MNIST variant)."""
    gen = torch.Generator().manual_seed(0)
    images = {s: torch.randint(0, 256, (20, 1, 28, 28), generator=gen, dtype=torch.uint8)
              for s in ("train", "test")}
    labels = {s: torch.arange(20) % 10 for s in ("train", "test")}
    return [ImageDataset("digits", "gray8", images, labels=labels),
            ImageDataset("static", "binary", {s: (x > 127).to(torch.uint8) for s, x in images.items()},
                         feature_source="mnist8")]


def test_the_shipped_weights_are_the_file_their_record_names():
    record = _record()
    assert lenet.SHIPPED_WEIGHTS.parent == Path(str(lenet.resources.files("genbench.metrics"))) / "weights"
    assert lenet.file_sha256(lenet.SHIPPED_WEIGHTS) == record["sha256"]
    assert record["file"] == lenet.SHIPPED_WEIGHTS.name and record["dataset"] == lenet.SHIPPED_SOURCE
    assert record["config"] == asdict(lenet.LeNetConfig()) and record["threads"] == lenet.RETRAIN_THREADS
    assert {"data_sha256", "test_accuracy", "torch", "made_by"} <= set(record)
    load_state_dict_checked(lenet.LeNet(lenet.LeNetConfig()), read_weights(lenet.SHIPPED_WEIGHTS), "shipped")


def test_the_package_data_carries_the_weights_and_their_record():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for path in (lenet.SHIPPED_WEIGHTS, lenet.SHIPPED_RECORD):
        relative = path.relative_to(ROOT / "genbench").as_posix()
        assert any(fnmatch.fnmatch(relative, p) for p in patterns["genbench"]), relative


def test_scoring_uses_the_shipped_network_and_neither_trains_nor_reads_mnist(monkeypatch):
    monkeypatch.setattr(lenet, "train_lenet", lambda *a, **k: pytest.fail("retrained"))
    monkeypatch.setattr(lenet, "load_or_train_lenet", lambda *a, **k: pytest.fail("retrained"))
    monkeypatch.setattr(genbench.data, "load_dataset", lambda *a, **k: pytest.fail("loaded a data set"))
    monkeypatch.setattr(genbench.data.mnist, "read_mnist", lambda *a, **k: pytest.fail("read MNIST"))
    record = _record()
    for dataset in _fitting_sets():
        net = feats.resolve_feature_net(None, dataset)
        assert net.identity == f"lenet-{record['sha256'][:16]}"
        assert net.weights_path == lenet.SHIPPED_WEIGHTS
        assert record["sha256"][:16] in net.detail and f"{record['test_accuracy']:.4f}" in net.detail
    features = sq.extract_features(dataset.splits["test"], net)
    assert features["features"].shape == (20, 128) and features["logits"].shape == (20, 10)


def test_an_altered_copy_of_the_weights_is_refused(tmp_path, monkeypatch):
    tampered = tmp_path / lenet.SHIPPED_WEIGHTS.name
    data = bytearray(lenet.SHIPPED_WEIGHTS.read_bytes())
    data[-1] ^= 1  # one bit of one weight: still a valid safetensors file
    tampered.write_bytes(bytes(data))
    read_weights(tampered)
    shutil.copy(lenet.SHIPPED_RECORD, tampered.with_suffix(".json"))
    monkeypatch.setitem(lenet.SHIPPED, lenet.SHIPPED_SOURCE, tampered)
    with pytest.raises(GenbenchError, match="sha256 .* is not the recorded .*altered") as err:
        feats.resolve_feature_net("lenet", _fitting_sets()[0])
    assert not isinstance(err.value, feats.FeaturesUnavailable)  # an error, never a quietly skipped metric
    monkeypatch.setitem(lenet.SHIPPED, lenet.SHIPPED_SOURCE, tmp_path / "absent.safetensors")
    with pytest.raises(GenbenchError, match="unreadable.*--retrain"):
        lenet.shipped_lenet()


@pytest.mark.real_data
@pytest.mark.skipif(not has_real_mnist(), reason="GENBENCH_DATA has no MNIST files")
def test_the_shipped_network_scores_its_recorded_accuracy_on_the_real_test_split():
    record = _record()
    mnist8 = genbench.data.load_dataset("mnist8", REAL_DATA, download=False)
    x_train, y_train, x_test, y_test = lenet._labelled_splits(mnist8)
    assert lenet.data_hash(x_train, y_train, x_test, y_test) == record["data_sha256"]
    measured = lenet.accuracy(lenet.load_shipped_lenet(), x_test, y_test)
    assert round(measured, 4) == round(record["test_accuracy"], 4)


@pytest.mark.real_data
@pytest.mark.skipif(not has_real_mnist(), reason="GENBENCH_DATA has no MNIST files")
@pytest.mark.parametrize("name, split, expected", [
    ("mnist8", "train",
     {"is_lenet": 9.75, "fid_lenet": 1.36, "precision_lenet": 0.873, "recall_lenet": 0.883}),
    ("binarized_mnist", "valid", {"is_lenet": 9.59, "fid_lenet": 1.26}),
])
@pytest.mark.slow
def test_readmes_reference_pairs_reproduce_to_the_digits_shown(name, split, expected, tmp_path):
    """docs/metrics.md's figures: a seeded random 10,000 of a split against the whole test split."""
    from genbench.metrics.features import resolve_feature_net
    from genbench.metrics.subsets import representative

    dataset = genbench.data.load_dataset(name, REAL_DATA, download=False)
    fake = sq.to_uint8(representative(dataset.eval_tensor(split), 10_000, 0))
    values = sq.score_images(fake, dataset, resolve_feature_net("lenet", dataset), "test", None, tmp_path,
                             which=("isc", "fid", "prc"))
    for key, shown in expected.items():
        digits = len(str(shown).split(".")[1])
        assert round(values[key], digits) == shown, key
