"""Reading a .npy header without its data: what an array in an .npz says it holds, before any of it
is allocated (sample sets, reference statistics)."""

from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from genbench.core.errors import GenbenchError

#: what a corrupt zip member or .npy header raises while it is decoded
DECODE_ERRORS = (OSError, ValueError, EOFError, zlib.error, struct.error, SyntaxError, RuntimeError,
                 NotImplementedError, zipfile.BadZipFile)


def read_npy_header(stream, path: Path, name: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, Fortran order, dtype) from the .npy header at the start of ``stream`` (member ``name``
    of ``path``): format 1.0 or 2.0 only, one line ``GenbenchError`` for anything unreadable."""
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
