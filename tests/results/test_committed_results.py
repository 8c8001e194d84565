"""The committed tables are rendered from the committed result records: ``genbench tables`` on a fresh
checkout (no database, no checkpoints) writes every published table and figure byte for byte as
committed, twice the same, and touches nothing else."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from genbench.cli import main
from genbench.core.errors import GenbenchError
from genbench.results.published import MANIFEST, read_manifest, render_published

PUBLISHED = Path(__file__).resolve().parents[2] / "leaderboards"


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory):
    """The committed published folder as a fresh clone has it, rendered once by `genbench tables`."""
    base = tmp_path_factory.mktemp("clone")
    shutil.copytree(PUBLISHED, base / "leaderboards")
    assert main(["tables", "--published", str(base / "leaderboards"), "--runs-dir", str(base / "runs")]) == 0
    return base


def test_genbench_tables_renders_the_committed_tables_byte_for_byte(fresh_clone):
    rendered, committed = tree(fresh_clone / "leaderboards"), tree(PUBLISHED)
    changed = sorted(name for name in committed if rendered.get(name) != committed[name])
    assert changed == [], f"{changed}: the committed tables are not what the archive renders: run " \
                          "`genbench tables` and commit what it writes"
    assert sorted(set(rendered) - set(committed)) == []  # nothing the repository does not have
    assert not (fresh_clone / "runs").exists()  # no runs folder, no database made


def test_rendering_twice_gives_the_same_bytes(fresh_clone):
    first = tree(fresh_clone / "leaderboards")
    assert main(["tables", "--published", str(fresh_clone / "leaderboards"),
                 "--runs-dir", str(fresh_clone / "runs")]) == 0
    assert tree(fresh_clone / "leaderboards") == first


def test_every_listed_table_is_committed_and_names_its_budget():
    for table in read_manifest(PUBLISHED):
        text = (PUBLISHED / f"{table.name}.md").read_text()
        assert text.startswith("# "), table
        if table.kind == "leaderboard":
            assert (PUBLISHED / f"{table.name}.csv").is_file()


def test_the_long_tables_show_the_archived_runs():
    long = (PUBLISHED / "mnist-long.md").read_text()
    for name, nll in (("iwae-L1-k5", "88.48"), ("vae-L1-k5", "89.19")):  # the records' mean NLLs
        assert re.search(rf"^\| {name} +\| long +\| {nll}\b", long, re.M), name


def test_tables_of_one_paper_render_that_papers_tables_alone(tmp_path, capsys):
    shutil.copytree(PUBLISHED, tmp_path / "leaderboards")
    assert main(["tables", "--paper", "iwae", "--published", str(tmp_path / "leaderboards"),
                 "--runs-dir", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out.split()
    assert sorted(Path(p).name for p in out if p.endswith(".md")) == ["paper-iwae-long.md", "paper-iwae.md"]
    assert main(["tables", "--paper", "pixelvae", "--published", str(tmp_path / "leaderboards")]) == 2
    assert "lists no table of it" in capsys.readouterr().err


def test_a_missing_or_oversized_list_of_tables_is_one_line(tmp_path):
    with pytest.raises(GenbenchError, match="no list of published tables here"):
        render_published(tmp_path, tmp_path / "runs")
    os.mkfifo(tmp_path / MANIFEST)  # never opened: reading would block
    with pytest.raises(GenbenchError, match="no list of published tables here"):
        render_published(tmp_path, tmp_path / "runs")
    (tmp_path / MANIFEST).unlink()
    (tmp_path / MANIFEST).write_text("# " + "x" * 70000)
    with pytest.raises(GenbenchError, match="over the limit"):
        render_published(tmp_path, tmp_path / "runs")


@pytest.mark.parametrize("manifest, said", [
    ('[[leaderboard]]\nname = "x"\nsuite = "mnist"\n', "needs exactly the keys"),
    ('[[leaderboard]]\nname = "x"\nsuite = "nope"\nbudget = "short"\n', "no built-in suite"),
    ('[[leaderboard]]\nname = "x"\nsuite = "mnist"\nbudget = "huge"\n', "has no budget"),
    ('[[paper]]\nname = "../x"\npaper = "iwae"\nbudget = "short"\n', "is not a name"),
    ('[[paper]]\nname = "x"\npaper = "nope"\nbudget = "short"\n', "no paper"),
    ('[[paper]]\nname = "x"\npaper = "iwae"\nbudget = "short"\n[[leaderboard]]\nname = "x"\n'
     'suite = "mnist"\nbudget = "short"\n', "given twice"),
    ('[[figure]]\nname = "x"\n', "unknown table kind"),
    ("name = [", "not TOML"),
])
def test_a_bad_list_of_tables_is_one_line(tmp_path, manifest, said):
    (tmp_path / MANIFEST).write_text(manifest)
    with pytest.raises(GenbenchError, match=said) as caught:
        render_published(tmp_path, tmp_path / "runs")
    assert "\n" not in str(caught.value)


def test_a_bad_record_in_the_archive_renders_nothing(tmp_path, capsys):
    folder = tmp_path / "leaderboards"
    shutil.copytree(PUBLISHED, folder)
    before = tree(folder)
    bad = next((folder / "archive").rglob("*.json"))
    bad.write_text(bad.read_text().replace('"status": "done"', '"status": NaN'))
    assert main(["tables", "--published", str(folder), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not strict JSON" in err[0]
    assert {k: v for k, v in tree(folder).items() if k != str(bad.relative_to(folder))} == \
        {k: v for k, v in before.items() if k != str(bad.relative_to(folder))}
