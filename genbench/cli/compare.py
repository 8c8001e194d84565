"""``genbench compare A B``: whether two checkpoints differ beyond noise (``genbench.comparison``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from genbench.cli import flags
from genbench.cli.output import print_json

#: a difference whose p-value is below this differs beyond noise (95% intervals)
ALPHA = 1 - 0.95


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="whether two checkpoints differ beyond noise",
                       description="Score two checkpoints (run directories or checkpoint files) on "
                       "the same test points and say whether their NLL differs beyond noise (a paired "
                       "t-test over the points), and, with --quality-samples, their FID (independent "
                       "standard errors). Settings: run A's recorded ones, else --budget's.")
    p.add_argument("run_a", type=Path)
    p.add_argument("run_b", type=Path)
    p.add_argument("--budget",
                   help="smoke | short | paper (default: run A's recorded settings, else short)")
    p.add_argument("--k", type=flags.SETTING_TYPES["k"], help="importance samples per test point (>= 1)")
    p.add_argument("--n-test", type=flags.SETTING_TYPES["n_test"],
                   help="test points (>= 1; a seeded random subset, the same for both)")
    p.add_argument("--quality-samples", type=flags.SETTING_TYPES["quality_samples"],
                   help="samples of each model for the FID comparison (0: none)")
    flags.json_output(p)
    flags.data_root(p)
    flags.device(p)


def command(args: argparse.Namespace) -> int:
    from genbench.comparison import CompareRequest, compare

    result = compare(flags.typed(CompareRequest, args, settings=flags.settings_request(args)))
    if args.json:
        print_json(result.as_json())
        return 0
    print(f"{args.run_a} (A) vs {args.run_b} (B) on {result.dataset}; {result.settings_from} settings, "
          f"k={result.k}, test points: {result.test_points}")
    for name, r in result.differences.items():
        verdict = "differ beyond noise" if r["p_value"] < ALPHA else "no difference beyond noise"
        print(f"  {name:<12} A {r['a']:.3f}  B {r['b']:.3f}  A-B {r['difference']:+.3f} ± {r['se']:.3f} "
              f"(95% [{r['low']:.3f}, {r['high']:.3f}], p = {r['p_value']:.3g}): {verdict}")
    return 0
