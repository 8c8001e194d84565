"""Samples from files, for scoring without a model: a folder of PNGs or an ``.npz`` array.

Both become uint8 images ``[N, C, H, W]`` (C = 1 gray or 3 RGB). Anything genbench cannot
read unambiguously (an empty folder, mixed image sizes, a palette PNG, floats outside
[0, 1], a pickled array) is one clear GenbenchError.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from genbench.core.errors import GenbenchError

#: keys tried, in order, in an .npz file with several arrays
NPZ_KEYS = ("samples", "images", "x", "arr_0")


def _png_array(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.mode not in ("L", "RGB", "1"):
                raise GenbenchError(f"{path}: PNG mode {image.mode!r}; expected 8-bit gray (L) or RGB")
            array = np.asarray(image.convert("L") if image.mode == "1" else image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise GenbenchError(f"{path}: not a readable PNG ({exc})") from None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def read_png_folder(folder: Path) -> Tensor:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file())
    if not files:
        raise GenbenchError(f"{folder}: no .png files")
    arrays = [_png_array(files[0])]
    for path in files[1:]:
        array = _png_array(path)
        if array.shape != arrays[0].shape:
            raise GenbenchError(f"{folder}: mixed image sizes ({files[0].name} is "
                                f"{_shape(arrays[0].shape)}, {path.name} is {_shape(array.shape)})")
        arrays.append(array)
    return torch.from_numpy(np.stack(arrays))


def _shape(chw: tuple[int, ...]) -> str:
    return "x".join(map(str, chw))


def _npz_array(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if not names:
                raise GenbenchError(f"{path}: no arrays")
            key = names[0] if len(names) == 1 else next((k for k in NPZ_KEYS if k in names), None)
            if key is None:
                raise GenbenchError(f"{path}: several arrays ({', '.join(names)}); name the samples "
                                    f"one of {', '.join(NPZ_KEYS)}")
            return archive[key]
    except ValueError as exc:  # object arrays need pickle, which is refused
        raise GenbenchError(f"{path}: unreadable without pickle ({exc})") from None
    except OSError as exc:
        raise GenbenchError(f"{path}: not a readable .npz file ({exc})") from None


def _as_nchw(array: np.ndarray, path: Path) -> np.ndarray:
    """[N, H, W], [N, C, H, W] or [N, H, W, C] with C in (1, 3) as [N, C, H, W]."""
    if array.ndim == 3:
        return array[:, None]
    if array.ndim == 4 and array.shape[1] in (1, 3):
        return array
    if array.ndim == 4 and array.shape[3] in (1, 3):
        return array.transpose(0, 3, 1, 2)
    raise GenbenchError(f"{path}: array of shape {list(array.shape)}; expected [N, H, W], "
                        "[N, C, H, W] or [N, H, W, C] with 1 or 3 channels")


def _as_uint8(array: np.ndarray, path: Path) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind == "b":
        return array.astype(np.uint8) * 255
    if array.dtype.kind != "f":
        raise GenbenchError(f"{path}: dtype {array.dtype}; expected uint8 levels or floats in [0, 1]")
    lo, hi = float(np.nanmin(array)), float(np.nanmax(array))
    if np.isnan(array).any() or lo < 0 or hi > 1:
        raise GenbenchError(f"{path}: float samples must lie in [0, 1], found values in [{lo:.4g}, {hi:.4g}]")
    return np.round(array * 255).astype(np.uint8)


def read_npz(path: Path) -> Tensor:
    array = _npz_array(path)
    if array.size == 0 or (array.ndim >= 1 and array.shape[0] == 0):
        raise GenbenchError(f"{path}: no samples")
    return torch.from_numpy(np.ascontiguousarray(_as_uint8(_as_nchw(array, path), path)))


def read_samples(path: Path) -> Tensor:
    """uint8 ``[N, C, H, W]`` from a folder of PNGs or an .npz file."""
    path = Path(path)
    if path.is_dir():
        return read_png_folder(path)
    if path.suffix == ".npz" and path.is_file():
        return read_npz(path)
    raise GenbenchError(f"{path}: expected a folder of .png files or an .npz file")


def is_sample_set(path: Path) -> bool:
    """Whether ``genbench score`` reads this path as samples rather than a model checkpoint."""
    path = Path(path)
    if path.suffix == ".npz":
        return True
    return path.is_dir() and not (path / "checkpoint.safetensors").exists()


def check_shape(images: Tensor, shape: tuple[int, ...], dataset: str) -> None:
    if tuple(images.shape[1:]) != tuple(shape):
        raise GenbenchError(f"samples are {_shape(tuple(images.shape[1:]))} images, data set {dataset} has "
                            f"{_shape(tuple(shape))}")
