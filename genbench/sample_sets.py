"""Samples from files, for scoring without a model: a folder of PNGs or an ``.npz`` array.

Both become uint8 images ``[N, C, H, W]`` (C = 1 gray or 3 RGB). Anything genbench cannot
read unambiguously (an empty folder, mixed image sizes, a palette PNG, floats outside
[0, 1], a pickled array) is one clear GenbenchError.

The files are untrusted, so what they declare is checked before their data are decoded: an
``.npz`` member's ``.npy`` header (shape, dtype, order) is read from the zip stream and the
count, image size and dtype are checked against the data set and ``max_samples`` before the
array is inflated, then the array is read in chunks of ``CHUNK_BYTES`` and converted to uint8
chunk by chunk; a PNG's size and mode are read from its header before its pixels, and a
decompression bomb is one line.
"""

from __future__ import annotations

import math
import struct
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from genbench.core.errors import GenbenchError

#: keys tried, in order, in an .npz file with several arrays
NPZ_KEYS = ("samples", "images", "x", "arr_0")
#: the most samples a set may hold unless ``--max-samples`` says otherwise
DEFAULT_MAX_SAMPLES = 100_000
#: bytes of an .npz array read and converted at a time (a float array never exists whole in memory)
CHUNK_BYTES = 64 << 20
#: the most pixels of one PNG (a data set's images are far smaller; PIL's own bomb limit is 89M)
MAX_PNG_PIXELS = 4096 * 4096
#: channels of the PNG modes genbench reads
PNG_CHANNELS = {"L": 1, "1": 1, "RGB": 3}
#: what a corrupt zip member or PNG raises while it is decoded
DECODE_ERRORS = (OSError, ValueError, EOFError, zlib.error, struct.error, SyntaxError, RuntimeError,
                 NotImplementedError, zipfile.BadZipFile)


def _shape(chw: tuple[int, ...]) -> str:
    return "x".join(map(str, chw))


def check_shape(chw: tuple[int, ...], expected: tuple[int, ...] | None, dataset: str | None) -> None:
    """Images of shape ``chw`` against the data set's (nothing to check where none is given)."""
    if expected is not None and tuple(chw) != tuple(expected):
        raise GenbenchError(f"samples are {_shape(tuple(chw))} images, data set {dataset} has "
                            f"{_shape(tuple(expected))}")


def _check_count(n: int, max_samples: int, path: Path) -> None:
    if n == 0:
        raise GenbenchError(f"{path}: no samples")
    if n > max_samples:
        raise GenbenchError(f"{path}: {n:,} samples, over the limit of {max_samples:,} (--max-samples)")


# --- PNG folders ---------------------------------------------------------------------------------
def _png_array(path: Path, expected: tuple[int, ...] | None, dataset: str | None) -> np.ndarray:
    """One PNG as uint8 [C, H, W]; its size and mode are checked from the header before decoding."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_PNG_PIXELS:
                    raise GenbenchError(f"{path}: refused, {width}x{height} pixels is over the limit of "
                                        f"{MAX_PNG_PIXELS:,}")
                if image.mode not in PNG_CHANNELS:
                    raise GenbenchError(f"{path}: PNG mode {image.mode!r}; expected 8-bit gray (L) or RGB")
                check_shape((PNG_CHANNELS[image.mode], height, width), expected, dataset)
                array = np.asarray(image.convert("L") if image.mode == "1" else image, dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise GenbenchError(f"{path}: refused, a decompression bomb ({exc})") from None
    except (UnidentifiedImageError, *DECODE_ERRORS) as exc:
        raise GenbenchError(f"{path}: not a readable PNG ({exc})") from None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def read_png_folder(folder: Path, expected: tuple[int, ...] | None = None, dataset: str | None = None,
                    max_samples: int = DEFAULT_MAX_SAMPLES) -> Tensor:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file())
    if not files:
        raise GenbenchError(f"{folder}: no .png files")
    _check_count(len(files), max_samples, folder)
    arrays = [_png_array(files[0], expected, dataset)]
    for path in files[1:]:
        array = _png_array(path, expected, dataset)
        if array.shape != arrays[0].shape:
            raise GenbenchError(f"{folder}: mixed image sizes ({files[0].name} is "
                                f"{_shape(arrays[0].shape)}, {path.name} is {_shape(array.shape)})")
        arrays.append(array)
    return torch.from_numpy(np.stack(arrays))


# --- .npz arrays ---------------------------------------------------------------------------------
def _layout(shape: tuple[int, ...], path: Path) -> tuple[tuple[int, ...], bool]:
    """(C, H, W) of an array of ``shape`` and whether it is channels-last: [N, H, W], [N, C, H, W]
    or [N, H, W, C] with C in (1, 3)."""
    if len(shape) == 3:
        return (1, *shape[1:]), False
    if len(shape) == 4 and shape[1] in (1, 3):
        return tuple(shape[1:]), False
    if len(shape) == 4 and shape[3] in (1, 3):
        return (shape[3], shape[1], shape[2]), True
    raise GenbenchError(f"{path}: array of shape {list(shape)}; expected [N, H, W], "
                        "[N, C, H, W] or [N, H, W, C] with 1 or 3 channels")


def _check_dtype(dtype: np.dtype, path: Path) -> None:
    if dtype.hasobject:
        raise GenbenchError(f"{path}: unreadable without pickle (an array of Python objects), which "
                            "genbench never unpickles")
    if dtype != np.uint8 and dtype.kind not in "bf":
        raise GenbenchError(f"{path}: dtype {dtype}; expected uint8 levels or floats in [0, 1]")


def _member(archive: zipfile.ZipFile, path: Path) -> zipfile.ZipInfo:
    """The member holding the samples: the only one, else the first of ``NPZ_KEYS`` (as np.load
    names them: without ``.npy``)."""
    members = {(i.filename[:-4] if i.filename.endswith(".npy") else i.filename): i
               for i in archive.infolist() if not i.is_dir()}
    if not members:
        raise GenbenchError(f"{path}: no arrays")
    key = next(iter(members)) if len(members) == 1 else next((k for k in NPZ_KEYS if k in members), None)
    if key is None:
        raise GenbenchError(f"{path}: several arrays ({', '.join(members)}); name the samples "
                            f"one of {', '.join(NPZ_KEYS)}")
    if not members[key].filename.endswith(".npy"):
        raise GenbenchError(f"{path}: member {members[key].filename!r} is not an .npy array")
    return members[key]


def _read_header(stream, path: Path, name: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, Fortran order, dtype) from the .npy header at the start of ``stream``."""
    try:
        version = np.lib.format.read_magic(stream)
        read = {(1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read is None:
            raise ValueError(f"unsupported .npy format version {version}")
        shape, fortran, dtype = read(stream)
    except DECODE_ERRORS as exc:
        raise GenbenchError(f"{path}: member {name!r} is not a readable .npy array ({exc})") from None
    return tuple(int(n) for n in shape), bool(fortran), np.dtype(dtype)


def _read_exactly(stream, size: int, path: Path) -> bytes:
    data = bytearray()
    while len(data) < size:
        block = stream.read(size - len(data))
        if not block:
            raise GenbenchError(f"{path}: truncated array ({len(data):,} of {size:,} bytes of a chunk)")
        data += block
    return bytes(data)


class _Range:
    """The smallest and largest float seen over chunks, and whether any was NaN."""

    def __init__(self):
        self.low, self.high, self.nan = math.inf, -math.inf, False

    def add(self, chunk: np.ndarray) -> bool:
        """Take in a chunk; whether all of it lies in [0, 1]."""
        nan = np.isnan(chunk)
        self.nan |= bool(nan.any())
        values = chunk[~nan]
        if values.size:
            self.low, self.high = min(self.low, float(values.min())), max(self.high, float(values.max()))
        return not self.nan and self.low >= 0 and self.high <= 1


def _to_uint8(chunk: np.ndarray, channels_last: bool) -> np.ndarray:
    """A chunk of [n, ...] samples as uint8 [n, C, H, W] (floats already checked to lie in [0, 1])."""
    if chunk.ndim == 3:
        chunk = chunk[:, None]
    elif channels_last:
        chunk = chunk.transpose(0, 3, 1, 2)
    if chunk.dtype == np.uint8:
        return chunk
    if chunk.dtype.kind == "b":
        return chunk.astype(np.uint8) * 255
    return np.round(chunk * 255).astype(np.uint8)


def _read_array(stream, shape: tuple[int, ...], fortran: bool, dtype: np.dtype, path: Path) -> np.ndarray:
    """The array after its header, as uint8 [N, C, H, W], read and converted ``CHUNK_BYTES`` at a time."""
    (channels, height, width), channels_last = _layout(shape, path)
    n, row_bytes = shape[0], math.prod(shape[1:]) * dtype.itemsize
    out = np.empty((n, channels, height, width), np.uint8)
    if fortran:  # column-major: rows are not contiguous, so it is read whole (at most max_samples rows)
        whole = np.frombuffer(_read_exactly(stream, n * row_bytes, path), dtype).reshape(shape[::-1]).T
        chunks = ((i, whole[i:i + 4096]) for i in range(0, n, 4096))
    else:
        rows = max(1, CHUNK_BYTES // row_bytes)
        chunks = ((i, np.frombuffer(_read_exactly(stream, min(rows, n - i) * row_bytes, path), dtype)
                   .reshape(min(rows, n - i), *shape[1:])) for i in range(0, n, rows))
    seen = _Range()
    for start, chunk in chunks:
        if dtype.kind == "f" and not seen.add(chunk):
            continue  # read on, so that the error gives the range of every value
        out[start:start + len(chunk)] = _to_uint8(chunk, channels_last)
    if seen.nan or seen.low < 0 or seen.high > 1:
        raise GenbenchError(f"{path}: float samples must lie in [0, 1], found values in "
                            f"[{seen.low:.4g}, {seen.high:.4g}]{' and NaN' if seen.nan else ''}")
    return out


def read_npz(path: Path, expected: tuple[int, ...] | None = None, dataset: str | None = None,
             max_samples: int = DEFAULT_MAX_SAMPLES) -> Tensor:
    """uint8 [N, C, H, W] from an .npz file, its header checked before its data are inflated."""
    try:
        with zipfile.ZipFile(path) as archive:
            member = _member(archive, path)
            with archive.open(member) as stream:
                shape, fortran, dtype = _read_header(stream, path, member.filename)
                _check_dtype(dtype, path)
                if shape and math.prod(shape) == 0:
                    raise GenbenchError(f"{path}: no samples")
                chw, _ = _layout(shape, path)
                check_shape(chw, expected, dataset)
                _check_count(shape[0], max_samples, path)
                return torch.from_numpy(_read_array(stream, shape, fortran, dtype, path))
    except DECODE_ERRORS as exc:
        raise GenbenchError(f"{path}: not a readable .npz file ({exc})") from None


def read_samples(path: Path, expected: tuple[int, ...] | None = None, dataset: str | None = None,
                 max_samples: int = DEFAULT_MAX_SAMPLES) -> Tensor:
    """uint8 ``[N, C, H, W]`` from a folder of PNGs or an .npz file: at most ``max_samples`` images
    of shape ``expected`` (the data set ``dataset``'s; None: any one shape), checked before decoding."""
    path = Path(path)
    if path.is_dir():
        return read_png_folder(path, expected, dataset, max_samples)
    if path.suffix == ".npz" and path.is_file():
        return read_npz(path, expected, dataset, max_samples)
    raise GenbenchError(f"{path}: expected a folder of .png files or an .npz file")


def is_sample_set(path: Path) -> bool:
    """Whether ``genbench score`` reads this path as samples rather than a model checkpoint."""
    path = Path(path)
    if path.suffix == ".npz":
        return True
    return path.is_dir() and not (path / "checkpoint.safetensors").exists()
