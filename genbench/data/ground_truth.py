"""Data sets with known generative factors, for disentanglement metrics.

A ground-truth data set is a grid of discrete factors (dSprites: shape x scale x
orientation x x-position x y-position); an observation is rendered (or looked up) from
one value of each factor. Metrics are pure functions of such a data set, a representation
function and a random generator (disentanglement_lib's structure).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
from torch import Tensor


@runtime_checkable
class GroundTruthData(Protocol):
    #: one name and one number of values per factor, in the same order
    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``[n, n_factors]`` int64 factor indices, each uniform over its values."""
        ...

    def sample_observations_from_factors(self, factors: np.ndarray, rng: np.random.Generator) -> Tensor:
        """Float images ``[n, C, H, W]`` in [0, 1], one per row of ``factors``.

        ``rng`` chooses among observations that share the same factors where there is
        more than one (a factor the grid does not vary); deterministic data ignore it.
        """
        ...
