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
