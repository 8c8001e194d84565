"""IS/FID/KID/PR through torch-fidelity: closed forms, feature networks, caches, the registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg
from torch import nn

from genbench.core.errors import GenbenchError
from genbench.data.base import ImageDataset
from genbench.metrics import EvalSettings, evaluate
from genbench.metrics import features as feats
from genbench.metrics import sample_quality as sq
from genbench.metrics.lenet import LeNetConfig, load_or_train_lenet


def _net(name="t", isc="logits") -> feats.FeatureNet:
    return feats.FeatureNet(name, name, "unused", feats.Path("unused"), "features", isc, name)


def _exact_gaussian(n: int, mean: np.ndarray, cov: np.ndarray, seed: int) -> torch.Tensor:
    """Points whose empirical mean and (n-1)-normalised covariance are exactly ``mean``, ``cov``."""
    z = np.random.default_rng(seed).normal(size=(n, len(mean)))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T
    return torch.from_numpy(z @ np.linalg.cholesky(cov).T + mean)


def test_fid_of_a_set_against_itself_is_zero():
    f = {"features": torch.randn(300, 6, dtype=torch.float64)}
    values = sq.fidelity_metrics(f, f, _net(isc=None), which=("fid", "prc"))
    assert values["fid_t"] == pytest.approx(0, abs=1e-8)
    assert values["precision_t"] == 1 and values["recall_t"] == 1


def test_frechet_distance_of_two_gaussians_matches_the_closed_form():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    cov1, cov2 = a @ a.T + np.eye(4), b @ b.T + 0.5 * np.eye(4)
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(cov1 + cov2 - 2 * linalg.sqrtm(cov1 @ cov2).real)
    fake = {"features": _exact_gaussian(500, mu1, cov1, 2)}
    real = {"features": _exact_gaussian(700, mu2, cov2, 3)}
    fid = sq.fidelity_metrics(fake, real, _net(isc=None), which=("fid",))["fid_t"]
    assert fid == pytest.approx(expected, rel=1e-6)


def _confident_logits(classes: torch.Tensor) -> torch.Tensor:
    return 50.0 * nn.functional.one_hot(classes, 10).double()


def test_inception_score_is_one_for_a_single_class_and_ten_for_ten_uniform_classes():
    real = {"features": torch.randn(50, 3)}
    one = {"features": torch.randn(1000, 3), "logits": _confident_logits(torch.full((1000,), 3))}
    assert sq.fidelity_metrics(one, real, _net(), which=("isc",))["is_t"] == pytest.approx(1, abs=1e-9)
    ten = {"features": torch.randn(1000, 3), "logits": _confident_logits(torch.arange(1000) % 10)}
    exact = sq.QualitySettings(isc_splits=1)
    assert sq.fidelity_metrics(ten, real, _net(), exact, ("isc",))["is_t"] == pytest.approx(10, abs=1e-6)
    ten_splits = sq.fidelity_metrics(ten, real, _net(), which=("isc",))["is_t"]
    assert ten_splits == pytest.approx(10, rel=0.05)  # splits of shuffled samples are not exactly balanced


def _digits(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic labelled 'digits': class c is a bright 6x6 block at one of 10 places, plus noise."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = torch.rand(n, 1, 28, 28, generator=gen) * 60
    for c in range(10):
        row, col = 2 + 12 * (c // 5), 1 + 5 * (c % 5)
        images[labels == c, :, row:row + 8, col:col + 6] += 180
    return images.clamp(0, 255).to(torch.uint8), labels


@pytest.fixture(scope="module")
def digits() -> ImageDataset:
    (xtr, ytr), (xte, yte) = _digits(600, 0), _digits(300, 1)
    return ImageDataset("digits", "gray8", {"train": xtr, "test": xte}, labels={"train": ytr, "test": yte})


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv(feats.CACHE_ENV, str(tmp_path / "fallback"))
    return tmp_path / "data"


FAST_LENET = LeNetConfig(epochs=1, batch_size=32)


def test_lenet_is_trained_once_cached_as_safetensors_and_keyed_by_config(digits, cache_root, monkeypatch):
    cache = feats.cache_dir(cache_root)
    with torch.no_grad():  # the first caller is often evaluate(), under no_grad
        first = load_or_train_lenet(digits, cache, FAST_LENET, log=lambda _: None)
    assert first.test_accuracy > 0.9
    assert first.weights_path.suffix == ".safetensors" and first.weights_path.with_suffix(".json").exists()
    monkeypatch.setattr("genbench.metrics.lenet.train_lenet", lambda *a: pytest.fail("retrained"))
    again = load_or_train_lenet(digits, cache, FAST_LENET)
    assert again.key == first.key and again.test_accuracy == first.test_accuracy
    for name, value in first.model.state_dict().items():
        assert torch.equal(value, again.model.state_dict()[name])
    other = LeNetConfig(epochs=1, batch_size=32, seed=1)
    with pytest.raises(pytest.fail.Exception):
        load_or_train_lenet(digits, cache, other)


def test_the_cache_is_genbench_cache_where_set_else_the_data_root_else_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv(feats.CACHE_ENV, str(tmp_path / "user"))
    assert feats.cache_dir(tmp_path / "ok") == tmp_path / "user" / feats.CACHE_FOLDER
    assert not (tmp_path / "ok").exists()  # a writable data root is not written to
    monkeypatch.delenv(feats.CACHE_ENV)
    monkeypatch.setattr(feats, "DEFAULT_ROOT", str(tmp_path / "home"))
    assert feats.cache_dir(tmp_path / "ok") == tmp_path / "ok" / feats.CACHE_FOLDER
    blocked = tmp_path / "file"
    blocked.write_text("a file where the data root should be")
    assert feats.cache_dir(blocked / "root") == tmp_path / "home" / feats.CACHE_FOLDER
    read_only = tmp_path / "shared"
    read_only.mkdir(mode=0o555)  # root could write here; genbench honours the mode anyway
    assert feats.cache_dir(read_only) == tmp_path / "home" / feats.CACHE_FOLDER
    assert not (read_only / feats.CACHE_FOLDER).exists()


@pytest.fixture
def lenet_net(digits, cache_root):
    """A LeNet of the synthetic digits (the shipped one knows real MNIST only)."""
    trained = load_or_train_lenet(digits, feats.cache_dir(cache_root), FAST_LENET, log=lambda _: None)
    return feats.lenet_feature_net(trained.weights_path, feats.file_sha256(trained.weights_path), "digits",
                                   trained.test_accuracy)


def test_data_without_labels_are_scored_by_the_lenet_of_their_feature_source(digits, cache_root):
    binary = {split: (images > 127).to(torch.uint8) for split, images in digits.splits.items()}
    static = ImageDataset("static-digits", "binary", binary, feature_source="mnist8")
    assert feats.default_feature_net(static) == "lenet"
    net = feats.resolve_feature_net(None, static, str(cache_root))
    shipped = feats.resolve_feature_net("lenet", digits, str(cache_root))
    assert net.identity == shipped.identity and net.detail.startswith("LeNet of mnist8")
    unlabelled = ImageDataset("unlabelled", "binary", binary)
    assert feats.default_feature_net(unlabelled) == "inception"


def test_real_digits_score_well_and_a_mode_collapsed_set_clearly_worse(digits, lenet_net, cache_root):
    cache = feats.cache_dir(cache_root)
    real = sq.score_images(sq.reference_images(digits, "train", 300), digits, lenet_net, cache=cache)
    test_images = sq.reference_images(digits, "test", None)
    collapsed = sq.score_images(test_images[digits.labels["test"] == 4][:1].expand(300, -1, -1, -1),
                                digits, lenet_net, cache=cache)
    assert real["is_lenet"] > 5 and collapsed["is_lenet"] < 1.5  # a 1-epoch LeNet is not very confident
    assert collapsed["fid_lenet"] > 10 * real["fid_lenet"]
    assert collapsed["recall_lenet"] < real["recall_lenet"]


def test_reference_features_are_extracted_once_for_many_models(digits, lenet_net, cache_root, monkeypatch):
    calls = []
    extract = sq.extract_features
    monkeypatch.setattr(sq, "extract_features",
                        lambda images, *a: calls.append(len(images)) or extract(images, *a))
    cache = feats.cache_dir(cache_root)
    gen = torch.Generator().manual_seed(0)
    scores = [sq.score_images(torch.randint(0, 256, (40, 1, 28, 28), generator=gen, dtype=torch.uint8),
                              digits, lenet_net, n_reference=200, cache=cache) for _ in range(4)]
    assert calls == [200, 40, 40, 40, 40]
    assert len({s["fid_lenet"] for s in scores}) == 4
    def score_test_images():
        return sq.score_images(digits.splits["test"][:40], digits, lenet_net, n_reference=200, cache=cache)

    assert score_test_images() == score_test_images()  # same seeds, same numbers


class _Sampler(nn.Module):
    """Samples: test images of the toy set, with a little seeded noise."""

    def __init__(self, images):
        super().__init__()
        self.images = images

    def sample(self, n):
        idx = torch.randint(0, len(self.images), (n,))
        return (self.images[idx] + 0.01 * torch.rand(n, *self.images.shape[1:])).clamp(0, 1)


def test_a_torchscript_feature_net_scores_every_sampler_in_evaluate(toy, tiny_torchscript, cache_root):
    settings = EvalSettings(k=2, quality_samples=120, quality_reference=150, features=str(tiny_torchscript),
                            cache_root=str(cache_root), surgery_points=None)
    model = _Sampler(toy.eval_tensor("test"))
    values = evaluate(model, toy.eval_tensor("test"), settings, dataset=toy, only=["sample_quality"])
    assert set(values) >= {"is_ts_tiny", "fid_ts_tiny", "kid_ts_tiny", "precision_ts_tiny", "recall_ts_tiny"}
    assert values == evaluate(model, toy.eval_tensor("test"), settings, dataset=toy, only=["sample_quality"])


def test_the_sample_metrics_and_the_copying_tests_score_one_draw_of_samples(toy, tiny_torchscript,
                                                                            cache_root):
    settings = EvalSettings(k=2, quality_samples=120, quality_reference=150, features=str(tiny_torchscript),
                            cache_root=str(cache_root), memorization_train=300)
    model = _Sampler(toy.eval_tensor("test"))
    drawn = []
    model.sample = lambda n, draw=model.sample: drawn.append(n) or draw(n)
    both = ["sample_quality", "copying"]
    values = evaluate(model, toy.eval_tensor("test"), settings, dataset=toy, only=both)
    assert drawn == [120] and {"fid_ts_tiny", "ct_ts_tiny", "authenticity_ts_tiny"} <= set(values)
    alone = evaluate(model, toy.eval_tensor("test"), settings, dataset=toy, only=["copying"])
    assert drawn == [120, 120] and alone["ct_ts_tiny"] == values["ct_ts_tiny"]  # the same draws either way


def test_missing_inception_weights_skip_the_metric_in_a_run_and_say_how_to_provide_them(
        toy, tmp_path, monkeypatch):
    monkeypatch.setenv(feats.INCEPTION_ENV, str(tmp_path / "absent.pth"))
    skipped = {}
    with pytest.warns(UserWarning, match="Inception-v3 weights not found.*GENBENCH_INCEPTION_WEIGHTS"):
        values = evaluate(_Sampler(toy.eval_tensor("test")), toy.eval_tensor("test"),
                          EvalSettings(k=2, quality_samples=20), dataset=toy, only=["sample_quality"],
                          skipped=skipped)
    assert values == {} and "Inception-v3 weights not found" in skipped["sample_quality"]
    with pytest.raises(feats.FeaturesUnavailable, match="fetch https://.*inception"):
        feats.resolve_feature_net("inception", toy)


def test_named_feature_networks_come_from_the_registry_and_other_names_are_torchscript_paths(
        toy, tiny_torchscript, tmp_path):
    assert sorted(feats.FEATURE_NETS) == ["clip", "dinov2", "inception", "inception_clean", "lenet", "vgg16"]
    labels = [feats.feature_label(n) for n in ("lenet", "inception", "ts_tiny")]
    assert labels == ["LeNet", "Inception", "ts_tiny"]
    for name, spec in feats.FEATURE_NETS.items():
        assert spec.name == name and spec.summary
    net = feats.resolve_feature_net(str(tiny_torchscript), toy)
    assert (net.name, net.label, net.layer_isc) == ("ts_tiny", "TorchScript(tiny.pt)", "logits")
    with pytest.raises(GenbenchError, match=r"no such file \(expected .*inception, .*lenet.* or a Torch"):
        feats.resolve_feature_net(str(tmp_path / "absent.pt"), toy)
    with pytest.raises(feats.FeaturesUnavailable, match="LeNet reads 1x28x28"):  # registered, but not for toy
        feats.resolve_feature_net("lenet", toy)


def test_model_samples_outside_the_unit_range_are_one_clear_error():
    with pytest.raises(GenbenchError, match=r"samples must lie in \[0, 1\]"):
        sq.to_uint8(torch.tensor([-0.5, 0.5]))
    assert sq.to_uint8(torch.tensor([0.0, 1.00001, 0.5])).tolist() == [0, 255, 128]


# --- precision/recall in bounded memory ----------------------------------------------------------------
def _precision_recall_brute_force(real: torch.Tensor, fake: torch.Tensor, k: int) -> dict[str, float]:
    """Kynkäänniemi et al.'s definitions with full float64 distance matrices."""
    real, fake = real.double(), fake.double()
    real_radii = torch.cdist(real, real).sort(dim=1).values[:, k]  # column 0 is the point itself
    fake_radii = torch.cdist(fake, fake).sort(dim=1).values[:, k]
    cross = torch.cdist(real, fake)  # [N, M]
    return {"precision": (cross <= real_radii[:, None]).any(0).double().mean().item(),
            "recall": (cross <= fake_radii[None, :]).any(1).double().mean().item()}


@pytest.mark.parametrize("rows", [1, 7, 64, 250, 1000, None])
def test_blocked_precision_recall_equals_the_brute_force_reference_and_torch_fidelity(rows):
    from torch_fidelity.metric_prc import calculate_precision_recall_full

    from genbench.metrics.knn import precision_recall

    g = torch.Generator().manual_seed(1)
    real, fake = torch.randn(250, 6, generator=g), 1.2 * torch.randn(180, 6, generator=g) + 0.3
    for k in (1, 3, 5):
        got = precision_recall(real, fake, k=k, rows=rows)  # 7, 64 and 250 rows do not divide 180
        assert got == _precision_recall_brute_force(real, fake, k)
        fidelity = calculate_precision_recall_full(fake, real, neighborhood=k)
        assert (got["precision"], got["recall"]) == pytest.approx(fidelity, abs=1e-6)  # its float32 mean
    assert 0.2 < got["precision"] < 0.99 and 0.2 < got["recall"] < 0.99  # a non-trivial case


def test_precision_recall_rejects_bad_shapes_and_settings():
    from genbench.metrics.knn import precision_recall

    real = torch.randn(10, 3)
    for fake, k, rows in [(torch.randn(5, 4), 3, 8), (torch.randn(5, 3), 5, 8), (torch.randn(20, 3), 10, 8),
                          (torch.randn(5, 3), 3, 0)]:
        with pytest.raises(ValueError):
            precision_recall(real, fake, k=k, rows=rows)


@pytest.mark.parametrize("columns", [1, 7, 1000, 29_827, 100_000, 10**8])
def test_a_block_of_distances_fits_the_budget_for_any_set_size(columns):
    from genbench.metrics import knn

    rows = knn.block_rows(columns)  # the most rows that fit, one where even one does not
    assert rows == 1 or rows * columns * knn.CELL_BYTES <= knn.BLOCK_BYTES
    assert (rows + 1) * columns * knn.CELL_BYTES > knn.BLOCK_BYTES


#: the sample metrics' k-NN part on 20,000 + 20,000 features in a child, its peak RSS over its baseline
_KNN_MEMORY_SCRIPT = """
import json, sys, torch
from types import SimpleNamespace
from tests.peak_memory import peak_rss, reset_peak
from genbench.metrics.sample_quality import fidelity_metrics
import torch_fidelity.metric_fid, torch_fidelity.metric_isc, torch_fidelity.metric_kid  # imported first
torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)
real, fake = torch.randn(20_000, 32, generator=g), torch.randn(20_000, 32, generator=g) + 0.1
net = SimpleNamespace(name="t", layer_fid="f", layer_isc=None)
before = reset_peak()
values = fidelity_metrics({"f": fake}, {"f": real}, net, which=("prc", "dc"))
peak = peak_rss()
print(json.dumps({"growth": peak - before, "values": values}))
"""


@pytest.mark.slow
def test_the_knn_metrics_of_20000_features_stay_within_their_block_budget(tmp_path):
    """Old code: torch-fidelity's precision/recall held 10,000 x 20,000 float32 distances twice (1.6 GB);
    now one block of at most 256 MiB, plus the sets (10 MB in float64)."""
    import json
    import os
    import subprocess
    import sys

    from genbench.metrics import knn

    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))}
    done = subprocess.run([sys.executable, "-c", _KNN_MEMORY_SCRIPT], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.splitlines()[-1])
    assert 0 < report["values"]["precision_t"] < 1 and 0 < report["values"]["coverage_t"] < 1
    assert report["growth"] < knn.BLOCK_BYTES + (200 << 20), report["growth"] / 2**20


def test_a_collapsed_fake_set_has_precision_near_one_and_recall_near_zero():
    """The direction of the two numbers, as the leaderboard computes them: 200 fakes that all sit on one
    real point (mode collapse) are all realistic (precision 1) and cover almost none of the real set
    (recall: the one real point they copy, 1/500). A convention that swapped precision and recall, as
    torch-fidelity's builds between 2022 and February 2026 did (its issue 58), gives 1/500 and 1; the
    test that swapping real and fake swaps the two passes under that convention too."""
    from types import SimpleNamespace

    from genbench.metrics.sample_quality import fidelity_metrics

    g = torch.Generator().manual_seed(0)
    real = torch.randn(500, 16, generator=g)
    fake = real[7] + 1e-3 * torch.randn(200, 16, generator=g)
    net = SimpleNamespace(name="t", layer_fid="f", layer_isc=None)
    values = fidelity_metrics({"f": fake}, {"f": real}, net, which=("prc",))
    assert values["precision_t"] == 1
    assert values["recall_t"] == pytest.approx(1 / 500)
