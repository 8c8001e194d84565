"""Every metric the harness computes: the capability it needs, the settings it reads and the
columns it writes.

``evaluate`` computes each metric whose capability the model implements (and whose data it
was given: training points for ELBO surgery, a ground-truth data set for disentanglement)
and leaves the others blank; nothing here looks at model names. ``EvalSettings`` is the one
table of evaluation defaults: budgets, suites and the CLI override its fields by name.

Each metric has one section below: its compute function and helpers, then its declaration
(``MetricSpec``, every field named), in the order the leaderboards show the metrics.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field, fields

import numpy as np
import torch
from torch import Tensor, nn

from genbench.core.distributed import global_mean_and_se, shard
from genbench.core.errors import MetricSkipped
from genbench.core.protocols import (
    DecoderModel,
    DeterministicDecoder,
    ExactLikelihood,
    LatentSimulator,
    LatentVariableModel,
    Representation,
    Sampler,
    log_prob_is_density,
)
from genbench.core.registry import Registry
from genbench.core.rng import seeded_rng
from genbench.data.base import MAX_LEVEL
from genbench.data.ground_truth import GroundTruthData
from genbench.metrics import disentanglement
from genbench.metrics.ais import GaussianObservation, ais, choose_observation_std, dequantize
from genbench.metrics.bdmc import bdmc
from genbench.metrics.columns import GROUP_NAMES, Column, EvalPoints, networks, with_errors
from genbench.metrics.comparable import AIS_DENSITY_NLL, AIS_LOOSE, DENSITY_NLL
from genbench.metrics.elbo_surgery import diagonal_gaussian, elbo_surgery
from genbench.metrics.importance import importance_bounds
from genbench.metrics.latent import BOOTSTRAP_RESAMPLES, active_units_with_std
from genbench.metrics.likelihood import bits_per_dim, discrete_nll_from_density, nll_and_se
from genbench.metrics.sample_quality import SampleCache, sample_quality_applies, sample_quality_metrics
from genbench.metrics.subsets import representative, subset_index


@dataclass(frozen=True)
class EvalSettings:
    """The evaluation half of a budget, and the one table of evaluation defaults.

    Each field has one name everywhere: in a suite's TOML budget, here, and as the CLI flag
    of ``genbench score`` (``k`` is ``--k``, ``n_test`` is ``--n-test``)."""

    k: int = 5000
    """Importance samples per test point for the NLL estimate."""
    n_test: int | None = None
    """Test points used (None: the whole split): a random subset seeded by ``points_seed``, the
    same points for every model and every seed (``genbench.metrics.subsets``)."""
    split: str = "test"
    active_threshold: float = 0.01
    seed: int = 0
    """Monte Carlo seed: the draws of importance samples, model samples and ELBO surgery's
    posterior samples (a run's is its own seed, so this noise is part of the seeds' spread)."""
    points_seed: int = 0
    """Evaluation points seed: which subsets of test, training, validation and reference points
    are used, and the factor draws of the disentanglement scores. A table's, never a run's: every
    seed of a row and every row of a table is scored on the same points (paired evaluation)."""
    surgery_points: int | None = 10_000
    """Training points (a seeded random subset) whose aggregate posterior ELBO surgery takes
    (None: the whole split). Its mutual information is at most log of this number."""
    surgery_samples: int = 1
    """Posterior samples per point; cost grows with points^2 x samples."""
    disentanglement_group_size: int = disentanglement.DisentanglementSettings.group_size
    """L: pairs per beta-VAE point, observations per FactorVAE point."""
    disentanglement_train: int = disentanglement.DisentanglementSettings.n_train
    """Training points of the beta-VAE and FactorVAE classifiers; also the observations behind
    FactorVAE's latent scales and MIG (10000 each in disentanglement_lib). The defaults of these
    three are the metric functions' own (``DisentanglementSettings``, disentanglement_lib's)."""
    disentanglement_eval: int = disentanglement.DisentanglementSettings.n_eval
    quality_samples: int = 0
    """Model samples that IS/FID/KID/precision-recall score (0: those metrics are skipped; the
    first use on a data set trains and caches its LeNet feature net, minutes on a CPU)."""
    quality_reference: int | None = 10_000
    """Real images they are compared with: a seeded random n of ``quality_split`` (None: all)."""
    quality_split: str = "test"
    curve_samples: int = 2_000
    """Samples behind the FID of each epoch in a GAN's learning curve (where quality_samples > 0)."""
    ais_steps: int = 0
    """Annealing steps of AIS (``genbench.metrics.ais``; 0: neither AIS nor BDMC is computed)."""
    ais_chains: int = 16
    """AIS chains per point: each point's estimate is the log of their mean weight."""
    ais_points: int | None = 100
    """Test points AIS scores: a seeded random subset of the evaluated ones (None: all of them)."""
    ais_sigma_points: int = 100
    """Validation points (a seeded random subset) on which a generator's observation std is chosen."""
    ais_bdmc_points: int = 0
    """Points simulated from the model whose BDMC bounds at AIS's steps and chains give its gap (0: none)."""
    features: str | None = None
    """Feature network: a name of ``genbench.metrics.features.FEATURE_NETS`` (lenet, inception, ...) or a
    TorchScript file (None: the data set's default)."""
    cache_root: str | None = None
    """Data folder whose genbench-cache/ keeps the LeNet and reference features (None: the default)."""
    memorization_train: int = 0
    """Training images (a seeded random subset) the copying tests (C_T, authenticity, nearest-neighbour
    distances: ``genbench.metrics.memorization``) compare the ``quality_samples`` samples with, the
    ``quality_reference`` held-out images of ``quality_split`` as their reference (0: no copying tests)."""
    nll_gap_points: int = 0
    """Points in each of two equal-size seeded random subsets, of the training and the test split, whose
    mean NLLs give the train-minus-test gap of a likelihood model (0: no gap)."""
    ode_points: int = 100
    """Test points (a seeded random subset of the evaluated ones) whose probability-flow ODE likelihood
    a diffusion model is scored on (0: none): one adaptive ODE solve per batch, about 100 evaluations
    of the network and as many backward passes (``genbench.metrics.probability_flow``)."""
    ode_tolerance: float = 1e-5
    """rtol = atol of that ODE solver (Song et al.'s 1e-5)."""
    bound_time_samples: int = 1
    """Steps (or times, in continuous time) drawn per test point for a diffusion model's variational
    bound; its s.e. over test points includes their noise (``genbench.metrics.diffusion_bound``)."""

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
    samples: SampleCache = field(default_factory=SampleCache, repr=False, compare=False)
    """The model's samples, drawn once for every metric that scores them."""

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
        index = subset_index(total, n, self.settings.points_seed)
        if self.train is not None:
            return self.train[index.to(self.train.device)]
        return self.dataset.train_batch(index.to(self.dataset.device))


@dataclass(frozen=True, kw_only=True)
class MetricSpec:
    name: str
    summary: str
    #: the model must implement at least one of these capabilities
    requires: tuple[type, ...]
    compute: Callable[[nn.Module, EvalContext], dict[str, float]]
    #: every key ``compute`` may return, with how tables show it
    columns: tuple[Column, ...]
    #: the EvalSettings fields it reads
    settings: tuple[str, ...] = ()
    #: beyond the capability: whether the context holds what the metric needs (default: yes)
    available: Callable[[nn.Module, EvalContext], bool] | None = None
    #: what a budget does for this metric, as a budget description says it (None: nothing to say)
    budget_text: Callable[[EvalSettings], str | None] | None = None
    #: how a paper table's footer says what its runs had: a template whose ``{field}`` are
    #: EvalSettings fields, or a function of them, given the values the runs recorded
    table_text: str | Callable[[dict[str, str]], str] | None = None
    #: the leaderboard table its columns go in (``genbench.metrics.columns.GROUPS``)
    group: str = "other"

    def __post_init__(self):
        unknown = set(self.settings) - {f.name for f in fields(EvalSettings)}
        if unknown:
            raise ValueError(f"metric {self.name!r} reads unknown settings {sorted(unknown)}")
        if self.group not in GROUP_NAMES:
            raise ValueError(f"metric {self.name!r}: group must be one of {', '.join(GROUP_NAMES)}")

    def applies(self, model: object, ctx: EvalContext | None = None) -> bool:
        if not any(isinstance(model, cap) for cap in self.requires):
            return False
        return ctx is None or self.available is None or self.available(model, ctx)

    def column_of(self, key: str) -> Column | None:
        """The declared column of ``key``: the most specific where several match (``is_lenet_std``
        is ``is_{net}_std``'s, not ``is_{net}``'s)."""
        matches = [(m.groupdict().get("net") or "", c) for c in self.columns
                   if (m := c.pattern().fullmatch(key))]
        if key in fixed_column_keys():  # another metric's own key is never a feature network's
            matches = [(net, c) for net, c in matches if not c.per_network]
        return min(matches, key=lambda nc: len(nc[0]))[1] if matches else None

    def check_keys(self, values: dict[str, float]) -> dict[str, float]:
        """``values`` unchanged, after checking each key is a declared column (an undeclared key
        would never reach a table: a programming error, not bad input)."""
        undeclared = [key for key in values if self.column_of(key) is None]
        if undeclared:
            raise AssertionError(f"metric {self.name!r} returned undeclared keys {undeclared}; "
                                 "declare them in its MetricSpec.columns")
        return values

METRICS: Registry[MetricSpec] = Registry("metric")


def fixed_column_keys() -> set[str]:
    """The keys metrics declare as columns of their own: never a feature network's value
    (``density_nll``, a density model's NLL, is not density/coverage's ``density_{net}`` of a
    network called ``nll``)."""
    return {c.key for spec in METRICS.in_order() for c in spec.columns if not c.per_network}


def per_network_keys(keys) -> set[str]:
    """``keys`` without those some metric declares as its own (what ``columns.networks`` may read)."""
    return set(keys) - fixed_column_keys()


def feature_networks(keys, group: str | None = None) -> list[str]:
    """The feature networks that metric ``keys`` (of one run or many) hold values of, sorted;
    only those of ``group``'s metrics (e.g. ``"sample_quality"``) where one is named."""
    keys = per_network_keys(keys)
    return sorted({net for spec in METRICS.in_order() if group in (None, spec.group)
                   for net in networks(spec.columns, keys)})


def _declare(spec: MetricSpec) -> MetricSpec:
    """Register a metric under its name. Tables show metrics in declaration order, so the
    sections below keep the order of the leaderboard's columns."""
    return METRICS.register(spec.name, spec)


#: the uncertainty of a mean over test points
SE_TEST = "s.e. over test points"
#: the test points every run of a table is scored on: ``n_test`` of the evaluated split (all: None)
TEST_POINTS = EvalPoints(counts=("n_test",), what="test points", split_setting="split")
#: the test points AIS scores: a seeded random ``ais_points`` of those
AIS_POINTS = EvalPoints(counts=("n_test", "ais_points"), what="AIS test points", split_setting="split")


# ---- nll: the test negative log-likelihood ------------------------------------------------------

def _nll(model, ctx: EvalContext) -> dict[str, float]:
    """-L_k or the exact -log p(x); a density's (``log_prob_is_density``) under ``density_nll``, away
    from the discrete likelihoods it would otherwise be ranked with (``genbench.metrics.comparable``)."""
    value, se = nll_and_se(model, ctx.data, k=ctx.settings.k)
    if log_prob_is_density(model):  # nats of a density on discrete data: bits/dim mean nothing
        return {DENSITY_NLL: value, f"{DENSITY_NLL}_se": se}
    return {"nll": value, "nll_se": se, "bits_per_dim": bits_per_dim(value, ctx.dims),
            "bits_per_dim_se": bits_per_dim(se, ctx.dims)}


def _test_points_text(values: dict[str, str]) -> str:
    """The paper-table footer of the NLL: k and which test points. A subset is drawn by the points
    seed alone (paired evaluation: every run of the table on the same points), never by a run's seed;
    records from before paired evaluation have no points seed and say only that it was seeded."""
    if values["n_test"] == "all":
        subset = ""
    elif values["points_seed"] == "all":  # not recorded
        subset = " (seeded random subsets)"
    else:
        subset = f" (a seeded random subset, points seed {values['points_seed']}, the same for every run)"
    return f"NLL with k = {values['k']} on {values['n_test']} test points{subset}"


_declare(MetricSpec(
    name="nll",
    summary="test NLL in nats (exact, or -L_k with k importance samples) and bits/dim; a density on "
            "discrete data (PPCA's) apart, as a density NLL",
    requires=(ExactLikelihood, LatentVariableModel),
    compute=_nll,
    columns=with_errors(
        Column(key="nll", label="NLL (nats)", unit="nats", digits=2, better="lower",
               error="nll_se", error_kind=SE_TEST, error_points=TEST_POINTS),
        Column(key="bits_per_dim", label="bits/dim", unit="bits", digits=3, better="lower",
               error="bits_per_dim_se", error_kind=SE_TEST, error_points=TEST_POINTS),
        Column(key=DENSITY_NLL, label="density NLL (nats), not a discrete likelihood", unit="nats", digits=2,
               error=f"{DENSITY_NLL}_se", error_kind=SE_TEST, error_points=TEST_POINTS)),
    settings=("k", "n_test", "seed", "points_seed"),
    table_text=_test_points_text,
    group="likelihood",
))


# ---- elbo: the test ELBO ------------------------------------------------------------------------

def _elbo(model, ctx: EvalContext) -> dict[str, float]:
    value, se = global_mean_and_se(importance_bounds(model, shard(ctx.data), k=1).elbo)
    return {"elbo": value, "elbo_se": se}


_declare(MetricSpec(
    name="elbo",
    summary="test ELBO in nats (one posterior sample per point)",
    requires=(LatentVariableModel,),
    compute=_elbo,
    columns=with_errors(
        Column(key="elbo", label="test ELBO (nats)", unit="nats", digits=2, better="higher",
               error="elbo_se", error_kind=SE_TEST, error_points=TEST_POINTS)),
    settings=("n_test",),
    group="likelihood",
))


# ---- active_units -------------------------------------------------------------------------------

def _active_units(model, ctx: EvalContext) -> dict[str, float]:
    per_layer, std = active_units_with_std(model, ctx.data, ctx.settings.active_threshold)
    out = {"active_units": float(sum(per_layer)), "active_units_std": std}
    if len(per_layer) > 1:
        out |= {f"active_units_l{i + 1}": float(n) for i, n in enumerate(per_layer)}
    return out


_declare(MetricSpec(
    name="active_units",
    summary="units with Cov_x(E_q[z_u]) > 0.01 (Burda et al.), per layer",
    requires=(LatentVariableModel,),
    compute=_active_units,
    columns=with_errors(
        Column(key="active_units", label="active units", unit="units", digits=0, layers="active_units_l",
               error="active_units_std",
               error_kind=f"std over {BOOTSTRAP_RESAMPLES} bootstrap resamples of the test points",
               error_points=TEST_POINTS)),
    settings=("n_test", "active_threshold"),
    group="likelihood",
))


# ---- elbo_surgery: avg KL = mutual information + marginal KL, on training points ---------------

_SE_SURGERY = "s.e. over the training points' posterior samples"
_SURGERY_POINTS = EvalPoints(counts=("surgery_points",), what="training points", split="train")


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
    terms = result.terms
    return {"surgery_avg_kl": terms.avg_kl, "surgery_avg_kl_se": terms.avg_kl_stderr,
            "surgery_mutual_info": terms.mutual_info, "surgery_mutual_info_se": terms.mutual_info_stderr,
            "surgery_marginal_kl": terms.marginal_kl, "surgery_marginal_kl_se": terms.marginal_kl_stderr,
            "surgery_train_elbo": result.elbo}


def _surgery_budget_text(s: EvalSettings) -> str:
    return f"ELBO surgery over {s.surgery_points} training points"


_declare(MetricSpec(
    name="elbo_surgery",
    summary="training avg KL = index-code mutual information + marginal KL (Hoffman & Johnson), "
            "with the training ELBO",
    requires=(LatentVariableModel,),
    compute=_elbo_surgery,
    columns=(
        *with_errors(
            Column(key="surgery_avg_kl", label="avg KL (train)", unit="nats", digits=2,
                   error="surgery_avg_kl_se", error_kind=_SE_SURGERY,
                   error_points=_SURGERY_POINTS),
            Column(key="surgery_mutual_info", label="mutual info", unit="nats", digits=2,
                   error="surgery_mutual_info_se", error_kind=_SE_SURGERY,
                   error_points=_SURGERY_POINTS),
            Column(key="surgery_marginal_kl", label="marginal KL", unit="nats", digits=2, better="lower",
                   error="surgery_marginal_kl_se", error_kind=_SE_SURGERY,
                   error_points=_SURGERY_POINTS)),
        Column(key="surgery_train_elbo", label="train ELBO (nats)", unit="nats", digits=2, better="higher",
               shown=False)),
    settings=("seed", "surgery_points", "surgery_samples"),
    available=_surgery_applies,
    budget_text=_surgery_budget_text,
    table_text="ELBO surgery over {surgery_points} training points",
    group="latent",
))


# ---- beta_vae_score, factor_vae_score, mig: disentanglement on data with known factors ----------

_SE_ACCURACY = "binomial s.e. of the evaluation accuracy"
#: drawn from the factors (a distribution, not a split) by the table's points seed
_EVALUATION_FACTORS = EvalPoints(counts=("disentanglement_eval",), what="evaluation points", finite=False)
_OBSERVATIONS = EvalPoints(counts=("disentanglement_train",), what="observations", finite=False)


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
        rng = np.random.default_rng(ctx.settings.points_seed)
        device = ctx.data.device
        values = score(ctx.dataset, representation_function(model, device), rng,
                       ctx.settings.disentanglement(device))
        if "eval_accuracy" in values:
            return {prefix: values.pop("eval_accuracy"), f"{prefix}_se": values.pop("eval_accuracy_se"),
                    **{f"{prefix}_{key}": value for key, value in values.items()}}
        return values

    return compute


def _disentanglement_budget_text(s: EvalSettings) -> str:
    return (f"disentanglement classifiers on {s.disentanglement_train} training / "
            f"{s.disentanglement_eval} evaluation points")


def _accuracy_columns(key: str, label: str) -> tuple[Column, ...]:
    """A classifier score (shown in %) and its training accuracy (stored only)."""
    return (*with_errors(Column(key=key, label=label, unit="%", digits=1, better="higher", scale=100,
                                error=f"{key}_se", error_kind=_SE_ACCURACY,
                                error_points=_EVALUATION_FACTORS)),
            Column(key=f"{key}_train_accuracy", label=f"{label} train accuracy", unit="%", digits=1,
                   better="higher", scale=100, shown=False))


#: what the three disentanglement scores declare alike
_DISENTANGLEMENT = dict(
    requires=(Representation, LatentVariableModel),
    settings=("seed", "disentanglement_group_size", "disentanglement_train", "disentanglement_eval"),
    available=_ground_truth_given,
    budget_text=_disentanglement_budget_text,
    table_text="classifiers on {disentanglement_train} training and {disentanglement_eval} evaluation points",
    group="latent",
)

_declare(MetricSpec(
    name="beta_vae_score",
    summary="eval accuracy of Higgins et al.'s linear factor classifier",
    compute=_disentanglement_metric(disentanglement.beta_vae_score, "beta_vae_score"),
    columns=_accuracy_columns("beta_vae_score", "beta-VAE score (%)"),
    **_DISENTANGLEMENT,
))
_declare(MetricSpec(
    name="factor_vae_score",
    summary="eval accuracy of Kim & Mnih's majority-vote factor classifier",
    compute=_disentanglement_metric(disentanglement.factor_vae_score, "factor_vae_score"),
    columns=(*_accuracy_columns("factor_vae_score", "FactorVAE score (%)"),
             Column(key="factor_vae_score_active_dims", label="FactorVAE active dimensions", digits=0,
                    shown=False)),
    **_DISENTANGLEMENT,
))
_declare(MetricSpec(
    name="mig",
    summary="mutual information gap as disentanglement_lib bins it (a variant of Chen et al.'s), "
            "20 bins per latent",
    compute=_disentanglement_metric(disentanglement.mig, "mig"),
    columns=with_errors(
        Column(key="mig", label="MIG", digits=3, better="higher", error="mig_std",
               error_kind=f"std over {disentanglement.MIG_RESAMPLES} bootstrap resamples "
                          "of the observations", error_points=_OBSERVATIONS)),
    **_DISENTANGLEMENT,
))


# ---- sample_quality: IS, FID, KID, FD-infinity, precision/recall, density/coverage -------------

#: precision and density average over the samples (each run's own), recall and coverage over the
#: reference images (the same for every seed), the other set's neighbourhoods held fixed
_SE_OVER_SAMPLES = "s.e. over the samples, the real images' neighbourhoods fixed"
_SE_OVER_REFERENCE = "s.e. over the reference images, the samples' neighbourhoods fixed"
_REFERENCE = EvalPoints(counts=("quality_reference",), what="reference images", split_setting="quality_split")


def _quality_budget_text(s: EvalSettings) -> str | None:
    if not s.quality_samples:
        return None
    reference = ("all" if s.quality_reference is None
                 else f"{s.quality_reference} (a seeded random subset where fewer)")
    return (f"IS/FID/KID/precision-recall, FD-infinity and density/coverage of {s.quality_samples} samples "
            f"against {reference} {s.quality_split} images")


_declare(MetricSpec(
    name="sample_quality",
    summary="IS, FID, KID, precision/recall of samples (torch-fidelity), FD-infinity (Chong & Forsyth) "
            "and density/coverage (Naeem et al.) on a named feature net: LeNet for MNIST-like data, "
            "else Inception",
    requires=(Sampler,),
    compute=sample_quality_metrics,
    columns=with_errors(
        Column(key="is_{net}", label="IS-{net}", digits=2, better="higher",
               error="is_{net}_std", error_kind="std over 10 splits of the samples"),
        Column(key="fid_{net}", label="FID-{net}", digits=2, better="lower",
               error="fid_{net}_se", error_kind="s.e. over samples (delta method)"),
        Column(key="fdinf_{net}", label="FD∞-{net}", digits=2, better="lower",
               error="fdinf_{net}_se", error_kind="s.e. of the extrapolation (Chong & Forsyth)"),
        Column(key="kid_{net}", label="KID-{net}", digits=3, better="lower",
               error="kid_{net}_std", error_kind="std over 100 subsets"),
        *(Column(key=f"{key}_{{net}}", label=f"{key}-{{net}}", digits=3, better="higher",
                 error=f"{key}_{{net}}_se", error_kind=kind, error_points=points)
          for key, kind, points in (("precision", _SE_OVER_SAMPLES, None),
                                    ("recall", _SE_OVER_REFERENCE, _REFERENCE),
                                    ("density", _SE_OVER_SAMPLES, None),
                                    ("coverage", _SE_OVER_REFERENCE, _REFERENCE)))),
    settings=("seed", "quality_samples", "quality_reference", "quality_split", "features", "cache_root"),
    available=sample_quality_applies,
    budget_text=_quality_budget_text,
    group="sample_quality",
))


# ---- ais: annealed importance sampling, and the BDMC gap --------------------------------------

_SE_SIMULATED = "s.e. over the points simulated from the model"
_SE_PAIRED = "s.e. of the paired difference over the AIS test points"


def _validation_points(ctx: EvalContext, n: int) -> Tensor | None:
    """n points of the data set's validation split, else of its training split (seeded random subsets)."""
    splits = getattr(ctx.dataset, "splits", {})
    if "valid" in splits:
        valid = representative(ctx.dataset.eval_tensor("valid"), n, ctx.settings.points_seed)
        return valid.to(ctx.data.device)
    points = ctx.training_points(n)
    return None if points is None else points.to(ctx.data.device)


def _levels(ctx: EvalContext) -> int:
    """Values per pixel of the data: the data set's kind, else 2 for 0/1 data and 256 otherwise."""
    kind = getattr(ctx.dataset, "kind", None)
    if kind in MAX_LEVEL:
        return MAX_LEVEL[kind] + 1
    return 2 if bool(((ctx.data == 0) | (ctx.data == 1)).all()) else 256


def _ais_applies(model, ctx: EvalContext) -> bool:
    """AIS steps in the budget; a generator also needs validation data to choose its observation std."""
    if ctx.settings.ais_steps < 1:
        return False
    return isinstance(model, DecoderModel) or ctx.train is not None or hasattr(ctx.dataset, "train_batch")


def _ais(model, ctx: EvalContext) -> dict[str, float]:
    """AIS NLL of a decoder on a seeded random ``ais_points`` of the test points (a density's, such as
    PPCA's, under ``ais_density_nll``); a generator's on its dequantised pixels under the observation
    std its validation points chose, as a discrete NLL; for a latent-variable model, AIS log p - L_k
    on the same points, which decides whether the AIS NLL ranks with the NLLs
    (``genbench.metrics.comparable.ais_is_tight``); with ``ais_bdmc_points``, the BDMC bounds and gap
    on as many points simulated from the decoder."""
    s = ctx.settings
    x = shard(representative(ctx.data, s.ais_points, s.points_seed))
    out: dict[str, float] = {}
    if isinstance(model, DecoderModel):
        decoder, offset, density = model, 0.0, log_prob_is_density(model)
    else:  # a generator: a Gaussian observation model on dequantised pixels (Wu et al. 2017)
        levels = _levels(ctx)
        valid = dequantize(_validation_points(ctx, s.ais_sigma_points), levels)
        choice = choose_observation_std(model, valid, s.ais_steps, s.ais_chains)
        decoder, x = GaussianObservation(model, choice.std), dequantize(x, levels)
        offset, density = float(discrete_nll_from_density(0.0, ctx.dims, levels)), False
        out["ais_observation_std"] = choice.std
    result = ais(decoder, x, s.ais_steps, s.ais_chains)
    value, se = global_mean_and_se(offset - result.log_p)
    key = AIS_DENSITY_NLL if density else "ais_nll"  # a density's nats are not a discrete likelihood's
    out |= {key: value, f"{key}_se": se, "ais_acceptance": float(result.acceptance.mean()),
            "ais_chain_se": float(result.se.square().sum().sqrt() / len(result.se))}
    if isinstance(model, LatentVariableModel):  # how much tighter than -L_k, on the same points
        with torch.no_grad():
            iwae = importance_bounds(model, x, k=s.k).iwae
        gain, gain_se = global_mean_and_se(result.log_p.to(iwae.dtype) - iwae)
        out |= {"ais_minus_iwae": gain, "ais_minus_iwae_se": gain_se}
    if not density:
        out |= {"ais_bits_per_dim": bits_per_dim(value, ctx.dims),
                "ais_bits_per_dim_se": bits_per_dim(se, ctx.dims)}
    if s.ais_bdmc_points and isinstance(decoder, LatentSimulator):
        sandwich = bdmc(decoder, s.ais_bdmc_points, s.ais_steps, s.ais_chains, device=ctx.data.device)
        gap, gap_se = global_mean_and_se(sandwich.gap)
        out |= {"bdmc_gap": gap, "bdmc_gap_se": gap_se, "bdmc_lower": float(sandwich.lower.mean()),
                "bdmc_upper": float(sandwich.upper.mean())}
    return out


def _ais_budget_text(s: EvalSettings) -> str | None:
    if s.ais_steps < 1:
        return None
    points = "all" if s.ais_points is None else f"a seeded random {s.ais_points}"
    bdmc_text = (f"; BDMC gap at these settings (column BDMC gap) on {s.ais_bdmc_points} points simulated "
                 "from each model" if s.ais_bdmc_points else "")
    return (f"AIS NLL on {points} of the test points: {s.ais_steps} annealing steps (sigmoidal), "
            f"{s.ais_chains} HMC chains of 10 leapfrog steps{bdmc_text}; a generator's Gaussian observation "
            f"std chosen on {s.ais_sigma_points} validation points, its NLL on dequantised pixels + D ln L "
            "(L = 256 levels of 8-bit data)")


def _ais_table_text(values: dict[str, str]) -> str:
    if values["ais_steps"] in ("0", ""):
        return "no AIS"
    bdmc_text = ("" if values["ais_bdmc_points"] == "0"
                 else f", BDMC on {values['ais_bdmc_points']} simulated points")
    return (f"AIS with {values['ais_steps']} steps and {values['ais_chains']} chains on "
            f"{values['ais_points']} test points{bdmc_text}")


_declare(MetricSpec(
    name="ais",
    summary="AIS NLL (Wu et al. 2017): HMC from the prior to the posterior on a sigmoidal schedule, for "
            "every decoder (a generator under a Gaussian observation model); with BDMC points, the gap "
            "between forward and reverse AIS on data simulated from the model (Grosse et al.)",
    requires=(DecoderModel, DeterministicDecoder),
    compute=_ais,
    columns=(
        *with_errors(
            Column(key="ais_nll", label="AIS NLL (nats)", unit="nats", digits=2, better="lower",
                   error="ais_nll_se", error_kind=SE_TEST, error_points=AIS_POINTS),
            Column(key=AIS_LOOSE, label="AIS NLL (nats), diagnostic: not shown as tight as L_k", unit="nats",
                   digits=2,
                   error=f"{AIS_LOOSE}_se", error_kind=SE_TEST,
                   error_points=AIS_POINTS),
            Column(key=AIS_DENSITY_NLL, label="AIS density NLL (nats), not a discrete likelihood",
                   unit="nats", digits=2, shown=False, error=f"{AIS_DENSITY_NLL}_se", error_kind=SE_TEST,
                   error_points=AIS_POINTS),
            Column(key="ais_bits_per_dim", label="AIS bits/dim", unit="bits", digits=3, better="lower",
                   shown=False, error="ais_bits_per_dim_se", error_kind=SE_TEST, error_points=AIS_POINTS),
            Column(key="ais_minus_iwae", label="AIS log p - L_k, same points (nats)", unit="nats", digits=2,
                   error="ais_minus_iwae_se", error_kind=_SE_PAIRED,
                   error_points=AIS_POINTS),
            Column(key="bdmc_gap", label="BDMC gap (nats)", unit="nats", digits=2,
                   error="bdmc_gap_se", error_kind=_SE_SIMULATED)),
        Column(key="ais_chain_se", label="AIS NLL s.e. over chains (delta method)", unit="nats", digits=3,
               shown=False),
        Column(key="ais_acceptance", label="AIS HMC acceptance", digits=3, shown=False),
        Column(key="ais_observation_std", label="generator observation std", digits=3, shown=False),
        Column(key="bdmc_lower", label="BDMC lower bound, simulated log p(x)", unit="nats", digits=2,
               shown=False),
        Column(key="bdmc_upper", label="BDMC upper bound, simulated log p(x)", unit="nats", digits=2,
               shown=False)),
    settings=("seed", "k", "ais_steps", "ais_chains", "ais_points", "ais_sigma_points", "ais_bdmc_points"),
    available=_ais_applies,
    budget_text=_ais_budget_text,
    table_text=_ais_table_text,
    group="likelihood",
))


@contextmanager
def seeded(seed: int, metric: str, device: torch.device):
    """The RNG of one metric: seeded by (evaluation seed, metric name), so a metric's value does not
    depend on which other metrics ran before it (``genbench compare`` and ``score`` reproduce a run's
    NLL exactly), and the caller's RNG state is left as it was."""
    with seeded_rng((seed * 1_000_003 + zlib.crc32(metric.encode())) % (2**63 - 1), device):
        yield


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
    data = representative(data, settings.n_test, settings.points_seed)  # the table's points, never a prefix
    dims = int(data[0].numel())
    ctx = EvalContext(data=data, dims=dims, settings=settings, train=train, dataset=dataset)
    values: dict[str, float] = {}
    for name in only or list(METRICS):
        spec = METRICS[name]
        if not spec.applies(model, ctx):
            continue
        try:
            with seeded(settings.seed, name, data.device):
                values |= spec.check_keys(spec.compute(model, ctx))
        except MetricSkipped as exc:
            warnings.warn(f"{name} skipped: {exc}", stacklevel=2)
            if skipped is not None:
                skipped[name] = str(exc)
    return values


# ---- copying and nll_gap: memorization and generalization (genbench.metrics.memorization) --------

from genbench.metrics.memorization import (  # noqa: E402 (this section's own, kept in one block)
    copying_applies,
    copying_metrics,
    nll_gap,
    nll_gap_applies,
)

_COPYING_REFERENCE = EvalPoints(counts=("quality_reference",), what="held-out reference images",
                                split_setting="quality_split")


def _copying_budget_text(s: EvalSettings) -> str | None:
    if not (s.quality_samples and s.memorization_train):
        return None
    reference = "all" if s.quality_reference is None else f"{s.quality_reference}"
    return (f"copying tests (C_T, authenticity, nearest-neighbour distances) of the {s.quality_samples} "
            f"samples against a seeded random {s.memorization_train} training images, {reference} held-out "
            f"{s.quality_split} images as the reference")


_declare(MetricSpec(
    name="copying",
    summary="data-copying tests in the sample-quality network's features: C_T (Meehan et al. 2020), "
            "authenticity (Alaa et al. 2022) and the copied fraction it implies, nearest-training-"
            "neighbour distances against held-out images'",
    requires=(Sampler,),
    compute=copying_metrics,
    columns=(
        Column(key="ct_{net}", label="C_T-{net}", digits=2),
        Column(key="ct_{net}_cells", label="C_T-{net} cells used", digits=0, shown=False),
        *with_errors(
            Column(key="copied_{net}", label="copied fraction-{net}", digits=3, better="lower",
                   error="copied_{net}_se", error_kind="s.e. by the delta method over the samples' and "
                   "the reference images' unauthentic rates"),
            Column(key="authenticity_{net}", label="authenticity-{net}", digits=3,
                   error="authenticity_{net}_se", error_kind="binomial s.e. over the samples")),
        Column(key="authenticity_test_{net}", label="authenticity of held-out images-{net}", digits=3),
        Column(key="nn_ratio_{net}", label="NN distance ratio-{net}", digits=3),
        Column(key="nn_train_{net}", label="median NN training distance-{net}", digits=3, shown=False)),
    settings=("seed", "points_seed", "quality_samples", "quality_reference", "quality_split", "features",
              "cache_root", "memorization_train"),
    available=copying_applies,
    budget_text=_copying_budget_text,
    table_text="copying tests against {memorization_train} training images, {quality_reference} held-out "
               "{quality_split} images",
    group="copying",
))

_declare(MetricSpec(
    name="nll_gap",
    summary="train-minus-test NLL on equal-size seeded random subsets (at the budget's k): a likelihood "
            "model's own overfitting signal, below 0 where training points are likelier",
    requires=(ExactLikelihood, LatentVariableModel),
    compute=nll_gap,
    columns=(
        *with_errors(
            Column(key="nll_gap", label="NLL train - test (nats)", unit="nats", digits=2,
                   error="nll_gap_se", error_kind="s.e. of a difference of means over independent subsets",
                   error_points=EvalPoints(counts=("nll_gap_points",), what="training and test points"))),
        Column(key="nll_gap_train", label="NLL of the gap's training points (nats)", unit="nats", digits=2,
               shown=False),
        Column(key="nll_gap_test", label="NLL of the gap's test points (nats)", unit="nats", digits=2,
               shown=False),
        Column(key="nll_gap_points", label="points per subset of the NLL gap", digits=0, shown=False)),
    settings=("k", "seed", "points_seed", "nll_gap_points"),
    available=nll_gap_applies,
    budget_text=lambda s: (f"train-minus-test NLL on {s.nll_gap_points} points of each split"
                           if s.nll_gap_points else None),
    group="copying",
))


# ---- diffusion_ode, diffusion_bound, diffusion_sampler: the diffusion family ------------------------

from genbench.core.protocols import DiffusionDecoder, DiffusionModel, data_interval  # noqa: E402
from genbench.metrics.diffusion_bound import diffusion_bound  # noqa: E402
from genbench.metrics.probability_flow import probability_flow_discrete_nll  # noqa: E402

#: the test points the probability-flow likelihood scores: a seeded random ``ode_points`` of those
ODE_POINTS = EvalPoints(counts=("n_test", "ode_points"), what="ODE test points", split_setting="split")
#: points per batch of a diffusion model's bound (Kingma et al.'s decoder holds [B, D, 256] values)
BOUND_BATCH = 100


def _diffusion_ode(model, ctx: EvalContext) -> dict[str, float]:
    """The dequantisation bound on -log P(pixels) through the probability-flow ODE (realnvp's
    convention: a uniform model is 8 bits/dim), on a seeded random ``ode_points`` of the test points."""
    s = ctx.settings
    x = shard(representative(ctx.data, s.ode_points, s.points_seed))
    result = probability_flow_discrete_nll(model, x, levels=_levels(ctx), rtol=s.ode_tolerance,
                                           atol=s.ode_tolerance)
    value, se = global_mean_and_se(result.nll)
    return {"ode_nll": value, "ode_nll_se": se, "ode_bits_per_dim": bits_per_dim(value, ctx.dims),
            "ode_bits_per_dim_se": bits_per_dim(se, ctx.dims), "ode_nfe": result.nfe_per_batch}


_declare(MetricSpec(
    name="diffusion_ode",
    summary="a diffusion model's NLL through its probability-flow ODE (Song et al. 2021) on dequantised "
            "pixels, bits/dim as realnvp's; the solver's mean evaluations per batch",
    requires=(DiffusionModel,),
    compute=_diffusion_ode,
    columns=(
        *with_errors(
            Column(key="ode_nll", label="ODE NLL (nats)", unit="nats", digits=2, better="lower",
                   error="ode_nll_se", error_kind=SE_TEST, error_points=ODE_POINTS),
            Column(key="ode_bits_per_dim", label="ODE bits/dim", unit="bits", digits=3, better="lower",
                   error="ode_bits_per_dim_se", error_kind=SE_TEST, error_points=ODE_POINTS)),
        Column(key="ode_nfe", label="ODE evaluations per solve", digits=0)),
    settings=("seed", "points_seed", "ode_points", "ode_tolerance"),
    available=lambda model, ctx: ctx.settings.ode_points > 0,
    budget_text=lambda s: (f"probability-flow ODE likelihood (dopri5, rtol = atol = {s.ode_tolerance:g}) on "
                           f"a seeded random {s.ode_points} of the test points" if s.ode_points else None),
    table_text="ODE NLL on {ode_points} test points, rtol = atol = {ode_tolerance}",
    group="likelihood",
))


@torch.no_grad()
def _diffusion_bound(model, ctx: EvalContext) -> dict[str, float]:
    """-ELBO on the model's own time grid (``time_steps``; continuous time without), its decoder's
    probability of the data's levels at the end: a bound on the discrete NLL."""
    lo, hi = data_interval(model)
    steps = getattr(model, "time_steps", None)
    parts = []
    for batch in shard(ctx.data).split(BOUND_BATCH):
        bound = diffusion_bound(model, lo + (hi - lo) * batch, steps=steps,
                                time_samples=ctx.settings.bound_time_samples)
        parts.append(torch.stack([bound.total, bound.prior, bound.diffusion, bound.reconstruction]))
    total, prior, diffusion, reconstruction = torch.cat(parts, dim=1)
    value, se = global_mean_and_se(total)
    return {"bound_nll": value, "bound_nll_se": se, "bound_bits_per_dim": bits_per_dim(value, ctx.dims),
            "bound_bits_per_dim_se": bits_per_dim(se, ctx.dims),
            "bound_prior": global_mean_and_se(prior)[0], "bound_diffusion": global_mean_and_se(diffusion)[0],
            "bound_reconstruction": global_mean_and_se(reconstruction)[0], "bound_steps": float(steps or 0)}


_declare(MetricSpec(
    name="diffusion_bound",
    summary="a diffusion model's variational bound with its decoder (Ho et al.'s L_vlb on its steps, "
            "Kingma et al.'s continuous-time bound) in nats and bits/dim, and its prior, diffusion and "
            "decoder terms",
    requires=(DiffusionDecoder,),
    compute=_diffusion_bound,
    columns=(
        *with_errors(
            Column(key="bound_nll", label="diffusion bound (nats)", unit="nats", digits=2, better="lower",
                   error="bound_nll_se", error_kind=SE_TEST, error_points=TEST_POINTS),
            Column(key="bound_bits_per_dim", label="bound bits/dim", unit="bits", digits=3, better="lower",
                   error="bound_bits_per_dim_se", error_kind=SE_TEST, error_points=TEST_POINTS)),
        Column(key="bound_prior", label="bound: prior term (nats)", unit="nats", digits=3, shown=False),
        Column(key="bound_diffusion", label="bound: diffusion term (nats)", unit="nats", digits=2,
               shown=False),
        Column(key="bound_reconstruction", label="bound: decoder term (nats)", unit="nats", digits=2,
               shown=False),
        Column(key="bound_steps", label="bound time steps (0: continuous)", digits=0, shown=False)),
    settings=("seed", "n_test", "bound_time_samples"),
    available=lambda model, ctx: isinstance(model, DiffusionModel),
    group="likelihood",
))


def _diffusion_sampler(model, ctx: EvalContext) -> dict[str, float]:
    """The network evaluations one sample costs (the model's ``sample_steps``), beside its sample quality."""
    return {"sample_steps": float(model.sample_steps)}


_declare(MetricSpec(
    name="diffusion_sampler",
    summary="a diffusion model's sampler cost: network evaluations per sample (its sample_steps)",
    requires=(DiffusionModel,),
    compute=_diffusion_sampler,
    columns=(Column(key="sample_steps", label="sampler steps", digits=0),),
    available=lambda model, ctx: isinstance(model, Sampler) and hasattr(model, "sample_steps"),
    group="sample_quality",
))
