"""The shipped LeNet of Fashion-MNIST: made by the MNIST LeNet's recipe, pinned by its sha256, the
default network of every Fashion-MNIST variant (and only of those), and on the real test split it
scores its recorded accuracy."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict

import pytest
import torch

import genbench.data
from genbench.core.errors import GenbenchError
from genbench.core.weights import load_state_dict_checked, read_weights
from genbench.data.base import ImageDataset
from genbench.metrics import features as feats
from genbench.metrics import lenet
from tests.conftest import REAL_DATA
from tests.data.test_real_fashion_mnist import has_real_fashion_mnist

FASHION = "fashion_mnist"


def _record(source: str = FASHION) -> dict:
    return json.loads(lenet.SHIPPED[source].with_suffix(".json").read_text())


def _sets(feature_source: str | None, name: str = "clothes") -> list[ImageDataset]:
    """A labelled gray set named ``name`` and an unlabelled binary one, both naming ``feature_source``."""
    gen = torch.Generator().manual_seed(0)
    images = {s: torch.randint(0, 256, (20, 1, 28, 28), generator=gen, dtype=torch.uint8)
              for s in ("train", "test")}
    labels = {s: torch.arange(20) % 10 for s in ("train", "test")}
    binary = {s: (x > 127).to(torch.uint8) for s, x in images.items()}
    return [ImageDataset(name, "gray8", images, labels=labels, feature_source=feature_source),
            ImageDataset(f"{name}_binary", "binary", binary, feature_source=feature_source)]


def test_the_fashion_weights_are_the_file_their_record_names_made_by_the_mnist_recipe():
    record, mnist = _record(), _record(lenet.SHIPPED_SOURCE)
    weights = lenet.SHIPPED[FASHION]
    assert weights.parent == lenet.SHIPPED_WEIGHTS.parent
    assert weights.name == "lenet-fashion_mnist.safetensors"
    assert lenet.file_sha256(weights) == record["sha256"] and record["file"] == weights.name
    assert record["dataset"] == FASHION and record["sha256"] != mnist["sha256"]
    # one recipe: the same config (seed, epochs, batch, lr), thread count and code
    assert record["config"] == mnist["config"] == asdict(lenet.LeNetConfig())
    assert record["threads"] == mnist["threads"] == lenet.RETRAIN_THREADS
    assert record["made_by"] == mnist["made_by"].replace("--retrain", "--retrain --dataset fashion_mnist")
    assert (record["n_train"], record["n_test"]) == (60000, 10000)
    assert 0.85 < record["test_accuracy"] < 0.95  # a LeNet's range on Fashion-MNIST (MNIST's: 0.99)
    load_state_dict_checked(lenet.LeNet(lenet.LeNetConfig()), read_weights(weights), "shipped")


def test_fashion_variants_are_scored_by_the_fashion_network_and_mnist_variants_by_mnists(monkeypatch):
    monkeypatch.setattr(lenet, "train_lenet", lambda *a, **k: pytest.fail("retrained"))
    monkeypatch.setattr(genbench.data, "load_dataset", lambda *a, **k: pytest.fail("loaded a data set"))
    fashion, mnist = _record(), _record(lenet.SHIPPED_SOURCE)
    cases = [(_sets(FASHION), fashion), (_sets(None, name=FASHION)[:1], fashion),  # its own labels, by name
             (_sets("mnist8"), mnist), (_sets(None)[:1], mnist)]  # labels of no shipped family: MNIST's
    for datasets, record in cases:
        for dataset in datasets:
            assert feats.default_feature_net(dataset) == "lenet"
            net = feats.resolve_feature_net(None, dataset)
            assert net.identity == f"lenet-{record['sha256'][:16]}", dataset.name
            assert net.weights_path == lenet.SHIPPED[record["dataset"]]
            assert f"LeNet of {record['dataset']} (sha256 {record['sha256'][:16]}" in net.detail


def test_the_registered_fashion_sets_name_the_fashion_network():
    from genbench.data.fashion_mnist import FEATURE_SOURCE

    assert FEATURE_SOURCE == FASHION and FASHION in lenet.SHIPPED
    assert lenet.shipped_lenet(FASHION).test_accuracy == _record()["test_accuracy"]


def test_the_footer_names_every_shipped_network_with_its_sha256():
    line = feats.feature_net_provenance("lenet")
    for source in lenet.SHIPPED:
        assert f"trained on {source} (sha256 {_record(source)['sha256']}" in line


def test_an_altered_copy_of_the_fashion_weights_is_refused(tmp_path, monkeypatch):
    shipped = lenet.SHIPPED[FASHION]
    tampered = tmp_path / shipped.name
    shutil.copy(shipped.with_suffix(".json"), tampered.with_suffix(".json"))
    data = bytearray(shipped.read_bytes())
    data[-1] ^= 1  # one bit of one weight
    tampered.write_bytes(bytes(data))
    monkeypatch.setitem(lenet.SHIPPED, FASHION, tampered)
    altered = "sha256 .* is not the recorded .*altered.*--dataset fashion_mnist"
    with pytest.raises(GenbenchError, match=altered) as err:
        feats.resolve_feature_net("lenet", _sets(FASHION)[1])
    assert not isinstance(err.value, feats.FeaturesUnavailable)  # an error, never a quietly skipped metric
    with pytest.raises(GenbenchError, match="no LeNet ships for 'cifar10'; shipped: mnist8, fashion_mnist"):
        lenet.shipped_lenet("cifar10")


@pytest.mark.real_data
@pytest.mark.skipif(not has_real_fashion_mnist(), reason="GENBENCH_DATA has no Fashion-MNIST files")
def test_the_fashion_network_scores_its_recorded_accuracy_on_the_real_test_split():
    record = _record()
    dataset = genbench.data.load_dataset(FASHION, REAL_DATA, download=False)
    x_train, y_train, x_test, y_test = lenet._labelled_splits(dataset)
    assert lenet.data_hash(x_train, y_train, x_test, y_test) == record["data_sha256"]
    measured = lenet.accuracy(lenet.load_shipped_lenet(FASHION), x_test, y_test)
    assert round(measured, 4) == round(record["test_accuracy"], 4)
