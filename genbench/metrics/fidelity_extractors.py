"""genbench's feature networks as torch-fidelity feature extractors, registered on import.

torch-fidelity extracts the features of every named network of ``genbench.metrics.features``
through one of these classes (its ``fidelity_name``): ``genbench-lenet`` for the shipped LeNet,
``genbench-torchscript`` for a user's checked TorchScript file. They live apart from
``features`` because importing torch-fidelity imports torchvision and torch's compiler stack
(about a second): a process that never computes IS/FID/KID/precision-recall never pays it.
Import this module (``sample_quality.extract_features`` does) before naming an extractor to
torch-fidelity.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.helpers import vassert
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

from genbench.core.weights import read_weights
from genbench.metrics.features import load_torchscript
from genbench.metrics.lenet import LeNet, LeNetConfig


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


for _name, _cls in (("genbench-lenet", LeNetExtractor), ("genbench-torchscript", TorchScriptExtractor)):
    if _name not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(_name, _cls)
