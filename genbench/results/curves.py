"""Learning curves: ``learning_curve.csv`` in a run directory, one row per epoch.

Models that implement ``EpochCallback`` write their rows (a GAN: mean losses, and the FID of a
few samples the harness measured at that epoch); the runner copies the finished curve into the
results database beside the run's metrics.
"""

from __future__ import annotations

import csv
from pathlib import Path

CURVE = "learning_curve.csv"


def write_curve_row(run_dir: Path, epoch: float, values: dict[str, float]) -> Path:
    """Add the row of ``epoch`` to the learning curve, replacing rows of this or later epochs
    (left by a run that was interrupted after writing them and resumed from an older checkpoint)."""
    path = run_dir / CURVE
    rows = []
    if path.exists():
        with path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if float(r["epoch"]) < epoch]
    rows.append({"epoch": f"{epoch:g}", **{k: f"{v:.6g}" for k, v in values.items()}})
    run_dir.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[-1]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_curve(run_dir: Path) -> list[dict[str, float]]:
    """The rows of a run's learning curve as numbers (empty when it has none)."""
    path = Path(run_dir) / CURVE
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]
