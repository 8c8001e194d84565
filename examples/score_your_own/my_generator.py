"""A GAN generator written without genbench, saved as TorchScript: genbench scores its samples
without running any Python of yours (``genbench score generator.pt --generator --latent-dim 16
--dataset mnist8``)."""

from torch import nn


class Generator(nn.Module):  # z [B, latent] -> images [B, 1, side, side] in [0, 1]
    def __init__(self, latent=16, hidden=256, side=28):
        super().__init__()
        self.side = side
        self.net = nn.Sequential(nn.Linear(latent, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden),
                                 nn.LeakyReLU(0.2), nn.Linear(hidden, side * side), nn.Sigmoid())

    def forward(self, z):
        return self.net(z).view(-1, 1, self.side, self.side)


class Discriminator(nn.Module):
    def __init__(self, pixels=784, hidden=256):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(pixels, hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(hidden, 1))

    def forward(self, x):
        return self.net(x).squeeze(-1)
