"""Metrics as functions of (model, data): the public Python API.

- :func:`elbo`, :func:`iwae_bound`: per-example bounds ``[B]`` in nats (L_1 is the ELBO).
- :func:`nll`: test-set NLL in nats, -L_k (k = 5000 by default) or exact for models
  with ``log_prob``.
- :func:`bits_per_dim`, :func:`discrete_nll_from_density`: unit conventions.
- :func:`active_units`: Burda et al.'s count of units with Cov_x(E_q[z_u]) > threshold.
- :func:`ais`, :func:`bdmc`: AIS lower bounds on log p(x) for every decoder, and the BDMC sandwich.
- :func:`probability_flow_nll`, :func:`probability_flow_discrete_nll`: a diffusion model's likelihood
  through its probability-flow ODE; :func:`diffusion_bound`: its variational bound.
- :func:`evaluate`: every metric that applies to a model (registry in ``METRICS``).
"""

from genbench.metrics.ais import AISResult, ais  # the function shadows its module's name here
from genbench.metrics.bdmc import BDMCResult, bdmc
from genbench.metrics.diffusion_bound import DiffusionBound, diffusion_bound
from genbench.metrics.importance import Bounds, elbo, importance_bounds, iwae_bound, log_mean_exp
from genbench.metrics.latent import active_units, active_units_per_layer
from genbench.metrics.likelihood import (
    bits_per_dim,
    discrete_nll_from_density,
    nll,
    nll_per_example,
)
from genbench.metrics.probability_flow import (
    ProbabilityFlowNLL,
    probability_flow_discrete_nll,
    probability_flow_nll,
)
from genbench.metrics.registry import METRICS, EvalSettings, MetricSpec, evaluate

__all__ = [
    "AISResult", "BDMCResult", "METRICS", "Bounds", "EvalSettings", "MetricSpec", "active_units",
    "active_units_per_layer", "ais", "bdmc", "bits_per_dim", "discrete_nll_from_density", "elbo", "evaluate",
    "importance_bounds", "iwae_bound", "log_mean_exp", "nll", "nll_per_example",
    "DiffusionBound", "ProbabilityFlowNLL", "diffusion_bound", "probability_flow_discrete_nll",
    "probability_flow_nll",
]
