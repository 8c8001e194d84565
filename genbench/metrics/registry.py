"""Every metric the harness computes, with the capability it needs.

``evaluate`` computes each metric whose capability the model implements and leaves the
others blank; nothing here looks at model names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from genbench.metrics.importance import importance_bounds
from genbench.metrics.latent import active_units_per_layer
from genbench.metrics.likelihood import bits_per_dim, nll
from genbench.protocols import ExactLikelihood, LatentVariableModel
from genbench.registry import Registry


@dataclass(frozen=True)
class EvalSettings:
    """The evaluation half of a budget."""

    k: int = 5000
    """Importance samples per test point for the NLL estimate."""
    n_test: int | None = None
    """Test points used (None: the whole split)."""
    split: str = "test"
    active_threshold: float = 0.01


@dataclass(frozen=True)
class EvalContext:
    data: Tensor
    dims: int
    settings: EvalSettings


@dataclass(frozen=True)
class MetricSpec:
    name: str
    summary: str
    #: the model must implement at least one of these capabilities
    requires: tuple[type, ...]
    compute: Callable[[nn.Module, EvalContext], dict[str, float]]

    def applies(self, model: object) -> bool:
        return any(isinstance(model, cap) for cap in self.requires)


def _nll(model, ctx: EvalContext) -> dict[str, float]:
    value = nll(model, ctx.data, k=ctx.settings.k)
    return {"nll": value, "bits_per_dim": bits_per_dim(value, ctx.dims)}


def _elbo(model, ctx: EvalContext) -> dict[str, float]:
    return {"elbo": importance_bounds(model, ctx.data, k=1).elbo.mean().item()}


def _active_units(model, ctx: EvalContext) -> dict[str, float]:
    per_layer = active_units_per_layer(model, ctx.data, ctx.settings.active_threshold)
    out = {"active_units": float(sum(per_layer))}
    if len(per_layer) > 1:
        out |= {f"active_units_l{i + 1}": float(n) for i, n in enumerate(per_layer)}
    return out


METRICS: Registry[MetricSpec] = Registry("metric")
for _spec in (
    MetricSpec("nll", "test NLL in nats (exact, or -L_k with k importance samples) and bits/dim",
               (ExactLikelihood, LatentVariableModel), _nll),
    MetricSpec("elbo", "test ELBO in nats (one posterior sample per point)",
               (LatentVariableModel,), _elbo),
    MetricSpec("active_units", "units with Cov_x(E_q[z_u]) > 0.01 (Burda et al.), per layer",
               (LatentVariableModel,), _active_units),
):
    METRICS.register(_spec.name, _spec)


@torch.no_grad()
def evaluate(model: nn.Module, data: Tensor, settings: EvalSettings,
             only: list[str] | None = None) -> dict[str, float]:
    """Every applicable metric (or those named in ``only``) on ``data``."""
    model.eval()
    if settings.n_test is not None:
        data = data[: settings.n_test]
    dims = int(data[0].numel())
    ctx = EvalContext(data=data, dims=dims, settings=settings)
    values: dict[str, float] = {}
    for name in only or list(METRICS):
        spec = METRICS[name]
        if spec.applies(model):
            values |= spec.compute(model, ctx)
    return values
