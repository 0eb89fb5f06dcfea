"""benchmarks/lens_light_information.py: its aperture photometry and the photometric noise it adds to the oracle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lenspipe.store import open_store, write_store

from .conftest import load_benchmark

BANDS = ["g", "r"]
PIXEL_SCALE = 0.263


def _store(path: Path, n: int, depth_offset: float, rng: np.random.Generator) -> Path:
    """n images with one lit pixel next to the centre (flux 100 in g, 10 in r) and physical-light metadata whose
    lens magnitudes sit `depth_offset` magnitudes above each band's 10-sigma point-source depth."""
    images = np.zeros((n, 2, 16, 16), np.float32)
    images[:, 0, 7, 8], images[:, 1, 8, 7] = 100.0, 10.0
    theta = np.column_stack([rng.uniform(150, 400, n), rng.uniform(0.5, 2.0, n), rng.uniform(0.2, 0.4, n)])
    meta = pd.DataFrame({"OBJID-g": np.arange(n)})
    for band, mag in (("g", 21.0), ("r", 19.5)):
        meta[f"lens_light-magnitude-{band}"] = mag
        meta[f"seeing-{band}"] = 1.0
        meta[f"pixel_scale-{band}"] = PIXEL_SCALE
        meta[f"magnitude_zero_point-{band}"] = 26.0
        # sky sigma giving a 10-sigma depth of mag + depth_offset (lenspipe.depth.point_source_depth inverted)
        sigma_pix = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0))) / PIXEL_SCALE
        flux10 = 10 ** (-0.4 * (mag + depth_offset - 26.0))
        meta[f"sky_sigma-{band}"] = flux10 / (10.0 * np.sqrt(4.0 * np.pi * sigma_pix**2))
    meta["lens_light-R_sersic"] = 1e-6  # a point source: the error is the point-source depth's
    write_store(path, images, theta, ["sigma_v", "theta_E", "z_l"], attrs={"bands": BANDS}, metadata=meta)
    return path


def test_apertures_sum_the_pixels_inside_each_radius(tmp_path: Path) -> None:
    """Every aperture (1", 2", 4") holds the lit pixel (0.19" from the centre): -2.5 log10 of its flux, colours 2.5."""
    info = load_benchmark("lens_light_information")
    store = open_store(_store(tmp_path / "s.zarr", 4, 5.0, np.random.default_rng(0)), verify=False)
    features = info.aperture_features(store, PIXEL_SCALE)
    n_ap = len(info.APERTURES_ARCSEC)
    assert features.shape == (4, 2 * n_ap + n_ap)
    np.testing.assert_allclose(features[:, 0 : 2 * n_ap : 2], -5.0)  # g: flux 100
    np.testing.assert_allclose(features[:, 1 : 2 * n_ap : 2], -2.5)  # r: flux 10
    np.testing.assert_allclose(features[:, 2 * n_ap :], -2.5)  # g - r per aperture


@pytest.mark.parametrize("depth_offset", [2.5, 7.5])
def test_photometric_noise_follows_the_depth(tmp_path: Path, depth_offset: float) -> None:
    """A point lens 2.5 mag above the 10-sigma depth is measured at SNR 100 (0.0109 mag); colours follow the noisy
    magnitudes; the rest of the oracle's features are untouched."""
    info = load_benchmark("lens_light_information")
    store = open_store(
        _store(tmp_path / "s.zarr", 4000, depth_offset, np.random.default_rng(1)), verify=False
    )
    meta = store.metadata()
    true = info.lens_light_features(meta, store.theta, store.parameter_names)
    noisy = info.noisy_features(true, meta, store.bands, np.random.default_rng(2))
    expected = 2.5 / np.log(10.0) / (10.0 * 10 ** (0.4 * depth_offset))
    assert np.std(noisy[:, :2] - true[:, :2], axis=0) == pytest.approx([expected, expected], rel=0.05)
    np.testing.assert_allclose(noisy[:, 2], noisy[:, 0] - noisy[:, 1])
    np.testing.assert_array_equal(noisy[:, 3:], true[:, 3:])


def _blended_store(path: Path, n: int, rng: np.random.Generator) -> tuple[Path, np.ndarray]:
    """n images: the lens a point in the central pixel (its true flux per band), and in g only, for the first 60%
    of the images, arcs of twice the lens's flux in a corner (outside the central pixels)."""
    mags = np.column_stack([rng.uniform(19.0, 21.0, n), rng.uniform(18.0, 20.0, n)])
    flux = 10 ** (-0.4 * (mags - 26.0))
    images = np.zeros((n, 2, 16, 16), np.float32)
    images[:, :, 7, 7] = flux
    arcs = np.arange(n) < 0.6 * n
    images[arcs, 0, 0, 0] = 2.0 * flux[arcs, 0]
    theta = np.column_stack([rng.uniform(150, 400, n), rng.uniform(0.5, 2.0, n), rng.uniform(0.2, 0.4, n)])
    meta = pd.DataFrame({"OBJID-g": np.arange(n)})
    for k, band in enumerate(BANDS):
        meta[f"lens_light-magnitude-{band}"] = mags[:, k]
        meta[f"magnitude_zero_point-{band}"] = 26.0
        meta[f"PLANE_2-OBJECT_1-LIGHT_PROFILE_1-magnitude-{band}"] = mags[:, k] + 0.5  # the source, unlensed
    write_store(path, images, theta, ["sigma_v", "theta_E", "z_l"], attrs={"bands": BANDS}, metadata=meta)
    return path, arcs


def test_blending_measures_the_arcs_share_and_the_central_colour(tmp_path: Path) -> None:
    """g: 60% of the images have arcs twice the lens (image / lens 3, median 3; outshine 0.6); r: the lens alone
    (ratio 1, never outshone, no arcs); the central pixels hold only the lens, so their colour is the true one."""
    info = load_benchmark("lens_light_information")
    path, _ = _blended_store(tmp_path / "b.zarr", 50, np.random.default_rng(3))
    store = open_store(path, verify=False)
    table = info.blending(store, store.metadata()).set_index("band")
    assert table.loc["g", "image / lens flux (median)"] == pytest.approx(3.0, rel=1e-4)
    assert table.loc["g", "arcs outshine the lens"] == pytest.approx(0.6)
    assert table.loc["r", "image / lens flux (median)"] == pytest.approx(1.0, rel=1e-4)
    assert table.loc["r", "arcs outshine the lens"] == 0.0
    # arcs of twice the lens's flux against a source 0.5 mag fainter than the lens: magnified 2 / 10^-0.2 (g)
    assert table.loc["g", "arcs / unlensed source (median)"] == pytest.approx(2.0 / 10**-0.2, rel=1e-4)
    assert table.loc["r", "arcs / unlensed source (median)"] == pytest.approx(0.0, abs=1e-4)
    assert table.loc["g", "corr(central colour, true colour)"] == pytest.approx(1.0, abs=1e-6)
    assert np.isnan(table.loc["r", "corr(central colour, true colour)"])  # no band after the last


def test_oracle_feature_sets_split_colours_from_the_rest() -> None:
    """lens_light_features' columns (g, r, i magnitudes, g-r, r-i, log size, theta_E): the colours alone, and the
    five others in order."""
    info = load_benchmark("lens_light_information")
    features = np.arange(14.0).reshape(2, 7)
    sets = info.oracle_feature_sets(features, ["g", "r", "i"])
    np.testing.assert_array_equal(sets["oracle: true colours only"], features[:, [3, 4]])
    np.testing.assert_array_equal(
        sets["oracle: magnitudes, size, theta_E (no colours)"], features[:, [0, 1, 2, 5, 6]]
    )


def test_regression_on_the_first_images_is_the_regression_of_a_store_of_them(tmp_path: Path) -> None:
    """--train-images N: the regression CNN sees exactly the first N training images (the same numbers as a store
    holding only those)."""
    from lenspipe.embedding import EmbeddingSettings

    info = load_benchmark("lens_light_information")
    rng = np.random.default_rng(4)
    full = open_store(_blended_store(tmp_path / "full.zarr", 40, rng)[0], verify=False)
    images, theta = full.load_images(), full.theta
    write_store(
        tmp_path / "first.zarr", images[:16], theta[:16], full.parameter_names, attrs={"bands": BANDS}
    )
    first = open_store(tmp_path / "first.zarr", verify=False)
    settings = EmbeddingSettings((4, 4), 8, 4)
    limited = info.regression_cnn_r2(full, full, settings, 2, False, 0, train_images=16)
    alone = info.regression_cnn_r2(first, full, settings, 2, False, 0)
    assert limited == alone
    assert limited != info.regression_cnn_r2(full, full, settings, 2, False, 0)


def test_a_fixed_magnitude_error_perturbs_every_band_alike() -> None:
    """with_magnitude_errors(features, 0.1, bands): each band's magnitude scattered by 0.1 mag, colours recomputed from
    them, size and theta_E untouched (3 bands: 7 columns)."""
    info = load_benchmark("lens_light_information")
    rng = np.random.default_rng(5)
    mags = rng.uniform(18.0, 21.0, (20000, 3))
    true = np.column_stack([mags, mags[:, :2] - mags[:, 1:], rng.normal(size=(20000, 2))])
    noisy = info.with_magnitude_errors(true, 0.1, ["g", "r", "i"], np.random.default_rng(6))
    assert np.std(noisy[:, :3] - true[:, :3], axis=0) == pytest.approx([0.1, 0.1, 0.1], rel=0.03)
    np.testing.assert_allclose(noisy[:, 3:5], noisy[:, :2] - noisy[:, 1:3])
    np.testing.assert_array_equal(noisy[:, 5:], true[:, 5:])
