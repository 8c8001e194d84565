"""The pinned weights of the published feature networks: one table, and the one check they pass.

Each row is the file torch-fidelity (or torchvision, for VGG16) fetches for that network: its
canonical URL, its file name in torch hub's ``checkpoints`` folder, and its whole sha256. Before a
file is loaded, ``pinned_file`` finds it (a file the user names in ``GENBENCH_<NAME>_WEIGHTS``, else
torch hub's folder, where it is downloaded on first use) and ``check_pinned`` compares its sha256
with the pin: any other file is one ``genbench: ...`` error, never loaded.

Where each hash comes from (``source``): CLIP's is in OpenAI's URL itself (its path is the file's
sha256); no other publisher states a whole hash, only torch hub's 8-hex prefix in the file name
(Inception-v3, VGG16), so those pins are the hashes projects that pin these files state (found in
public repositories, the same value from several independent ones for Inception-v3 and VGG16, one
project's pin table for DINOv2). A user who doubts one can hash the file fetched from the URL.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from genbench.core.errors import GenbenchError, MetricSkipped
from genbench.core.registry import Registry
from genbench.core.weights import file_sha256


class WeightsUnavailable(MetricSkipped):
    """The weights are neither where the user said nor in torch hub's folder, and could not be fetched."""


@dataclass(frozen=True)
class PinnedWeights:
    """One network's weights file, pinned."""

    network: str
    """genbench's name of the network (``genbench.metrics.features``)."""
    label: str
    """Its short name in messages (Inception-v3)."""
    what: str
    """The network, as its publisher names it."""
    url: str
    """Where torch-fidelity (torchvision for VGG16) fetches the file."""
    sha256: str
    """The whole sha256 of the file's bytes."""
    source: str
    """Where that hash is published."""

    @property
    def file(self) -> str:
        """The file's name in torch hub's checkpoints folder (the URL's last part)."""
        return self.url.rsplit("/", 1)[1]

    @property
    def env(self) -> str:
        """The environment variable that names a local copy of the file."""
        return f"GENBENCH_{self.network.upper()}_WEIGHTS"

    def describe(self) -> str:
        """One line: the network, its file and its whole hash (a table footer's provenance)."""
        return f"{self.what}, {self.file} (sha256 {self.sha256}, from {self.url})"


PINNED: Registry[PinnedWeights] = Registry("pinned feature network")
for _pin in (
    PinnedWeights(
        "inception", "Inception-v3",
        "torch-fidelity's Inception-v3 (inception-v3-compat, the TF FID network)",
        "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
        "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
        "torch hub's prefix 6726825d in the file name; the whole hash as several projects that pin this "
        "file (and pytorch-fid's pt_inception-2015-12-05-6726825d.pth, the same bytes) state it"),
    PinnedWeights(
        "vgg16", "VGG16", "torchvision's VGG16 (IMAGENET1K_V1, torch-fidelity's vgg16)",
        "https://download.pytorch.org/models/vgg16-397923af.pth",
        "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
        "torch hub's prefix 397923af in the file name; the whole hash as several projects that pin this "
        "file state it"),
    PinnedWeights(
        "dinov2", "DINOv2 ViT-L/14", "Meta's DINOv2 ViT-L/14 (dinov2_vitl14, dgm-eval's FD_DINOv2 network)",
        "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth",
        "d5383ea8f4877b2472eb973e0fd72d557c7da5d3611bd527ceeb1d7162cbf428",
        "not published by Meta; the hash one project's pin table states for this file"),
    PinnedWeights(
        "clip", "CLIP ViT-L/14",
        "OpenAI's CLIP ViT-L/14 image encoder (torch-fidelity's clip-vit-l-14, dgm-eval's FD_CLIP)",
        "https://openaipublic.azureedge.net/clip/models/"
        "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
        "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836",
        "OpenAI's URL: its path is the file's sha256"),
):
    PINNED.register(_pin.network, _pin)


def check_pinned(path: Path, pin: PinnedWeights) -> str:
    """The file's sha256 where it is the pinned one; else one error (the file is never loaded)."""
    found = file_sha256(path)
    if found != pin.sha256:
        raise GenbenchError(f"{path}: sha256 {found}, not the pinned {pin.sha256} of {pin.file} "
                            f"({pin.url}); refused before loading")
    return found


def _download(url: str, path: Path) -> None:
    """torch hub's downloader (genbench's one use of the network for weights)."""
    import torch

    torch.hub.download_url_to_file(url, str(path), progress=False)


def _fetch(pin: PinnedWeights, path: Path) -> None:
    """Download the pinned file to ``path`` through a temporary file that becomes ``path`` only once its
    hash is the pin's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{pin.file}.")
    os.close(handle)
    try:
        try:
            _download(pin.url, Path(tmp))
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise WeightsUnavailable(
                f"{pin.label} weights not found at {path} and not fetched from {pin.url} ({first}); to work "
                f"offline, copy that file there or set {pin.env}=FILE") from None
        check_pinned(Path(tmp), pin)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def pinned_file(network: str, fetch: bool = True) -> tuple[Path, str]:
    """(the checked weights file of ``network``, its sha256): the file ``GENBENCH_<NAME>_WEIGHTS`` names
    (never fetched), else torch hub's ``checkpoints/<file>``, downloaded there on first use where
    ``fetch``. A missing file is ``WeightsUnavailable`` (a run skips the metric and says why); a file
    whose sha256 is not the pin's is one error, before anything loads it."""
    import torch

    pin = PINNED[network]
    named = os.environ.get(pin.env)
    path = Path(named).expanduser() if named else Path(torch.hub.get_dir()) / "checkpoints" / pin.file
    if not path.is_file():
        if named or not fetch:
            raise WeightsUnavailable(f"{pin.label} weights not found at {path}: fetch {pin.url} to that "
                                     f"path, or set {pin.env}=FILE")
        _fetch(pin, path)
    return path, check_pinned(path, pin)
