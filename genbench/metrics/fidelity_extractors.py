"""genbench's feature networks as torch-fidelity feature extractors, registered on import.

torch-fidelity extracts the features of every named network of ``genbench.metrics.features``
through one of these classes (its ``fidelity_name``): ``genbench-lenet`` for the shipped LeNet,
``genbench-torchscript`` for a user's checked TorchScript file, and torch-fidelity's own extractors
for the pinned networks (``genbench.metrics.pinned_weights``), each subclassed so that the weights
file's sha256 is checked against the pin as the extractor is built, before anything reads it, and is
read without unpickling: ``torch.load`` is forced to ``weights_only`` (torch's
``TORCH_FORCE_WEIGHTS_ONLY_LOAD``) while torch-fidelity loads a state dict (Inception-v3, VGG16);
DINOv2's state dict is read by genbench with ``weights_only=True``, its code comes from torch hub;
CLIP's file is OpenAI's TorchScript archive, loaded with ``torch.jit.load`` after genbench's
load-time checks (no ``__setstate__``, bounded inflation) and its pin, and only its tensors are used
(its methods are never called). ``genbench-inception-clean`` is Inception-v3 after clean-fid's
resize (``genbench.metrics.clean_resize``) in place of its built-in legacy one. They live apart from
``features`` because importing torch-fidelity imports torchvision and torch's compiler stack
(about a second): a process that never computes IS/FID/KID/precision-recall never pays it.
Import this module (``sample_quality.extract_features`` does) before naming an extractor to
torch-fidelity.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import torch
from torch import Tensor
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_clip import FeatureExtractorCLIP, build_model
from torch_fidelity.feature_extractor_dinov2 import FeatureExtractorDinoV2
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torch_fidelity.feature_extractor_vgg16 import FeatureExtractorVGG16
from torch_fidelity.helpers import text_to_dtype, vassert
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

from genbench.core.weights import read_weights
from genbench.metrics.clean_resize import INCEPTION_SIZE, clean_resize
from genbench.metrics.features import check_load_time_code, load_torchscript
from genbench.metrics.lenet import LeNet, LeNetConfig
from genbench.metrics.pinned_weights import PINNED, check_pinned


def _uint8_to_unit(x: Tensor) -> Tensor:
    vassert(torch.is_tensor(x) and x.dtype == torch.uint8, "Expecting images as uint8 tensors")
    return x.float() / 255.0


class FeaturesAndLogits(FeatureExtractorBase):
    """A torch-fidelity extractor with two layers: ``features`` (FID, KID, PR) and ``logits`` (IS)."""

    @staticmethod
    def get_provided_features_list():
        return ("features", "logits")

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits", "fid": "features", "kid": "features", "prc": "features"}[metric]

    @staticmethod
    def can_be_compiled():
        return False


class LeNetExtractor(FeaturesAndLogits):
    """genbench's LeNet for torch-fidelity: weights from ``feature_extractor_weights_path``."""

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        state = read_weights(Path(feature_extractor_weights_path))
        self.net = LeNet(LeNetConfig(hidden=state["fc1.weight"].shape[0],
                                     n_classes=state["fc2.weight"].shape[0]))
        self.net.load_state_dict(state)
        self.net.eval()

    def forward(self, x):
        features, logits = self.net.features_and_logits(_uint8_to_unit(x))
        out = {"features": features, "logits": logits}
        return tuple(out[name] for name in self.features_list)


class TorchScriptExtractor(FeaturesAndLogits):
    """A user's TorchScript feature network for torch-fidelity."""

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        self.net = load_torchscript(Path(feature_extractor_weights_path))

    def forward(self, x):
        out = self.net(_uint8_to_unit(x))
        features, logits = out if isinstance(out, tuple | list) else (out, None)
        vassert(logits is not None or "logits" not in self.features_list,
                "The TorchScript feature network returns no logits")
        named = {"features": features.float(), "logits": None if logits is None else logits.float()}
        return tuple(named[name] for name in self.features_list)


@contextmanager
def weights_only_loads() -> Iterator[None]:
    """Every ``torch.load`` inside reads weights only, whatever its caller asks (torch's own switch)."""
    before = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"]
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = before


def _checked(network: str, path) -> Path:
    """The weights file of a pinned network, once its sha256 is the pin's (else one error, unread)."""
    vassert(path is not None, f"genbench's {network} extractor needs its checked weights file")
    check_pinned(Path(path), PINNED[network])
    return Path(path)


class _PinnedStateDict:
    """A torch-fidelity extractor that builds its network and loads a state dict (``PIN``'s weights,
    their sha256 checked first, read weights-only); put before that extractor's class."""

    PIN: str

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        path = _checked(self.PIN, feature_extractor_weights_path)
        with weights_only_loads():
            super().__init__(name, features_list, feature_extractor_weights_path=str(path), **kwargs)

    @staticmethod
    def can_be_compiled():
        return False


class PinnedInception(_PinnedStateDict, FeatureExtractorInceptionV3):
    """torch-fidelity's Inception-v3 (its legacy TF-bilinear resize inside) from the pinned weights."""

    PIN = "inception"


def inception_pool3_and_logits(net: FeatureExtractorInceptionV3, x: Tensor) -> dict[str, Tensor]:
    """pool3 (``2048``) and ``logits_unbiased`` of torch-fidelity's Inception-v3 on images already at
    299x299 and scaled to [-1, 1]: its forward after its resize and scaling, layer for layer."""
    for layer in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1", "Conv2d_3b_1x1",
                  "Conv2d_4a_3x3", "MaxPool_2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
                  "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "AvgPool"):
        x = getattr(net, layer)(x)
    pool3 = torch.flatten(x, 1)
    return {"2048": pool3.to(torch.float32), "logits_unbiased": pool3.mm(net.fc.weight.T).to(torch.float32)}


class CleanInception(PinnedInception):
    """Inception-v3 after clean-fid's resize: each image resized to 299x299 by PIL's antialiased bicubic
    (floats, never rounded), then the network as torch-fidelity runs it (its own resize of a 299x299
    image is the identity, so it is skipped)."""

    def forward(self, x):
        vassert(torch.is_tensor(x) and x.dtype == torch.uint8, "Expecting images as uint8 tensors")
        vassert(x.dim() == 4 and x.shape[1] == 3, f"Input is not Bx3xHxW: {x.shape}")
        resized = torch.from_numpy(clean_resize(x.cpu().numpy(), INCEPTION_SIZE)).to(x.device)
        scaled = (resized.to(self.feature_extractor_internal_dtype) - 128) / 128
        features = inception_pool3_and_logits(self, scaled)
        vassert(set(self.features_list) <= set(features), "The clean Inception gives 2048, logits_unbiased")
        return tuple(features[name] for name in self.features_list)


class PinnedVGG16(_PinnedStateDict, FeatureExtractorVGG16):
    """torch-fidelity's VGG16 (torchvision's architecture) from the pinned weights."""

    PIN = "vgg16"


class PinnedCLIP(FeatureExtractorCLIP):
    """torch-fidelity's CLIP image encoder (its ``build_model`` and forward) from the tensors of OpenAI's
    pinned TorchScript archive: checked for load-time code, loaded, and only its state dict read."""

    PIN = "clip"

    def __init__(self, name, features_list, feature_extractor_weights_path=None,
                 feature_extractor_internal_dtype=None, **kwargs):
        FeatureExtractorBase.__init__(self, name, features_list)
        self.feature_extractor_internal_dtype = text_to_dtype(feature_extractor_internal_dtype, "float32")
        path = _checked(self.PIN, feature_extractor_weights_path)
        check_load_time_code(path)
        state = load_torchscript(path).state_dict()
        self.model = build_model(dict(state), self.feature_extractor_internal_dtype)
        self.resolution = self.model.visual.input_resolution
        self.requires_grad_(False)

    @staticmethod
    def can_be_compiled():
        return False


#: where DINOv2's code comes from (torch hub: GitHub on first use, then its cache) and which model
DINOV2_REPO, DINOV2_MODEL = "facebookresearch/dinov2", "dinov2_vitl14"


def dinov2_architecture() -> torch.nn.Module:
    """DINOv2 ViT-L/14 without weights, built by Meta's code through torch hub (the one part of a
    pinned network that needs the internet, once: torch hub caches the code and reuses it offline)."""
    os.environ.setdefault("XFORMERS_DISABLED", "1")
    with redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.hub.load(DINOV2_REPO, DINOV2_MODEL, pretrained=False, trust_repo=True, verbose=False)


class PinnedDinoV2(FeatureExtractorDinoV2):
    """torch-fidelity's DINOv2 extractor (its preprocessing and forward) on ViT-L/14, the pinned weights
    read with ``weights_only=True`` into the architecture torch hub builds."""

    PIN = "dinov2"

    def __init__(self, name, features_list, feature_extractor_weights_path=None,
                 feature_extractor_internal_dtype=None, **kwargs):
        FeatureExtractorBase.__init__(self, name, features_list)
        self.feature_extractor_internal_dtype = text_to_dtype(feature_extractor_internal_dtype, "float32")
        path = _checked(self.PIN, feature_extractor_weights_path)
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        self.model = dinov2_architecture()
        self.model.load_state_dict(state)
        self.to(self.feature_extractor_internal_dtype)
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def can_be_compiled():
        return False


#: genbench's extractors by their torch-fidelity name (``FeatureNet.fidelity_name``)
EXTRACTORS = {
    "genbench-lenet": LeNetExtractor, "genbench-torchscript": TorchScriptExtractor,
    "genbench-inception": PinnedInception, "genbench-inception-clean": CleanInception,
    "genbench-vgg16": PinnedVGG16, "genbench-clip": PinnedCLIP, "genbench-dinov2": PinnedDinoV2,
}
for _name, _cls in EXTRACTORS.items():
    if _name not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(_name, _cls)
