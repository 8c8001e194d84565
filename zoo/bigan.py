"""BiGAN / ALI (Donahue et al. 2017; Dumoulin et al. 2017): a GAN that also learns an encoder.

A generator G(z), a deterministic encoder E(x) and a discriminator D(x, z) on joint pairs: D
tells (x, E(x)) for real x from (G(z), z) for z ~ N(0, I); G and E are trained together with
the inverted labels (the non-saturating form, BiGAN sec. 3.4). At the optimum E inverts G.
Networks are ``zoo.gan_layers``' DCGAN stacks; Adam, betas (0.5, 0.999), the BiGAN paper's lr
is 2e-4; latent 50 as BiGAN on MNIST (whose prior is uniform; here standard normal).

E(x) is a deterministic representation (``represent``), what the disentanglement metrics
rate; ``reconstruct`` is G(E(x)). BiGAN has no likelihood and no posterior: it is no
LatentVariableModel, so no NLL or posterior metric applies. Models write no files: the
trainer keeps their sample grids (``sample``) and loss curves.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from genbench.core.hyperparameters import Hyperparameters, bounded
from zoo.gan_layers import JointDiscriminator, dcgan_init, encoder, generator
from zoo.gan_objectives import NonSaturating, nonsaturating_discriminator_loss
from zoo.gans import check_image_shape
from zoo.layers import diagonal_normal, fused_supported


@dataclass
class BiGANConfig(Hyperparameters):
    latent: int = bounded(50, "[1, 1024]")
    base_channels: int = bounded(64, "[1, 1024]")
    adam_beta1: float = bounded(0.5, "[0, 1)")
    adam_beta2: float = bounded(0.999, "[0, 1)")


class BiGAN(nn.Module):
    def __init__(self, config: BiGANConfig, data_shape: tuple[int, ...]):
        super().__init__()
        check_image_shape("bigan", data_shape)
        self.config = config
        self.data_shape = tuple(data_shape)
        self.generator = generator(config.latent, self.data_shape, config.base_channels)
        self.encoder = encoder(self.data_shape, config.latent, config.base_channels)
        self.discriminator = JointDiscriminator(self.data_shape, config.latent, config.base_channels, "batch")
        dcgan_init(self)
        self.objective = NonSaturating()

    def _device(self) -> torch.device:
        return self.encoder[-1].weight.device

    # --- Sampler ------------------------------------------------------------------------------
    def generate(self, z: Tensor) -> Tensor:
        return (self.generator(z) + 1) / 2

    def latent_prior(self) -> torch.distributions.Distribution:
        """p(z) = N(0, I), the generator's input (DeterministicDecoder, as the GANs'; not a posterior
        model's prior: BiGAN is no LatentVariableModel)."""
        zeros = torch.zeros(self.config.latent, device=self._device())
        return diagonal_normal(zeros, zeros)

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        return self.generate(torch.randn(n, self.config.latent, device=self._device()))

    # --- Representation, Reconstructor --------------------------------------------------------
    def represent(self, x: Tensor) -> Tensor:
        """E(x), ``[B, latent]``."""
        return self.encoder(2 * x.float() - 1)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """G(E(x)): how well the encoder inverts the generator."""
        return self.generate(self.represent(x))

    # --- Trainable ----------------------------------------------------------------------------
    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        betas, fused = (self.config.adam_beta1, self.config.adam_beta2), fused_supported(self)
        generator_and_encoder = [*self.generator.parameters(), *self.encoder.parameters()]
        return {
            "discriminator": torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=betas,
                                              fused=fused),
            "generator": torch.optim.Adam(generator_and_encoder, lr=lr, betas=betas, fused=fused),
        }

    def _joint_logits(self, real: Tensor, through_generator: bool) -> tuple[Tensor, Tensor]:
        """D at (x, E(x)) and at (G(z), z); gradients reach E and G only if ``through_generator``."""
        z = torch.randn(real.shape[0], self.config.latent, device=real.device)
        with torch.set_grad_enabled(through_generator):
            encoded, generated = self.encoder(real), self.generator(z)
        return self.discriminator(real, encoded), self.discriminator(generated, z)

    def training_losses(self, x: Tensor):
        """One discriminator step, then one generator + encoder step with the labels inverted.

        D scores pairs, not images, so its loss is the pure function of the two joint logits;
        the inverted labels are the non-saturating generator loss at both kinds of pair."""
        real = 2 * x.float() - 1
        real_logits, fake_logits = self._joint_logits(real, through_generator=False)
        yield "discriminator", nonsaturating_discriminator_loss(real_logits, fake_logits)
        real_logits, fake_logits = self._joint_logits(real, through_generator=True)
        inverted = self.objective.generator_loss
        yield "generator", inverted(fake_logits) + inverted(-real_logits)
