"""Omniglot 28x28 of Burda et al. (2015): chardata.mat, 24345 train / 8070 test, dynamically binarized.

The file holds gray levels in [0, 1] as columns of 784 values (MATLAB arrays ``data`` and
``testdata``, one image per column). A column lists its image column by column (MATLAB's
Fortran order): Burda's ``datasets.py`` undoes that with ``reshape((-1, 28*28),
order='fortran')``, and so does :func:`columns_to_images`, so pixel ``[row, col]`` is
``column[28 * col + row]`` and characters come out upright.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
import torch

from genbench.core.errors import GenbenchError
from genbench.data.base import EVAL_BINARIZATION_SEED, ImageDataset, binarize_once
from genbench.data.download import RemoteFile, ensure_files

URL = "https://raw.githubusercontent.com/yburda/iwae/master/datasets/OMNIGLOT/chardata.mat"

#: No checksum is pinned: no independent record of chardata.mat's md5/sha1 was found, so a
#: download is accepted on its content checks alone (keys, shapes, values in [0, 1]).
FILE = RemoteFile("omniglot/chardata.mat", URL)

#: MATLAB variable -> genbench split, and the number of images each must hold
KEYS = {"train": "data", "test": "testdata"}
COUNTS = {"train": 24345, "test": 8070}
SIDE = 28


def columns_to_images(columns: np.ndarray) -> np.ndarray:
    """``[784, N]`` column-major images -> ``[N, 28, 28]`` upright (Burda's Fortran-order reshape)."""
    return columns.T.reshape(-1, SIDE, SIDE).transpose(0, 2, 1)


def read_chardata(path: Path, counts: dict[str, int] | None = None) -> dict[str, torch.Tensor]:
    """uint8 gray levels ``round(255 * x)`` as ``[N, 1, 28, 28]`` per split; anything else is refused."""
    counts = COUNTS if counts is None else counts
    try:
        mat = scipy.io.loadmat(str(path), variable_names=list(KEYS.values()))
    except Exception as exc:  # not a MATLAB file, truncated, v7.3 (HDF5) ...
        raise GenbenchError(f"{path}: not Burda's Omniglot chardata.mat ({exc})") from None
    out = {}
    for split, key in KEYS.items():
        columns = mat.get(key)
        expected = (SIDE * SIDE, counts[split])
        if not isinstance(columns, np.ndarray) or columns.shape != expected:
            found = getattr(columns, "shape", "missing")
            raise GenbenchError(f"{path}: {key!r} should be a {expected} array, found {found}")
        if columns.dtype.kind not in "fiu":
            raise GenbenchError(f"{path}: {key!r} holds {columns.dtype}, not gray levels")
        values = columns.astype(np.float64)
        if not (np.isfinite(values).all() and values.min() >= 0.0 and values.max() <= 1.0):
            raise GenbenchError(f"{path}: {key!r} has values outside [0, 1]")
        gray = np.rint(values * 255.0).astype(np.uint8)
        out[split] = torch.from_numpy(np.ascontiguousarray(columns_to_images(gray))).unsqueeze(1)
    return out


def load_omniglot(root: Path, download: bool) -> ImageDataset:
    [path] = ensure_files("omniglot", root, [FILE], download)
    gray = read_chardata(path)
    return ImageDataset(
        name="omniglot",
        kind="binary",
        splits={"train": gray["train"], "test": binarize_once(gray["test"], EVAL_BINARIZATION_SEED)},
        dynamic_binarization=True,
        description="Omniglot 28x28 (Burda et al. 2015), dynamically binarized: 24345 train "
        f"re-sampled per batch, 8070 test binarized once (seed {EVAL_BINARIZATION_SEED})",
        source=URL,
    )
