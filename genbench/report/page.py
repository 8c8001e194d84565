"""The report page: every suite's leaderboard, each row's figures and provenance, the paper tables.

The leaderboards and paper tables are the markdown ``genbench run`` and ``genbench tables`` write,
converted (``genbench.report.markdown``); the figures are theirs too, drawn into ``<out>/figures``
(and not drawn again while their sources are unchanged), then inlined into the page as data URIs.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from PIL import Image

import genbench
from genbench.core.weights import atomic_write
from genbench.metrics.features import feature_net_provenance
from genbench.metrics.registry import feature_networks
from genbench.report.assets import CSS, SCRIPT
from genbench.report.markdown import table_html, to_html
from genbench.report.nearest import NEAREST_FILE
from genbench.results import figures
from genbench.results.db import ResultsDB
from genbench.results.external import is_external, run_label
from genbench.results.leaderboard import (
    FIGURES_DIR,
    leaderboard_markdown,
    row_figures,
    row_groups,
    shown_runs,
)
from genbench.results.paper_tables import available_papers, render_paper_table
from genbench.suites import SUITES, Suite

#: the largest image file inlined into the page (a bigger one is named, not shown)
MAX_INLINE_BYTES = 4 << 20
#: what each image kind's caption says
CAPTIONS = {
    "samples": "samples: 64 draws of the first seed's final checkpoint",
    "reconstructions": "reconstructions: random test images (seeded), each followed by its reconstruction",
    "curve": "learning curve: loss per epoch, and what was measured per epoch, one line per seed",
    "nearest": "copying: 16 samples of the first seed, each followed by its nearest training image in the "
               "copying tests' feature space (identical pairs are copies)",
}


def image_tag(path: Path, alt: str, css: str = "") -> str:
    """An <img> of the PNG at ``path`` inlined as a data URI, with its size; the alt text where the
    file is missing, not a PNG or too big to inline."""
    try:
        data = path.read_bytes()
        if len(data) > MAX_INLINE_BYTES:
            raise ValueError(f"{len(data)} bytes")
        with Image.open(path) as image:
            if image.format != "PNG":
                raise ValueError(f"{image.format}, not PNG")
            width, height = image.size
    except (OSError, ValueError) as exc:
        return f'<span class="muted">[{html.escape(alt)}: not shown ({html.escape(str(exc))})]</span>'
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    klass = f' class="{css}"' if css else ""
    return f'<img{klass} src="{uri}" alt="{html.escape(alt)}" width="{width}" height="{height}">'


def _resolver(base: Path):
    """How the converted markdown's images are shown: the file relative to ``base``, inlined."""
    def resolve(src: str, alt: str) -> str:
        path = (base / src).resolve()
        if base.resolve() not in path.parents:  # only files the report wrote beside itself
            return html.escape(alt)
        return image_tag(path, alt)
    return resolve


def _anchor(*parts: str) -> str:
    return "-".join("".join(ch if ch.isalnum() else "_" for ch in part) for part in parts)


def _settings_text(values: dict) -> str:
    shown = sorted((k, v) for k, v in values.items() if k != "cache_root")  # where files were: not a setting
    return ", ".join(f"{k}={'none' if v is None else v}" for k, v in shown)


def provenance_rows(group: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Where each number of a leaderboard row came from, one column per seed: run key, model and
    configuration, data, budget, training and evaluation settings, versions, device and times."""
    group = sorted(group, key=lambda r: r["seed"])
    fields = [
        ("run key", lambda r: r["run_key"]),
        ("seed", lambda r: str(r["seed"])),
        ("model", lambda r: r["model"]),
        ("config", lambda r: json.dumps(r["config"], sort_keys=True)),
        ("data set", lambda r: r["dataset"]),
        ("budget", lambda r: r["budget"]),
        ("training", lambda r: _settings_text(r["train"])),
        ("evaluation", lambda r: _settings_text(r["eval"])),
        ("versions", lambda r: ", ".join(f"{k} {v}" for k, v in sorted(r["versions"].items()))),
        ("device", lambda r: r["device"] or ""),
        ("started / finished", lambda r: f"{r['started_at']} / {r['finished_at'] or ''}"),
        ("train / eval seconds", lambda r: f"{r['train_seconds'] or 0:.1f} / {r['eval_seconds'] or 0:.1f}"),
        ("run directory", lambda r: r["run_dir"] or ""),
        ("external", lambda r: json.dumps(r["external"], sort_keys=True) if is_external(r) else ""),
    ]
    header = ["", *(f"seed {r['seed']}" for r in group)]
    rows = [[name, *(get(r) for r in group)] for name, get in fields]
    return header, [row for row in rows if any(row[1:])]


def run_card(group: list[dict], found: dict[str, Path], out_dir: Path) -> str:
    """One leaderboard row: its figures (samples, the first seed's reconstructions and copying figure,
    the curves) and the provenance of its runs."""
    first = min(group, key=lambda r: r["seed"])
    images = dict(found)
    if first.get("run_dir") and not is_external(first):
        for kind, name in (("reconstructions", "reconstructions.png"), ("nearest", NEAREST_FILE)):
            if (Path(first["run_dir"]) / name).is_file():
                images[kind] = Path(first["run_dir"]) / name
    name = run_label(first)
    pictures = "".join(
        f'<figure>{image_tag(images[kind], f"{name}: {kind}", "grid" if kind != "curve" else "")}'
        f"<figcaption>{html.escape(CAPTIONS[kind])}</figcaption></figure>"
        for kind in ("samples", "reconstructions", "nearest", "curve") if kind in images)
    header, rows = provenance_rows(group)
    seeds = len(group)
    anchor = _anchor("run", first["suite"], first["name"], first["dataset"], first["budget"])
    return (f'<section class="run" id="{anchor}">'
            f"<h4>{html.escape(name)} <span class=\"muted\">{html.escape(first['dataset'])} · "
            f"{html.escape(first['budget'])} · {seeds} seed{'s' if seeds > 1 else ''}</span></h4>"
            f'<div class="figures">{pictures or "<span class=muted>no figures</span>"}</div>'
            f"{table_html(header, rows, lambda src, alt: html.escape(alt), css='provenance')}</section>")


def suite_section(db: ResultsDB, suite: Suite, out_dir: Path) -> str:
    """A suite's leaderboard (its split, sortable tables and footers) and one card per row."""
    text, _ = leaderboard_markdown(db, suite, out_dir, with_figures=False)
    groups = row_groups(shown_runs(db, suite), suite)
    found = row_figures(db, groups, out_dir / FIGURES_DIR / suite.name)
    cards = "".join(run_card(group, figs, out_dir) for group, figs in zip(groups, found, strict=True))
    return (f'<section id="{_anchor("suite", suite.name)}">{to_html(text, _resolver(out_dir), shift=1)}'
            f"<h3>Runs</h3>{cards}</section>")


def paper_section(key: str, db: ResultsDB, out_dir: Path) -> str:
    chart = figures.paper_chart(key, db, out_dir / FIGURES_DIR)
    text = render_paper_table(key, db, chart=f"{FIGURES_DIR}/{chart}" if chart else None)
    return f'<section id="{_anchor("paper", key)}">{to_html(text, _resolver(out_dir), shift=1)}</section>'


def provenance_section(db: ResultsDB) -> str:
    """What the whole page was made with: genbench, the runs' versions and devices, feature networks."""
    runs = db.runs()
    versions = sorted({", ".join(f"{k} {v}" for k, v in sorted(r["versions"].items())) for r in runs})
    devices = sorted({r["device"] for r in runs if r["device"]})
    nets = feature_networks(key for run in runs for key in run["metrics"])
    items = [f"<li>report written by genbench {html.escape(genbench.__version__)} from "
             f"<code>{html.escape(db.path.name)}</code>: {len(runs)} finished run(s), the newest finished "
             f"{html.escape(max((r['finished_at'] or '' for r in runs), default='') or 'never')}</li>",
             *(f"<li>runs made with {html.escape(v)}</li>" for v in versions),
             f"<li>devices: {html.escape(', '.join(devices) or 'none recorded')}</li>",
             *(f"<li>feature network {html.escape(feature_net_provenance(net))}</li>" for net in nets)]
    return f'<section id="provenance"><h2>Provenance</h2><ul>{"".join(items)}</ul></section>'


def report_html(db: ResultsDB, out_dir: Path, suites: list[str] | None = None) -> str:
    """The page: a section per suite with finished runs (or the named ``suites``), the paper tables,
    the provenance of the whole."""
    present = {run["suite"] for run in db.runs()}
    names = suites or [name for name in SUITES if name in present]
    body = [suite_section(db, SUITES[name], out_dir) for name in names]
    papers = available_papers()
    body.append('<section id="papers"><h2>Paper tables</h2>'
                + "".join(paper_section(key, db, out_dir) for key in papers) + "</section>")
    body.append(provenance_section(db))
    links = [*(f'<a href="#{_anchor("suite", n)}">{html.escape(n)}</a>' for n in names),
             '<a href="#papers">paper tables</a>', '<a href="#provenance">provenance</a>']
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
            f"<title>genbench report</title><style>{CSS}</style></head><body>"
            "<header><h1>genbench report</h1><p class=\"muted\">Static page made by "
            "<code>genbench report</code> from the results database: click a column header to sort a "
            "table. Every number says its budget; "
            "each run's settings and versions are under its figures.</p>"
            f"<nav>{''.join(links)}</nav></header><main>{''.join(body)}</main>"
            f"<script>{SCRIPT}</script></body></html>\n")


def write_report(db: ResultsDB, out_dir: Path, suites: list[str] | None = None) -> Path:
    """Write ``out_dir/index.html`` (its figures under ``out_dir/figures``); its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    page = report_html(db, out_dir, suites)
    path = out_dir / "index.html"
    atomic_write(path, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return path
