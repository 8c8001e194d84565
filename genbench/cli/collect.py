"""``genbench collect RUNS_DIR``: the results sweep jobs wrote, recorded in the database once each."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from genbench.cli import flags
from genbench.core.errors import GenbenchError


def add_parser(sub) -> None:
    p = sub.add_parser("collect", help="ingest the results sweep jobs wrote into the database",
                       description="Read every result.json under RUNS_DIR (what sweep jobs wrote into "
                       "their run directories) and record each in the results database exactly once: a "
                       "result recorded before adds nothing. Re-renders the leaderboards of the suites "
                       "that gained results into --leaderboards (to publish results: genbench archive).")
    p.add_argument("runs_dir", type=Path, metavar="RUNS_DIR")
    flags.data_root(p)
    flags.db(p)
    flags.leaderboards(p)


def command(args: argparse.Namespace) -> int:
    from genbench.launch.collect import collect
    from genbench.results.db import ResultsDB
    from genbench.results.leaderboard import render_leaderboard
    from genbench.runner import load_suite, prepare_folder

    db = ResultsDB(args.db)
    report = collect(args.runs_dir, db)
    done = sum(1 for _, r in report.added if r["status"] == "done")
    print(f"collected {len(report.added)} new result(s) from {args.runs_dir} into {args.db} ({done} done, "
          f"{len(report.added) - done} failed); {report.known} recorded before")
    sources = sorted({source for source, r in report.added if r["status"] == "done"})
    if sources:
        prepare_folder(args.leaderboards, "--leaderboards")
    for source in sources:
        try:
            suite = load_suite(source)
        except GenbenchError as exc:
            print(f"no leaderboard for suite {source}: {exc}", file=sys.stderr)
            continue
        md, _ = render_leaderboard(db, suite, args.leaderboards)
        print(f"leaderboard: {md}")
    return 1 if report.unreadable else 0

