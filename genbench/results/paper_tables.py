"""Paper comparison tables: a paper's published numbers beside the measured ones.

The published numbers are data (``leaderboards/papers/<key>.toml``, with their citation);
each column says which runs fill its measured cells (model, data set, metric) and each row
which hyperparameters they must have. A measured cell shows the mean over seeds of the
largest budget that has results and names that budget; it stays blank until a run exists.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from tabulate import tabulate

from genbench.errors import GenbenchError
from genbench.results.aggregate import budget_rank, summarize
from genbench.results.db import ResultsDB

PAPERS_DIR = Path(__file__).resolve().parents[2] / "leaderboards" / "papers"


def available_papers(papers_dir: Path = PAPERS_DIR) -> list[str]:
    return sorted(p.stem for p in papers_dir.glob("*.toml"))


def load_paper(key: str, papers_dir: Path = PAPERS_DIR) -> dict[str, Any]:
    path = papers_dir / f"{key}.toml"
    if not path.exists():
        raise GenbenchError(f"unknown paper {key!r}; valid: {', '.join(available_papers(papers_dir))}")
    return tomllib.loads(path.read_text())


def _measured(runs: list[dict], column: dict, match: dict) -> tuple[str, str | None]:
    """The cell text and the budget that produced it."""
    chosen = [r for r in runs if r["model"] == column["model"] and r["dataset"] == column["dataset"]
              and all(r["config"].get(k) == v for k, v in match.items())
              and column["metric"] in r["metrics"]]
    if not chosen:
        return "", None
    budget = min((r["budget"] for r in chosen), key=budget_rank)
    chosen = [r for r in chosen if r["budget"] == budget]
    metric = column["metric"]
    if metric == "active_units":
        layers = sorted(m for m in chosen[0]["metrics"] if m.startswith("active_units_l"))
        names = layers or [metric]
        text = "+".join(f"{summarize([r['metrics'][m] for r in chosen]).mean:.0f}" for m in names)
    else:
        text = summarize([r["metrics"][metric] for r in chosen]).format(2)
    return text, budget


def render_paper_table(key: str, db: ResultsDB, papers_dir: Path = PAPERS_DIR) -> str:
    paper = load_paper(key, papers_dir)
    runs = db.runs()
    headers = list(paper["row_labels"])
    for col in paper["columns"]:
        headers += [f"{col['label']} (paper)", f"{col['label']} (measured)"]
    budgets_used: set[str] = set()
    rows = []
    for row in paper["rows"]:
        cells: list[Any] = [row["match"][k] for k in paper["row_keys"]]
        for col in paper["columns"]:
            text, budget = _measured(runs, col, row["match"])
            if budget:
                budgets_used.add(budget)
                text = f"{text} [{budget}]"
            cells += [row["paper"].get(col["id"], ""), text]
        rows.append(cells)
    budget_lines = []
    for b in sorted(budgets_used, key=budget_rank):
        examples = [r for r in runs if r["budget"] == b]
        epochs = sorted({r["train"]["epochs"] for r in examples})
        ks = sorted({r["eval"]["k"] for r in examples})
        ns = sorted({r["eval"]["n_test"] or "all" for r in examples}, key=str)
        seeds = max(len({r["seed"] for r in examples if r["name"] == n})
                    for n in {r["name"] for r in examples})
        budget_lines.append(f"- [{b}] {', '.join(f'{e:g}' for e in epochs)} epochs; NLL with "
                            f"k = {', '.join(map(str, ks))} on {', '.join(map(str, ns))} test "
                            f"points; up to {seeds} seed(s)")
    out = [f"# {paper['title']}", "", f"Source: {paper['citation']}", "", paper["protocol"], "",
           tabulate(rows, headers=headers, tablefmt="github"), ""]
    if budget_lines:
        out += ["Measured cells are tagged with the budget that produced them:", "", *budget_lines, ""]
        if "paper" not in budgets_used:
            out += ["None of the measured cells used the paper's 3280-epoch budget: the gap to "
                    "the published numbers is expected and is not a reproduction failure.", ""]
    else:
        out += ["No measured cells yet: run `genbench run --suite mnist`.", ""]
    return "\n".join(out)
