"""A committed leaderboard carries its runs' result records: its database can be rebuilt from them
(``genbench collect``), and the rebuilt database renders the committed numbers."""

from pathlib import Path

from genbench.launch.collect import collect
from genbench.results.db import ResultsDB
from genbench.results.leaderboard import render_leaderboard
from genbench.suites import SUITES

LONG = Path(__file__).resolve().parents[2] / "leaderboards" / "long-2026-12-04"


def _tables(text: str) -> str:
    """The metric tables of a leaderboard (the bookkeeping and figures sections name run folders)."""
    return text[text.index("## Likelihood"):text.index("## Bookkeeping")]


def test_the_long_leaderboard_of_2026_12_04_is_rebuilt_from_its_result_records(tmp_path):
    db = ResultsDB(tmp_path / "db.sqlite")
    collected = collect(LONG / "results", db)
    assert len(collected.added) == 4 and not collected.unreadable
    assert len(collect(LONG / "results", db).added) == 0  # collecting twice adds nothing
    md, _ = render_leaderboard(db, SUITES["mnist"], tmp_path / "lb")
    assert _tables(md.read_text()) == _tables((LONG / "mnist.md").read_text())
