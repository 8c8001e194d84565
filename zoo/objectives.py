"""One training objective for every latent-variable model in the zoo.

A model returns :class:`VariationalTerms` — per importance sample, log p(x | z) and one
KL term log q(z_g | .) - log p(z_g | .) per latent group g — and everything else is built
here once: the importance weights the metrics use, the VAE and IWAE bounds, and the
training options of the seed papers:

- ``beta`` (Higgins et al. 2017): the KL weight; beta = 1 is the VAE.
- KL warm-up (Sønderby et al. 2016; VampPrior): the training loop passes a weight that
  grows from 0 to 1 over the first epochs (``TrainConfig.kl_warmup_epochs``).
- free bits (Kingma et al. 2016): each group's KL, averaged over the batch, is floored at
  ``free_bits`` nats, so the optimiser gains nothing by pushing a group below it.
- controlled capacity (Burgess et al. 2018): gamma * |KL - C| with C raised linearly from 0
  to ``capacity`` nats over ``capacity_epochs``.

Warm-up, free bits and capacity change only the training loss; the bounds the metrics
report are always the plain ELBO / L_k of ``log_weights``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from genbench.core.hyperparameters import Hyperparameters, bounded
from genbench.core.numerics import log_mean_exp

OBJECTIVES = ("vae", "iwae")


@dataclass
class VariationalTerms:
    """Per-sample terms of log w = log p(x | z) - sum_g kl_g; every tensor is ``[k, B]``."""

    log_likelihood: Tensor
    kl: list[Tensor]
    """One single-sample KL estimate per latent group, lowest group first."""

    def log_weights(self) -> Tensor:
        return self.log_likelihood - torch.stack(self.kl).sum(0)


@dataclass
class ObjectiveConfig(Hyperparameters):
    """Training-objective hyperparameters shared by the latent models' configs."""

    k: int = bounded(1, "[1, 10000]")
    """Importance samples per data point during training."""
    objective: str = "vae"
    """'vae' trains the mean of k ELBO terms; 'iwae' trains L_k."""
    beta: float = bounded(1.0, "[0, 10000]")
    """KL weight (beta-VAE); 1 is the VAE."""
    free_bits: float = bounded(0.0, "[0, 10000]")
    """Floor, in nats, on each latent group's batch-mean KL (0: off)."""
    capacity: float = bounded(0.0, "[0, 100000]")
    """Controlled capacity C_max in nats (Burgess et al.); 0: off."""
    capacity_epochs: float = bounded(1.0, "(0, 1000000]")
    """Epochs over which C rises linearly from 0 to ``capacity``."""
    capacity_gamma: float = bounded(1000.0, "[0, 1000000]")
    """Weight gamma of |KL - C| under controlled capacity."""

    def __post_init__(self):
        super().__post_init__()
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.objective == "iwae" and (self.free_bits or self.capacity or self.beta != 1):
            raise ValueError("free_bits, capacity and beta != 1 apply to the 'vae' objective only")
        if self.free_bits and self.capacity:
            raise ValueError("choose free_bits or capacity, not both")


def training_loss(terms: VariationalTerms, config: ObjectiveConfig, epoch: float,
                  kl_weight: float = 1.0) -> Tensor:
    """The loss to minimise for one batch, at training progress ``epoch``.

    ``kl_weight`` is the warm-up factor from the training loop (1 when there is none).
    """
    if config.objective == "iwae":
        ll, kl = terms.log_likelihood, torch.stack(terms.kl).sum(0)
        return -log_mean_exp(ll - kl_weight * kl, dim=0).mean()
    reconstruction = terms.log_likelihood.mean()
    group_kl = [kl.mean() for kl in terms.kl]  # over samples and batch
    if config.capacity:
        c = config.capacity * min(1.0, epoch / config.capacity_epochs)
        penalty = config.capacity_gamma * (torch.stack(group_kl).sum() - c).abs()
    else:
        if config.free_bits:
            group_kl = [kl.clamp(min=config.free_bits) for kl in group_kl]
        penalty = config.beta * torch.stack(group_kl).sum()
    return -reconstruction + kl_weight * penalty


class VariationalTraining:
    """Mixin: the LatentVariableModel weights and the Trainable loss from ``variational_terms``.

    A model defines ``variational_terms(x, k) -> VariationalTerms``, ``config`` (an
    :class:`ObjectiveConfig`) and ``configure_optimizers``; the training loop reports
    progress through ``set_training_progress``.
    """

    _epoch: float = 0.0
    _kl_weight: float = 1.0

    def log_importance_weights(self, x: Tensor, k: int) -> Tensor:
        return self.variational_terms(x, k).log_weights()

    def set_training_progress(self, epoch: float, kl_weight: float) -> None:
        self._epoch, self._kl_weight = epoch, kl_weight

    def training_losses(self, x: Tensor) -> Iterator[tuple[str, Tensor]]:
        terms = self.variational_terms(x, self.config.k)
        yield "model", training_loss(terms, self.config, self._epoch, self._kl_weight)
