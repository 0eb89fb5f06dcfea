"""benchmarks/recovery.py (the README's recovery check): its FITS round trip to the study's units, and the script
end to end on the tiny study's NSF (numbers meaningless there: two epochs of training)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from lenspipe.deeplens import observing_conditions, per_second_zero_points
from lenspipe.fits_io import Calibration, parse_image, read_observed

from .conftest import load_benchmark

REPO = Path(__file__).resolve().parent.parent
STUDY_ZP = {"g": 31.55, "r": 31.284, "i": 31.608}


def load_recovery():  # noqa: ANN201 - the benchmark module
    return load_benchmark("recovery")


def test_decam_fits_read_back_in_the_study_units(tmp_path: Path) -> None:
    """A lenstronomy image in study units, written as electrons at DES zero points, comes back cropped and equal."""
    recovery = load_recovery()
    config = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    rng = np.random.default_rng(4)
    lens = recovery.draw_lens(config, rng)
    box = {k: (v["min"], v["max"]) for k, v in config["priors"].items()}
    assert all(lo <= lens[k] <= hi for k, (lo, hi) in box.items())
    conditions = observing_conditions("delve", ["g", "r", "i"], 7)
    image = recovery.lens_image(config, lens, conditions, STUDY_ZP, 70, rng)
    assert image.shape == (3, 70, 70) and np.isfinite(image).all() and image.sum() > 0
    pattern = recovery.write_decam_fits(
        tmp_path, "lens", image, ["g", "r", "i"], STUDY_ZP, conditions, 0.263, rng
    )
    from astropy.io import fits

    header = fits.getheader(tmp_path / "lens_r.fits")
    assert header["MAGZERO"] == 26.78 and header["EXPTIME"] == conditions["r"]["exposure_time"]
    assert header["CTYPE1"] == "RA---TAN" and header["BUNIT"] == "electron"
    pixels = read_observed(
        parse_image(pattern, ["g", "r", "i"]), ["g", "r", "i"], 64, 0.263, STUDY_ZP, Calibration()
    ).pixels
    np.testing.assert_allclose(pixels, image[:, 3:67, 3:67], rtol=2e-6, atol=1e-3)


@pytest.mark.slow
def test_recovery_script_end_to_end(
    finished_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    recovery = load_recovery()
    work, cfg = finished_run
    out = tmp_path / "recovery"
    args = [
        "--config",
        str(cfg),
        "--estimator",
        str(work / "results/test/train/nsf/estimator.pt"),
        "--n",
        "5",
        "--out",
        str(out),
        "--num-samples",
        "80",
        "--seed",
        "3",
    ]
    assert recovery.main(args) == 0
    assert "| parameter | n_images | coverage_68 |" in capsys.readouterr().out
    table = pd.read_csv(out / "recovery.csv")
    assert list(table["parameter"]) == ["sigma_v", "theta_E", "e1", "e2", "z_l", "z_s"]
    assert table["coverage_68"].between(0, 1).all() and table["coverage_95"].between(0, 1).all()
    assert (table["coverage_95"] >= table["coverage_68"]).all() and (table["n_images"] == 5).all()
    record = json.loads((out / "recovery.json").read_text())
    # the study's units: its per-second zero points (sky_noise: survey), recorded by the training
    sim = yaml.safe_load(cfg.read_text())["simulation"]
    study_zp = per_second_zero_points(sim["survey"], tuple(sim["bands"]), sim.get("zero_points"))
    assert record["truths_inside_prior"] and record["study_zero_points"] == study_zp
    assert len(list((out / "fits").glob("*.fits"))) == 15 and (out / "medians_vs_truths.png").exists()
    medians = pd.read_csv(out / "medians_vs_truths.csv")
    assert len(medians) == 5 and {"theta_E_median", "theta_E_true", "ood_flag"} <= set(medians.columns)
    # the same seed makes the same lenses and the same posteriors
    assert recovery.main([*args[:7], str(tmp_path / "again"), *args[8:]]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "again" / "recovery.csv"), table)
