"""The likelihood of a diffusion model through its probability-flow ODE (Song et al. 2021).

For x_t = alpha_t x + sigma_t eps the ODE dx_t/dt = v(x_t, t) with
v = (alpha'/alpha) x_t + (sigma' - sigma alpha'/alpha) eps_hat(x_t, t) moves every marginal p_t into
the next, so for x at t = 0, log p_0(x) = log p_1(x_1) + integral_0^1 div v(x_t, t) dt, with the
prior p_1 = N(0, sigma_1^2 I). The ODE and the integral are solved together by torchdiffeq (an
adaptive, tested solver: dopri5 by default, Song et al.'s rtol = atol = 1e-5). The divergence is
exact (one backward pass per dimension) up to ``EXACT_DIVERGENCE_MAX_DIMS`` dimensions, else the
Hutchinson-Skilling estimate e^T (dv/dx) e with Rademacher probes e fixed along each solve
(FFJORD's), unbiased; with several probes per point each point also has the s.e. of its estimate.

On 8-bit data (:func:`probability_flow_discrete_nll`) the pixels are dequantised as realnvp's,
x_c = (pixel + u) / 256, mapped into the model's ``data_interval`` (lo + (hi - lo) x_c, its
Jacobian counted) and the discrete NLL bound is -log p(x_c) + D ln 256: a uniform model is 8 bits/dim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torchdiffeq import odeint

from genbench.core.errors import GenbenchError
from genbench.core.protocols import VelocityField, data_interval
from genbench.metrics.noise_schedules import broadcast, schedule, schedule_with_derivatives, times

#: up to this many dimensions the divergence is exact (D backward passes per evaluation)
EXACT_DIVERGENCE_MAX_DIMS = 16
#: Song et al.'s tolerances for their likelihoods (rtol = atol = 1e-5) and solver
DEFAULT_TOLERANCE = 1e-5
DEFAULT_METHOD = "dopri5"


@dataclass(frozen=True)
class ProbabilityFlowNLL:
    """-log p(x) per point and how it was computed."""

    nll: Tensor
    """``[B]`` nats (float64): the mean over the point's probes."""
    nll_se: Tensor
    """``[B]`` s.e. of each point's Hutchinson estimate over its probes (0 where the divergence is exact,
    NaN with one probe: unknown, though the estimate is unbiased)."""
    nfe: int
    """Evaluations of the velocity field by the solver, summed over its batches."""
    batches: int
    rtol: float
    atol: float
    method: str
    divergence: str
    """'exact' or 'hutchinson'."""
    probes: int

    @property
    def nfe_per_batch(self) -> float:
        return self.nfe / self.batches


def velocity(model, x: Tensor, t: Tensor) -> Tensor:
    """dx_t/dt of the probability-flow ODE at x ``[B, ...]``, times t ``[B]``: the model's own where it
    predicts it (``VelocityField``), else from its noise prediction and schedule."""
    if isinstance(model, VelocityField):
        return model.velocity(x, t)
    alpha, sigma, d_alpha, d_sigma = schedule_with_derivatives(model, t)
    rate = d_alpha / alpha  # d log alpha / dt
    return broadcast(rate, x) * x + broadcast(d_sigma - sigma * rate, x) * model.predict_noise(x, t)


def _divergence(v: Tensor, x: Tensor, probe: Tensor | None) -> Tensor:
    """``[B]`` div_x v: exact (one backward pass per dimension) without a probe, else e^T (dv/dx) e."""
    if probe is not None:
        (vjp,) = torch.autograd.grad(v, x, probe, retain_graph=True)
        return (vjp * probe).flatten(1).sum(1)
    flat = v.flatten(1)
    total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for i in range(flat.shape[1]):
        (grad,) = torch.autograd.grad(flat[:, i].sum(), x, retain_graph=True)
        total = total + grad.flatten(1)[:, i]
    return total


class _AugmentedDynamics(torch.nn.Module):
    """(dx/dt, d(log-density change)/dt) = (v, div v), counting its evaluations."""

    def __init__(self, model, probe: Tensor | None):
        super().__init__()
        self.model, self.probe, self.evaluations = model, probe, 0

    def forward(self, t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        self.evaluations += 1
        x = state[0]
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            v = velocity(self.model, x, times(t, x))
            div = _divergence(v, x, self.probe)
        return v.detach(), div.detach()


def _prior_log_prob(z: Tensor, sigma_1: Tensor) -> Tensor:
    """``[B]`` log N(z; 0, sigma_1^2 I)."""
    dims = z[0].numel()
    var = sigma_1.to(z.dtype) ** 2
    return -0.5 * (dims * (math.log(2 * math.pi) + var.log()) + z.flatten(1).square().sum(1) / var)


def _solve(model, x: Tensor, probe: Tensor | None, rtol: float, atol: float, method: str,
           t_start: float) -> tuple[Tensor, int]:
    """``[B]`` log p_{t_start}(x) and the solver's evaluations, for one batch."""
    dynamics = _AugmentedDynamics(model, probe)
    span = torch.tensor([t_start, 1.0], dtype=x.dtype, device=x.device)
    zero = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    xs, integrals = odeint(dynamics, (x, zero), span, rtol=rtol, atol=atol, method=method)
    _, sigma_1 = schedule(model, times(1.0, x))
    return _prior_log_prob(xs[-1], sigma_1) + integrals[-1], dynamics.evaluations


@torch.no_grad()
def probability_flow_nll(model, x: Tensor, *, rtol: float = DEFAULT_TOLERANCE,
                         atol: float = DEFAULT_TOLERANCE, method: str = DEFAULT_METHOD,
                         exact_divergence: bool | None = None, probes: int = 1,
                         batch_size: int = 256, t_start: float = 0.0,
                         generator: torch.Generator | None = None) -> ProbabilityFlowNLL:
    """-log p_{t_start}(x) in nats per point, x ``[B, *data_shape]`` continuous, in the model's space.

    ``exact_divergence`` None: exact up to ``EXACT_DIVERGENCE_MAX_DIMS`` dimensions, Hutchinson above.
    ``probes``: Hutchinson probes per point, solved side by side in one batch of ``batch_size`` rows
    (their spread gives ``nll_se``; the adaptive steps are shared by the batch).
    ``t_start`` > 0 starts where a schedule with sigma_0 = 0 is singular (Song et al.'s 1e-5)."""
    if probes < 1 or batch_size < 1:
        raise GenbenchError(f"probability_flow_nll: probes and batch_size must be >= 1, got {probes}, "
                            f"{batch_size}")
    exact = x[0].numel() <= EXACT_DIVERGENCE_MAX_DIMS if exact_divergence is None else exact_divergence
    probes = 1 if exact else probes
    per_point = max(1, batch_size // probes)  # a batch solves every probe of its points at once
    per_probe, nfe, batches = [], 0, 0
    for start in range(0, x.shape[0], per_point):
        chunk = x[start:start + per_point]
        rows = chunk.repeat(probes, *[1] * (chunk.dim() - 1))  # probe-major: [probes * n, ...]
        probe = None if exact else _rademacher(rows, generator)
        log_p, evaluations = _solve(model, rows, probe, rtol, atol, method, t_start)
        per_probe.append(log_p.to(torch.float64).reshape(probes, len(chunk)))
        nfe, batches = nfe + evaluations, batches + 1
    nll = -torch.cat(per_probe, dim=1)  # [probes, B]
    if exact:
        se = torch.zeros(nll.shape[1], dtype=torch.float64, device=nll.device)
    elif probes == 1:
        se = torch.full((nll.shape[1],), math.nan, dtype=torch.float64, device=nll.device)
    else:
        se = nll.std(0) / math.sqrt(probes)
    return ProbabilityFlowNLL(nll=nll.mean(0), nll_se=se, nfe=nfe, batches=batches, rtol=rtol, atol=atol,
                              method=method, divergence="exact" if exact else "hutchinson", probes=probes)


def _rademacher(like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Random signs shaped like ``like`` (drawn on the CPU from ``generator``, so a seed fixes them)."""
    signs = torch.randint(0, 2, like.shape, generator=generator, dtype=torch.int64)
    return (2 * signs - 1).to(like.dtype).to(like.device)


def dequantize_into_model_space(model, x: Tensor, levels: int = 256,
                                generator: torch.Generator | None = None) -> tuple[Tensor, float]:
    """(y, log |dy/dx_c| summed over dimensions): y = lo + (hi - lo) x_c, x_c = (pixel + u) / levels with
    pixel = round(x (levels - 1)) for genbench's x in [0, 1], u ~ U[0, 1) (realnvp's dequantisation)."""
    lo, hi = data_interval(model)
    if not hi > lo:
        raise GenbenchError(f"data_interval must be (lo, hi) with hi > lo, got ({lo}, {hi})")
    pixels = (x * (levels - 1)).round().clamp(0, levels - 1)
    u = torch.rand(pixels.shape, generator=generator, dtype=x.dtype).to(x.device)
    return lo + (hi - lo) * (pixels + u) / levels, x[0].numel() * math.log(hi - lo)


def probability_flow_discrete_nll(model, x: Tensor, levels: int = 256,
                                  generator: torch.Generator | None = None, **solver) -> ProbabilityFlowNLL:
    """The dequantisation bound on -log P(pixels) in nats per point for discrete x in [0, 1] (one uniform
    draw per point): -log p(y) - log |dy/dx_c| + D ln levels, so bits/dim = nll / (D ln 2) and a model
    uniform on the data cube is log2(levels) bits/dim. ``solver``: :func:`probability_flow_nll`'s options."""
    y, log_jacobian = dequantize_into_model_space(model, x, levels, generator)
    result = probability_flow_nll(model, y, generator=generator, **solver)
    offset = x[0].numel() * math.log(levels) - log_jacobian
    return ProbabilityFlowNLL(**{**result.__dict__, "nll": result.nll + offset})
