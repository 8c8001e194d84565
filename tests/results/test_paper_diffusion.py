"""The diffusion paper table: published CIFAR-10 / ImageNet 32x32 numbers in their papers' conventions,
each row citing its source, and genbench's ddpm, vdm and flow-matching cells beside them."""

from __future__ import annotations

import re

import pytest

from genbench.core.errors import GenbenchError
from genbench.results.db import ResultsDB
from genbench.results.paper_tables import declared_column, load_paper, render_paper_table
from genbench.train.identity import RunIdentity
from tests.results.test_paper_tables_bpd import table_rows

# The published cells exactly as the table shows them: bound, ODE, FID, ImageNet 32x32 bits/dim and FID.
PUBLISHED = {
    "Sohl-Dickstein et al. 2015 (a log-likelihood bound K: see above)":
        ["K = 5.4 ± 0.2 (not an NLL)", "–", "–", "–", "–"],
    "DDPM, L_simple (Ho et al. 2020)": ["<= 3.75", "–", "3.17", "–", "–"],
    "DDPM, L with fixed isotropic Sigma (Ho et al. 2020)": ["<= 3.70", "–", "13.51", "–", "–"],
    "Improved DDPM, L_hybrid (Nichol and Dhariwal 2021)": ["–"] * 5,
    "Improved DDPM, L_vlb (Nichol and Dhariwal 2021)": ["–"] * 5,
    "VDM (Kingma et al. 2021)": ["–"] * 5,
    "Score SDE: Ho et al.'s DDPM through the ODE (Song et al. 2021)": ["–", "3.28", "3.37", "–", "–"],
    "Score SDE: DDPM cont. (VP) (Song et al. 2021)": ["–", "3.21", "3.69", "–", "–"],
    "Score SDE: DDPM++ cont. (deep, sub-VP) (Song et al. 2021)": ["–", "2.99", "2.92", "–", "–"],
    "Flow matching, OT path (Lipman et al. 2023)": ["–", "2.99", "6.35", "3.53", "5.02"],
}


def add_run(db: ResultsDB, key: str, model: str, dataset: str, metrics: dict[str, float]) -> None:
    run = RunIdentity("cifar10", model, model, {"test_key": key}, dataset, (3, 32, 32), "short",
                      {"epochs": 1, "seed": 0}, {"n_test": 1000})
    db.finish_run(db.start_run(run, "/tmp/x", "cpu"), metrics, 1.0, 1.0)


def test_the_table_shows_every_published_number_and_no_measured_one_yet(tmp_path):
    text = render_paper_table("diffusion", ResultsDB(tmp_path / "db.sqlite"))
    assert table_rows(text) == {label: [f"{p} / –" for p in cells] for label, cells in PUBLISHED.items()}
    assert "No measured cells yet" in text


def test_every_row_cites_a_paper_of_the_citation_and_the_table_its_numbers_are_from():
    paper = load_paper("diffusion")
    for row in paper["rows"]:
        arxiv = re.search(r"arXiv:\d{4}\.\d{5}", row["source"]).group()
        assert arxiv in paper["citation"], row["label"]
        if row.get("paper"):  # a published number names the table it was read in
            assert re.search(r"Table \d", row["source"]), row["label"]
        else:  # a blank row says why
            assert "not read here" in row["source"], row["label"]


def test_the_protocol_names_each_papers_convention():
    protocol = load_paper("diffusion")["protocol"]
    for phrase in ("not an NLL", "variational bound on the discrete data", "uniformly dequantised",
                   "without data augmentation", "K = 1", "Left blank"):
        assert phrase in protocol


def test_the_columns_keep_bound_ode_and_fid_apart():
    paper = load_paper("diffusion")
    assert paper["suites"] == ["cifar10"]
    metrics = {c["id"]: (c["dataset"], c["metric"]) for c in paper["columns"]}
    assert metrics["bound"] == ("cifar10", "bound_bits_per_dim")
    assert metrics["ode"] == ("cifar10", "ode_bits_per_dim")
    assert metrics["fid"] == ("cifar10", "fid_inception")
    matched = {row["match"]["model"] for row in paper["rows"] if "match" in row}
    assert matched == {"ddpm", "vdm", "flow-matching"}


def test_a_feature_networks_key_is_its_concrete_column_and_a_typo_is_refused():
    spec, column = declared_column("fid_inception")
    assert spec.name == "sample_quality" and column.key == "fid_inception"
    assert column.label == "FID-Inception" and column.error == "fid_inception_se"
    assert declared_column("ode_bits_per_dim")[1].key == "ode_bits_per_dim"
    with pytest.raises(GenbenchError, match="no metric declares the key 'fid'; valid: nll, "):
        declared_column("fid")


def test_measured_cells_fill_the_rows_of_genbenchs_models_on_cifar10_only(tmp_path):
    db = ResultsDB(tmp_path / "db.sqlite")
    add_run(db, "a", "ddpm", "cifar10", {"bound_bits_per_dim": 5.125, "ode_bits_per_dim": 4.875,
                                         "fid_inception": 88.5})
    add_run(db, "b", "vdm", "cifar10", {"bound_bits_per_dim": 4.25, "ode_bits_per_dim": 4.5})
    add_run(db, "c", "flow-matching", "cifar10", {"ode_bits_per_dim": 3.75, "fid_inception": 61.25})
    add_run(db, "d", "ddpm", "mnist8", {"bound_bits_per_dim": 1.5})  # another data set: never here
    text = render_paper_table("diffusion", db)
    rows = table_rows(text)
    assert rows["DDPM, L_simple (Ho et al. 2020)"] == ["<= 3.75 / 5.12", "– / 4.88", "3.17 / 88.50", "– / –",
                                                       "– / –"]
    assert rows["VDM (Kingma et al. 2021)"] == ["– / 4.25", "– / 4.50", "– / –", "– / –", "– / –"]
    assert rows["Flow matching, OT path (Lipman et al. 2023)"] == [
        "– / –", "2.99 / 3.75", "6.35 / 61.25", "3.53 / –", "5.02 / –"]
    matched = ("DDPM, L_simple (Ho et al. 2020)", "VDM (Kingma et al. 2021)",
               "Flow matching, OT path (Lipman et al. 2023)")
    for label in (label for label in PUBLISHED if label not in matched):
        assert all(cell.endswith(" / –") for cell in rows[label]), label
    assert "1.50" not in text and "budget `short`" in text


def test_the_cifar10_suite_has_the_three_models_under_the_legacy_fid_protocol_in_its_paper_budget():
    from pathlib import Path

    from genbench.suites import SUITES

    suite = SUITES["cifar10"]
    runs = {entry.name: entry for entry in suite.runs}
    for name in ("ddpm", "vdm", "flow-matching"):
        budget = suite.budget_for(runs[name], suite.budget("paper"))
        assert runs[name].model == name and runs[name].config["width"] == 128
        assert (budget.eval.features, budget.eval.quality_split, budget.eval.quality_samples,
                budget.eval.quality_reference) == ("inception", "train", 50000, 50000)
    page = (Path(__file__).parents[2] / "docs" / "diffusion.md").read_text()
    section = page.split("## The paper table", 1)[1].split("\n## ", 1)[0]
    assert "genbench run --suite cifar10 --models ddpm vdm flow-matching --budget paper" in section
