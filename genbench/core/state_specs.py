"""A model's state as shapes and dtypes, compared with what a weights file offers before loading it.

A model built on the meta device (``ModelEntry.skeleton``) has the shapes and dtypes of its
state without their memory; a safetensors header has those of its tensors without reading
them. ``check_state_specs`` compares the two (every key, shape and kind of number), so a file
that does not fit is one line before anything is allocated. Floating-point values may come at
another precision (they are converted exactly as ``load_state_dict`` does); bool or integer
values where the model holds floats, or the reverse, are refused rather than converted.

Weights are checked for NaN and infinity at the precision the model holds them
(``finite_state``): a float64 1e300 is finite in the file and +inf once load_state_dict has cast it
to float32. Only dense tensors with values are weights (``check_dense``): sparse, quantized and meta
tensors, which a ``.pt`` can hold, are one line.

``check_torch_zip`` bounds a torch zip archive (``torch.save``'s and ``torch.jit.save``'s format)
before torch reads it. torch allocates each member at the size the archive declares for it: a
stored member is no larger than the file, a compressed one could be a bomb, so compressed members
(torch writes only TorchScript code that way) may declare ``MAX_INFLATED_BYTES`` in all, and all
members together at most ``MAX_MODEL_BYTES``.

``check_torch_legacy`` bounds torch's legacy format (``torch.save`` before torch 1.6), which
``torch.load(weights_only=True)`` still reads: three small pickles, the pickle of the object, the
list of its storages' keys, then each storage's element count and bytes. torch allocates every
storage the object's pickle declares while unpickling it, before it reads their bytes; so that
pickle is first scanned without running anything (``_LegacyScan``: every global is an inert
stand-in) and each storage it declares must be in the file, whole, at the size declared.
"""

from __future__ import annotations

import pickle
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from genbench.core.errors import GenbenchError
from genbench.core.models import MAX_MODEL_BYTES

#: the most bytes the compressed members of a torch zip archive may inflate to (code is kilobytes)
MAX_INFLATED_BYTES = 64 << 20

#: safetensors' dtype names (``safe_open(...).get_slice(name).get_dtype()``) as torch dtypes
SAFETENSORS_DTYPES = {
    "BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16, "U16": torch.uint16,
    "I32": torch.int32, "U32": torch.uint32, "I64": torch.int64, "U64": torch.uint64,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "F16": torch.float16,
    "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64,
}


@dataclass(frozen=True)
class TensorSpec:
    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def kind(self) -> str:
        """bool, integer, floating point or complex: values of one kind load into another only by
        losing what they mean."""
        if self.dtype == torch.bool:
            return "bool"
        if self.dtype.is_complex:
            return "complex"
        return "floating point" if self.dtype.is_floating_point else "integer"


def spec_of(tensor: Tensor) -> TensorSpec:
    return TensorSpec(tuple(tensor.shape), tensor.dtype)


def model_specs(model: nn.Module) -> dict[str, TensorSpec]:
    """The specs of a model's state dict (a meta-device model's included)."""
    return {key: spec_of(value) for key, value in model.state_dict().items()}


def check_state_specs(expected: dict[str, TensorSpec], found: dict[str, TensorSpec], source: str,
                      owner: str) -> None:
    """``found`` (a file's tensors) against ``expected`` (``owner``'s state): a missing or extra key,
    a wrong shape or another kind of number is one line naming the key."""
    for key in expected:
        if key not in found:
            raise GenbenchError(f"{source}: missing key {key!r} for {owner}")
    for key, spec in found.items():
        if key not in expected:
            raise GenbenchError(f"{source}: unexpected key {key!r} for {owner}")
        want = expected[key]
        if spec.shape != want.shape:
            raise GenbenchError(f"{source}: key {key!r} has shape {list(spec.shape)}, "
                                f"the model expects {list(want.shape)}")
        if spec.kind != want.kind:
            raise GenbenchError(f"{source}: key {key!r} holds {spec.kind} values ({spec.dtype}), the model "
                                f"expects {want.kind} ({want.dtype}): refused rather than converted")


#: tensors a ``.pt`` can hold that are no weights: what each is, and the test that finds it
NOT_WEIGHTS = (("a sparse tensor", lambda t: t.layout != torch.strided),
               ("a quantized tensor", lambda t: t.is_quantized),
               ("a meta tensor, which holds no values", lambda t: t.is_meta))


def check_dense(state: dict[str, Tensor], source: str) -> None:
    """Weights are dense tensors holding values: a sparse, quantized or meta tensor (a ``.pt`` can
    hold any) is one line naming the key, before anything compares or converts it."""
    for key, value in state.items():
        for what, found in NOT_WEIGHTS:
            if found(value):
                raise GenbenchError(f"{source}: key {key!r} is {what} ({value.dtype}); weights are dense "
                                    "tensors")


def finite_state(state: dict[str, Tensor], expected: dict[str, TensorSpec], source: str) -> dict[str, Tensor]:
    """``state`` at the dtypes of ``expected`` (the model's, as ``load_state_dict`` would cast it), refused
    where a value is NaN or infinite after that cast (a float64 1e300 is +inf in a float32 model):
    weights like that give no meaningful number. One line naming the key."""
    cast = {key: value.to(expected[key].dtype) if value.is_floating_point() else value
            for key, value in state.items()}
    for key, value in cast.items():
        if value.is_floating_point():
            bad = int((~torch.isfinite(value if value.dtype.itemsize > 1 else value.float())).sum())
            if bad:
                raise GenbenchError(f"{source}: key {key!r} holds {bad} of {value.numel()} values that are "
                                    f"NaN or infinite as {value.dtype} (the model's precision): not usable "
                                    "weights")
    return cast


def check_torch_zip(path: Path, what: str) -> list[zipfile.ZipInfo]:
    """The members of a torch zip archive (``what`` names the kind of file for the messages), refused
    where its compressed members would inflate past ``MAX_INFLATED_BYTES`` or all its members past
    ``MAX_MODEL_BYTES``."""
    if not zipfile.is_zipfile(path):
        raise GenbenchError(f"{path}: refused, not a zip-format {what} (torch's format since torch 1.6; "
                            "re-save it with a current torch)")
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise GenbenchError(f"{path}: not a readable {what} ({exc})") from None
    inflated = sum(m.file_size for m in members if m.compress_type != zipfile.ZIP_STORED)
    if inflated > MAX_INFLATED_BYTES:
        raise GenbenchError(f"{path}: refused, a {what} whose compressed members inflate to {inflated:,} "
                            f"bytes, over the limit of {MAX_INFLATED_BYTES:,} (torch compresses only code)")
    _check_size(sum(m.file_size for m in members), path, what)
    return members


def _check_size(size: int, path: Path, what: str) -> None:
    if size > MAX_MODEL_BYTES:
        raise GenbenchError(f"{path}: refused, a {what} of more than genbench's limit of "
                            f"{MAX_MODEL_BYTES / 2**30:g} GiB")


#: the first bytes of a zip archive, by which ``torch.load`` tells its zip format from the legacy one
ZIP_MAGIC = b"PK\x03\x04"


def check_torch_file(path: Path, what: str) -> None:
    """A file for ``torch.load``, bounded in the format torch will read it as (torch looks at its first
    bytes alone: a legacy file with a zip appended is read as legacy)."""
    with open(path, "rb") as f:
        zip_format = f.read(len(ZIP_MAGIC)) == ZIP_MAGIC
    (check_torch_zip if zip_format else check_torch_legacy)(path, what)


#: torch's legacy storage types by name (``torch.FloatStorage``...): the dtype of their elements
LEGACY_STORAGES = {cls.__name__: cls._dtype for cls in torch._storage_classes if cls.__module__ == "torch"}


class _Inert:
    """What a scanned pickle builds in place of any global: it takes any arguments, items and state,
    and does nothing with them."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass

    def append(self, value):
        pass

    def extend(self, values):
        pass


class _LegacyScan(pickle.Unpickler):
    """Reads a pickle of torch's legacy format without running any of it: each global is an ``_Inert``
    class named after it, and each storage it declares is noted in ``storages`` (key -> (element count,
    element size)) as ``torch.load`` notes the first declaration of a key."""

    def __init__(self, file):
        super().__init__(file)
        self.storages: dict[str, tuple[int, int]] = {}
        self.globals: dict[str, type] = {}

    def find_class(self, module: str, name: str):
        full = f"{module}.{name}"
        if full not in self.globals:
            self.globals[full] = type(name, (_Inert,), {"global_name": full})
        return self.globals[full]

    def persistent_load(self, pid):
        if isinstance(pid, tuple) and len(pid) == 6 and pid[0] in ("storage", b"storage"):
            _, kind, key, _, count, _ = pid
            dtype = LEGACY_STORAGES.get(getattr(kind, "global_name", "").removeprefix("torch."))
            if dtype is None or not isinstance(key, str) or not isinstance(count, int) or count < 0:
                raise ValueError(f"a storage declared as {pid[1:]!r:.80}")
            self.storages.setdefault(key, (count, dtype.itemsize))
        return _Inert()


def _scan_pickle(f) -> tuple[object, dict[str, tuple[int, int]]]:
    """(what the next pickle in ``f`` builds, with inert stand-ins; the storages it declares)."""
    scan = _LegacyScan(f)
    return scan.load(), scan.storages


def check_torch_legacy(path: Path, what: str) -> None:
    """A file of torch's legacy format (see the module's docstring), refused unless every storage its
    pickle declares is in the file in full, at the size declared, the file no larger than
    ``MAX_MODEL_BYTES``; the older tar format, whose loader allocates sizes it reads, is refused."""
    size = path.stat().st_size
    _check_size(size, path, what)
    if tarfile.is_tarfile(path):
        raise GenbenchError(f"{path}: refused, a {what} in torch's tar format (torch < 0.4), which genbench "
                            "does not read")
    try:
        with open(path, "rb") as f:
            magic, protocol, info = (_scan_pickle(f)[0] for _ in range(3))
            if magic != torch.serialization.MAGIC_NUMBER or protocol != torch.serialization.PROTOCOL_VERSION:
                raise ValueError("no torch magic number")
            _, declared = _scan_pickle(f)
            keys, _ = _scan_pickle(f)
            order = "little" if not isinstance(info, dict) or info.get("little_endian", True) else "big"
            _check_legacy_storages(f, size, declared, keys, order)
    except GenbenchError:
        raise
    except Exception as exc:  # a pickle of anything: whatever it raises, the file is not one of torch's
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise GenbenchError(f"{path}: refused, not a zip-format {what}, nor a readable legacy-format one "
                            f"({first})") from None


def _check_legacy_storages(f, size: int, declared: dict[str, tuple[int, int]], keys, order: str) -> None:
    """Each storage the pickle declared, after the pickles as torch reads them: its element count (8
    bytes) as declared, then its bytes, all inside the file."""
    if not isinstance(keys, list) or sorted(keys) != sorted(declared):
        raise ValueError("its list of storages is not the storages its pickle declares")
    for key in keys:
        count, itemsize = declared[key]
        stored = int.from_bytes(f.read(8), order, signed=True)
        if stored != count:
            raise ValueError(f"storage {key!r} declared of {count:,} elements holds {stored:,}")
        if f.seek(count * itemsize, 1) > size:
            raise ValueError(f"storage {key!r} of {count * itemsize:,} bytes runs past the end of the file")
