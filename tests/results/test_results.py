"""The results database, leaderboards and paper tables."""

from __future__ import annotations

import json
import multiprocessing as mp
import sqlite3
from dataclasses import replace

import pytest
import torch

from genbench.core.errors import GenbenchError
from genbench.metrics.lenet import SHIPPED_RECORD
from genbench.results.db import ResultsDB
from genbench.results.leaderboard import render_leaderboard
from genbench.results.paper_tables import render_paper_table
from genbench.suites import SUITES
from genbench.train.identity import RunIdentity


def spec(key: str, name: str = "vae-L1-k1", model: str = "vae", config=None, seed: int = 0,
         budget: str = "short", dataset: str = "mnist") -> RunIdentity:
    """A run identity; ``key`` tells apart runs that would otherwise be the same experiment."""
    config = {**(config or {"layers": 1, "k": 1, "objective": model}), "test_key": key}
    return RunIdentity("mnist", name, model, config, dataset, (1, 28, 28), budget,
                       {"epochs": 2, "seed": seed}, {"k": 1000, "n_test": 1000})


def _writer(path: str, worker: int, n: int) -> None:
    db = ResultsDB(path)
    for i in range(n):
        run_id = db.start_run(spec(f"w{worker}-{i}", seed=i), "/tmp/x", "cpu")
        db.finish_run(run_id, {"nll": 100.0 + i, "elbo": -101.0}, 1.0, 1.0)


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    path = str(tmp_path / "db.sqlite")
    ResultsDB(path)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 40)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    runs = ResultsDB(path).runs()
    assert len(runs) == 80 and all(len(r["metrics"]) == 2 for r in runs)


def test_a_failed_write_leaves_no_half_written_run(tmp_path, monkeypatch):
    db = ResultsDB(tmp_path / "db.sqlite")
    run_id = db.start_run(spec("a"), "/tmp/x", "cpu")
    with pytest.raises(GenbenchError, match="metric elbo of the run is 'not a number', not a number"):
        db.finish_run(run_id, {"nll": 90.0, "elbo": "not a number"}, 1.0, 1.0)

    def fails(*args, **kwargs):  # a write that fails inside the transaction, after the status changed
        raise sqlite3.IntegrityError("the disk went away")

    monkeypatch.setattr(ResultsDB, "_insert_results", staticmethod(fails))
    with pytest.raises(sqlite3.IntegrityError):
        db.finish_run(run_id, {"nll": 90.0}, 1.0, 1.0)
    [row] = db.runs(status=None)
    assert row["status"] == "running" and row["metrics"] == {}


def test_unfinished_runs_are_reopened_not_duplicated(tmp_path):
    db = ResultsDB(tmp_path / "db.sqlite")
    first = db.start_run(spec("a"), "/tmp/x", "cpu")
    db.fail_run(first, "killed")
    assert db.start_run(spec("a"), "/tmp/x", "cpu") == first
    db.finish_run(first, {"nll": 1.0}, 1.0, 1.0)
    assert db.done_run(spec("a").key)["id"] == first
    assert db.start_run(spec("a"), "/tmp/x", "cpu") != first  # a done run is never overwritten


def _fill(db: ResultsDB) -> None:
    for seed, value in ((0, 95.0), (1, 97.0)):
        run_id = db.start_run(spec(f"v{seed}", seed=seed), "/tmp/x", "cpu")
        db.finish_run(run_id, {"nll": value, "active_units": 12.0}, 10.0, 1.0)
    run_id = db.start_run(spec("i2", name="iwae-L2-k5", model="iwae",
                               config={"layers": 2, "k": 5, "objective": "iwae"}), "/tmp/x", "cpu")
    db.finish_run(run_id, {"nll": 93.0, "active_units": 25.0, "active_units_l1": 20.0,
                           "active_units_l2": 5.0}, 10.0, 1.0)


def test_paper_table_puts_measured_cells_beside_the_papers(tmp_path):
    db = ResultsDB(tmp_path / "db.sqlite")
    _fill(db)
    table = render_paper_table("iwae", db)
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0].isdigit():
            rows[(int(cells[0]), int(cells[1]))] = cells[2:]
    assert rows[(1, 1)][:2] == ["86.76 / 96.00 (seeds 95.00, 97.00)", "19 / 12 (seeds 12, 12)"]  # two: no ±
    assert rows[(2, 5)][2:4] == ["83.89 / 93.00", "21+5 / 25 (20+5)"]  # the total with its layers' parts
    assert rows[(2, 5)][0] == "85.01 / –"  # the VAE cell of that row was not run
    assert rows[(2, 50)][2] == "82.90 / –"
    assert "budget `short`: 2 epoch(s)" in table and "1 to 2 seed(s) per cell" in table
    assert "own uncertainty" not in table and "±" not in table.split("Measured with:")[0]
    assert "no row here has the 3 seeds an interval needs, so no cell has a ±" in table
    assert "no conclusion about whether the paper reproduces can be drawn" in table


def test_paper_table_says_its_subset_is_one_for_every_seed(tmp_path):
    """The footer names the points seed the subset was drawn by (paired evaluation), not the runs'
    seeds; records without one (before paired evaluation) only say the subsets were seeded."""
    db = ResultsDB(tmp_path / "db.sqlite")
    for seed in (0, 1, 2):
        identity = spec(f"p{seed}", seed=seed)
        identity = replace(identity, eval={**identity.eval, "seed": seed, "points_seed": 0})
        db.finish_run(db.start_run(identity, "/tmp/x", "cpu"), {"nll": 95.0 + seed}, 10.0, 1.0)
    table = render_paper_table("iwae", db)
    assert "NLL with k = 1000 on 1000 test points (a seeded random subset, points seed 0, " \
           "the same for every run)" in table
    assert "evaluation seeds" not in table
    old = ResultsDB(tmp_path / "old.sqlite")
    _fill(old)
    assert "on 1000 test points (seeded random subsets);" in render_paper_table("iwae", old)


def tables_of(markdown: str) -> dict[str, list[dict[str, str]]]:
    """The tables of a markdown file by the title of the section they are in: a list of rows, each
    a dict by column header."""
    tables: dict[str, list[dict[str, str]]] = {}
    title, header = None, None
    for line in markdown.splitlines():
        if line.startswith("## "):
            title, header = line[3:], None
        elif line.startswith("|") and title is not None:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if header is None:
                header = cells
                tables[title] = []
            elif not set(line) <= set("|-: "):
                tables[title].append(dict(zip(header, cells, strict=True)))
        else:
            header = None
    return tables


def test_leaderboard_states_budget_and_seeds(tmp_path):
    db = ResultsDB(tmp_path / "db.sqlite")
    _fill(db)
    md, csv = render_leaderboard(db, SUITES["mnist"], tmp_path / "lb")
    text = md.read_text()
    # the budget as the runs recorded it (1000 test points), with the settings of what they computed
    line = next(line for line in text.splitlines() if line.startswith("- short:"))
    assert line.startswith("- short: 2 epochs; NLL k=1000 on a seeded random 1000 test points; KL warm-up")
    assert "annealing steps" not in line and "ODE" not in line and "copying" not in line
    assert "96.00 (seeds 95.00, 97.00)" in text and "25 (20+5)" in text and "±" not in text.split("## ")[1]
    assert "No row here was trained with the paper's budget" in text
    assert "vae-L1-k1" in csv.read_text()


def test_a_budget_line_says_what_its_rows_recorded_after_the_suite_changed(tmp_path):
    db = ResultsDB(tmp_path / "db.sqlite")
    suite = SUITES["mnist"]
    assert suite.budgets["short"].eval.ais_steps == 100
    for seed, steps in ((0, 7), (1, 7), (2, 9)):
        identity = replace(spec(f"a{seed}", seed=seed), eval={"k": 1000, "n_test": None, "ais_steps": steps,
                                                              "ais_chains": 4, "ais_points": 12})
        run_id = db.start_run(identity, "/tmp/x", "cpu")
        db.finish_run(run_id, {"nll": 95.0 + seed, "ais_nll": 94.0, "ais_nll_se": 1.0}, 10.0, 1.0)
    text = render_leaderboard(db, suite, tmp_path / "lb")[0].read_text()
    line = next(line for line in text.splitlines() if line.startswith("- short:"))
    assert "NLL k=1000 on all test points" in line
    assert "7 annealing steps" in line and "100 annealing steps" not in line  # what most runs had
    assert "ELBO surgery" not in line and "samples against" not in line  # computed by no row


def test_a_metric_s_own_key_is_never_read_as_a_feature_network_s(tmp_path):
    from genbench.metrics.registry import METRICS

    db = ResultsDB(tmp_path / "db.sqlite")
    run_id = db.start_run(spec("p", name="ppca", model="ppca"), "/tmp/x", "cpu")
    db.finish_run(run_id, {"density_nll": -198.0, "elbo": 198.0}, 1.0, 1.0)  # ppca's density NLL
    text = render_leaderboard(db, SUITES["mnist"], tmp_path / "lb")[0].read_text()
    assert "density NLL (nats)" in text  # its own column, in the likelihood table
    assert "density-nll" not in text and "Sample quality" not in text and "Feature network nll" not in text
    assert [spec.name for spec in METRICS.in_order() if spec.column_of("density_nll")] == ["nll"]
    assert METRICS["sample_quality"].column_of("density_lenet").key == "density_{net}"


def test_leaderboard_splits_rows_by_what_they_compare_on(tmp_path):
    """One table per metric group, each holding the rows with numbers there; headers with unit and
    direction; a bookkeeping table of every row; the CSV keeps every column."""
    db = ResultsDB(tmp_path / "db.sqlite")
    vae = db.start_run(spec("v"), "/tmp/x", "cpu")
    values = {"nll": 95.0, "nll_se": 0.1, "elbo": -99.0, "active_units": 12.0, "surgery_avg_kl": 20.0,
              "surgery_mutual_info": 8.0, "surgery_marginal_kl": 12.0}
    db.finish_run(vae, values, 30.0, 4.0)
    gan = spec("g", name="gan", model="gan")
    db.finish_run(db.start_run(replace(gan, eval={**gan.eval, "quality_samples": 500}), "/tmp/x", "cpu"),
                  {"fid_lenet": 40.0, "is_lenet": 6.0}, 10.0, 2.0)
    md, csv = render_leaderboard(db, SUITES["mnist"], tmp_path / "lb")
    text = md.read_text()
    tables = tables_of(text)
    quality_title = ("Sample quality against 10000 `mnist` test images: MNIST dynamically binarized "
                     "(IWAE paper)")
    assert list(tables) == ["Likelihood", quality_title, "Latent diagnostics", "Bookkeeping"]
    [likelihood] = tables["Likelihood"]
    assert likelihood["run"] == "vae-L1-k1" and likelihood["NLL (nats) ↓"] == "95.00"  # one seed: no ±
    assert likelihood["test ELBO (nats) ↑"] == "-99.00" and likelihood["active units"] == "12"
    assert likelihood["NLL k / test pts"] == "1000 / 1000" and "bits/dim ↓" not in likelihood  # no values
    [quality] = tables[quality_title]
    assert quality["run"] == "gan" and quality["FID-LeNet ↓"] == "40.00" and quality["IS-LeNet ↑"] == "6.00"
    assert quality["feature net"] == "LeNet" and quality["IS/FID samples"] == "500"
    [latent] = tables["Latent diagnostics"]
    assert latent["run"] == "vae-L1-k1" and latent["marginal KL (nats) ↓"] == "12.00"
    assert latent["avg KL (train) (nats)"] == "20.00"  # a diagnostic: no direction
    books = {row["run"]: row for row in tables["Bookkeeping"]}
    assert set(books) == {"vae-L1-k1", "gan"}
    assert books["vae-L1-k1"]["train (s)"] == "30" and books["vae-L1-k1"]["eval (s)"] == "4"
    assert books["gan"]["run keys"] == db.runs(suite="mnist")[0]["run_key"][:8]
    assert not any("NLL" in header for header in books["gan"])
    columns = csv.read_text().splitlines()[0].split(",")
    assert {"NLL (nats)", "test ELBO (nats)", "FID-LeNet", "IS-LeNet", "marginal KL", "NLL k / test pts",
            "IS/FID samples", "feature net", "reference images", "seeds", "epochs", "train (s)", "eval (s)",
            "run keys"} <= set(columns)


def test_a_metric_declares_its_group_and_an_unknown_one_is_refused():
    from genbench.metrics.columns import GROUP_NAMES
    from genbench.metrics.registry import METRICS, MetricSpec

    groups = {spec.name: spec.group for spec in METRICS.in_order()}
    assert groups.items() >= {
        "nll": "likelihood", "elbo": "likelihood", "active_units": "likelihood", "elbo_surgery": "latent",
        "beta_vae_score": "latent", "factor_vae_score": "latent", "mig": "latent",
        "sample_quality": "sample_quality", "copying": "copying", "nll_gap": "copying"}.items()
    assert set(groups.values()) <= set(GROUP_NAMES)
    assert set(GROUP_NAMES) == {"likelihood", "sample_quality", "copying", "latent", "other"}
    with pytest.raises(ValueError, match="group must be one of likelihood, sample_quality, latent, copying, "
                                         "other"):
        MetricSpec(name="x", summary="x", requires=(), compute=lambda m, c: {}, columns=(), group="quality")


def _vamp_runs(db: ResultsDB) -> None:
    for key, prior, nll in (("s", "standard", 90.0), ("v", "vamp", 88.5)):
        run_id = db.start_run(spec(key, name=f"hvae-{prior}", model="hvae", dataset="binarized_mnist",
                                   config={"layers": 2, "prior": prior}), "/tmp/x", "cpu")
        db.finish_run(run_id, {"nll": nll}, 10.0, 1.0)
    run_id = db.start_run(spec("other", name="hvae-vamp", model="hvae", dataset="mnist",
                               config={"layers": 2, "prior": "vamp"}), "/tmp/x", "cpu")
    db.finish_run(run_id, {"nll": 70.0}, 10.0, 1.0)  # another data set: must not be used


def test_paper_rows_select_runs_by_model_and_config_and_scale_the_value(tmp_path):
    db = ResultsDB(tmp_path / "db.sqlite")
    _vamp_runs(db)
    table = render_paper_table("vampprior", db)
    assert "| HVAE (L=2) + SG" in table and "-85.89 / -90.00" in table
    assert "-83.19 / -88.50" in table  # LL = -NLL
    assert "-85.07 / –" in table and "-80.20 / –" in table  # not run / no genbench model
    assert "-70.00" not in table
    assert "up to 2000 epochs with early stopping" in table


def test_leaderboard_names_each_data_set_when_a_suite_mixes_them(tmp_path):
    db = ResultsDB(tmp_path / "db.sqlite")
    _vamp_runs(db)
    md, _ = render_leaderboard(db, SUITES["mnist"], tmp_path / "lb")
    text = md.read_text()
    assert "| data " in text.replace("|  data", "| data")
    assert "- `binarized_mnist`: MNIST statically binarized" in text
    assert "- `mnist`: MNIST dynamically" in text


def test_leaderboard_names_the_feature_net_of_sample_quality_and_says_why_a_metric_is_missing(tmp_path):
    db = ResultsDB(tmp_path / "db.sqlite")
    for seed, fid in enumerate([10.0, 12.0]):
        gan = spec(f"g{seed}", name="gan", model="gan", seed=seed)
        quality = {"quality_samples": 10000, "quality_split": "test", "quality_reference": 10000}
        run_id = db.start_run(replace(gan, eval={**gan.eval, **quality}), "/tmp/x", "cpu")
        db.finish_run(run_id, {"is_lenet": 9.0, "fid_lenet": fid, "kid_lenet": 0.002}, 1.0, 1.0)
    wgan = spec("w", name="wgan", model="wgan")  # fewer samples than the mnist-lenet protocol's
    run_id = db.start_run(replace(wgan, eval={**wgan.eval, "quality_samples": 2000, "quality_split": "test",
                                              "quality_reference": 10000}), "/tmp/x", "cpu")
    db.finish_run(run_id, {"is_lenet": 8.0, "fid_lenet": 20.0}, 1.0, 1.0)
    run_id = db.start_run(spec("p", name="ppca", model="ppca"), "/tmp/x", "cpu")
    db.finish_run(run_id, {"nll": -198.0}, 1.0, 1.0,
                  skipped={"sample_quality": "PPCA samples must lie in [0, 1]"})
    text = render_leaderboard(db, SUITES["mnist"], tmp_path / "lb")[0].read_text()
    tables = tables_of(text)
    gan, wgan = tables[next(t for t in tables if t.startswith("Sample quality"))]  # not ppca: no numbers
    assert gan["FID protocol"] == "mnist-lenet" and wgan["FID protocol"] == "none"
    assert {"IS-LeNet ↑", "FID-LeNet ↓", "KID-LeNet ↓"} <= set(gan) and not any("Inception" in h for h in gan)
    assert gan["IS/FID samples"] == "10000" and gan["feature net"] == "LeNet"
    assert gan["FID-LeNet ↓"] == "11.00 (seeds 10.00, 12.00)"  # two seeds: their values, no ±
    assert gan["KID-LeNet ↓"] == "0.002 (seeds 0.002, 0.002)"
    assert [row["run"] for row in tables["Likelihood"]] == ["ppca"]
    assert "- `ppca`: sample_quality left out: PPCA samples must lie in [0, 1]" in text
    shipped = json.loads(SHIPPED_RECORD.read_text())["sha256"]
    assert f"Feature network LeNet: the LeNet shipped with genbench, trained on mnist8 (sha256 {shipped}" \
        in text
    later = ResultsDB(tmp_path / "db.sqlite")  # a metric added to a finished run replaces its reason
    later.add_results(run_id, "sample_quality", {"fid_lenet": 50.0}, None, {"quality_samples": 10}, 2.0)
    assert later.runs()[0]["skipped"] == {} and later.runs()[0]["metrics"]["fid_lenet"] == 50.0


class _Blurry(torch.nn.Module):
    """A sampler of constant grey images, for a metric registered by a test."""

    def sample(self, n):
        return torch.full((n, 1, 4, 4), 0.5)


def test_a_newly_registered_metric_reaches_leaderboards_and_paper_tables_from_its_declaration(
        tmp_path, monkeypatch):
    """Declaring the metric is all it takes: evaluate computes it, the leaderboard shows its column
    and a paper table may name its key; no other file changes."""
    from genbench.core.protocols import Sampler
    from genbench.metrics import EvalSettings, evaluate
    from genbench.metrics.columns import Column
    from genbench.metrics.registry import METRICS, MetricSpec
    from genbench.results import paper_tables

    def sharpness(model, ctx):
        return {"sharpness": float(model.sample(8).diff(dim=-1).abs().mean()) + 0.25}

    monkeypatch.setitem(METRICS._entries, "sharpness", MetricSpec(
        name="sharpness", summary="mean gradient magnitude of samples, plus a quarter", requires=(Sampler,),
        compute=sharpness, columns=(Column(key="sharpness", label="sharpness", digits=3, better="higher"),)))
    values = evaluate(_Blurry(), torch.zeros(4, 1, 4, 4), EvalSettings(), only=["sharpness"])
    assert values == {"sharpness": 0.25}
    db = ResultsDB(tmp_path / "db.sqlite")
    db.finish_run(db.start_run(_identity("s"), "/tmp/x", "cpu"), values, 1.0, 1.0)
    md, csv = render_leaderboard(db, SUITES["mnist"], tmp_path / "lb")
    [row] = tables_of(md.read_text())["Other metrics"]  # declared without a group
    assert row["sharpness ↑"] == "0.250"
    assert "sharpness" in csv.read_text().splitlines()[0]
    monkeypatch.setitem(METRICS._entries, "sharpness", replace(METRICS["sharpness"], group="sample_quality"))
    md, _ = render_leaderboard(db, SUITES["mnist"], tmp_path / "lb")
    [row] = tables_of(md.read_text())["Sample quality"]  # its declaration alone decides the table
    assert row["sharpness ↑"] == "0.250" and "Other metrics" not in md.read_text()
    text = (paper_tables.PAPERS_DIR / "vampprior.toml").read_text()
    text = text.replace('metric = "nll"', 'metric = "sharpness"')
    (tmp_path / "sharp.toml").write_text(text.replace("scale = -1\n", ""))
    paper = paper_tables.load_paper("sharp", tmp_path)  # the key is declared: accepted
    assert {column["metric"] for column in paper["columns"]} == {"sharpness"}

    monkeypatch.setitem(METRICS._entries, "sloppy", MetricSpec(
        name="sloppy", summary="returns a key it never declared", requires=(Sampler,),
        compute=lambda model, ctx: {"undeclared": 1.0}, columns=(Column(key="sloppy", label="sloppy"),)))
    with pytest.raises(AssertionError, match="undeclared keys"):
        evaluate(_Blurry(), torch.zeros(4, 1, 4, 4), EvalSettings(), only=["sloppy"])


def _identity(key: str) -> RunIdentity:
    return RunIdentity("mnist", "gan", "gan", {"test_key": key}, "mnist8", (1, 28, 28), "short",
                       {"epochs": 1, "seed": 0}, {"k": 1000, "n_test": 1000, "quality_samples": 0})


def test_a_paper_table_naming_an_undeclared_metric_key_is_refused(tmp_path):
    from genbench.core.errors import GenbenchError
    from genbench.results.paper_tables import PAPERS_DIR, load_paper

    text = (PAPERS_DIR / "iwae.toml").read_text().replace('metric = "nll"', 'metric = "nnl"', 1)
    (tmp_path / "typo.toml").write_text(text)
    with pytest.raises(GenbenchError, match="no metric declares the key 'nnl'; valid: nll, nll_se, bits_per"):
        load_paper("typo", tmp_path)
