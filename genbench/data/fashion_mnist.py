"""Fashion-MNIST (Xiao et al. 2017): 8-bit gray (``fashion_mnist``) and dynamically binarized
(``fashion_mnist_binary``), 60000 train / 10000 test 28x28 images of 10 clothing classes.

The four files are MNIST's idx format, gzipped, under ``FashionMNIST/raw`` (torchvision's
layout). A download comes from the canonical mirror and must match torchvision's md5 of the
canonical ``.gz``; files already there are read as they are (never written) and accepted on
their content: idx magic numbers, dimensions, counts and label values. A recompressed copy
(another ``.gz`` of the same bytes, as Debian's) therefore loads, and a wrong file does not.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from genbench.core.errors import GenbenchError
from genbench.data.base import EVAL_BINARIZATION_SEED, ImageDataset, binarize_once
from genbench.data.download import RemoteFile, ensure_files

#: torchvision's ``FashionMNIST.mirrors`` (Zalando's bucket)
MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FOLDER = "FashionMNIST/raw"
#: split -> (images, labels); md5 of the canonical .gz files as torchvision's FashionMNIST lists them
FILES = {
    "train": (RemoteFile(f"{FOLDER}/train-images-idx3-ubyte.gz", MIRROR + "train-images-idx3-ubyte.gz",
                         md5="8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
              RemoteFile(f"{FOLDER}/train-labels-idx1-ubyte.gz", MIRROR + "train-labels-idx1-ubyte.gz",
                         md5="25c81989df183df01b3e8a0aad5dffbe")),
    "test": (RemoteFile(f"{FOLDER}/t10k-images-idx3-ubyte.gz", MIRROR + "t10k-images-idx3-ubyte.gz",
                        md5="bef4ecab320f06d8554ea6380940ec79"),
             RemoteFile(f"{FOLDER}/t10k-labels-idx1-ubyte.gz", MIRROR + "t10k-labels-idx1-ubyte.gz",
                        md5="bb300cfdad3c16e7a12a480ee83cd310")),
}
COUNTS = {"train": 60000, "test": 10000}
SIDE = 28
N_CLASSES = 10
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot")
#: idx magic numbers: two zero bytes, type 0x08 (unsigned byte), number of dimensions
IMAGES_MAGIC = bytes([0, 0, 8, 3])
LABELS_MAGIC = bytes([0, 0, 8, 1])
#: the labelled data set whose LeNet scores every Fashion-MNIST variant
FEATURE_SOURCE = "fashion_mnist"


def read_idx(path: Path, magic: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """The uint8 array of a gzipped idx file, which must have ``magic`` and exactly ``shape``.

    The header is checked before the body is read, and no more than ``shape`` bytes are read
    (plus one to see that the file ends there): a wrong or oversized file costs no memory."""
    header_size = len(magic) + 4 * len(shape)
    expected = int(np.prod(shape))
    try:
        with gzip.open(path, "rb") as f:
            header = f.read(header_size)
            if len(header) < header_size or header[:4] != magic:
                raise GenbenchError(f"{path}: not an idx file of {len(shape)}-d unsigned bytes "
                                    f"(magic {header[:4].hex() or 'missing'}, expected {magic.hex()})")
            dims = tuple(int.from_bytes(header[4 + 4 * i:8 + 4 * i], "big") for i in range(len(shape)))
            if dims != shape:
                raise GenbenchError(f"{path}: idx dimensions {dims}, expected {shape}")
            body = f.read(expected + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise GenbenchError(f"{path}: not a readable gzip file ({exc})") from None
    if len(body) != expected:
        raise GenbenchError(f"{path}: {len(body)} bytes of data, its header says {expected}"
                            + (" (or more)" if len(body) > expected else ""))
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def read_fashion_mnist(root: Path, download: bool) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """uint8 images ``[N, 1, 28, 28]`` and long labels for train and test (files fetched if missing)."""
    out = {}
    for split, (image_file, label_file) in FILES.items():
        images_path, labels_path = ensure_files("fashion_mnist", root, [image_file, label_file], download)
        n = COUNTS[split]
        images = read_idx(images_path, IMAGES_MAGIC, (n, SIDE, SIDE))
        labels = read_idx(labels_path, LABELS_MAGIC, (n,))
        if labels.max(initial=0) >= N_CLASSES:
            raise GenbenchError(f"{labels_path}: labels outside 0..{N_CLASSES - 1}")
        out[split] = (torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))
    return out


def load_fashion_mnist(root: Path, download: bool) -> ImageDataset:
    raw = read_fashion_mnist(root, download)
    return ImageDataset(
        name="fashion_mnist",
        kind="gray8",
        splits={s: images for s, (images, _) in raw.items()},
        labels={s: labels for s, (_, labels) in raw.items()},
        feature_source=FEATURE_SOURCE,
        description="Fashion-MNIST (Xiao et al. 2017), 8-bit gray levels as pixel/255 in [0, 1]",
        source=MIRROR,
    )


def load_fashion_mnist_binary(root: Path, download: bool) -> ImageDataset:
    raw = read_fashion_mnist(root, download)
    return ImageDataset(
        name="fashion_mnist_binary",
        kind="binary",
        splits={"train": raw["train"][0], "test": binarize_once(raw["test"][0], EVAL_BINARIZATION_SEED)},
        labels={s: labels for s, (_, labels) in raw.items()},
        dynamic_binarization=True,
        feature_source=FEATURE_SOURCE,
        description="Fashion-MNIST, dynamically binarized as mnist: train re-sampled per batch, test "
        f"binarized once (seed {EVAL_BINARIZATION_SEED})",
        source=MIRROR,
    )
