"""lenspipe.deeplens: the YAML generated from the config, and each deeplenstronomy bug handled (with a check that
the bug is still there, so a fixed deeplenstronomy shows up here)."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from lenspipe import deeplens
from lenspipe.errors import ConfigError

from .conftest import REPO

CONFIG = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
LIGHT = "LIGHT_PROFILE_1-magnitude"


def make_spec(**simulation: object) -> deeplens.SimulatorSpec:
    """The tiny config's simulator spec, with `simulation` keys overridden."""
    sim = {**copy.deepcopy(CONFIG["simulation"]), **simulation}
    return deeplens.SimulatorSpec.from_config(sim, CONFIG["priors"])


@pytest.fixture(scope="module")
def survey_batch() -> deeplens.Batch:
    """40 systems with the survey's sky noise and the noise-free planes."""
    return deeplens.simulate(make_spec(), 40, seed=7, planes=True)


@pytest.fixture(scope="module")
def legacy_batch() -> deeplens.Batch:
    """The same systems with deeplenstronomy's own (legacy) sky noise."""
    return deeplens.simulate(make_spec(sky_noise="legacy"), 40, seed=7)


def test_yaml_follows_the_config() -> None:
    text = deeplens.config_yaml(make_spec(), size=12, seed=99)
    doc = yaml.safe_load(text)
    sim, priors = CONFIG["simulation"], CONFIG["priors"]
    assert doc["DATASET"]["PARAMETERS"] == {"SIZE": 12, "OUTDIR": "deeplenstronomy_out", "SEED": 99}
    assert doc["COSMOLOGY"]["PARAMETERS"] == sim["cosmology"]
    image, survey = doc["IMAGE"]["PARAMETERS"], doc["SURVEY"]["PARAMETERS"]
    assert (image["numPix"], image["pixel_scale"]) == (sim["num_pix"], sim["pixel_scale"])
    assert survey["BANDS"] == ",".join(sim["bands"])
    # DELVE conditions: deeplenstronomy's delve seeing; with survey noise lenspipe's per-second zero points,
    # its sky table without the impossible bins and its exposure times times the coadded exposures.
    assert survey["seeing"]["DISTRIBUTION"]["NAME"] == "delve_seeing"
    assert survey["magnitude_zero_point"]["DISTRIBUTION"] == {
        "NAME": "lenspipe_per_band",
        "PARAMETERS": {"values": {"g": 26.58, "r": 26.78, "i": 26.75}},
    }
    assert survey["sky_brightness"]["DISTRIBUTION"]["NAME"] == "lenspipe_delve_sky_brightness"
    assert image["exposure_time"]["DISTRIBUTION"] == {
        "NAME": "lenspipe_delve_exposure_time",
        "PARAMETERS": {"exposures": 1},
    }
    assert survey["num_exposures"] == 1 and image["read_noise"] == 7.0
    # legacy noise: deeplenstronomy's preset exactly (the seeds' images).
    legacy = yaml.safe_load(deeplens.config_yaml(make_spec(sky_noise="legacy"), size=12, seed=99))
    assert legacy["IMAGE"]["PARAMETERS"]["exposure_time"]["DISTRIBUTION"]["NAME"] == "delve_exposure_time"
    for key in ("seeing", "sky_brightness", "magnitude_zero_point"):
        assert legacy["SURVEY"]["PARAMETERS"][key]["DISTRIBUTION"]["NAME"] == f"delve_{key}"

    def uniform(entry: dict) -> dict:
        assert entry["DISTRIBUTION"]["NAME"] == "uniform"
        p = entry["DISTRIBUTION"]["PARAMETERS"]
        return {"min": p["minimum"], "max": p["maximum"]}

    lens, source = doc["SPECIES"]["GALAXY_1"], doc["SPECIES"]["GALAXY_2"]
    mass = lens["MASS_PROFILE_1"]
    assert mass["NAME"] == sim["lens"]["mass"] == "SIE"
    for name in ("sigma_v", "e1", "e2"):
        assert uniform(mass["PARAMETERS"][name]) == priors[name]
    planes = doc["GEOMETRY"]["CONFIGURATION_1"]
    assert (planes["PLANE_1"]["OBJECT_1"], planes["PLANE_2"]["OBJECT_1"]) == ("LENS", "SOURCE")
    assert uniform(planes["PLANE_1"]["PARAMETERS"]["REDSHIFT"]) == priors["z_l"]
    assert uniform(planes["PLANE_2"]["PARAMETERS"]["REDSHIFT"]) == priors["z_s"]
    for galaxy, obj in ((lens, "lens"), (source, "source")):
        profile, light = galaxy["LIGHT_PROFILE_1"], sim[obj]["light"]
        assert profile["NAME"] == light["profile"]
        for name, rng in light.items():
            if name not in ("profile", "magnitude"):
                assert uniform(profile["PARAMETERS"][name]) == rng
        mag = profile["PARAMETERS"]["magnitude"]["DISTRIBUTION"]
        assert mag["NAME"] == deeplens.COLOUR_DISTRIBUTION
        assert mag["PARAMETERS"] == {
            "minimum": light["magnitude"]["min"],
            "maximum": light["magnitude"]["max"],
            "colours": sim[obj]["colours"],
        }
    # One source of truth: a prior changed in the config is changed in the YAML.
    priors2 = {**priors, "sigma_v": {"min": 200.0, "max": 300.0}}
    spec2 = deeplens.SimulatorSpec.from_config(sim, priors2)
    mass2 = yaml.safe_load(deeplens.config_yaml(spec2, 12, 99))["SPECIES"]["GALAXY_1"]["MASS_PROFILE_1"]
    assert uniform(mass2["PARAMETERS"]["sigma_v"]) == {"min": 200.0, "max": 300.0}


def test_spec_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"simulation\.lens\.colours"):
        make_spec(lens={**CONFIG["simulation"]["lens"], "colours": {"g": 1.0}})
    with pytest.raises(ConfigError, match=r"simulation\.sky_noise"):
        make_spec(sky_noise="loud")
    with pytest.raises(ConfigError, match=r"simulation\.survey"):
        deeplens.survey_sections(make_spec(survey="hubble"))


def test_raw_make_dataset_still_has_its_bugs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bare make_dataset loses the first image, lags the plane redshifts and restarts OBJID; run_make_dataset gives
    bit-for-bit its images, leaves no files in the CWD and restores the caller's global RNGs."""
    from deeplenstronomy.deeplenstronomy import make_dataset

    monkeypatch.chdir(tmp_path)
    text = deeplens.config_yaml(make_spec(), size=8, seed=5)
    deeplens.register_distributions()
    (tmp_path / "bare.yaml").write_text(text)
    bare = make_dataset("bare.yaml", store_in_memory=True)
    images, meta = bare.CONFIGURATION_1_images, bare.CONFIGURATION_1_metadata
    assert images.shape == (7, 3, 64, 64) and len(meta) == 7  # SIZE - 1
    assert meta["OBJID-g"].tolist() == list(range(1, 8))  # per-call ids: never join by them
    for plane in (1, 2):
        true = meta[f"PLANE_{plane}-OBJECT_1-REDSHIFT-g"].to_numpy()
        lagged = meta[f"PLANE_{plane}-REDSHIFT-g"].to_numpy()
        np.testing.assert_array_equal(lagged[1:], true[:-1])  # the previous image's redshift
        assert not np.any(lagged == true)

    before = sorted(tmp_path.rglob("*"))
    np.random.seed(1)
    random.seed(1)
    np_next, py_next = np.random.random(), random.random()
    np.random.seed(1)
    random.seed(1)
    ours, ours_meta, _ = deeplens.run_make_dataset(text)
    assert (np.random.random(), random.random()) == (np_next, py_next)
    assert sorted(tmp_path.rglob("*")) == before
    np.testing.assert_array_equal(ours, images)
    pd.testing.assert_frame_equal(ours_meta, meta)


def test_plane_redshift_columns_hold_each_images_own_redshift(survey_batch: deeplens.Batch) -> None:
    meta = survey_batch.metadata
    for plane in (1, 2):
        for band in ("g", "r", "i"):
            np.testing.assert_array_equal(
                meta[f"PLANE_{plane}-REDSHIFT-{band}"], meta[f"PLANE_{plane}-OBJECT_1-REDSHIFT-{band}"]
            )
    z = deeplens.labels(meta, ["z_l", "z_s"], "g")
    np.testing.assert_array_equal(z[:, 0], meta["PLANE_1-OBJECT_1-REDSHIFT-g"])
    assert np.all((0.2 <= z[:, 0]) & (z[:, 0] <= 0.4) & (0.6 <= z[:, 1]) & (z[:, 1] <= 0.8))


def test_sentinel_rows_are_dropped_by_their_own_redshift() -> None:
    meta = pd.DataFrame(
        {
            "PLANE_1-OBJECT_1-REDSHIFT-g": [0.3, 0.3, 0.3],
            "PLANE_2-OBJECT_1-REDSHIFT-g": [0.7, 10.0, 0.7],
            "PLANE_2-REDSHIFT-g": [np.nan, 0.7, 10.0],
            "PLANE_1-REDSHIFT-g": [np.nan, 0.3, 0.3],
        }
    )
    fixed = deeplens.fix_plane_redshifts(meta)
    np.testing.assert_array_equal(fixed["PLANE_2-REDSHIFT-g"], [0.7, 10.0, 0.7])
    batch = deeplens.Batch(np.zeros((3, 1, 2, 2)), fixed, 0, 3, 3, "")
    kept = batch.select(fixed["PLANE_2-OBJECT_1-REDSHIFT-g"].to_numpy() < deeplens.SENTINEL_REDSHIFT)
    assert kept.metadata["PLANE_2-OBJECT_1-REDSHIFT-g"].tolist() == [0.7, 0.7]


def _corner_std(images: np.ndarray, k: int = 8) -> np.ndarray:
    """Pixel scatter in the four k x k corners of every image and band (sky-dominated, far from the lens)."""
    corners = np.concatenate(
        [images[..., :k, :k], images[..., :k, -k:], images[..., -k:, :k], images[..., -k:, -k:]], axis=-1
    )
    return corners.reshape(*images.shape[:2], -1).std(axis=-1)


def expected_sky_sigma(meta: pd.DataFrame, band: str) -> np.ndarray:
    """Background sigma (counts/s) of the survey conditions drawn for each image, computed here from scratch."""
    rn, t, m_sky, zp, scale, n_exp = (
        meta[f"{name}-{band}"].to_numpy(dtype=float)
        for name in (
            "read_noise",
            "exposure_time",
            "sky_brightness",
            "magnitude_zero_point",
            "pixel_scale",
            "num_exposures",
        )
    )
    sky_counts = 10.0 ** (-0.4 * (m_sky - zp)) * scale**2  # counts/s per pixel
    return np.sqrt(n_exp * rn**2 + n_exp * t * sky_counts) / (n_exp * t)


def test_survey_sky_noise_matches_the_survey(
    survey_batch: deeplens.Batch, legacy_batch: deeplens.Batch
) -> None:
    for b, band in enumerate(("g", "r", "i")):
        expected = expected_sky_sigma(survey_batch.metadata, band)
        ratio = _corner_std(survey_batch.images)[:, b] / expected
        assert abs(ratio.mean() - 1.0) < 0.03, (band, ratio.mean())
        assert np.all(np.abs(ratio - 1.0) < 0.25)
        np.testing.assert_allclose(survey_batch.metadata[f"sky_sigma-{band}"], expected, rtol=1e-10)
        # Legacy: the same conditions, but the sky magnitude was used as counts: nearly noise-free.
        legacy_ratio = _corner_std(legacy_batch.images)[:, b] / expected_sky_sigma(
            legacy_batch.metadata, band
        )
        assert legacy_ratio.mean() < 0.15, (band, legacy_ratio.mean())


def test_bands_differ_by_the_configured_colours(survey_batch: deeplens.Batch) -> None:
    meta, planes = survey_batch.metadata, survey_batch.planes
    assert planes is not None
    sim = CONFIG["simulation"]
    for obj, plane, index in (("lens", "PLANE_1", 0), ("source", "PLANE_2", 1)):
        colours = sim[obj]["colours"]
        mag_i = meta[f"{plane}-OBJECT_1-{LIGHT}-i"].to_numpy()
        flux_i = planes[:, index, 2].sum(axis=(-1, -2))
        for b, band in enumerate(("g", "r")):
            mag = meta[f"{plane}-OBJECT_1-{LIGHT}-{band}"].to_numpy()
            np.testing.assert_allclose(mag - mag_i, colours[band] - colours["i"], atol=1e-9)
            # Noise-free flux ratio band / i = 10^(-0.4 ((m_b - zp_b) - (m_i - zp_i))), colours included.
            zp, zp_i = (
                meta[f"magnitude_zero_point-{band}"].to_numpy(),
                meta["magnitude_zero_point-i"].to_numpy(),
            )
            expected = 10.0 ** (-0.4 * ((mag - zp) - (mag_i - zp_i)))
            flux = planes[:, index, b].sum(axis=(-1, -2))
            np.testing.assert_allclose(flux / flux_i, expected, rtol=0.01)


def test_batch_rows_stay_aligned_with_images(survey_batch: deeplens.Batch) -> None:
    assert len(survey_batch) == len(survey_batch.metadata) == survey_batch.planes.shape[0]
    half = survey_batch.select(np.arange(len(survey_batch)) % 2 == 1)
    np.testing.assert_array_equal(half.images, survey_batch.images[1::2])
    pd.testing.assert_frame_equal(half.metadata, survey_batch.metadata.iloc[1::2].reset_index(drop=True))


def test_parquet_safe_columns() -> None:
    meta = pd.DataFrame(
        {"a": pd.Series([1, 2.5], dtype=object), "b": pd.Series(["x", 3], dtype=object), 7: [1, 2]}
    )
    safe = deeplens.parquet_safe(meta)
    assert list(safe.columns) == ["a", "b", "7"]
    assert safe["a"].dtype == np.float64 and safe["b"].tolist() == ["x", "3"]


def test_preset_tables_are_read_without_importing_deeplenstronomy() -> None:
    """The config checks parse deeplenstronomy's tables from source (importing its distributions module takes
    ~1 s, paid at every snakemake start), and the tables are the ones its functions hold."""
    import ast
    import inspect
    import subprocess
    import sys

    code = (
        "import sys, yaml\n"
        "from lenspipe.config import check_config\n"
        f"check_config(yaml.safe_load(open({str(REPO / 'config' / 'realistic.yaml')!r})))\n"
        "print('deeplenstronomy.distributions' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False", out.stdout + out.stderr

    from deeplenstronomy import distributions

    for name in ("delve_sky_brightness", "delve_magnitude_zero_point", "delve_exposure_time"):
        tree = ast.parse(inspect.getsource(getattr(distributions, name)))
        assign = next(
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "dist"
        )
        assert deeplens.preset_table(name) == ast.literal_eval(assign.value)
    with pytest.raises(Exception, match="no_such_table"):
        deeplens.preset_table("no_such_table")
