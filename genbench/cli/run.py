"""``genbench run``: every run of a suite trained and evaluated (``genbench.runner``), here or as a
sweep of jobs (``genbench.launch``), its leaderboard written into ``--leaderboards`` (beside the
database under ``runs/`` by default: a run never rewrites the published tables)."""

from __future__ import annotations

import argparse
from pathlib import Path

from genbench.cli import flags
from genbench.core.errors import GenbenchError
from genbench.suites import RANGES


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="train and evaluate every model of a suite",
                       description="Train every run of a suite (resuming unfinished ones), "
                       "evaluate the metrics that apply, record them in the results "
                       "database and write the suite's leaderboard, <suite>.md and .csv, into --leaderboards "
                       "(runs/leaderboards by default: never the published tables; `genbench archive` and "
                       "`genbench tables` publish results).")
    p.add_argument("--suite", default="mnist",
                   help="suite name (see genbench list) or a suite file PATH.toml")
    p.add_argument("--budget", default="short", help="smoke | short (default) | long | paper")
    p.add_argument("--models", nargs="+", help="only these run names or model names")
    p.add_argument("--seeds", type=flags.in_range(RANGES["seeds"]),
                   help=f"number of seeds, >= 1 and <= {RANGES['seeds'].most} (default: the suite's)")
    p.add_argument("--ensemble", default="auto",
                   help="train a run's seeds as one vectorised ensemble where it applies: auto (default: "
                   "on a GPU, not on a CPU, where it is slower than one seed after another), on, off "
                   "(genbench.context.ENSEMBLE_MODES)")
    p.add_argument("--dataset", help="run every model of the suite on this data set instead "
                   "(same image shape), e.g. dsprites_rendered offline")
    flags.runs_dir(p)
    flags.leaderboards(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    flags.data_root(p)
    flags.db(p)
    flags.device(p)
    _launch_args(p)


def _launch_args(p: argparse.ArgumentParser) -> None:
    """``genbench run``'s flags for a sweep of jobs (``genbench.launch``)."""
    p.add_argument("--launcher", choices=("local", "slurm"),
                   help="run the suite's runs as jobs through submitit: local (--workers processes of this "
                   "machine) or slurm (one job-array task per run); results come back through result files "
                   "and are collected into --db. Default: every run in this process (or under torchrun)")
    p.add_argument("--workers", type=flags.count(1),
                   help="--launcher local: processes sharing the runs (default 1)")
    p.add_argument("--partition", help="--launcher slurm: the partition")
    p.add_argument("--gpus-per-run", type=flags.count(1, zero=True), metavar="G",
                   help="GPUs of each run; more than one runs torchrun inside its job (gloo ranks on a CPU "
                   "machine). Default 1 where there are GPUs (always on slurm), else 0")
    p.add_argument("--time", help="time limit of each job, Slurm's syntax (MINUTES, HH:MM:SS, D-HH:MM:SS; "
                   "default 24:00:00 on slurm); a job that reaches it is requeued and resumes")
    p.add_argument("--array-parallelism", type=flags.count(1), metavar="M",
                   help="--launcher slurm: at most M runs of the array at once (default: submitit's 256)")
    p.add_argument("--no-wait", action="store_true",
                   help="submit and return: `genbench status` follows the sweep, `genbench collect` "
                   "ingests its results")


def command(args: argparse.Namespace) -> int:
    from genbench.context import check_ensemble_mode
    from genbench.runner import load_suite

    check_ensemble_mode(args.ensemble)  # before anything is loaded or written
    suite = load_suite(args.suite)
    if args.dataset:
        suite = suite.with_dataset(args.dataset)
    budget = suite.budget(args.budget)
    suite.select(args.models)  # validate names before loading data
    _check_launch_flags(args)
    if args.launcher:
        return _run_sweep(args, suite, budget)
    return _run_here(args, suite, budget)


def _run_here(args: argparse.Namespace, suite, budget) -> int:
    """The suite's runs in this process (or this rank of torchrun's)."""
    from genbench.context import RunContext, SuiteRequest
    from genbench.core.distributed import describe_world, is_main, rank_and_world
    from genbench.core.errors import log
    from genbench.results.db import ResultsDB
    from genbench.results.leaderboard import render_leaderboard
    from genbench.runner import prepare_folder, report_outcomes, run_suite
    from genbench.train.device import select_device

    device = select_device(args.device)
    main = is_main()  # under torchrun only rank 0 writes the database, the leaderboards and the log
    if main:
        prepare_folder(args.runs_dir, "--runs-dir")  # a file in the way fails now, not after training
        prepare_folder(args.leaderboards, "--leaderboards")
    db = ResultsDB(args.db) if main else None
    world = f", {describe_world()}" if rank_and_world()[1] > 1 else ""
    print(f"suite {suite.name} ({budget.describe()}) on {device}{world}")
    context = RunContext(db, args.runs_dir, device, args.data_root, progress=not args.no_progress,
                         log=print, ensemble=args.ensemble)  # its results: stdout
    outcomes = run_suite(SuiteRequest(suite, budget, args.models, args.seeds), context)
    if main:
        md, csv = render_leaderboard(db, suite, args.leaderboards)  # also when runs failed
        print(f"leaderboard: {md} and {csv}")
    return report_outcomes(outcomes, warn=log if main else lambda *_: None)


#: flags of ``genbench run`` and the launcher each belongs to (None: any launcher)
LAUNCH_FLAGS = {"workers": "local", "partition": "slurm", "array_parallelism": "slurm", "gpus_per_run": None,
                "time": None, "no_wait": None}



def _check_launch_flags(args) -> None:
    """A sweep's flags only with the launcher they belong to, and no launcher under torchrun."""
    from genbench.launch.torchrun import launched_world

    for name, launcher in LAUNCH_FLAGS.items():
        if getattr(args, name) in (None, False):
            continue
        flag = "--" + name.replace("_", "-")
        if args.launcher is None:
            raise GenbenchError(f"{flag} applies to a sweep: give --launcher local or slurm")
        if launcher is not None and args.launcher != launcher:
            raise GenbenchError(f"{flag} applies to --launcher {launcher}, not {args.launcher}")
    if args.launcher and launched_world() > 1:
        raise GenbenchError("--launcher starts its own processes (torchrun inside the jobs where "
                            "--gpus-per-run > 1): run it without torchrun")



def _run_sweep(args, suite, budget) -> int:
    """``genbench run --launcher``: the suite's runs as submitit jobs, their results collected here."""
    from genbench.context import LaunchOptions, RunContext, SuiteRequest
    from genbench.launch.sweep import run_sweep
    from genbench.results.db import ResultsDB
    from genbench.results.leaderboard import render_leaderboard
    from genbench.runner import prepare_folder, report_outcomes

    prepare_folder(args.runs_dir, "--runs-dir")
    prepare_folder(args.leaderboards, "--leaderboards")
    db = ResultsDB(args.db)
    options = LaunchOptions(args.launcher, args.workers or 1, args.partition, args.gpus_per_run, args.time,
                            args.array_parallelism, args.device)
    source = str(Path(args.suite).absolute()) if args.suite.endswith(".toml") else args.suite
    how = f"{options.workers} local worker(s)" if args.launcher == "local" else "a Slurm job array"
    print(f"suite {suite.name} ({budget.describe()}) as a sweep: {how}")
    request = SuiteRequest(suite, budget, args.models, args.seeds, source, args.dataset)
    context = RunContext(db, args.runs_dir, data_root=args.data_root, log=print, launch=options)
    outcomes, _ = run_sweep(request, context, wait=not args.no_wait)
    md, csv = render_leaderboard(db, suite, args.leaderboards)
    print(f"leaderboard: {md} and {csv}")
    return report_outcomes(outcomes)

