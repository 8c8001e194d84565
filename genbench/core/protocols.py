"""The public model contract: capabilities as runtime-checkable Protocols.

A model implements whichever capabilities it has; every metric declares the capability it
needs and the harness computes exactly the metrics that apply (``isinstance`` checks, never
model names). Third-party models implement these methods and register under the
``genbench.zoo`` entry-point group.

Models never write files: what a run leaves in its directory is written by the harness.

Conventions: ``x`` is a float tensor in data space, shape ``[B, *data_shape]`` (images are
``[B, C, H, W]`` with values in [0, 1]; binarized data are 0/1). Log densities are in nats.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor
from torch.distributions import Distribution


@runtime_checkable
class Sampler(Protocol):
    def sample(self, n: int) -> Tensor:
        """n samples in data space, ``[n, *data_shape]``."""
        ...


@runtime_checkable
class LatentVariableModel(Protocol):
    def log_importance_weights(self, x: Tensor, k: int) -> Tensor:
        """``[k, B]`` values log p(x, z_i) - log q(z_i | x), z_i ~ q(z | x) independently.

        For hierarchical models z is all stochastic layers. x is encoded once per call;
        ``genbench.metrics`` turns these into ELBO, IWAE bounds and NLL estimates.
        """
        ...

    def encode(self, x: Tensor) -> Distribution:
        """q(z | x) of the first (lowest) stochastic layer: batch shape [B], event [latent]."""
        ...

    def prior(self) -> Distribution:
        """p(z) of that layer where it is a fixed distribution."""
        ...


@runtime_checkable
class LayeredEncoder(Protocol):
    """Optional for hierarchical models: q of every stochastic layer, lowest first.

    Each layer's distribution is computed from the means of the layers below it, so that the
    active units of every layer are a deterministic function of x. Burda et al.'s code instead
    feeds each layer one sample of the layer below (``genbench.metrics.latent`` says where
    genbench's count departs from theirs).
    """

    def encode_layers(self, x: Tensor) -> list[Distribution]: ...


@runtime_checkable
class Reconstructor(Protocol):
    """Optional: the decoder's mean at the posterior mean, for reconstruction pictures."""

    def reconstruct(self, x: Tensor) -> Tensor: ...


@runtime_checkable
class Representation(Protocol):
    """A deterministic representation r(x), ``[B, d]``: what disentanglement scores rate.

    Latent-variable models without it are rated on their posterior mean E_q[z | x].
    """

    def represent(self, x: Tensor) -> Tensor: ...


@runtime_checkable
class ExactLikelihood(Protocol):
    """``log_prob`` is the log probability of discrete data (bits/dim apply), unless the model
    sets ``log_prob_is_density = True``: a density on data it does not model as discrete (PPCA's
    Gaussian on binary pixels), whose NLL is reported but whose bits/dim have no meaning."""

    def log_prob(self, x: Tensor) -> Tensor:
        """``[B]`` exact log p(x) in nats."""
        ...


def log_prob_is_density(model: object) -> bool:
    """Whether the model's likelihood is a density rather than a probability of discrete data."""
    return bool(getattr(model, "log_prob_is_density", False))


@runtime_checkable
class DataInitialized(Protocol):
    """A model that looks at the training data once before training.

    For a closed-form model (probabilistic PCA) this *is* the fit; for a neural model it
    is data-dependent initialisation (the IWAE output bias = logit of the training mean).
    """

    def init_from_data(self, x_train: Tensor) -> None: ...


@runtime_checkable
class Trainable(Protocol):
    """One contract for gradient training, alternating updates included.

    ``configure_optimizers`` names each optimizer (a VAE has one, a GAN has "generator" and
    "discriminator"). ``training_losses`` yields ``(optimizer_name, loss)`` pairs for one
    batch; the training loop checks each loss is finite, back-propagates it and steps that
    optimizer before asking for the next pair, so a GAN yields its discriminator loss, then
    (computed after that update) its generator loss. The loop owns zero_grad/backward/step,
    learning-rate schedules, NaN checks, checkpoints and distributed wrapping.

    Updates may alternate across batches too (WGAN: one critic step per batch and a generator
    step after every n_critic-th); counters for that belong in the model's buffers, so they
    resume with the checkpoint. Optimizers may start at different rates (a multiple of ``lr``):
    the loop's schedule scales each parameter group's initial rate.
    """

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]: ...

    def training_losses(self, x: Tensor) -> Iterator[tuple[str, Tensor]]: ...


@runtime_checkable
class ProgressAware(Protocol):
    """Optional for Trainable models whose loss depends on how far training has come.

    The training loop calls this before every step with the epoch (a float) and the KL
    warm-up weight in [0, 1] (``TrainConfig.kl_warmup_epochs``; 1 without warm-up).
    """

    def set_training_progress(self, epoch: float, kl_weight: float) -> None: ...


@runtime_checkable
class DecoderModel(Protocol):
    """p(x) = integral of p(z) p(x | z) dz, through its two halves: what annealed importance sampling
    and bidirectional Monte Carlo need (``genbench.metrics.ais``), no encoder asked for.

    For a hierarchical model z is all stochastic layers, lowest first, concatenated; where its
    ``prior()`` is the lowest layer's (``LatentVariableModel``: it raises for a learned marginal),
    it also implements ``JointPrior``. On discrete data ``log_likelihood`` is a log probability
    (bits/dim apply) unless the model sets ``log_prob_is_density``.
    """

    def prior(self) -> Distribution:
        """p(z), event shape [latent]: ``sample(shape)`` and a ``log_prob`` differentiable in z."""
        ...

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """``[k, B]`` log p(x | z), x ``[B, *data_shape]``, z ``[k, B, latent]``; differentiable in z."""
        ...


@runtime_checkable
class JointPrior(Protocol):
    """Optional for a hierarchical DecoderModel: p(z) over all its stochastic layers (the z of
    ``log_likelihood``), where ``prior()`` keeps LatentVariableModel's meaning (the lowest layer's)."""

    def joint_prior(self) -> Distribution: ...


@runtime_checkable
class LatentSimulator(Protocol):
    """Optional for a DecoderModel: x ~ p(x | z), what BDMC simulates its data with."""

    def sample_given_z(self, z: Tensor) -> Tensor:
        """``[n, *data_shape]`` draws of x for z ``[n, latent]``."""
        ...


@runtime_checkable
class DeterministicDecoder(Protocol):
    """A generator x = g(z) with no p(x | z) of its own (a GAN's). AIS evaluates it under a Gaussian
    observation model around g(z) whose std genbench chooses on validation data, as Wu et al.
    (2017) do (``genbench.metrics.ais.GaussianObservation``)."""

    def latent_prior(self) -> Distribution:
        """p(z) of the generator's input (not ``prior``: a generator has no posterior, and is no
        LatentVariableModel)."""
        ...

    def generate(self, z: Tensor) -> Tensor:
        """``[n, *data_shape]`` images in [0, 1] for z ``[n, latent]``, differentiable in z."""
        ...


def decoder_prior(model: object) -> Distribution:
    """p(z) over the z a DecoderModel's ``log_likelihood`` takes: its ``joint_prior()`` where it has one."""
    return model.joint_prior() if isinstance(model, JointPrior) else model.prior()


#: every capability by name, in the order listings show them: what a metric or the training loop
#: asks for first, then the optional refinements of a capability (tests/core/test_public_contract.py
#: checks that every Protocol of this module is here and in ``genbench.protocols``)
CAPABILITIES: dict[str, type] = {
    "Sampler": Sampler,
    "LatentVariableModel": LatentVariableModel,
    "ExactLikelihood": ExactLikelihood,
    "Trainable": Trainable,
    "DataInitialized": DataInitialized,
    "Representation": Representation,
    "DecoderModel": DecoderModel,
    "DeterministicDecoder": DeterministicDecoder,
    "LayeredEncoder": LayeredEncoder,
    "Reconstructor": Reconstructor,
    "ProgressAware": ProgressAware,
    "JointPrior": JointPrior,
    "LatentSimulator": LatentSimulator,
}


def capabilities(model: object) -> list[str]:
    """Names of the capabilities a model implements, in ``CAPABILITIES`` order, for listings."""
    return [name for name, proto in CAPABILITIES.items() if isinstance(model, proto)]


# ---- the diffusion family ---------------------------------------------------------------------
@runtime_checkable
class DiffusionModel(Protocol):
    """A diffusion model, whatever its network: x_t = alpha_t x + sigma_t eps, eps ~ N(0, I), for t in
    [0, 1] (t = 0 nearly clean, t = 1 nearly pure noise), and a network that predicts eps from x_t.

    x is the data in the model's own space: ``lo + (hi - lo) * pixel / 255`` for 8-bit images, with
    ``(lo, hi)`` the model's ``data_interval`` attribute (default (0, 1); the zoo's use (-1, 1)).
    ``genbench.metrics.probability_flow_nll`` gives its likelihood through the probability-flow ODE,
    which needs d alpha/dt and d sigma/dt: ``noise_schedule`` must be differentiable in t (torch
    operations on t). Optional attributes: ``data_interval``, ``time_steps`` (a discrete-time model's
    number of transitions on a uniform grid of [0, 1]: its variational bound uses that grid; absent:
    continuous time) and ``sample_steps`` (the network evaluations ``sample`` makes, for tables).
    """

    def noise_schedule(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(alpha_t, sigma_t), each ``[B]``, for times t ``[B]`` in [0, 1]."""
        ...

    def predict_noise(self, x_t: Tensor, t: Tensor) -> Tensor:
        """eps-hat ``[B, *data_shape]`` for x_t ``[B, *data_shape]`` at times t ``[B]``."""
        ...


@runtime_checkable
class DiffusionDecoder(Protocol):
    """Optional for a DiffusionModel: p(x | z_0), what its variational bound ends with (Ho et al.'s
    discretised Gaussian, Kingma et al.'s factorised decoder). On discrete data a log probability of the
    data's levels, so the bound is a bound on the discrete NLL (bits/dim apply)."""

    def decoder_log_prob(self, x: Tensor, z_0: Tensor) -> Tensor:
        """``[B]`` log p(x | z_0) in nats, x and z_0 ``[B, *data_shape]`` in the model's space,
        z_0 = alpha_0 x + sigma_0 eps."""
        ...


@runtime_checkable
class VelocityField(Protocol):
    """Optional for a DiffusionModel whose network predicts the probability-flow velocity dx_t/dt
    itself (flow matching): the ODE then uses it as it is, where the noise form would divide by
    alpha_t (zero at t = 1 on the optimal-transport path)."""

    def velocity(self, x_t: Tensor, t: Tensor) -> Tensor:
        """dx_t/dt ``[B, *data_shape]`` at times t ``[B]``."""
        ...


def data_interval(model: object) -> tuple[float, float]:
    """(lo, hi): the model's space is lo + (hi - lo) x for genbench's x in [0, 1] (default (0, 1))."""
    lo, hi = getattr(model, "data_interval", (0.0, 1.0))
    return float(lo), float(hi)


CAPABILITIES.update(DiffusionModel=DiffusionModel, DiffusionDecoder=DiffusionDecoder,
                    VelocityField=VelocityField)
