"""Paper comparison tables: a paper's published numbers beside the measured ones.

The published numbers are data (``genbench/papers/<key>.toml``, package data, with their
citation); each column says which runs fill its measured cells (model, data set, and a metric
key that some metric declares) and each row which hyperparameters they must have. A measured
cell shows the mean over seeds of the largest budget that has results, with the one kind of ± of
``genbench.results.aggregate`` (3 or more seeds; with 2, both seeds' values; with 1, none), and
names that budget; it stays blank until a run exists.
"""

from __future__ import annotations

import tomllib
from importlib.resources import files
from pathlib import Path
from typing import Any

from tabulate import tabulate

from genbench.core.errors import GenbenchError
from genbench.metrics.columns import Column
from genbench.metrics.features import feature_label
from genbench.metrics.registry import METRICS, MetricSpec
from genbench.results.aggregate import budget_rank, cell, interval_legend
from genbench.results.db import ResultsDB
from genbench.results.external import is_external, model_label, run_label

PAPERS_DIR = Path(str(files("genbench") / "papers"))


def available_papers(papers_dir: Path = PAPERS_DIR) -> list[str]:
    return sorted(p.stem for p in papers_dir.glob("*.toml"))


def declared_column(key: str) -> tuple[MetricSpec, Column]:
    """The metric and column that declare the metric key ``key``, or one error listing the keys.

    A feature network's key (``fid_inception``) gets that network's concrete column: a paper's
    FID is only comparable with one measured in the same network's features."""
    for spec in METRICS.in_order():
        column = spec.column_of(key)
        if column is not None and column.per_network:
            net = column.pattern().fullmatch(key).group("net")
            return spec, column.for_network(net, feature_label(net))
        if column is not None:
            return spec, column
    valid = [c.key for spec in METRICS.in_order() for c in spec.columns]
    raise GenbenchError(f"no metric declares the key {key!r}; valid: {', '.join(valid)}")


def load_paper(key: str, papers_dir: Path = PAPERS_DIR) -> dict[str, Any]:
    path = papers_dir / f"{key}.toml"
    if not path.exists():
        raise GenbenchError(f"unknown paper {key!r}; valid: {', '.join(available_papers(papers_dir))}")
    paper = tomllib.loads(path.read_text())
    for column in paper["columns"]:
        try:
            declared_column(column["metric"])
        except GenbenchError as exc:
            raise GenbenchError(f"paper {key!r}, column {column.get('id')!r}: {exc}") from None
    return paper


#: keys of a row's ``match`` that select runs by their own fields; the others match the config
RUN_FIELDS = ("model", "dataset")


def _measured(runs: list[dict], column: dict, match: dict) -> tuple[str, str | None, list[dict]]:
    """The cell text, the budget that produced it and the runs it averages.

    Runs are selected by the column's model, data set and metric, with the row's ``match``
    overriding model/data set and naming hyperparameters; ``scale`` multiplies the value
    (-1 turns an NLL into the log-likelihood a paper reports, 100 a fraction into %).
    """
    wanted = {**{k: column.get(k) for k in RUN_FIELDS}, **{k: v for k, v in match.items() if k in RUN_FIELDS}}
    config = {k: v for k, v in match.items() if k not in RUN_FIELDS}
    metric = column["metric"]
    chosen = [r for r in runs if all(r[k] == v for k, v in wanted.items())
              and all(r["config"].get(k) == v for k, v in config.items()) and metric in r["metrics"]]
    if not chosen:
        return "", None, []
    budget = min((r["budget"] for r in chosen), key=budget_rank)
    chosen = [r for r in chosen if r["budget"] == budget]
    return _cell_text(chosen, column), budget, chosen


def _cell_text(runs: list[dict], column: dict) -> str:
    """The measured text of a paper column's metric over ``runs``, as the column scales and rounds it."""
    declared = declared_column(column["metric"])[1]
    if declared.layers:  # a count with its parts per layer (active units: "99 ± 4 (97+2)")
        return cell(runs, declared)
    return cell(runs, declared, column.get("scale", 1), column.get("digits", 2))


def _table_datasets(paper: dict) -> list[str]:
    """The data sets a paper's cells are measured on: its columns' and its rows' ``match``."""
    named = {c.get("dataset") for c in paper["columns"]} | {r.get("match", {}).get("dataset")
                                                           for r in paper["rows"]}
    return sorted(named - {None})


def external_section(paper: dict, runs: list[dict]) -> list[str]:
    """After the table: each external run on one of its data sets, with the table's metrics it has
    (the cells match zoo runs by model and config, so these have none)."""
    out = []
    for dataset in _table_datasets(paper):
        columns = [c for c in paper["columns"] if c.get("dataset") == dataset] or paper["columns"]
        unique: dict[tuple[str, float], dict] = {}  # one per metric as the table scales it
        for column in columns:
            unique.setdefault((column["metric"], column.get("scale", 1)), column)
        lines = []
        for run in sorted((r for r in runs if is_external(r) and r["dataset"] == dataset),
                          key=lambda r: r["name"]):
            values = [f"{_metric_label(c)} {_cell_text([run], c)}" for c in unique.values()
                      if c["metric"] in run["metrics"]]
            if values:
                lines.append(f"- `{run_label(run)}` ({model_label(run)}, suite {run['suite']}): "
                             f"{'; '.join(values)}")
        if lines:
            out += [f"External models on {dataset} (scored by `genbench score`, not trained by genbench; "
                    "not in the cells above):", "", *lines, ""]
    return out


def _metric_label(column: dict) -> str:
    """How the external section names a column's metric: the metric's own label, or, where the
    column rescales it (-1: a log-likelihood), the column's."""
    return declared_column(column["metric"])[1].label if column.get("scale", 1) == 1 else column["label"]


def _values(done: list[dict], key: str) -> str:
    recorded = {r["eval"].get(key) for r in done}
    return ", ".join(sorted({"all" if v is None else str(v) for v in recorded}, key=lambda v: (len(v), v)))


def _evaluation_text(paper: dict, done: list[dict]) -> str:
    """How the table's metrics were evaluated, from the runs' own recorded settings: each metric's
    declared ``table_text`` with the values its runs had."""
    specs = []
    for column in paper["columns"]:
        spec = declared_column(column["metric"])[0]
        if spec.table_text and spec not in specs:
            specs.append(spec)
    parts = []
    for spec in specs:
        values = {name: _values(done, name) for name in spec.settings}
        text = spec.table_text(values) if callable(spec.table_text) else spec.table_text.format(**values)
        if text not in parts:
            parts.append(text)
    return "; ".join(parts)


def interval_text(paper: dict, measured: list[list[tuple[str, str | None, list[dict]]]]) -> str:
    """What a measured cell's ± is, for the paper's columns (by their labels) and the cells' runs."""
    columns = [(column["label"], declared_column(column["metric"])[1]) for column in paper["columns"]]
    return interval_legend(columns, [chosen for row in measured for _, _, chosen in row if chosen])


def measured_cells(paper: dict, runs: list[dict]) -> list[list[tuple[str, str | None, list[dict]]]]:
    """Per row and column of the paper: the measured cell's text, its budget and the runs it averages
    (zoo runs only: external ones have their own section)."""
    runs = [r for r in runs if not is_external(r)]
    return [[_measured(runs, col, row["match"]) if row.get("match") else ("", None, [])
             for col in paper["columns"]] for row in paper["rows"]]


def row_label(paper: dict, row: dict) -> list[str]:
    """A row's label cells: its own, or the values of its ``row_keys``."""
    return list(row["label"]) if "label" in row else [row["match"][k] for k in paper["row_keys"]]


def chart_lines(paper: dict, chart: str | None) -> list[str]:
    """The embedded paper-vs-measured chart and what it shows (nothing without one)."""
    if chart is None:
        return []
    return [f"![{paper['title']}: published beside measured]({chart})", "",
            "The chart: in each column with a measured cell, each row's published number (×) beside the "
            "measured mean over seeds (•). With 3 or more seeds the bar is its 95% interval: mean ± t × "
            "s.e., the s.e. of the table's cells and t Student's quantile at the Welch–Satterthwaite "
            "degrees of freedom of its two parts (the seeds' spread, S − 1; the shared points' error, "
            "n − 1). With fewer seeds there is no bar: each seed's value is drawn (○). A count per "
            "layer a+b is drawn as its total.", ""]


def render_paper_table(key: str, db: ResultsDB, papers_dir: Path = PAPERS_DIR,
                       chart: str | None = None) -> str:
    """The paper's table, each cell ``paper / measured`` (measured blank until run); ``chart``, a
    relative link to its paper-vs-measured chart (``genbench.results.figures``), is shown below it."""
    paper = load_paper(key, papers_dir)
    everything = db.runs()
    measured = measured_cells(paper, everything)
    used = {r["id"]: r for row in measured for _, _, chosen in row for r in chosen}
    budgets_used = sorted({r["budget"] for r in used.values()}, key=budget_rank)
    tag_cells = len(budgets_used) > 1
    headers = [*paper["row_labels"], *(f"{col['label']} (paper / measured)" for col in paper["columns"])]
    rows = []
    for row, cells in zip(paper["rows"], measured, strict=True):
        line: list[Any] = row_label(paper, row)
        for col, (text, budget, _) in zip(paper["columns"], cells, strict=True):
            if text and tag_cells:
                text = f"{text} [{budget}]"
            published = row.get("paper", {}).get(col["id"], "–")  # the paper has no number there
            if isinstance(published, float):
                published = f"{published:.2f}"
            line.append(f"{published} / {text or '–'}")
        rows.append(line)
    out = [f"# {paper['title']}", "", f"Source: {paper['citation']}", "", paper["protocol"], "",
           tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), "",
           *chart_lines(paper, chart), *external_section(paper, everything)]
    if not budgets_used:
        suites = " or ".join(f"`genbench run --suite {name}`" for name in paper["suites"])
        return "\n".join([*out, f"No measured cells yet (–): run {suites}.", ""])
    out += ["Measured with:", ""]
    for b in budgets_used:
        done = [r for r in used.values() if r["budget"] == b]
        epochs = ", ".join(f"{e:g}" for e in sorted({r["train"]["epochs"] for r in done}))
        counts = sorted({len({r["seed"] for r in done if r["name"] == n}) for n in {r["name"] for r in done}})
        seeds = str(counts[0]) if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
        out.append(f"- budget `{b}`: {epochs} epoch(s) of training; {_evaluation_text(paper, done)}; "
                   f"{seeds} seed(s) per cell")
    out += ["", interval_text(paper, measured)]
    if "paper" not in budgets_used:
        out += ["", f"No measured cell used the paper's budget ({paper['paper_budget']}): no conclusion "
                "about whether the paper reproduces can be drawn from these cells, in either direction."]
    return "\n".join([*out, ""])
