"""Suite leaderboards rendered from the database: ``leaderboards/<suite>.md`` and ``.csv``, and their
figures in ``leaderboards/figures/<suite>/``.

One row per run name, data set and budget: each cell the mean over seeds with its one kind of ±
(``genbench.results.aggregate``), the number of seeds, the budget and the date, so a table never
hides how little training produced a number. The markdown splits the rows by what they can be
compared on: one table per metric group (``genbench.metrics.columns.GROUPS``; each metric's
declaration names its group), holding the rows that have numbers there, and one sample-quality
table per set of reference images (a FID against binarized test images never sorts beside one
against 8-bit images), then a bookkeeping table of every row and the figures (sample grids,
learning curves). The CSV keeps every column in one table, the reference images among them.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from genbench.core.errors import log
from genbench.core.names import inside
from genbench.core.weights import atomic_write
from genbench.data import DATASETS
from genbench.metrics.columns import ARROWS, GROUPS, Column, Group, networks
from genbench.metrics.comparable import comparable_view
from genbench.metrics.features import feature_label, feature_net_provenance
from genbench.metrics.fid_protocols import matching_protocol
from genbench.metrics.registry import METRICS, MetricSpec, feature_networks, per_network_keys
from genbench.results import figures
from genbench.results.aggregate import budget_rank, cell, interval_legend, split_size
from genbench.results.db import ResultsDB
from genbench.results.external import is_external, model_label, run_label
from genbench.suites import Suite
from genbench.train.loop import EPOCHS_TRAINED

#: the column of how many samples a row's sample-quality values had (FID depends on it)
SAMPLES = "IS/FID samples"
#: the column of the importance samples and test points of a row's NLL
K_TEST = "NLL k / test pts"
#: the column of the feature networks a row's sample-quality values were computed in
FEATURES = "feature net"
#: the column of the real images a row's samples were compared with; the markdown has a table for each
REFERENCE = "reference images"
#: the column naming the FID protocol (``genbench.metrics.fid_protocols``) whose settings a row had
PROTOCOL = "FID protocol"
#: beside a group's metric columns, the columns saying what its numbers were measured on
CONTEXT = {"likelihood": (K_TEST,), "sample_quality": (FEATURES, SAMPLES, PROTOCOL)}
#: the group whose rows are split into one table per set of reference images
BY_REFERENCE = "sample_quality"
#: the columns naming a row in every table (``data`` only where the suite's rows mix data sets)
IDENTITY = ("run", "data", "budget")
BOOKKEEPING = Group("bookkeeping", "Bookkeeping", "what produced each row: its model, budget, seeds, "
                    "epochs, mean training and evaluation seconds per seed, the date it finished and its "
                    "runs' keys (the first 8 characters name each run directory)")
BOOKKEEPING_COLUMNS = ("run", "model", "data", "budget", "seeds", "epochs", "train (s)", "eval (s)", "date",
                       "run keys")
#: the folder (under the leaderboards folder) the figures are written in
FIGURES_DIR = "figures"


def spec_columns(runs: list[dict]) -> list[tuple[MetricSpec, Column]]:
    """The shown columns every metric declares, with their metric, in registry order; a per-network
    column once for each feature network the runs were scored with (FID-LeNet and FID-Inception are
    not comparable)."""
    keys = {key for run in runs for key in run["metrics"]}
    columns: list[tuple[MetricSpec, Column]] = []
    for spec in METRICS.in_order():
        columns += [(spec, c) for c in spec.columns if c.shown and not c.per_network]
        per_network = [c for c in spec.columns if c.shown and c.per_network]
        for net in networks(spec.columns, per_network_keys(keys)):
            columns += [(spec, c.for_network(net, feature_label(net))) for c in per_network]
    return columns


def metric_columns(runs: list[dict]) -> list[Column]:
    """The shown columns of ``spec_columns``, without their metrics."""
    return [column for _, column in spec_columns(runs)]


def reference_images(run: dict) -> str:
    """The real images a run's samples were scored against, as its record says: how many, of which
    data set (as its models see it: binarized or 8-bit) and split."""
    settings = run["eval"]
    split = str(settings.get("quality_split", "test"))
    total = split_size(run, split)
    wanted = settings.get("quality_reference")
    n = total if wanted is None or (total is not None and wanted >= total) else wanted
    summary = f": {DATASETS[run['dataset']].summary}" if run["dataset"] in DATASETS else ""
    return f"{n if n is not None else 'all'} `{run['dataset']}` {split} images{summary}"


def _emits(spec_name: str, group: list[dict]) -> bool:
    """Whether any run of ``group`` has a value of metric ``spec_name``."""
    spec = METRICS[spec_name]
    return any(spec.column_of(key) for run in group for key in run["metrics"])


def _budget_lines(runs: list[dict], suite: Suite, budgets: list[str]) -> list[str]:
    """Each budget of the table as its rows recorded it, with the settings of the metrics they have."""
    lines = []
    for budget in budgets:
        group = [run for run in runs if run["budget"] == budget and not is_external(run)]
        if budget not in suite.budgets or not group:
            continue
        recorded = suite.budgets[budget].as_recorded([run["eval"] for run in group],
                                                     [run["train"]["epochs"] for run in group])
        emitted = [spec.name for spec in METRICS.in_order() if _emits(spec.name, group)]
        lines.append(recorded.describe(emitted))
    return lines


def row_groups(runs: list[dict], suite: Suite) -> list[list[dict]]:
    """The runs of each leaderboard row (one run name, data set and budget), in table order: budgets
    from the largest, then the suite's order of runs."""
    order = {entry.name: i for i, entry in enumerate(suite.runs)}
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for run in runs:
        groups.setdefault((run["name"], run["dataset"], run["budget"]), []).append(run)
    ordered = sorted(groups.items(), key=lambda kv: (budget_rank(kv[0][2]), order.get(kv[0][0], 1e9),
                                                     kv[0][0], kv[0][1]))
    return [group for _, group in ordered]


def _feature_nets(group: list[dict]) -> str:
    """The feature networks the row's values were computed in, by their table labels."""
    nets = feature_networks(key for run in group for key in run["metrics"])
    return ", ".join(feature_label(net) for net in nets)


def _protocols(group: list[dict]) -> str:
    """The FID protocol of each feature network the row's sample quality was computed in, by the
    settings its first run recorded ("none" where they are no preset's)."""
    first, evaluation = group[0], group[0]["eval"]
    nets = feature_networks((key for run in group for key in run["metrics"]), group="sample_quality")
    found = [matching_protocol(first["dataset"], net, evaluation.get("quality_split", "test"),
                               evaluation.get("quality_reference"), evaluation.get("quality_samples"))
             for net in nets]
    return ", ".join(name or "none" for name in found)


def shown_runs(db: ResultsDB, suite: Suite) -> list[dict]:
    """The suite's runs with each value under the column it may be shown in
    (``genbench.metrics.comparable``: a loose AIS NLL or a density's NLL never ranks with the
    discrete NLLs; the rule applies to a row's seeds together)."""
    shown = []
    for group in row_groups(db.runs(suite=suite.name), suite):
        views = comparable_view([run["metrics"] for run in group])
        shown += [{**run, "metrics": view} for run, view in zip(group, views, strict=True)]
    return shown


def leaderboard_frame(db: ResultsDB, suite: Suite) -> pd.DataFrame:
    """Every row with every column (the CSV): metric columns by their labels, then the bookkeeping."""
    runs = shown_runs(db, suite)
    groups = row_groups(runs, suite)
    several_datasets = len({group[0]["dataset"] for group in groups}) > 1
    columns = metric_columns(runs)
    rows = []
    for group in groups:
        first = group[0]
        row = {"run": run_label(first), "model": model_label(first)}
        if several_datasets:
            row["data"] = first["dataset"]
        row["budget"] = first["budget"]
        for column in columns:
            row[column.label] = cell(group, column)
        row["seeds"] = len(group)
        row["epochs"] = "" if is_external(first) else _epochs(group)
        evaluation = first["eval"]
        row[K_TEST] = (f"{evaluation.get('k')} / {evaluation.get('n_test') or 'all'}" if _emits("nll", group)
                      else "")
        quality = _emits("sample_quality", group)
        row[SAMPLES] = str(evaluation.get("quality_samples", "")) if quality else ""
        row[FEATURES] = _feature_nets(group) if quality else ""
        row[REFERENCE] = reference_images(first) if quality else ""
        row[PROTOCOL] = _protocols(group) if quality else ""
        row["train (s)"] = "" if is_external(first) else _mean_seconds(group, "train_seconds")
        row["eval (s)"] = _mean_seconds(group, "eval_seconds")
        row["date"] = max(r["finished_at"] or "" for r in group)[:10]
        row["run keys"] = ", ".join(sorted(_short_key(r) for r in group))
        rows.append(row)
    frame = pd.DataFrame(rows)
    unused = [label for label in [c.label for c in columns] + [SAMPLES, FEATURES, REFERENCE, PROTOCOL]
              if label in frame and not frame[label].any()]
    return frame.drop(columns=unused)


def _mean_seconds(group: list[dict], field: str) -> str:
    values = [r[field] for r in group if r[field] is not None]
    return f"{sum(values) / len(values):.0f}" if values else ""


def _short_key(run: dict) -> str:
    """How the bookkeeping table names a run: its key's first 8 characters (its run directory's
    suffix); an external result's key is its suite, data set and name, shown whole."""
    return run["run_key"] if is_external(run) else run["run_key"][:8]


def _epochs(group: list[dict]) -> str:
    """The epochs the row's runs trained: their budget's, or fewer where early stopping ended them."""
    epochs = f"{group[0]['train']['epochs']:g}"
    stopped = [r["metrics"][EPOCHS_TRAINED] for r in group if EPOCHS_TRAINED in r["metrics"]]
    mean = statistics.fmean(stopped) if stopped else None
    if mean is not None and mean < group[0]["train"]["epochs"]:  # early stopping ended them sooner
        return f"{mean:.3g} of {epochs}"
    return epochs


@dataclass(frozen=True)
class Table:
    """One table of a leaderboard: its group and its rows, headers as shown (unit, direction), and
    the reference images all its rows were scored against (sample quality; "" elsewhere)."""

    group: Group
    frame: pd.DataFrame
    reference: str = ""

    @property
    def title(self) -> str:
        return f"{self.group.title} against {self.reference}" if self.reference else self.group.title


def leaderboard_tables(frame: pd.DataFrame, runs: list[dict]) -> list[Table]:
    """The wide frame split by what the rows compare on: one table per metric group with the rows
    that have a number there (and the columns that have one), the sample-quality rows in one table
    per set of reference images, then the bookkeeping of every row."""
    if not len(frame):
        return []
    identity = [c for c in IDENTITY if c in frame]
    by_group: dict[str, list[Column]] = {}
    for spec, column in spec_columns(runs):
        if column.label in frame:
            by_group.setdefault(spec.group, []).append(column)
    tables = []
    for group in GROUPS:
        columns = by_group.get(group.name, [])
        labels = [c.label for c in columns]
        if not labels:
            continue
        has_numbers = (frame[labels] != "").any(axis=1)
        if not has_numbers.any():
            continue
        context = [c for c in CONTEXT.get(group.name, ()) if c in frame]
        chosen = frame.loc[has_numbers]
        references = chosen[REFERENCE] if group.name == BY_REFERENCE and REFERENCE in frame else None
        for reference in (list(dict.fromkeys(references)) if references is not None else [""]):
            rows = chosen if references is None else chosen[references == reference]
            rows = rows[identity + labels + context]
            rows = rows.drop(columns=[c for c in labels + context if not rows[c].any()])
            headings = {c.label: c.heading() for c in columns}
            tables.append(Table(group, rows.rename(columns=headings), reference))
    tables.append(Table(BOOKKEEPING, frame[[c for c in BOOKKEEPING_COLUMNS if c in frame]]))
    return tables


def markdown_table(frame: pd.DataFrame) -> str:
    return tabulate(frame, headers="keys", tablefmt="github", showindex=False, disable_numparse=True)


def external_lines(runs: list[dict]) -> list[str]:
    """The footer of a leaderboard with external rows: what they are, and each one's provenance."""
    external = [r for r in runs if is_external(r)]
    if not external:
        return []
    lines = ["", "Rows marked `(external)` were scored by `genbench score` (their model and weights came "
             "from outside genbench), not trained by genbench: their `model` is the code reference, "
             "their budget `external`; no epochs or training time.", ""]
    for run in sorted(external, key=lambda r: (r["name"], r["dataset"])):
        meta = run["external"]
        code_sha = f" (sha256 {meta['code_sha256'][:12]})" if "code_sha256" in meta else ""
        code = f"`{meta['code']}`{code_sha}"
        init = f", --init {' '.join(meta['init'])}" if meta.get("init") else ""
        lines.append(f"- `{run['name']}` on {run['dataset']}: weights `{Path(meta['weights']).name}` "
                     f"sha256 {meta['weights_sha256'][:12]}, code {code}{init}; "
                     f"scored {(run['finished_at'] or '')[:10]}")
    return lines


def skipped_lines(db: ResultsDB, suite: Suite) -> list[str]:
    """One line per run name and metric that applied but was left out, with the reason
    (of its newest run: reasons may quote per-seed values)."""
    seen: dict[tuple[str, str], str] = {}
    for run in db.runs(suite=suite.name):  # newest first
        for metric, reason in run["skipped"].items():
            seen.setdefault((run["name"], metric), reason)
    return [f"- `{name}`: {metric} left out: {reason}" for (name, metric), reason in sorted(seen.items())]


def _dataset_lines(runs: list[dict], suite: Suite) -> list[str]:
    """The data sets the rows ran on (read from the runs: a suite run with --dataset used another
    than the suite file names); the suite's own where there are no rows yet."""
    names = sorted({run["dataset"] for run in runs}) or [suite.dataset]
    return [f"- `{n}`: {DATASETS[n].summary if n in DATASETS else 'a data set this genbench does not know'}"
            for n in names]


def _figure_name(group: list[dict], kind: str) -> str:
    first = group[0]
    parts = (first["name"], first["dataset"], first["budget"], kind)
    return "-".join(re.sub(r"[^\w.+-]", "_", part) for part in parts) + ".png"


def _draw_row_figures(db: ResultsDB, group: list[dict], folder: Path) -> dict[str, Path]:
    """One row's figures: ``samples``, the grid of its first seed's checkpoint, and ``curve``, the
    learning curves of its seeds (none for an external row: no checkpoint, no training)."""
    if is_external(group[0]):
        return {}
    first = min(group, key=lambda r: r["seed"])
    curves = {run["id"]: db.curve(run["id"]) for run in group}
    draws = {"samples": lambda path: figures.run_sample_grid(first, path),
             "curve": lambda path: figures.run_curve(group, curves, path)}
    found = {}
    for kind, draw in draws.items():
        path = folder / _figure_name(group, kind)
        try:
            if draw(path):
                found[kind] = path
        except Exception as exc:  # a figure that cannot be drawn never costs the table
            log(f"no {kind} figure for {group[0]['name']}: {type(exc).__name__}: {exc}")
    return found


def row_figures(db: ResultsDB, groups: list[list[dict]], folder: Path) -> list[dict[str, Path]]:
    """Each row's figures in ``folder``, drawn where their sources changed; a figure that cannot be
    drawn is left out with a line on stderr."""
    return [_draw_row_figures(db, group, folder) for group in groups]


def figure_lines(groups: list[list[dict]], found: list[dict[str, Path]], base: Path) -> list[str]:
    """The figures section: a table of each row's sample grid and learning curve, linked relative
    to ``base`` (the markdown file's folder)."""
    rows = []
    for group, figs in zip(groups, found, strict=True):
        if figs:
            name = run_label(group[0])
            rows.append([name] + [f"![{name}: {kind}]({figs[kind].relative_to(base).as_posix()})"
                                  if kind in figs else "" for kind in ("samples", "curve")])
    if not rows:
        return []
    text = ("Samples: 64 draws of each row's `sample` from its first seed's final checkpoint (seeded by "
            "that seed, drawn on the CPU; binary models draw binary pixels). Learning curves: each "
            "optimizer's mean training loss per epoch, and what was measured at each epoch end (a "
            "validation ELBO, the FID and IS of a GAN's samples on fewer samples than the final "
            "columns), one line per seed. `genbench run` redraws them from the database and the "
            "checkpoints where their sources changed; a row whose checkpoint is not on this machine "
            "keeps its figure.")
    return ["", "## Figures", "", text, "",
            tabulate(rows, headers=["run", "samples", "learning curve"], tablefmt="github",
                     disable_numparse=True), ""]


def leaderboard_markdown(db: ResultsDB, suite: Suite, out_dir: Path, with_figures: bool = True,
                         source: str | None = None) -> tuple[str, pd.DataFrame]:
    """The leaderboard's markdown (its figures written under ``out_dir/figures/<suite>`` and linked
    relative to ``out_dir``) and the wide frame of its CSV. ``source``: the sentence that says
    where its rows came from (default: a local results database)."""
    runs = shown_runs(db, suite)
    frame = leaderboard_frame(db, suite)
    budgets = sorted(set(frame["budget"]) if len(frame) else [], key=budget_rank)
    shown = [(column.label, column) for column in metric_columns(runs) if column.label in frame]
    arrows = f"{ARROWS['lower']} lower is better, {ARROWS['higher']} higher is better, no arrow: a diagnostic"
    lines = [
        f"# Leaderboard: {suite.name}",
        "",
        suite.description,
        "",
        (source or f"Generated by `genbench run --suite {suite.name}` from the results database.")
        + " The rows are split "
        "by what they can be compared on: a table per kind of metric holds the rows that have numbers "
        "there, and the bookkeeping table says what produced every row. Headers give the unit and "
        f"which direction is better ({arrows}); sample quality has a table per set of reference images "
        "(values against different images are not comparable). The CSV beside this file has every "
        "column in one table. " + interval_legend(shown, row_groups(runs, suite)) + " Data sets:",
        "",
        *_dataset_lines(runs, suite),
        "",
        "Budgets in this table:",
        "",
    ]
    lines += [f"- {line}" for line in _budget_lines(runs, suite, budgets)]
    if any(entry.budgets for entry in suite.runs):
        lines += ["", "Some runs override their budget's epochs or k (their papers train longer or their "
                  "evaluation costs more): each row's `epochs` (bookkeeping) and `NLL k / test pts` "
                  "(likelihood) are what it had."]
    if "paper" not in budgets:
        lines += ["", "**No row here was trained with the paper's budget.** Short CPU budgets "
                  "stop far from the published numbers, and no conclusion about whether a paper "
                  "reproduces can be drawn from them; `genbench tables` sets them side by side."]
    tables = leaderboard_tables(frame, runs)
    if not tables:
        lines += ["", "(no finished runs yet)"]
    for table in tables:
        summary = table.group.summary
        lines += ["", f"## {table.title}", "", f"{summary[0].upper()}{summary[1:]}.", "",
                  markdown_table(table.frame)]
    lines += [""]
    lines += [f"- {note}" for note in suite.notes]
    nets = feature_networks(key for run in runs for key in run["metrics"])
    lines += [f"- Feature network {feature_net_provenance(net)}." for net in nets]
    lines += external_lines(runs)
    skipped = skipped_lines(db, suite)
    if skipped:
        lines += ["", "Metrics that apply to a model but were not computed, and why:", "", *skipped]
    if with_figures and len(frame):
        groups = row_groups(runs, suite)
        folder = inside(out_dir, out_dir / FIGURES_DIR / suite.name)
        lines += figure_lines(groups, row_figures(db, groups, folder), out_dir)
    return "\n".join(lines) + "\n", frame


def render_leaderboard(db: ResultsDB, suite: Suite, out_dir: Path) -> tuple[Path, Path]:
    """Write ``<suite>.md``, ``<suite>.csv`` and the figures they show into ``out_dir`` (and nowhere else:
    a suite name that would put them elsewhere is refused before anything is written)."""
    csv_path, md_path = (inside(out_dir, out_dir / f"{suite.name}{ext}") for ext in (".csv", ".md"))
    out_dir.mkdir(parents=True, exist_ok=True)
    text, frame = leaderboard_markdown(db, suite, out_dir)
    atomic_write(csv_path, lambda tmp: frame.to_csv(tmp, index=False))  # several runners may finish at once
    atomic_write(md_path, lambda tmp: tmp.write_text(text))
    return md_path, csv_path
