"""The VampPrior paper's VAE and two-level hierarchical VAE (Tomczak & Welling 2017).

Layout of the reference code, for binary images:

- 1 level: q(z | x) and p(x | z), each two gated dense layers of 300 units.
- 2 levels: q(z2 | x) q(z1 | x, z2) and p(x | z1, z2) p(z1 | z2) p(z2). q(z2 | x) and
  p(z1 | z2) are two gated dense layers of 300; q(z1 | x, z2) and p(x | z1, z2) embed each
  input with one gated layer of 300 and join them with another.
- latents 40 (+ 40); variances through log-variance heads clipped to [-6, 2] (hardtanh);
  He-normal initialisation of every dense layer; Bernoulli pixels.

The prior of the top layer is a choice (``zoo.priors``): standard, mog, vamp, vamp-data.
Deviations from the reference code: plain Adam instead of its gradient-normalised Adam,
and the output bias starts at the logit of the training mean (as in the IWAE models).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from genbench.core.hyperparameters import bounded
from zoo.layers import (
    GatedDense,
    TopDownPrior,
    bernoulli_log_likelihood,
    diagonal_normal,
    fused_supported,
    gaussian_log_prob,
    rsample_gaussian,
)
from zoo.objectives import ObjectiveConfig, VariationalTerms, VariationalTraining
from zoo.priors import PRIORS, make_prior

#: log-variance clip of the reference code, as log-std bounds
LOG_STD_RANGE = (-3.0, 1.0)


@dataclass
class HVAEConfig(ObjectiveConfig):
    layers: int = bounded(2, "[1, 2]")
    """Stochastic levels: 1 (the VampPrior paper's VAE) or 2 (its HVAE)."""
    latent: int = bounded(40, "[1, 1024]")
    """Units of each stochastic level."""
    hidden: int = bounded(300, "[1, 4096]")
    """Units of each gated dense layer."""
    prior: str = "standard"
    """Prior of the top level: standard, mog, vamp or vamp-data."""
    components: int = bounded(500, "[1, 10000]")
    """Mixture components (mog) or pseudo-inputs (vamp, vamp-data)."""

    def __post_init__(self):
        super().__post_init__()
        if self.prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, got {self.prior!r}")


class GaussianHead(nn.Module):
    """Mean and clipped log-std of a diagonal Gaussian from a hidden layer."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.mean = nn.Linear(n_in, n_out)
        self.log_std = nn.Linear(n_in, n_out)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return self.mean(h), self.log_std(h).clamp(*LOG_STD_RANGE)


def gated_stack(n_in: int, hidden: int, depth: int) -> nn.Sequential:
    return nn.Sequential(*(GatedDense(n_in if i == 0 else hidden, hidden) for i in range(depth)))


class JoinedInputs(nn.Module):
    """One gated layer per input, concatenated, then one gated layer over both."""

    def __init__(self, n_a: int, n_b: int, hidden: int):
        super().__init__()
        self.embed_a = GatedDense(n_a, hidden)
        self.embed_b = GatedDense(n_b, hidden)
        self.joint = GatedDense(2 * hidden, hidden)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        ea, eb = self.embed_a(a), self.embed_b(b)
        ea, eb = torch.broadcast_tensors(ea, eb)
        return self.joint(torch.cat([ea, eb], dim=-1))


class HVAE(VariationalTraining, nn.Module):
    def __init__(self, config: HVAEConfig, data_shape: tuple[int, ...]):
        super().__init__()
        self.config = config
        self.data_shape = tuple(data_shape)
        dims, h, z = math.prod(self.data_shape), config.hidden, config.latent
        # the top level is z2 (2 levels) or z (1 level): q(z_top | x) reads x alone
        self.q_top = nn.Sequential(gated_stack(dims, h, 2), GaussianHead(h, z))
        if config.layers == 2:
            self.q_z1 = JoinedInputs(dims, z, h)
            self.q_z1_head = GaussianHead(h, z)
            self.p_z1 = nn.Sequential(gated_stack(z, h, 2), GaussianHead(h, z))
            self.p_x_hidden: nn.Module = JoinedInputs(z, z, h)
        else:
            self.p_x_hidden = gated_stack(z, h, 2)
        self.p_x_logits = nn.Linear(h, dims)
        for module in self.modules():
            if isinstance(module, nn.Linear):  # He et al. normal init, as the reference code
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / module.in_features))
        self.prior_top = make_prior(config.prior, z, config.components, dims, self.q_top)

    # --- the two halves -------------------------------------------------------------------
    def _decoder_hidden(self, zs: list[Tensor]) -> Tensor:
        return self.p_x_hidden(*zs) if self.config.layers == 2 else self.p_x_hidden(zs[0])

    def variational_terms(self, x: Tensor, k: int) -> VariationalTerms:
        h = x.flatten(1)
        mean, log_std = self.q_top(h)  # x is encoded once for all k samples
        z_top, log_q_top = rsample_gaussian(mean.expand(k, *mean.shape), log_std.expand(k, *log_std.shape))
        kl_top = log_q_top - self.prior_top.log_prob(z_top)
        if self.config.layers == 1:
            zs, kl = [z_top], [kl_top]
        else:
            z1, log_q1 = rsample_gaussian(*self.q_z1_head(self.q_z1(h, z_top)))
            kl1 = log_q1 - gaussian_log_prob(z1, *self.p_z1(z_top))
            zs, kl = [z1, z_top], [kl1, kl_top]
        ll = bernoulli_log_likelihood(h, self._decoder_hidden(zs), self.p_x_logits)
        return VariationalTerms(ll, kl)

    # --- LatentVariableModel, LayeredEncoder ----------------------------------------------
    def encode_layers(self, x: Tensor) -> list[torch.distributions.Distribution]:
        """q of each level, lowest first; q(z1 | x, z2) at the mean of q(z2 | x)."""
        h = x.flatten(1)
        mean, log_std = self.q_top(h)
        top = diagonal_normal(mean, log_std)
        if self.config.layers == 1:
            return [top]
        return [diagonal_normal(*self.q_z1_head(self.q_z1(h, mean))), top]

    def encode(self, x: Tensor) -> torch.distributions.Distribution:
        return self.encode_layers(x)[0]

    def prior(self) -> torch.distributions.Distribution:
        if self.config.layers == 2:
            raise NotImplementedError("p(z1) of a 2-level model is a learned marginal")
        return self.prior_top.distribution()

    # --- DecoderModel: z = cat(z1, z2) (2 levels) or z -------------------------------------
    def joint_prior(self) -> torch.distributions.Distribution:
        """p(z2) p(z1 | z2) over cat(z1, z2) (2 levels), else the prior of z; the top level's density is
        the prior's own (a mixture's in [rows, K] memory)."""
        conditionals = [self.p_z1] if self.config.layers == 2 else []
        top = self.prior_top
        return TopDownPrior(top.log_prob, lambda shape: top.distribution().sample(shape), conditionals,
                            [self.config.latent] * self.config.layers)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x | z) ``[k, B]`` (Bernoulli pixels) for z ``[k, B, layers * latent]``."""
        zs = list(z.split(self.config.latent, dim=-1))
        return bernoulli_log_likelihood(x.flatten(1), self._decoder_hidden(zs), self.p_x_logits)

    @torch.no_grad()
    def sample_given_z(self, z: Tensor) -> Tensor:
        return torch.bernoulli(self._decode_mean(list(z.split(self.config.latent, dim=-1))))

    # --- Sampler, Reconstructor -------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        zs = [self.prior_top.distribution().sample((n,))]
        if self.config.layers == 2:
            zs.insert(0, rsample_gaussian(*self.p_z1(zs[0]))[0])
        return torch.bernoulli(self._decode_mean(zs))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        return self._decode_mean([q.mean for q in self.encode_layers(x)])

    def _decode_mean(self, zs: list[Tensor]) -> Tensor:
        return torch.sigmoid(self.p_x_logits(self._decoder_hidden(zs))).view(-1, *self.data_shape)

    # --- DataInitialized, Trainable ----------------------------------------------------------
    @torch.no_grad()
    def init_from_data(self, x_train: Tensor) -> None:
        mean = x_train.flatten(1).float().mean(0).clamp(1e-4, 1 - 1e-4)
        self.p_x_logits.bias.copy_(torch.logit(mean))
        if hasattr(self.prior_top, "init_from_data"):
            self.prior_top.init_from_data(x_train)

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        return {"model": torch.optim.Adam(self.parameters(), lr=lr, fused=fused_supported(self))}
