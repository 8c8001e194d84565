"""Named FID protocols: the presets a user names in one word (``genbench score --protocol NAME``).

A published FID is only comparable with another measured the same way: the same feature network
(and weights), the same resizing of the images to the network's input, the same reference images
(data set, split, count) and the same number of samples. ``PROTOCOLS`` is that table, one row a
preset; ``protocol_settings`` turns a row into the settings ``genbench score`` takes, after
checking that the network it names is the one pinned here.

Resizers: ``legacy-tf`` is torch-fidelity's resizing inside its extractor, TensorFlow 1's bilinear
resize as the original TTUR code did (the literature's CIFAR-10 numbers); ``clean-bicubic`` is
clean-fid's antialiased PIL bicubic resize before the network (Parmar et al. 2022,
``genbench.metrics.clean_resize``; the ``inception_clean`` network), which moves CIFAR-10 FID by 1-2
points; ``none``: the network reads the images at their own size (the LeNets, 28x28). A preset's
resizer is its network's (``FeatureNet.resizer``), tested equal.
"""

from __future__ import annotations

from dataclasses import dataclass

from genbench.core.errors import GenbenchError
from genbench.core.registry import Registry

#: the resizers genbench's feature extraction implements (all of ``RESIZERS``)
IMPLEMENTED_RESIZERS = ("legacy-tf", "clean-bicubic", "none")
RESIZERS = {
    "legacy-tf": "torch-fidelity's TF-exact bilinear resize to the network's input (299x299 for "
                 "inception-v3-compat) inside its extractor",
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
    """The whole sha256 of the network's weights (``genbench.metrics.pinned_weights`` for Inception-v3)."""
    resizer: str
    reference_split: str
    reference_count: int
    samples: int

    def describe(self) -> str:
        """One line naming everything the preset fixes."""
        return (f"{self.name}: {self.features} ({self.weights}, sha256 {self.weights_sha256}), resizer "
                f"{self.resizer}, {self.samples} samples against {self.reference_count} "
                f"{'/'.join(self.datasets)} {self.reference_split} images")


#: torch-fidelity's Inception-v3 weights and their pin (``genbench.metrics.pinned_weights``, tested equal)
INCEPTION_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"

PROTOCOLS: Registry[FidProtocol] = Registry("FID protocol")
for _protocol in (
    FidProtocol("cifar10-legacy", "the CIFAR-10 FID of the literature (TTUR, torch-fidelity)", ("cifar10",),
                "inception", INCEPTION_WEIGHTS, INCEPTION_SHA256, "legacy-tf", "train", 50000, 50000),
    FidProtocol("cifar10-clean", "its clean-fid variant (Parmar et al. 2022)", ("cifar10",),
                "inception_clean", INCEPTION_WEIGHTS, INCEPTION_SHA256, "clean-bicubic", "train", 50000,
                50000),
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


def matching_protocol(dataset: str, features: str, split: str, reference: int, samples: int) -> str | None:
    """The preset whose every setting a score had (None: none has them all): the name a leaderboard
    gives beside its sample-quality values, so that a reader sees which are comparable with whose."""
    for protocol in PROTOCOLS.in_order():
        if dataset in protocol.datasets and (protocol.features, protocol.reference_split,
                                             protocol.reference_count, protocol.samples) == (
                features, split, reference, samples):
            return protocol.name
    return None


def pinned_weights_sha256(protocol: FidProtocol) -> str:
    """The sha256 genbench pins for the weights file the protocol names: a shipped LeNet's, or the pin
    of a published network (``pinned_weights``), which every load of that file checks."""
    from genbench.metrics.features import PINNED_NETS
    from genbench.metrics.lenet import shipped_lenet
    from genbench.metrics.pinned_weights import PINNED

    if protocol.weights.startswith("lenet-"):
        return shipped_lenet(protocol.weights.removeprefix("lenet-").removesuffix(".safetensors")).sha256
    pin = PINNED[PINNED_NETS[protocol.features].pin]
    if protocol.weights != pin.file:
        raise GenbenchError(f"FID protocol {protocol.name!r} names {protocol.weights}; genbench's "
                            f"{pin.label} weights are {pin.file}")
    return pin.sha256


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
