"""Images at DELVE's real depth: per-second zero points, coadds, the sky table, and the noise the pixels carry."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import numpy as np
import pytest
import yaml

from lenspipe import deeplens, depth
from lenspipe.errors import DataError
from lenspipe.simulate import SimulationSettings, simulate_shard
from lenspipe.split import SplitSettings, split_shards
from lenspipe.store import write_store

from .conftest import REPO

CONFIG = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
BANDS = ("g", "r", "i")
PRESET_PER_EXPOSURE = {"g": 31.550, "r": 31.284, "i": 31.608}


def make_spec(**simulation: object) -> deeplens.SimulatorSpec:
    sim = {**copy.deepcopy(CONFIG["simulation"]), **simulation}
    return deeplens.SimulatorSpec.from_config(sim, CONFIG["priors"])


@pytest.fixture(scope="module")
def survey() -> deeplens.Batch:
    return deeplens.simulate(make_spec(), 60, seed=11, planes=True)


@pytest.fixture(scope="module")
def coadd() -> deeplens.Batch:
    return deeplens.simulate(make_spec(exposures=4), 60, seed=11, planes=True)


def _median_depths(batch: deeplens.Batch) -> dict[str, float]:
    return {b: float(np.median(batch.metadata[f"depth_10sigma-{b}"])) for b in BANDS}


def test_default_depth_is_decam_single_epoch(survey: deeplens.Batch) -> None:
    """The survey default's 10-sigma point-source depth is a single DECam exposure's (DES DR1: g 23.57, r 23.34,
    i 22.78), not the ~2.5 mag deeper images of deeplenstronomy's per-exposure zero points."""
    got = _median_depths(survey)
    for band in BANDS:
        assert got[band] == pytest.approx(depth.DECAM_SINGLE_EPOCH_10SIGMA[band], abs=0.4), (band, got)
    # The metadata's depth is the formula's, from the metadata's own noise.
    meta = survey.metadata
    for band in BANDS:
        sigma_pix = meta[f"seeing-{band}"] / (2 * np.sqrt(2 * np.log(2))) / meta[f"pixel_scale-{band}"]
        flux = 10 * meta[f"sky_sigma-{band}"] * np.sqrt(4 * np.pi) * sigma_pix
        np.testing.assert_allclose(
            meta[f"depth_10sigma-{band}"],
            meta[f"magnitude_zero_point-{band}"] - 2.5 * np.log10(flux),
            rtol=1e-12,
        )
        np.testing.assert_array_equal(
            meta[f"magnitude_zero_point-{band}"], deeplens.PER_SECOND_ZERO_POINTS["delve"][band]
        )


def test_per_exposure_zero_points_fail_the_depth_check() -> None:
    """deeplenstronomy's per-exposure zero points (the bug) give images ~2.5 mag deeper than DECam's: the depth
    test above would fail on them."""
    batch = deeplens.simulate(make_spec(zero_points=PRESET_PER_EXPOSURE), 30, seed=11)
    got = _median_depths(batch)
    for band in BANDS:
        assert got[band] - depth.DECAM_SINGLE_EPOCH_10SIGMA[band] > 1.5, (band, got)  # far outside 0.4


def test_pixels_carry_the_metadatas_noise(survey: deeplens.Batch, coadd: deeplens.Batch) -> None:
    """Background (border frame) and Poisson noise (bright pixels, from the noise-free planes) as the formula says."""
    for batch, n_exp in ((survey, 1), (coadd, 4)):
        ratios = depth.check_noise(batch.images, batch.metadata, BANDS, "batch")
        assert all(abs(r - 1) < depth.NOISE_RTOL for r in ratios.values()), ratios
        model = batch.planes[:, 0] + batch.planes[:, 1] + batch.planes[:, 2]  # lens, source, point sources
        excess_sum = poisson_sum = 0.0
        for b, band in enumerate(BANDS):
            meta = batch.metadata
            t = meta[f"exposure_time-{band}"].to_numpy()[:, None, None]
            sky = meta[f"sky_sigma-{band}"].to_numpy()[:, None, None]
            poisson = np.clip(model[:, b], 0, None) / t
            bright = (
                poisson > 0.5 * sky**2
            )  # pixels where the light's Poisson noise is at least half the background's
            excess = (
                batch.images[:, b] - model[:, b]
            ) ** 2 - sky**2  # measured variance beyond the background
            excess_sum += float(np.sum(excess[bright]))
            poisson_sum += float(np.sum(poisson[bright]))
            assert np.all(meta[f"coadd_exposures-{band}"] == n_exp)
        # 1 if the Poisson noise uses the coadd's total time (one exposure's time would give n_exp)
        assert excess_sum / poisson_sum == pytest.approx(1.0, abs=0.1), (n_exp, excess_sum / poisson_sum)


def test_coadds_deepen_by_sqrt_n(survey: deeplens.Batch, coadd: deeplens.Batch) -> None:
    """N coadded exposures: N times the exposure, sqrt(N) times the read noise, sigma / sqrt(N): 2.5 log10(2) deeper
    for N = 4, with the same conditions drawn."""
    for band in BANDS:
        one, four = survey.metadata, coadd.metadata
        np.testing.assert_allclose(four[f"exposure_time-{band}"], 4 * one[f"exposure_time-{band}"])
        np.testing.assert_allclose(four[f"read_noise-{band}"], 2 * one[f"read_noise-{band}"])
        np.testing.assert_allclose(four[f"sky_sigma-{band}"], one[f"sky_sigma-{band}"] / 2, rtol=1e-12)
        np.testing.assert_allclose(
            four[f"depth_10sigma-{band}"] - one[f"depth_10sigma-{band}"], 2.5 * np.log10(2.0), rtol=1e-9
        )


def test_sky_table_drops_the_impossible_bins() -> None:
    """The preset's r-band 27.1 and 27.5 mag/arcsec^2 bins (and z's 23.2-24.4) are gone; the rest renormalised."""
    raw = deeplens.preset_table("delve_sky_brightness")
    for band in "griz":
        values, weights = deeplens.sky_table("delve", band)
        kept = [(v, w) for v, w in zip(raw[band]["VALUES"], raw[band]["WEIGHTS"], strict=True) if w > 0]
        assert max(values) <= deeplens.SKY_FAINTEST
        assert [v for v, _ in kept if v <= deeplens.SKY_FAINTEST] == values
    assert {27.095, 27.466} <= set(raw["r"]["VALUES"]) and max(deeplens.sky_table("delve", "r")[0]) == 21.9
    random.seed(3)
    draws = np.array([deeplens.lenspipe_sky_brightness("delve", bands="g,r,i") for _ in range(3000)])
    assert draws.max() <= deeplens.SKY_FAINTEST and draws[:, 1].min() >= 17.0


def test_legacy_noise_keeps_the_seeds_images() -> None:
    """sky_noise: legacy is deeplenstronomy's preset unchanged (per-exposure zero points), coadds refused."""
    batch = deeplens.simulate(make_spec(sky_noise="legacy"), 10, seed=11)
    for band in BANDS:
        assert np.all(batch.metadata[f"magnitude_zero_point-{band}"] == PRESET_PER_EXPOSURE[band])
    with pytest.raises(Exception, match="simulation.exposures"):
        make_spec(sky_noise="legacy", exposures=2)


def _shard(tmp: Path, noise_scale: float = 1.0) -> Path:
    params = {
        "simulation": CONFIG["simulation"],
        "priors": CONFIG["priors"],
        "parameters": CONFIG["parameters"],
        "shard": 0,
        "size": 30,
        "seed": 5,
    }
    shard = simulate_shard(SimulationSettings.from_params(params))
    images = shard.images.copy()
    if noise_scale != 1.0:  # extra background noise the metadata does not know about
        rng = np.random.default_rng(0)
        for b, band in enumerate(BANDS):
            sigma = shard.metadata[f"sky_sigma-{band}"].to_numpy()[:, None, None]
            images[:, b] += (
                np.sqrt(noise_scale**2 - 1) * sigma * rng.standard_normal(images[:, b].shape)
            ).astype(np.float32)
    path = tmp / f"shard_{noise_scale}.zarr"
    write_store(
        path,
        images,
        shard.theta,
        CONFIG["parameters"],
        attrs={"shard": 0, "bands": list(BANDS)},
        metadata=shard.metadata,
    )
    return path


def test_a_shard_whose_images_do_not_match_their_depth_is_refused(tmp_path: Path) -> None:
    good, bad = _shard(tmp_path), _shard(tmp_path, noise_scale=1.3)
    out = tmp_path / "split"
    with pytest.raises(DataError, match=r"shard_1\.3\.zarr.*band g: image noise 1\.\d+ x what its metadata"):
        split_shards(
            [good, bad], out / "train.zarr", out / "test.zarr", out / "norm.json", SplitSettings(0.2, 1)
        )
    assert not (out / "train.zarr").exists() and not (out / "norm.json").exists()
    split_shards([good], out / "train.zarr", out / "test.zarr", out / "norm.json", SplitSettings(0.2, 1))
    assert (out / "train.zarr").is_dir()
