"""Columns that compare like with like: the AIS tightness rule, and densities kept out of the NLLs."""

from __future__ import annotations

import math

import pytest

from genbench.data.toy import make_toy
from genbench.metrics import METRICS, EvalSettings, evaluate
from genbench.metrics.comparable import AIS_DENSITY_NLL, AIS_LOOSE, DENSITY_NLL, ais_is_tight, comparable_view
from tests.helpers import fitted_ppca
from zoo import MODELS


# --- the AIS rule: AIS log p - L_k >= 0 within its s.e. ----------------------------------------------
@pytest.mark.parametrize(("gain", "se", "tight"), [
    (0.58, 0.18, True),  # clearly tighter than L_k
    (0.0, 0.5, True),  # as tight
    (-0.3, 0.4, True),  # looser by less than its s.e.: not shown to be looser
    (-0.4, 0.4, True),  # exactly one s.e. below: the boundary counts as tight
    (-0.41, 0.4, False),
    (-5.70, 1.58, False),  # the 2-layer VAE (k = 50) at the short budget
    (-13.49, 4.12, False),  # PPCA at the short budget: AIS far below its exact log p(x)
    (0.0, math.nan, True),  # one point: no s.e., the sign decides
    (-0.01, math.nan, False),
    (-0.01, None, False),
])
def test_ais_is_tight_when_its_paired_gain_over_l_k_is_not_negative_within_its_se(gain, se, tight):
    metrics = {"ais_nll": 100.0, "ais_minus_iwae": gain}
    if se is not None:
        metrics["ais_minus_iwae_se"] = se
    assert ais_is_tight(metrics) is tight


def test_ais_without_a_paired_l_k_is_never_tight():
    assert not ais_is_tight({"ais_nll": 4213.2, "ais_nll_se": 6.5})  # a generator: nothing to check against
    assert not ais_is_tight({"ais_nll": 100.0, "ais_minus_iwae": math.nan, "ais_minus_iwae_se": 0.1})


# --- the view a leaderboard row is shown through ------------------------------------------------------
BERNOULLI_VAE = {"nll": 99.9, "nll_se": 0.6, "bits_per_dim": 0.18, "bits_per_dim_se": 0.001,
                 "ais_nll": 99.3, "ais_nll_se": 5.0, "ais_bits_per_dim": 0.18, "ais_bits_per_dim_se": 0.01,
                 "ais_minus_iwae": 0.58, "ais_minus_iwae_se": 0.18}


def test_a_tight_bernoulli_vae_keeps_its_nll_and_ais_nll_columns():
    [view] = comparable_view([BERNOULLI_VAE])
    assert view == BERNOULLI_VAE


def test_a_loose_ais_nll_moves_to_the_diagnostic_column_with_its_se():
    loose = BERNOULLI_VAE | {"ais_minus_iwae": -5.70, "ais_minus_iwae_se": 1.58}
    [view] = comparable_view([loose])
    assert "ais_nll" not in view and "ais_nll_se" not in view
    assert view[AIS_LOOSE] == 99.3 and view[f"{AIS_LOOSE}_se"] == 5.0
    assert view["nll"] == 99.9  # the NLL column is untouched
    assert loose["ais_nll"] == 99.3  # the recorded metrics are not modified


def test_one_loose_seed_moves_the_whole_row():
    loose = BERNOULLI_VAE | {"ais_minus_iwae": -2.0, "ais_minus_iwae_se": 0.5}
    views = comparable_view([BERNOULLI_VAE, loose])
    assert all("ais_nll" not in view and AIS_LOOSE in view for view in views)


def test_a_density_keeps_its_own_keys_and_a_record_without_bits_per_dim_is_not_guessed_at():
    density = {DENSITY_NLL: -196.0, f"{DENSITY_NLL}_se": 1.0, AIS_DENSITY_NLL: -158.2,
               "ais_minus_iwae": -13.49, "ais_minus_iwae_se": 4.12}
    assert comparable_view([density]) == [density]
    external = {"nll": 95.0, "nll_se": 0.1}  # a hand-made or external record with no bits/dim
    assert comparable_view([external]) == [external]


def test_a_discrete_exact_model_whose_ais_is_off_is_not_shown_as_an_ais_nll():
    """A model whose L_k is its exact log p(x) (PPCA's posterior is exact) but with discrete pixels:
    AIS 13.5 nats below the exact value is a diagnostic of the annealing budget."""
    exact = BERNOULLI_VAE | {"ais_minus_iwae": -13.49, "ais_minus_iwae_se": 4.12}
    [view] = comparable_view([exact])
    assert "ais_nll" not in view and view[AIS_LOOSE] == 99.3 and view["nll"] == 99.9


def test_a_generators_ais_nll_is_a_diagnostic():
    [view] = comparable_view([{"ais_nll": 4213.2, "ais_nll_se": 6.5, "ais_bits_per_dim": 7.75}])
    assert view == {AIS_LOOSE: 4213.2, f"{AIS_LOOSE}_se": 6.5, "ais_bits_per_dim": 7.75}


# --- the metrics and their columns ------------------------------------------------------------------
def test_ppca_on_binary_pixels_records_a_density_nll_and_a_bernoulli_vae_an_nll():
    toy = make_toy(n_train=300, n_test=40)
    test = toy.eval_tensor("test")
    settings = EvalSettings(k=10)
    ppca = evaluate(fitted_ppca(toy.eval_tensor("train"), latent=3), test, settings, only=["nll"])
    assert set(ppca) == {DENSITY_NLL, f"{DENSITY_NLL}_se"}
    vae = evaluate(MODELS["vae"].build({"layers": 1}, test.shape[1:]), test, settings, only=["nll"])
    assert set(vae) == {"nll", "nll_se", "bits_per_dim", "bits_per_dim_se"} and vae["nll"] > 0


def test_only_discrete_likelihoods_have_an_arrow():
    """A column with a direction is ranked; the density NLLs and the loose AIS NLL have none."""
    nll, ais = METRICS["nll"], METRICS["ais"]
    assert nll.column_of("nll").better == "lower" and ais.column_of("ais_nll").better == "lower"
    for spec, key in ((nll, DENSITY_NLL), (ais, AIS_LOOSE), (ais, AIS_DENSITY_NLL)):
        column = spec.column_of(key)
        assert column.better is None and "↓" not in column.heading(), key
        assert spec.column_of(f"{key}_se") is not None
    assert ais.column_of(AIS_LOOSE).shown and nll.column_of(DENSITY_NLL).shown
