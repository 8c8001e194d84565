"""``genbench tables``: the published tables rendered from the archive of result records, or one paper's
table, published numbers beside measured ones, from a results database."""

from __future__ import annotations

import argparse
from pathlib import Path

from genbench.cli import flags
from genbench.core.errors import GenbenchError


def add_parser(sub) -> None:
    p = sub.add_parser("tables", help="the published tables, from the archive; a paper's table",
                       description="Without --db: render the published tables (every one that "
                       "leaderboards/tables.toml lists, or with --paper that paper's) from the result "
                       "records in leaderboards/archive/ into leaderboards/: the same records give the same "
                       "bytes on any checkout. With --db: print a paper's table, its published numbers "
                       "beside the measured ones of that database (and write it to --out).")
    p.add_argument("--paper", type=flags.name_of("--paper"), help="paper key (see genbench list)")
    flags.db(p, "render from this results database instead of the archive (with --paper)", optional=True)
    p.add_argument("--out", type=Path, help="write the table to this file, and its paper-vs-measured chart "
                   "to figures/<file name>.png beside it (embedded in it)")
    flags.published(p)
    flags.runs_dir(p)


def command(args: argparse.Namespace) -> int:
    if args.db is None and args.out is None:
        return _published(args)
    if args.paper is None:
        raise GenbenchError("--db and --out render one paper's table: give --paper KEY")
    if args.db is None:
        raise GenbenchError("--out writes a table of your own results database: give --db too (the "
                            "published tables are rendered without --db and --out)")
    return _one_paper(args)


def _published(args: argparse.Namespace) -> int:
    from genbench.results.published import render_published

    if not args.published.is_dir():
        raise GenbenchError(f"--published {args.published}: not a folder")
    written = render_published(args.published, args.runs_dir, paper=args.paper)
    for path in written:
        print(f"rendered {path}")
    return 0


def _one_paper(args: argparse.Namespace) -> int:
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
