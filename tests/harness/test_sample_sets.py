"""Samples from files: PNG folders and .npz arrays, their validation, and `genbench score` on them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from genbench.cli import main
from genbench.core.errors import GenbenchError
from genbench.metrics import features as feats
from genbench.sample_sets import read_samples


def _write_pngs(folder, arrays):
    folder.mkdir(exist_ok=True)
    for i, array in enumerate(arrays):
        Image.fromarray(array).save(folder / f"{i:03d}.png")
    return folder


def test_a_png_folder_reads_as_uint8_nchw_in_file_order(tmp_path):
    arrays = [np.full((5, 7), 10 * i, np.uint8) for i in range(3)]
    images = read_samples(_write_pngs(tmp_path / "gray", arrays))
    assert images.dtype == torch.uint8 and images.shape == (3, 1, 5, 7)
    assert images[:, 0, 0, 0].tolist() == [0, 10, 20]
    rgb = read_samples(_write_pngs(tmp_path / "rgb", [np.zeros((4, 4, 3), np.uint8)]))
    assert rgb.shape == (1, 3, 4, 4)


@pytest.mark.parametrize("array, expected", [
    (np.array([[[0.0, 1.0]]]), [0, 255]),                              # floats in [0, 1], [N, H, W]
    (np.array([[[[0], [128]]]], np.uint8), [0, 128]),                  # [N, H, W, C]
    (np.array([[[[True, False]]]]), [255, 0]),                         # booleans, [N, C, H, W]
])
def test_npz_arrays_of_each_layout_and_dtype(tmp_path, array, expected):
    np.savez(tmp_path / "s.npz", samples=array)
    images = read_samples(tmp_path / "s.npz")
    assert images.dtype == torch.uint8 and images.dim() == 4 and images.flatten().tolist() == expected


@pytest.mark.parametrize("make, message", [
    (lambda p: p.mkdir(), "no .png files"),
    (lambda p: _write_pngs(p, [np.zeros((4, 4), np.uint8), np.zeros((5, 4), np.uint8)]),
     "mixed image sizes (000.png is 1x4x4, 001.png is 1x5x4)"),
    (lambda p: np.savez(p, samples=np.array([[[-0.5, 2.0]]])),
     "must lie in [0, 1], found values in [-0.5, 2]"),
    (lambda p: np.savez(p, samples=np.zeros((0, 4, 4))), "no samples"),
    (lambda p: np.savez(p, samples=np.array([[[1, 2]]], dtype=object)), "unreadable without pickle"),
    (lambda p: np.savez(p, a=np.zeros(3), b=np.zeros(3)), "several arrays"),
])
def test_unusable_sample_files_are_one_clear_error(tmp_path, make, message):
    path = tmp_path / "samples.npz"
    if "png" in message or "mixed" in message:
        path = tmp_path / "pngs"
    make(path)
    with pytest.raises(GenbenchError) as info:
        read_samples(path)
    assert message in str(info.value)


def _score(capsys, *args):
    code = main(["score", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_score_of_samples_with_a_wrong_size_or_no_dataset_exits_2_with_one_line(tmp_path, capsys):
    np.savez(tmp_path / "s.npz", samples=np.zeros((4, 28, 28), np.uint8))
    code, _, err = _score(capsys, tmp_path / "s.npz", "--dataset", "toy")
    assert code == 2 and err.strip() == "genbench: samples are 1x28x28 images, data set toy has 1x8x8"
    code, _, err = _score(capsys, tmp_path / "s.npz")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--dataset" in err


def test_score_with_inception_and_no_weights_is_one_error_saying_how_to_provide_them(tmp_path, capsys,
                                                                                      monkeypatch):
    monkeypatch.setenv(feats.INCEPTION_ENV, str(tmp_path / "absent.pth"))
    np.savez(tmp_path / "s.npz", samples=np.zeros((4, 8, 8), np.uint8))
    code, _, err = _score(capsys, tmp_path / "s.npz", "--dataset", "toy", "--features", "inception")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "Inception-v3 weights not found" in err and "GENBENCH_INCEPTION_WEIGHTS" in err


def test_score_prints_is_fid_kid_pr_of_a_png_folder_with_a_torchscript_net(tmp_path, capsys, monkeypatch,
                                                                           tiny_torchscript):
    monkeypatch.setenv(feats.CACHE_ENV, str(tmp_path / "cache"))
    net = tiny_torchscript
    gen = np.random.default_rng(0)
    folder = _write_pngs(tmp_path / "pngs", [gen.integers(0, 256, (8, 8), dtype=np.uint8) for _ in range(30)])
    code, out, _ = _score(capsys, folder, "--dataset", "toy", "--features", net, "--n-reference", "60",
                          "--data-root", tmp_path / "data", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["features"] == "TorchScript(tiny.pt)" and report["n_reference"] == 60
    assert set(report["metrics"]) >= {"is_ts_tiny", "fid_ts_tiny", "kid_ts_tiny", "precision_ts_tiny",
                                      "recall_ts_tiny"}
    assert (tmp_path / "cache" / feats.CACHE_FOLDER).is_dir() and not (tmp_path / "data").exists()
