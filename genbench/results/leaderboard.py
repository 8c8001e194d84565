"""Suite leaderboards rendered from the database: ``leaderboards/<suite>.md`` and ``.csv``.

One row per run name and budget: mean ± std over seeds, the number of seeds, the budget and
the date, so a table never hides how little training produced a number.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tabulate import tabulate

from genbench.core.weights import atomic_write
from genbench.data import DATASETS
from genbench.metrics.columns import Column, networks
from genbench.metrics.features import feature_label, feature_net_provenance
from genbench.metrics.registry import METRICS
from genbench.results.aggregate import budget_rank, cell, layered_cell, summarize
from genbench.results.db import ResultsDB
from genbench.results.external import is_external, model_label, run_label
from genbench.suites import Suite
from genbench.train.loop import EPOCHS_TRAINED

#: the column of how many samples a row's sample-quality values had (FID depends on it)
SAMPLES = "IS/FID samples"


def metric_columns(runs: list[dict]) -> list[Column]:
    """The shown columns every metric declares, in registry order; a per-network column once for
    each feature network the runs were scored with (FID-LeNet and FID-Inception are not comparable)."""
    keys = {key for run in runs for key in run["metrics"]}
    columns: list[Column] = []
    for spec in METRICS.in_order():
        columns += [c for c in spec.columns if c.shown and not c.per_network]
        per_network = [c for c in spec.columns if c.shown and c.per_network]
        for net in networks(spec.columns, keys):
            columns += [c.for_network(net, feature_label(net)) for c in per_network]
    return columns


def error_legend(columns: list[Column]) -> str:
    """What ± means in the cells: the spread over seeds, or a single run's own uncertainty."""
    kinds: dict[str, list[str]] = {}
    for column in columns:
        if column.error:
            kinds.setdefault(column.error_kind, []).append(column.label)
    own = "; ".join(f"{', '.join(labels)}: {kind}" for kind, labels in kinds.items())
    text = "A cell is the mean ± std over seeds where its row has several (`seeds`)"
    return text + (f"; with one seed, the value ± its own uncertainty ({own})." if own else ".")


def _emits(spec_name: str, group: list[dict]) -> bool:
    """Whether any run of ``group`` has a value of metric ``spec_name``."""
    spec = METRICS[spec_name]
    return any(spec.column_of(key) for run in group for key in run["metrics"])


def leaderboard_frame(db: ResultsDB, suite: Suite) -> pd.DataFrame:
    runs = db.runs(suite=suite.name)
    order = {entry.name: i for i, entry in enumerate(suite.runs)}
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for run in runs:
        groups.setdefault((run["name"], run["dataset"], run["budget"]), []).append(run)
    several_datasets = len({key[1] for key in groups}) > 1
    columns = metric_columns(runs)
    rows = []
    for (_, dataset, budget_name), group in sorted(
        groups.items(), key=lambda kv: (budget_rank(kv[0][2]), order.get(kv[0][0], 1e9), kv[0][0], kv[0][1])
    ):
        row = {"run": run_label(group[0]), "model": model_label(group[0])}
        if several_datasets:
            row["data"] = dataset
        row["budget"] = budget_name
        for column in columns:
            row[column.label] = (layered_cell(group, column.key, column.layers, column.error, column.digits)
                                 if column.layers else
                                 cell(group, column.key, column.error, column.scale, column.digits))
        row["seeds"] = len(group)
        row["epochs"] = "" if is_external(group[0]) else _epochs(group)
        evaluation = group[0]["eval"]
        row["NLL k / test pts"] = (f"{evaluation['k']} / {evaluation['n_test'] or 'all'}"
                                   if _emits("nll", group) else "")
        row[SAMPLES] = str(evaluation.get("quality_samples", "")) if _emits("sample_quality", group) else ""
        row["train (s)"] = ("" if is_external(group[0])
                            else f"{sum(r['train_seconds'] or 0 for r in group) / len(group):.0f}")
        row["date"] = max(r["finished_at"] or "" for r in group)[:10]
        rows.append(row)
    frame = pd.DataFrame(rows)
    unused = [label for label in [c.label for c in columns] + [SAMPLES]
              if label in frame and not frame[label].any()]
    return frame.drop(columns=unused)


def _epochs(group: list[dict]) -> str:
    """The epochs the row's runs trained: their budget's, or fewer where early stopping ended them."""
    epochs = f"{group[0]['train']['epochs']:g}"
    stopped = summarize([r["metrics"][EPOCHS_TRAINED] for r in group if EPOCHS_TRAINED in r["metrics"]])
    if stopped and stopped.mean < group[0]["train"]["epochs"]:  # early stopping ended them sooner
        return f"{stopped.mean:.3g} of {epochs}"
    return epochs


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
    return [f"- `{n}`: {DATASETS[n].summary}" for n in names]


def render_leaderboard(db: ResultsDB, suite: Suite, out_dir: Path) -> tuple[Path, Path]:
    frame = leaderboard_frame(db, suite)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / f"{suite.name}.csv", out_dir / f"{suite.name}.md"
    atomic_write(csv_path, lambda tmp: frame.to_csv(tmp, index=False))  # several runners may finish at once
    budgets = sorted(set(frame["budget"]) if len(frame) else [], key=budget_rank)
    lines = [
        f"# Leaderboard: {suite.name}",
        "",
        suite.description,
        "",
        f"Generated by `genbench run --suite {suite.name}` from the results database. "
        + error_legend(metric_columns(db.runs(suite=suite.name))) + " Data sets:",
        "",
        *_dataset_lines(db.runs(suite=suite.name), suite),
        "",
        "Budgets in this table:",
        "",
    ]
    lines += [f"- {suite.budgets[b].describe()}" for b in budgets if b in suite.budgets]
    if any(entry.budgets for entry in suite.runs):
        lines += ["", "Some runs override their budget's epochs or k (their papers train longer or their "
                  "evaluation costs more): each row's `epochs` and `NLL k / test pts` are what it had."]
    if "paper" not in budgets:
        lines += ["", "**No row here was trained with the paper's budget.** Short CPU budgets "
                  "stop far from the published numbers, and no conclusion about whether a paper "
                  "reproduces can be drawn from them; `genbench tables` sets them side by side."]
    lines += ["", tabulate(frame, headers="keys", tablefmt="github", showindex=False,
                             disable_numparse=True)
              if len(frame) else "(no finished runs yet)", ""]
    lines += [f"- {note}" for note in suite.notes]
    keys = {key for run in db.runs(suite=suite.name) for key in run["metrics"]}
    nets = sorted({net for spec in METRICS.in_order() for net in networks(spec.columns, keys)})
    lines += [f"- Feature network {feature_net_provenance(net)}." for net in nets]
    lines += external_lines(db.runs(suite=suite.name))
    skipped = skipped_lines(db, suite)
    if skipped:
        lines += ["", "Metrics that apply to a model but were not computed, and why:", "", *skipped]
    atomic_write(md_path, lambda tmp: tmp.write_text("\n".join(lines) + "\n"))
    return md_path, csv_path
