"""FID reference statistics as everyone shares them: an ``.npz`` of ``mu`` [D] and ``sigma`` [D, D].

TTUR (Heusel et al.'s ``fid_stats_*.npz``), clean-fid (its ``stats/*.npz``) and torch-fidelity all
store the mean and covariance of a reference set's features under these two names
(``np.savez_compressed(path, mu=mu, sigma=sigma)``). ``read_reference_stats`` reads such a file,
treated as hostile: it is a zip archive whose directory is checked first (the two members and
nothing else, their inflated sizes within ``MAX_STATS_BYTES``), then each member's ``.npy`` header
(a float dtype, the shapes [D] and [D, D] with D at most ``MAX_DIMENSION``) before any array is
allocated; only then are the arrays read, with numpy's ``allow_pickle=False``, and checked: finite,
symmetric, positive semi-definite. Every refusal is one ``GenbenchError`` line. The file's sha256 is
kept with the statistics (``ReferenceStats.sha256``), so a result says which file it was measured
against. ``write_reference_stats`` writes genbench's own statistics in the same format.

``fid_against`` is FID (and its s.e. and FD-infinity) of sample features against such statistics:
torch-fidelity's ``fid_statistics_to_metric``, the function genbench's FID already uses.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import Tensor

from genbench.core.errors import GenbenchError
from genbench.core.npy import read_npy_header
from genbench.core.weights import atomic_write, file_sha256

#: the members of a statistics file, by the names TTUR and clean-fid give them
MEMBERS = ("mu.npy", "sigma.npy")
#: the largest feature dimension read (Inception's pool3 is 2048; DINOv2-L 1024; CLIP 768)
MAX_DIMENSION = 8192
#: the most bytes the two arrays may inflate to: sigma of MAX_DIMENSION float64 features, and mu
MAX_STATS_BYTES = 8 * MAX_DIMENSION * (MAX_DIMENSION + 1) + (64 << 10)
#: the dtypes accepted (either byte order): what np.cov and np.mean give, and float32 copies
FLOAT_KINDS = ("f4", "f8")
#: how far from symmetric (relative to sigma's largest entry) and below zero (relative to its
#: largest eigenvalue) a covariance may be by rounding; float32 files round at about 1e-7
SYMMETRY_TOLERANCE = 1e-5
PSD_TOLERANCE = 1e-5


@dataclass(frozen=True)
class ReferenceStats:
    """The mean and covariance of a reference set's features (float64), and the file they came from."""

    mu: np.ndarray
    sigma: np.ndarray
    path: str
    sha256: str

    @property
    def dimension(self) -> int:
        return len(self.mu)


def _header(archive: zipfile.ZipFile, member: zipfile.ZipInfo, path: Path
            ) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from a member's .npy header, read without reading its data; refused where the
    member is too short for the data its header declares."""
    with archive.open(member) as stream:
        shape, _, dtype = read_npy_header(stream, path, member.filename)
        data_bytes = member.file_size - stream.tell()
    if dtype.hasobject or dtype.kind != "f" or f"{dtype.kind}{dtype.itemsize}" not in FLOAT_KINDS:
        raise GenbenchError(f"{path}: {member.filename} holds {dtype}, not float32 or float64")
    declared = math.prod(shape) * dtype.itemsize
    if len(shape) <= 2 and all(n <= MAX_DIMENSION for n in shape) and declared > data_bytes:
        raise GenbenchError(f"{path}: {member.filename} declares {declared:,} bytes of data, more than its "
                            f"{data_bytes:,}")
    return tuple(shape), dtype


def _check_shapes(shapes: dict[str, tuple[int, ...]], path: Path) -> int:
    """D, where mu is [D] and sigma [D, D] with 2 <= D <= MAX_DIMENSION."""
    mu, sigma = shapes["mu.npy"], shapes["sigma.npy"]
    if len(mu) != 1 or len(sigma) != 2 or sigma != (mu[0], mu[0]):
        raise GenbenchError(f"{path}: mu must be [D] and sigma [D, D]; found mu {list(mu)}, "
                            f"sigma {list(sigma)}")
    if not 2 <= mu[0] <= MAX_DIMENSION:
        raise GenbenchError(f"{path}: {mu[0]} features; genbench reads 2 to {MAX_DIMENSION}")
    return mu[0]


def _check_values(mu: np.ndarray, sigma: np.ndarray, path: Path) -> None:
    """Finite, sigma symmetric and positive semi-definite (to rounding)."""
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise GenbenchError(f"{path}: mu or sigma holds NaN or infinite values")
    scale = float(np.abs(sigma).max()) or 1.0
    asymmetry = float(np.abs(sigma - sigma.T).max())
    if asymmetry > SYMMETRY_TOLERANCE * scale:
        raise GenbenchError(f"{path}: sigma is not symmetric (|sigma - sigma^T| up to {asymmetry:.3g})")
    eigenvalues = np.linalg.eigvalsh((sigma + sigma.T) / 2)
    if eigenvalues[0] < -PSD_TOLERANCE * max(float(eigenvalues[-1]), 0.0) or eigenvalues[-1] < 0:
        raise GenbenchError(f"{path}: sigma is not positive semi-definite (smallest eigenvalue "
                            f"{eigenvalues[0]:.3g}, largest {eigenvalues[-1]:.3g})")


def read_reference_stats(path: str | Path, dimension: int | None = None) -> ReferenceStats:
    """The statistics in a TTUR / clean-fid ``.npz`` (module docstring), checked before and after
    reading; ``dimension``: the feature size they must have (the scoring network's)."""
    path = Path(path)
    if not path.is_file():
        raise GenbenchError(f"{path}: no such reference statistics file")
    if not zipfile.is_zipfile(path):
        raise GenbenchError(f"{path}: not an .npz file (a zip archive of mu and sigma)")
    try:
        with zipfile.ZipFile(path) as archive:
            members = {m.filename: m for m in archive.infolist()}
            if sorted(members) != sorted(MEMBERS):
                raise GenbenchError(f"{path}: reference statistics hold exactly mu and sigma; found "
                                    f"{', '.join(sorted(members)) or 'nothing'}")
            inflated = sum(m.file_size for m in members.values())
            if inflated > MAX_STATS_BYTES:
                raise GenbenchError(f"{path}: refused, its arrays inflate to {inflated:,} bytes, over the "
                                    f"limit of {MAX_STATS_BYTES:,} ({MAX_DIMENSION} float64 features)")
            headers = {name: _header(archive, m, path) for name, m in members.items()}
            d = _check_shapes({name: shape for name, (shape, _) in headers.items()}, path)
            if dimension is not None and d != dimension:
                raise GenbenchError(f"{path}: statistics of {d} features; the feature network gives "
                                    f"{dimension}")
            arrays = {}
            for name, member in members.items():
                with archive.open(member) as stream:
                    arrays[name] = np.lib.format.read_array(stream, allow_pickle=False).astype(np.float64)
    except GenbenchError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise GenbenchError(f"{path}: not a readable .npz file ({exc})") from None
    mu, sigma = arrays["mu.npy"], arrays["sigma.npy"]
    _check_values(mu, sigma, path)
    return ReferenceStats(mu=mu, sigma=sigma, path=str(path), sha256=file_sha256(path))


def feature_stats(features: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of features [N, D] as float64, computed by torch-fidelity's own function (the one
    genbench's FID uses), so statistics written and read back give the FID of the features."""
    from torch_fidelity.metric_fid import fid_features_to_statistics

    stats = fid_features_to_statistics(features.detach().cpu())
    return np.asarray(stats["mu"], dtype=np.float64), np.asarray(stats["sigma"], dtype=np.float64)


def write_reference_stats(path: str | Path, features: Tensor) -> str:
    """Write the statistics of features [N, D] as TTUR and clean-fid do (``mu``, ``sigma``, float64,
    compressed), replacing ``path`` atomically; the file's sha256."""
    path = Path(path)
    if path.suffix != ".npz":
        raise GenbenchError(f"{path}: reference statistics are written as an .npz file")
    mu, sigma = feature_stats(features)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to the temporary name
            np.savez_compressed(f, mu=mu, sigma=sigma)

    atomic_write(path, write)
    return file_sha256(path)


def fid_against(fake: Tensor, stats: ReferenceStats, net_name: str, fd_infinity_min: int = 50,
                seed: int = 2020) -> dict[str, float]:
    """FID, its s.e. (delta method over the samples) and FD-infinity of fake features [N, D] against
    imported statistics, keyed by network name as the sample-quality metric keys them."""
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    from genbench.metrics.fd_infinity import fd_infinity, fid_stderr

    if fake.ndim != 2 or fake.shape[1] != stats.dimension:
        raise GenbenchError(f"{stats.path}: statistics of {stats.dimension} features; the feature network "
                            f"gives {fake.shape[1] if fake.ndim == 2 else list(fake.shape)}")
    mu, sigma = feature_stats(fake)
    s = net_name
    fid = fid_statistics_to_metric({"mu": mu, "sigma": sigma}, {"mu": stats.mu, "sigma": stats.sigma}, False)
    out = {f"fid_{s}": float(fid["frechet_inception_distance"]),
           f"fid_{s}_se": float(fid_stderr(fake, stats.mu, stats.sigma))}
    if len(fake) >= fd_infinity_min:
        fdinf = fd_infinity(fake, stats.mu, stats.sigma, rng=np.random.default_rng(seed))
        out |= {f"fdinf_{s}": float(fdinf["fd_infinity"]), f"fdinf_{s}_se": float(fdinf["stderr"])}
    return out


def score_against_stats(fake: Tensor, net, stats: ReferenceStats, device: str = "cpu") -> dict[str, float]:
    """The sample metrics that need no reference images, of uint8 images ``fake``: IS (where the network
    has logits), and FID, its s.e. and FD-infinity against imported statistics; KID, precision/recall
    and density/coverage need the reference features themselves, which a statistics file does not hold."""
    from torch_fidelity.metric_isc import isc_featuresdict_to_metric

    from genbench.metrics.sample_quality import MIN_FD_INFINITY_SAMPLES, QualitySettings, extract_features

    settings = QualitySettings()
    if len(fake) < settings.min_samples:
        raise GenbenchError(f"{len(fake)} samples: IS and FID need at least {settings.min_samples}")
    features = extract_features(fake, net, device, settings.batch_size)
    out: dict[str, float] = {}
    if net.layer_isc:
        isc = isc_featuresdict_to_metric(features, net.layer_isc, verbose=False, rng_seed=settings.rng_seed,
                                         isc_splits=settings.isc_splits, save_cpu_ram=True)
        out |= {f"is_{net.name}": isc["inception_score_mean"],
                f"is_{net.name}_std": isc["inception_score_std"]}
    fid = fid_against(features[net.layer_fid], stats, net.name, MIN_FD_INFINITY_SAMPLES, settings.rng_seed)
    return out | fid
