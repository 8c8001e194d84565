"""Annealed importance sampling (AIS, Neal 2001) with Hamiltonian Monte Carlo: a stochastic lower bound
on log p(x) for every decoder, as Wu et al. (2017) evaluate VAEs and GANs alike.

- The path: f_beta(z) = p(z) p(x | z)^beta, beta from 0 (the prior, sampled exactly) to 1 (the
  unnormalised posterior), on a schedule of ``steps`` + 1 values (``SCHEDULES``: ``sigmoid`` is
  Grosse et al.'s beta_t = sigma(delta (2t/T - 1)) rescaled to [0, 1], delta = 4).
- The weight of one chain: log w = sum_t (beta_t - beta_{t-1}) log p(x | z_{t-1}), z_t an HMC move
  leaving f_{beta_t} invariant. E[w] = p(x), so log of the mean of w over chains is a stochastic
  lower bound (Jensen); with ``steps`` = 1 it is importance sampling with the prior as proposal.
- HMC: unit mass, ``leapfrog`` steps (10), a Metropolis test, and a step size per chain and
  annealing step adapted towards a target acceptance probability (0.65): log eps += rate (a - target)
  after each move, a the move's acceptance probability, eps kept in [min_step, max_step]. The
  adaptation runs in a pilot pass of ``pilot_chains`` chains per point (1: 1/chains of the cost),
  whose step sizes the estimating chains then use as a fixed schedule (chain c the pilot chain
  c mod pilot_chains's). Adapting the estimating chains themselves makes each move depend on the
  chain's own past, and the bound is then no bound: on PPCA (10-d, 3 latents, 500 steps, 8 chains)
  adaptation at rate 0.25 put the estimate 0.30 +- 0.015 nats above the exact log p(x); with the
  pilot's fixed schedule it is below it, as a lower bound must be (``tests/metrics/test_ais.py``).
- The estimate per point is log mean_c w_c over the chains; its standard error is the delta
  method's over chains, sd_c(w) / (sqrt(C) mean_c(w)) (the uncertainty of the chains' mean,
  carried to the log).

Batched over points and chains (one ``[chains, B]`` batch per model call, no loop per point; the
loop is over annealing and leapfrog steps). Memory is bounded as in the IWAE estimator: one call
holds at most ``max_rows`` (chains x points) rows, points grouped by ``max_rows // chains``, chains
split only where they alone exceed it. Randomness comes from a seed (or a torch.Generator that
gives one): the same seed gives the same numbers, and the caller's RNG state is left as it was.

A generator x = g(z) (a GAN's: ``DeterministicDecoder``) has no p(x | z): ``GaussianObservation``
gives it N(x; g(z), std^2 I) on dequantised pixels, std chosen on validation data
(``choose_observation_std``), and ``dequantize`` the data it is scored on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from genbench.core.errors import GenbenchError
from genbench.core.protocols import decoder_prior
from genbench.core.registry import Registry
from genbench.core.rng import seeded_rng as core_seeded_rng


# --- schedules ---------------------------------------------------------------------------------
def sigmoid_schedule(steps: int, delta: float = 4.0) -> list[float]:
    """beta_t = sigma(delta (2t/T - 1)), rescaled so that beta_0 = 0 and beta_T = 1 (Grosse et al. 2015)."""
    t = torch.linspace(-delta, delta, steps + 1, dtype=torch.float64)
    s = torch.sigmoid(t)
    return ((s - s[0]) / (s[-1] - s[0])).tolist()


def linear_schedule(steps: int) -> list[float]:
    return torch.linspace(0, 1, steps + 1, dtype=torch.float64).tolist()


SCHEDULES: Registry[Callable[[int], list[float]]] = Registry("AIS schedule")
SCHEDULES.register("sigmoid", sigmoid_schedule)
SCHEDULES.register("linear", linear_schedule)


def make_schedule(schedule: str | Sequence[float] | Tensor, steps: int) -> list[float]:
    """The betas of a named schedule, or a given sequence checked: from 0 to 1, non-decreasing."""
    if isinstance(schedule, str):
        if steps < 1:
            raise ValueError(f"AIS needs steps >= 1, got {steps}")
        return SCHEDULES[schedule](steps)
    betas = [float(b) for b in schedule]
    decreasing = any(later < earlier for earlier, later in zip(betas, betas[1:], strict=False))
    if len(betas) < 2 or betas[0] != 0.0 or betas[-1] != 1.0 or decreasing:
        raise ValueError("an AIS schedule runs from beta = 0 to beta = 1, non-decreasing")
    return betas


# --- HMC on f_beta(z) = p(z) p(x | z)^beta -------------------------------------------------------
@dataclass(frozen=True)
class HMC:
    """The transition of every annealing step (defaults: Wu et al.'s 10 leapfrog steps and 0.65)."""

    leapfrog: int = 10
    target_acceptance: float = 0.65
    initial_step: float = 0.1
    adapt_rate: float = 0.25
    pilot_chains: int = 1
    """Chains per point of the pilot pass that adapts the step sizes."""
    """log eps += adapt_rate (acceptance probability - target) after each move, per chain."""
    min_step: float = 1e-4
    max_step: float = 1.0


DEFAULT_HMC = HMC()


@dataclass
class _State:
    """Chains ``[C, B, D]`` with their log prior, log likelihood ``[C, B]`` and both gradients."""

    z: Tensor
    log_prior: Tensor
    log_lik: Tensor
    grad_prior: Tensor
    grad_lik: Tensor

    def where(self, keep_new: Tensor, new: _State) -> _State:
        k3 = keep_new.unsqueeze(-1)
        return _State(torch.where(k3, new.z, self.z), torch.where(keep_new, new.log_prior, self.log_prior),
                      torch.where(keep_new, new.log_lik, self.log_lik),
                      torch.where(k3, new.grad_prior, self.grad_prior),
                      torch.where(k3, new.grad_lik, self.grad_lik))


def _evaluate(decoder, prior, x: Tensor, z: Tensor) -> _State:
    """log p(z), log p(x | z) and their gradients in z (only z's: no parameter gradient is computed)."""
    with torch.enable_grad():
        zl = z.detach().clone().requires_grad_(True)
        log_lik = decoder.log_likelihood(x, zl)
        if tuple(log_lik.shape) != tuple(z.shape[:2]):
            raise GenbenchError(f"{type(decoder).__name__}.log_likelihood(x, z) gave shape "
                                f"{list(log_lik.shape)} for z of shape {list(z.shape)}; expected [k, B] = "
                                f"{list(z.shape[:2])}")
        (grad_lik,) = torch.autograd.grad(log_lik.sum(), zl)
        zp = z.detach().clone().requires_grad_(True)
        log_prior = prior.log_prob(zp)
        (grad_prior,) = torch.autograd.grad(log_prior.sum(), zp)
    return _State(zl.detach(), log_prior.detach(), log_lik.detach(), grad_prior, grad_lik)


def _hmc_move(decoder, prior, x: Tensor, s: _State, beta: float, step: Tensor,
              leapfrog: int) -> tuple[_State, Tensor]:
    """One HMC move per chain on f_beta (step ``[C, B]``): the new state and the acceptance probability."""
    e = step.unsqueeze(-1).to(s.z.dtype)
    p = torch.randn_like(s.z)
    h0 = -(s.log_prior + beta * s.log_lik) + 0.5 * p.square().sum(-1)
    new = s
    p = p + 0.5 * e * (new.grad_prior + beta * new.grad_lik)
    for i in range(leapfrog):
        new = _evaluate(decoder, prior, x, new.z + e * p)
        p = p + (e if i < leapfrog - 1 else 0.5 * e) * (new.grad_prior + beta * new.grad_lik)
    h1 = -(new.log_prior + beta * new.log_lik) + 0.5 * p.square().sum(-1)
    log_accept = (h0 - h1).clamp(max=0.0)
    log_accept = torch.where(torch.isnan(log_accept), torch.full_like(log_accept, -math.inf), log_accept)
    accept_prob = log_accept.exp()
    accepted = torch.rand_like(accept_prob) < accept_prob
    return s.where(accepted, new), accept_prob


def _adapt(log_step: Tensor, accept_prob: Tensor, hmc: HMC) -> Tensor:
    updated = log_step + hmc.adapt_rate * (accept_prob.to(log_step.dtype) - hmc.target_acceptance)
    return updated.clamp(math.log(hmc.min_step), math.log(hmc.max_step))


@dataclass
class _Chunk:
    log_w: Tensor  # [C, B] float64
    acceptance: Tensor  # [B], mean over moves and chains
    partial: dict[int, Tensor]  # t -> log weight [C, B] after the increment up to beta_t


def _pilot_steps(decoder, prior, x: Tensor, betas: list[float], hmc: HMC) -> list[Tensor]:
    """The step sizes ``[pilot_chains, B]`` of the moves at beta_1 .. beta_{T-1}, adapted along a pilot
    forward run whose weights are not used."""
    state = _evaluate(decoder, prior, x, prior.sample((hmc.pilot_chains, x.shape[0])))
    log_step = torch.full(state.log_lik.shape, math.log(hmc.initial_step), dtype=torch.float64,
                          device=x.device)
    steps = []
    for t in range(1, len(betas) - 1):
        steps.append(log_step.exp())
        state, accept_prob = _hmc_move(decoder, prior, x, state, betas[t], steps[-1], hmc.leapfrog)
        log_step = _adapt(log_step, accept_prob, hmc)
    return steps


def _forward(decoder, prior, x: Tensor, chains: slice, betas: list[float], hmc: HMC, steps: list[Tensor],
             partial_at: Sequence[int] = ()) -> _Chunk:
    """Forward AIS for one chunk of points and the chains ``chains``: each starts at an exact prior
    sample and moves with its pilot chain's step sizes ``steps``."""
    pilot = torch.arange(chains.start, chains.stop, device=x.device) % hmc.pilot_chains
    state = _evaluate(decoder, prior, x, prior.sample((len(pilot), x.shape[0])))
    log_w = torch.zeros(len(pilot), x.shape[0], dtype=torch.float64, device=x.device)
    accept_sum, partial, last = torch.zeros_like(log_w), {}, len(betas) - 1
    for t in range(1, last + 1):
        log_w = log_w + (betas[t] - betas[t - 1]) * state.log_lik.to(torch.float64)
        if t in partial_at:
            partial[t] = log_w
        if t < last:
            state, accept_prob = _hmc_move(decoder, prior, x, state, betas[t], steps[t - 1][pilot],
                                           hmc.leapfrog)
            accept_sum += accept_prob.to(torch.float64)
    return _Chunk(log_w, (accept_sum / max(last - 1, 1)).mean(0), partial)


def _reverse(decoder, prior, x: Tensor, z_exact: Tensor, chains: slice, betas: list[float], hmc: HMC,
             steps: list[Tensor]) -> _Chunk:
    """Reverse AIS from exact posterior samples ``z_exact`` ``[B, D]``, beta from 1 to 0, with the pilot's
    step sizes (the forward chains' own), fixed, so every move is a reversible kernel of its f_beta.
    E[exp(log_w)] = 1 / p(x): -log of the chains' mean is a stochastic upper bound on log p(x)."""
    pilot = torch.arange(chains.start, chains.stop, device=x.device) % hmc.pilot_chains
    state = _evaluate(decoder, prior, x, z_exact.unsqueeze(0).expand(len(pilot), *z_exact.shape))
    log_w = torch.zeros(len(pilot), x.shape[0], dtype=torch.float64, device=x.device)
    accept_sum, last = torch.zeros_like(log_w), len(betas) - 1
    for t in range(last, 0, -1):
        log_w = log_w + (betas[t - 1] - betas[t]) * state.log_lik.to(torch.float64)
        if t - 1 >= 1:
            state, accept_prob = _hmc_move(decoder, prior, x, state, betas[t - 1], steps[t - 2][pilot],
                                           hmc.leapfrog)
            accept_sum += accept_prob.to(torch.float64)
    return _Chunk(log_w, (accept_sum / max(last - 1, 1)).mean(0), {})


def ais_max_rows(device: torch.device) -> int:
    """Rows (chains x points) per model call: 1024 on a CPU, 16384 on a GPU; fewer than the IWAE
    estimator's since every row keeps its activations for the gradient (a DCGAN generator's are ~60k
    floats)."""
    return 1 << 14 if device.type == "cuda" else 1 << 10


def chunks(n: int, chains: int, max_rows: int) -> list[tuple[slice, list[slice]]]:
    """Point slices, each with the chain slices that cover ``chains``: at most ``max_rows`` rows a call."""
    points_per_call, chains_per_call = max(1, max_rows // chains), min(chains, max_rows)
    chain_parts = [slice(c, min(c + chains_per_call, chains)) for c in range(0, chains, chains_per_call)]
    return [(slice(p, min(p + points_per_call, n)), chain_parts) for p in range(0, n, points_per_call)]


def rows_limit(model, max_rows: int | None, device: torch.device) -> int:
    """``max_rows`` (default ``ais_max_rows``), at most the model's own ``max_rows`` where it declares one."""
    limit = max_rows or ais_max_rows(device)
    own = getattr(model, "max_rows", None)
    return min(limit, own) if isinstance(own, int) and own > 0 else limit


@contextmanager
def frozen(model):
    """The parameters of ``model`` (and of a wrapped ``generator``) without requires_grad while AIS runs:
    only gradients in z are wanted, and autograd then builds no graph towards the weights (faster:
    benchmarks/RESULTS.md, "Figures behind code choices"). Restored afterwards."""
    modules = [m for m in (model, getattr(model, "generator", None)) if isinstance(m, nn.Module)]
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


@contextmanager
def seeded_rng(device: torch.device, seed: int | None, generator: torch.Generator | None):
    """torch's global RNG seeded from ``seed`` (or a draw of ``generator``, else of the global RNG itself),
    restored afterwards: every draw inside (prior samples, momenta, Metropolis tests) is reproducible."""
    if seed is None:
        where = generator.device if generator is not None else None
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=where).item())
    with core_seeded_rng(seed, device):
        yield


# --- the estimator -----------------------------------------------------------------------------------
@dataclass
class AISResult:
    """Per point, in nats (float64): ``log_p`` = log mean_c w_c, a stochastic lower bound on log p(x)."""

    log_weights: Tensor  # [chains, B]
    log_p: Tensor  # [B]
    se: Tensor  # [B]: delta-method s.e. over chains (nan with one chain)
    acceptance: Tensor  # [B]: mean HMC acceptance probability


def log_mean_exp_and_se(log_w: Tensor) -> tuple[Tensor, Tensor]:
    """log mean_c w_c over dim 0 and its delta-method s.e. sd_c(w) / (sqrt(C) mean_c(w)), stably."""
    chains = log_w.shape[0]
    top = log_w.max(0).values
    w = (log_w - top).exp()
    mean = w.mean(0)
    estimate = top + mean.log()
    if chains < 2:
        return estimate, torch.full_like(estimate, math.nan)
    return estimate, w.std(0) / (math.sqrt(chains) * mean)


def _forward_all(decoder, prior, x: Tensor, chains: int, betas: list[float], hmc: HMC, max_rows: int,
                 partial_at: Sequence[int] = ()) -> _Chunk:
    """``_forward`` over every chunk of (points, chains), its pieces joined."""
    n = x.shape[0]
    log_w = torch.empty(chains, n, dtype=torch.float64, device=x.device)
    accept = torch.zeros(n, dtype=torch.float64, device=x.device)
    partial = {t: torch.empty_like(log_w) for t in partial_at}
    for points, chain_parts in chunks(n, chains, max_rows):
        steps = _pilot_steps(decoder, prior, x[points], betas, hmc)
        for part_chains in chain_parts:
            part = _forward(decoder, prior, x[points], part_chains, betas, hmc, steps, partial_at)
            log_w[part_chains, points] = part.log_w
            accept[points] += part.acceptance * (part_chains.stop - part_chains.start) / chains
            for t in partial_at:
                partial[t][part_chains, points] = part.partial[t]
    return _Chunk(log_w, accept, partial)


@torch.no_grad()
def ais(model, x: Tensor, steps: int, chains: int = 16, schedule: str | Sequence[float] = "sigmoid", *,
        hmc: HMC = DEFAULT_HMC, seed: int | None = None, generator: torch.Generator | None = None,
        max_rows: int | None = None) -> AISResult:
    """AIS from the prior to the posterior of a DecoderModel: per point of ``x`` a stochastic lower bound
    on log p(x) (nats) with its s.e. over ``chains`` chains. Call it on a model in eval mode."""
    if chains < 1 or hmc.pilot_chains < 1:
        raise ValueError(f"AIS needs chains >= 1 and pilot chains >= 1, got {chains} and {hmc.pilot_chains}")
    betas = make_schedule(schedule, steps)
    with seeded_rng(x.device, seed, generator), frozen(model):
        run = _forward_all(model, decoder_prior(model), x, chains, betas, hmc,
                           rows_limit(model, max_rows, x.device))
    log_p, se = log_mean_exp_and_se(run.log_w)
    return AISResult(run.log_w, log_p, se, run.acceptance)


# --- generators: a Gaussian observation model on dequantised pixels ----------------------------------
class GaussianObservation:
    """A DecoderModel for a generator g (``DeterministicDecoder``): p(x | z) = N(x; g(z), std^2 I).

    A density on continuous x (``log_prob_is_density``): genbench scores it on dequantised pixels
    x = (level + u) / L, u ~ U[0, 1), for L levels (256 for 8-bit data), and reports the discrete NLL
    -log p(x) + D ln L, an upper bound on -log P(levels) in expectation over u: the convention of the
    flows' bits/dim (``genbench.metrics.likelihood``, ``zoo.realnvp``).
    """

    log_prob_is_density = True

    def __init__(self, generator, std: float):
        if not std > 0:
            raise ValueError(f"an observation std must be > 0, got {std}")
        self.generator, self.std = generator, float(std)

    def prior(self):
        return self.generator.latent_prior()

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        k, batch = z.shape[:2]
        mean = self.generator.generate(z.reshape(k * batch, -1)).reshape(k, batch, -1)
        sq = (x.reshape(1, batch, -1).to(mean.dtype) - mean).square().sum(-1)
        dims = mean.shape[-1]
        return -0.5 * sq / self.std**2 - dims * (math.log(self.std) + 0.5 * math.log(2 * math.pi))

    @torch.no_grad()
    def sample_given_z(self, z: Tensor) -> Tensor:
        mean = self.generator.generate(z)
        return mean + self.std * torch.randn_like(mean)


def dequantize(x: Tensor, levels: int) -> Tensor:
    """x in [0, 1] on ``levels`` levels (x = level / (levels - 1)) -> (level + u) / levels, u ~ U[0, 1)
    from torch's global RNG."""
    level = torch.round(x * (levels - 1))
    return (level + torch.rand_like(level)) / levels


#: candidate observation stds (pixels in [0, 1]), log-spaced; the smallest is the annealing path's
OBSERVATION_STDS = (0.01, 0.015, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3)


@dataclass
class ObservationChoice:
    std: float
    scores: dict[float, float]
    """Mean AIS lower bound on log p(x) (nats, the density on dequantised points) at each candidate std."""


@torch.no_grad()
def choose_observation_std(generator, x_valid: Tensor, steps: int, chains: int,
                           stds: Sequence[float] = OBSERVATION_STDS, *, hmc: HMC = DEFAULT_HMC,
                           seed: int | None = None, max_rows: int | None = None) -> ObservationChoice:
    """The std of ``stds`` whose AIS bound on the (dequantised) validation points is highest, Wu et al.'s
    choice, from one annealing run: p(x | z)^beta at std s0 = min(stds) is N(x; g(z), s0^2 / beta) up to a
    constant c(beta) in z, so the AIS estimate of Z_beta on the way, less c(beta), is a lower bound on
    log p(x) at std s0 / sqrt(beta). The path is the sigmoidal schedule with each candidate's
    beta = (s0 / s)^2 added. Tighter bounds at larger stds bias the choice slightly towards them."""
    base = min(stds)
    targets = {float(s): (base / s) ** 2 for s in stds}
    betas = sorted(set(sigmoid_schedule(steps)) | set(targets.values()))
    index = {s: betas.index(b) for s, b in targets.items()}
    decoder = GaussianObservation(generator, base)
    with seeded_rng(x_valid.device, seed, None), frozen(generator):
        run = _forward_all(decoder, decoder.prior(), x_valid, chains, betas, hmc,
                           rows_limit(generator, max_rows, x_valid.device),
                           partial_at=sorted(set(index.values())))
    dims = x_valid[0].numel()
    log_var = math.log(2 * math.pi * base**2)
    scores = {}
    for s, beta in targets.items():
        const = 0.5 * dims * (log_var - math.log(beta)) - beta * 0.5 * dims * log_var
        bound = log_mean_exp_and_se(run.partial[index[s]])[0]
        scores[s] = float(bound.mean()) - const
    return ObservationChoice(max(scores, key=scores.get), scores)
