"""Feature networks of the sample-quality metrics, by name: ``lenet``, ``inception``, or a path.

``FEATURE_NETS`` registers the named ones (a :class:`FeatureNetSpec` each, as the data sets
are registered); any other name is read as the path of a TorchScript file.

Each is a torch-fidelity feature extractor (``genbench.metrics.fidelity_extractors``, registered
through torch-fidelity's public ``register_feature_extractor`` when first used) so that
torch-fidelity extracts the features and computes IS/FID/KID/precision-recall; genbench only
picks the network and its layers:

- ``lenet``: genbench's domain classifier of gray 28x28 images (``genbench.metrics.lenet``),
  logits for IS, its penultimate layer for the rest. The default where it applies. Its weights
  ship with genbench, one network per labelled data set (8-bit MNIST for the MNIST variants,
  Fashion-MNIST for its variants: a data set's ``feature_source`` picks it), sha256-checked at
  load and never retrained here, so FID-LeNet is one number on every machine.
- ``inception``, ``inception_clean``, ``vgg16``, ``dinov2``, ``clip``: the published networks,
  through torch-fidelity's extractors, gray images repeated to RGB, each from weights pinned by
  their whole sha256 (``genbench.metrics.pinned_weights``: the file ``GENBENCH_<NAME>_WEIGHTS``
  names, else torch hub's checkpoints folder, fetched there on first use), checked before they are
  loaded: torch-fidelity's Inception-v3 (``inception-v3-compat``, its legacy TF-bilinear resize;
  ``inception_clean``: the same weights after clean-fid's antialiased bicubic resize), VGG16 (the
  precision/recall and density/coverage papers' network, fc2 after its ReLU), DINOv2 ViT-L/14
  (dgm-eval's FD_DINOv2) and CLIP ViT-L/14 (dgm-eval's FD_CLIP). The weights' sha256 is in the
  network's ``identity`` (every cache key) and its provenance (every table footer).
- ``path/to/net.pt``: a TorchScript module the user brings. It receives floats in [0, 1],
  ``[B, C, H, W]``, and returns features ``[B, D]`` or a pair (features, logits); IS needs
  the logits. ``torch.jit.load`` rebuilds TorchScript code and tensors from the archive with
  TorchScript's own deserializer, not Python's pickle, and TorchScript cannot import or run
  Python. Its operators can touch files, though (``torch.save`` writes one, ``torch.from_file``
  reads one, a loaded library's ops such as torchvision's ``image::write_file`` too), and a
  ``__setstate__`` method runs at load. So before loading, genbench refuses an archive whose
  compressed members would inflate past ``MAX_INFLATED_BYTES`` or whose code defines a
  ``__setstate__`` (``check_load_time_code``), and before calling it, one that exposes a
  method besides ``forward`` or whose inlined ``forward`` graph calls an operator outside
  ``TORCHSCRIPT_NAMESPACES``, a refused one (``TORCHSCRIPT_REFUSED``) or a call it cannot inline.
  ``load_checked_torchscript`` applies these checks; a TorchScript generator
  (``genbench.generators``) passes the same ones.

The name appears in every metric key (``fid_lenet``, ``fid_inception``): values from
different feature networks are not comparable.
"""

from __future__ import annotations

import os
import stat
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from genbench.core.errors import GenbenchError, MetricSkipped, log
from genbench.core.registry import Registry
from genbench.core.state_specs import check_torch_zip
from genbench.core.weights import file_sha256
from genbench.data.root import DEFAULT_ROOT, data_root
from genbench.metrics.lenet import SHIPPED, lenet_fits, shipped_lenet, shipped_source
from genbench.metrics.pinned_weights import PINNED, WeightsUnavailable, pinned_file

#: torch-fidelity's Inception-v3 weights (its ``URL_INCEPTION_V3``; tests/metrics/test_fidelity_extractors.py
#: checks the two agree), from the pin table so that naming them does not import torch-fidelity
URL_INCEPTION_V3 = PINNED["inception"].url
INCEPTION_FILE = PINNED["inception"].file
#: environment variable naming an Inception-v3 weights file (else torch hub's checkpoints folder); every
#: pinned network has its own, ``GENBENCH_<NAME>_WEIGHTS`` (``PinnedWeights.env``)
INCEPTION_ENV = PINNED["inception"].env
CACHE_ENV = "GENBENCH_CACHE"
CACHE_FOLDER = "genbench-cache"
#: operator namespaces a TorchScript feature network may call: tensor maths and control flow
TORCHSCRIPT_NAMESPACES = ("aten", "prim")
#: the operators of those namespaces that take a file name, and the calls inlining leaves (an
#: interface's or a forked function's), whose code could not be checked
TORCHSCRIPT_REFUSED = ("aten::save", "aten::from_file", "prim::CallMethod", "prim::CallFunction")
#: the only method a TorchScript feature network may expose
TORCHSCRIPT_METHODS = ("forward",)


class FeaturesUnavailable(MetricSkipped):
    """The chosen feature network cannot score this data (a run records why and skips the metrics)."""


@dataclass(frozen=True)
class FeatureNet:
    name: str
    """Suffix of every metric key: lenet, inception, ts_<file stem>."""
    label: str
    """How tables name it: LeNet, Inception, TorchScript(file.pt)."""
    fidelity_name: str
    """Its name in torch-fidelity's feature-extractor registry."""
    weights_path: Path
    layer_fid: str
    """Layer of FID, KID and precision/recall."""
    layer_isc: str | None
    """Logits of the Inception Score; None where the network has none."""
    identity: str
    """Hash of the network's weights and config: part of every cache key."""
    rgb: bool = False
    """Gray images are repeated to three channels (Inception)."""
    detail: str = ""
    resizer: str = "none"
    """How images reach the network's input size (``genbench.metrics.fid_protocols.RESIZERS``)."""


@dataclass(frozen=True)
class FeatureNetSpec:
    """A named feature network: what tables call it, and how to make it ready for a data set."""

    name: str
    label: str
    """How tables name its metrics' columns (FID-LeNet)."""
    summary: str
    resolve: Callable[..., FeatureNet]
    """``resolve(dataset, cache_root, log)``: the network for ``dataset``, or FeaturesUnavailable."""
    provenance: Callable[[], str] | None = None
    """Which weights these are (a table footer says it under the network's columns)."""


#: the named feature networks; ``resolve_feature_net`` reads any other name as a TorchScript path
FEATURE_NETS: Registry[FeatureNetSpec] = Registry("feature network")


def _writable(folder: Path) -> bool:
    """Whether genbench may write in ``folder``: its nearest existing ancestor carries a write bit
    (honoured even by root, who could write anyway) and a file can be created there."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not existing.stat().st_mode & stat.S_IWUSR:
        return False
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError:
        return False
    return True


def cache_dir(root: str | os.PathLike | None = None) -> Path:
    """Where feature caches go: ``$GENBENCH_CACHE/genbench-cache`` where the variable is set (and
    nowhere else: a shared data root stays untouched), else ``<data root>/genbench-cache``, or
    ``~/.cache/genbench/genbench-cache`` where the data root is read-only."""
    chosen = os.environ.get(CACHE_ENV)
    candidates = [Path(chosen).expanduser() / CACHE_FOLDER] if chosen else [
        data_root(root) / CACHE_FOLDER, data_root(DEFAULT_ROOT) / CACHE_FOLDER]
    for folder in candidates:
        if _writable(folder):
            return folder
    raise GenbenchError(f"no writable cache folder ({', '.join(map(str, candidates))}); "
                        f"set {CACHE_ENV} to a folder genbench may write in")


def default_feature_net(dataset) -> str:
    """``lenet`` for gray 28x28 data with labels or a feature source (MNIST, Fashion-MNIST and their
    variants), else ``inception``."""
    return LENET.name if lenet_fits(dataset) is None else INCEPTION.name


def feature_label(net_name: str) -> str:
    """The table label of the feature network named ``net_name`` in metric keys: the registered
    label (LeNet, Inception), else the name itself (``ts_<stem>`` of a TorchScript file)."""
    return FEATURE_NETS[net_name].label if net_name in FEATURE_NETS else net_name


def feature_net_provenance(net_name: str) -> str:
    """One line on which weights the network named ``net_name`` in metric keys is."""
    spec = FEATURE_NETS[net_name] if net_name in FEATURE_NETS else None
    what = spec.provenance() if spec and spec.provenance else f"the TorchScript file {net_name[3:]}.pt"
    return f"{feature_label(net_name)}: {what}"


def inception_weights() -> Path:
    """The checked Inception-v3 weights file (``pinned_file``), or FeaturesUnavailable saying how to
    provide it."""
    try:
        return pinned_file("inception")[0]
    except WeightsUnavailable as exc:
        raise FeaturesUnavailable(str(exc)) from None


def load_torchscript(path: Path):
    """``torch.jit.load`` in eval mode, without its deprecation warning (stderr keeps genbench's lines)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu").eval()


def check_load_time_code(path: Path) -> None:
    """Refuse an archive whose code runs while it loads (a ``__setstate__``), before loading it."""
    members = check_torch_zip(path, "TorchScript file")
    with zipfile.ZipFile(path) as archive:
        for member in members:
            if "/code/" in member.filename and member.filename.endswith(".py"):
                if b"def __setstate__" in archive.read(member):
                    raise GenbenchError(f"{path}: refused, a TorchScript file whose code runs as it loads "
                                        f"(__setstate__ in {member.filename})")


def _graph_ops(graph) -> Iterator[str]:
    """The kind of every node of a TorchScript graph, its nested blocks and subgraphs included."""
    for node in graph.nodes():
        yield node.kind()
        for block in node.blocks():
            yield from _graph_ops(block)
        if "Subgraph" in node.attributeNames():
            yield from _graph_ops(node.g("Subgraph"))


def _check_torchscript_program(net, path: Path, kind: str) -> None:
    """Refuse a loaded TorchScript ``kind`` (feature network, generator) that exposes other methods than
    ``forward`` or whose ``forward`` calls an operator that is not plain tensor maths (module docstring)."""
    extra = sorted(set(net._c._method_names()) - set(TORCHSCRIPT_METHODS))
    if extra:
        raise GenbenchError(f"{path}: refused, a TorchScript {kind} may expose only forward, "
                            f"it has {', '.join(extra)}")
    refused = sorted({op for op in _graph_ops(net.inlined_graph)
                      if op.split("::")[0] not in TORCHSCRIPT_NAMESPACES or op in TORCHSCRIPT_REFUSED})
    if refused:
        raise GenbenchError(f"{path}: refused, its forward calls {', '.join(refused)} (a TorchScript {kind} "
                            f"may call only {' and '.join(TORCHSCRIPT_NAMESPACES)} operators that "
                            "touch no file, and nothing genbench cannot inline and check)")


def load_checked_torchscript(path: Path, kind: str = "feature network"):
    """A TorchScript file that passed every check of the module docstring, loaded: the one gate of
    the TorchScript files genbench calls (a ``kind``: feature network or generator)."""
    check_load_time_code(path)
    try:
        net = load_torchscript(path)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise GenbenchError(f"{path}: not a TorchScript module ({first})") from None
    _check_torchscript_program(net, path, kind)
    return net


def _torchscript(path: Path, dataset) -> FeatureNet:
    if not path.is_file():
        raise GenbenchError(f"--features {path}: no such file (expected {', '.join(FEATURE_NETS)} or a "
                            "TorchScript .pt file)")
    net = load_checked_torchscript(path)
    try:
        with torch.no_grad():
            out = net(torch.zeros(2, *dataset.shape))
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise FeaturesUnavailable(f"{path} cannot read {dataset.name} images "
                                  f"{list(dataset.shape)}: {first}") from None
    outputs = list(out) if isinstance(out, tuple | list) else [out]
    if not 1 <= len(outputs) <= 2 or any(not torch.is_tensor(t) or t.dim() != 2 for t in outputs):
        raise GenbenchError(f"{path}: must return features [B, D] or (features [B, D], logits [B, K])")
    return FeatureNet(f"ts_{path.stem}", f"TorchScript({path.name})", "genbench-torchscript", path,
                      "features", "logits" if len(outputs) == 2 else None, file_sha256(path))


def lenet_feature_net(weights_path: Path, sha256: str, source: str, test_accuracy: float) -> FeatureNet:
    """The LeNet of a weights file; its sha256 is its identity, so other weights never share a cache."""
    return FeatureNet(LENET.name, LENET.label, "genbench-lenet", weights_path, "features", "logits",
                      f"lenet-{sha256[:16]}",
                      detail=f"LeNet of {source} (sha256 {sha256[:16]}, test accuracy {test_accuracy:.4f})")


def _resolve_lenet(dataset, cache_root: str | None, log) -> FeatureNet:
    """The shipped LeNet of the data set's feature source (``shipped_source``) for every data set it
    fits: no data are loaded and nothing is trained, so the network (and FID-LeNet) is the same on
    every machine."""
    reason = lenet_fits(dataset)
    if reason:
        raise FeaturesUnavailable(reason)
    source = shipped_source(dataset)
    shipped = shipped_lenet(source)
    return lenet_feature_net(shipped.weights_path, shipped.sha256, source, shipped.test_accuracy)


def _lenet_provenance() -> str:
    """Every shipped LeNet and the data it scores (a table footer cannot know which one its rows used,
    so it names each; the cache keys and the rows' data sets tell them apart)."""
    lines = []
    for source in SHIPPED:
        shipped = shipped_lenet(source)
        lines.append(f"the LeNet shipped with genbench, trained on {source} (sha256 {shipped.sha256}, test "
                     f"accuracy {shipped.test_accuracy:.4f}), for data sets whose feature source is {source}")
    return ("; ".join(lines) + "; each reads the 28x28 images as they are (resizer none) "
            "(`python -m genbench.metrics.lenet --retrain` reproduces them)")


@dataclass(frozen=True)
class PinnedNet:
    """How a pinned network is asked of torch-fidelity: its extractor, layers and resizer."""

    pin: str
    """Its row in ``pinned_weights.PINNED``."""
    fidelity_name: str
    layer_fid: str
    layer_isc: str | None
    resizer: str
    label: str


def _pinned_resolver(name: str, net: PinnedNet) -> Callable[..., FeatureNet]:
    """``resolve`` of a pinned network: gray or RGB data, the weights file found and its sha256 checked
    (``pinned_file``); the hash is the network's identity."""

    def resolve(dataset, cache_root: str | None, log) -> FeatureNet:
        pin = PINNED[net.pin]
        if dataset.shape[0] not in (1, 3):
            raise FeaturesUnavailable(f"{pin.label} reads gray or RGB images, {dataset.name} has "
                                      f"{dataset.shape[0]} channels")
        try:
            path, sha256 = pinned_file(net.pin)
        except WeightsUnavailable as exc:
            raise FeaturesUnavailable(str(exc)) from None
        return FeatureNet(name, net.label, net.fidelity_name, path, net.layer_fid, net.layer_isc,
                          f"{name}-{net.resizer}-{sha256}", rgb=True, resizer=net.resizer,
                          detail=f"{pin.label} (sha256 {sha256[:16]}), resizer {net.resizer}")

    return resolve


def _pinned_provenance(net: PinnedNet) -> Callable[[], str]:
    return lambda: f"{PINNED[net.pin].describe()}, images resized by {net.resizer}"


LENET = FEATURE_NETS.register("lenet", FeatureNetSpec(
    "lenet", "LeNet", "genbench's classifiers of gray 28x28 images, trained once on 8-bit MNIST and on "
    "Fashion-MNIST and shipped",
    _resolve_lenet, _lenet_provenance))

#: the pinned networks: genbench name -> how torch-fidelity runs it (``fidelity_extractors``)
PINNED_NETS = {
    "inception": PinnedNet("inception", "genbench-inception", "2048", "logits_unbiased", "legacy-tf",
                           "Inception"),
    "inception_clean": PinnedNet("inception", "genbench-inception-clean", "2048", "logits_unbiased",
                                 "clean-bicubic", "Inception (clean)"),
    "vgg16": PinnedNet("vgg16", "genbench-vgg16", "fc2_relu", None, "legacy-tf", "VGG16"),
    "dinov2": PinnedNet("dinov2", "genbench-dinov2", "dinov2", None, "legacy-tf", "DINOv2"),
    "clip": PinnedNet("clip", "genbench-clip", "clip", None, "legacy-tf", "CLIP"),
}
_SUMMARIES = {
    "inception": "torch-fidelity's Inception-v3 (inception-v3-compat), its legacy TF-bilinear resize",
    "inception_clean": "the same Inception-v3 after clean-fid's antialiased PIL-bicubic resize",
    "vgg16": "torchvision's VGG16, fc2 after its ReLU (precision/recall, density/coverage)",
    "dinov2": "DINOv2 ViT-L/14 (FD_DINOv2); its code comes from torch hub",
    "clip": "OpenAI's CLIP ViT-L/14 image encoder (FD_CLIP)",
}
for _name, _net in PINNED_NETS.items():
    FEATURE_NETS.register(_name, FeatureNetSpec(_name, _net.label, f"{_SUMMARIES[_name]}; pinned weights",
                                                _pinned_resolver(_name, _net), _pinned_provenance(_net)))
INCEPTION = FEATURE_NETS["inception"]


def resolve_feature_net(name: str | None, dataset, cache_root: str | None = None, log=log) -> FeatureNet:
    """The feature network ``name`` (None: the data set's default) ready for ``dataset``: a name
    in ``FEATURE_NETS``, else the path of a TorchScript file.

    ``cache_root`` is the data folder of the cache (see ``cache_dir``); the LeNet needs none.
    """
    name = name or default_feature_net(dataset)
    if name in FEATURE_NETS:
        return FEATURE_NETS[name].resolve(dataset, cache_root, log)
    return _torchscript(Path(name).expanduser(), dataset)
