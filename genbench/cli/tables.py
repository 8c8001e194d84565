"""``genbench tables --paper KEY``: a paper's table, published numbers beside measured ones."""

from __future__ import annotations

import argparse
from pathlib import Path

from genbench.cli import flags


def add_parser(sub) -> None:
    p = sub.add_parser("tables", help="paper comparison tables",
                       description="A paper's table with its published numbers beside "
                       "the measured ones from the results database.")
    p.add_argument("--paper", required=True, type=flags.name_of("--paper"),
                   help="paper key (see genbench list)")
    flags.db(p, "results database")
    p.add_argument("--out", type=Path, help="also write the table to this file, and its "
                   "paper-vs-measured chart to figures/paper-<key>.png beside it (embedded in it)")


def command(args: argparse.Namespace) -> int:
    from genbench.results.db import ResultsDB
    from genbench.results.paper_tables import render_paper_table

    db = ResultsDB(args.db)
    chart = None
    if args.out:  # the chart beside the file, named after it, linked relative to it
        from genbench.results.figures import paper_chart
        from genbench.results.leaderboard import FIGURES_DIR

        args.out.parent.mkdir(parents=True, exist_ok=True)
        name = paper_chart(args.paper, db, args.out.parent / FIGURES_DIR, name=args.out.stem)
        chart = f"{FIGURES_DIR}/{name}" if name else None
    text = render_paper_table(args.paper, db, chart=chart)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0

