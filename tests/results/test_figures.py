"""Figures beside the leaderboards: what they show is checked against known pixels and values, their
bytes are reproducible, and they are drawn again only where their sources changed."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genbench.cli import main
from genbench.context import RunContext, SuiteRequest
from genbench.metrics.subsets import subset_index
from genbench.results import figures
from genbench.results.db import ResultsDB
from genbench.results.leaderboard import render_leaderboard
from genbench.results.paper_tables import render_paper_table
from genbench.results.pictures import save_pictures
from genbench.runner import run_suite
from genbench.suites import parse_suite
from tests.results.test_results import _fill

TINY_SUITE = """
name = "tiny"
description = "one VAE, a few steps"
dataset = "toy"
[budgets.smoke]
epochs = 0.2
k = 2
n_test = 50
[[runs]]
name = "vae"
model = "vae"
"""


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of every chunk of a PNG, read by hand (what any decoder would see)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        kind, payload = data[at + 4:at + 8], data[at + 8:at + 8 + length]
        assert zlib.crc32(kind + payload) == struct.unpack(">I", data[at + 8 + length:at + 12 + length])[0]
        chunks.append((kind, payload))
        at += 12 + length
    return chunks


def test_a_grid_places_each_image_two_pixels_apart_on_black():
    images = torch.stack([torch.full((1, 2, 3), v) for v in (0.0, 0.25, 0.5, 1.0)])  # 4 images of 2x3
    data = figures.grid_png(images, nrow=2)
    grid = np.asarray(Image.open(io.BytesIO(data)))
    assert grid.shape == (2 + 2 * (2 + 2), 2 + 2 * (3 + 2))  # gray: padding 2 around each image
    for i, value in enumerate((0, 64, 128, 255)):  # 0.25 * 255 = 63.75 rounds to 64
        row, col = divmod(i, 2)
        top, left = 2 + row * 4, 2 + col * 5
        assert (grid[top:top + 2, left:left + 3] == value).all()
    assert grid[0].max() == 0 and grid[:, 0].max() == 0
    rgb = figures.grid_png(torch.rand(3, 3, 4, 4))
    assert Image.open(io.BytesIO(rgb)).mode == "RGB"


def test_charts_have_reproducible_bytes_and_no_software_or_date_metadata(monkeypatch):
    import matplotlib

    rows = [{"epoch": e, "model": 100.0 / e, "model_steps": 50.0 * e} for e in (1.0, 2.0, 3.0)]
    first = figures.curve_png([(0, rows)], {figures.SOURCE_KEY: "abc"})
    monkeypatch.setitem(matplotlib.rcParams, "axes.facecolor", "red")  # a user's matplotlibrc
    monkeypatch.setitem(matplotlib.rcParams, "lines.linewidth", 5.0)
    assert first == figures.curve_png([(0, rows)], {figures.SOURCE_KEY: "abc"})
    chunks = png_chunks(first)
    texts = [payload for kind, payload in chunks if kind in (b"tEXt", b"zTXt", b"iTXt")]
    assert texts == [f"{figures.SOURCE_KEY}\0abc".encode()]
    assert {kind for kind, _ in chunks} <= {b"IHDR", b"pHYs", b"tEXt", b"IDAT", b"IEND"}
    image = Image.open(io.BytesIO(first))
    assert image.size == (round(2.3 * figures.DPI), round(1.8 * figures.DPI))
    assert len(first) < 40_000


def test_a_learning_curve_plots_losses_and_measured_values_not_counters_or_uncertainties():
    rows = [{"epoch": 1.0, "generator": 2.0, "generator_steps": 100.0, "critic": -1.0, "critic_steps": 500.0,
             "fid_lenet@2000": 200.0, "fid_lenet_se@2000": 3.0, "is_lenet@2000": 3.0,
             "is_lenet_std@2000": 0.1, "valid_elbo": -95.0}]
    losses, others = figures.curve_series(rows)
    assert losses == ["critic", "generator"]
    assert others == ["fid_lenet@2000", "is_lenet@2000", "valid_elbo"]
    assert figures.series_title("fid_lenet@2000") == "FID-LeNet ↓, 2000 samples"
    assert figures.series_title("valid_elbo") == "valid elbo"
    assert figures.curve_png([(0, [{"epoch": 1.0}])], {}) is None  # nothing to plot: no figure


def test_a_figure_is_drawn_again_only_where_its_source_changed(tmp_path):
    path, calls = tmp_path / "f.png", []

    def draw(text):
        calls.append(text)
        return figures.grid_png(torch.zeros(1, 1, 2, 2), text)

    assert figures.write_figure(path, {"a": 1}, draw) and len(calls) == 1
    assert figures.write_figure(path, {"a": 1}, draw) and len(calls) == 1
    assert figures.recorded_source(path) == figures.source_hash({"a": 1})
    assert figures.write_figure(path, {"a": 2}, draw) and len(calls) == 2
    assert not figures.write_figure(tmp_path / "none.png", {"a": 1}, lambda text: None)


@pytest.mark.parametrize(("value", "expected"), [(86.76, 86.76), (19, 19.0), ("16+5", 21.0), ("–", None),
                                                 (True, None), ("n/a", None)])
def test_a_published_number_for_the_chart(value, expected):
    assert figures.published_value(value) == expected


def test_the_paper_chart_puts_each_published_number_beside_the_measured_mean_and_interval(tmp_path, capsys):
    db = ResultsDB(tmp_path / "db.sqlite")
    _fill(db)  # vae-L1-k1: NLL 95 and 97 (2 seeds: no interval, both values); iwae-L2-k5: 93 (1 seed)
    from genbench.results.paper_tables import load_paper

    panels = dict(figures.paper_chart_panels(load_paper("iwae"), db.runs()))
    vae = {row: rest for row, *rest in panels["MNIST VAE NLL"]}
    assert vae["1, 1"] == [86.76, 96.0, None, [95.0, 97.0]]
    assert vae["2, 5"] == [85.01, None, None, []]
    assert {row: rest for row, *rest in panels["MNIST IWAE active"]}["2, 5"] == [26.0, 25.0, None, []]
    assert figures.paper_chart("iwae", db, tmp_path / "figures") == "paper-iwae.png"
    assert figures.paper_chart("vampprior", db, tmp_path / "figures") is None  # nothing measured
    out = tmp_path / "tables" / "paper-iwae.md"
    assert main(["tables", "--paper", "iwae", "--db", str(tmp_path / "db.sqlite"), "--out", str(out)]) == 0
    capsys.readouterr()
    chart = out.parent / "figures" / "paper-iwae.png"
    assert "](figures/paper-iwae.png)" in out.read_text() and Image.open(chart).format == "PNG"
    assert chart.read_bytes() == (tmp_path / "figures" / "paper-iwae.png").read_bytes()  # reproducible
    assert "![" not in render_paper_table("iwae", db)  # no chart asked for: none linked
    other = out.parent / "paper-iwae-long.md"  # another table of the same paper: its own chart
    assert main(["tables", "--paper", "iwae", "--db", str(tmp_path / "db.sqlite"), "--out", str(other)]) == 0
    capsys.readouterr()
    assert "](figures/paper-iwae-long.png)" in other.read_text()
    assert (out.parent / "figures" / "paper-iwae-long.png").exists()


class _Halver(torch.nn.Module):
    """Reconstructs x as x / 2: a closed form to find each original in the grid."""

    def reconstruct(self, x):
        return x.float() / 2


def test_reconstructions_show_a_seeded_random_subset_not_a_sorted_prefix(tmp_path):
    test = torch.arange(100).float().view(100, 1, 1, 1).expand(100, 1, 2, 2) / 100
    [path] = save_pictures(_Halver(), test, tmp_path, n=8, seed=3)
    grid = np.asarray(Image.open(path)).astype(float) / 255
    chosen = subset_index(100, 4, 3)
    assert chosen.tolist() != [0, 1, 2, 3]
    for i, index in enumerate(chosen.tolist()):  # 8 to a row: original, reconstruction, ...
        left = 2 + 2 * i * 4
        assert grid[2, left] == pytest.approx(round(index / 100 * 255) / 255)
        assert grid[2, left + 4] == pytest.approx(round(index / 200 * 255) / 255)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("tiny")
    suite = parse_suite(TINY_SUITE, "test")
    db = ResultsDB(base / "db.sqlite")
    [outcome] = run_suite(SuiteRequest(suite, suite.budget("smoke")),
                          RunContext(db, base / "runs", torch.device("cpu"), progress=False,
                                     log=lambda *_: None))
    assert outcome.status == "done"
    return base, suite, db


def test_the_leaderboard_embeds_its_runs_figures_drawn_from_checkpoint_and_curve(tiny_run, monkeypatch):
    base, suite, db = tiny_run
    md, _ = render_leaderboard(db, suite, base / "lb")
    text = md.read_text()
    samples = base / "lb" / "figures" / "tiny" / "vae-toy-smoke-samples.png"
    curve = base / "lb" / "figures" / "tiny" / "vae-toy-smoke-curve.png"
    assert "## Figures" in text and "![vae: samples](figures/tiny/vae-toy-smoke-samples.png)" in text
    assert "![vae: curve](figures/tiny/vae-toy-smoke-curve.png)" in text
    [run] = db.runs()
    own = np.asarray(Image.open(Path(run["run_dir"]) / "samples.png"))  # drawn when the run finished
    grid = np.asarray(Image.open(samples))
    assert grid.shape == (2 + 8 * (8 + 2),) * 2 and (grid == own).all()  # the checkpoint's samples again
    assert Image.open(curve).size[0] > 100 and samples.stat().st_size < 50_000
    before = {p: p.read_bytes() for p in (samples, curve)}
    for name in ("grid_png", "curve_png"):
        monkeypatch.setattr(figures, name, lambda *a, name=name, **k: pytest.fail(f"{name}: drawn again"))
    assert render_leaderboard(db, suite, base / "lb")[0].read_text() == text
    assert all(p.read_bytes() == data for p, data in before.items())


def test_a_row_whose_checkpoint_is_gone_keeps_its_figure_and_a_broken_one_costs_no_table(tiny_run, capsys):
    base, suite, db = tiny_run
    render_leaderboard(db, suite, base / "kept")
    [run] = db.runs()
    checkpoint = Path(run["run_dir"]) / "checkpoint.safetensors"
    saved = checkpoint.read_bytes()
    try:
        checkpoint.unlink()
        text = render_leaderboard(db, suite, base / "kept")[0].read_text()
        assert "figures/tiny/vae-toy-smoke-samples.png" in text  # the committed grid stays
        assert "samples.png" not in render_leaderboard(db, suite, base / "fresh")[0].read_text()
        checkpoint.write_bytes(b"not a checkpoint")
        text = render_leaderboard(db, suite, base / "broken")[0].read_text()
        assert "## Likelihood" in text and "vae-toy-smoke-samples" not in text
        assert "no sample grid for vae seed 0" in capsys.readouterr().err
    finally:
        checkpoint.write_bytes(saved)


@pytest.mark.parametrize("n, nrow, channels", [(4, 2, 1), (5, 3, 3), (7, 8, 1), (2, 1, 3)])
def test_the_grid_is_torchvisions_layout(n, nrow, channels):
    from torchvision.utils import make_grid

    from genbench.core.image_grid import image_grid

    images = torch.rand(n, channels, 3, 5)
    ours, theirs = image_grid(images, nrow), make_grid(images, nrow=nrow, padding=2, pad_value=0.0)
    assert torch.equal(ours.expand_as(theirs), theirs)  # torchvision repeats one channel to three
