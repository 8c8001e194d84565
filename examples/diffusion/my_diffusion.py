"""A diffusion model written without genbench: what `genbench score --model-code` needs of one.

Four methods make it a diffusion model to genbench, whatever its network:
- ``noise_schedule(t) -> (alpha_t, sigma_t)``: x_t = alpha_t x + sigma_t eps, t in [0, 1], torch
  operations on t (the probability-flow likelihood differentiates it);
- ``predict_noise(x_t, t) -> eps``;
- ``decoder_log_prob(x, z_0)`` (optional): log p(x given z_0) of the 8-bit levels, for the bound;
- ``sample(n)`` (optional): images in [0, 1], for the sample-quality metrics; ``sample_steps`` says
  what one costs.
``data_interval = (-1, 1)`` says that the model sees pixel levels 2 x - 1, not genbench's x in [0, 1].
"""

from __future__ import annotations

import torch
from torch import nn


class Net(nn.Module):
    """A small convolutional eps-predictor on a variance-preserving schedule, log SNR linear in t from
    ``log_snr_max`` to ``log_snr_min``; a discretised Gaussian decoder; DDIM sampling."""

    data_interval = (-1.0, 1.0)

    def __init__(self, channels: int = 1, image_size: int = 28, hidden: int = 32, log_snr_max: float = 10.0,
                 log_snr_min: float = -10.0, sample_steps: int = 50):
        super().__init__()
        self.shape = (channels, image_size, image_size)
        self.log_snr_max, self.log_snr_min = log_snr_max, log_snr_min
        self.sample_steps = sample_steps
        self.body = nn.Sequential(
            nn.Conv2d(channels + 1, hidden, 3, padding=1), nn.SiLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.SiLU(),
            nn.Conv2d(hidden, channels, 3, padding=1))

    def noise_schedule(self, t):
        log_snr = self.log_snr_max + (self.log_snr_min - self.log_snr_max) * t
        return torch.sigmoid(log_snr).sqrt(), torch.sigmoid(-log_snr).sqrt()

    def predict_noise(self, x_t, t):
        time_map = t.reshape(-1, 1, 1, 1).expand(-1, 1, *x_t.shape[2:]).to(x_t.dtype)
        return self.body(torch.cat([x_t, time_map], dim=1))

    def _denoised(self, z, t):
        alpha, sigma = (v.reshape(-1, 1, 1, 1) for v in self.noise_schedule(t))
        return (z - sigma * self.predict_noise(z, t)) / alpha

    def decoder_log_prob(self, x, z_0):
        """Each level's bin [x - 1/255, x + 1/255] under N(x_hat(z_0), (sigma_0 / alpha_0)^2), the end
        bins open."""
        t_0 = torch.zeros(len(x), dtype=x.dtype, device=x.device)
        alpha, sigma = self.noise_schedule(t_0)
        std = (sigma / alpha).reshape(-1, 1, 1, 1)
        mean = self._denoised(z_0, t_0)
        upper = torch.where(x > 1 - 1e-3, torch.inf, (x + 1 / 255 - mean) / std)
        lower = torch.where(x < -1 + 1e-3, -torch.inf, (x - 1 / 255 - mean) / std)
        mass = torch.special.ndtr(upper) - torch.special.ndtr(lower)
        return mass.clamp_min(1e-12).log().flatten(1).sum(1)

    @torch.no_grad()
    def sample(self, n):
        """DDIM (eta = 0) over ``sample_steps`` steps from N(0, sigma_1^2 I), then the 8-bit level."""
        device = self.body[0].weight.device
        ones = torch.ones(n, device=device)
        _, sigma_1 = self.noise_schedule(ones)
        z = sigma_1[0] * torch.randn(n, *self.shape, device=device)
        for i in range(self.sample_steps, 0, -1):
            t, s = ones * i / self.sample_steps, ones * (i - 1) / self.sample_steps
            x_hat = self._denoised(z, t).clamp(-1, 1)
            alpha_t, sigma_t = (v.reshape(-1, 1, 1, 1) for v in self.noise_schedule(t))
            alpha_s, sigma_s = (v.reshape(-1, 1, 1, 1) for v in self.noise_schedule(s))
            eps = (z - alpha_t * x_hat) / sigma_t
            z = alpha_s * x_hat + sigma_s * eps
        x_hat = self._denoised(z, ones * 0)
        return ((x_hat.clamp(-1, 1) + 1) / 2 * 255).round() / 255


def loss(model: Net, x):
    """The eps-prediction loss (Ho et al.'s L_simple) at t ~ U[0, 1], for x in [0, 1]."""
    y = 2 * x - 1
    t = torch.rand(len(y), device=y.device)
    alpha, sigma = (v.reshape(-1, 1, 1, 1) for v in model.noise_schedule(t))
    eps = torch.randn_like(y)
    return (model.predict_noise(alpha * y + sigma * eps, t) - eps).square().mean()

