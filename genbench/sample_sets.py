"""Samples from files, for scoring without a model: a folder of PNGs or an ``.npz`` array.

Both become uint8 images ``[N, C, H, W]`` (C = 1 gray or 3 RGB). Anything genbench cannot
read unambiguously (an empty folder, mixed image sizes, a palette PNG, floats outside
[0, 1], a pickled array) is one clear GenbenchError.

The files are untrusted, so what they declare is checked before their data are decoded: an
``.npz`` member's ``.npy`` header (shape, dtype, order) is read from the zip stream and the
count, image size and dtype are checked against the data set and ``max_samples`` before the
array is inflated, then the array is read in chunks of ``CHUNK_BYTES`` and converted to uint8
chunk by chunk, whatever its order and dtype: a C-order chunk is whole samples, a Fortran-order
one (the C-order layout of the reversed shape) whole rows of N values, one pixel of every
sample. Memory: the uint8 output plus about three chunks (the bytes, the scaled floats, a mask),
a chunk being at most ``max(CHUNK_BYTES, one sample, N values)``. A PNG is opened as PNG and
nothing else: its 8-byte signature is checked and Pillow is allowed its PNG plugin alone, so a
PostScript, JPEG or other file named ``.png`` is one line and never reaches another decoder (nor
Ghostscript, which Pillow's EPS plugin would run). Its size and mode are read from its header
before its pixels, and a decompression bomb is one line.
"""

from __future__ import annotations

import math
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from genbench.core.errors import GenbenchError
from genbench.core.npy import DECODE_ERRORS, read_npy_header

#: keys tried, in order, in an .npz file with several arrays
NPZ_KEYS = ("samples", "images", "x", "arr_0")
#: the most samples a set may hold unless ``--max-samples`` says otherwise
DEFAULT_MAX_SAMPLES = 100_000
#: bytes of an .npz array read and converted at a time (a float array never exists whole in memory)
CHUNK_BYTES = 64 << 20
#: the most pixels of one PNG (a data set's images are far smaller; PIL's own bomb limit is 89M)
MAX_PNG_PIXELS = 4096 * 4096
#: the first bytes of every PNG file
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: bytes a read from a zip member asks for at once (each read is a temporary copy of this size)
READ_BYTES = 1 << 20
#: channels of the PNG modes genbench reads
PNG_CHANNELS = {"L": 1, "1": 1, "RGB": 3}


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
def _check_png_signature(path: Path) -> None:
    """Refuse a file that does not start as a PNG does, before any decoder sees it."""
    with open(path, "rb") as file:
        head = file.read(len(PNG_SIGNATURE))
    if head != PNG_SIGNATURE:
        raise GenbenchError(f"{path}: not a PNG file (it starts with {head[:4]!r}, not the PNG signature); "
                            "genbench reads PNG alone")


def _png_array(path: Path, expected: tuple[int, ...] | None, dataset: str | None) -> np.ndarray:
    """One PNG as uint8 [C, H, W]; its signature, size and mode are checked before decoding."""
    try:
        _check_png_signature(path)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=["PNG"]) as image:
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


def _read_exactly(stream, size: int, path: Path) -> bytearray:
    """``size`` bytes of ``stream`` in one writable buffer, read ``READ_BYTES`` at a time (no copy of
    the whole)."""
    data = bytearray(size)
    got = 0
    while got < size:
        block = stream.read(min(READ_BYTES, size - got))
        if not block:
            raise GenbenchError(f"{path}: truncated array ({got:,} of {size:,} bytes of a chunk)")
        data[got:got + len(block)] = block
        got += len(block)
    return data


class _Range:
    """The smallest and largest float seen over chunks, and whether any was NaN."""

    def __init__(self):
        self.low, self.high, self.nan = math.inf, -math.inf, False

    def add(self, chunk: np.ndarray) -> bool:
        """Take in a chunk (without copying it: fmin/fmax skip NaN); whether all of it lies in [0, 1]."""
        self.nan |= bool(np.isnan(chunk).any())
        low, high = float(np.fmin.reduce(chunk, axis=None)), float(np.fmax.reduce(chunk, axis=None))
        if not math.isnan(low):
            self.low, self.high = min(self.low, low), max(self.high, high)
        return not self.nan and self.low >= 0 and self.high <= 1


def _to_uint8(chunk: np.ndarray) -> np.ndarray:
    """A writable chunk of values as uint8 levels: uint8 as is, bool as 0/255, floats (already checked
    to lie in [0, 1]) as round(255 x), scaled in place so that no float copy is made."""
    if chunk.dtype == np.uint8:
        return chunk
    if chunk.dtype.kind == "b":
        return np.where(chunk.view(np.uint8), np.uint8(255), np.uint8(0))
    np.multiply(chunk, 255, out=chunk)
    return np.rint(chunk, out=chunk).astype(np.uint8)


def _file_axes(out: np.ndarray, ndim: int, channels_last: bool) -> np.ndarray:
    """``out`` [N, C, H, W] seen in the file's axes: [N, H, W], [N, C, H, W] or [N, H, W, C]."""
    if ndim == 3:
        return out[:, 0]
    return out.transpose(0, 2, 3, 1) if channels_last else out


def _offsets(view: np.ndarray, fortran: bool) -> np.ndarray:
    """For each value of a sample in the file's order, its byte offset in a sample of ``view``'s base
    (a uint8 array: strides are offsets)."""
    dims = view.shape[1:]
    index = np.unravel_index(np.arange(math.prod(dims)), dims, order="F" if fortran else "C")
    return sum(i * stride for i, stride in zip(index, view.strides[1:], strict=True))


def _read_array(stream, shape: tuple[int, ...], fortran: bool, dtype: np.dtype, path: Path) -> np.ndarray:
    """The array after its header, as uint8 [N, C, H, W], read and converted ``CHUNK_BYTES`` at a time.

    The data are a C-order matrix of [N, pixels] (C order) or [pixels, N] (Fortran order: the C
    layout of the reversed shape); whole rows of it are read at a time and scattered into place."""
    (channels, height, width), channels_last = _layout(shape, path)
    n = shape[0]
    out = np.empty((n, channels, height, width), np.uint8)
    offsets = _offsets(_file_axes(out, len(shape), channels_last), fortran)
    flat = out.reshape(n, -1)
    n_rows, n_columns = (len(offsets), n) if fortran else (n, len(offsets))
    step = max(1, CHUNK_BYTES // (n_columns * dtype.itemsize))
    seen = _Range()
    for start in range(0, n_rows, step):
        rows = min(step, n_rows - start)
        chunk = np.frombuffer(_read_exactly(stream, rows * n_columns * dtype.itemsize, path),
                              dtype).reshape(rows, n_columns)
        if dtype.kind == "f" and not seen.add(chunk):
            continue  # read on, so that the error gives the range of every value
        if fortran:
            flat[:, offsets[start:start + rows]] = _to_uint8(chunk).T
        else:
            flat[start:start + rows, offsets] = _to_uint8(chunk)
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
                shape, fortran, dtype = read_npy_header(stream, path, member.filename)
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
