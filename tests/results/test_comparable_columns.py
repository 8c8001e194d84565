"""The leaderboard shows each likelihood in the column it may be compared in
(``genbench.metrics.comparable``): a loose AIS NLL and a density's NLL never rank with the NLLs."""

from __future__ import annotations

from genbench.results.db import ResultsDB
from genbench.results.leaderboard import render_leaderboard
from genbench.suites import SUITES
from tests.results.test_intervals import _finish
from tests.results.test_results import tables_of

AIS = "AIS NLL (nats) ↓"
LOOSE = "AIS NLL (nats), diagnostic: not shown as tight as L_k"


def test_ais_ranks_with_the_nlls_only_where_every_seed_is_as_tight_as_l_k(tmp_path):
    db = ResultsDB(tmp_path / "db.sqlite")
    for seed in range(3):  # AIS above L_k on the same points: tight
        tight = {"nll": 100.0 + seed, "bits_per_dim": 0.18, "ais_nll": 99.0 + seed, "ais_bits_per_dim": 0.18,
                 "ais_minus_iwae": 0.4, "ais_minus_iwae_se": 0.2}
        _finish(db, f"t{seed}", seed, tight)
    for seed, gain in enumerate([0.3, -2.0, 0.1]):  # one seed 2 nats below L_k: the whole row is loose
        loose = {"nll": 95.0, "bits_per_dim": 0.17, "ais_nll": 97.0, "ais_bits_per_dim": 0.18,
                 "ais_minus_iwae": gain, "ais_minus_iwae_se": 0.5}
        _finish(db, f"l{seed}", seed, loose, name="vae-L1-k5")
    md, csv = render_leaderboard(db, SUITES["mnist"], tmp_path / "lb")
    rows = {row["run"]: row for row in tables_of(md.read_text())["Likelihood"]}
    assert rows["vae-L1-k1"][AIS].startswith("100.00 ± ") and rows["vae-L1-k1"][LOOSE] == ""
    assert rows["vae-L1-k5"][AIS] == "" and rows["vae-L1-k5"][LOOSE] == "97.00 ± 0.00"
    assert "↓" not in LOOSE  # a diagnostic: no direction, not sorted with the NLLs


def test_a_density_nll_has_its_own_column_beside_the_nlls(tmp_path):
    db = ResultsDB(tmp_path / "db.sqlite")
    for seed in range(3):
        density = {"density_nll": -196.0, "density_nll_se": 0.2}
        _finish(db, f"p{seed}", seed, density, name="ppca", model="ppca")
        _finish(db, f"v{seed}", seed, {"nll": 100.0, "nll_se": 0.2, "bits_per_dim": 0.18})
    md, _ = render_leaderboard(db, SUITES["mnist"], tmp_path / "lb")
    rows = {row["run"]: row for row in tables_of(md.read_text())["Likelihood"]}
    assert rows["ppca"]["NLL (nats) ↓"] == ""
    assert rows["ppca"]["density NLL (nats), not a discrete likelihood"].startswith("-196.00")
    assert rows["vae-L1-k1"]["NLL (nats) ↓"].startswith("100.00")
