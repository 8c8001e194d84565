"""Fashion-MNIST on small gzipped idx files the tests write: reading, refusing, downloading.

The canonical files are not downloadable here: the tests write files in the exact layout
(``FashionMNIST/raw/*-ubyte.gz``, MNIST's idx format) and serve them over HTTP on loopback.
"""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pytest
import torch
from torchvision.datasets import FashionMNIST

from genbench.core.errors import GenbenchError
from genbench.data import DATASETS, load_dataset
from genbench.data import fashion_mnist as fm
from genbench.data.download import RemoteFile

SMALL_COUNTS = {"train": 6, "test": 4}


def write_idx_gz(path, magic: bytes, array: np.ndarray, extra: bytes = b"", dims=None) -> None:
    """An idx file: ``magic``, one big-endian uint32 per dimension, the bytes; gzipped."""
    path.parent.mkdir(parents=True, exist_ok=True)
    dims = array.shape if dims is None else dims
    header = magic + b"".join(int(d).to_bytes(4, "big") for d in dims)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes() + extra)


def write_small_fashion(root) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The four files under ``root/FashionMNIST/raw`` with random images and labels; returns them."""
    rng = np.random.default_rng(0)
    written = {}
    for split, (image_file, label_file) in fm.FILES.items():
        n = SMALL_COUNTS[split]
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_idx_gz(root / image_file.relpath, fm.IMAGES_MAGIC, images)
        write_idx_gz(root / label_file.relpath, fm.LABELS_MAGIC, labels)
        written[split] = (images, labels)
    return written


@pytest.fixture
def small_counts(monkeypatch):
    monkeypatch.setattr(fm, "COUNTS", SMALL_COUNTS)


def test_fashion_mnist_loads_as_8bit_gray_with_labels(tmp_path, small_counts):
    written = write_small_fashion(tmp_path)
    data = load_dataset("fashion_mnist", root=tmp_path, download=False)
    assert data.kind == "gray8" and data.shape == DATASETS["fashion_mnist"].shape == (1, 28, 28)
    assert data.size("train") == 6 and data.size("test") == 4 and data.splits["train"].dtype == torch.uint8
    np.testing.assert_array_equal(data.splits["train"][:, 0].numpy(), written["train"][0])
    assert data.labels["test"].dtype == torch.long
    assert data.labels["test"].tolist() == written["test"][1].tolist()
    torch.testing.assert_close(data.eval_tensor("test"),
                               torch.from_numpy(written["test"][0]).float().unsqueeze(1) / 255)
    assert data.feature_source == "fashion_mnist"


def test_the_binary_variant_is_dynamically_binarized_like_mnist(tmp_path, small_counts):
    written = write_small_fashion(tmp_path)
    data = load_dataset("fashion_mnist_binary", root=tmp_path, download=False)
    assert data.kind == "binary" and data.dynamic_binarization and data.feature_source == "fashion_mnist"
    np.testing.assert_array_equal(data.splits["train"][:, 0].numpy(), written["train"][0])  # gray, re-sampled
    assert set(data.splits["test"].unique().tolist()) <= {0, 1}
    assert set(data.train_batch(torch.arange(6)).unique().tolist()) <= {0.0, 1.0}
    again = load_dataset("fashion_mnist_binary", root=tmp_path, download=False)
    assert torch.equal(data.splits["test"], again.splits["test"])  # one fixed draw (seed 0)


def test_present_files_are_read_as_they_are_without_their_checksum(tmp_path, small_counts):
    """A recompressed copy (not the canonical .gz bytes, as Debian's) loads, and nothing is written."""
    write_small_fashion(tmp_path)
    folder = tmp_path / fm.FOLDER
    canonical = {f.md5 for pair in fm.FILES.values() for f in pair}
    for path in folder.iterdir():
        assert hashlib.md5(path.read_bytes()).hexdigest() not in canonical
        path.chmod(0o444)
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    load_dataset("fashion_mnist", root=tmp_path, download=True)  # present: never fetched
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


@pytest.mark.parametrize("magic, dims, extra, message", [
    (fm.LABELS_MAGIC, None, b"", "not an idx file of 3-d unsigned bytes"),
    (fm.IMAGES_MAGIC, (4, 28, 27), b"", r"idx dimensions \(4, 28, 27\), expected \(4, 28, 28\)"),
    (fm.IMAGES_MAGIC, None, b"\x00", "its header says 3136 \\(or more\\)"),
])
def test_a_wrong_idx_file_is_refused(tmp_path, magic, dims, extra, message):
    images = np.zeros((4, 28, 28), dtype=np.uint8)
    write_idx_gz(tmp_path / "x.gz", magic, images, extra, dims)
    with pytest.raises(GenbenchError, match=message):
        fm.read_idx(tmp_path / "x.gz", fm.IMAGES_MAGIC, (4, 28, 28))


def test_a_truncated_or_plain_file_is_refused(tmp_path):
    write_idx_gz(tmp_path / "short.gz", fm.IMAGES_MAGIC, np.zeros((3, 28, 28)), dims=(4, 28, 28))
    with pytest.raises(GenbenchError, match="2352 bytes of data, its header says 3136"):
        fm.read_idx(tmp_path / "short.gz", fm.IMAGES_MAGIC, (4, 28, 28))
    (tmp_path / "plain.gz").write_bytes(b"\x00\x00\x08\x03" + bytes(100))
    with pytest.raises(GenbenchError, match="not a readable gzip file"):
        fm.read_idx(tmp_path / "plain.gz", fm.IMAGES_MAGIC, (4, 28, 28))


def test_labels_outside_the_ten_classes_are_refused(tmp_path, small_counts):
    write_small_fashion(tmp_path)
    write_idx_gz(tmp_path / fm.FILES["test"][1].relpath, fm.LABELS_MAGIC, np.array([0, 1, 10, 2]))
    with pytest.raises(GenbenchError, match="labels outside 0..9"):
        load_dataset("fashion_mnist", root=tmp_path, download=False)


def test_missing_files_offline_are_one_error_naming_them(tmp_path):
    with pytest.raises(GenbenchError) as err:
        load_dataset("fashion_mnist", root=tmp_path, download=False)
    text = str(err.value)
    assert "\n" not in text and "download disabled" in text and str(tmp_path) in text
    assert "FashionMNIST/raw/train-images-idx3-ubyte.gz" in text


def _served(monkeypatch, server, url, md5_of) -> None:
    """Point the four files at ``url`` (where ``server`` serves them) with the checksums ``md5_of`` gives."""
    files = {split: tuple(RemoteFile(f.relpath, url + f.relpath.rsplit("/", 1)[1], md5=md5_of(server, f))
                          for f in pair) for split, pair in fm.FILES.items()}
    monkeypatch.setattr(fm, "FILES", files)


def _canonical_md5(server, spec) -> str:
    return hashlib.md5((server / spec.relpath.rsplit("/", 1)[1]).read_bytes()).hexdigest()


def test_a_download_matching_its_checksums_is_accepted(tmp_path, monkeypatch, small_counts, http_dir):
    server, url = http_dir
    written = write_small_fashion(tmp_path / "made")
    for path in (tmp_path / "made" / fm.FOLDER).iterdir():
        (server / path.name).write_bytes(path.read_bytes())
    _served(monkeypatch, server, url, _canonical_md5)
    root = tmp_path / "root"
    data = load_dataset("fashion_mnist", root=root)
    assert sorted(p.name for p in (root / fm.FOLDER).iterdir()) == sorted(p.name for p in server.iterdir())
    assert data.labels["train"].tolist() == written["train"][1].tolist()


def test_a_download_with_a_wrong_checksum_is_refused_and_leaves_nothing(tmp_path, monkeypatch, small_counts,
                                                                          http_dir):
    server, url = http_dir
    write_small_fashion(tmp_path / "made")
    for path in (tmp_path / "made" / fm.FOLDER).iterdir():
        (server / path.name).write_bytes(path.read_bytes())
    _served(monkeypatch, server, url, lambda *_: "0" * 32)
    root = tmp_path / "root"
    with pytest.raises(GenbenchError, match="checksum mismatch .*train-images-idx3-ubyte.gz; refused"):
        load_dataset("fashion_mnist", root=root)
    assert not root.exists()


def test_the_canonical_files_and_md5s_are_torchvisions():
    ours = {f.relpath.rsplit("/", 1)[1]: (f.url, f.md5) for pair in fm.FILES.values() for f in pair}
    theirs = {name: (FashionMNIST.mirrors[0] + name, md5) for name, md5 in FashionMNIST.resources}
    assert ours == theirs
    assert all(f.relpath.startswith("FashionMNIST/raw/") for pair in fm.FILES.values() for f in pair)
