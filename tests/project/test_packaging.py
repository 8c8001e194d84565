"""A normal (not editable) install carries everything genbench reads at run time."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


#: what a build must not see: earlier builds (a stale build/lib would mask missing package data),
#: environments, results
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", ".tox", "build", "dist", "*.egg-info", "runs",
                                    "__pycache__", ".ruff_cache", ".pytest_cache")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source, out = tmp_path_factory.mktemp("source") / "genbench", tmp_path_factory.mktemp("wheel")
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out),
                            str(source)], capture_output=True, text=True, timeout=600)
    if build.returncode != 0:
        pytest.fail(f"building the wheel failed:\n{build.stderr[-2000:]}")
    [path] = out.glob("genbench-*.whl")
    return path


@pytest.mark.slow
def test_the_wheel_holds_the_suites_the_papers_and_the_zoo_entry_point(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        text = archive.read(entry_points).decode()
    papers = {p.name for p in (ROOT / "genbench" / "papers").glob("*.toml")}
    suites = {p.name for p in (ROOT / "genbench" / "suites").glob("*.toml")}
    assert papers and {f"genbench/papers/{name}" for name in papers} <= names
    assert suites and {f"genbench/suites/{name}" for name in suites} <= names
    assert "[genbench.zoo]" in text and "zoo = zoo:ENTRIES" in text
    assert "zoo/__init__.py" in names and not any(n.startswith("tests/") for n in names)


@pytest.mark.slow
def test_an_installed_wheel_renders_a_paper_table_and_lists_the_zoo(wheel, tmp_path):
    """Installed into a folder of its own (its dependencies are this environment's) and run from
    outside the source tree, so nothing can come from the checkout."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target),
                    str(wheel)], check=True, capture_output=True, timeout=600)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "PYTHONSAFEPATH": "1"}

    def genbench(*args: str) -> str:
        command = "import sys, genbench.cli; sys.exit(genbench.cli.main())"
        out = subprocess.run([sys.executable, "-c", command, *args], cwd=elsewhere, env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        return out.stdout

    location = subprocess.run([sys.executable, "-c", "import genbench; print(genbench.__file__)"],
                              cwd=elsewhere, env=env, capture_output=True, text=True, check=True).stdout
    assert location.startswith(str(target))
    table = genbench("tables", "--paper", "iwae", "--db", str(tmp_path / "db.sqlite"))
    assert "IWAE paper, Table 1" in table and "86.76 / –" in table
    listing = genbench("list")
    models, papers = listing.split("models:")[1].split("datasets:")[0], listing.split("papers:")[1]
    assert "vae " in models and "wgan-gp " in models and "iwae" in papers and "vampprior" in papers
