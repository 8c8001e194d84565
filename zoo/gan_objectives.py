"""The adversarial objectives: pure losses of discriminator outputs, and the objects GANs train with.

- Non-saturating GAN (Goodfellow et al. 2014, sec. 3): the discriminator minimises the binary
  cross-entropy -log D(x) - log(1 - D(G(z))); the generator minimises -log D(G(z)) instead of
  log(1 - D(G(z))), which has strong gradients early in training. With logits l,
  -log sigmoid(l) = softplus(-l) and -log(1 - sigmoid(l)) = softplus(l).
- Wasserstein GAN (Arjovsky et al. 2017): the critic maximises E f(x) - E f(G(z)) over a
  Lipschitz family, kept Lipschitz by clipping its weights to [-c, c] ...
- ... or by the gradient penalty of WGAN-GP (Gulrajani et al. 2017, eq. 3):
  lambda E[(||grad f(x_hat)||_2 - 1)^2] at x_hat uniformly between a real and a generated point.

``OBJECTIVES`` names one :class:`AdversarialObjective` class per objective; a GAN's config picks
one by name and the model builds it with ``from_config``, so no model compares objective names.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genbench.core.registry import Registry


def nonsaturating_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def nonsaturating_generator_loss(fake_logits: Tensor) -> Tensor:
    """-log D(G(z)), averaged."""
    return F.softplus(-fake_logits).mean()


def wasserstein_critic_loss(real_values: Tensor, fake_values: Tensor) -> Tensor:
    """E f(G(z)) - E f(x): its negative estimates the Wasserstein distance (up to the Lipschitz constant)."""
    return fake_values.mean() - real_values.mean()


def wasserstein_generator_loss(fake_values: Tensor) -> Tensor:
    return -fake_values.mean()


def gradient_penalty(critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, weight: float) -> Tensor:
    """weight * mean over the batch of (||d critic / d x_hat||_2 - 1)^2, x_hat = e real + (1 - e) fake,
    e ~ U[0, 1] per sample; differentiable in the critic's parameters (create_graph)."""
    e = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    x_hat = (e * real + (1 - e) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return weight * ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


@torch.no_grad()
def clip_weights(module: nn.Module, bound: float) -> None:
    """Clamp every parameter of ``module`` to [-bound, bound] (WGAN's clipping, all parameters as
    in the reference code, batch-norm scales included)."""
    for p in module.parameters():
        p.clamp_(-bound, bound)


class AdversarialObjective(ABC):
    """How a critic and a generator are scored, and how the critic is kept in its family.

    The critic is called on real pixels, then on generated ones (that order: batch-norm
    statistics and random draws follow it). ``prepare`` runs once on the fresh critic,
    ``after_critic_step`` after each of its optimizer steps.
    """

    summary: ClassVar[str]
    needs_per_sample_critic: ClassVar[bool] = False
    """The loss needs a critic whose output for one sample ignores the others: no batch norm."""

    @classmethod
    def from_config(cls, config: Any) -> AdversarialObjective:
        """The objective with its hyperparameters from a GAN config (``clip``, ``gp_weight``)."""
        return cls()

    @abstractmethod
    def critic_loss(self, critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor) -> Tensor:
        """The critic's loss on a batch of real and as many generated images."""

    @abstractmethod
    def generator_loss(self, fake_out: Tensor) -> Tensor:
        """The generator's loss from the critic's outputs at generated images."""

    def prepare(self, critic: nn.Module) -> None:  # noqa: B027 (an optional hook)
        """Put the freshly initialised critic into the objective's family (default: as it is)."""

    def after_critic_step(self, critic: nn.Module) -> None:  # noqa: B027 (an optional hook)
        """Restore the critic's constraint after an update (default: none to restore)."""


class NonSaturating(AdversarialObjective):
    summary = "binary cross-entropy discriminator, -log D(G(z)) generator (Goodfellow et al. 2014)"

    def critic_loss(self, critic, real, fake):
        return nonsaturating_discriminator_loss(critic(real), critic(fake))

    def generator_loss(self, fake_out):
        return nonsaturating_generator_loss(fake_out)


class Wasserstein(AdversarialObjective):
    """The Wasserstein losses; a subclass keeps the critic Lipschitz."""

    def critic_loss(self, critic, real, fake):
        return wasserstein_critic_loss(critic(real), critic(fake))

    def generator_loss(self, fake_out):
        return wasserstein_generator_loss(fake_out)


class WassersteinClip(Wasserstein):
    summary = "Wasserstein critic with weights clipped to [-clip, clip] (Arjovsky et al. 2017)"

    def __init__(self, clip: float):
        self.clip = clip

    @classmethod
    def from_config(cls, config):
        return cls(config.clip)

    def prepare(self, critic):
        clip_weights(critic, self.clip)  # the critic is clipped before its first use

    def after_critic_step(self, critic):
        clip_weights(critic, self.clip)


class WassersteinGP(Wasserstein):
    summary = "Wasserstein critic with a gradient penalty of weight gp_weight (Gulrajani et al. 2017)"
    needs_per_sample_critic = True  # the penalty is on each sample's gradient

    def __init__(self, weight: float):
        self.weight = weight

    @classmethod
    def from_config(cls, config):
        return cls(config.gp_weight)

    def critic_loss(self, critic, real, fake):
        return super().critic_loss(critic, real, fake) + gradient_penalty(critic, real, fake, self.weight)


OBJECTIVES: Registry[type[AdversarialObjective]] = Registry("GAN objective")
OBJECTIVES.register("nonsaturating", NonSaturating)
OBJECTIVES.register("wasserstein-clip", WassersteinClip)
OBJECTIVES.register("wasserstein-gp", WassersteinGP)
