"""Data sets: parsing, canonical downloads (on files the tests make), clear errors."""

from __future__ import annotations

import gzip
import hashlib
import struct

import numpy as np
import pytest
import torch
from torchvision.datasets import MNIST

from genbench.core.errors import GenbenchError
from genbench.data import DATASETS, load_dataset
from genbench.data import binarized_mnist as bm
from genbench.data.download import RemoteFile, ensure_files
from genbench.data.mnist import load_dynamic_mnist, load_mnist8


def write_amat(path, rows: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(" ".join(map(str, r)) + "\n" for r in rows))


def test_amat_parser_reads_rows_as_images(tmp_path):
    rows = np.random.default_rng(0).integers(0, 2, size=(3, 784))
    write_amat(tmp_path / "a.amat", rows)
    images = bm.parse_amat(tmp_path / "a.amat", rows=3)
    assert images.shape == (3, 1, 28, 28) and images.dtype == torch.uint8
    np.testing.assert_array_equal(images.reshape(3, -1).numpy(), rows)


@pytest.mark.parametrize("content, message", [
    ("0 1\n", "not a binarized MNIST"),
    (" ".join(["2"] * 784) + "\n", "values other than 0/1"),
    (",".join(["0"] * 784) + "\n", "bad separators"),
])
def test_amat_parser_refuses_other_files(tmp_path, content, message):
    (tmp_path / "bad.amat").write_text(content)
    with pytest.raises(GenbenchError, match=message):
        bm.parse_amat(tmp_path / "bad.amat")


def test_amat_parser_checks_the_row_count(tmp_path):
    write_amat(tmp_path / "a.amat", np.zeros((2, 784), dtype=int))
    with pytest.raises(GenbenchError, match="expected 5 rows, found 2"):
        bm.parse_amat(tmp_path / "a.amat", rows=5)


def _sha1(path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def test_download_fetches_and_checksums(tmp_path, http_dir):
    server, url = http_dir
    source = server / "f.amat"
    write_amat(source, np.ones((1, 784), dtype=int))
    root = tmp_path / "root"
    spec = RemoteFile("sub/f.amat", url + "f.amat", sha1=_sha1(source))
    [path] = ensure_files("demo", root, [spec], download=True)
    assert path.read_bytes() == source.read_bytes()
    assert [p.name for p in path.parent.iterdir()] == ["f.amat"]  # no temporary file left


def test_download_with_a_wrong_checksum_is_refused_and_leaves_nothing(tmp_path, http_dir):
    server, url = http_dir
    write_amat(server / "f.amat", np.ones((1, 784), dtype=int))
    spec = RemoteFile("f.amat", url + "f.amat", sha1="0" * 40)
    with pytest.raises(GenbenchError, match="checksum mismatch"):
        ensure_files("demo", tmp_path / "root", [spec], download=True)
    assert not (tmp_path / "root").exists()  # neither the file nor the folder it would have gone to


def test_a_failed_download_leaves_no_folder_it_made(tmp_path, http_dir):
    _, url = http_dir
    (tmp_path / "root").mkdir()
    spec = RemoteFile("a/b/f.amat", url + "nowhere/f.amat")  # 404
    with pytest.raises(GenbenchError, match="download failed"):
        ensure_files("demo", tmp_path / "root" / "new", [spec], download=True)
    assert list((tmp_path / "root").iterdir()) == []


def test_a_failed_torchvision_download_leaves_no_folder_it_made(tmp_path, monkeypatch, http_dir):
    _, url = http_dir
    monkeypatch.setattr(MNIST, "mirrors", [url + "nowhere/"])  # every file a 404
    with pytest.raises(GenbenchError, match="download failed"):
        load_mnist8(tmp_path / "root", download=True)
    assert not (tmp_path / "root").exists()


def test_missing_files_offline_give_one_clear_error(tmp_path, http_dir):
    _, url = http_dir
    spec = RemoteFile("x/f.amat", url + "nowhere/f.amat")
    with pytest.raises(GenbenchError) as err:
        ensure_files("demo", tmp_path / "root", [spec], download=True)
    text = str(err.value)
    assert "x/f.amat" in text and str(tmp_path / "root") in text and "\n" not in text
    with pytest.raises(GenbenchError, match="download disabled"):
        ensure_files("demo", tmp_path / "root", [spec], download=False)


def test_binarized_mnist_downloads_from_its_canonical_files(tmp_path, monkeypatch, http_dir):
    server, url = http_dir
    files = {}
    for split, rows in (("train", 5), ("valid", 2), ("test", 3)):
        name = f"binarized_mnist_{split}.amat"
        write_amat(server / name, np.random.default_rng(1).integers(0, 2, size=(rows, 784)))
        files[split] = RemoteFile(f"binarized_mnist/{name}", url + name,
                                  sha1=_sha1(server / name))
    monkeypatch.setattr(bm, "FILES", files)
    monkeypatch.setattr(bm, "ROWS", {"train": 5, "valid": 2, "test": 3})
    ds = load_dataset("binarized_mnist", tmp_path / "root")
    assert {k: v.shape[0] for k, v in ds.splits.items()} == {"train": 5, "valid": 2, "test": 3}
    assert set(ds.eval_tensor("test").unique().tolist()) <= {0.0, 1.0}


def test_canonical_binarized_mnist_urls_are_pinned():
    assert all(f.url.startswith(bm.BASE_URL) and len(f.sha1) == 40 for f in bm.FILES.values())


def _idx_images(n: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    return struct.pack(">IIII", 2051, n, 28, 28) + pixels.tobytes()


def _idx_labels(n: int) -> bytes:
    return struct.pack(">II", 2049, n) + (np.arange(n) % 10).astype(np.uint8).tobytes()


def fake_mnist_mirror(http_dir, monkeypatch):
    """A loopback 'mirror' of the four MNIST files, made here, with their md5s."""
    server, url = http_dir
    contents = {
        "train-images-idx3-ubyte.gz": _idx_images(30, 0),
        "train-labels-idx1-ubyte.gz": _idx_labels(30),
        "t10k-images-idx3-ubyte.gz": _idx_images(12, 1),
        "t10k-labels-idx1-ubyte.gz": _idx_labels(12),
    }
    resources = []
    for name, raw in contents.items():
        (server / name).write_bytes(gzip.compress(raw))
        resources.append((name, hashlib.md5((server / name).read_bytes()).hexdigest()))
    monkeypatch.setattr(MNIST, "mirrors", [url])
    monkeypatch.setattr(MNIST, "resources", resources)


def test_mnist_downloads_through_torchvision_and_binarizes(tmp_path, monkeypatch, http_dir):
    fake_mnist_mirror(http_dir, monkeypatch)
    root = tmp_path / "root"
    ds = load_dynamic_mnist(root, download=True)
    assert ds.splits["train"].shape == (30, 1, 28, 28) and ds.size("test") == 12
    # the test split is binarized once, with a fixed seed: the same on every load
    again = load_dynamic_mnist(root, download=False)
    assert torch.equal(ds.splits["test"], again.splits["test"])
    assert set(ds.splits["test"].unique().tolist()) <= {0, 1}
    # training batches are re-binarized every time they are drawn
    idx = torch.arange(30)
    a, b = ds.train_batch(idx), ds.train_batch(idx)
    assert set(a.unique().tolist()) <= {0.0, 1.0} and not torch.equal(a, b)
    # an evaluation view of the gray training split is one fixed binarized draw
    train_view = ds.eval_tensor("train")
    assert set(train_view.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(train_view, ds.eval_tensor("train"))
    gray = load_mnist8(root, download=False)
    assert gray.kind == "gray8" and float(gray.eval_tensor("test").max()) <= 1.0


def test_dynamic_binarization_matches_gray_levels_on_average(tmp_path, monkeypatch, http_dir):
    fake_mnist_mirror(http_dir, monkeypatch)
    ds = load_dynamic_mnist(tmp_path / "root", download=True)
    idx = torch.arange(30)
    mean = torch.stack([ds.train_batch(idx) for _ in range(400)]).mean(0)
    torch.testing.assert_close(mean, ds.splits["train"].float() / 255, atol=0.12, rtol=0)


def test_missing_mnist_names_the_files(tmp_path):
    with pytest.raises(GenbenchError) as err:
        load_dataset("mnist", tmp_path, download=False)
    assert "train-images-idx3-ubyte" in str(err.value) and str(tmp_path) in str(err.value)


def test_unknown_dataset_lists_the_valid_ones():
    valid = ("valid: binarized_mnist, cifar10, dsprites, dsprites_rendered, fashion_mnist, "
             "fashion_mnist_binary, mnist")
    with pytest.raises(GenbenchError, match=f"unknown dataset 'cifar'; {valid}"):
        DATASETS["cifar"]


def test_toy_set_is_deterministic_and_binary():
    a, b = load_dataset("toy"), load_dataset("toy")
    assert torch.equal(a.splits["train"], b.splits["train"])
    assert a.shape == (1, 8, 8) and set(a.eval_tensor("test").unique().tolist()) == {0.0, 1.0}
    assert DATASETS["toy"].shape == a.shape
