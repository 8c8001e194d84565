"""``genbench status``: where each run of a sweep is: queued, running, done, failed."""

from __future__ import annotations

import argparse

from genbench.cli import flags
from genbench.cli.output import print_json


def add_parser(sub) -> None:
    p = sub.add_parser("status", help="where each run of a sweep is: queued, running, done, failed",
                       description="Each run of a sweep (the newest under --runs-dir, or --sweep ID) "
                       "with its state, its job id and its log.")
    flags.runs_dir(p)
    p.add_argument("--sweep", metavar="ID", type=flags.name_of("--sweep"),
                   help="the sweep (default: the newest)")
    flags.json_output(p)


def command(args: argparse.Namespace) -> int:
    from genbench.launch.status import find_sweep, sweep_status

    manifest = find_sweep(args.runs_dir, args.sweep)
    rows = sweep_status(manifest)
    if args.json:
        print_json({"sweep": manifest["id"], "launcher": manifest["launcher"], "runs": rows})
        return 0
    counts = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    print(f"sweep {manifest['id']}: suite {manifest['suite']}, budget {manifest['budget']}, "
          f"{manifest['launcher']} launcher, {len(rows)} run(s): "
          + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    width = max([len(f"{r['name']} seed {r['seed']}") for r in rows] + [3])
    print(f"  {'run':<{width}}  {'state':<8} {'job':<14} log")
    for row in rows:
        name = f"{row['name']} seed {row['seed']}"
        print(f"  {name:<{width}}  {row['state']:<8} {row['job_id'] or '-':<14} {row['log'] or '-'}")
        if row["error"] and row["state"] == "failed":
            print(f"  {'':<{width}}  {row['error']}")
    return 0

