"""Named FID protocols: the presets a user names in one word (``genbench score --protocol NAME``).

A published FID is only comparable with another measured the same way: the same feature network
(and weights), the same resizing of the images to the network's input, the same reference images
(data set, split, count) and the same number of samples. ``PROTOCOLS`` is that table, one row a
preset; ``protocol_settings`` turns a row into the settings ``genbench score`` takes, after
checking that the network it names is the one pinned here.

Resizers: ``legacy-tf`` is torch-fidelity's Inception-v3 (``inception-v3-compat``) resizing inside
the network, TensorFlow's bilinear resize as the original TTUR code did (the literature's CIFAR-10
numbers); ``clean-bicubic`` is clean-fid's antialiased PIL bicubic resize before the network
(Parmar et al. 2022), which moves CIFAR-10 FID by 1-2 points; ``none``: the network reads the
images at their own size (the LeNets, 28x28).
"""

from __future__ import annotations

from dataclasses import dataclass

from genbench.core.errors import GenbenchError
from genbench.core.registry import Registry

#: the resizers genbench's feature extraction implements (``clean-bicubic`` is not one yet)
IMPLEMENTED_RESIZERS = ("legacy-tf", "none")
RESIZERS = {
    "legacy-tf": "torch-fidelity's TF-exact bilinear resize to 299x299 inside inception-v3-compat",
    "clean-bicubic": "clean-fid's antialiased PIL bicubic resize to 299x299 before the network",
    "none": "none (the network reads 28x28 images)",
}


@dataclass(frozen=True)
class FidProtocol:
    """One preset: what every FID measured under it shares."""

    name: str
    summary: str
    datasets: tuple[str, ...]
    """The data sets it applies to (their images are the reference)."""
    features: str
    """The feature network (``genbench.metrics.features`` name)."""
    weights: str
    """The file of its weights."""
    weights_sha256: str
    """sha256 of the network's weights: whole for the shipped LeNets; for Inception-v3 the 8 hex digits
    torch hub pins in the weights' file name (the whole hash is not published with them)."""
    resizer: str
    reference_split: str
    reference_count: int
    samples: int

    def describe(self) -> str:
        """One line naming everything the preset fixes."""
        return (f"{self.name}: {self.features} ({self.weights}, sha256 {self.weights_sha256}), resizer "
                f"{self.resizer}, {self.samples} samples against {self.reference_count} "
                f"{'/'.join(self.datasets)} {self.reference_split} images")


#: torch-fidelity's Inception-v3 weights (``genbench.metrics.features.INCEPTION_FILE``, tested equal)
INCEPTION_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"

PROTOCOLS: Registry[FidProtocol] = Registry("FID protocol")
for _protocol in (
    FidProtocol("cifar10-legacy", "the CIFAR-10 FID of the literature (TTUR, torch-fidelity)", ("cifar10",),
                "inception", INCEPTION_WEIGHTS, "6726825d", "legacy-tf", "train", 50000, 50000),
    FidProtocol("cifar10-clean", "its clean-fid variant (Parmar et al. 2022)", ("cifar10",),
                "inception", INCEPTION_WEIGHTS, "6726825d", "clean-bicubic", "train", 50000, 50000),
    FidProtocol("mnist-lenet", "genbench's MNIST protocol (the mnist suite's FID-LeNet)",
                ("mnist", "mnist8", "binarized_mnist"), "lenet", "lenet-mnist8.safetensors",
                "27603dd38520e02528caff260a1f807b6d11f182fbd99ff93e0520e5a9a5a552",
                "none", "test", 10000, 10000),
    FidProtocol("fashion-lenet", "genbench's Fashion-MNIST protocol (the fashion suite's FID-LeNet)",
                ("fashion_mnist", "fashion_mnist_binary"), "lenet", "lenet-fashion_mnist.safetensors",
                "30eb19de0dc96a4e9959e9aabb1d3a18b99f2b6a99319a21764526d327f21633",
                "none", "test", 10000, 10000),
):
    PROTOCOLS.register(_protocol.name, _protocol)


def pinned_weights_sha256(protocol: FidProtocol) -> str:
    """The sha256 of the weights file the protocol names, as genbench has it (for Inception-v3, the
    prefix in torch-fidelity's file name, which torch hub checks on download)."""
    from genbench.metrics.features import INCEPTION_FILE
    from genbench.metrics.lenet import shipped_lenet

    if protocol.weights.startswith("lenet-"):
        return shipped_lenet(protocol.weights.removeprefix("lenet-").removesuffix(".safetensors")).sha256
    if protocol.weights != INCEPTION_FILE:
        raise GenbenchError(f"FID protocol {protocol.name!r} names {protocol.weights}; genbench's "
                            f"Inception-v3 weights are {INCEPTION_FILE}")
    return INCEPTION_FILE.removesuffix(".pth").rsplit("-", 1)[1]


def protocol_settings(name: str) -> dict[str, object]:
    """The ``genbench score`` settings of preset ``name`` (features, reference split and count, samples),
    refused where its resizer is not implemented or the network's weights here are not the ones the
    preset pins."""
    protocol = PROTOCOLS[name]
    if protocol.resizer not in IMPLEMENTED_RESIZERS:
        raise GenbenchError(f"FID protocol {name!r} needs {RESIZERS[protocol.resizer]}, which genbench does "
                            f"not implement yet; use {_alternative(protocol)} or clean-fid itself")
    found = pinned_weights_sha256(protocol)
    if found != protocol.weights_sha256:
        raise GenbenchError(f"FID protocol {name!r} pins {protocol.features} weights sha256 "
                            f"{protocol.weights_sha256}, genbench has {found}")
    return {"features": protocol.features, "quality_split": protocol.reference_split,
            "quality_reference": protocol.reference_count, "quality_samples": protocol.samples}


def _alternative(protocol: FidProtocol) -> str:
    """The implemented presets with the same data sets, network and reference."""
    same = [p.name for p in PROTOCOLS.in_order() if p.datasets == protocol.datasets
            and p.name != protocol.name and p.resizer in IMPLEMENTED_RESIZERS]
    return ", ".join(same) or "another protocol"


def protocol_record(name: str | None, dataset: str, samples: int) -> dict[str, object]:
    """What a score under preset ``name`` records beside its settings (nothing without one): the
    preset, its resizer and its network's weights. Refused where the data set or the number of
    samples scored is not the preset's (a sample set is scored whole, so it must have that many)."""
    if name is None:
        return {}
    protocol = PROTOCOLS[name]
    if dataset not in protocol.datasets:
        raise GenbenchError(f"FID protocol {name!r} is for {', '.join(protocol.datasets)}, not {dataset!r}")
    if samples != protocol.samples:
        raise GenbenchError(f"FID protocol {name!r} scores {protocol.samples} samples, not {samples}")
    return {"fid_protocol": name, "fid_resizer": protocol.resizer, "feature_weights": protocol.weights,
            "feature_weights_sha256": protocol.weights_sha256}


def with_protocol(name: str, overrides: dict[str, object]) -> dict[str, object]:
    """``overrides`` (the setting flags given) with preset ``name``'s settings; a flag that sets one of
    them to another value is refused, since the result would not be the preset's."""
    preset = protocol_settings(name)
    for key, value in preset.items():
        if key in overrides and overrides[key] != value:
            flag = "--" + key.replace("_", "-")
            raise GenbenchError(f"--protocol {name} sets {flag} {value}; drop {flag} {overrides[key]} "
                                "(or drop --protocol)")
    return {**overrides, **preset}
