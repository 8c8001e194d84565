"""Small hand-made models with known answers, for testing metrics."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from zoo.ppca import PPCA, PPCAConfig


def low_rank_data(n: int = 2000, dims: int = 10, latent: int = 3, noise: float = 0.3,
                  seed: int = 0) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(dims, latent, generator=gen, dtype=torch.float64)
    z = torch.randn(n, latent, generator=gen, dtype=torch.float64)
    eps = torch.randn(n, dims, generator=gen, dtype=torch.float64)
    return (z @ w.T + 0.5 + noise * eps).view(n, 1, dims).float()


def fitted_ppca(data: Tensor, latent: int = 3) -> PPCA:
    model = PPCA(PPCAConfig(latent=latent), tuple(data.shape[1:]))
    model.init_from_data(data)
    return model


class MisfitPosteriorPPCA(PPCA):
    """PPCA whose q(z|x) is deliberately wrong: mean shifted by half a posterior std, std
    inflated 1.5x (wider than the posterior, so the importance weights have finite variance).

    The ELBO gap is then the closed-form KL(q || p(z|x)) between diagonal Gaussians, and
    L_k must climb from the ELBO to log p(x) as k grows.
    """

    shift = 0.5
    std_scale = 1.5

    def exact_posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return PPCA._posterior(self, x)

    def _posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_std = PPCA._posterior(self, x)
        return mean + self.shift * log_std.exp(), log_std + math.log(self.std_scale)

    def kl_to_exact_posterior(self, x: Tensor) -> Tensor:
        mq, lq = self._posterior(x)
        mp, lp = self.exact_posterior(x)
        var_q, var_p = (2 * lq).exp(), (2 * lp).exp()
        return (lp - lq + (var_q + (mq - mp) ** 2) / (2 * var_p) - 0.5).sum(-1)


class TableModel(nn.Module):
    """A latent model whose log weights are read from a fixed table [K, N].

    Each data point carries its index in its first value; every call hands out that point's
    next ``k`` table entries, so however the estimator chunks samples and points it must
    combine exactly the table's K values per point.
    """

    def __init__(self, table: Tensor):
        super().__init__()
        self.table = table
        self.cursor = torch.zeros(table.shape[1], dtype=torch.long)
        self.calls: list[tuple[int, int]] = []

    def log_importance_weights(self, x: Tensor, k: int) -> Tensor:
        idx = x.flatten(1)[:, 0].long()
        self.calls.append((len(idx), k))
        start = self.cursor[idx]
        rows = start.unsqueeze(0) + torch.arange(k).unsqueeze(1)
        self.cursor[idx] += k
        return self.table[rows, idx.unsqueeze(0).expand_as(rows)]

    def encode(self, x):
        raise NotImplementedError

    def prior(self):
        raise NotImplementedError


class UniformModel(nn.Module):
    """Uniform over 256 levels per dimension: exactly 8 bits/dim."""

    def log_prob(self, x: Tensor) -> Tensor:
        return torch.full((x.shape[0],), -x[0].numel() * math.log(256), dtype=torch.float64)


class LinearEncoder(nn.Module):
    """q(z|x) = N(A x, I) with x ~ N(0, I): Var_x(E_q[z_u]) = ||A_u||^2, known exactly."""

    def __init__(self, unit_variances: list[float], dims: int = 8):
        super().__init__()
        a = torch.zeros(len(unit_variances), dims, dtype=torch.float64)
        for u, v in enumerate(unit_variances):
            a[u, u % dims] = math.sqrt(v)
        self.a = a

    def encode(self, x: Tensor):
        mean = x.flatten(1).double() @ self.a.T
        return torch.distributions.Independent(torch.distributions.Normal(mean, 1.0), 1)

    def log_importance_weights(self, x, k):
        raise NotImplementedError

    def prior(self):
        raise NotImplementedError


class TinyFeatures(nn.Module):
    """A feature network (features, logits) small enough to script and run in tests."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        f = self.body(x)
        return f, self.head(f)


def single_optimizer_steps(model: nn.Module, batches, lr: float) -> list[float]:
    """Train a one-optimizer Trainable on each batch of ``batches`` in turn; the losses.

    Checks on the way that the model names its one optimizer "model" and its losses are finite."""
    [(name, opt)] = model.configure_optimizers(lr).items()
    assert name == "model"
    model.train()
    losses = []
    for x in batches:
        [(loss_name, loss)] = list(model.training_losses(x))
        assert loss_name == name and torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def noisy_prototypes(prototypes: Tensor, n: int, flip: float = 0.05) -> Tensor:
    """n binary images: random picks among ``prototypes`` with a fraction ``flip`` of pixels flipped."""
    flips = (torch.rand(n, *prototypes.shape[1:]) < flip).float()
    return (prototypes[torch.randint(len(prototypes), (n,))] - flips).abs()


def seeded_loss(model: nn.Module, x: Tensor, seed: int = 0) -> float:
    """The model's first training loss on ``x`` without gradients, under a fixed seed (so a
    held-out loss before and after training draws the same noise)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        return next(model.training_losses(x))[1].item()
