"""The pinned feature networks, offline: each one's weights found, checked against its pin before anything
loads them, and run through torch-fidelity, on stand-in weights (no weights can be downloaded here) in the
same code path, the pin table patched to the stand-in's hash."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from genbench.cli import main
from genbench.core.errors import GenbenchError
from genbench.core.weights import file_sha256
from genbench.metrics import features as feats
from genbench.metrics import pinned_weights as pw
from genbench.metrics.sample_quality import extract_features


def stand_in(monkeypatch, network: str, path) -> str:
    """Make ``path`` the pinned weights of ``network`` (its hash in the table, its file named by the
    network's environment variable); the stand-in's sha256."""
    sha256 = file_sha256(path)
    monkeypatch.setitem(pw.PINNED._entries, network, replace(pw.PINNED[network], sha256=sha256))
    monkeypatch.setenv(pw.PINNED[network].env, str(path))
    return sha256


def test_every_pin_is_a_whole_sha256_agreeing_with_the_url_torch_fidelity_fetches():
    from torch_fidelity.feature_extractor_clip import MODEL_URLS
    from torch_fidelity.feature_extractor_dinov2 import MODEL_METADATA
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
    from torchvision.models import VGG16_Weights

    assert sorted(pw.PINNED) == ["clip", "dinov2", "inception", "vgg16"]
    for pin in pw.PINNED.in_order():
        assert re.fullmatch("[0-9a-f]{64}", pin.sha256) and pin.source and pin.sha256 in pin.describe()
        prefix = re.search(r"-([0-9a-f]{8})\.pth$", pin.file)  # torch hub's convention: sha256[:8]
        assert prefix is None or prefix.group(1) == pin.sha256[:8], pin.network
        assert pin.env == f"GENBENCH_{pin.network.upper()}_WEIGHTS"
    assert pw.PINNED["inception"].url == URL_INCEPTION_V3
    assert pw.PINNED["vgg16"].url == VGG16_Weights.IMAGENET1K_V1.url
    assert pw.PINNED["clip"].url == MODEL_URLS["clip-vit-l-14"]
    assert f"/{pw.PINNED['clip'].sha256}/" in pw.PINNED["clip"].url  # OpenAI's URL is its hash
    assert pw.PINNED["dinov2"].file == f"{MODEL_METADATA['dinov2-vit-l-14']}_pretrain.pth"
    assert feats.INCEPTION_ENV == "GENBENCH_INCEPTION_WEIGHTS"  # the convention the others extend


@pytest.mark.parametrize("name", ["inception", "inception_clean", "vgg16", "dinov2", "clip"])
def test_a_file_that_is_not_the_pinned_one_is_refused_before_anything_loads_it(name, toy, tmp_path,
                                                                               monkeypatch, capsys):
    import genbench.metrics.fidelity_extractors as fx

    def never(*args, **kwargs):
        raise AssertionError("a loader was called on an unchecked file")

    for module, attr in ((torch, "load"), (torch.jit, "load"), (fx, "dinov2_architecture"),
                         (fx, "load_torchscript")):
        monkeypatch.setattr(module, attr, never)
    pin = feats.PINNED_NETS[name].pin
    path = tmp_path / "weights.pth"
    path.write_bytes(b"not the pinned weights")
    monkeypatch.setenv(pw.PINNED[pin].env, str(path))
    with pytest.raises(GenbenchError, match=f"sha256 {file_sha256(path)}, not the pinned "
                                            f"{pw.PINNED[pin].sha256}.*refused before loading"):
        feats.resolve_feature_net(name, toy)
    extractor = fx.EXTRACTORS[feats.PINNED_NETS[name].fidelity_name]  # the gate inside the extractor too
    with pytest.raises(GenbenchError, match="refused before loading"):
        extractor(name, [feats.PINNED_NETS[name].layer_fid], feature_extractor_weights_path=str(path))
    np.savez(tmp_path / "s.npz", samples=np.zeros((20, 8, 8), np.uint8))
    code = main(["score", str(tmp_path / "s.npz"), "--dataset", "toy", "--features", name,
                 "--data-root", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("genbench: ") and "not the pinned" in err[0]


def test_a_missing_file_is_fetched_into_torch_hubs_folder_and_kept_only_if_it_is_the_pinned_one(
        tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(pw.PINNED["vgg16"].env, raising=False)
    good = tmp_path / "good.pth"
    good.write_bytes(b"stand-in weights")
    stand_in(monkeypatch, "vgg16", good)
    monkeypatch.delenv(pw.PINNED["vgg16"].env)
    fetched = []
    monkeypatch.setattr(pw, "_download",
                        lambda url, path: (fetched.append(url), path.write_bytes(good.read_bytes())))
    path, sha256 = pw.pinned_file("vgg16")
    hub_file = tmp_path / "torch" / "hub" / "checkpoints" / "vgg16-397923af.pth"
    assert path == hub_file and path.read_bytes() == good.read_bytes() and sha256 == file_sha256(good)
    assert fetched == [pw.PINNED["vgg16"].url]
    assert pw.pinned_file("vgg16") == (path, sha256) and len(fetched) == 1  # fetched once, then found

    hub_file.unlink()
    monkeypatch.setattr(pw, "_download", lambda url, path: path.write_bytes(b"tampered"))
    with pytest.raises(GenbenchError, match="not the pinned"):
        pw.pinned_file("vgg16")
    assert list(hub_file.parent.iterdir()) == []  # nothing unchecked is left behind

    def offline(url, path):
        raise OSError("no network")

    monkeypatch.setattr(pw, "_download", offline)
    with pytest.raises(pw.WeightsUnavailable,
                       match="not fetched from https://download.pytorch.*no network.*VGG16_WEIGHTS"):
        pw.pinned_file("vgg16")
    monkeypatch.setenv(pw.PINNED["vgg16"].env, str(tmp_path / "absent.pth"))  # a named file is never fetched
    with pytest.raises(pw.WeightsUnavailable, match="VGG16 weights not found at .*absent.pth"):
        pw.pinned_file("vgg16")


class TinyDinoV2(nn.Module):
    """A stand-in for DINOv2's ViT: [B, 3, 224, 224] -> [B, 6] features."""

    def __init__(self):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.head = nn.Linear(48, 6)

    def forward(self, x):
        return self.head(self.pool(x).flatten(1))


@pytest.fixture
def dinov2_stand_in(tmp_path, monkeypatch):
    import genbench.metrics.fidelity_extractors as fx

    torch.manual_seed(0)
    path = tmp_path / "dinov2_stand_in.pth"
    torch.save(TinyDinoV2().state_dict(), path)
    monkeypatch.setattr(fx, "dinov2_architecture", TinyDinoV2)
    return path, stand_in(monkeypatch, "dinov2", path)


def test_dinov2_runs_offline_from_a_named_file_and_its_hash_keys_the_cache(toy, dinov2_stand_in):
    path, sha256 = dinov2_stand_in
    net = feats.resolve_feature_net("dinov2", toy)
    assert (net.name, net.fidelity_name, net.layer_fid) == ("dinov2", "genbench-dinov2", "dinov2")
    assert net.layer_isc is None
    assert net.weights_path == path and sha256 in net.identity and net.resizer == "legacy-tf"
    assert sha256 in feats.feature_net_provenance("dinov2")  # a table footer names the weights by hash
    images = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    features = extract_features(images, net)["dinov2"]
    # the known answer: torch-fidelity's DINOv2 preprocessing, then the stand-in network of that file
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x
    from torchvision.transforms.functional import normalize

    expected = TinyDinoV2()
    expected.load_state_dict(torch.load(path, weights_only=True))
    x = interpolate_bilinear_2d_like_tensorflow1x(images.expand(-1, 3, -1, -1).float(), size=(224, 224),
                                                  align_corners=False)
    x = normalize(x, (255 * 0.485, 255 * 0.456, 255 * 0.406), (255 * 0.229, 255 * 0.224, 255 * 0.225))
    with torch.no_grad():
        assert torch.allclose(features, expected(x), atol=1e-5)


def test_a_metric_from_the_cli_with_stand_in_dinov2_weights(tmp_path, monkeypatch, capsys, dinov2_stand_in):
    monkeypatch.setenv(feats.CACHE_ENV, str(tmp_path / "cache"))
    gen = np.random.default_rng(0)
    np.savez(tmp_path / "s.npz", samples=gen.integers(0, 256, (30, 8, 8), dtype=np.uint8))
    code = main(["score", str(tmp_path / "s.npz"), "--dataset", "toy", "--features", "dinov2",
                 "--n-reference", "60", "--data-root", str(tmp_path / "data"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["features"] == "DINOv2"
    assert {"fid_dinov2", "kid_dinov2", "precision_dinov2", "recall_dinov2"} <= set(report["metrics"])
    assert "is_dinov2" not in report["metrics"]  # no logits: no Inception Score
    assert report["metrics"]["fid_dinov2"] > 0


def _tiny_clip_archive(path) -> None:
    """A TorchScript archive shaped like OpenAI's CLIP files, as small as a ViT gets: the tensors
    torch-fidelity's ``build_model`` reads (``visual.*``, ``text_projection``)."""
    from torch_fidelity.feature_extractor_clip import CLIPVisual

    class TinyClip(nn.Module):
        def __init__(self):
            super().__init__()
            self.visual = CLIPVisual(8, 28, 1, 64, 14).visual
            self.text_projection = nn.Parameter(torch.randn(16, 8))

        def forward(self, x):
            return x

    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(TinyClip()), str(path))


def test_clip_from_a_stand_in_archive_gives_torch_fidelitys_features(toy, tmp_path, monkeypatch):
    from torch_fidelity.feature_extractor_clip import FeatureExtractorCLIP

    path = tmp_path / "ViT-L-14.pt"
    _tiny_clip_archive(path)
    sha256 = stand_in(monkeypatch, "clip", path)
    net = feats.resolve_feature_net("clip", toy)
    assert (net.fidelity_name, net.layer_fid, net.layer_isc) == ("genbench-clip", "clip", None)
    assert sha256 in net.identity
    images = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    features = extract_features(images, net)["clip"]
    reference = FeatureExtractorCLIP("clip-vit-l-14", ["clip"], feature_extractor_weights_path=str(path))
    with torch.no_grad():
        assert features.shape == (4, 8)
        assert torch.allclose(features, reference(images.expand(-1, 3, -1, -1).contiguous())[0], atol=1e-5)


@pytest.fixture
def inception_stand_in(tmp_path, monkeypatch):
    """Random full-size Inception-v3 weights in torch-fidelity's layout, pinned and named."""
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    torch.manual_seed(0)
    with monkeypatch.context() as built_without_weights:
        built_without_weights.setattr(fe, "load_state_dict_from_url", lambda *args, **kwargs: None)
        built_without_weights.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda *args: None)
        state = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).state_dict()
    path = tmp_path / feats.INCEPTION_FILE
    torch.save(state, path)
    return path, stand_in(monkeypatch, "inception", path)


@pytest.mark.slow
def test_inception_legacy_and_clean_from_stand_in_weights(toy, inception_stand_in):
    """The pinned Inception is torch-fidelity's; the clean one is the same network after clean-fid's resize:
    equal on 299x299 images (neither resizes them), different on 32x32 ones."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    import genbench.metrics.fidelity_extractors as fx

    path, sha256 = inception_stand_in
    legacy, clean = (feats.resolve_feature_net(name, toy) for name in ("inception", "inception_clean"))
    assert (legacy.resizer, clean.resizer) == ("legacy-tf", "clean-bicubic")
    assert sha256 in legacy.identity and sha256 in clean.identity and legacy.identity != clean.identity
    layers = ["2048", "logits_unbiased"]
    reference = FeatureExtractorInceptionV3("inception-v3-compat", layers,
                                            feature_extractor_weights_path=str(path))
    pinned = fx.PinnedInception("genbench-inception", layers, feature_extractor_weights_path=str(path))
    cleaned = fx.CleanInception("genbench-inception-clean", layers, feature_extractor_weights_path=str(path))
    small = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    full = torch.randint(0, 256, (3, 3, 299, 299), dtype=torch.uint8)
    with torch.no_grad():
        for got, want in zip(pinned(small), reference(small), strict=True):
            assert torch.equal(got, want)
        for got, want in zip(cleaned(full), reference(full), strict=True):
            assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * want.abs().max())
        clean_pool3, legacy_pool3 = cleaned(small)[0], reference(small)[0]
        assert (clean_pool3 - legacy_pool3).norm() > 0.05 * legacy_pool3.norm()  # the resizers differ
