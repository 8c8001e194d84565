"""Reference statistics (TTUR's and clean-fid's .npz of mu and sigma): read, checked, written, and FID
against them equal to FID against the features they came from."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch

from genbench.core.errors import GenbenchError
from genbench.core.weights import file_sha256
from genbench.metrics import reference_stats as rs
from genbench.metrics.features import FeatureNet
from genbench.metrics.sample_quality import fidelity_metrics


def _features(n, d=8, seed=0, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) * torch.linspace(0.5, 2, d) + shift


def _net():
    return FeatureNet("stand", "Stand-in", "none", None, "f", None, "stand-in")


def test_written_statistics_read_back_as_the_features_moments(tmp_path):
    real = _features(500)
    digest = rs.write_reference_stats(tmp_path / "ref.npz", real)
    stats = rs.read_reference_stats(tmp_path / "ref.npz", dimension=8)
    assert stats.sha256 == digest == file_sha256(tmp_path / "ref.npz")
    np.testing.assert_allclose(stats.mu, real.double().mean(0).numpy(), rtol=1e-6)
    np.testing.assert_allclose(stats.sigma, np.cov(real.double().numpy(), rowvar=False), rtol=1e-6)
    with zipfile.ZipFile(tmp_path / "ref.npz") as archive:  # the format TTUR and clean-fid write
        assert sorted(archive.namelist()) == ["mu.npy", "sigma.npy"]


def test_fid_against_statistics_equals_fid_against_the_features_they_came_from(tmp_path):
    real, fake = _features(800, seed=0), _features(600, seed=1, shift=0.3)
    direct = fidelity_metrics({"f": fake}, {"f": real}, _net(), which=("fid", "fdinf"))
    rs.write_reference_stats(tmp_path / "ref.npz", real)
    imported = rs.fid_against(fake, rs.read_reference_stats(tmp_path / "ref.npz"), "stand")
    assert direct["fid_stand"] > 0.05
    for key in ("fid_stand", "fid_stand_se", "fdinf_stand"):
        assert imported[key] == pytest.approx(direct[key], rel=1e-6)


def test_a_ttur_style_float32_file_is_read(tmp_path):
    real = _features(300).numpy().astype(np.float64)
    mu, sigma = real.mean(0).astype(np.float32), np.cov(real, rowvar=False).astype(np.float32)
    np.savez_compressed(tmp_path / "fid_stats.npz", mu=mu, sigma=sigma)   # TTUR's precalc_stats call
    stats = rs.read_reference_stats(tmp_path / "fid_stats.npz")
    assert stats.mu.dtype == np.float64 and stats.dimension == 8
    np.testing.assert_allclose(stats.sigma, sigma, rtol=1e-7)


def _npy_header(shape, descr="<f8") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def _zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b"not a zip"), "not an .npz file"),
    (lambda p: np.savez(p, mu=np.zeros(4)), "exactly mu and sigma; found mu.npy"),
    (lambda p: np.savez(p, mu=np.zeros(4), sigma=np.eye(4), extra=np.zeros(1)), "exactly mu and sigma"),
    (lambda p: np.savez(p, mu=np.zeros(4), sigma=np.array([[1, 2], [3, 4]], dtype=object)),
     "holds object, not float32 or float64"),
    (lambda p: np.savez(p, mu=np.zeros(4, np.int64), sigma=np.eye(4)), "holds int64"),
    (lambda p: np.savez(p, mu=np.zeros(4), sigma=np.eye(3)), "mu must be [D] and sigma [D, D]"),
    (lambda p: np.savez(p, mu=np.zeros((4, 1)), sigma=np.eye(4)), "mu must be [D] and sigma [D, D]"),
    (lambda p: np.savez(p, mu=np.array([0, np.nan, 0, 0.0]), sigma=np.eye(4)), "NaN or infinite"),
    (lambda p: np.savez(p, mu=np.zeros(4), sigma=np.eye(4) + np.triu(np.ones((4, 4)), 1)), "not symmetric"),
    (lambda p: np.savez(p, mu=np.zeros(4), sigma=np.diag([1.0, 1.0, 1.0, -0.5])),
     "not positive semi-definite"),
    (lambda p: _zip(p, {"mu.npy": _npy_header((100_000,)), "sigma.npy": _npy_header((100_000, 100_000))}),
     "100000 features; genbench reads 2 to 8192"),
    (lambda p: _zip(p, {"mu.npy": _npy_header((4,)), "sigma.npy": _npy_header((4, 4))}),
     "mu.npy declares 32 bytes of data, more than its 0"),
])
def test_unusable_statistics_are_one_line_before_any_array_is_allocated(tmp_path, make, message):
    path = tmp_path / "stats.npz"
    make(path)
    with pytest.raises(GenbenchError) as info:
        rs.read_reference_stats(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_statistics_of_another_dimension_than_the_network_s_are_refused(tmp_path):
    rs.write_reference_stats(tmp_path / "ref.npz", _features(50, d=8))
    with pytest.raises(GenbenchError, match="statistics of 8 features; the feature network gives 16"):
        rs.read_reference_stats(tmp_path / "ref.npz", dimension=16)
    with pytest.raises(GenbenchError, match="statistics of 8 features; the feature network gives 4"):
        rs.fid_against(_features(50, d=4), rs.read_reference_stats(tmp_path / "ref.npz"), "stand")


def test_an_archive_inflating_past_the_limit_is_refused_from_its_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(rs, "MAX_STATS_BYTES", 1000)
    rs.write_reference_stats(tmp_path / "ref.npz", _features(50, d=16))  # 16 * 17 * 8 bytes and headers
    with pytest.raises(GenbenchError, match="refused, its arrays inflate to"):
        rs.read_reference_stats(tmp_path / "ref.npz")
