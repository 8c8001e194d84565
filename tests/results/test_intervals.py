"""A table cell's interval: the mean over seeds ± the standard error of that mean, with the error of
the evaluation points every seed shares, and the cells, legends and tables made from it."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import t as student

from genbench.metrics.columns import Column, EvalPoints
from genbench.results.aggregate import cell, seed_cell
from genbench.results.db import ResultsDB
from genbench.results.intervals import (
    apportion,
    finite_population_correction,
    half_widths,
    mean_error,
    mean_errors,
    welch_satterthwaite,
)
from genbench.results.leaderboard import render_leaderboard
from genbench.results.paper_tables import render_paper_table
from genbench.suites import SUITES
from tests.results.test_results import spec, tables_of

TABLES = 2000
LEVEL = 0.95


def simulated_tables(seeds: int, n: int, total: int, training: float, seed: int):
    """``TABLES`` tables of one row of ``seeds`` seeds, scored on one shared random subset of ``n`` of
    a test set of ``total`` points whose mean is the truth: each seed shifts every point by its own
    training noise (sd ``training``) and adds Monte Carlo noise to each point. The truth, each seed's
    value and its own s.e. over the points."""
    rng = np.random.default_rng(seed)
    population = 100.0 + rng.standard_normal(total)
    subsets = np.argsort(rng.random((TABLES, total)), axis=1)[:, :n]  # one subset per table, all seeds
    per_point = (population[subsets][:, None, :] + training * rng.standard_normal((TABLES, seeds, 1))
                 + 0.5 * rng.standard_normal((TABLES, seeds, n)))
    return population.mean(), per_point.mean(axis=2), per_point.std(axis=2, ddof=1) / math.sqrt(n)


def coverage(seeds: int, n: int, total: int, training: float, seed: int = 0, shared: bool = True) -> float:
    """How often the 95% interval of ``simulated_tables`` covers the test set's mean."""
    truth, values, errors = simulated_tables(seeds, n, total, training, seed)
    correction = finite_population_correction(None if n >= total else n, total)
    common = errors.mean(axis=1) * correction if shared else 0.0
    mean, se, df = mean_errors(values, common, n)
    return float(np.mean(np.abs(mean - truth) <= half_widths(se, df, LEVEL)))


@pytest.mark.parametrize(("seeds", "training"), [
    (3, 0.02),  # the shared points dominate
    (3, 0.05),  # both about equal
    (3, 0.2),  # training dominates: few degrees of freedom, Welch-Satterthwaite's worst case
    (5, 0.05),
    (10, 0.01),
])
def test_the_95_percent_interval_covers_the_test_set_mean_where_both_noises_are_present(seeds, training):
    assert coverage(seeds, 500, 2000, training) == pytest.approx(LEVEL, abs=0.035)


def test_without_the_shared_points_error_the_interval_is_too_narrow():
    """The seeds' spread misses the error of the points they share: more seeds, worse coverage."""
    assert coverage(3, 500, 2000, 0.02, shared=False) < 0.85
    assert coverage(10, 200, 2000, 0.01, shared=False) < 0.5
    assert coverage(10, 200, 2000, 0.01) == pytest.approx(LEVEL, abs=0.035)


def test_scoring_all_points_makes_the_shared_error_vanish():
    assert finite_population_correction(None, 10000) == 0.0  # all points
    assert finite_population_correction(10000, 10000) == 0.0
    assert finite_population_correction(2500, 10000) == pytest.approx(math.sqrt(0.75))
    assert finite_population_correction(1000, None) == 1.0  # of an unknown split: no correction
    truth, values, errors = simulated_tables(3, 400, 400, 0.05, seed=3)
    mean, se, df = mean_errors(values, errors.mean(axis=1) * finite_population_correction(None, 400), 400)
    assert np.allclose(se, values.std(axis=1, ddof=1) / math.sqrt(3)) and np.all(df == 2)
    assert np.mean(np.abs(mean - truth) <= half_widths(se, df)) == pytest.approx(LEVEL, abs=0.035)


def test_the_interval_takes_student_t_at_the_welch_satterthwaite_degrees_of_freedom():
    only_seeds = mean_error([1.0, 2.0, 4.0])
    assert only_seeds.df == 2 and only_seeds.se == pytest.approx(np.std([1, 2, 4], ddof=1) / math.sqrt(3))
    assert only_seeds.half_width() == pytest.approx(student.ppf(0.975, 2) * only_seeds.se)
    both = mean_error([1.0, 2.0, 4.0], shared=0.5, shared_points=100)
    a, b = np.var([1, 2, 4], ddof=1) / 3, 0.25
    assert both.se == pytest.approx(math.sqrt(a + b))
    assert both.df == pytest.approx((a + b) ** 2 / (a * a / 2 + b * b / 99))
    assert float(welch_satterthwaite([(0.0, 2), (0.0, 99)])) == math.inf
    assert mean_error([3.0, 3.0, 3.0]).half_width() == 0.0


# --- cells from records -----------------------------------------------------------------------

NLL = Column(key="nll", label="NLL", digits=2, error="nll_se", error_kind="s.e. over test points",
             error_points=EvalPoints(counts=("n_test",), what="test points", split_setting="split"))
FID = Column(key="fid_lenet", label="FID", digits=2, error="fid_lenet_se", error_kind="s.e. over samples")


def record(seed: int, metrics: dict, dataset: str = "mnist", **evaluation) -> dict:
    settings = {"k": 1000, "n_test": 1000, "split": "test", "seed": seed, "points_seed": 0, **evaluation}
    return {"seed": seed, "dataset": dataset, "eval": settings, "metrics": metrics}


def test_a_cell_adds_the_shared_points_error_of_its_subset_to_the_seeds_spread():
    values, errors = [100.0, 101.0, 103.0], [0.6, 0.5, 0.4]
    runs = [record(s, {"nll": v, "nll_se": e}) for s, (v, e) in enumerate(zip(values, errors, strict=True))]
    spread = np.var(values, ddof=1) / 3
    shared = 0.5 * math.sqrt(1 - 1000 / 10000)  # 1000 of mnist's 10000 test points
    assert seed_cell(runs, NLL).interval.se == pytest.approx(math.sqrt(spread + shared ** 2))
    assert cell(runs, NLL) == f"101.33 ± {math.sqrt(spread + shared ** 2):.2f}"
    every_point = [replace_eval(r, n_test=None) for r in runs]
    assert seed_cell(every_point, NLL).interval.se == pytest.approx(math.sqrt(spread))
    recorded_size = [replace_eval(r, test_size=4000) for r in runs]  # the record's split size first
    assert seed_cell(recorded_size, NLL).interval.se == pytest.approx(
        math.sqrt(spread + (0.5 * math.sqrt(0.75)) ** 2))
    unknown = [{**r, "dataset": "someone-elses"} for r in runs]  # no split size: no correction
    assert seed_cell(unknown, NLL).interval.se == pytest.approx(math.sqrt(spread + 0.25))
    own_points = [{**r, "eval": {k: v for k, v in r["eval"].items() if k != "points_seed"}} for r in runs]
    assert seed_cell(own_points, NLL).interval.se == pytest.approx(math.sqrt(spread))  # before paired eval.
    fid = [record(s, {"fid_lenet": v, "fid_lenet_se": 3.0}) for s, v in enumerate(values)]
    assert seed_cell(fid, FID).interval.se == pytest.approx(math.sqrt(spread))  # samples: in the spread


def replace_eval(run: dict, **settings) -> dict:
    return {**run, "eval": {**run["eval"], **settings}}


def test_fewer_than_three_seeds_never_make_an_interval():
    two = [record(s, {"nll": v, "nll_se": 0.5}) for s, v in ((1, 105.31), (0, 105.42))]
    assert cell(two, NLL) == "105.37 (seeds 105.42, 105.31)"  # the mean, then the values in seed order
    assert cell(two[:1], NLL) == "105.31"  # one seed: the value alone, never its own s.e.
    assert seed_cell(two, NLL).interval is None and cell([], NLL) == ""


# --- rendered tables --------------------------------------------------------------------------

def _finish(db: ResultsDB, key: str, seed: int, metrics: dict, name: str = "vae-L1-k1", model: str = "vae",
            dataset: str = "mnist", **evaluation) -> None:
    shape = re.fullmatch(r"\w+-L(\d)-k(\d+)", name)
    layers, k = (int(shape[1]), int(shape[2])) if shape else (1, 1)
    identity = spec(key, name=name, model=model, seed=seed, dataset=dataset,
                    config={"layers": layers, "k": k, "objective": model})
    identity = replace(identity, eval={**identity.eval, "seed": seed, "points_seed": 0, "split": "test",
                                       **evaluation})
    db.finish_run(db.start_run(identity, "/tmp/x", "cpu"), metrics, 1.0, 1.0)


def _likelihood_db(tmp_path) -> ResultsDB:
    """Rows of 3, 2 and 1 seeds, each run with its own s.e. recorded."""
    db = ResultsDB(tmp_path / "db.sqlite")
    for seed, nll in enumerate([100.0, 101.0, 103.0]):
        _finish(db, f"a{seed}", seed, {"nll": nll, "nll_se": 0.5, "elbo": -nll - 5, "elbo_se": 0.5,
                                       "active_units": 20.0 + seed, "active_units_std": 1.0})
    for seed, nll in enumerate([98.0, 99.0]):
        _finish(db, f"b{seed}", seed, {"nll": nll, "nll_se": 0.5, "elbo": -nll - 5, "elbo_se": 0.5},
                name="vae-L1-k5")
    _finish(db, "c", 0, {"nll": 97.0, "nll_se": 0.5, "elbo": -102.0, "elbo_se": 0.5}, name="vae-L1-k50")
    return db


def test_a_rendered_leaderboard_has_one_kind_of_plus_minus_per_column(tmp_path):
    db = _likelihood_db(tmp_path)
    md, _ = render_leaderboard(db, SUITES["mnist"], tmp_path / "lb")
    text = md.read_text()
    rows = {row["run"]: row for row in tables_of(text)["Likelihood"]}
    spread = np.var([100.0, 101.0, 103.0], ddof=1) / 3
    shared = 0.5 * math.sqrt(1 - 1000 / 10000)
    assert rows["vae-L1-k1"]["NLL (nats) ↓"] == f"101.33 ± {math.sqrt(spread + shared ** 2):.2f}"
    assert rows["vae-L1-k5"]["NLL (nats) ↓"] == "98.50 (seeds 98.00, 99.00)"
    assert rows["vae-L1-k50"]["NLL (nats) ↓"] == "97.00"
    for column in ("NLL (nats) ↓", "test ELBO (nats) ↑", "active units"):
        with_interval = [run for run, row in rows.items() if "±" in row[column]]
        assert with_interval == ["vae-L1-k1"]  # only the row of 3 seeds: never a run's own s.e.
    assert "own uncertainty" not in text
    assert "e comes from: `NLL (nats)`, `test ELBO (nats)`: s.e. over test points; `active units`: std " \
           "over 200 bootstrap resamples of the test points." in text
    assert "With 2 seeds a cell is the mean and the two seeds' values" in text
    paper = render_paper_table("iwae", db)
    assert "86.76 / 101.33 ± " in paper and "86.47 / 98.50 (seeds 98.00, 99.00)" in paper
    assert "e comes from: `MNIST VAE NLL`" in paper and "own uncertainty" not in paper


def test_sample_quality_rows_against_different_reference_images_are_never_in_one_table(tmp_path):
    db = ResultsDB(tmp_path / "db.sqlite")
    quality = {"quality_samples": 1000, "quality_split": "test"}
    for seed in range(3):  # GANs against 8-bit gray test images
        _finish(db, f"g{seed}", seed, {"fid_lenet": 20.0 + seed, "fid_lenet_se": 0.5}, name="gan",
                model="gan", dataset="mnist8", quality_reference=10000, **quality)
    _finish(db, "w", 0, {"fid_lenet": 25.0}, name="wgan", model="wgan", dataset="mnist8",
            quality_reference=10000, **quality)
    _finish(db, "v", 0, {"fid_lenet": 5.0, "nll": 90.0}, dataset="mnist", quality_reference=None, **quality)
    _finish(db, "s", 0, {"fid_lenet": 6.0}, name="vae-L1-k5", dataset="mnist", quality_reference=2000,
            **quality)
    md, csv = render_leaderboard(db, SUITES["mnist"], tmp_path / "lb")
    tables = {title: [row["run"] for row in rows] for title, rows in tables_of(md.read_text()).items()
              if title.startswith("Sample quality")}
    assert tables == {
        "Sample quality against 10000 `mnist8` test images: MNIST 8-bit gray levels": ["gan", "wgan"],
        "Sample quality against 10000 `mnist` test images: MNIST dynamically binarized (IWAE paper)":
            ["vae-L1-k1"],
        "Sample quality against 2000 `mnist` test images: MNIST dynamically binarized (IWAE paper)":
            ["vae-L1-k5"]}
    header, *lines = csv.read_text().splitlines()
    assert "reference images" in header.split(",")


def test_active_unit_parts_add_up_to_the_total_shown(tmp_path):
    db = ResultsDB(tmp_path / "db.sqlite")
    for seed, (first, second) in enumerate([(96, 1), (97, 2), (97, 2)]):  # means 96.67 + 1.67 = 98.33
        _finish(db, f"a{seed}", seed, {"active_units": float(first + second), "active_units_l1": float(first),
                                       "active_units_l2": float(second), "active_units_std": 1.0},
                name="vae-L2-k1")
    for seed, (first, second) in enumerate([(96, 2), (97, 3)]):  # means 96.5 + 2.5 = 99
        _finish(db, f"b{seed}", seed, {"active_units": float(first + second), "active_units_l1": float(first),
                                       "active_units_l2": float(second)}, name="vae-L2-k5")
    md, _ = render_leaderboard(db, SUITES["mnist"], tmp_path / "lb")
    cells = {row["run"]: row["active units"] for row in tables_of(md.read_text())["Likelihood"]}
    assert cells == {"vae-L2-k1": "98 ± 1 (97+1)", "vae-L2-k5": "99 (97+2; seeds 98, 100)"}
    for text in cells.values():
        total, parts = re.match(r"(\d+).*\((\d+(?:\+\d+)*)", text).groups()
        assert sum(int(p) for p in parts.split("+")) == int(total)


@given(st.lists(st.floats(0, 1000, allow_nan=False), min_size=1, max_size=6), st.integers(0, 2))
def test_apportioned_parts_add_up_to_their_rounded_sum_each_within_one_unit(values, digits):
    shown = apportion(values, digits)
    unit = 10.0 ** -digits
    assert round(sum(shown) / unit) == round(math.fsum(values) / unit)
    assert all(abs(s - v) < unit + 1e-9 for s, v in zip(shown, values, strict=True))
