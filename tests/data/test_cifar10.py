"""CIFAR-10 through torchvision, on a small fake of its python-pickle batches made here.

CIFAR-10 is not on the dev machines and they are offline: the tests write batches in the
exact layout torchvision reads (``cifar-10-batches-py/data_batch_1..5``, ``test_batch``,
``batches.meta``) and point torchvision's md5 table at them, so its integrity check runs.
"""

from __future__ import annotations

import hashlib
import pickle
import tarfile

import numpy as np
import pytest
import torch
from torchvision.datasets import CIFAR10

from genbench.core.errors import GenbenchError
from genbench.data import DATASETS, load_dataset
from genbench.data.base import ImageDataset
from genbench.data.cifar10 import RAW_FILES

PER_BATCH = 4
TEST_SIZE = 6
LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _write_batch(path, rows: np.ndarray, labels: list[int]) -> None:
    with open(path, "wb") as f:
        pickle.dump({"batch_label": path.name, "data": rows, "labels": labels}, f)


def write_fake_cifar10(root, monkeypatch) -> dict[str, tuple[np.ndarray, list[int]]]:
    """Rows of 3072 bytes (the R plane, then G, then B, each row-major) as CIFAR-10 stores them.

    torchvision's md5 table is pointed at these files; returns each file's rows and labels.
    """
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = TEST_SIZE if name == "test_batch" else PER_BATCH
        rows = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).tolist()
        _write_batch(folder / name, rows, labels)
        written[name] = (rows, labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": LABEL_NAMES, "num_cases_per_batch": PER_BATCH}, f)
    md5 = {name: _md5(folder / name) for name in [*written, "batches.meta"]}
    monkeypatch.setattr(CIFAR10, "train_list", [[n, md5[n]] for n in written if n != "test_batch"])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5["batches.meta"]})
    return written


def test_cifar10_loads_through_the_registry_as_8bit_rgb(tmp_path, monkeypatch):
    written = write_fake_cifar10(tmp_path, monkeypatch)
    data = load_dataset("cifar10", root=tmp_path, download=False)
    assert data.kind == "rgb8" and data.shape == DATASETS["cifar10"].shape == (3, 32, 32)
    assert data.size("train") == 5 * PER_BATCH and data.size("test") == TEST_SIZE
    assert data.splits["train"].dtype == torch.uint8 and data.labels["test"].dtype == torch.long
    # train is the five batches in order; each row is the R plane, then G, then B
    rows, labels = written["data_batch_2"]
    image = data.splits["train"][PER_BATCH + 1].numpy()
    planes = rows[1].reshape(3, 32, 32)
    for channel in range(3):
        np.testing.assert_array_equal(image[channel], planes[channel])
    assert data.labels["train"][PER_BATCH:2 * PER_BATCH].tolist() == labels
    test_rows, test_labels = written["test_batch"]
    assert data.labels["test"].tolist() == test_labels
    # model input: 8-bit levels as pixel / 255 floats in [0, 1], the same from both views
    x = data.eval_tensor("test")
    assert x.dtype == torch.float32 and x.shape == (TEST_SIZE, 3, 32, 32)
    torch.testing.assert_close(x, torch.from_numpy(test_rows).float().view(TEST_SIZE, 3, 32, 32) / 255)
    assert torch.equal(data.train_batch(torch.arange(3)), data.splits["train"][:3].float() / 255)


def test_rgb8_maps_the_extreme_levels_to_0_and_1():
    raw = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1)
    data = ImageDataset("colors", "rgb8", {"train": raw, "test": raw})
    assert data.eval_tensor("test").flatten().tolist() == pytest.approx([0.0, 0.2, 1.0])


def test_cifar10_downloads_through_torchvision(tmp_path, monkeypatch, http_dir):
    server, url = http_dir
    written = write_fake_cifar10(tmp_path / "made", monkeypatch)
    with tarfile.open(server / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "made" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    monkeypatch.setattr(CIFAR10, "url", url + "cifar-10-python.tar.gz")
    monkeypatch.setattr(CIFAR10, "tgz_md5", _md5(server / "cifar-10-python.tar.gz"))
    root = tmp_path / "root"
    data = load_dataset("cifar10", root=root)
    assert all((root / f).exists() for f in RAW_FILES)
    assert data.labels["test"].tolist() == written["test_batch"][1]
    again = load_dataset("cifar10", root=root, download=False)
    assert torch.equal(data.splits["train"], again.splits["train"])


def test_missing_cifar10_is_one_error_naming_the_files(tmp_path):
    with pytest.raises(GenbenchError) as err:
        load_dataset("cifar10", root=tmp_path, download=False)
    text = str(err.value)
    assert "\n" not in text and "download disabled" in text and str(tmp_path) in text
    for name in ("cifar-10-batches-py/data_batch_1", "data_batch_5", "test_batch", "batches.meta"):
        assert name in text


def test_cifar10_offline_download_is_one_clear_error(tmp_path, monkeypatch, http_dir):
    _, url = http_dir
    monkeypatch.setattr(CIFAR10, "url", url + "nowhere/cifar-10-python.tar.gz")
    with pytest.raises(GenbenchError) as err:
        load_dataset("cifar10", root=tmp_path / "root")
    text = str(err.value)
    assert "\n" not in text and "download failed" in text and "cifar-10-batches-py/test_batch" in text


def test_cifar10_files_failing_the_md5_are_refused(tmp_path, monkeypatch):
    write_fake_cifar10(tmp_path, monkeypatch)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a batch")
    with pytest.raises(GenbenchError, match="do not match torchvision's md5 checksums"):
        load_dataset("cifar10", root=tmp_path, download=False)


def test_a_downloaded_archive_failing_its_md5_is_refused(tmp_path, monkeypatch, http_dir):
    server, url = http_dir
    write_fake_cifar10(tmp_path / "made", monkeypatch)
    with tarfile.open(server / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "made" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    monkeypatch.setattr(CIFAR10, "url", url + "cifar-10-python.tar.gz")
    monkeypatch.setattr(CIFAR10, "tgz_md5", "0" * 32)  # the served archive is not the one expected
    root = tmp_path / "root"
    with pytest.raises(GenbenchError) as err:
        load_dataset("cifar10", root=root)
    assert "\n" not in str(err.value) and "download failed" in str(err.value)
    assert not (root / "cifar-10-batches-py").exists()


# CIFAR-10's published archive (https://www.cs.toronto.edu/~kriz/cifar.html gives its md5) and the
# md5 of each file in it: the checks every test above points elsewhere, pinned here so that a
# torchvision release changing them cannot go unnoticed.
PUBLISHED = {
    "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "tgz_md5": "c58f30108f718f92721af3b95e74349a",
    "files": {
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
        "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    },
}


def test_torchvision_checks_cifar10_against_its_published_md5s():
    assert CIFAR10.url == PUBLISHED["url"] and CIFAR10.tgz_md5 == PUBLISHED["tgz_md5"]
    pinned = {name: md5 for name, md5 in CIFAR10.train_list + CIFAR10.test_list}
    pinned[CIFAR10.meta["filename"]] = CIFAR10.meta["md5"]
    assert pinned == PUBLISHED["files"]
    assert sorted(f"cifar-10-batches-py/{name}" for name in pinned) == sorted(RAW_FILES)
