"""The model contract, importable as ``genbench.protocols`` (it lives in ``genbench.core.protocols``):
every capability a model may implement, and the helpers that read them."""

from genbench.core.protocols import (
    CAPABILITIES,
    DataInitialized,
    DecoderModel,
    DeterministicDecoder,
    DiffusionDecoder,
    DiffusionModel,
    ExactLikelihood,
    JointPrior,
    LatentSimulator,
    LatentVariableModel,
    LayeredEncoder,
    ProgressAware,
    Reconstructor,
    Representation,
    Sampler,
    Trainable,
    VelocityField,
    capabilities,
    data_interval,
    decoder_prior,
    log_prob_is_density,
)

__all__ = ["CAPABILITIES", "DataInitialized", "DecoderModel", "DeterministicDecoder", "DiffusionDecoder",
           "DiffusionModel", "ExactLikelihood",
           "JointPrior", "LatentSimulator", "LatentVariableModel", "LayeredEncoder", "ProgressAware",
           "Reconstructor", "Representation", "Sampler", "Trainable", "VelocityField", "capabilities",
           "data_interval", "decoder_prior", "log_prob_is_density"]
