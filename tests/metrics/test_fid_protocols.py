"""Named FID protocols: one table, each preset's network pinned by its weights' hash, refused where it
cannot be what it says, and a score under one records its name."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from genbench.cli import main
from genbench.core.errors import GenbenchError
from genbench.data import DATASETS
from genbench.metrics import fid_protocols as fp
from genbench.metrics import lenet
from genbench.metrics.features import FEATURE_NETS, INCEPTION_FILE, PINNED_NETS
from genbench.metrics.pinned_weights import PINNED
from tests.conftest import REAL_DATA
from tests.data.test_real_fashion_mnist import has_real_fashion_mnist


def test_every_preset_names_a_network_a_resizer_and_a_reference_that_exist():
    assert sorted(fp.PROTOCOLS) == ["cifar10-clean", "cifar10-legacy", "fashion-lenet", "mnist-lenet"]
    for protocol in fp.PROTOCOLS.in_order():
        assert protocol.features in FEATURE_NETS and protocol.resizer in fp.RESIZERS
        for name in protocol.datasets:
            assert protocol.reference_count <= DATASETS[name].split_sizes[protocol.reference_split], name
        assert protocol.weights_sha256 in protocol.describe() and protocol.resizer in protocol.describe()
        assert protocol.resizer in fp.IMPLEMENTED_RESIZERS
        # the resizer a preset names is the one its network applies
        assert protocol.resizer == (PINNED_NETS[protocol.features].resizer
                                    if protocol.features in PINNED_NETS else "none")


def test_the_cifar10_presets_are_the_literatures_and_differ_only_in_their_resizer():
    legacy, clean = fp.PROTOCOLS["cifar10-legacy"], fp.PROTOCOLS["cifar10-clean"]
    # 50,000 samples against the 50,000 training images, Inception pool3 (2048), TF-exact resizing
    assert (legacy.features, legacy.resizer, legacy.reference_split, legacy.reference_count, legacy.samples) \
        == ("inception", "legacy-tf", "train", 50000, 50000)
    assert replace(clean, name=legacy.name, summary=legacy.summary, resizer="legacy-tf",
                   features="inception") == legacy
    assert (clean.features, clean.resizer) == ("inception_clean", "clean-bicubic")
    assert PINNED_NETS["inception_clean"].pin == PINNED_NETS["inception"].pin == "inception"  # same weights
    assert legacy.weights == fp.INCEPTION_WEIGHTS == INCEPTION_FILE
    assert legacy.weights_sha256 == fp.INCEPTION_SHA256 == PINNED["inception"].sha256
    assert INCEPTION_FILE.endswith(f"-{legacy.weights_sha256[:8]}.pth")  # the prefix torch hub checks
    assert fp.protocol_settings("cifar10-clean") == {"features": "inception_clean", "quality_split": "train",
                                                     "quality_reference": 50000, "quality_samples": 50000}
    record = fp.protocol_record("cifar10-clean", "cifar10", 50000)
    assert record["fid_resizer"] == "clean-bicubic"
    assert record["feature_weights_sha256"] == fp.INCEPTION_SHA256


def test_the_lenet_presets_pin_the_shipped_weights_of_their_data():
    for name, source in (("mnist-lenet", "mnist8"), ("fashion-lenet", "fashion_mnist")):
        protocol = fp.PROTOCOLS[name]
        record = json.loads(lenet.SHIPPED[source].with_suffix(".json").read_text())
        assert protocol.weights == lenet.SHIPPED[source].name and protocol.weights_sha256 == record["sha256"]
        assert source in protocol.datasets and fp.pinned_weights_sha256(protocol) == record["sha256"]
        assert fp.protocol_settings(name) == {"features": "lenet", "quality_split": "test",
                                              "quality_reference": 10000, "quality_samples": 10000}


def test_a_preset_is_refused_where_it_cannot_be_what_it_says(monkeypatch):
    monkeypatch.setattr(fp, "IMPLEMENTED_RESIZERS", ("legacy-tf", "none"))
    with pytest.raises(GenbenchError, match="needs clean-fid's antialiased PIL bicubic.*use cifar10-legacy"):
        fp.protocol_settings("cifar10-clean")
    monkeypatch.undo()
    with pytest.raises(GenbenchError, match="unknown FID protocol 'fid50k'; valid: cifar10-clean"):
        fp.protocol_settings("fid50k")
    altered = replace(fp.PROTOCOLS["fashion-lenet"], weights_sha256="0" * 64)
    monkeypatch.setitem(fp.PROTOCOLS._entries, "fashion-lenet", altered)
    with pytest.raises(GenbenchError, match="pins lenet weights sha256 0000.*genbench has 30eb19de"):
        fp.protocol_settings("fashion-lenet")


def test_flags_may_repeat_a_presets_settings_but_not_change_them():
    assert fp.with_protocol("mnist-lenet", {"k": 5, "features": "lenet"})["quality_reference"] == 10000
    with pytest.raises(GenbenchError, match="--protocol cifar10-legacy sets --features inception; "
                                            "drop --features lenet"):
        fp.with_protocol("cifar10-legacy", {"features": "lenet"})


def test_a_score_under_a_preset_must_have_its_data_set_and_sample_count():
    assert fp.protocol_record(None, "mnist", 7) == {}
    record = fp.protocol_record("fashion-lenet", "fashion_mnist_binary", 10000)
    assert record["fid_protocol"] == "fashion-lenet" and record["fid_resizer"] == "none"
    assert record["feature_weights_sha256"] == fp.PROTOCOLS["fashion-lenet"].weights_sha256
    with pytest.raises(GenbenchError, match="is for mnist, mnist8, binarized_mnist, not 'cifar10'"):
        fp.protocol_record("mnist-lenet", "cifar10", 10000)
    with pytest.raises(GenbenchError, match="'mnist-lenet' scores 10000 samples, not 500"):
        fp.protocol_record("mnist-lenet", "mnist8", 500)


def test_the_cli_refuses_a_sample_set_of_another_size_in_one_line(tmp_path, capsys):
    path = tmp_path / "samples.npz"
    np.savez(path, samples=np.zeros((20, 1, 28, 28), dtype=np.uint8))
    code = main(["score", str(path), "--dataset", "fashion_mnist", "--protocol", "fashion-lenet",
                 "--data-root", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["genbench: FID protocol 'fashion-lenet' scores 10000 samples, not 20"]


@pytest.mark.real_data
@pytest.mark.slow
@pytest.mark.skipif(not has_real_fashion_mnist(), reason="GENBENCH_DATA has no Fashion-MNIST files")
def test_a_sample_set_scored_under_a_preset_records_it(tmp_path, capsys):
    """10,000 Fashion-MNIST training images against the test images, by the fashion LeNet."""
    from genbench.data import load_dataset

    train = load_dataset("fashion_mnist", REAL_DATA, download=False).splits["train"][:10000].numpy()
    path = tmp_path / "samples.npz"
    np.savez(path, samples=train)
    code = main(["score", str(path), "--dataset", "fashion_mnist", "--protocol", "fashion-lenet",
                 "--data-root", str(REAL_DATA), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["n_reference"] == 10000 and report["reference_split"] == "test"
    assert report["fid_protocol"] == "fashion-lenet"
    assert report["feature_weights_sha256"] == fp.PROTOCOLS["fashion-lenet"].weights_sha256
    assert 0 < report["metrics"]["fid_lenet"] < 5  # the same distribution: a small FID


def test_a_score_is_named_by_the_preset_whose_every_setting_it_had():
    from genbench.metrics.fid_protocols import matching_protocol

    assert matching_protocol("binarized_mnist", "lenet", "test", 10000, 10000) == "mnist-lenet"
    assert matching_protocol("fashion_mnist", "lenet", "test", 10000, 10000) == "fashion-lenet"
    assert matching_protocol("cifar10", "inception_clean", "train", 50000, 50000) == "cifar10-clean"
    assert matching_protocol("cifar10", "inception", "train", 50000, 50000) == "cifar10-legacy"
    for changed in (("mnist", "lenet", "test", 10000, 2000), ("mnist", "lenet", "train", 10000, 10000),
                    ("mnist", "inception", "test", 10000, 10000),
                    ("cifar10", "inception", "test", 10000, 50000)):
        assert matching_protocol(*changed) is None, changed
