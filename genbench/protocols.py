"""The model contract, importable as ``genbench.protocols`` (it lives in ``genbench.core.protocols``)."""

from genbench.core.protocols import (
    CAPABILITIES,
    DataInitialized,
    ExactLikelihood,
    LatentVariableModel,
    LayeredEncoder,
    ProgressAware,
    Reconstructor,
    Representation,
    Sampler,
    Trainable,
    capabilities,
)

__all__ = ["CAPABILITIES", "DataInitialized", "ExactLikelihood", "LatentVariableModel", "LayeredEncoder",
           "ProgressAware", "Reconstructor", "Representation", "Sampler", "Trainable", "capabilities"]
