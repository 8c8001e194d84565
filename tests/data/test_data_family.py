"""Omniglot and dSprites (file and procedural re-rendering), on small files the tests make."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import scipy.io
import torch

from genbench.core.errors import GenbenchError
from genbench.data import DATASETS, load_dataset
from genbench.data import dsprites as ds
from genbench.data import omniglot as om
from genbench.data.download import RemoteFile
from genbench.data.ground_truth import GroundTruthData

# --- Omniglot -------------------------------------------------------------------------------

SMALL_COUNTS = {"train": 30, "test": 10}


def upright_to_column(image: np.ndarray) -> np.ndarray:
    """How chardata.mat stores an upright 28x28 image: column by column (MATLAB order)."""
    return image.flatten(order="F")


def write_chardata(path, train: np.ndarray, test: np.ndarray, **extra) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"data": train, "testdata": test, **extra})


def random_columns(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((784, n))


@pytest.fixture
def small_omniglot(monkeypatch):
    monkeypatch.setattr(om, "COUNTS", SMALL_COUNTS)


def test_chardata_is_read_as_gray_levels(tmp_path, small_omniglot):
    train, test = random_columns(30, 0), random_columns(10, 1)
    write_chardata(tmp_path / "c.mat", train, test)
    gray = om.read_chardata(tmp_path / "c.mat")
    assert gray["train"].shape == (30, 1, 28, 28) and gray["test"].shape == (10, 1, 28, 28)
    assert gray["train"].dtype == torch.uint8
    expected = np.rint(train[:, 4] * 255).reshape(28, 28, order="F")
    np.testing.assert_array_equal(gray["train"][4, 0].numpy(), expected)


def test_chardata_images_come_out_upright_as_in_burdas_code(tmp_path, small_omniglot):
    letter_l = np.zeros((28, 28))
    letter_l[3:22, 5] = 1.0  # a vertical stroke on the left ...
    letter_l[21, 5:15] = 1.0  # ... and a foot to the right at the bottom
    train = np.tile(upright_to_column(letter_l)[:, None], (1, 30))
    write_chardata(tmp_path / "c.mat", train, random_columns(10, 1))
    image = om.read_chardata(tmp_path / "c.mat")["train"][0, 0].numpy()
    np.testing.assert_array_equal(image, letter_l * 255)
    # Burda's datasets.py: rows of 784 that a plain (C-order) reshape shows as 28x28 images
    burda = train.T.reshape((-1, 28, 28)).reshape((-1, 28 * 28), order="F")
    np.testing.assert_array_equal(image, burda[0].reshape(28, 28) * 255)


@pytest.mark.parametrize("train, test, message", [
    (random_columns(30, 0)[:783], random_columns(10, 1), r"'data' should be a \(784, 30\) array"),
    (random_columns(29, 0), random_columns(10, 1), r"'data' should be a \(784, 30\) array"),
    (random_columns(30, 0), random_columns(10, 1).T, r"'testdata' should be a \(784, 10\) array"),
    (random_columns(30, 0) * 2, random_columns(10, 1), "values outside"),
])
def test_chardata_of_the_wrong_shape_or_range_is_refused(tmp_path, small_omniglot, train, test, message):
    write_chardata(tmp_path / "c.mat", train, test)
    with pytest.raises(GenbenchError, match=message):
        om.read_chardata(tmp_path / "c.mat")


def test_other_files_are_refused_as_chardata(tmp_path, small_omniglot):
    scipy.io.savemat(tmp_path / "other.mat", {"data": random_columns(30, 0)})
    with pytest.raises(GenbenchError, match="'testdata' should be .* found missing"):
        om.read_chardata(tmp_path / "other.mat")
    (tmp_path / "text.mat").write_text("not a MATLAB file")
    with pytest.raises(GenbenchError, match="not Burda's Omniglot chardata.mat"):
        om.read_chardata(tmp_path / "text.mat")


def test_omniglot_downloads_and_binarizes_like_dynamic_mnist(tmp_path, monkeypatch, http_dir, small_omniglot):
    server, url = http_dir
    write_chardata(server / "chardata.mat", random_columns(30, 0), random_columns(10, 1))
    monkeypatch.setattr(om, "FILE", RemoteFile(om.FILE.relpath, url + "chardata.mat"))
    root = tmp_path / "root"
    data = load_dataset("omniglot", root)
    assert (root / "omniglot" / "chardata.mat").exists()
    assert data.dynamic_binarization and data.kind == "binary" and data.shape == DATASETS["omniglot"].shape
    assert data.splits["train"].max() > 1  # gray levels, re-binarized per batch
    again = load_dataset("omniglot", root, download=False)
    assert torch.equal(data.splits["test"], again.splits["test"])  # binarized once, fixed seed
    assert set(data.splits["test"].unique().tolist()) <= {0, 1}
    batch = data.train_batch(torch.arange(30))
    assert set(batch.unique().tolist()) <= {0.0, 1.0}


def test_omniglot_offline_is_one_clear_error(tmp_path, monkeypatch, http_dir):
    _, url = http_dir
    monkeypatch.setattr(om, "FILE", RemoteFile(om.FILE.relpath, url + "nowhere/chardata.mat"))
    with pytest.raises(GenbenchError) as err:
        load_dataset("omniglot", tmp_path / "root")
    text = str(err.value)
    assert "omniglot/chardata.mat" in text and "download failed" in text and "\n" not in text
    with pytest.raises(GenbenchError, match="download disabled"):
        load_dataset("omniglot", tmp_path / "root", download=False)


# --- dSprites: DeepMind's file ------------------------------------------------------------------

SMALL_FILE_GRID = (1, 3, 2, 2, 4, 4)  # 192 images


def write_fake_dsprites(path, grid=SMALL_FILE_GRID, imgs=None, classes=None, **override) -> np.ndarray:
    """An .npz laid out like DeepMind's, including a pickled ``metadata`` the loader must not touch."""
    n = math.prod(grid)
    if imgs is None:
        imgs = np.random.default_rng(0).integers(0, 2, size=(n, 64, 64), dtype=np.uint8)
    if classes is None:
        classes = ds.grid_factors(np.arange(n), grid)
    arrays = {"imgs": imgs, "latents_classes": classes, "latents_values": classes.astype(np.float64),
              "metadata": np.array({"description": "fake"}, dtype=object)}
    arrays.update(override)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return imgs


@pytest.fixture
def small_file_grid(monkeypatch):
    monkeypatch.setattr(ds, "FILE_GRID", SMALL_FILE_GRID)
    monkeypatch.setattr(ds, "TEST_SIZE", 50)


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_grid_index_and_factors_are_inverse_c_order():
    sizes = (3, 6, 40, 32, 32)
    factors = ds.grid_factors(np.arange(math.prod(sizes)), sizes)
    assert factors[1].tolist() == [0, 0, 0, 0, 1] and factors[32].tolist() == [0, 0, 0, 1, 0]
    np.testing.assert_array_equal(ds.grid_index(factors, sizes), np.arange(math.prod(sizes)))


def test_dsprites_file_round_trips_and_looks_up_images_by_factor(tmp_path, small_file_grid):
    imgs = write_fake_dsprites(tmp_path / "d.npz")
    images = ds.read_dsprites(tmp_path / "d.npz")
    assert images.shape == (192, 1, 64, 64) and images.dtype == torch.uint8
    np.testing.assert_array_equal(images[:, 0].numpy(), imgs)
    data = ds.DSprites(name="d", kind="binary", splits={"train": images}, factor_sizes=(3, 2, 2, 4, 4))
    assert isinstance(data, GroundTruthData)
    factors = np.array([[2, 1, 0, 3, 1], [0, 0, 1, 0, 2]])
    flat = [((2 * 2 + 1) * 2 + 0) * 16 + 3 * 4 + 1, 1 * 16 + 2]
    obs = data.sample_observations_from_factors(factors, np.random.default_rng(0))
    assert obs.dtype == torch.float32 and obs.shape == (2, 1, 64, 64)
    torch.testing.assert_close(obs, torch.from_numpy(imgs[flat]).unsqueeze(1).float())
    with pytest.raises(ValueError, match="out of range"):
        data.sample_observations_from_factors(np.array([[3, 0, 0, 0, 0]]), np.random.default_rng(0))


def test_dsprites_downloads_with_its_md5_and_documents_its_test_split(tmp_path, monkeypatch, http_dir,
                                                                    small_file_grid):
    server, url = http_dir
    imgs = write_fake_dsprites(server / "d.npz")
    monkeypatch.setattr(ds, "FILE", RemoteFile(ds.FILE.relpath, url + "d.npz", md5=_md5(server / "d.npz")))
    data = load_dataset("dsprites", tmp_path / "root")
    assert data.shape == DATASETS["dsprites"].shape and data.kind == "binary"
    assert data.size("train") == 192 and data.size("test") == 50
    assert data.factor_names == ("shape", "scale", "orientation", "pos_x", "pos_y")
    assert data.factor_sizes == (3, 2, 2, 4, 4)
    # the test split is a fixed sample of the training images, and says so
    expected = imgs[ds.fixed_test_indices(192)]
    np.testing.assert_array_equal(data.splits["test"][:, 0].numpy(), expected)
    assert "NOT held out" in data.description and "training-set number" in data.description


def test_dsprites_download_with_a_wrong_md5_is_refused_and_leaves_nothing(tmp_path, monkeypatch, http_dir,
                                                                        small_file_grid):
    server, url = http_dir
    write_fake_dsprites(server / "d.npz")
    monkeypatch.setattr(ds, "FILE", RemoteFile(ds.FILE.relpath, url + "d.npz", md5="0" * 32))
    with pytest.raises(GenbenchError, match="checksum mismatch"):
        load_dataset("dsprites", tmp_path / "root")
    assert not [p for p in (tmp_path / "root").rglob("*") if p.is_file()]


def test_dsprites_offline_error_points_to_the_rendered_set(tmp_path, monkeypatch, http_dir):
    _, url = http_dir
    monkeypatch.setattr(ds, "FILE", RemoteFile(ds.FILE.relpath, url + "nowhere.npz", md5="0" * 32))
    for download in (True, False):
        with pytest.raises(GenbenchError) as err:
            load_dataset("dsprites", tmp_path / "root", download=download)
        text = str(err.value)
        assert ds.FILE.relpath in text and "'dsprites_rendered'" in text and "\n" not in text


def test_canonical_dsprites_file_is_pinned():
    assert ds.FILE.url.endswith("dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz")
    assert ds.FILE.md5 == "7da33b31b13a06f4b04a70402ce90c2e" and ds.FILE_GRID == (1, 3, 6, 40, 32, 32)


@pytest.mark.parametrize("change, message", [
    ({"imgs": np.array([None] * 192, dtype=object)}, "need pickle"),
    ({"imgs": np.full((192, 64, 64), 2, dtype=np.uint8)}, "values other than 0/1"),
    ({"imgs": np.zeros((192, 32, 32), dtype=np.uint8)}, "'imgs' should be uint8"),
    ({"latents_classes": ds.grid_factors(np.arange(192), SMALL_FILE_GRID)[::-1]},
     "not the C-order factor grid"),
])
def test_dsprites_files_that_are_not_the_grid_are_refused(tmp_path, small_file_grid, change, message):
    write_fake_dsprites(tmp_path / "d.npz", **change)
    with pytest.raises(GenbenchError, match=message):
        ds.read_dsprites(tmp_path / "d.npz")


def test_dsprites_refuses_files_without_its_arrays(tmp_path, small_file_grid):
    np.savez(tmp_path / "d.npz", imgs=np.zeros((192, 64, 64), dtype=np.uint8))
    with pytest.raises(GenbenchError, match="no latents_classes"):
        ds.read_dsprites(tmp_path / "d.npz")
    (tmp_path / "e.npz").write_bytes(b"not a zip")
    with pytest.raises(GenbenchError, match="not a dSprites .npz"):
        ds.read_dsprites(tmp_path / "e.npz")


# --- dSprites re-rendered -------------------------------------------------------------------

#: a few values of each factor: 3 x 3 x 2 x 3 x 3 = 162 images
SMALL_SPRITES = ds.SpriteGrid(scales=(0.5, 0.75, 1.0), orientations=(0.0, math.pi / 5),
                              pos_x=(0.0, 0.5, 1.0), pos_y=(0.0, 0.5, 1.0))
CANONICAL = ds.SpriteGrid()


@pytest.fixture(scope="module")
def rendered():
    return ds.make_dsprites_rendered(SMALL_SPRITES)


def render_one(shape=0, scale=5, orientation=0, pos_x=16, pos_y=16, grid=CANONICAL) -> np.ndarray:
    return grid.render(np.array([[shape, scale, orientation, pos_x, pos_y]]))[0, 0].numpy()


def centre_of_mass(image: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(image)
    return np.array([cols.mean(), rows.mean()])


def test_rendered_grid_has_dsprites_factors():
    assert CANONICAL.sizes == (3, 6, 40, 32, 32) and math.prod(CANONICAL.sizes) == 737280
    np.testing.assert_allclose(CANONICAL.scales, np.linspace(0.5, 1, 6))
    assert CANONICAL.orientations[0] == 0 and CANONICAL.orientations[-1] == pytest.approx(2 * math.pi)
    assert CANONICAL.orientations[1] == pytest.approx(0.16110732)  # dSprites' metadata value
    np.testing.assert_allclose(CANONICAL.pos_x, np.linspace(0, 1, 32))
    assert [ds.SHAPES[s] for s in CANONICAL.shapes] == ["square", "ellipse", "heart"]


def test_rendered_set_is_ground_truth_data_and_says_what_it_is(rendered):
    assert isinstance(rendered, GroundTruthData)
    assert rendered.factor_names == ("shape", "scale", "orientation", "pos_x", "pos_y")
    assert rendered.factor_sizes == (3, 3, 2, 3, 3) and rendered.size("train") == 162
    assert rendered.shape == DATASETS["dsprites_rendered"].shape and rendered.kind == "binary"
    for text in (rendered.description, rendered.source):
        assert "procedural re-rendering" in text and "not DeepMind's" in text.replace("NOT", "not")
    assert "not comparable with published" in rendered.description and "NOT held out" in rendered.description
    assert "procedural re-rendering" in ds.__doc__ and "NOT DeepMind's file" in ds.__doc__


def test_sample_factors_is_uniform_over_each_factor(rendered):
    factors = rendered.sample_factors(9000, np.random.default_rng(0))
    assert factors.shape == (9000, 5) and factors.dtype == np.int64
    for column, size in zip(factors.T, rendered.factor_sizes, strict=True):
        counts = np.bincount(column, minlength=size)
        assert len(counts) == size and np.all(np.abs(counts / 9000 - 1 / size) < 0.03)


def test_rendering_from_factors_matches_the_rendered_grid(rendered):
    factors = rendered.sample_factors(40, np.random.default_rng(1))
    rng = np.random.default_rng(2)
    direct = rendered.sample_observations_from_factors(factors, rng)
    assert direct.dtype == torch.float32 and direct.shape == (40, 1, 64, 64)
    assert torch.equal(direct, rendered.sample_observations_from_factors(factors, rng))
    index = torch.from_numpy(ds.grid_index(factors, rendered.factor_sizes))
    assert torch.equal(direct, rendered.splits["train"][index].float())
    assert set(direct.unique().tolist()) == {0.0, 1.0}


def test_different_shapes_give_different_images():
    square, ellipse, heart = (render_one(shape=s) for s in range(3))
    assert (square != ellipse).sum() > 20 and (square != heart).sum() > 20 and (ellipse != heart).sum() > 20


def test_scale_increases_the_sprite_area():
    # one image per (scale, shape, orientation, position); sampling pixel centres, an edge may
    # cross no centre over one scale step, so single images may tie, but never shrink
    others = [(s, o, x, y) for s in range(3) for o in (0, 7, 23) for x, y in ((16, 16), (3, 27), (30, 9))]
    factors = np.array([[s, scale, o, x, y] for scale in range(6) for s, o, x, y in others])
    areas = CANONICAL.render(factors).flatten(1).sum(1).view(6, len(others)).double()
    assert bool((areas[1:] >= areas[:-1]).all())
    assert bool((areas.mean(1).diff() > 0).all()) and bool((areas[-1] > 2 * areas[0]).all())


def test_pos_x_moves_the_sprite_right_and_pos_y_down():
    for shape in range(3):
        base = centre_of_mass(render_one(shape, pos_x=10, pos_y=10))
        right = centre_of_mass(render_one(shape, pos_x=20, pos_y=10))
        down = centre_of_mass(render_one(shape, pos_x=10, pos_y=20))
        step = 10 * 32 / 31  # ten position steps of 1/31 over a 32-pixel span
        np.testing.assert_allclose(right - base, [step, 0], atol=1.0)  # up to a pixel of rasterisation
        np.testing.assert_allclose(down - base, [0, step], atol=1.0)


def test_orientation_turns_the_sprite_counter_clockwise():
    # centred in the frame (pos 0.5), a quarter turn maps pixel centres onto pixel centres
    quarter = ds.SpriteGrid(orientations=(0.0, math.pi / 2), pos_x=(0.5,), pos_y=(0.5,))
    flat = render_one(shape=1, orientation=0, pos_x=0, pos_y=0, grid=quarter)  # along x at angle 0
    turned = render_one(shape=1, orientation=1, pos_x=0, pos_y=0, grid=quarter)
    rows, cols = np.nonzero(flat)
    assert np.ptp(cols) > 1.8 * np.ptp(rows)
    np.testing.assert_array_equal(turned, np.rot90(flat))
    heart = render_one(shape=2)  # upright: the lobes (wider half) on top
    assert heart[:32].sum() > heart[32:].sum()


def test_every_sprite_fits_in_the_frame():
    corners = [(x, y) for x in (0, 31) for y in (0, 31)]
    factors = np.array([[s, 5, o, x, y] for s in range(3) for o in range(40) for x, y in corners])
    images = CANONICAL.render(factors)[:, 0]
    border = torch.ones(64, 64, dtype=torch.bool)
    border[3:-3, 3:-3] = False
    assert images[:, border].sum() == 0
    assert bool((images.flatten(1).sum(1) > 100).all())
