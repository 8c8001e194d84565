"""Figures beside the numbers: sample grids, learning curves and paper-vs-measured charts as PNGs.

Every figure is made from the results database and the run checkpoints, and its bytes are
reproducible: charts are drawn by matplotlib's Agg backend at a fixed DPI from matplotlib's default
style (whatever the user's matplotlibrc says), grids are written by Pillow, and no PNG carries a
timestamp or a software version. A PNG records one text chunk, the hash of what it was drawn from
(``SOURCE_KEY``), so a figure whose sources did not change is not drawn again.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from genbench.core.errors import GenbenchError, log
from genbench.core.image_grid import grid_png
from genbench.core.rng import seeded_rng
from genbench.core.weights import atomic_write, file_sha256
from genbench.metrics.columns import Column
from genbench.metrics.features import feature_label
from genbench.metrics.registry import METRICS
from genbench.results.aggregate import seed_cell
from genbench.results.paper_tables import declared_column as paper_column
from genbench.results.paper_tables import load_paper, measured_cells, row_label

#: part of every figure's source hash: raise it when the drawing code changes, so all are redrawn
FIGURE_VERSION = 1
#: the PNG text chunk holding the hash of a figure's sources
SOURCE_KEY = "genbench-source"
DPI = 100
#: samples per grid (8 x 8)
GRID = 64
#: what the learning curve calls the update counter of an optimizer's loss ``name``: ``name_steps``
STEPS_SUFFIX = "_steps"
#: how a curve tells the seeds of a row apart where colours tell its losses apart
LINE_STYLES = ("-", "--", ":", "-.")
#: matplotlib settings over its default style
STYLE = {"font.size": 7, "axes.titlesize": 7, "axes.labelsize": 7, "legend.fontsize": 6,
         "xtick.labelsize": 6, "ytick.labelsize": 6, "axes.grid": True, "grid.alpha": 0.3,
         "figure.dpi": DPI, "savefig.dpi": DPI}


# --- writing ---------------------------------------------------------------------------------
def source_hash(source: object) -> str:
    """The hash a figure of ``source`` (JSON-able: values, file hashes) records."""
    text = json.dumps({"figure_version": FIGURE_VERSION, "source": source}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def recorded_source(path: Path) -> str | None:
    """The source hash a PNG written here records (None: no file, or not one of these)."""
    try:
        with Image.open(path) as image:
            return image.info.get(SOURCE_KEY)
    except (OSError, ValueError):
        return None


def write_figure(path: Path, source: object, draw: Callable[[dict[str, str]], bytes | None]) -> bool:
    """Write ``draw(text chunks)`` to ``path`` atomically unless the PNG there was drawn from the
    same ``source``; whether it exists now."""
    key = source_hash(source)
    if recorded_source(path) == key:
        return True
    data = draw({SOURCE_KEY: key})
    if data is None:
        return path.is_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: tmp.write_bytes(data))
    return True


def _chart_png(fig, text: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, backend="agg", metadata={"Software": None, **text})
    return buffer.getvalue()


def _figure(width: float, height: float):
    """A matplotlib Figure of its own (no pyplot state), in matplotlib's default style plus ``STYLE``."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _styled(draw: Callable[[], bytes | None]) -> bytes | None:
    import matplotlib
    import matplotlib.style

    with matplotlib.style.context("default"), matplotlib.rc_context(STYLE):
        return draw()


# --- sample grids --------------------------------------------------------------------------
@torch.no_grad()
def model_samples(model, seed: int, n: int = GRID) -> Tensor | None:
    """``n`` draws of the model's ``sample`` under ``seed`` (the caller's RNG left as it was), or
    None where the model does not sample."""
    from genbench.core.protocols import Sampler

    if not isinstance(model, Sampler):
        return None
    parameter = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
    was_training = getattr(model, "training", False)
    with seeded_rng(seed, parameter.device if parameter is not None else "cpu"):
        try:
            return model.eval().sample(n).float()
        finally:
            model.train(was_training)


def checkpoint_model(path: Path):
    """The model of a run's checkpoint on the CPU, built as training resumes it: the model and
    configuration its metadata names, then its weights (safetensors: nothing is unpickled)."""
    from genbench.core.models import MODELS
    from genbench.train.checkpoint import model_state, read_checkpoint

    meta, tensors, _ = read_checkpoint(path)
    try:
        model = MODELS[meta["model"]].build(meta["config"], tuple(meta["data_shape"]))
        model.load_state_dict(model_state(tensors))
    except (KeyError, TypeError, RuntimeError) as exc:
        raise GenbenchError(f"{path}: does not fit its model ({type(exc).__name__}: {exc})") from None
    return model.eval()


def run_sample_grid(run: dict, path: Path) -> bool:
    """The 8x8 grid of samples of a run's final checkpoint (seeded by the run's seed, drawn on the
    CPU) at ``path``; whether the figure exists now. A run without a checkpoint here keeps a grid
    drawn before (the committed one) and draws none."""
    from genbench.train.checkpoint import FILENAME

    checkpoint = Path(run["run_dir"]) / FILENAME if run.get("run_dir") else None
    if checkpoint is None or not checkpoint.is_file():
        return path.is_file()

    def draw(text):
        try:
            model = checkpoint_model(checkpoint)
        except GenbenchError as exc:
            log(f"no sample grid for {run['name']} seed {run['seed']}: {exc}")
            return None
        images = model_samples(model, run["seed"])
        return None if images is None else grid_png(images, text)

    source = {"kind": "samples", "checkpoint_sha256": file_sha256(checkpoint), "seed": run["seed"], "n": GRID}
    return write_figure(path, source, draw)


# --- learning curves -----------------------------------------------------------------------
def declared_column(key: str) -> Column | None:
    """The concrete declared column of a metric key (``fid_lenet`` is FID-LeNet's), or None."""
    for spec in METRICS.in_order():
        column = spec.column_of(key)
        if column is not None:
            if column.per_network:
                net = column.pattern().fullmatch(key).group("net")
                return column.for_network(net, feature_label(net))
            return column
    return None


def curve_series(rows: list[dict[str, float]]) -> tuple[list[str], list[str]]:
    """The keys a learning curve plots: the optimizers' losses (each has an update counter
    ``<loss>_steps`` beside it), and the other values measured per epoch (a validation ELBO, the
    FID of a GAN's samples: ``fid_lenet@2000``), without declared uncertainties or the counters."""
    keys = sorted({key for row in rows for key in row if key != "epoch"})
    losses = [key for key in keys if f"{key}{STEPS_SUFFIX}" in keys]
    counters = {f"{key}{STEPS_SUFFIX}" for key in losses}
    others = []
    for key in keys:
        if key in losses or key in counters:
            continue
        column = declared_column(key.split("@", 1)[0])
        if column is None or column.shown:
            others.append(key)
    return losses, others


def series_title(key: str) -> str:
    """How a curve panel names a value: its declared column's heading, with the sample count after @."""
    base, _, samples = key.partition("@")
    column = declared_column(base)
    title = column.heading() if column else base.replace("_", " ")
    return f"{title}, {samples} samples" if samples else title


def curve_png(curves: Sequence[tuple[int, list[dict[str, float]]]], text: dict[str, str]) -> bytes | None:
    """Loss per epoch, and each other value the curves measured per epoch in a panel of its own,
    one line per seed (``curves``: (seed, rows) pairs). None where there is nothing to plot."""
    rows = [row for _, seed_rows in curves for row in seed_rows]
    losses, others = curve_series(rows)
    panels = ([("training loss", losses)] if losses else []) + [(series_title(k), [k]) for k in others]
    if not panels:
        return None

    def draw():
        fig = _figure(2.3 * len(panels), 1.8)
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (title, keys) in zip(axes, panels, strict=True):
            for i, key in enumerate(keys):
                for j, (seed, seed_rows) in enumerate(curves):
                    points = [(r["epoch"], r[key]) for r in seed_rows if key in r and math.isfinite(r[key])]
                    if not points:
                        continue
                    xs, ys = zip(*points, strict=True)
                    if len(keys) > 1:  # the losses told apart by colour, the seeds by line style
                        label, colour, style = (key if j == 0 else None), f"C{i}", LINE_STYLES[j % 4]
                    else:
                        label, colour, style = (f"seed {seed}" if len(curves) > 1 else None), f"C{j}", "-"
                    ax.plot(xs, ys, marker="o", markersize=2.5, linewidth=1, color=colour, linestyle=style,
                            label=label)
            ax.set_title(title)
            ax.set_xlabel("epoch")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(frameon=False)
        return _chart_png(fig, text)

    return _styled(draw)


def run_curve(group: list[dict], curves: dict[int, list[dict[str, float]]], path: Path) -> bool:
    """The learning curve of a leaderboard row (all its seeds) at ``path``; whether it exists now."""
    seeds = sorted(((run["seed"], curves.get(run["id"], [])) for run in group), key=lambda sc: sc[0])
    seeds = [(seed, rows) for seed, rows in seeds if rows]
    if not seeds:
        return path.is_file()
    return write_figure(path, {"kind": "curve", "curves": seeds}, lambda text: curve_png(seeds, text))


# --- paper charts --------------------------------------------------------------------------
def published_value(value: object) -> float | None:
    """A paper's number as a float: a count per layer ``"16+5"`` is its total; text is None."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?(\+\d+(\.\d+)?)*", value):
        return sum(float(part) for part in value.split("+"))
    return None


#: the confidence of a paper chart's intervals
CHART_LEVEL = 0.95

ChartPoint = tuple[str, float | None, float | None, float | None, list[float]]
"""A paper chart's row in one column: (row label, published, measured mean, half-width of its 95%
interval or None, the seeds' values where there is no interval)."""


def paper_chart_png(title: str, panels: list[tuple[str, list[ChartPoint]]],
                    text: dict[str, str], row_title: str = "") -> bytes | None:
    """One panel per paper column with a measured cell: each row's published number (a black cross)
    beside the measured mean (a blue dot) and its 95% interval, or, where the row has too few seeds
    for one, each seed's value (hollow circles). ``panels``: (column label, [ChartPoint]);
    ``row_title`` names the row labels. None where nothing is measured."""
    panels = [(label, points) for label, points in panels if any(p[2] is not None for p in points)]
    if not panels:
        return None

    def draw():
        ncols = min(4, len(panels))
        nrows = math.ceil(len(panels) / ncols)
        n_rows = max(len(points) for _, points in panels)
        fig = _figure(2.4 * ncols, nrows * (0.6 + 0.2 * n_rows) + 0.3)
        axes = fig.subplots(nrows, ncols, squeeze=False).flatten()
        for ax, (label, points) in zip(axes, panels, strict=False):
            ys = range(len(points))
            for y, (_, published, mean, half, seeds) in zip(ys, points, strict=True):
                if published is not None:
                    ax.plot(published, y, "x", color="black", markersize=4, label="paper")
                if mean is not None:
                    ax.errorbar(mean, y, xerr=half if half else None, fmt="o", color="C0", markersize=3,
                                capsize=2, linewidth=1,
                                label="measured mean, 95% interval (3+ seeds)")
                if seeds:
                    ax.plot(seeds, [y] * len(seeds), "o", markerfacecolor="none", color="C0", markersize=4,
                            linewidth=0, label="each seed (fewer than 3: no interval)")
            ax.set_yticks(list(ys), [row for row, *_ in points])
            ax.set_ylim(len(points) - 0.5, -0.5)
            ax.set_title(label)
        for ax in axes[::ncols]:
            ax.set_ylabel(row_title)
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        unique = {}
        for ax in axes[:len(panels)]:
            for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
                unique.setdefault(name, handle)
        fig.legend(unique.values(), unique.keys(), loc="outside lower center", ncols=2, frameon=False)
        fig.suptitle(title, fontsize=7)
        return _chart_png(fig, text)

    return _styled(draw)


def paper_chart_panels(paper: dict, runs: list[dict]) -> list[tuple[str, list[ChartPoint]]]:
    """The points of a paper's chart: per column, each row's published number and the measured mean
    over seeds with its 95% interval (3 or more seeds: the cell's s.e. times Student's t at its
    Welch-Satterthwaite degrees of freedom), or with fewer seeds their values and no interval."""
    cells = measured_cells(paper, runs)
    panels = []
    for j, column in enumerate(paper["columns"]):
        declared = paper_column(column["metric"])[1]
        points: list[ChartPoint] = []
        for row, row_cells in zip(paper["rows"], cells, strict=True):
            found = seed_cell(row_cells[j][2], declared, column.get("scale", 1))
            half = found.interval.half_width(CHART_LEVEL) if found and found.interval else None
            seeds = list(found.values) if found and not found.interval and len(found.values) > 1 else []
            label = ", ".join(str(v) for v in row_label(paper, row))
            points.append((label, published_value(row.get("paper", {}).get(column["id"])),
                           found.mean if found else None, half, seeds))
        panels.append((column["label"], points))
    return panels


def paper_chart(key: str, db, folder: Path, name: str | None = None) -> str | None:
    """The paper-vs-measured chart of paper ``key`` as ``folder/<name>.png`` (default
    ``paper-<key>``): its file name, or None where no cell is measured yet (no chart)."""
    paper = load_paper(key)
    panels = paper_chart_panels(paper, db.runs())
    if not any(point[2] is not None for _, points in panels for point in points):
        return None
    path = Path(folder) / f"{name or f'paper-{key}'}.png"
    row_title = ", ".join(paper.get("row_labels", []))
    source = {"kind": "paper", "paper": key, "title": paper["title"], "rows": row_title, "panels": panels}
    exists = write_figure(path, source, lambda text: paper_chart_png(paper["title"], panels, text, row_title))
    return path.name if exists else None
