"""A user's run never rewrites the published tables: in a copy of the repository's layout (the
committed ``leaderboards/`` copied in), ``genbench run`` of a partial suite with its default folders,
then ``genbench collect``, render into ``runs/`` and leave every committed table and figure byte for
byte as it was; publishing is the explicit ``genbench archive`` and ``genbench tables``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from genbench.cli import main

PUBLISHED = Path(__file__).resolve().parents[2] / "leaderboards"


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_a_partial_suite_run_leaves_the_committed_tables_untouched(tmp_path, monkeypatch, capsys):
    shutil.copytree(PUBLISHED, tmp_path / "leaderboards")
    committed = tree(tmp_path / "leaderboards")
    monkeypatch.chdir(tmp_path)  # a fresh clone: default folders, relative to it
    assert main(["run", "--suite", "smoke", "--budget", "smoke", "--models", "vae-L1-k1",
                 "--no-progress"]) == 0
    assert main(["collect", "runs"]) == 0
    assert tree(tmp_path / "leaderboards") == committed
    board = tmp_path / "runs" / "leaderboards" / "smoke.md"
    assert "vae-L1-k1" in board.read_text()
    assert f"leaderboard: {Path('runs') / 'leaderboards' / 'smoke.md'}" in capsys.readouterr().out

    # publishing is explicit: archive the run, then list and render its table
    assert main(["archive", "runs", "--suite", "smoke"]) == 0
    archived = list((tmp_path / "leaderboards" / "archive" / "smoke" / "smoke")
                    .glob("vae-L1-k1-seed0-*.json"))
    assert len(archived) == 1
    with open(tmp_path / "leaderboards" / "tables.toml", "a") as manifest:
        manifest.write('\n[[leaderboard]]\nname = "smoke"\nsuite = "smoke"\nbudget = "smoke"\n')
    assert main(["tables", "--runs-dir", "no-checkpoints-here"]) == 0
    assert "vae-L1-k1" in (tmp_path / "leaderboards" / "smoke.md").read_text()
