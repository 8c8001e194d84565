"""``genbench score PATH``: a checkpoint, a foreign state dict, the user's model, a sample set or a
generator scored (``genbench.scorer``), its report printed, as text or JSON."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from genbench.cli import flags
from genbench.cli.output import print_json
from genbench.generators import LATENT_DISTS, OUTPUT_RANGES
from genbench.metrics.features import FEATURE_NETS
from genbench.metrics.fid_protocols import PROTOCOLS, with_protocol
from genbench.metrics.registry import EvalSettings
from genbench.metrics.sample_quality import QualitySettings
from genbench.sample_sets import DEFAULT_MAX_SAMPLES
from genbench.suites import RANGES

#: the simulated points of ``genbench score --bdmc`` without a number
DEFAULT_BDMC_POINTS = 100


def add_parser(sub) -> None:
    p = sub.add_parser("score", help="evaluate a checkpoint or a set of samples",
                       description="Evaluate a genbench checkpoint (a run directory or its "
                       "checkpoint.safetensors), a foreign state dict (.pt/.pth/"
                       ".safetensors) with --model, your own model's weights with --model-code "
                       "FILE.py:NAME (which imports and runs that file's code), or samples without a "
                       "model (a folder of PNGs or an .npz array) with --dataset, or a TorchScript "
                       "generator z -> x with --generator: IS, FID, KID, precision/recall. Never "
                       "unpickles weights.")
    p.add_argument("path", type=Path)
    p.add_argument("--model", help="model name, for a foreign state dict")
    p.add_argument("--set", dest="sets", nargs="*", default=[], metavar="KEY=VALUE",
                   help="hyperparameters of --model")
    p.add_argument("--model-code", metavar="FILE.py:NAME",
                   help="score your own model: import FILE.py (or MODULE:NAME, an installed module) and "
                   "build NAME, a class or factory, with --init. This RUNS THAT CODE, the one code "
                   "genbench runs that it did not write; the weights are still never unpickled. "
                   "Needs --dataset")
    p.add_argument("--init", nargs="*", default=[], metavar="KEY=VALUE",
                   help="keyword arguments of --model-code's NAME, each a Python literal")
    p.add_argument("--from", dest="from_library", choices=("pythae", "diffusers"),
                   help="PATH is a folder another library saved: pythae (model.save's folder of a VAE "
                   "with its default networks; custom networks are pickles, refused), diffusers (a "
                   "DDPMPipeline/DDIMPipeline's save_pretrained folder: a UNet2DModel in safetensors and "
                   "its scheduler; .bin weights are pickles, refused). Needs --dataset")
    p.add_argument("--generator", action="store_true",
                   help="PATH is a TorchScript generator (torch.jit.save) mapping latents z [B, D] to "
                   "images [B, C, H, W]: its samples are scored for IS/FID/KID/PR. Checked as a "
                   "--features file is (only forward, aten/prim ops, no file access); a torch.export "
                   "program is refused (its loader unpickles). Needs --dataset and --latent-dim")
    p.add_argument("--latent-dim", type=flags.count(1), metavar="D",
                   help="size D of the generator's latent z (required)")
    p.add_argument("--latent-dist", choices=LATENT_DISTS,
                   help="the generator's latent distribution: normal N(0, I) (default) or uniform "
                   "U(-1, 1)")
    p.add_argument("--output-range", choices=OUTPUT_RANGES, metavar="0,1|-1,1",
                   help="range of the generator's outputs, mapped to [0, 1]: 0,1 (default) or -1,1 "
                   "(write --output-range=-1,1); values outside it are an error, never clamped")
    p.add_argument("--state-key", help="the key of the state dict inside a saved .pt dict (default: "
                   "found: state_dict, model_state_dict, model, net, ...)")
    p.add_argument("--dataset", help="data set (default: the checkpoint's; mnist for foreign)")
    p.add_argument("--budget", help="evaluation budget: smoke | short | paper (k=5000, all). Default: "
                   "the settings a genbench run directory recorded for its results (so its leaderboard "
                   "row is reproduced), else short. The flags below override fields of the same names")
    p.add_argument("--k", type=flags.SETTING_TYPES["k"], help="importance samples per test point (>= 1)")
    p.add_argument("--n-test", type=flags.SETTING_TYPES["n_test"], help="test points (>= 1)")
    p.add_argument("--ais-steps", type=flags.SETTING_TYPES["ais_steps"], metavar="T",
                   help="AIS annealing steps for every model with a decoder (0: no AIS; the built-in "
                   "budgets have none)")
    p.add_argument("--ais-chains", type=flags.SETTING_TYPES["ais_chains"], help="AIS chains per point (>= 1)")
    p.add_argument("--ais-points", type=flags.SETTING_TYPES["ais_points"],
                   help="test points AIS scores, a seeded random subset (>= 1)")
    p.add_argument("--bdmc", dest="ais_bdmc_points", nargs="?", const=DEFAULT_BDMC_POINTS,
                   type=flags.SETTING_TYPES["ais_bdmc_points"], metavar="N",
                   help=f"also BDMC: forward and reverse AIS on N points simulated from the model "
                   f"(default {DEFAULT_BDMC_POINTS}), at AIS's steps and chains; their gap bounds "
                   "AIS's error")
    p.add_argument("--features", help="feature net of IS/FID/KID/PR: lenet (default for MNIST-like "
                   f"data), {', '.join(n for n, _ in FEATURE_NETS.items() if n != 'lenet')} (weights "
                   "sha256-pinned: docs/sample-metrics.md), or a TorchScript file path.pt")
    p.add_argument("--quality-samples", "--n-samples", dest="quality_samples",
                   type=flags.SETTING_TYPES["quality_samples"],
                   help=f"model samples scored by IS/FID/KID/PR: 0 (none, the built-in budgets) or at "
                   f"least {QualitySettings().min_samples}; sample sets are scored whole")
    p.add_argument("--quality-reference", "--n-reference", dest="quality_reference",
                   type=flags.SETTING_TYPES["quality_reference"],
                   help=f"real images compared with, at least {QualitySettings().min_reference} "
                   f"(default {EvalSettings.quality_reference})")
    p.add_argument("--max-samples", type=flags.count(1), default=DEFAULT_MAX_SAMPLES,
                   help=f"the most samples read from a sample set or drawn from a model (default "
                   f"{DEFAULT_MAX_SAMPLES:,}): a file declaring more is refused before it is read")
    p.add_argument("--quality-split", "--reference-split", dest="quality_split",
                   default=EvalSettings.quality_split,
                   help=f"split of the real images (default {EvalSettings.quality_split})")
    p.add_argument("--protocol", metavar="NAME",
                   help="a named FID protocol, one word for its feature network (weights pinned by sha256), "
                   "resizer, reference split and count and sample count (genbench.metrics.fid_protocols: "
                   f"{', '.join(PROTOCOLS)}); the scores record its name")
    p.add_argument("--reference-stats", type=Path, metavar="FILE.npz",
                   help="FID (and FD-infinity) against these reference statistics instead of reference "
                   "images: an .npz of mu and sigma as TTUR and clean-fid share them, checked before use; "
                   "its sha256 is recorded with the result. KID, precision/recall and density/coverage "
                   "need the images, and are left out. Model samples need --quality-samples N")
    p.add_argument("--write-stats", type=Path, metavar="FILE.npz",
                   help="write the mean and covariance of the scored samples' features there, in that format")
    p.add_argument("--write-reference-stats", type=Path, metavar="FILE.npz",
                   help="write those of the reference images' features (--reference-split, --n-reference)")
    p.add_argument("--memorization-train", type=flags.in_range(RANGES["memorization_train"]), metavar="N",
                   help="the copying tests (C_T, authenticity, nearest-neighbour distances) of the samples "
                   "against a seeded random N training images, the reference images as held-out data "
                   "(0: none, the default)")
    p.add_argument("--copying-figure", type=Path, metavar="FILE.png",
                   help="write 16 samples beside their nearest training images in feature space "
                   "(needs --memorization-train)")
    p.add_argument("--nll-gap", dest="nll_gap_points", type=flags.in_range(RANGES["nll_gap_points"]),
                   metavar="N",
                   help="a likelihood model's train-minus-test NLL on N random points of each split, with "
                   "its s.e. (0: none, the default)")
    p.add_argument("--ode-points", type=flags.SETTING_TYPES["ode_points"], metavar="N",
                   help="a diffusion or flow-matching model's probability-flow ODE likelihood on a seeded "
                   "random N of the test points (0: none)")
    p.add_argument("--ode-tolerance", type=flags.SETTING_TYPES["ode_tolerance"], metavar="TOL",
                   help="the ODE solver's rtol = atol (dopri5; default 1e-5, Song et al.'s)")
    flags.json_output(p)
    p.add_argument("--name", help="record the result in --db under NAME, marked external, once per suite "
                   "and data set (a second is refused)")
    flags.db(p, "results database the result is recorded in (with --name)", optional=True)
    p.add_argument("--suite", help="the suite whose leaderboard shows the result, re-rendered now and "
                   "by every genbench run (default: suite external, on no leaderboard; paper tables "
                   "list it)")
    flags.leaderboards(p, "where --suite's leaderboard is written")
    flags.data_root(p)
    flags.device(p)


def command(args: argparse.Namespace) -> int:
    from genbench.recording import RecordRequest
    from genbench.scorer import ScoreRequest, score

    settings = flags.settings_request(args)
    if args.protocol is not None:
        settings = replace(settings, overrides=with_protocol(args.protocol, settings.overrides))
    request = flags.typed(ScoreRequest, args, settings=settings, record=flags.typed(RecordRequest, args))
    report = score(request)
    if args.json:
        print_json(report.as_json())
        return 0
    print(report.header)
    for name, value in report.metrics.items():
        print(f"  {name:<16} {value:.4f}")
    for name, reason in (report.not_applicable or {}).items():
        print(f"  {name:<16} n/a: {reason}")
    return 0
