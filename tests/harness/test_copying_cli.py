"""`genbench score` with imported and written reference statistics, the copying tests and their figure,
and the NLL gap: from the command line, against known answers (toy data, a stand-in feature network)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from genbench.cli import main
from genbench.core.models import MODELS
from genbench.data.toy import make_toy
from genbench.metrics import features as feats
from genbench.metrics.subsets import subset_index
from tests.conftest import REAL_DATA, has_real_mnist


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(code, err, fragment):
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("genbench: ") and fragment in lines[0], err


@pytest.fixture
def toy_images(tmp_path, monkeypatch):
    """Sample sets of the toy data set's own images: copies of all its training images, its validation
    images (held out: the reference is its test split)."""
    monkeypatch.setenv(feats.CACHE_ENV, str(tmp_path / "cache"))
    toy = make_toy()
    out = {}
    for name, images in (("copies", toy.splits["train"][:400]), ("held_out", toy.splits["valid"][:400])):
        out[name] = tmp_path / f"{name}.npz"
        np.savez(out[name], samples=images.numpy().astype(np.uint8) * 255)
    return out


def test_fid_against_written_statistics_equals_fid_against_the_images(tmp_path, capsys, toy_images,
                                                                      tiny_torchscript):
    common = ["--dataset", "toy", "--features", tiny_torchscript, "--n-reference", "300", "--json"]
    code, out, err = _run(capsys, "score", toy_images["held_out"], *common,
                          "--write-reference-stats", tmp_path / "ref.npz")
    assert code == 0 and "wrote the statistics of 300 toy test images" in err
    direct = json.loads(out)["metrics"]
    code, out, _ = _run(capsys, "score", toy_images["held_out"], *common, "--reference-stats",
                        tmp_path / "ref.npz")
    report = json.loads(out)
    assert code == 0 and report["reference_stats"] == "ref.npz"
    assert len(report["reference_stats_sha256"]) == 64
    imported = report["metrics"]
    assert imported["fid_ts_tiny"] == pytest.approx(direct["fid_ts_tiny"], rel=1e-6)
    assert imported["is_ts_tiny"] == direct["is_ts_tiny"]
    assert "kid_ts_tiny" not in imported  # KID needs the reference features themselves


def test_written_sample_statistics_are_the_reference_of_a_second_score(tmp_path, capsys, toy_images,
                                                                         tiny_torchscript):
    common = ["--dataset", "toy", "--features", tiny_torchscript, "--json"]
    code, _, _ = _run(capsys, "score", toy_images["copies"], *common, "--write-stats", tmp_path / "s.npz")
    assert code == 0
    code, out, _ = _run(capsys, "score", toy_images["copies"], *common, "--reference-stats",
                        tmp_path / "s.npz")
    assert code == 0 and json.loads(out)["metrics"]["fid_ts_tiny"] == pytest.approx(0, abs=1e-9)


@pytest.mark.parametrize("make, fragment", [
    (lambda p: p.write_bytes(b"junk"), "not an .npz file"),
    (lambda p: np.savez(p, mu=np.zeros(3), sigma=np.eye(3)),
     "statistics of 3 features; the feature network gives 16"),
    (lambda p: np.savez(p, mu=np.zeros(16), sigma=-np.eye(16)), "not positive semi-definite"),
])
def test_bad_reference_statistics_are_one_line_and_exit_2(tmp_path, capsys, toy_images, tiny_torchscript,
                                                          make, fragment):
    make(tmp_path / "bad.npz")
    code, _, err = _run(capsys, "score", toy_images["held_out"], "--dataset", "toy", "--features",
                        tiny_torchscript, "--reference-stats", tmp_path / "bad.npz")
    _one_line(code, err, fragment)


def test_copies_of_training_images_are_flagged_and_held_out_images_are_not(tmp_path, capsys, toy_images,
                                                                           tiny_torchscript):
    common = ["--dataset", "toy", "--features", tiny_torchscript, "--memorization-train", "2000", "--json"]
    code, out, err = _run(capsys, "score", toy_images["copies"], *common, "--copying-figure",
                          tmp_path / "c.png")
    assert code == 0, err
    copies = json.loads(out)["metrics"]
    assert copies["copied_ts_tiny"] > 0.9 and copies["ct_ts_tiny"] < -2 and copies["nn_ratio_ts_tiny"] == 0
    with Image.open(tmp_path / "c.png") as figure:  # 16 pairs of 8x8 images, 4 pairs a row, 2 px apart
        assert figure.size == (8 * 10 + 2, 4 * 10 + 2)
        pixels = np.asarray(figure)
    pairs = [pixels[2 + 10 * r: 10 + 10 * r, 2 + 20 * c: 20 + 20 * c] for r in range(4) for c in range(4)]
    assert all(np.array_equal(p[:, :8], p[:, 10:]) for p in pairs)  # every copy beside its original
    code, out, _ = _run(capsys, "score", toy_images["held_out"], *common)
    held_out = json.loads(out)["metrics"]
    assert held_out["copied_ts_tiny"] < 3 * held_out["copied_ts_tiny_se"] and abs(held_out["ct_ts_tiny"]) < 3


def test_a_model_s_copying_tests_and_nll_gap_are_in_its_score(tmp_path, capsys, monkeypatch,
                                                              tiny_torchscript):
    monkeypatch.setenv(feats.CACHE_ENV, str(tmp_path / "cache"))
    path = tmp_path / "vae.pth"
    torch.save(MODELS["vae"].build({"layers": 1}, (1, 8, 8)).state_dict(), path)
    model = ["score", path, "--model", "vae", "--set", "layers=1", "--dataset", "toy", "--k", "5",
             "--features", tiny_torchscript]
    code, out, err = _run(capsys, *model, "--quality-samples", "400", "--memorization-train", "500",
                          "--nll-gap", "100", "--json")
    assert code == 0, err
    report = json.loads(out)
    metrics = report["metrics"]
    assert {"ct_ts_tiny", "copied_ts_tiny", "authenticity_ts_tiny", "nll_gap", "nll_gap_se"} <= set(metrics)
    assert report["settings"]["memorization_train"] == 500 and report["settings"]["nll_gap_points"] == 100
    assert metrics["nll_gap_points"] == 100
    code, _, err = _run(capsys, *model, "--reference-stats", tmp_path / "none.npz")
    _one_line(code, err, "--reference-stats scores model samples against the statistics: give "
              "--quality-samples N")
    code, _, err = _run(capsys, *model, "--memorization-train", "1")
    _one_line(code, err, "--memorization-train")


@pytest.mark.slow
@pytest.mark.skipif(not has_real_mnist(), reason="needs GENBENCH_DATA with MNIST")
def test_on_mnist_with_the_shipped_lenet_training_copies_are_flagged_and_test_images_are_not(
        tmp_path, capsys, monkeypatch):
    from genbench.data import load_dataset

    monkeypatch.setenv(feats.CACHE_ENV, str(tmp_path / "cache"))
    mnist = load_dataset("mnist8", str(REAL_DATA))
    train, test = mnist.splits["train"], mnist.splits["test"]
    searched = train[subset_index(len(train), 10_000, 0)]       # the training images the tests search
    reference = set(subset_index(len(test), 5000, 0).tolist())  # the held-out reference images
    held_out = test[[i for i in range(len(test)) if i not in reference][:2000]]
    copies = searched[:1000]
    noise = torch.randint(-8, 9, copies.shape, generator=torch.Generator().manual_seed(0))
    perturbed = (copies.float() + noise).clamp(0, 255)
    results = {}
    for name, images in (("copies", copies), ("perturbed", perturbed), ("held_out", held_out),
                         ("mixture", torch.cat([searched[1000:1300], held_out[:700]]))):
        np.savez(tmp_path / f"{name}.npz", samples=images.numpy().astype(np.uint8))
        code, out, err = _run(capsys, "score", tmp_path / f"{name}.npz", "--dataset", "mnist8", "--data-root",
                              REAL_DATA, "--n-reference", "5000", "--memorization-train", "10000", "--json")
        assert code == 0, err
        results[name] = json.loads(out)["metrics"]
    for name in ("copies", "perturbed"):
        assert results[name]["copied_lenet"] > 0.9 and results[name]["ct_lenet"] < -5
    assert results["held_out"]["copied_lenet"] < 3 * results["held_out"]["copied_lenet_se"]
    assert abs(results["held_out"]["ct_lenet"]) < 3
    mixture = results["mixture"]
    assert abs(mixture["copied_lenet"] - 0.3) < 3 * mixture["copied_lenet_se"]
