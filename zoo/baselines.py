"""Representation baselines for the disentanglement metrics: not generative models.

Higgins et al. (2017) score raw pixels and PCA beside the learned representations; PCA is
``ppca`` (its posterior mean is the projection onto the principal subspace), raw pixels are
this model, whose representation of an image is the image itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from genbench.core.hyperparameters import Hyperparameters


@dataclass
class RawPixelsConfig(Hyperparameters):
    pass


class RawPixels(nn.Module):
    """The identity representation r(x) = x, flattened; nothing to train."""

    def __init__(self, config: RawPixelsConfig, data_shape: tuple[int, ...]):
        super().__init__()
        self.config = config
        self.data_shape = tuple(data_shape)

    def represent(self, x: Tensor) -> Tensor:
        return x.flatten(1)
