"""The adversarial objectives, as functions of discriminator outputs (logits or critic values).

- Non-saturating GAN (Goodfellow et al. 2014, sec. 3): the discriminator minimises the binary
  cross-entropy -log D(x) - log(1 - D(G(z))); the generator minimises -log D(G(z)) instead of
  log(1 - D(G(z))), which has strong gradients early in training. With logits l,
  -log sigmoid(l) = softplus(-l) and -log(1 - sigmoid(l)) = softplus(l).
- Wasserstein GAN (Arjovsky et al. 2017): the critic maximises E f(x) - E f(G(z)) over a
  Lipschitz family, kept Lipschitz by clipping its weights to [-c, c] ...
- ... or by the gradient penalty of WGAN-GP (Gulrajani et al. 2017, eq. 3):
  lambda E[(||grad f(x_hat)||_2 - 1)^2] at x_hat uniformly between a real and a generated point.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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
