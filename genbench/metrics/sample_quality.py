"""IS, FID, KID and precision/recall of samples: torch-fidelity's, and genbench's own k-NN metrics.

genbench turns images into uint8 ``[N, C, H, W]`` tensors, lets torch-fidelity's own
extractor loop compute the features of the chosen network (``genbench.metrics.features``)
and passes them to torch-fidelity's IS, FID and KID functions. Precision/recall (torch-fidelity's
definition, k = ``prc_neighborhood``) and density/coverage are genbench's, in
``genbench.metrics.knn``: torch-fidelity's precision/recall holds 10,000 x N float32 distances
at once, twice while it concatenates them (8 GB at N = 100,000, the default ``--max-samples``);
genbench's blocks stay within ``knn.BLOCK_BYTES`` (256 MiB) whatever N.
The features of the real data (a split of the data set, its first n images) are computed
once and cached as safetensors in the feature cache (``features.cache_dir``), keyed by a hash of the
images and of the network: scoring ten models extracts the real features once.
torch-fidelity's own cache is not used because it stores pickles. torch-fidelity is imported
where it is called (it imports torchvision, about a second), so a process that never scores
samples never pays for it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import Tensor, nn
from torch.utils.data import Dataset

from genbench.core.errors import GenbenchError, MetricSkipped
from genbench.core.rng import seeded_rng
from genbench.core.weights import save_tensors
from genbench.metrics.density_coverage import binomial_se, density_coverage
from genbench.metrics.fd_infinity import fd_infinity, fid_stderr
from genbench.metrics.features import FeatureNet, cache_dir, resolve_feature_net
from genbench.metrics.knn import precision_recall
from genbench.metrics.lenet import data_hash
from genbench.metrics.subsets import representative

#: tolerance of model samples just outside [0, 1] (float rounding), clamped before quantising
RANGE_TOLERANCE = 1e-4


def to_uint8(x: Tensor) -> Tensor:
    """Images in [0, 1] as uint8 levels round(255 x); values outside are one clear error."""
    if x.dtype == torch.uint8:
        return x
    lo, hi = float(x.min()), float(x.max())
    if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE or x.isnan().any():
        raise GenbenchError(f"samples must lie in [0, 1]; found values in [{lo:.4g}, {hi:.4g}]")
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


class UInt8Images(Dataset):
    """A uint8 image tensor as the Dataset torch-fidelity reads (gray repeated to RGB on request)."""

    def __init__(self, images: Tensor, rgb: bool = False):
        self.images = images.cpu()
        self.rgb = rgb and images.shape[1] == 1

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Tensor:
        image = self.images[i]
        return image.expand(3, *image.shape[1:]) if self.rgb else image


#: fewest samples FD-infinity is fitted on (its subsets start at a fifth of them)
MIN_FD_INFINITY_SAMPLES = 50


@dataclass(frozen=True)
class QualitySettings:
    """What torch-fidelity is asked for; defaults are torch-fidelity's except KID's subset."""

    kid_subset_size: int = 1000
    """Capped by the number of samples."""
    kid_subsets: int = 100
    isc_splits: int = 10
    prc_neighborhood: int = 3
    dc_neighbours: int = 5
    """k of density and coverage (Naeem et al.'s default)."""
    rng_seed: int = 2020
    batch_size: int = 500

    @property
    def min_samples(self) -> int:
        """Fewest samples every metric is defined on: IS splits them into ``isc_splits`` parts, and
        precision takes each sample's ``prc_neighborhood``-th neighbour among the others."""
        return max(self.isc_splits, self.prc_neighborhood + 1)

    @property
    def min_reference(self) -> int:
        """Fewest real images every metric is defined on: the k-NN balls of recall and of density
        and coverage need ``k`` neighbours besides the image itself (and FID a covariance)."""
        return max(self.prc_neighborhood, self.dc_neighbours) + 1


def extract_features(images: Tensor, net: FeatureNet, device: torch.device | str = "cpu",
                     batch_size: int = 500) -> dict[str, Tensor]:
    """torch-fidelity's features of uint8 images: the layers of FID and (where any) IS."""
    from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset

    import genbench.metrics.fidelity_extractors  # noqa: F401 (registers genbench's extractors)

    layers = [net.layer_fid] + ([net.layer_isc] if net.layer_isc else [])
    cuda = torch.device(device).type == "cuda"
    extractor = create_feature_extractor(net.fidelity_name, layers, cuda=cuda, verbose=False,
                                         feature_extractor_weights_path=str(net.weights_path))
    return get_featuresdict_from_dataset(UInt8Images(images, net.rgb), extractor, batch_size, cuda,
                                         save_cpu_ram=True, verbose=False)


def reference_features(images: Tensor, net: FeatureNet, cache: Path, label: str,
                       device: torch.device | str = "cpu") -> tuple[dict[str, Tensor], bool]:
    """(features of the real images, whether they came from the cache)."""
    key = hashlib.sha256(f"{net.identity}|{net.layer_fid}|{net.layer_isc}|"
                         f"{data_hash(images)}".encode()).hexdigest()[:16]
    path = cache / f"reference-{net.name}-{label}-{key}.safetensors"
    if path.exists():
        return load_file(str(path)), True
    features = extract_features(images, net, device)
    save_tensors(path, features)
    return features, False


ALL_METRICS = ("isc", "fid", "kid", "prc", "fdinf", "dc")


def fidelity_metrics(fake: dict[str, Tensor], real: dict[str, Tensor], net: FeatureNet,
                     settings: QualitySettings = QualitySettings(),
                     which: tuple[str, ...] = ALL_METRICS) -> dict[str, float]:
    """IS (of the fakes), FID, KID (torch-fidelity's), FD-infinity, density/coverage and precision/recall
    (genbench's, in bounded memory), keyed by network name."""
    from torch_fidelity.metric_fid import fid_featuresdict_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_isc import isc_featuresdict_to_metric
    from torch_fidelity.metric_kid import kid_featuresdict_to_metric

    n = min(len(fake[net.layer_fid]), len(real[net.layer_fid]))
    kwargs = {"verbose": False, "rng_seed": settings.rng_seed, "isc_splits": settings.isc_splits,
              "kid_subsets": settings.kid_subsets, "kid_subset_size": min(settings.kid_subset_size, n),
              "save_cpu_ram": True}
    s = net.name
    out: dict[str, float] = {}
    if "isc" in which and net.layer_isc:
        isc = isc_featuresdict_to_metric(fake, net.layer_isc, **kwargs)
        out |= {f"is_{s}": isc["inception_score_mean"], f"is_{s}_std": isc["inception_score_std"]}
    fake_x, real_x = fake[net.layer_fid], real[net.layer_fid]
    real_stats = fid_featuresdict_to_statistics(real, net.layer_fid)
    if "fid" in which:
        fid = fid_statistics_to_metric(fid_featuresdict_to_statistics(fake, net.layer_fid), real_stats, False)
        out[f"fid_{s}"] = fid["frechet_inception_distance"]
        out[f"fid_{s}_se"] = fid_stderr(fake_x, real_stats["mu"], real_stats["sigma"])
    if "fdinf" in which and len(fake_x) >= MIN_FD_INFINITY_SAMPLES:
        fdinf = fd_infinity(fake_x, real_stats["mu"], real_stats["sigma"],
                            rng=np.random.default_rng(settings.rng_seed))
        out |= {f"fdinf_{s}": fdinf["fd_infinity"], f"fdinf_{s}_se": fdinf["stderr"]}
    if "dc" in which:
        dc = density_coverage(real_x, fake_x, k=settings.dc_neighbours)
        out |= {f"{key}_{s}{suffix}": dc[key + suffix]
                for key in ("density", "coverage") for suffix in ("", "_se")}
    if "kid" in which:
        kid = kid_featuresdict_to_metric(fake, real, net.layer_fid, **kwargs)
        out |= {f"kid_{s}": kid["kernel_inception_distance_mean"],
                f"kid_{s}_std": kid["kernel_inception_distance_std"]}
    if "prc" in which:
        prc = precision_recall(real_x, fake_x, k=settings.prc_neighborhood)
        # precision averages indicators over the fakes, recall over the reals, the other set's
        # neighbourhoods held fixed: binomial standard errors (density_coverage says why no bootstrap)
        out |= {f"precision_{s}": prc["precision"], f"recall_{s}": prc["recall"],
                f"precision_{s}_se": binomial_se(prc["precision"], len(fake_x)),
                f"recall_{s}_se": binomial_se(prc["recall"], len(real_x))}
    return out


def reference_images(dataset, split: str, n: int | None, seed: int = 0) -> Tensor:
    """n images of a split (a seeded random subset, never a prefix) as uint8, as models see them
    (binarized where binary)."""
    if split not in dataset.splits:
        raise GenbenchError(f"data set {dataset.name} has no split {split!r}; "
                            f"valid: {', '.join(dataset.splits)}")
    return to_uint8(representative(dataset.eval_tensor(split), n, seed).cpu())


def score_images(fake: Tensor, dataset, net: FeatureNet, split: str = "test", n_reference: int | None = None,
                 cache: Path | None = None, device: torch.device | str = "cpu",
                 settings: QualitySettings = QualitySettings(),
                 which: tuple[str, ...] = ALL_METRICS, seed: int = 0) -> dict[str, float]:
    """IS/FID/KID/PR (or those in ``which``) of uint8 images ``fake`` against ``n_reference`` images
    of a split of ``dataset`` (a random subset seeded by ``seed`` where that is fewer than all)."""
    if tuple(fake.shape[1:]) != tuple(dataset.shape):
        raise GenbenchError(f"samples are {'x'.join(map(str, fake.shape[1:]))}, data set "
                            f"{dataset.name} has {'x'.join(map(str, dataset.shape))} images")
    if len(fake) < settings.min_samples:
        raise GenbenchError(f"{len(fake)} samples: IS, FID, KID and precision/recall need at least "
                            f"{settings.min_samples}")
    real_images = reference_images(dataset, split, n_reference, seed)
    if len(real_images) < settings.min_reference:
        raise GenbenchError(f"{len(real_images)} real images of {dataset.name} {split}: the sample metrics "
                            f"need at least {settings.min_reference} (--n-reference)")
    label = f"{dataset.name}-{split}-{len(real_images)}"
    real, _ = reference_features(real_images, net, cache or cache_dir(), label, device)
    return fidelity_metrics(extract_features(fake, net, device), real, net, settings, which)


@torch.no_grad()
def model_samples(model, n: int, seed: int, batch_size: int = 1000) -> Tensor:
    """n samples of a Sampler as uint8 images, drawn under a fixed seed (global RNG untouched).

    Samples outside [0, 1] (a Gaussian density on binary pixels) skip the metrics: they are
    not images of the data, and clamping them would score something the model never drew."""
    with seeded_rng(seed):
        try:
            chunks = [to_uint8(model.sample(min(batch_size, n - i)).cpu()) for i in range(0, n, batch_size)]
        except GenbenchError as exc:
            raise MetricSkipped(f"{type(model).__name__} {exc}") from None
    return torch.cat(chunks)


class SampleCache:
    """One evaluation's model samples by (count, seed). The sample metrics and the copying tests score
    the same draws (the same seed), so they are drawn once (a diffusion model's sample costs its
    sampler's steps in network passes). Consumers read the tensor and never change it."""

    def __init__(self) -> None:
        self._drawn: dict[tuple[int, int], tuple[nn.Module, Tensor]] = {}

    def draw(self, model: nn.Module, n: int, seed: int) -> Tensor:
        """``model_samples(model, n, seed)``, drawn at the first call for this model."""
        held = self._drawn.get((n, seed))
        if held is None or held[0] is not model:
            held = self._drawn[(n, seed)] = (model, model_samples(model, n, seed))
        return held[1]


def sample_quality_applies(model, ctx) -> bool:
    """An image data set and a budget that asks for samples."""
    return ctx.dataset is not None and hasattr(ctx.dataset, "splits") and ctx.settings.quality_samples > 0


def sample_quality_metrics(model, ctx) -> dict[str, float]:
    """The registry's compute: ``quality_samples`` model samples against the reference split.

    Raises MetricSkipped (recorded by the run) where no feature network fits the data."""
    s = ctx.settings
    net = resolve_feature_net(s.features, ctx.dataset, s.cache_root)
    fake = ctx.samples.draw(model, s.quality_samples, s.seed)
    return score_images(fake, ctx.dataset, net, s.quality_split, s.quality_reference,
                        cache_dir(s.cache_root), ctx.data.device, seed=s.points_seed)


def curve_monitor(dataset, settings) -> Callable[[nn.Module], dict[str, float]] | None:
    """A training-loop monitor: IS and FID of ``settings.curve_samples`` samples at each epoch
    end, keyed ``fid_lenet@2000`` and so on (fewer samples than the final metrics: FID is biased
    upward at small n, so the curve is comparable along itself, not with the final column).

    None where the run asks for no sample quality or no feature network fits the data."""
    if settings.quality_samples <= 0 or settings.curve_samples <= 0:
        return None
    try:
        net = resolve_feature_net(settings.features, dataset, settings.cache_root)
    except MetricSkipped:
        return None
    cache = cache_dir(settings.cache_root)

    def measure(model: nn.Module) -> dict[str, float]:
        was_training = model.training
        model.eval()
        try:
            fake = model_samples(model, settings.curve_samples, settings.seed)
        except MetricSkipped:
            return {}
        finally:
            model.train(was_training)
        values = score_images(fake, dataset, net, settings.quality_split, settings.quality_reference, cache,
                              dataset.device, which=("isc", "fid"), seed=settings.points_seed)
        return {f"{key}@{settings.curve_samples}": value for key, value in values.items()}

    return measure
