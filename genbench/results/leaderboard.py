"""Suite leaderboards rendered from the database: ``leaderboards/<suite>.md`` and ``.csv``.

One row per run name and budget: mean ± std over seeds, the number of seeds, the budget and
the date, so a table never hides how little training produced a number.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tabulate import tabulate

from genbench.results.aggregate import active_units_by_layer, budget_rank, summarize
from genbench.results.db import ResultsDB
from genbench.suites import Suite

#: metric name -> (column label, decimals, scale), in display order; a column no row has is left out
COLUMNS = {
    "nll": ("NLL (nats)", 2, 1),
    "bits_per_dim": ("bits/dim", 3, 1),
    "elbo": ("test ELBO (nats)", 2, 1),
    "active_units": ("active units", 0, 1),
    "surgery_avg_kl": ("avg KL (train)", 2, 1),
    "surgery_mutual_info": ("mutual info", 2, 1),
    "surgery_marginal_kl": ("marginal KL", 2, 1),
    "beta_vae_score": ("beta-VAE score (%)", 1, 100),
    "factor_vae_score": ("FactorVAE score (%)", 1, 100),
    "mig": ("MIG", 3, 1),
}

#: sample-quality metric prefix -> (name, unit, decimals, scale); each feature network gets its own
#: columns, named after it (FID-LeNet and FID-Inception are not comparable)
QUALITY_COLUMNS = {
    "is": ("IS", "", 2, 1),
    "fid": ("FID", "", 2, 1),
    "kid": ("KID", "", 3, 1),
    "precision": ("precision", "", 3, 1),
    "recall": ("recall", "", 3, 1),
}
FEATURE_LABELS = {"lenet": "LeNet", "inception": "Inception"}
#: the column of how many samples a row's sample-quality values had (FID depends on it)
SAMPLES = "IS/FID samples"


def metric_columns(runs: list[dict]) -> dict[str, tuple[str, int, float]]:
    """COLUMNS plus the sample-quality columns of every feature network the runs were scored with."""
    nets = sorted({name.removeprefix("fid_") for r in runs for name in r["metrics"]
                   if name.startswith("fid_")})
    quality = {f"{prefix}_{net}": (f"{name}-{FEATURE_LABELS.get(net, net)}{unit}", digits, scale)
               for net in nets for prefix, (name, unit, digits, scale) in QUALITY_COLUMNS.items()}
    return COLUMNS | quality


def leaderboard_frame(db: ResultsDB, suite: Suite) -> pd.DataFrame:
    runs = db.runs(suite=suite.name)
    order = {entry.name: i for i, entry in enumerate(suite.runs)}
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for run in runs:
        groups.setdefault((run["name"], run["dataset"], run["budget"]), []).append(run)
    several_datasets = len({key[1] for key in groups}) > 1
    columns = metric_columns(runs)
    rows = []
    for (name, dataset, budget_name), group in sorted(
        groups.items(), key=lambda kv: (budget_rank(kv[0][2]), order.get(kv[0][0], 1e9), kv[0][0], kv[0][1])
    ):
        row = {"run": name, "model": group[0]["model"]}
        if several_datasets:
            row["data"] = dataset
        row["budget"] = budget_name
        for metric, (label, digits, scale) in columns.items():
            summary = summarize([scale * r["metrics"][metric] for r in group if metric in r["metrics"]])
            row[label] = summary.format(digits) if summary else ""
        by_layer = active_units_by_layer(group)
        if by_layer:
            row[COLUMNS["active_units"][0]] += f" ({by_layer})"
        row["seeds"] = len(group)
        row["epochs"] = f"{group[0]['train']['epochs']:g}"
        stopped = summarize([r["metrics"]["epochs_trained"] for r in group
                             if "epochs_trained" in r["metrics"]])
        if stopped and stopped.mean < group[0]["train"]["epochs"]:  # early stopping ended them sooner
            row["epochs"] = f"{stopped.mean:.3g} of {row['epochs']}"
        evaluation = group[0]["eval"]
        has_nll = any("nll" in r["metrics"] for r in group)
        row["NLL k / test pts"] = f"{evaluation['k']} / {evaluation['n_test'] or 'all'}" if has_nll else ""
        scored = any(name.startswith("fid_") for r in group for name in r["metrics"])
        row[SAMPLES] = str(evaluation.get("quality_samples", "")) if scored else ""
        row["train (s)"] = f"{sum(r['train_seconds'] or 0 for r in group) / len(group):.0f}"
        row["date"] = max(r["finished_at"] or "" for r in group)[:10]
        rows.append(row)
    frame = pd.DataFrame(rows)
    unused = [label for label in [label for label, *_ in columns.values()] + [SAMPLES]
              if label in frame and not frame[label].any()]
    return frame.drop(columns=unused)


def skipped_lines(db: ResultsDB, suite: Suite) -> list[str]:
    """One line per run name and metric that applied but was left out, with the reason
    (of its newest run: reasons may quote per-seed values)."""
    seen: dict[tuple[str, str], str] = {}
    for run in db.runs(suite=suite.name):  # newest first
        for metric, reason in run["skipped"].items():
            seen.setdefault((run["name"], metric), reason)
    return [f"- `{name}`: {metric} left out: {reason}" for (name, metric), reason in sorted(seen.items())]


def _dataset_lines(frame: pd.DataFrame, suite: Suite) -> list[str]:
    from genbench.data import DATASETS

    names = sorted(set(frame["data"])) if "data" in frame else [suite.dataset]
    return [f"- `{n}`: {DATASETS[n].summary}" for n in names]


def render_leaderboard(db: ResultsDB, suite: Suite, out_dir: Path) -> tuple[Path, Path]:
    frame = leaderboard_frame(db, suite)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / f"{suite.name}.csv", out_dir / f"{suite.name}.md"
    frame.to_csv(csv_path, index=False)
    budgets = sorted(set(frame["budget"]) if len(frame) else [], key=budget_rank)
    lines = [
        f"# Leaderboard: {suite.name}",
        "",
        suite.description,
        "",
        f"Generated by `genbench run --suite {suite.name}` from the results database; mean ± std "
        "over seeds where there are several. Data sets:",
        "",
        *_dataset_lines(frame, suite),
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
                  "stop far from the published numbers; `genbench tables` sets them side by side."]
    lines += ["", tabulate(frame, headers="keys", tablefmt="github", showindex=False,
                             disable_numparse=True)
              if len(frame) else "(no finished runs yet)", ""]
    lines += [f"- {note}" for note in suite.notes]
    skipped = skipped_lines(db, suite)
    if skipped:
        lines += ["", "Metrics that apply to a model but were not computed, and why:", "", *skipped]
    md_path.write_text("\n".join(lines) + "\n")
    return md_path, csv_path
