"""Samplers without code: a TorchScript generator file (``torch.jit.save``) that maps latents z to images.

``genbench score GEN.pt --generator --dataset NAME --latent-dim D`` scores it as a zoo sampler is
scored: ``model_samples`` draws the latents in batches under the evaluation seed, the module maps
them to images in its declared output range, which is mapped to [0, 1], and ``score_images`` gives
IS/FID/KID/precision-recall. The file passes the checks of a TorchScript feature network before it
is called (``load_checked_torchscript``: only ``forward``, aten/prim operators that touch no file,
no load-time code), so genbench runs none of the user's Python.

A ``torch.export`` program (``torch.export.save``) is refused unread: torch 2.14's
``torch.export.load`` unpickles its weights and constants (torch's loader with weights_only off,
``pickle.loads``), and genbench never unpickles.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from genbench.core.errors import GenbenchError
from genbench.data import DATASETS
from genbench.metrics.features import load_checked_torchscript
from genbench.metrics.sample_quality import RANGE_TOLERANCE
from genbench.sample_sets import check_shape

#: latent distributions by name: a function of (n, d) drawing from the global (seeded) CPU RNG
LATENT_DISTS = {"normal": torch.randn, "uniform": lambda n, d: torch.rand(n, d) * 2 - 1}
#: declared output ranges by their flag value
OUTPUT_RANGES = {"0,1": (0.0, 1.0), "-1,1": (-1.0, 1.0)}


def _refuse_export_program(path: Path) -> None:
    """Refuse a torch.export archive before anything reads it (its loader unpickles, see above)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any(name.endswith("/archive_format") for name in archive.namelist()):
                raise GenbenchError(f"{path}: refused, a torch.export program: torch.export.load unpickles "
                                    "its weights and constants, which genbench never does; save the "
                                    "generator with torch.jit.save(torch.jit.script(module)) instead")


@dataclass(frozen=True)
class TorchScriptGenerator:
    """A checked TorchScript module z -> x as a Sampler: ``sample(n)`` gives images in [0, 1]."""

    net: torch.jit.ScriptModule
    path: Path
    shape: tuple[int, ...]
    """The data set's image shape [C, H, W] each sample must have."""
    dataset: str
    latent_dim: int
    latent_dist: str = "normal"
    output_range: str = "0,1"
    device: torch.device | str = "cpu"

    @torch.no_grad()
    def images(self, z: Tensor) -> Tensor:
        """The module's output for latents z, its shape checked (one line where it is not an image batch)."""
        try:
            x = self.net(z.to(self.device))
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise GenbenchError(f"{self.path}: cannot map latents {list(z.shape)} to images: "
                                f"{first}") from None
        if not torch.is_tensor(x) or not x.is_floating_point() or x.dim() != 4 or len(x) != len(z):
            what = f"a {x.dtype} tensor of shape {list(x.shape)}" if torch.is_tensor(x) else type(x).__name__
            raise GenbenchError(f"{self.path}: must return float images [B, C, H, W] for latents [B, "
                                f"{self.latent_dim}], returned {what}")
        check_shape(tuple(x.shape[1:]), self.shape, self.dataset)
        return x

    def sample(self, n: int) -> Tensor:
        """n images in [0, 1] from latents drawn on the CPU (the same on every device); outputs
        outside the declared range beyond float rounding are one line, never clamped."""
        low, high = OUTPUT_RANGES[self.output_range]
        x = self.images(LATENT_DISTS[self.latent_dist](n, self.latent_dim)).float()
        slack = RANGE_TOLERANCE * (high - low)
        lo, hi, nan = float(x.min()), float(x.max()), bool(x.isnan().any())
        if nan or lo < low - slack or hi > high + slack:
            raise GenbenchError(f"{self.path}: outputs in [{lo:.4g}, {hi:.4g}]{' and NaN' if nan else ''}, "
                                f"outside the declared --output-range {self.output_range}")
        return ((x - low) / (high - low)).clamp(0, 1)


def load_generator(path: Path, dataset: str, latent_dim: int | None, latent_dist: str = "normal",
                   output_range: str = "0,1", device: torch.device | str = "cpu") -> TorchScriptGenerator:
    """The generator of a TorchScript file for images of data set ``dataset``'s shape, checked and
    tried on two zero latents before any sample is drawn."""
    path, shape = Path(path), DATASETS[dataset].shape
    if latent_dim is None:
        raise GenbenchError("a generator needs --latent-dim D (the size of the latent z it maps to an image)")
    if latent_dist not in LATENT_DISTS or output_range not in OUTPUT_RANGES:
        raise GenbenchError(f"--latent-dist must be one of {', '.join(LATENT_DISTS)} and --output-range one "
                            f"of {', '.join(OUTPUT_RANGES)}")
    if not path.is_file():
        raise GenbenchError(f"{path}: no such file (a generator is a TorchScript .pt file)")
    _refuse_export_program(path)
    net = load_checked_torchscript(path, "generator").to(device)
    generator = TorchScriptGenerator(net, path, tuple(shape), dataset, latent_dim, latent_dist, output_range,
                                     device)
    generator.images(torch.zeros(2, latent_dim))
    return generator
