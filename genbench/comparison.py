"""``genbench compare``'s measurement: whether two checkpoints differ beyond noise.

Both are scored on the same test points: their NLL (per point, each under the RNG the nll metric
has in ``evaluate``, so each is its run's NLL exactly) compared by a paired t-test over the points,
and, where model samples are asked for, their FID compared by independent standard errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genbench.core.errors import GenbenchError
from genbench.scoring import SettingsRequest, load_for_scoring, settings_for


@dataclass(frozen=True)
class CompareRequest:
    """Two checkpoints (run directories or checkpoint files), scored with run A's settings
    (``settings``), on data from ``data_root``, on ``device``."""

    run_a: Path
    run_b: Path
    settings: SettingsRequest
    data_root: str | None
    device: str


@dataclass(frozen=True)
class Comparison:
    """Each metric's difference (``differences``: A, B, A-B, its standard error, interval and p-value)
    and what they were measured with. ``as_json`` is the ``--json`` report."""

    request: CompareRequest
    dataset: str
    settings_from: str
    k: int
    test_points: str
    differences: dict[str, dict[str, float]]

    def as_json(self) -> dict[str, Any]:
        return {"run_a": str(self.request.run_a), "run_b": str(self.request.run_b), "dataset": self.dataset,
                "settings_from": self.settings_from, "k": self.k, "test_points": self.test_points,
                **self.differences}


def compare(request: CompareRequest) -> Comparison:
    """Load both checkpoints (same data set), and compare each metric both have."""
    from genbench.data import load_dataset
    from genbench.metrics.subsets import describe, representative
    from genbench.train.device import select_device

    a, b = (load_for_scoring(path, None, {}, None) for path in (request.run_a, request.run_b))
    if a.dataset != b.dataset:
        raise GenbenchError(f"the runs are on different data sets ({a.dataset}, {b.dataset}): not comparable")
    settings, source = settings_for(a, request.settings, request.data_root)
    device = select_device(request.device)
    dataset = load_dataset(a.dataset, request.data_root, device)
    test = dataset.eval_tensor("test")
    points = representative(test, settings.n_test, settings.points_seed)
    models = (a.model.to(device).eval(), b.model.to(device).eval())
    differences = {**_nll_difference(models, points, settings, device),
                   **_fid_difference(models, dataset, settings, device)}
    if not differences:
        raise GenbenchError("nothing to compare: both models need a likelihood (NLL), or samples "
                            "(give --quality-samples N for FID)")
    subset = describe(settings.n_test, len(test), settings.points_seed)
    return Comparison(request, a.dataset, source, settings.k, subset, differences)


def _nll_difference(models, points, settings, device) -> dict[str, dict[str, float]]:
    """``nll``: the paired difference of the two models' per-point NLLs (none unless both have one)."""
    from genbench.metrics.compare import paired_difference
    from genbench.metrics.likelihood import nll_per_example
    from genbench.metrics.registry import METRICS, seeded

    if not all(METRICS["nll"].applies(model) for model in models):
        return {}
    per_point = []
    for model in models:  # the RNG of the nll metric in evaluate: each run's NLL exactly
        with seeded(settings.seed, "nll", device):
            per_point.append(nll_per_example(model, points, settings.k))
    return {"nll": {"a": per_point[0].mean().item(), "b": per_point[1].mean().item(),
                    **paired_difference(*per_point)}}


def _fid_difference(models, dataset, settings, device) -> dict[str, dict[str, float]]:
    """``fid_<net>``: the difference of the two models' FIDs (none without samples of both)."""
    from genbench.core.protocols import Sampler
    from genbench.metrics.compare import independent_difference
    from genbench.metrics.features import resolve_feature_net
    from genbench.metrics.sample_quality import model_samples, score_images

    if settings.quality_samples <= 0 or not all(isinstance(model, Sampler) for model in models):
        return {}
    net = resolve_feature_net(settings.features, dataset, settings.cache_root)
    fids = []
    for model in models:
        fake = model_samples(model, settings.quality_samples, settings.seed)
        values = score_images(fake, dataset, net, settings.quality_split, settings.quality_reference,
                              device=device, which=("fid",), seed=settings.points_seed)
        fids.append((values[f"fid_{net.name}"], values[f"fid_{net.name}_se"]))
    difference = independent_difference(*fids[0], *fids[1])
    return {f"fid_{net.name}": {"a": fids[0][0], "b": fids[1][0], **difference}}
