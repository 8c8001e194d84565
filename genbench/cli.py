"""The ``genbench`` command: run, score, compare, tables, report, collect, status, list.

Bad input raises :class:`GenbenchError`; ``main`` prints it as one line and exits 2. A bad
argument is one too (``Parser.error``), and every numeric flag is checked by its argparse type
(``SETTING_TYPES``). With ``--json`` stdout holds the JSON report alone, strict JSON (a value that
is not a finite number is null, its reason beside it): while the command runs, file descriptor 1 is
stderr's, so whatever else is printed, by genbench, a library, the user's model code or a process
it starts, goes to stderr, and the report is written to the real stdout at the end. An exit that
code asks for while a command runs (``sys.exit``) is a failure, one line, never a silent exit 0.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import math
import os
import signal
import sys
from dataclasses import asdict, fields, replace
from pathlib import Path

from genbench.core.errors import GenbenchError
from genbench.core.hyperparameters import Range
from genbench.core.names import check_name
from genbench.generators import LATENT_DISTS, OUTPUT_RANGES
from genbench.metrics.registry import EvalSettings
from genbench.metrics.sample_quality import QualitySettings
from genbench.sample_sets import DEFAULT_MAX_SAMPLES
from genbench.suites import RANGES

DEFAULT_RUNS_DIR = Path("runs")
DEFAULT_LEADERBOARDS = Path("leaderboards")


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one GenbenchError line (``main`` prints it, exit 2), not usage + error."""

    def error(self, message: str):
        raise GenbenchError(f"{message} (see {self.prog} --help)")


def in_range(values: Range):
    """An argparse type: the flag's text as a value of ``values``, refused in the words a suite file's
    value is refused in (``genbench.suites.RANGES``)."""
    def parse(text: str):
        try:
            return values.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


def name_of(flag: str):
    """An argparse type: a name (``genbench.core.names``), which a path is made of, never a path."""
    return lambda text: check_name(text, flag)


def count(minimum: int, zero: bool = False):
    """An argparse type: an integer of at least ``minimum`` (or 0, meaning none, where ``zero``), for a
    flag no suite file sets."""
    return in_range(Range(minimum, zero=zero))


#: the argparse type of each numeric EvalSettings flag, from the ranges a suite's budget is held to;
#: recorded settings are checked by them too
SETTING_TYPES = {name: in_range(RANGES[name]) for name in (
    "k", "n_test", "quality_samples", "quality_reference", "ais_steps", "ais_chains", "ais_points",
    "ais_sigma_points", "ais_bdmc_points")}
#: the simulated points of ``genbench score --bdmc`` without a number
DEFAULT_BDMC_POINTS = 100


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", help="data folder (default $GENBENCH_DATA or ~/.cache/genbench)")
    p.add_argument("--db", default="runs/genbench.sqlite", help="results database (SQLite)")


def _device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda ...")
    p.add_argument("--no-compile", action="store_true",
                   help="never torch.compile (by default the NLL estimator is compiled where its calls are "
                   "many enough to pay for it, e.g. k = 5000 on all test points)")


def _launch_args(p: argparse.ArgumentParser) -> None:
    """``genbench run``'s flags for a sweep of jobs (``genbench.launch``)."""
    p.add_argument("--launcher", choices=("local", "slurm"),
                   help="run the suite's runs as jobs through submitit: local (--workers processes of this "
                   "machine) or slurm (one job-array task per run); results come back through result files "
                   "and are collected into --db. Default: every run in this process (or under torchrun)")
    p.add_argument("--workers", type=count(1),
                   help="--launcher local: processes sharing the runs (default 1)")
    p.add_argument("--partition", help="--launcher slurm: the partition")
    p.add_argument("--gpus-per-run", type=count(1, zero=True), metavar="G",
                   help="GPUs of each run; more than one runs torchrun inside its job (gloo ranks on a CPU "
                   "machine). Default 1 where there are GPUs (always on slurm), else 0")
    p.add_argument("--time", help="time limit of each job, Slurm's syntax (MINUTES, HH:MM:SS, D-HH:MM:SS; "
                   "default 24:00:00 on slurm); a job that reaches it is requeued and resumes")
    p.add_argument("--array-parallelism", type=count(1), metavar="M",
                   help="--launcher slurm: at most M runs of the array at once (default: submitit's 256)")
    p.add_argument("--no-wait", action="store_true",
                   help="submit and return: `genbench status` follows the sweep, `genbench collect` "
                   "ingests its results")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="genbench", description="Train, evaluate and compare deep generative models.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train and evaluate every model of a suite",
                         description="Train every run of a suite (resuming unfinished ones), "
                         "evaluate the metrics that apply, record them in the results "
                         "database and write leaderboards/<suite>.md and .csv.")
    run.add_argument("--suite", default="mnist",
                     help="suite name (see genbench list) or a suite file PATH.toml")
    run.add_argument("--budget", default="short", help="smoke | short (default) | long | paper")
    run.add_argument("--models", nargs="+", help="only these run names or model names")
    run.add_argument("--seeds", type=in_range(RANGES["seeds"]),
                     help=f"number of seeds, >= 1 and <= {RANGES['seeds'].most} (default: the suite's)")
    run.add_argument("--ensemble", default="auto",
                     help="train a run's seeds as one vectorised ensemble where it applies: auto (default: "
                     "on a GPU, not on a CPU, where it is slower than one seed after another), on, off "
                     "(genbench.runner.ENSEMBLE_MODES)")
    run.add_argument("--dataset", help="run every model of the suite on this data set instead "
                     "(same image shape), e.g. dsprites_rendered offline")
    run.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS_DIR, help="run directories")
    run.add_argument("--leaderboards", type=Path, default=DEFAULT_LEADERBOARDS,
                     help="where leaderboard tables are written")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    _common(run)
    _device_arg(run)
    _launch_args(run)

    score = sub.add_parser("score", help="evaluate a checkpoint or a set of samples",
                           description="Evaluate a genbench checkpoint (a run directory or its "
                           "checkpoint.safetensors), a foreign state dict (.pt/.pth/"
                           ".safetensors) with --model, your own model's weights with --model-code "
                           "FILE.py:NAME (which imports and runs that file's code), or samples without a "
                           "model (a folder of PNGs or an .npz array) with --dataset, or a TorchScript "
                           "generator z -> x with --generator: IS, FID, KID, precision/recall. Never "
                           "unpickles weights.")
    score.add_argument("path", type=Path)
    score.add_argument("--model", help="model name, for a foreign state dict")
    score.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                       help="hyperparameters of --model")
    score.add_argument("--model-code", metavar="FILE.py:NAME",
                       help="score your own model: import FILE.py (or MODULE:NAME, an installed module) and "
                       "build NAME, a class or factory, with --init. This RUNS THAT CODE, the one code "
                       "genbench runs that it did not write; the weights are still never unpickled. "
                       "Needs --dataset")
    score.add_argument("--init", nargs="*", default=[], metavar="KEY=VALUE",
                       help="keyword arguments of --model-code's NAME, each a Python literal")
    score.add_argument("--from", dest="from_library", choices=("pythae",),
                       help="PATH is a folder another library saved: pythae (model.save's folder of a VAE "
                       "with its default networks; custom networks are pickles, refused). Needs --dataset")
    score.add_argument("--generator", action="store_true",
                       help="PATH is a TorchScript generator (torch.jit.save) mapping latents z [B, D] to "
                       "images [B, C, H, W]: its samples are scored for IS/FID/KID/PR. Checked as a "
                       "--features file is (only forward, aten/prim ops, no file access); a torch.export "
                       "program is refused (its loader unpickles). Needs --dataset and --latent-dim")
    score.add_argument("--latent-dim", type=count(1), metavar="D",
                       help="size D of the generator's latent z (required)")
    score.add_argument("--latent-dist", choices=LATENT_DISTS,
                       help="the generator's latent distribution: normal N(0, I) (default) or uniform "
                       "U(-1, 1)")
    score.add_argument("--output-range", choices=OUTPUT_RANGES, metavar="0,1|-1,1",
                       help="range of the generator's outputs, mapped to [0, 1]: 0,1 (default) or -1,1 "
                       "(write --output-range=-1,1); values outside it are an error, never clamped")
    score.add_argument("--state-key", help="the key of the state dict inside a saved .pt dict (default: "
                       "found: state_dict, model_state_dict, model, net, ...)")
    score.add_argument("--dataset", help="data set (default: the checkpoint's; mnist for foreign)")
    score.add_argument("--budget", help="evaluation budget: smoke | short | paper (k=5000, all). Default: "
                       "the settings a genbench run directory recorded for its results (so its leaderboard "
                       "row is reproduced), else short. The flags below override fields of the same names")
    score.add_argument("--k", type=SETTING_TYPES["k"], help="importance samples per test point (>= 1)")
    score.add_argument("--n-test", type=SETTING_TYPES["n_test"], help="test points (>= 1)")
    score.add_argument("--ais-steps", type=SETTING_TYPES["ais_steps"], metavar="T",
                       help="AIS annealing steps for every model with a decoder (0: no AIS; the built-in "
                       "budgets have none)")
    score.add_argument("--ais-chains", type=SETTING_TYPES["ais_chains"], help="AIS chains per point (>= 1)")
    score.add_argument("--ais-points", type=SETTING_TYPES["ais_points"],
                       help="test points AIS scores, a seeded random subset (>= 1)")
    score.add_argument("--bdmc", dest="ais_bdmc_points", nargs="?", const=DEFAULT_BDMC_POINTS,
                       type=SETTING_TYPES["ais_bdmc_points"], metavar="N",
                       help=f"also BDMC: forward and reverse AIS on N points simulated from the model "
                       f"(default {DEFAULT_BDMC_POINTS}), at AIS's steps and chains; their gap bounds "
                       "AIS's error")
    score.add_argument("--features", help="feature net of IS/FID/KID/PR: lenet (default for MNIST-like "
                       "data), inception, or a TorchScript file path.pt")
    score.add_argument("--quality-samples", "--n-samples", dest="quality_samples",
                       type=SETTING_TYPES["quality_samples"],
                       help=f"model samples scored by IS/FID/KID/PR: 0 (none, the built-in budgets) or at "
                       f"least {QualitySettings().min_samples}; sample sets are scored whole")
    score.add_argument("--quality-reference", "--n-reference", dest="quality_reference",
                       type=SETTING_TYPES["quality_reference"],
                       help=f"real images compared with, at least {QualitySettings().min_reference} "
                       f"(default {EvalSettings.quality_reference})")
    score.add_argument("--max-samples", type=count(1), default=DEFAULT_MAX_SAMPLES,
                       help=f"the most samples read from a sample set or drawn from a model (default "
                       f"{DEFAULT_MAX_SAMPLES:,}): a file declaring more is refused before it is read")
    score.add_argument("--quality-split", "--reference-split", dest="quality_split",
                       default=EvalSettings.quality_split,
                       help=f"split of the real images (default {EvalSettings.quality_split})")
    score.add_argument("--json", action="store_true", help="machine-readable output")
    score.add_argument("--name", help="record the result in --db under NAME, marked external, once per suite "
                       "and data set (a second is refused)")
    score.add_argument("--db", help="results database the result is recorded in (with --name)")
    score.add_argument("--suite", help="the suite whose leaderboard shows the result, re-rendered now and "
                       "by every genbench run (default: suite external, on no leaderboard; paper tables "
                       "list it)")
    score.add_argument("--leaderboards", type=Path, default=DEFAULT_LEADERBOARDS,
                       help="where --suite's leaderboard is written")
    score.add_argument("--data-root", help="data folder (default $GENBENCH_DATA or ~/.cache/genbench)")
    _device_arg(score)

    compare = sub.add_parser("compare", help="whether two checkpoints differ beyond noise",
                             description="Score two checkpoints (run directories or checkpoint files) on "
                             "the same test points and say whether their NLL differs beyond noise (a paired "
                             "t-test over the points), and, with --quality-samples, their FID (independent "
                             "standard errors). Settings: run A's recorded ones, else --budget's.")
    compare.add_argument("run_a", type=Path)
    compare.add_argument("run_b", type=Path)
    compare.add_argument("--budget",
                         help="smoke | short | paper (default: run A's recorded settings, else short)")
    compare.add_argument("--k", type=SETTING_TYPES["k"], help="importance samples per test point (>= 1)")
    compare.add_argument("--n-test", type=SETTING_TYPES["n_test"],
                         help="test points (>= 1; a seeded random subset, the same for both)")
    compare.add_argument("--quality-samples", type=SETTING_TYPES["quality_samples"],
                         help="samples of each model for the FID comparison (0: none)")
    compare.add_argument("--json", action="store_true", help="machine-readable output")
    compare.add_argument("--data-root", help="data folder (default $GENBENCH_DATA or ~/.cache/genbench)")
    _device_arg(compare)

    tables = sub.add_parser("tables", help="paper comparison tables",
                            description="A paper's table with its published numbers beside "
                            "the measured ones from the results database.")
    tables.add_argument("--paper", required=True, type=name_of("--paper"),
                        help="paper key (see genbench list)")
    tables.add_argument("--db", default="runs/genbench.sqlite", help="results database")
    tables.add_argument("--out", type=Path, help="also write the table to this file, and its "
                        "paper-vs-measured chart to figures/paper-<key>.png beside it (embedded in it)")

    report = sub.add_parser("report", help="a static HTML report of the results database",
                            description="Write DIR/index.html: every suite's leaderboard (sortable tables), "
                            "each run's samples, reconstructions and learning curves, the paper tables with "
                            "their charts, and the provenance of every number. One self-contained file "
                            "(images inlined, no network) that opens from the file system; its figures are "
                            "kept in DIR/figures.")
    report.add_argument("--out", type=Path, default=DEFAULT_RUNS_DIR / "report",
                        help="folder of the report (default runs/report)")
    report.add_argument("--db", default="runs/genbench.sqlite", help="results database")

    collect = sub.add_parser("collect", help="ingest the results sweep jobs wrote into the database",
                             description="Read every result.json under RUNS_DIR (what sweep jobs wrote into "
                             "their run directories) and record each in the results database exactly once: a "
                             "result recorded before adds nothing. Re-renders the leaderboards of the suites "
                             "that gained results.")
    collect.add_argument("runs_dir", type=Path, metavar="RUNS_DIR")
    _common(collect)
    collect.add_argument("--leaderboards", type=Path, default=DEFAULT_LEADERBOARDS,
                         help="where leaderboard tables are written")

    status = sub.add_parser("status", help="where each run of a sweep is: queued, running, done, failed",
                            description="Each run of a sweep (the newest under --runs-dir, or --sweep ID) "
                            "with its state, its job id and its log.")
    status.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS_DIR, help="run directories")
    status.add_argument("--sweep", metavar="ID", type=name_of("--sweep"),
                        help="the sweep (default: the newest)")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    sub.add_parser("list", help="suites, models, datasets, metrics, budgets, papers",
                   description="Everything genbench knows by name.")
    return parser


def cmd_run(args) -> int:
    from genbench.core.distributed import describe_world, is_main, rank_and_world
    from genbench.core.errors import log
    from genbench.results.db import ResultsDB
    from genbench.results.leaderboard import render_leaderboard
    from genbench.runner import check_ensemble_mode, load_suite, prepare_folder, report_outcomes, run_suite
    from genbench.train.device import select_device

    check_ensemble_mode(args.ensemble)
    suite = load_suite(args.suite)
    if args.dataset:
        suite = suite.with_dataset(args.dataset)
    budget = suite.budget(args.budget)
    suite.select(args.models)  # validate names before loading data
    _check_launch_flags(args)
    if args.launcher:
        return _run_sweep(args, suite, budget)
    device = select_device(args.device)
    main = is_main()  # under torchrun only rank 0 writes the database, the leaderboards and the log
    if main:
        prepare_folder(args.runs_dir, "--runs-dir")  # a file in the way fails now, not after training
        prepare_folder(args.leaderboards, "--leaderboards")
    db = ResultsDB(args.db) if main else None
    world = f", {describe_world()}" if rank_and_world()[1] > 1 else ""
    print(f"suite {suite.name} ({budget.describe()}) on {device}{world}")
    outcomes = run_suite(suite, budget, db, args.runs_dir, device, args.data_root, args.models,
                         args.seeds, progress=not args.no_progress, log=print,  # its results: stdout
                         ensemble=args.ensemble)
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
    from genbench.launch.executors import LaunchOptions
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
    outcomes, _ = run_sweep(suite, source, budget, db, args.runs_dir, options, args.data_root, args.models,
                            args.seeds, args.dataset, wait=not args.no_wait, log=print)
    md, csv = render_leaderboard(db, suite, args.leaderboards)
    print(f"leaderboard: {md} and {csv}")
    return report_outcomes(outcomes)


def cmd_collect(args) -> int:
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


def cmd_status(args) -> int:
    from genbench.launch.status import find_sweep, sweep_status

    manifest = find_sweep(args.runs_dir, args.sweep)
    rows = sweep_status(manifest)
    if args.json:
        print(json_text({"sweep": manifest["id"], "launcher": manifest["launcher"], "runs": rows}),
              file=args.stdout)
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


def _parse_sets(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise GenbenchError(f"--set expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key] = value
    return out


def _print_report(report: dict, header: str, args) -> None:
    """The report as JSON (``--json``: on the real stdout, ``args.stdout``) or as a header and lines;
    first recorded in the results database where ``--name`` asked for it (``args.record``). A metric
    that is not a finite number fails the score, as it fails a zoo run, and nothing is recorded."""
    from genbench.runner import check_finite_metrics

    recording = getattr(args, "record", None) is not None
    check_finite_metrics(report["metrics"], "scoring failed" + (", nothing recorded" if recording else ""))
    if recording:
        args.record(report)
    if args.json:
        print(json_text(report), file=args.stdout)
        return
    print(header)
    for name, value in report["metrics"].items():
        print(f"  {name:<16} {value:.4f}")
    for name, reason in report.get("not_applicable", {}).items():
        print(f"  {name:<16} n/a: {reason}")


def _score_sample_images(args, images, device, source: dict, header: str) -> int:
    """IS/FID/KID/PR of uint8 images against ``args.dataset``: the report of a sample set or a generator
    (``source``: what the images came from; ``header``: how the report's first line names them)."""
    from genbench.data import load_dataset
    from genbench.metrics.features import cache_dir, resolve_feature_net
    from genbench.metrics.sample_quality import score_images

    dataset = load_dataset(args.dataset, args.data_root)
    net = resolve_feature_net(args.features, dataset, args.data_root)
    n_reference = EvalSettings.quality_reference if args.quality_reference is None else args.quality_reference
    metrics = score_images(images, dataset, net, args.quality_split, n_reference, cache_dir(args.data_root),
                           device)
    n_real = min(n_reference, dataset.size(args.quality_split))
    report = {**source, "n_samples": len(images), "dataset": args.dataset,
              "reference_split": args.quality_split, "n_reference": n_real, "features": net.label,
              "metrics": metrics}
    detail = f" ({net.detail})" if net.detail else ""
    _print_report(report, f"{header}: {len(images)} samples vs {n_real} {args.dataset} "
                  f"{args.quality_split} images; features {net.label}{detail}", args)
    return 0


def _need_dataset(args, what: str) -> None:
    if not args.dataset:
        raise GenbenchError(f"scoring {what} needs --dataset NAME (the real data they are compared with)")


def cmd_score_samples(args) -> int:
    """IS/FID/KID/PR of a folder of PNGs or an .npz array against a named data set."""
    from genbench.data import DATASETS
    from genbench.sample_sets import read_samples
    from genbench.train.device import select_device

    _need_dataset(args, "samples")
    images = read_samples(args.path, DATASETS[args.dataset].shape, args.dataset, args.max_samples)
    return _score_sample_images(args, images, select_device(args.device), {"samples": str(args.path)},
                                str(args.path))


def _generator_sample_count(args) -> int:
    """--quality-samples, by default the reference count (10,000, capped by --max-samples)."""
    n = min(EvalSettings.quality_reference, args.max_samples) if args.quality_samples is None \
        else args.quality_samples
    if n == 0:
        raise GenbenchError("a generator is scored on its samples: --quality-samples must be at least "
                            f"{QualitySettings().min_samples}")
    if n > args.max_samples:
        raise GenbenchError(f"{n:,} generator samples asked for, over the limit of {args.max_samples:,} "
                            "(--max-samples)")
    return n


def cmd_score_generator(args) -> int:
    """IS/FID/KID/PR of samples of a TorchScript generator z -> x, drawn as a zoo sampler's are."""
    from genbench.data import DATASETS
    from genbench.generators import load_generator
    from genbench.metrics.sample_quality import model_samples
    from genbench.train.device import select_device

    if args.model or args.set or args.model_code or args.init or args.state_key or args.from_library:
        raise GenbenchError("--generator scores a TorchScript file alone: --model, --set, --model-code, "
                            "--init, --state-key and --from do not apply")
    _need_dataset(args, "a generator")
    n, device, seed = _generator_sample_count(args), select_device(args.device), EvalSettings.seed
    dist, output_range = args.latent_dist or "normal", args.output_range or "0,1"
    generator = load_generator(args.path, DATASETS[args.dataset].shape, args.dataset, args.latent_dim, dist,
                               output_range, device)
    images = model_samples(generator, n, seed)
    source = {"generator": str(args.path), "latent_dim": args.latent_dim, "latent_dist": dist,
              "output_range": output_range, "seed": seed}
    return _score_sample_images(args, images, device, source, f"{args.path}: generator, z ~ {dist} "
                                f"{args.latent_dim}-d, seed {seed}")


def _settings_for(loaded, args) -> tuple[EvalSettings, str]:
    """The evaluation settings of a loaded checkpoint: its run's recorded ones unless a budget is
    named (else short), with the flags of ``SETTINGS_FLAGS`` that were given on top; recorded
    values are checked as the flags are (``SETTING_TYPES``)."""
    from genbench.suites import BUDGET_DEFAULTS

    if args.budget is not None and args.budget not in BUDGET_DEFAULTS:
        raise GenbenchError(f"unknown budget {args.budget!r}; valid: {', '.join(BUDGET_DEFAULTS)}")
    flags = {name: getattr(args, name) for name in SETTINGS_FLAGS if getattr(args, name, None) is not None}
    if args.budget is None and loaded.evaluation is not None:  # the run's own settings: its row again
        known = {f.name for f in fields(EvalSettings)}
        recorded = {k: v for k, v in loaded.evaluation.items() if k in known}
        for name, parse in SETTING_TYPES.items():
            if recorded.get(name) is not None:
                try:  # an int as its digits; anything else (40.5, true, "5") as its repr, which no int parses
                    parse(str(recorded[name]) if type(recorded[name]) is int else repr(recorded[name]))
                except argparse.ArgumentTypeError as exc:
                    raise GenbenchError(f"the run's recorded evaluation settings: {name} {exc}") from None
        base, source = EvalSettings(**recorded), "the run's"
    else:
        base, source = BUDGET_DEFAULTS[args.budget or "short"].eval, f"budget {args.budget or 'short'}"
    settings = replace(base, **flags, cache_root=args.data_root)
    limit = getattr(args, "max_samples", DEFAULT_MAX_SAMPLES)  # compare has no flag of its own
    if settings.quality_samples > limit:
        raise GenbenchError(f"{settings.quality_samples:,} model samples asked for, over the limit of "
                            f"{limit:,} (--max-samples)")
    if settings.ais_bdmc_points and not settings.ais_steps:
        raise GenbenchError("BDMC runs at AIS's steps and chains, and these settings have no AIS: give "
                            "--ais-steps T too")
    return settings, source


def cmd_compare(args) -> int:

    from genbench.core.protocols import Sampler
    from genbench.data import load_dataset
    from genbench.metrics.compare import independent_difference, paired_difference
    from genbench.metrics.features import resolve_feature_net
    from genbench.metrics.likelihood import nll_per_example
    from genbench.metrics.registry import METRICS, seeded
    from genbench.metrics.sample_quality import model_samples, score_images
    from genbench.metrics.subsets import describe, representative
    from genbench.scoring import load_for_scoring
    from genbench.train.device import select_device

    a, b = (load_for_scoring(path, None, {}, None) for path in (args.run_a, args.run_b))
    if a.dataset != b.dataset:
        raise GenbenchError(f"the runs are on different data sets ({a.dataset}, {b.dataset}): not comparable")
    settings, source = _settings_for(a, args)
    device = select_device(args.device)
    dataset = load_dataset(a.dataset, args.data_root, device)
    test = dataset.eval_tensor("test")
    points = representative(test, settings.n_test, settings.seed)
    report = {"run_a": str(args.run_a), "run_b": str(args.run_b), "dataset": a.dataset,
              "settings_from": source, "k": settings.k,
              "test_points": describe(settings.n_test, len(test), settings.seed)}
    if all(METRICS["nll"].applies(m.model) for m in (a, b)):
        per_point = []
        for loaded in (a, b):  # the RNG of the nll metric in evaluate: each run's NLL exactly
            with seeded(settings.seed, "nll", device):
                per_point.append(nll_per_example(loaded.model.to(device).eval(), points, settings.k))
        report["nll"] = {"a": per_point[0].mean().item(), "b": per_point[1].mean().item(),
                         **paired_difference(*per_point)}
    if settings.quality_samples > 0 and all(isinstance(m.model, Sampler) for m in (a, b)):
        net = resolve_feature_net(settings.features, dataset, settings.cache_root)
        fids = []
        for loaded in (a, b):
            fake = model_samples(loaded.model.to(device).eval(), settings.quality_samples, settings.seed)
            values = score_images(fake, dataset, net, settings.quality_split, settings.quality_reference,
                                  device=device, which=("fid",), seed=settings.seed)
            fids.append((values[f"fid_{net.name}"], values[f"fid_{net.name}_se"]))
        report[f"fid_{net.name}"] = {"a": fids[0][0], "b": fids[1][0],
                                     **independent_difference(*fids[0], *fids[1])}
    if "nll" not in report and not any(key.startswith("fid_") for key in report):
        raise GenbenchError("nothing to compare: both models need a likelihood (NLL), or samples "
                            "(give --quality-samples N for FID)")
    if args.json:
        print(json_text(report), file=args.stdout)
        return 0
    print(f"{args.run_a} (A) vs {args.run_b} (B) on {a.dataset}; {source} settings, k={settings.k}, "
          f"test points: {report['test_points']}")
    for name, r in report.items():
        if isinstance(r, dict):
            verdict = "differ beyond noise" if r["p_value"] < 1 - 0.95 else "no difference beyond noise"
            print(f"  {name:<12} A {r['a']:.3f}  B {r['b']:.3f}  A-B {r['difference']:+.3f} ± {r['se']:.3f} "
                  f"(95% [{r['low']:.3f}, {r['high']:.3f}], p = {r['p_value']:.3g}): {verdict}")
    return 0


def cmd_score(args) -> int:
    """``genbench score``, a real Ctrl-C told apart from a KeyboardInterrupt the user's code raises."""
    from genbench.user_models import interrupts_marked

    with interrupts_marked():
        return _score(args)


def _score(args) -> int:
    import torch

    from genbench.data import load_dataset
    from genbench.metrics.features import resolve_feature_net
    from genbench.metrics.registry import evaluate
    from genbench.metrics.subsets import describe
    from genbench.results.external import prepare_recording
    from genbench.sample_sets import is_sample_set
    from genbench.train.device import select_device
    from genbench.user_models import check_contract, not_applicable, user_code_errors, user_code_file

    args.record = prepare_recording(args, user_code_file)  # --db/--name/--suite checked before evaluating
    if args.generator:
        return cmd_score_generator(args)
    if args.latent_dim or args.latent_dist or args.output_range:
        raise GenbenchError("--latent-dim, --latent-dist and --output-range apply only with --generator")
    foreign_code = args.model_code is not None or args.from_library is not None  # not genbench's code
    if not foreign_code and not is_sample_set(args.path):
        if args.init or args.state_key:
            raise GenbenchError("--init and --state-key apply only with --model-code")
    elif not foreign_code:
        return cmd_score_samples(args)
    loaded = _load_model(args)
    device = select_device(args.device)
    dataset = load_dataset(loaded.dataset, args.data_root, device)
    settings, source = _settings_for(loaded, args)
    if args.features:  # named explicitly: unusable is an error, not a skipped metric
        resolve_feature_net(args.features, dataset, args.data_root)
    model, test = loaded.model.to(device), dataset.eval_tensor("test")
    if foreign_code:  # its methods, on a tiny batch before the long run
        check_contract(model, test, loaded.model_name)
    torch.manual_seed(settings.seed)
    skipped: dict[str, str] = {}
    with user_code_errors(args.model_code, loaded.model_name):  # its exception: one line, file:line
        metrics = evaluate(model, test, settings, dataset=dataset, skipped=skipped)
    n_used = min(settings.n_test or dataset.size("test"), dataset.size("test"))
    report = {"checkpoint": str(args.path), "model": loaded.model_name, "config": loaded.config,
              "dataset": loaded.dataset, "k": settings.k, "n_test": n_used, "settings_from": source,
              "settings": {k: v for k, v in asdict(settings).items() if k != "cache_root"},
              "metrics": metrics}
    if foreign_code:
        report["not_applicable"] = not_applicable(model, metrics, skipped)
    subset = describe(settings.n_test, dataset.size("test"), settings.seed)
    _print_report(report, f"{args.path}: model {loaded.model_name}, data set {loaded.dataset}; {source} "
                  f"settings: NLL with k={settings.k} on {subset} test points", args)
    return 0


def _load_model(args):
    """The model ``genbench score`` evaluates: another library's folder (--from), the user's (--model-code),
    else a checkpoint or a zoo model's foreign state dict (--model)."""
    from genbench.scoring import load_for_scoring
    from genbench.user_models import load_user_model

    if args.from_library is not None:
        if args.model or args.set or args.model_code or args.init or args.state_key:
            raise GenbenchError(f"--from {args.from_library} builds the model from its folder: --model, "
                                "--set, --model-code, --init and --state-key do not apply")
        from genbench.adapters.pythae import load_pythae_folder
        return load_pythae_folder(args.path, args.dataset)
    if args.model_code is None:
        return load_for_scoring(args.path, args.model, _parse_sets(args.set), args.dataset)
    if args.model or args.set:
        raise GenbenchError("--model-code builds the model from your code: --model and --set do not apply "
                            "(give its arguments with --init)")
    return load_user_model(args.path, args.model_code, args.init, args.state_key, args.dataset)


#: ``genbench score`` flags that override the budget's EvalSettings field of the same name
SETTINGS_FLAGS = ("k", "n_test", "features", "quality_samples", "quality_reference", "quality_split",
                  "ais_steps", "ais_chains", "ais_points", "ais_bdmc_points")


def cmd_tables(args) -> int:
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


def cmd_report(args) -> int:
    from genbench.report import write_report
    from genbench.results.db import ResultsDB
    from genbench.runner import prepare_folder

    if not Path(args.db).is_file():
        raise GenbenchError(f"--db {args.db}: no results database there (genbench run writes one)")
    prepare_folder(args.out, "--out")
    path = write_report(ResultsDB(args.db), args.out)
    print(f"report: {path} (open it in a browser: {path.resolve().as_uri()})")
    return 0


def cmd_list(args) -> int:
    from genbench.core.models import MODELS
    from genbench.core.protocols import CAPABILITIES
    from genbench.data import DATASETS
    from genbench.metrics.registry import METRICS
    from genbench.results.paper_tables import available_papers
    from genbench.suites import BUDGET_DEFAULTS, SUITES

    print("suites:")
    for name, suite in SUITES.items():
        print(f"  {name:<18} {suite.dataset}: {', '.join(r.name for r in suite.runs)}")
    print("models:")
    for name, entry in MODELS.items():
        caps = [c for c, proto in CAPABILITIES.items() if issubclass(entry.model_cls, proto)]
        print(f"  {name:<18} {entry.summary} [{', '.join(caps)}]")
    print("datasets:")
    for name, spec in DATASETS.items():
        print(f"  {name:<18} {spec.summary}")
    print("metrics:")
    for name, spec in METRICS.items():
        needs = " or ".join(c.__name__ for c in spec.requires)
        print(f"  {name:<18} {spec.summary} [needs {needs}]")
        columns = ", ".join(f"{c.key}{f' ({c.unit})' if c.unit else ''}{ARROWS[c.better]}"
                            for c in spec.columns if c.shown)
        reads = f"; reads {', '.join(spec.settings)}" if spec.settings else ""
        print(f"  {'':<18} columns: {columns}{reads}")
    print("budgets:")
    for budget in BUDGET_DEFAULTS.values():
        print(f"  {budget.describe()}")
    print("papers:")
    print(f"  {', '.join(available_papers())}")
    return 0


#: how ``genbench list`` marks which direction of a column is better
ARROWS = {"lower": " ↓", "higher": " ↑", None: ""}

COMMANDS = {"run": cmd_run, "score": cmd_score, "compare": cmd_compare, "tables": cmd_tables,
            "report": cmd_report, "list": cmd_list}
COMMANDS |= {"collect": cmd_collect, "status": cmd_status}
#: commands that run data-parallel under torchrun (each rank trains and evaluates its shard)
DISTRIBUTED = ("run", "score")


def one_line(message: str) -> str:
    """A message of several lines (a library's exception text in ours) as one line."""
    return "; ".join(line.strip() for line in str(message).splitlines() if line.strip())


def _run(args) -> int:
    """The command, with stdout kept for the JSON report alone under ``--json``."""
    from genbench.core import compile as compilation
    from genbench.results.db import check_database_file

    if getattr(args, "db", None) is not None:
        check_database_file(args.db)
    if getattr(args, "no_compile", False):
        compilation.disable()
    with _torchrun_rank(args):
        args.stdout = sys.stdout
        try:
            if not getattr(args, "json", False):
                return COMMANDS[args.command](args)
            with _stdout_kept_for_json() as args.stdout:
                return COMMANDS[args.command](args)
        except SystemExit as exc:  # argparse's exits are over: this one was asked for by code the command ran
            raise GenbenchError(f"code run by genbench {args.command} called sys.exit({exc.code!r}): "
                                "a failure, whatever its exit code") from None


def json_text(report: dict) -> str:
    """The report as strict JSON (RFC 8259 has no NaN or Infinity): a value that is not a finite
    number is null, and ``nulls`` says why, by its path (``metrics.nll_se``, ``config.x``)."""
    reasons: dict[str, str] = {}

    def finite(value, path: str):
        if isinstance(value, float) and not math.isfinite(value):
            reasons[path] = f"{value} is not a finite number"
            return None
        if isinstance(value, dict):
            return {key: finite(item, f"{path}.{key}" if path else str(key)) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [finite(item, f"{path}[{i}]") for i, item in enumerate(value)]
        return value

    clean = finite(report, "")
    if reasons:
        clean["nulls"] = reasons
    return json.dumps(clean, indent=2, allow_nan=False)


@contextlib.contextmanager
def _stdout_kept_for_json():
    """While a ``--json`` command runs: file descriptor 1 pointed at stderr (``os.dup2``: what model code
    writes to it, and every process it starts, goes there) and ``sys.stdout`` with it; yields the real
    stdout, where the JSON report goes. Where ``sys.stdout`` is not on descriptor 1 (a caller capturing
    it), that object is the real stdout."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no descriptor 1 to keep apart
        saved = None
    on_fd_1 = saved is not None and _descriptor(sys.stdout) == 1
    real = os.fdopen(saved, "w", closefd=False) if on_fd_1 else sys.stdout
    try:
        if saved is not None:
            os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield real
    finally:
        real.flush()
        if on_fd_1:
            real.close()  # the wrapper alone: descriptor ``saved`` is closed below, once restored
        if saved is not None:
            _flush_c_stdio()  # a C library's buffered printf goes to stderr, not after the report
            os.dup2(saved, 1)
            os.close(saved)


def _descriptor(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError and a ValueError
        return None


def _flush_c_stdio() -> None:
    """C's stdio buffers flushed (``fflush(NULL)``), where the C library can be found."""
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def _torchrun_rank(args):
    """Under torchrun, for ``DISTRIBUTED`` commands: this rank in the process group (its device in
    ``args.device``); a rank other than 0 prints nothing and records nothing (``score --name``)."""
    from genbench.core.distributed import is_main
    from genbench.launch.torchrun import process_group

    if args.command not in DISTRIBUTED or getattr(args, "launcher", None):
        yield
        return
    with process_group(args.device) as device:
        if device is not None:
            args.device = str(device)
            if not is_main() and args.command == "score":
                args.name = args.db = args.suite = None
        yield


def main(argv: list[str] | None = None) -> int:
    # `genbench list | head` ends quietly; the previous handler comes back when main returns,
    # so a caller in the same process (tests, notebooks) keeps Python's own SIGPIPE handling
    previous = signal.signal(signal.SIGPIPE, signal.SIG_DFL) if hasattr(signal, "SIGPIPE") else None
    try:
        return _run(build_parser().parse_args(argv))
    except GenbenchError as exc:
        print(f"genbench: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genbench: interrupted (run again to resume from the last checkpoint)", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGPIPE, previous)


if __name__ == "__main__":
    sys.exit(main())
