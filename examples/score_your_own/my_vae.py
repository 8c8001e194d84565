"""A VAE written without genbench: its own layer names, ELU, a Bernoulli decoder.

genbench scores it through four methods (no genbench import needed):
``genbench score vae.pt --model-code examples/score_your_own/my_vae.py:MyVAE --dataset binarized_mnist``.
"""

import torch
from torch import nn
from torch.distributions import Bernoulli, Independent, Normal


class MyVAE(nn.Module):
    def __init__(self, pixels=784, hidden=200, latent=32):
        super().__init__()
        self.latent = latent
        self.fc1, self.fc2 = nn.Linear(pixels, hidden), nn.Linear(hidden, 2 * latent)
        self.fc3, self.fc4 = nn.Linear(latent, hidden), nn.Linear(hidden, pixels)

    def encode(self, x):  # q(z | x): batch [B], event [latent]
        mean, log_std = self.fc2(nn.functional.elu(self.fc1(x.flatten(1)))).chunk(2, -1)
        return Independent(Normal(mean, log_std.exp()), 1)

    def prior(self):  # p(z) = N(0, I)
        zero = torch.zeros(self.latent, device=self.fc1.weight.device)
        return Independent(Normal(zero, torch.ones_like(zero)), 1)

    def decode(self, z):  # Bernoulli logits of every pixel
        return self.fc4(nn.functional.elu(self.fc3(z)))

    def log_importance_weights(self, x, k):  # [k, B]: log p(x, z) - log q(z | x), z ~ q
        q = self.encode(x)
        z = q.rsample((k,))
        log_px = Bernoulli(logits=self.decode(z)).log_prob(x.flatten(1).expand(k, -1, -1)).sum(-1)
        return log_px + self.prior().log_prob(z) - q.log_prob(z)

    def sample(self, n):  # [n, 1, H, W] in [0, 1]: the decoder's means
        side = int(self.fc4.out_features ** 0.5)
        return torch.sigmoid(self.decode(self.prior().sample((n,)))).view(n, 1, side, side)
