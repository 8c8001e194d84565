"""A normalising flow written without genbench, on 8-bit images: exact log-likelihood and samples.

Pixels are dequantised, y = (pixel + u) / 256 with u ~ U[0, 1), taken to logit space, and two
affine couplings (each rescales half of the pixels given the other half) map them to N(0, I).
``log_prob`` is the discrete bound log p(y) - D ln 256 at one uniform draw, so genbench's
bits/dim are the usual ones:
``genbench score flow.safetensors --model-code examples/score_your_own/my_flow.py:MyFlow --dataset mnist8``.
"""

import math

import torch
from torch import nn
from torch.distributions import Normal

ALPHA = 0.05  # logit(ALPHA + (1 - 2 ALPHA) y) keeps the logit finite at y = 0 and 1


class Coupling(nn.Module):
    def __init__(self, pixels, hidden, parity):
        super().__init__()
        self.register_buffer("mask", (torch.arange(pixels) % 2 == parity).float())
        self.net = nn.Sequential(nn.Linear(pixels, hidden), nn.ReLU(), nn.Linear(hidden, 2 * pixels))

    def forward(self, h):  # h -> (h', log|det|)
        log_scale, shift = self.net(h * self.mask).chunk(2, -1)
        log_scale = torch.tanh(log_scale) * (1 - self.mask)
        return h * self.mask + (1 - self.mask) * (h * log_scale.exp() + shift), log_scale.sum(-1)

    def inverse(self, h):
        log_scale, shift = self.net(h * self.mask).chunk(2, -1)
        log_scale = torch.tanh(log_scale) * (1 - self.mask)
        return h * self.mask + (1 - self.mask) * (h - shift) * (-log_scale).exp()


class MyFlow(nn.Module):
    def __init__(self, pixels=784, hidden=256):
        super().__init__()
        self.pixels = pixels
        self.couplings = nn.ModuleList([Coupling(pixels, hidden, parity) for parity in (0, 1, 0, 1)])

    def _base(self):
        zero = torch.zeros(self.pixels, device=self.couplings[0].mask.device)
        return Normal(zero, torch.ones_like(zero))

    def log_prob(self, x):  # [B] nats: a lower bound on log P(pixels) for x = pixel / 255
        y = (x.flatten(1) * 255 + torch.rand_like(x.flatten(1))) / 256
        s = ALPHA + (1 - 2 * ALPHA) * y
        h = torch.log(s) - torch.log1p(-s)
        log_det = (math.log(1 - 2 * ALPHA) - torch.log(s) - torch.log1p(-s)).sum(-1)
        for coupling in self.couplings:
            h, more = coupling(h)
            log_det = log_det + more
        return self._base().log_prob(h).sum(-1) + log_det - self.pixels * math.log(256)

    def sample(self, n):  # [n, 1, H, W]: 8-bit levels / 255
        h = self._base().sample((n,))
        for coupling in reversed(self.couplings):
            h = coupling.inverse(h)
        y = ((torch.sigmoid(h) - ALPHA) / (1 - 2 * ALPHA)).clamp(0, 1 - 1e-6)
        side = int(self.pixels ** 0.5)
        return ((y * 256).floor() / 255).view(n, 1, side, side)
