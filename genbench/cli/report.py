"""``genbench report``: a static HTML report of the results database (``genbench.report``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from genbench.cli import flags
from genbench.core.errors import GenbenchError


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="a static HTML report of the results database",
                       description="Write DIR/index.html: every suite's leaderboard (sortable tables), "
                       "each run's samples, reconstructions and learning curves, the paper tables with "
                       "their charts, and the provenance of every number. One self-contained file "
                       "(images inlined, no network) that opens from the file system; its figures are "
                       "kept in DIR/figures.")
    p.add_argument("--out", type=Path, default=flags.DEFAULT_RUNS_DIR / "report",
                   help="folder of the report (default runs/report)")
    flags.db(p, "results database")


def command(args: argparse.Namespace) -> int:
    from genbench.report import write_report
    from genbench.results.db import ResultsDB
    from genbench.runner import prepare_folder

    if not Path(args.db).is_file():
        raise GenbenchError(f"--db {args.db}: no results database there (genbench run writes one)")
    prepare_folder(args.out, "--out")
    path = write_report(ResultsDB(args.db), args.out)
    print(f"report: {path} (open it in a browser: {path.resolve().as_uri()})")
    return 0

