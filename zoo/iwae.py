"""The IWAE paper's models (Burda, Grosse & Salakhutdinov 2015): VAE and IWAE.

One class serves both: they share architecture and differ only in the training objective.
With k samples the IWAE maximises L_k = E log (1/k) sum_i w_i, the VAE the average of k
ELBO terms (1/k) sum_i log w_i.

Architectures (paper, Section 5): 1 stochastic layer 784-200-200-50; 2 stochastic layers
with two deterministic layers of 200 between x and z1 (100 units) and two of 100 between
z1 and z2 (50 units); tanh; diagonal Gaussians with std = exp(output); Bernoulli
output whose bias starts at the logit of the training mean; Adam with epsilon 1e-4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from genbench.core.hyperparameters import bounded
from zoo.layers import (
    GaussianLayer,
    TopDownPrior,
    bernoulli_log_likelihood,
    diagonal_normal,
    fused_supported,
    gaussian_log_prob,
    mlp,
    rsample_gaussian,
    standard_normal_log_prob,
)
from zoo.objectives import ObjectiveConfig, VariationalTerms, VariationalTraining

#: stochastic layer sizes, lowest first, and the deterministic layers below each of them
ARCHITECTURES = {
    1: {"latents": [50], "hidden": [[200, 200]]},
    2: {"latents": [100, 50], "hidden": [[200, 200], [100, 100]]},
}


@dataclass
class IWAEConfig(ObjectiveConfig):
    layers: int = bounded(1, "[1, 2]")
    """Stochastic layers: 1 (784-200-200-50) or 2 (latents 100 and 50)."""
    objective: str = "iwae"


class IWAE(VariationalTraining, nn.Module):
    """Gaussian latent layers with a Bernoulli likelihood over flattened pixels."""

    def __init__(self, config: IWAEConfig, data_shape: tuple[int, ...]):
        super().__init__()
        self.config = config
        self.data_shape = tuple(data_shape)
        dims = math.prod(self.data_shape)
        arch = ARCHITECTURES[config.layers]
        latents, hidden = arch["latents"], arch["hidden"]
        inputs = [dims, *latents[:-1]]
        # q(z_1 | x), q(z_2 | z_1), ...
        self.encoders = nn.ModuleList(
            GaussianLayer(n_in, h, n_out) for n_in, h, n_out in zip(inputs, hidden, latents, strict=True)
        )
        # p(z_l | z_{l+1}) for every layer below the top
        self.latent_decoders = nn.ModuleList(
            GaussianLayer(latents[l + 1], hidden[l + 1][::-1], latents[l])
            for l in range(len(latents) - 1)
        )
        # p(x | z_1)
        self.pixel_decoder = nn.Sequential(
            mlp([latents[0], *hidden[0][::-1]]), nn.Linear(hidden[0][0], dims)
        )
        self.latents = latents

    # --- LatentVariableModel (log_importance_weights from VariationalTraining) ------------
    def variational_terms(self, x: Tensor, k: int) -> VariationalTerms:
        h = x.flatten(1)
        mean, log_std = self.encoders[0](h)  # x is encoded once for all k samples
        z, log_q = rsample_gaussian(mean.expand(k, *mean.shape), log_std.expand(k, *log_std.shape))
        zs, log_qs = [z], [log_q]
        for encoder in self.encoders[1:]:
            z, log_q = rsample_gaussian(*encoder(z))
            zs.append(z)
            log_qs.append(log_q)
        log_ps = [gaussian_log_prob(zs[l], *decoder(zs[l + 1]))
                  for l, decoder in enumerate(self.latent_decoders)]
        log_ps.append(standard_normal_log_prob(zs[-1]))
        kl = [lq - lp for lq, lp in zip(log_qs, log_ps, strict=True)]
        ll = bernoulli_log_likelihood(h, self.pixel_decoder[:-1](zs[0]), self.pixel_decoder[-1])
        return VariationalTerms(ll, kl)

    def encode(self, x: Tensor) -> torch.distributions.Distribution:
        return diagonal_normal(*self.encoders[0](x.flatten(1)))

    def encode_layers(self, x: Tensor) -> list[torch.distributions.Distribution]:
        out, h = [], x.flatten(1)
        for encoder in self.encoders:
            mean, log_std = encoder(h)
            out.append(diagonal_normal(mean, log_std))
            h = mean
        return out

    def prior(self) -> torch.distributions.Distribution:
        if len(self.latents) > 1:
            raise NotImplementedError("p(z_1) of a 2-layer model is a learned marginal")
        zeros = self.pixel_decoder[-1].bias.new_zeros(self.latents[0])
        return diagonal_normal(zeros, zeros)

    # --- DecoderModel: z = all stochastic layers, lowest first, concatenated ----------------
    def joint_prior(self) -> torch.distributions.Distribution:
        """p(z_L) prod_l p(z_l | z_{l+1}) over z = cat(z_1, ..., z_L); with one layer, ``prior()``."""
        bias, top = self.pixel_decoder[-1].bias, self.latents[-1]
        return TopDownPrior(standard_normal_log_prob,
                            lambda shape: torch.randn(*shape, top, device=bias.device, dtype=bias.dtype),
                            list(self.latent_decoders), self.latents)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x | z) ``[k, B]`` (Bernoulli pixels, from z_1 alone) for z ``[k, B, sum(latents)]``."""
        return bernoulli_log_likelihood(x.flatten(1), self.pixel_decoder[:-1](z[..., : self.latents[0]]),
                                        self.pixel_decoder[-1])

    @torch.no_grad()
    def sample_given_z(self, z: Tensor) -> Tensor:
        return torch.bernoulli(self._decode_mean(z[..., : self.latents[0]]))

    # --- Sampler and pictures ------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        return torch.bernoulli(self._decode_mean(self._sample_z1(n)))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        mean, _ = self.encoders[0](x.flatten(1))
        return self._decode_mean(mean)

    def _sample_z1(self, n: int) -> Tensor:
        bias = self.pixel_decoder[-1].bias
        z = torch.randn(n, self.latents[-1], device=bias.device, dtype=bias.dtype)
        for decoder in reversed(self.latent_decoders):
            z, _ = rsample_gaussian(*decoder(z))
        return z

    def _decode_mean(self, z1: Tensor) -> Tensor:
        return torch.sigmoid(self.pixel_decoder(z1)).view(-1, *self.data_shape)

    # --- DataInitialized, Trainable ------------------------------------------------------
    @torch.no_grad()
    def init_from_data(self, x_train: Tensor) -> None:
        mean = x_train.flatten(1).float().mean(0).clamp(1e-4, 1 - 1e-4)
        self.pixel_decoder[-1].bias.copy_(torch.logit(mean))

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        return {"model": torch.optim.Adam(self.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-4,
                                         fused=fused_supported(self))}
