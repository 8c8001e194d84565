"""Every metric the harness computes, with the capability it needs.

``evaluate`` computes each metric whose capability the model implements (and whose data it
was given: training points for ELBO surgery, a ground-truth data set for disentanglement)
and leaves the others blank; nothing here looks at model names.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from genbench.data.ground_truth import GroundTruthData
from genbench.errors import MetricSkipped
from genbench.metrics import disentanglement
from genbench.metrics.elbo_surgery import diagonal_gaussian, elbo_surgery
from genbench.metrics.importance import importance_bounds
from genbench.metrics.latent import active_units_per_layer
from genbench.metrics.likelihood import bits_per_dim, nll
from genbench.metrics.sample_quality import sample_quality_applies, sample_quality_metrics
from genbench.protocols import ExactLikelihood, LatentVariableModel, Representation, Sampler
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
    seed: int = 0
    """Seed of the draws of ELBO surgery and the disentanglement scores."""
    surgery_points: int | None = 10_000
    """Training points (a seeded random subset) whose aggregate posterior ELBO surgery takes
    (None: the whole split). Its mutual information is at most log of this number."""
    surgery_samples: int = 1
    """Posterior samples per point; cost grows with points^2 x samples."""
    disentanglement_group_size: int = 64
    """L: pairs per beta-VAE point, observations per FactorVAE point."""
    disentanglement_train: int = 10_000
    """Training points of the beta-VAE and FactorVAE classifiers; also the observations behind
    FactorVAE's latent scales and MIG (10000 each in disentanglement_lib)."""
    disentanglement_eval: int = 5_000
    quality_samples: int = 10_000
    """Model samples that IS/FID/KID/precision-recall score (0: those metrics are skipped)."""
    quality_reference: int | None = 10_000
    """Real images they are compared with: the first n of ``quality_split`` (None: all)."""
    quality_split: str = "test"
    curve_samples: int = 2_000
    """Samples behind the FID of each epoch in a GAN's learning curve (where quality_samples > 0)."""
    features: str | None = None
    """Feature network: lenet, inception or a TorchScript file (None: the data set's default)."""
    cache_root: str | None = None
    """Data folder whose genbench-cache/ keeps the LeNet and reference features (None: the default)."""

    def disentanglement(self, device: torch.device) -> disentanglement.DisentanglementSettings:
        return disentanglement.DisentanglementSettings(
            group_size=self.disentanglement_group_size, n_train=self.disentanglement_train,
            n_eval=self.disentanglement_eval, n_variance=self.disentanglement_train,
            n_mig=self.disentanglement_train, batch_size=4096 if device.type == "cuda" else 512)


@dataclass(frozen=True)
class EvalContext:
    data: Tensor
    dims: int
    settings: EvalSettings
    train: Tensor | None = None
    """The training split as evaluated data, where the caller has it in memory."""
    dataset: object | None = None
    """The ImageDataset (dSprites' also implements GroundTruthData)."""

    def training_points(self, n: int | None) -> Tensor | None:
        """n training points, a random subset seeded from the settings (all when None).

        Read from ``train`` if given, else from the data set one batch at a time so that a
        subset never materialises the whole split; dynamically binarized data give one
        binarization of each chosen image.
        """
        if self.train is not None:
            total = len(self.train)
        elif self.dataset is not None and hasattr(self.dataset, "train_batch"):
            total = self.dataset.size("train")
        else:
            return None
        index = np.arange(total)
        if n is not None and n < total:
            index = np.sort(np.random.default_rng(self.settings.seed).choice(total, n, replace=False))
        index = torch.from_numpy(index)
        if self.train is not None:
            return self.train[index.to(self.train.device)]
        return self.dataset.train_batch(index.to(self.dataset.device))


@dataclass(frozen=True)
class MetricSpec:
    name: str
    summary: str
    #: the model must implement at least one of these capabilities
    requires: tuple[type, ...]
    compute: Callable[[nn.Module, EvalContext], dict[str, float]]
    #: beyond the capability: whether the context holds what the metric needs (default: yes)
    available: Callable[[nn.Module, EvalContext], bool] | None = None

    def applies(self, model: object, ctx: EvalContext | None = None) -> bool:
        if not any(isinstance(model, cap) for cap in self.requires):
            return False
        return ctx is None or self.available is None or self.available(model, ctx)


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


def _has_fixed_prior(model) -> bool:
    try:
        model.prior()
    except NotImplementedError:  # a hierarchical model's p(z_1) is a learned marginal
        return False
    return True


def _surgery_applies(model, ctx: EvalContext) -> bool:
    """A fixed prior, training points, and a diagonal-Gaussian q(z|x) (checked on one point)."""
    if not _has_fixed_prior(model):
        return False
    if ctx.train is None and not hasattr(ctx.dataset, "train_batch"):
        return False
    try:
        diagonal_gaussian(model.encode(ctx.data[:1]))
    except TypeError:
        return False
    return True


def _elbo_surgery(model, ctx: EvalContext) -> dict[str, float]:
    s = ctx.settings
    x = ctx.training_points(s.surgery_points)
    result = elbo_surgery(model, x, samples=s.surgery_samples, seed=s.seed)
    return {"surgery_avg_kl": result.terms.avg_kl, "surgery_mutual_info": result.terms.mutual_info,
            "surgery_marginal_kl": result.terms.marginal_kl, "surgery_train_elbo": result.elbo}


def representation_function(model, device: torch.device) -> Callable[[Tensor], Tensor]:
    """r(x): the model's ``represent`` where it has one, else its posterior mean E_q[z | x]."""
    if isinstance(model, Representation):
        return lambda x: model.represent(x.to(device))
    return lambda x: model.encode(x.to(device)).mean


def _ground_truth_given(model, ctx: EvalContext) -> bool:
    return isinstance(ctx.dataset, GroundTruthData)


def _disentanglement_metric(score, prefix: str):
    """A registry compute function around one score: fresh rng from the seed, flat keys."""

    def compute(model, ctx: EvalContext) -> dict[str, float]:
        rng = np.random.default_rng(ctx.settings.seed)
        device = ctx.data.device
        values = score(ctx.dataset, representation_function(model, device), rng,
                       ctx.settings.disentanglement(device))
        if "eval_accuracy" in values:
            return {prefix: values.pop("eval_accuracy"),
                    **{f"{prefix}_{key}": value for key, value in values.items()}}
        return values

    return compute


METRICS: Registry[MetricSpec] = Registry("metric")
for _spec in (
    MetricSpec("nll", "test NLL in nats (exact, or -L_k with k importance samples) and bits/dim",
               (ExactLikelihood, LatentVariableModel), _nll),
    MetricSpec("elbo", "test ELBO in nats (one posterior sample per point)",
               (LatentVariableModel,), _elbo),
    MetricSpec("active_units", "units with Cov_x(E_q[z_u]) > 0.01 (Burda et al.), per layer",
               (LatentVariableModel,), _active_units),
    MetricSpec("elbo_surgery", "training avg KL = index-code mutual information + marginal KL "
               "(Hoffman & Johnson), with the training ELBO", (LatentVariableModel,), _elbo_surgery,
               _surgery_applies),
    MetricSpec("beta_vae_score", "eval accuracy of Higgins et al.'s linear factor classifier",
               (Representation, LatentVariableModel),
               _disentanglement_metric(disentanglement.beta_vae_score, "beta_vae_score"),
               _ground_truth_given),
    MetricSpec("factor_vae_score", "eval accuracy of Kim & Mnih's majority-vote factor classifier",
               (Representation, LatentVariableModel),
               _disentanglement_metric(disentanglement.factor_vae_score, "factor_vae_score"),
               _ground_truth_given),
    MetricSpec("mig", "mutual information gap (Chen et al.), 20 bins per latent",
               (Representation, LatentVariableModel), _disentanglement_metric(disentanglement.mig, "mig"),
               _ground_truth_given),
    MetricSpec("sample_quality", "IS, FID, KID, precision/recall of samples (torch-fidelity) on a named "
               "feature net: LeNet for MNIST-like data, else Inception", (Sampler,), sample_quality_metrics,
               sample_quality_applies),
):
    METRICS.register(_spec.name, _spec)


@torch.no_grad()
def evaluate(model: nn.Module, data: Tensor, settings: EvalSettings, only: list[str] | None = None,
             train: Tensor | None = None, dataset: object | None = None,
             skipped: dict[str, str] | None = None) -> dict[str, float]:
    """Every applicable metric (or those named in ``only``) on ``data``.

    ``train`` (the training split as evaluated data) or ``dataset`` (read lazily) enable ELBO
    surgery; a ``dataset`` with known factors (GroundTruthData) enables the disentanglement
    scores. Without them those metrics are left out. A metric that applies but cannot be
    computed here (MetricSkipped) is left out with a warning, and its reason goes into
    ``skipped`` (metric name -> reason) for the caller to record.
    """
    model.eval()
    if settings.n_test is not None:
        data = data[: settings.n_test]
    dims = int(data[0].numel())
    ctx = EvalContext(data=data, dims=dims, settings=settings, train=train, dataset=dataset)
    values: dict[str, float] = {}
    for name in only or list(METRICS):
        spec = METRICS[name]
        if not spec.applies(model, ctx):
            continue
        try:
            values |= spec.compute(model, ctx)
        except MetricSkipped as exc:
            warnings.warn(f"{name} skipped: {exc}", stacklevel=2)
            if skipped is not None:
                skipped[name] = str(exc)
    return values
