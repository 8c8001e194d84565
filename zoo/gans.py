"""GAN, WGAN and WGAN-GP: one class, the objective chooses the loss and the Lipschitz constraint.

- ``gan``: DCGAN networks (Radford et al. 2016) with the non-saturating generator loss
  (Goodfellow et al. 2014); Adam, betas (0.5, 0.999); the DCGAN paper's lr is 2e-4.
- ``wgan``: Wasserstein critic with weights clipped to [-0.01, 0.01], RMSProp, 5 critic steps per
  generator step (Arjovsky et al. 2017; their lr is 5e-5). As in their reference code the critic
  takes 100 steps per generator step for the first 25 generator steps and every 500th
  (``warm_critic_steps``), and its batch-norm layers are kept.
- ``wgan-gp``: gradient penalty lambda = 10, Adam betas (0.5, 0.9) (the reference code's; the
  paper's Algorithm 1 uses beta1 = 0), 5 critic steps, no batch norm in the critic (the penalty
  is per sample) (Gulrajani et al. 2017; their lr is 1e-4).

Alternating updates through the Trainable contract: each training batch gives one critic step
on that batch's real images (fresh real data for every critic step, as the reference code);
after every n_critic-th critic step the same batch also yields one generator step, computed
after the critic's update. So an epoch is one pass of the critic over the data and has
steps / n_critic generator updates. The step counters are buffers: they resume with the checkpoint.

The learning rate is ``TrainConfig.lr`` for the generator and ``lr * critic_lr_scale`` for the
critic (1: the papers' single rate). Data in [0, 1] are mapped to [-1, 1] for the networks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from genbench.errors import GenbenchError
from genbench.results.curves import write_curve_row
from zoo.gan_layers import NORMS, dcgan_init, discriminator, generator, stages
from zoo.gan_monitor import LossRecord, save_grid
from zoo.gan_objectives import (
    clip_weights,
    gradient_penalty,
    nonsaturating_discriminator_loss,
    nonsaturating_generator_loss,
    wasserstein_critic_loss,
    wasserstein_generator_loss,
)
from zoo.layers import fused_supported

OBJECTIVES = ("gan", "wgan", "wgan-gp")
OPTIMIZERS = ("adam", "rmsprop")
#: Arjovsky et al.'s reference code: warm critic steps for these first generator steps and every Nth
WARM_FIRST, WARM_EVERY = 25, 500


@dataclass
class GANConfig:
    objective: str = "gan"
    """gan (non-saturating), wgan (weight clipping) or wgan-gp (gradient penalty)."""
    latent: int = 100
    base_channels: int = 64
    """Channels of the layers at the image side; doubled at each halving (``zoo.gan_layers``)."""
    critic_norm: str = "batch"
    """Normalisation in the discriminator / critic: batch, layer or none."""
    n_critic: int = 1
    warm_critic_steps: int = 0
    """Critic steps per generator step early and periodically (WGAN reference: 100; 0: off)."""
    clip: float = 0.01
    gp_weight: float = 10.0
    optimizer: str = "adam"
    adam_beta1: float = 0.5
    adam_beta2: float = 0.999
    critic_lr_scale: float = 1.0

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.critic_norm not in NORMS:
            raise ValueError(f"critic_norm must be one of {NORMS}, got {self.critic_norm!r}")
        if self.objective == "wgan-gp" and self.critic_norm == "batch":
            raise ValueError("wgan-gp needs a critic without batch norm (the penalty is per sample)")
        if min(self.latent, self.base_channels, self.n_critic) < 1 or self.warm_critic_steps < 0:
            raise ValueError("latent, base_channels and n_critic must be >= 1, warm_critic_steps >= 0")
        if self.clip <= 0 or self.gp_weight < 0 or self.critic_lr_scale <= 0:
            raise ValueError("clip and critic_lr_scale must be > 0, gp_weight >= 0")


def check_image_shape(name: str, data_shape: tuple[int, ...]) -> None:
    if len(data_shape) != 3 or data_shape[1] != data_shape[2]:
        raise GenbenchError(f"{name}: needs square images [C, H, W], got data shape {list(data_shape)}")
    try:
        stages(data_shape[-1])
    except ValueError as exc:
        raise GenbenchError(f"{name}: {exc}") from None


def make_optimizer(kind: str, params, lr: float, betas: tuple[float, float], fused: bool):
    if kind == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    return torch.optim.Adam(params, lr=lr, betas=betas, fused=fused)


class GAN(nn.Module):
    def __init__(self, config: GANConfig, data_shape: tuple[int, ...]):
        super().__init__()
        check_image_shape(config.objective, data_shape)
        self.config = config
        self.data_shape = tuple(data_shape)
        self.generator = generator(config.latent, self.data_shape, config.base_channels)
        self.discriminator = discriminator(self.data_shape, config.base_channels, config.critic_norm)
        dcgan_init(self)
        if config.objective == "wgan":
            clip_weights(self.discriminator, config.clip)  # the critic is clipped before its first use
        self.record = LossRecord(("discriminator", "generator"))
        # critic steps since the last generator step, and generator steps so far
        self.register_buffer("critic_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("generator_steps", torch.zeros((), dtype=torch.long))

    # --- Sampler ------------------------------------------------------------------------------
    def generate(self, z: Tensor) -> Tensor:
        """Images in [0, 1] for latent codes z."""
        return (self.generator(z) + 1) / 2

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        return self.generate(torch.randn(n, self.config.latent, device=self.critic_steps.device))

    # --- Trainable ----------------------------------------------------------------------------
    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        fused = fused_supported(self)
        return {
            "discriminator": make_optimizer(c.optimizer, self.discriminator.parameters(),
                                            lr * c.critic_lr_scale, (c.adam_beta1, c.adam_beta2), fused),
            "generator": make_optimizer(c.optimizer, self.generator.parameters(), lr,
                                        (c.adam_beta1, c.adam_beta2), fused),
        }

    def critic_steps_due(self) -> int:
        """Critic steps the next generator step waits for."""
        g = int(self.generator_steps)
        if self.config.warm_critic_steps and (g < WARM_FIRST or g % WARM_EVERY == 0):
            return self.config.warm_critic_steps
        return self.config.n_critic

    def discriminator_loss(self, real: Tensor) -> Tensor:
        """The critic's loss on real pixels ``real`` (in [-1, 1]) and as many generated ones."""
        with torch.no_grad():
            fake = self.generator(torch.randn(real.shape[0], self.config.latent, device=real.device))
        real_out, fake_out = self.discriminator(real), self.discriminator(fake)
        if self.config.objective == "gan":
            return nonsaturating_discriminator_loss(real_out, fake_out)
        loss = wasserstein_critic_loss(real_out, fake_out)
        if self.config.objective == "wgan-gp":
            loss = loss + gradient_penalty(self.discriminator, real, fake, self.config.gp_weight)
        return loss

    def generator_loss(self, batch_size: int) -> Tensor:
        fake_out = self.discriminator(self.generator(
            torch.randn(batch_size, self.config.latent, device=self.critic_steps.device)))
        if self.config.objective == "gan":
            return nonsaturating_generator_loss(fake_out)
        return wasserstein_generator_loss(fake_out)

    def training_losses(self, x: Tensor):
        loss = self.discriminator_loss(2 * x.float() - 1)
        self.record.add("discriminator", loss)
        yield "discriminator", loss
        if self.config.objective == "wgan":
            clip_weights(self.discriminator, self.config.clip)
        self.critic_steps += 1
        if int(self.critic_steps) >= self.critic_steps_due():
            loss = self.generator_loss(x.shape[0])
            self.record.add("generator", loss)
            yield "generator", loss
            self.critic_steps.zero_()
            self.generator_steps += 1

    # --- EpochCallback ------------------------------------------------------------------------
    def on_epoch_end(self, epoch: float, run_dir: Path, measures: dict[str, float]) -> None:
        save_grid(self, self.generate, self.config.latent, run_dir, epoch)
        write_curve_row(run_dir, epoch, {**self.record.means_and_reset(),
                                         "generator_steps": float(self.generator_steps), **measures})
