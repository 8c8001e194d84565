"""What the diffusion estimators read from a model's noise schedule: alpha_t, sigma_t, their time
derivatives and the signal-to-noise ratio SNR(t) = alpha_t^2 / sigma_t^2, all ``[B]`` for times ``[B]``."""

from __future__ import annotations

import torch
from torch import Tensor

from genbench.core.errors import GenbenchError


def broadcast(values: Tensor, like: Tensor) -> Tensor:
    """``[B]`` values shaped ``[B, 1, ..., 1]`` to multiply ``like`` ``[B, *data_shape]``."""
    return values.reshape(-1, *([1] * (like.dim() - 1)))


def times(value: float | Tensor, like: Tensor) -> Tensor:
    """``[B]`` times: ``value`` for every point of ``like``, in its dtype and device."""
    return torch.as_tensor(value, dtype=like.dtype, device=like.device).expand(like.shape[0]).clone()


def schedule(model, t: Tensor) -> tuple[Tensor, Tensor]:
    """(alpha_t, sigma_t) ``[B]``: the model's, checked for shape."""
    alpha, sigma = model.noise_schedule(t)
    if alpha.shape != t.shape or sigma.shape != t.shape:
        raise GenbenchError(f"noise_schedule(t) on times {list(t.shape)} gave {list(alpha.shape)} and "
                            f"{list(sigma.shape)}, expected [B] each")
    return alpha, sigma


def schedule_with_derivatives(model, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(alpha, sigma, d alpha/dt, d sigma/dt) ``[B]`` by automatic differentiation in t (each point's
    schedule depends on its own time only, so the gradient of the sum is the derivative per point).
    One of the two may be a constant (alpha_t = 1 of a variance-exploding schedule); a schedule
    neither of whose halves depends differentiably on t (a table looked up at an integer index) is
    one line, not a silent zero derivative."""
    with torch.enable_grad():
        t = t.detach().requires_grad_(True)
        alpha, sigma = schedule(model, t)
        if not (alpha.requires_grad or sigma.requires_grad):
            raise GenbenchError("noise_schedule(t) must be differentiable in t (torch operations on t): the "
                                "probability-flow ODE and the continuous-time bound need its derivatives")
        d_alpha, d_sigma = (torch.autograd.grad(v.sum(), t, retain_graph=True)[0] if v.requires_grad
                            else torch.zeros_like(t) for v in (alpha, sigma))
    return alpha.detach(), sigma.detach(), d_alpha.detach(), d_sigma.detach()


def log_snr(alpha: Tensor, sigma: Tensor) -> Tensor:
    """log SNR = 2 (log alpha - log sigma)."""
    return 2 * (alpha.log() - sigma.log())
