"""GAN, WGAN and WGAN-GP: one class, the objective object (``zoo.gan_objectives``) chooses the
loss and the Lipschitz constraint; the registered models differ only in config defaults.

- ``gan`` (objective ``nonsaturating``): DCGAN networks (Radford et al. 2016) with the
  non-saturating generator loss (Goodfellow et al. 2014); Adam, betas (0.5, 0.999); the DCGAN
  paper's lr is 2e-4.
- ``wgan`` (``wasserstein-clip``): Wasserstein critic with weights clipped to [-0.01, 0.01],
  RMSProp, 5 critic steps per generator step (Arjovsky et al. 2017; their lr is 5e-5). As in
  their reference code the critic takes 100 steps per generator step for the first 25
  generator steps and every 500th (``warm_critic_steps``), and its batch-norm layers are kept.
- ``wgan-gp`` (``wasserstein-gp``): gradient penalty lambda = 10, Adam betas (0.5, 0.9) (the
  reference code's; the paper's Algorithm 1 uses beta1 = 0), 5 critic steps, no batch norm in the
  critic (the penalty is per sample) (Gulrajani et al. 2017; their lr is 1e-4).

Alternating updates through the Trainable contract: each training batch gives one critic step
on that batch's real images (fresh real data for every critic step, as the reference code);
after every n_critic-th critic step the same batch also yields one generator step, computed
after the critic's update. So an epoch is one pass of the critic over the data and has
steps / n_critic generator updates. The step counters are buffers: they resume with the checkpoint.

The learning rate is ``TrainConfig.lr`` for the generator and ``lr * critic_lr_scale`` for the
critic (1: the papers' single rate). Data in [0, 1] are mapped to [-1, 1] for the networks.
Models write no files: the trainer keeps their sample grids (``sample``) and loss curves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from genbench.core.errors import GenbenchError
from genbench.core.hyperparameters import Hyperparameters, bounded
from genbench.core.registry import Registry
from zoo.gan_layers import NORMS, dcgan_init, discriminator, generator, stages
from zoo.gan_objectives import OBJECTIVES
from zoo.layers import diagonal_normal, fused_supported

#: Arjovsky et al.'s reference code: warm critic steps for these first generator steps and every Nth
WARM_FIRST, WARM_EVERY = 25, 500

OptimizerFactory = Callable[[Iterable[nn.Parameter], float, tuple[float, float], bool], torch.optim.Optimizer]


def _adam(params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float], fused: bool):
    return torch.optim.Adam(params, lr=lr, betas=betas, fused=fused)


def _rmsprop(params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float], fused: bool):
    """RMSProp as WGAN's reference code: default smoothing, no momentum; the betas do not apply."""
    return torch.optim.RMSprop(params, lr=lr)


#: ``GANConfig.optimizer`` -> factory(params, lr, Adam betas, fused)
OPTIMIZERS: Registry[OptimizerFactory] = Registry("GAN optimizer")
OPTIMIZERS.register("adam", _adam)
OPTIMIZERS.register("rmsprop", _rmsprop)


@dataclass
class GANConfig(Hyperparameters):
    objective: str = "nonsaturating"
    """A name in ``zoo.gan_objectives.OBJECTIVES``: nonsaturating, wasserstein-clip or wasserstein-gp."""
    latent: int = bounded(100, "[1, 1024]")
    base_channels: int = bounded(64, "[1, 1024]")
    """Channels of the layers at the image side; doubled at each halving (``zoo.gan_layers``)."""
    critic_norm: str = "batch"
    """Normalisation in the discriminator / critic: batch, layer or none."""
    n_critic: int = bounded(1, "[1, 1000]")
    warm_critic_steps: int = bounded(0, "[0, 1000000]")
    """Critic steps per generator step early and periodically (WGAN reference: 100; 0: off)."""
    clip: float = bounded(0.01, "(0, 1000]")
    """Weight bound of ``wasserstein-clip``."""
    gp_weight: float = bounded(10.0, "[0, 1000000]")
    """Penalty weight of ``wasserstein-gp``."""
    optimizer: str = "adam"
    """A name in ``OPTIMIZERS``: adam or rmsprop."""
    adam_beta1: float = bounded(0.5, "[0, 1)")
    adam_beta2: float = bounded(0.999, "[0, 1)")
    critic_lr_scale: float = bounded(1.0, "(0, 1000]")

    def __post_init__(self):
        super().__post_init__()
        objective = OBJECTIVES[self.objective]  # an unknown name: one line listing the valid ones
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.critic_norm not in NORMS:
            raise ValueError(f"critic_norm must be one of {NORMS}, got {self.critic_norm!r}")
        if objective.needs_per_sample_critic and self.critic_norm == "batch":
            raise ValueError(f"objective {self.objective!r} needs a critic without batch norm "
                             "(its loss is per sample): set critic_norm to layer or none")


def check_image_shape(name: str, data_shape: tuple[int, ...]) -> None:
    if len(data_shape) != 3 or data_shape[1] != data_shape[2]:
        raise GenbenchError(f"{name}: needs square images [C, H, W], got data shape {list(data_shape)}")
    try:
        stages(data_shape[-1])
    except ValueError as exc:
        raise GenbenchError(f"{name}: {exc}") from None


def _read_step_counts(module: GAN, incompatible_keys) -> None:
    """After a checkpoint is loaded: its step counters, read once into the Python mirrors."""
    module._counts = [int(module.critic_steps), int(module.generator_steps)]


class GAN(nn.Module):
    def __init__(self, config: GANConfig, data_shape: tuple[int, ...]):
        super().__init__()
        check_image_shape(f"GAN ({config.objective})", data_shape)
        self.config = config
        self.data_shape = tuple(data_shape)
        self.generator = generator(config.latent, self.data_shape, config.base_channels)
        self.discriminator = discriminator(self.data_shape, config.base_channels, config.critic_norm)
        dcgan_init(self)
        self.objective = OBJECTIVES[config.objective].from_config(config)
        self.objective.prepare(self.discriminator)
        # critic steps since the last generator step, and generator steps so far: buffers for the
        # checkpoint, mirrored in Python ints so that choosing the next step never reads the device
        self.register_buffer("critic_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("generator_steps", torch.zeros((), dtype=torch.long))
        self._counts = [0, 0]
        self.register_load_state_dict_post_hook(_read_step_counts)

    # --- Sampler ------------------------------------------------------------------------------
    def generate(self, z: Tensor) -> Tensor:
        """Images in [0, 1] for latent codes z."""
        return (self.generator(z) + 1) / 2

    def latent_prior(self) -> torch.distributions.Distribution:
        """p(z) = N(0, I), the generator's input (DeterministicDecoder: AIS evaluates g under a
        Gaussian observation model, ``genbench.metrics.ais``)."""
        zeros = torch.zeros(self.config.latent, device=self.critic_steps.device)
        return diagonal_normal(zeros, zeros)

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        return self.generate(torch.randn(n, self.config.latent, device=self.critic_steps.device))

    # --- Trainable ----------------------------------------------------------------------------
    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        make, betas, fused = OPTIMIZERS[c.optimizer], (c.adam_beta1, c.adam_beta2), fused_supported(self)
        return {
            "discriminator": make(self.discriminator.parameters(), lr * c.critic_lr_scale, betas, fused),
            "generator": make(self.generator.parameters(), lr, betas, fused),
        }

    def critic_steps_due(self) -> int:
        """Critic steps the next generator step waits for."""
        g = self._counts[1]
        if self.config.warm_critic_steps and (g < WARM_FIRST or g % WARM_EVERY == 0):
            return self.config.warm_critic_steps
        return self.config.n_critic

    def discriminator_loss(self, real: Tensor) -> Tensor:
        """The critic's loss on real pixels ``real`` (in [-1, 1]) and as many generated ones."""
        with torch.no_grad():
            fake = self.generator(torch.randn(real.shape[0], self.config.latent, device=real.device))
        return self.objective.critic_loss(self.discriminator, real, fake)

    def generator_loss(self, batch_size: int) -> Tensor:
        fake_out = self.discriminator(self.generator(
            torch.randn(batch_size, self.config.latent, device=self.critic_steps.device)))
        return self.objective.generator_loss(fake_out)

    def training_losses(self, x: Tensor):
        loss = self.discriminator_loss(2 * x.float() - 1)
        yield "discriminator", loss
        self.objective.after_critic_step(self.discriminator)
        self._counts[0] += 1
        self.critic_steps.fill_(self._counts[0])
        if self._counts[0] >= self.critic_steps_due():
            loss = self.generator_loss(x.shape[0])
            yield "generator", loss
            self._counts = [0, self._counts[1] + 1]
            self.critic_steps.zero_()
            self.generator_steps.fill_(self._counts[1])
