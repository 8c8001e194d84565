"""A model's state as shapes and dtypes, compared with what a weights file offers before loading it.

A model built on the meta device (``ModelEntry.skeleton``) has the shapes and dtypes of its
state without their memory; a safetensors header has those of its tensors without reading
them. ``check_state_specs`` compares the two (every key, shape and kind of number), so a file
that does not fit is one line before anything is allocated. Floating-point values may come at
another precision (they are converted exactly as ``load_state_dict`` does); bool or integer
values where the model holds floats, or the reverse, are refused rather than converted.

``check_torch_zip`` bounds a torch zip archive (``torch.save``'s and ``torch.jit.save``'s format)
before torch reads it. torch allocates each member at the size the archive declares for it: a
stored member is no larger than the file, a compressed one could be a bomb, so compressed members
(torch writes only TorchScript code that way) may declare ``MAX_INFLATED_BYTES`` in all, and all
members together at most ``MAX_MODEL_BYTES``.
"""

from __future__ import annotations

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


def check_finite(state: dict[str, Tensor], source: str) -> None:
    """Weights with a NaN or an infinity give no meaningful number: one line naming the key."""
    for key, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise GenbenchError(f"{source}: key {key!r} holds {bad} of {value.numel()} values that are NaN "
                                "or infinite: not usable weights")


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
    if sum(m.file_size for m in members) > MAX_MODEL_BYTES:
        raise GenbenchError(f"{path}: refused, a {what} of more than genbench's limit of "
                            f"{MAX_MODEL_BYTES / 2**30:g} GiB")
    return members
