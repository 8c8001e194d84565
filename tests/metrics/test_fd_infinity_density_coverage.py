"""FD∞ (Chong & Forsyth 2020) and density/coverage (Naeem et al. 2020) against known values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_fidelity.metric_fid import fid_statistics_to_metric

from genbench.metrics.density_coverage import density_coverage, knn_radii
from genbench.metrics.fd_infinity import fd_infinity, frechet_distance, subset_sizes

D = 32


def _covariance(d: int = D, seed: int = 0) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(d, d)) / np.sqrt(d)
    return a @ a.T + 0.5 * np.eye(d)


def _gaussian(n: int, cov: np.ndarray, shift: float, seed: int) -> torch.Tensor:
    x = np.random.default_rng(seed).normal(size=(n, len(cov))) @ np.linalg.cholesky(cov).T
    x[:, 0] += shift
    return torch.from_numpy(x)


def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=20), rng.normal(size=20)
    s1, s2 = rng.uniform(0.1, 3, 20), rng.uniform(0, 3, 20)
    s2[:3] = 0  # a singular covariance is fine
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(s1) - np.sqrt(s2)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-12)
    as_tensors = [torch.from_numpy(a).float() for a in (mu1, np.diag(s1), mu2, np.diag(s2))]
    assert frechet_distance(*as_tensors) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(mu1, np.diag(s1), mu1, np.diag(s1)) == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_frechet_distance_agrees_with_torch_fidelity(seed):
    rng = np.random.default_rng(seed)
    d = 64
    a, b = rng.normal(size=(d, d)), rng.normal(size=(d, d // 2))  # the second of rank d / 2
    stats = [{"mu": rng.normal(size=d), "sigma": s} for s in (a @ a.T / d, b @ b.T / d)]
    expected = fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]
    got = frechet_distance(stats[0]["mu"], stats[0]["sigma"], stats[1]["mu"], stats[1]["sigma"])
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_subset_sizes_follow_the_paper_and_reject_degenerate_fits():
    assert subset_sizes(50_000, 15, 0.1).tolist() == np.linspace(5000, 50_000, 15).astype(int).tolist()
    assert subset_sizes(4000).tolist()[::7] == [800, 2400, 4000]
    for n, sizes, fraction in [(4000, 2, 0.2), (4000, 15, 0.0), (4000, 15, 1.0), (5, 15, 0.2)]:
        with pytest.raises(ValueError):
            subset_sizes(n, sizes, fraction)


def test_fd_infinity_removes_the_bias_of_fid_for_samples_of_the_real_gaussian():
    cov = _covariance()
    out = fd_infinity(_gaussian(4000, cov, 0.0, seed=1), np.zeros(D), cov, rng=np.random.default_rng(0))
    # second-order expansion of E FID_n for exact real moments, eigenvalues l of cov:
    # tr(cov) / n + sum_ij l_i l_j (1 + [i = j]) / (2 (l_i + l_j)) / n (mean and Bures terms)
    lam = np.linalg.eigvalsh(cov)
    slope = lam.sum() + (np.outer(lam, lam) * (1 + np.eye(D)) / (2 * np.add.outer(lam, lam))).sum()
    assert out["slope"] == pytest.approx(slope, rel=0.2)  # scatter over seeds: 5.5%
    assert out["fid"] == pytest.approx(slope / 4000, rel=0.25)  # FID at N is ~ all bias
    assert out["fid"] > 5 * out["stderr"]
    assert abs(out["fd_infinity"]) < min(3 * out["stderr"], out["fid"] / 3)
    assert out["sizes"][-1] == 4000 and len(out["fids"]) == 15
    assert 0 < out["stderr_fit"] < out["stderr"]


def test_fd_infinity_does_not_depend_on_n_the_way_fid_does():
    cov = _covariance()
    out = {n: fd_infinity(_gaussian(n, cov, 0.3, seed=n), np.zeros(D), cov, rng=np.random.default_rng(n))
           for n in (2000, 8000)}
    truth = frechet_distance(np.eye(D)[0] * 0.3, cov, np.zeros(D), cov)
    se = np.hypot(out[2000]["stderr"], out[8000]["stderr"])
    assert abs(out[2000]["fd_infinity"] - out[8000]["fd_infinity"]) < 2 * se
    assert out[2000]["fid"] - out[8000]["fid"] > 3 * se
    for o in out.values():
        assert abs(o["fd_infinity"] - truth) < 3 * o["stderr"]
        assert o["fid"] - truth > 2 * o["stderr"]


def test_fd_infinity_is_a_function_of_the_seed():
    cov = _covariance(8)
    x = _gaussian(500, cov, 0.5, seed=0)
    sigma = torch.from_numpy(cov)
    runs = [fd_infinity(x, torch.zeros(8), sigma, rng=np.random.default_rng(s)) for s in (3, 3, 4)]
    assert runs[0] == runs[1]
    assert runs[0]["fd_infinity"] != runs[2]["fd_infinity"] and runs[0]["fid"] == runs[2]["fid"]
    with pytest.raises(ValueError):
        fd_infinity(x, torch.zeros(7), sigma, rng=np.random.default_rng(0))


def _density_coverage_brute_force(real: torch.Tensor, fake: torch.Tensor, k: int) -> dict[str, float]:
    """The paper's definitions with full distance matrices (as the authors' ``prdc``)."""
    real, fake = real.double(), fake.double()
    d_real = ((real[:, None] - real[None]) ** 2).sum(-1).sqrt()
    radii = d_real.sort(dim=1).values[:, k]  # column 0 is the point itself
    inside = ((real[:, None] - fake[None]) ** 2).sum(-1).sqrt() < radii[:, None]  # [N, M]
    per_fake = inside.sum(0).double() / k
    return {"density": inside.sum().item() / (k * len(fake)),
            "density_se": (per_fake.std() / len(fake) ** 0.5).item(),
            "coverage": inside.any(1).double().mean().item(), "radii": radii}


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_identical_sets_have_coverage_one_and_density_exactly_one(chunk):
    # with strict "<" a real point's ball holds itself and its k - 1 nearest neighbours: each of
    # the N balls holds exactly k fakes (the twins), so density = k N / (k N) = 1, no tolerance
    real = torch.randn(300, 10)
    values = density_coverage(real, real.clone(), k=5, chunk=chunk)
    assert (values["density"], values["coverage"], values["coverage_se"]) == (1.0, 1.0, 0.0)


@pytest.mark.parametrize("chunk", [1, 7, 64, 250, 1000])
def test_chunked_density_coverage_equals_the_brute_force_reference(chunk):
    g = torch.Generator().manual_seed(1)
    real, fake = torch.randn(250, 6, generator=g), 1.2 * torch.randn(180, 6, generator=g) + 0.3
    for k in (1, 3, 5):
        expected = _density_coverage_brute_force(real, fake, k)
        got = density_coverage(real, fake, k=k, chunk=chunk)
        assert got["density"] == pytest.approx(expected["density"], abs=1e-12)
        assert got["coverage"] == pytest.approx(expected["coverage"], abs=1e-12)
        assert got["density_se"] == pytest.approx(expected["density_se"], abs=1e-12)
        binomial = (got["coverage"] * (1 - got["coverage"]) / len(real)) ** 0.5
        assert got["coverage_se"] == pytest.approx(binomial)
        torch.testing.assert_close(knn_radii(real, k, chunk), expected["radii"], rtol=1e-10, atol=1e-10)
    assert 0.2 < got["coverage"] < 0.95 and 0.2 < got["density"] < 0.95  # a non-trivial case


def test_fakes_far_from_the_reals_have_density_and_coverage_zero():
    real = torch.randn(200, 8)
    assert density_coverage(real, torch.randn(150, 8) + 50, chunk=33) == {
        "density": 0.0, "density_se": 0.0, "coverage": 0.0, "coverage_se": 0.0}


def test_fakes_collapsed_onto_one_real_point_cover_little_but_are_dense():
    # the point nearest the mean is a hub in 16 dimensions: many real balls contain it. All M
    # fakes sit in the same c balls, so coverage = c / N is small and density = c / k large
    n, k = 1000, 5
    real = torch.randn(n, 16, generator=torch.Generator().manual_seed(0))
    hub = real[real.norm(dim=1).argmin()]
    out = density_coverage(real, hub.repeat(500, 1), k=k, chunk=100)
    assert out["coverage"] < 0.05 and out["density"] > 2
    assert out["density"] == pytest.approx(out["coverage"] * n / k, rel=1e-12)


def test_same_gaussian_gives_density_one_and_the_expected_coverage():
    # Naeem et al.: for fakes from the real distribution, E[density] = 1 and
    # E[coverage] = 1 - (N-1)...(N-k) / ((M+N-1)...(M+N-k)), about 1 - 2^-k for N = M
    n = m = 2000
    k = 5
    expected = 1 - np.prod([(n - i) / (m + n - i) for i in range(1, k + 1)])
    runs = []
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        out = density_coverage(torch.randn(n, 16, generator=g), torch.randn(m, 16, generator=g), k=k)
        runs.append((out["density"], out["coverage"]))
    density, coverage = np.mean(runs, axis=0)  # one run scatters by 0.045 (density), 0.005 (coverage)
    assert density == pytest.approx(1, abs=0.06)
    assert coverage == pytest.approx(expected, abs=0.01)


def test_density_coverage_rejects_bad_shapes_and_settings():
    real = torch.randn(10, 3)
    for fake, k, chunk in [(torch.randn(5, 4), 5, 8), (torch.randn(5, 3), 10, 8), (torch.randn(5, 3), 3, 0)]:
        with pytest.raises(ValueError):
            density_coverage(real, fake, k=k, chunk=chunk)


def test_fd_infinity_and_fid_stderr_work_in_row_blocks_never_a_float64_copy_of_the_features(monkeypatch):
    """float32 features 20,000 x 256 (20 MB; 41 MB as float64): peak numpy allocation within a few 1 MB
    blocks and the D x D matrices (old code: a float64 copy and its centred copy, over 80 MB), and the
    same values as in one block."""
    import tracemalloc

    import genbench.metrics.fd_infinity as fdi

    d = 256
    x = np.random.default_rng(0).normal(size=(20_000, d)).astype(np.float32)
    mu, sigma = np.zeros(d), _covariance(d)
    monkeypatch.setattr(fdi, "ROW_BLOCK_BYTES", 1 << 40)
    whole = fd_infinity(x, mu, sigma, rng=np.random.default_rng(0)), fdi.fid_stderr(x, mu, sigma)
    monkeypatch.setattr(fdi, "ROW_BLOCK_BYTES", 1 << 20)
    tracemalloc.start()
    try:
        blocked = fd_infinity(x, mu, sigma, rng=np.random.default_rng(0)), fdi.fid_stderr(x, mu, sigma)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 6 * fdi.ROW_BLOCK_BYTES + 12 * 8 * d * d + 3 * 8 * len(x), peak / 2**20
    for key in ("fd_infinity", "slope", "stderr", "fid"):
        assert blocked[0][key] == pytest.approx(whole[0][key], rel=1e-9)
    assert blocked[1] == pytest.approx(whole[1], rel=1e-9)
