"""The results database, leaderboards and paper tables."""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import replace

import pytest

from genbench.results.db import ResultsDB, RunSpec
from genbench.results.leaderboard import render_leaderboard
from genbench.results.paper_tables import render_paper_table
from genbench.suites import SUITES


def spec(key: str, name: str = "vae-L1-k1", model: str = "vae", config=None, seed: int = 0,
         budget: str = "short", dataset: str = "mnist") -> RunSpec:
    return RunSpec(run_key=key, suite="mnist", name=name, model=model, dataset=dataset,
                   config=config or {"layers": 1, "k": 1, "objective": model}, seed=seed,
                   budget=budget, train={"epochs": 2}, eval={"k": 1000, "n_test": 1000},
                   run_dir="/tmp/x", device="cpu")


def _writer(path: str, worker: int, n: int) -> None:
    db = ResultsDB(path)
    for i in range(n):
        run_id = db.start_run(spec(f"w{worker}-{i}", seed=i))
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


def test_a_failed_write_leaves_no_half_written_run(tmp_path):
    db = ResultsDB(tmp_path / "db.sqlite")
    run_id = db.start_run(spec("a"))
    with pytest.raises(ValueError):
        db.finish_run(run_id, {"nll": 90.0, "elbo": "not a number"}, 1.0, 1.0)
    [row] = db.runs(status=None)
    assert row["status"] == "running" and row["metrics"] == {}


def test_unfinished_runs_are_reopened_not_duplicated(tmp_path):
    db = ResultsDB(tmp_path / "db.sqlite")
    first = db.start_run(spec("a"))
    db.fail_run(first, "killed")
    assert db.start_run(spec("a")) == first
    db.finish_run(first, {"nll": 1.0}, 1.0, 1.0)
    assert db.done_run("a")["id"] == first
    assert db.start_run(spec("a")) != first  # a done run is never overwritten


def _fill(db: ResultsDB) -> None:
    for seed, value in ((0, 95.0), (1, 97.0)):
        run_id = db.start_run(spec(f"v{seed}", seed=seed))
        db.finish_run(run_id, {"nll": value, "active_units": 12.0}, 10.0, 1.0)
    run_id = db.start_run(spec("i2", name="iwae-L2-k5", model="iwae",
                               config={"layers": 2, "k": 5, "objective": "iwae"}))
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
    assert rows[(1, 1)][:2] == ["86.76 / 96.00 ± 1.41", "19 / 12"]
    assert rows[(2, 5)][2:4] == ["83.89 / 93.00", "21+5 / 20+5"]
    assert rows[(2, 5)][0] == "85.01 / –"  # the VAE cell of that row was not run
    assert rows[(2, 50)][2] == "82.90 / –"
    assert "budget `short`: 2 epoch(s)" in table and "1 to 2 seed(s) per cell" in table
    assert "not a reproduction failure" in table


def test_leaderboard_states_budget_and_seeds(tmp_path):
    db = ResultsDB(tmp_path / "db.sqlite")
    _fill(db)
    md, csv = render_leaderboard(db, SUITES["mnist"], tmp_path / "lb")
    text = md.read_text()
    assert "short: 2 epochs; NLL k=1000 on 1000 test points" in text
    assert "96.00 ± 1.41" in text and "25 (20+5)" in text
    assert "No row here was trained with the paper's budget" in text
    assert "vae-L1-k1" in csv.read_text()


def _vamp_runs(db: ResultsDB) -> None:
    for key, prior, nll in (("s", "standard", 90.0), ("v", "vamp", 88.5)):
        run_id = db.start_run(spec(key, name=f"hvae-{prior}", model="hvae", dataset="binarized_mnist",
                                   config={"layers": 2, "prior": prior}))
        db.finish_run(run_id, {"nll": nll}, 10.0, 1.0)
    run_id = db.start_run(spec("other", name="hvae-vamp", model="hvae", dataset="mnist",
                               config={"layers": 2, "prior": "vamp"}))
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
        run_id = db.start_run(replace(gan, eval={**gan.eval, "quality_samples": 10000}))
        db.finish_run(run_id, {"is_lenet": 9.0, "fid_lenet": fid, "kid_lenet": 0.002}, 1.0, 1.0)
    run_id = db.start_run(spec("p", name="ppca", model="ppca"))
    db.finish_run(run_id, {"nll": -198.0}, 1.0, 1.0,
                  skipped={"sample_quality": "PPCA samples must lie in [0, 1]"})
    text = render_leaderboard(db, SUITES["mnist"], tmp_path / "lb")[0].read_text()
    header = next(line for line in text.splitlines() if line.startswith("| run"))
    assert "IS-LeNet" in header and "FID-LeNet" in header and "KID-LeNet" in header
    assert "Inception" not in header and "| 10000 " in text
    assert "11.00 ± 1.41" in text and "0.002 ± 0.000" in text
    assert "- `ppca`: sample_quality left out: PPCA samples must lie in [0, 1]" in text
    later = ResultsDB(tmp_path / "db.sqlite")  # a metric added to a finished run replaces its reason
    later.add_results(run_id, "sample_quality", {"fid_lenet": 50.0}, None, {"quality_samples": 10}, 2.0)
    assert later.runs()[0]["skipped"] == {} and later.runs()[0]["metrics"]["fid_lenet"] == 50.0
