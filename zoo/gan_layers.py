"""DCGAN-style convolutional networks for the GANs, sized from the data shape.

Radford et al. (2016): a generator of stride-2 4x4 transposed convolutions with batch norm and
ReLU and a tanh output; a discriminator of stride-2 4x4 convolutions with LeakyReLU(0.2), batch
norm on every layer but the first, weights drawn from N(0, 0.02).

Size rule (``stages``): halve the image side while it is even and its half is at least 4, so
32x32 (CIFAR-10) is 4 -> 8 -> 16 -> 32, 28x28 (MNIST) is 7 -> 14 -> 28 and 8x8 (the toy set)
is 4 -> 8. The layer at the image side has ``base_channels`` channels, each halving of the side
doubles them. The DCGAN 1x1 -> 4x4 projection (and the final valid convolution of its
discriminator) are written as the equivalent dense layers. Networks work on pixels in [-1, 1].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

NORMS = ("batch", "layer", "none")


def stages(side: int) -> tuple[int, int]:
    """(number of stride-2 stages, side of the smallest feature map) for an image side."""
    n = 0
    while side % 2 == 0 and side // 2 >= 4:
        side, n = side // 2, n + 1
    if n == 0:
        raise ValueError(f"image side {side} cannot be halved to a feature map of at least 4")
    return n, side


def channels_per_stage(base: int, n_stages: int) -> list[int]:
    """Channels after each discriminator stage, image side first: base, 2 base, 4 base ..."""
    return [base * 2**i for i in range(n_stages)]


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":  # per-sample normalisation: keeps the gradient penalty per sample
        return nn.GroupNorm(1, channels)
    return nn.Identity()


def generator(latent: int, data_shape: tuple[int, ...], base: int) -> nn.Sequential:
    """z ``[B, latent]`` -> pixels ``[B, C, H, W]`` in [-1, 1]."""
    channels, side = data_shape[0], data_shape[-1]
    n, smallest = stages(side)
    widths = channels_per_stage(base, n)[::-1]
    layers: list[nn.Module] = [
        nn.Linear(latent, widths[0] * smallest * smallest, bias=False),
        nn.Unflatten(1, (widths[0], smallest, smallest)),
        nn.BatchNorm2d(widths[0]), nn.ReLU(),
    ]
    for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
    layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1), nn.Tanh()]
    return nn.Sequential(*layers)


def conv_features(data_shape: tuple[int, ...], base: int, norm: str) -> nn.Sequential:
    """pixels ``[B, C, H, W]`` -> flat features ``[B, feature_size(...)]`` (no norm on the first layer)."""
    widths = channels_per_stage(base, stages(data_shape[-1])[0])
    layers: list[nn.Module] = []
    for i, (c_in, c_out) in enumerate(zip((data_shape[0], *widths[:-1]), widths, strict=True)):
        layers.append(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=i == 0 or norm == "none"))
        if i > 0:
            layers.append(_norm(norm, c_out))
        layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers, nn.Flatten())


def feature_size(data_shape: tuple[int, ...], base: int) -> int:
    n, smallest = stages(data_shape[-1])
    return channels_per_stage(base, n)[-1] * smallest * smallest


def discriminator(data_shape: tuple[int, ...], base: int, norm: str) -> nn.Sequential:
    """pixels -> one logit (or critic value) per image, ``[B]``."""
    return nn.Sequential(conv_features(data_shape, base, norm),
                         nn.Linear(feature_size(data_shape, base), 1), nn.Flatten(0))


class JointDiscriminator(nn.Module):
    """BiGAN / ALI discriminator D(x, z): conv features of x and a dense embedding of z, joined by
    a dense layer (Donahue et al. 2017, Dumoulin et al. 2017; their dropout is left out)."""

    def __init__(self, data_shape: tuple[int, ...], latent: int, base: int, norm: str, hidden: int = 512):
        super().__init__()
        self.x_features = conv_features(data_shape, base, norm)
        self.z_features = nn.Sequential(nn.Linear(latent, hidden), nn.LeakyReLU(0.2))
        self.joint = nn.Sequential(nn.Linear(feature_size(data_shape, base) + hidden, hidden),
                                   nn.LeakyReLU(0.2), nn.Linear(hidden, 1), nn.Flatten(0))

    def forward(self, pixels: Tensor, z: Tensor) -> Tensor:
        return self.joint(torch.cat([self.x_features(pixels), self.z_features(z)], dim=1))


def encoder(data_shape: tuple[int, ...], latent: int, base: int) -> nn.Sequential:
    """pixels -> z ``[B, latent]``, deterministic (BiGAN's E); batch norm as the discriminator."""
    return nn.Sequential(conv_features(data_shape, base, "batch"),
                         nn.Linear(feature_size(data_shape, base), latent))


def dcgan_init(module: nn.Module) -> None:
    """Radford et al.'s initialisation: N(0, 0.02) weights, batch-norm scales N(1, 0.02), zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
