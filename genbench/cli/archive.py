"""``genbench archive RUNS_DIR``: the done results under a runs folder, into the archive the published
tables are rendered from (``genbench.results.archive``); the explicit step between a run and a
published table."""

from __future__ import annotations

import argparse
from pathlib import Path

from genbench.cli import flags


def add_parser(sub) -> None:
    p = sub.add_parser("archive",
                       help="put done results into the archive the published tables render from",
                       description="Read every result.json under RUNS_DIR (what each run directory holds) "
                       "and write each done run's record into leaderboards/archive/<suite>/<budget>/, "
                       "without what held only on this machine (paths, host). A record archived before adds "
                       "nothing; a different record under a run's name is refused and nothing is written. "
                       "Then `genbench tables` renders the published tables from the archive.")
    p.add_argument("runs_dir", type=Path, metavar="RUNS_DIR")
    p.add_argument("--suite", type=flags.name_of("--suite"), help="only the runs of this suite")
    p.add_argument("--budget", type=flags.name_of("--budget"), help="only the runs of this budget")
    flags.published(p)


def command(args: argparse.Namespace) -> int:
    from genbench.results.archive import ARCHIVE_DIR, archive_results

    archive = args.published / ARCHIVE_DIR
    report = archive_results(args.runs_dir, archive, suite=args.suite, budget=args.budget)
    print(f"archived {len(report.added)} new record(s) from {args.runs_dir} into {archive}; "
          f"{report.known} archived before; {report.left} left out (failed, or another suite or budget)")
    for path in report.added:
        print(f"  {path}")
    if report.added:
        print(f"next: genbench tables --published {args.published}, then commit {archive} and the tables")
    return 1 if report.unreadable else 0
