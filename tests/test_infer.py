"""Inference on observed FITS images: flux units, every input check, crop, layouts, OOD flag, outputs, determinism.

FITS files are written here with astropy (a TAN WCS at the study's pixel scale); the estimator is a maf trained for
two epochs on a tiny synthetic store (tests/test_train.py's helpers) whose record holds the observing conditions.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from lenspipe import posterior as lp_posterior
from lenspipe.cli import band_values, main
from lenspipe.data import synthetic_lenses
from lenspipe.errors import DataError
from lenspipe.fits_io import Calibration, ImageSpec, parse_image, read_observed
from lenspipe.flux import counts_per_second, flux_scale, study_zero_points
from lenspipe.infer import InferSettings, infer_images
from lenspipe.normalisation import Normalisation
from lenspipe.ood import OODReference
from lenspipe.store import write_store

from .test_train import Study, make_study, run_training

REPO = Path(__file__).resolve().parent.parent
BANDS = ("g", "r", "i")
SCALE = 0.263  # arcsec/pixel of config/test.yaml
STUDY_ZP = {"g": 31.55, "r": 31.284, "i": 31.608}  # deeplenstronomy's DELVE preset


def fits_header(pixel_scale: float = SCALE, naxis: int = 2, **keys: object):  # noqa: ANN201 - astropy Header
    """A header with a TAN WCS of `pixel_scale` arcsec/pixel (and a band axis for a cube), plus `keys`."""
    from astropy.wcs import WCS

    wcs = WCS(naxis=naxis)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN", *(["BAND"] if naxis == 3 else [])]
    wcs.wcs.cdelt = [-pixel_scale / 3600, pixel_scale / 3600, *([1.0] if naxis == 3 else [])]
    wcs.wcs.crval = [150.1, 2.2, *([1.0] if naxis == 3 else [])]
    wcs.wcs.crpix = [16.5, 16.5, *([1.0] if naxis == 3 else [])]
    header = wcs.to_header()
    for key, value in keys.items():
        header[key] = value
    return header


def write_fits(
    path: Path, data: np.ndarray, pixel_scale: float = SCALE, wcs: bool = True, **keys: object
) -> Path:
    """A FITS image (2-D, or a (bands, H, W) cube) with a WCS and header keywords."""
    from astropy.io import fits

    header = fits_header(pixel_scale, naxis=np.ndim(data), **keys) if wcs else fits.Header(keys)
    fits.PrimaryHDU(np.asarray(data, dtype=np.float32), header=header).writeto(path, overwrite=True)
    return path


def to_observed(image: np.ndarray, zero_point: float, exptime: float) -> np.ndarray:
    """Study-unit pixels (bands, H, W) as DECam-like counts over `exptime` s at `zero_point` (1 count/s)."""
    return np.stack(
        [image[b] / flux_scale(STUDY_ZP[band], zero_point, exptime) for b, band in enumerate(BANDS)]
    )


def write_per_band(
    folder: Path,
    name: str,
    pixels: np.ndarray,
    zero_point: float = 26.6,
    exptime: float = 90.0,
    **keys: object,
) -> str:
    """One FITS file per band (name_<band>.fits) in DECam-like units; returns the {band} pattern."""
    observed = to_observed(pixels, zero_point, exptime)
    for b, band in enumerate(BANDS):
        write_fits(folder / f"{name}_{band}.fits", observed[b], MAGZERO=zero_point, EXPTIME=exptime, **keys)
    return str(folder / f"{name}_{{band}}.fits")


def read(
    spec: str | dict | ImageSpec,
    num_pix: int = 32,
    calibration: Calibration | None = None,
    fill: bool = False,
    bands: tuple[str, ...] = BANDS,
) -> np.ndarray:
    spec = spec if isinstance(spec, ImageSpec) else parse_image(spec, bands)
    return read_observed(
        spec, bands, num_pix, SCALE, STUDY_ZP, calibration or Calibration(), fill=fill
    ).pixels


# --------------------------------------------------------------------------------------------------
# Flux units.


def test_study_zero_points_are_the_presets_unless_recorded() -> None:
    record = {"observing": {"survey": "delve", "bands": ["g", "r", "i"]}}
    assert study_zero_points(record) == STUDY_ZP
    record["observing"]["zero_points"] = {"g": 26.58, "r": 26.78, "i": 26.75, "z": 26.0}
    assert study_zero_points(record) == {"g": 26.58, "r": 26.78, "i": 26.75}


def test_known_magnitude_comes_back_at_the_right_counts(tmp_path: Path) -> None:
    """A source of magnitude m observed at ZP_obs over t seconds sums to 10**(-0.4 (m - ZP_study)) in study units."""
    m, zp_obs, t = 20.0, 26.6, 90.0
    total_obs = t * counts_per_second(m, zp_obs)  # counts in the exposure
    yy, xx = np.mgrid[:32, :32]
    blob = np.exp(-0.5 * ((yy - 15.5) ** 2 + (xx - 15.5) ** 2) / 2.0**2)
    blob *= total_obs / blob.sum()
    for band in BANDS:
        write_fits(tmp_path / f"src_{band}.fits", blob, MAGZERO=zp_obs, EXPTIME=t)
    pixels = read(str(tmp_path / "src_{band}.fits"))
    for b, band in enumerate(BANDS):
        np.testing.assert_allclose(
            pixels[b].sum(dtype=np.float64), counts_per_second(m, STUDY_ZP[band]), rtol=1e-5
        )
    # the same numbers given on the command line instead of read from the header
    given = Calibration(zero_points={"*": zp_obs}, exposure_times={"g": t, "r": t, "i": t})
    np.testing.assert_allclose(read(str(tmp_path / "src_{band}.fits"), calibration=given), pixels, rtol=1e-6)
    # nanomaggies: zero point 22.5, per second; 1 nanomaggy is magnitude 22.5
    nmgy = np.zeros((32, 32))
    nmgy[16, 16] = counts_per_second(m, 22.5)
    for band in BANDS:
        write_fits(tmp_path / f"nmgy_{band}.fits", nmgy)
    pixels = read(str(tmp_path / "nmgy_{band}.fits"), calibration=Calibration(nanomaggies=True))
    np.testing.assert_allclose(
        pixels.sum(axis=(1, 2)), [counts_per_second(m, STUDY_ZP[b]) for b in BANDS], rtol=1e-5
    )
    # a zero point that applies to the pixel values themselves: no exposure time keyword read
    for band in BANDS:
        write_fits(tmp_path / f"rate_{band}.fits", nmgy, MAGZERO=22.5)
    per_second = Calibration(exposure_time_key=None)
    np.testing.assert_allclose(
        read(str(tmp_path / "rate_{band}.fits"), calibration=per_second), pixels, rtol=1e-6
    )


@pytest.mark.filterwarnings("ignore:Keyword name .MAGZERO_:astropy.io.fits.verify.VerifyWarning")
def test_cube_reads_per_band_header_keys(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.random((3, 32, 32)).astype(np.float32) + 1
    cube = np.stack([to_observed(pixels, zp, 60.0)[b] for b, zp in enumerate((26.5, 26.7, 26.9))])
    write_fits(tmp_path / "lens.fits", cube, MAGZERO_g=26.5, MAGZERO_r=26.7, MAGZERO_i=26.9, EXPTIME=60.0)
    np.testing.assert_allclose(read(str(tmp_path / "lens.fits")), pixels, rtol=1e-5)


def test_missing_header_keyword_names_it(tmp_path: Path) -> None:
    write_fits(tmp_path / "a_g.fits", np.ones((32, 32)), EXPTIME=90.0)
    with pytest.raises(DataError, match=r"a_g\.fits: no MAGZERO header keyword .*--zero-point"):
        read({"g": str(tmp_path / "a_g.fits")}, bands=("g",))
    write_fits(tmp_path / "b_g.fits", np.ones((32, 32)), MAGZERO=26.0, EXPTIME=0.0)
    with pytest.raises(DataError, match=r"b_g\.fits: band g: exposure time 0.0 s"):
        read({"g": str(tmp_path / "b_g.fits")}, bands=("g",))


# --------------------------------------------------------------------------------------------------
# Layouts and checks.


def test_parse_image_layouts() -> None:
    cube = parse_image("data/lens1.fits", BANDS)
    assert cube.name == "lens1" and cube.cube == Path("data/lens1.fits") and not cube.files
    pattern = parse_image("data/lens2_{band}.fits", BANDS)
    assert pattern.name == "lens2" and pattern.files == {b: Path(f"data/lens2_{b}.fits") for b in BANDS}
    pairs = parse_image("g=x/l3-g.fits,r=x/l3-r.fits,i=x/l3-i.fits", BANDS)
    assert pairs.name == "l3" and pairs.files["r"] == Path("x/l3-r.fits")
    assert parse_image({"g": "a/l4_g.fits", "r": "a/l4_r.fits"}, BANDS).files == {
        "g": Path("a/l4_g.fits"),
        "r": Path("a/l4_r.fits"),
    }


def test_cube_and_per_band_layouts_agree(tmp_path: Path) -> None:
    pixels = np.random.default_rng(1).random((3, 32, 32)).astype(np.float32)
    pattern = write_per_band(tmp_path, "lens", pixels)
    cube = write_fits(
        tmp_path / "cube.fits", to_observed(pixels, 26.6, 90.0), MAGZERO=26.6, EXPTIME=90.0, BANDS="g,r,i"
    )
    mapping = {b: str(tmp_path / f"lens_{b}.fits") for b in BANDS}
    a, b, c = read(pattern), read(str(cube)), read(mapping)
    np.testing.assert_allclose(a, pixels, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_pixel_scale_checked_against_the_study(tmp_path: Path) -> None:
    ok = write_fits(
        tmp_path / "ok.fits", np.ones((3, 32, 32)), pixel_scale=SCALE * 1.009, MAGZERO=26.0, EXPTIME=1.0
    )
    read(str(ok))
    bad = write_fits(tmp_path / "bad.fits", np.ones((3, 32, 32)), pixel_scale=0.27, MAGZERO=26.0, EXPTIME=1.0)
    with pytest.raises(
        DataError, match=r"bad\.fits: pixel scale 0\.2700 arcsec \(WCS\) differs from the study's 0\.2630"
    ):
        read(str(bad))
    none = write_fits(tmp_path / "nowcs.fits", np.ones((3, 32, 32)), wcs=False, MAGZERO=26.0, EXPTIME=1.0)
    with pytest.raises(DataError, match=r"nowcs\.fits: no celestial WCS"):
        read(str(none))


def test_small_image_refused_and_large_one_centre_cropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    small = write_fits(tmp_path / "small.fits", np.ones((3, 30, 32)), MAGZERO=26.0, EXPTIME=1.0)
    with pytest.raises(
        DataError, match=r"small\.fits: image is 30x32 pixels, expected at least the study's 32x32"
    ):
        read(str(small))
    big = np.arange(3 * 41 * 40, dtype=np.float32).reshape(3, 41, 40)
    path = write_fits(tmp_path / "big.fits", big, MAGZERO=STUDY_ZP["g"], EXPTIME=1.0)
    with caplog.at_level(logging.INFO, logger="lenspipe.fits_io"):
        pixels = read(str(path))
    assert "41x40 cutout centre-cropped to 32x32 (from pixel y=4, x=4)" in caplog.text
    np.testing.assert_allclose(pixels[0], big[0, 4:36, 4:36], rtol=1e-6)


def test_band_missing_or_extra(tmp_path: Path) -> None:
    pixels = np.ones((3, 32, 32), dtype=np.float32)
    write_per_band(tmp_path, "lens", pixels)
    files = {b: str(tmp_path / f"lens_{b}.fits") for b in BANDS}
    with pytest.raises(
        DataError, match=r"lens_g\.fits: files for bands: missing i; the estimator expects bands g, r, i"
    ):
        read({b: files[b] for b in ("g", "r")})
    with pytest.raises(DataError, match="extra z; the estimator expects bands g, r, i"):
        read({**files, "z": files["g"]})
    with pytest.raises(DataError, match=r"lens_i\.fits: no such file"):
        (tmp_path / "lens_i.fits").unlink()
        read(str(tmp_path / "lens_{band}.fits"))
    four = write_fits(tmp_path / "four.fits", np.ones((4, 32, 32)), MAGZERO=26.0, EXPTIME=1.0)
    with pytest.raises(DataError, match=r"four\.fits: cube has 4 bands, the estimator expects 3 \(g, r, i"):
        read(str(four))
    named = write_fits(tmp_path / "gri.fits", np.ones((3, 32, 32)), MAGZERO=26.0, EXPTIME=1.0, BANDS="g,r,z")
    with pytest.raises(DataError, match=r"gri\.fits: header BANDS: missing i; extra z"):
        read(str(named))


def test_nonfinite_pixels_refused_or_filled(tmp_path: Path) -> None:
    data = np.full((3, 32, 32), 5.0)
    data[:, 10:12, 10:13] = np.nan
    data[1, 20, 20] = np.inf
    path = write_fits(tmp_path / "holes.fits", data, MAGZERO=STUDY_ZP["g"], EXPTIME=1.0)
    cal = Calibration(zero_points=STUDY_ZP, exposure_times={"*": 1.0})
    with pytest.raises(
        DataError, match=r"holes\.fits: band g: 6 NaN/inf pixels in the 32x32 cutout \(refused"
    ):
        read(str(path), calibration=cal)
    pixels = read(str(path), calibration=cal, fill=True)
    assert np.isfinite(pixels).all()
    np.testing.assert_allclose(pixels[:, 10:12, 10:13], 5.0)
    assert pixels[1, 20, 20] == 5.0
    # NaNs outside the centre crop do not count
    big = np.full((3, 40, 40), 5.0)
    big[:, 0, 0] = np.nan
    read(str(write_fits(tmp_path / "edge.fits", big, MAGZERO=26.0, EXPTIME=1.0)))


def test_not_fits_or_no_image_hdu(tmp_path: Path) -> None:
    from astropy.io import fits

    text = tmp_path / "notes.fits"
    text.write_text("this is not a FITS file\n" * 200)
    with pytest.raises(DataError, match=r"notes\.fits: not a readable FITS file"):
        read(str(text))
    table = tmp_path / "table.fits"
    fits.HDUList(
        [fits.PrimaryHDU(), fits.BinTableHDU.from_columns([fits.Column("a", "E", array=[1.0])])]
    ).writeto(table)
    with pytest.raises(DataError, match=r"table\.fits: no image HDU"):
        read(str(table))
    # an image in an extension (empty primary, as DECam's) is found, keywords of both headers used
    ext = tmp_path / "ext.fits"
    primary = fits.PrimaryHDU(header=fits.Header({"EXPTIME": 90.0}))
    image = fits.ImageHDU(np.ones((3, 32, 32), dtype=np.float32), header=fits_header(naxis=3, MAGZERO=26.6))
    fits.HDUList([primary, image]).writeto(ext)
    assert read(str(ext)).shape == (3, 32, 32)


def test_cli_band_values() -> None:
    assert band_values("26.5") == {"*": 26.5}
    assert band_values("g=26.58, r=26.78,i=26.75") == {"g": 26.58, "r": 26.78, "i": 26.75}
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        band_values("g=abc")


# --------------------------------------------------------------------------------------------------
# OOD score.


def test_ood_reference_flags_far_embeddings() -> None:
    rng = np.random.default_rng(2)
    cov = np.diag([1.0, 4.0, 0.25, 1.0])
    train, val, fresh = (rng.multivariate_normal(np.zeros(4), cov, n) for n in (4000, 2000, 4000))
    ref = OODReference.fit(train, val)
    assert abs(ref.flag(ref.score(fresh)).mean() - 0.01) < 0.006  # the 99th percentile: ~1% flagged
    far = np.array([[0.0, 0.0, 3.0, 0.0]])  # 6 sigma along the narrow axis
    assert ref.flag(ref.score(far)).all()
    again = OODReference.from_dict(json.loads(json.dumps(ref.as_dict())))
    np.testing.assert_allclose(again.score(fresh[:10]), ref.score(fresh[:10]))
    # a dead feature (always 0 in training) that switches on is far, without dividing by zero
    dead = np.column_stack([train, np.zeros(len(train))])
    ref = OODReference.fit(dead, np.column_stack([val, np.zeros(len(val))]))
    assert ref.flag(ref.score(np.array([[0.0, 0.0, 0.0, 0.0, 1.0]]))).all()


# --------------------------------------------------------------------------------------------------
# With a trained estimator.


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Study, Path]:
    """A maf trained for 2 epochs on a synthetic 32x32 store that records the DELVE observing conditions."""
    root = tmp_path_factory.mktemp("infer")
    config = copy.deepcopy(yaml.safe_load((REPO / "config" / "test.yaml").read_text()))
    study = make_study(root, config, n=48)
    images, theta = synthetic_lenses(48, study.box, 3, bands=3, num_pix=32)
    write_store(
        study.store,
        images,
        theta,
        config["parameters"],
        attrs={"bands": list(BANDS), "survey": "delve", "pixel_scale": SCALE, "sky_noise": "survey"},
    )
    Normalisation.from_images(images, list(BANDS)).write(study.normalisation)
    run_training(study, "maf", root / "train" / "maf")
    return study, root / "train" / "maf" / "estimator.pt"


@pytest.mark.slow
def test_record_holds_what_inference_needs(trained: tuple[Study, Path]) -> None:
    _, path = trained
    record = lp_posterior.load(path).record
    assert record["observing"] == {
        "survey": "delve",
        "bands": ["g", "r", "i"],
        "pixel_scale": SCALE,
        "sky_noise": "survey",
        "num_pix": 32,
    }
    assert len(record["ood"]["mean"]) == 16 and record["ood"]["threshold"] > 0


@pytest.mark.slow
def test_infer_outputs_and_determinism(trained: tuple[Study, Path], tmp_path: Path) -> None:
    study, path = trained
    pixels = study.images[:3]
    patterns = [write_per_band(tmp_path, f"lens{k}", pixels[k]) for k in range(2)]
    cube = write_fits(tmp_path / "lens2.fits", to_observed(pixels[2], 26.6, 90.0), MAGZERO=26.6, EXPTIME=90.0)
    images = [*patterns, str(cube)]
    settings = InferSettings(num_samples=300, seed=11)
    table = infer_images(path, images, tmp_path / "out", settings=settings)
    out = tmp_path / "out"
    import zarr

    group = zarr.open_group(str(out / "samples.zarr"), mode="r")
    samples = group["samples"][:]
    assert samples.shape == (3, 300, 6) and group.attrs["image_names"] == ["lens0", "lens1", "lens2"]
    assert study.box.contains(samples).all()
    # the samples are the estimator's for the converted pixels (image i seeded from (seed, i))
    est = lp_posterior.load(path)
    converted = np.stack([read(p) for p in images])
    np.testing.assert_allclose(converted, pixels, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(samples, est.sample_images(converted, 300, seed=11), rtol=1e-5, atol=1e-5)
    # summary: one row per image and parameter, quantiles ordered, the OOD score and flag, the estimator
    csv = pd.read_csv(out / "summary.csv", keep_default_na=False)
    assert (
        len(csv) == 18
        and set(csv["estimator"]) == {"maf"}
        and list(csv["image"][::6]) == ["lens0", "lens1", "lens2"]
    )
    assert (
        (csv["p2.5"] <= csv["p16"]).all()
        and (csv["p16"] <= csv["median"]).all()
        and (csv["median"] <= csv["p84"]).all()
    )
    assert (csv["p84"] <= csv["p97.5"]).all() and csv["ood_score"].notna().all() and "ood_flag" in csv
    np.testing.assert_allclose(csv["median"].to_numpy().reshape(3, 6), np.median(samples, axis=1), rtol=1e-5)
    pd.testing.assert_frame_equal(table.reset_index(drop=True), csv, check_dtype=False, atol=1e-5)
    assert (out / "summary.md").read_text().startswith("| image | estimator | parameter |")
    for name in ("lens0", "lens1", "lens2"):
        assert (out / "corner" / f"{name}.pdf").stat().st_size > 1000 and (
            out / "corner" / f"{name}.png"
        ).exists()
    info = json.loads((out / "images.json").read_text())
    assert info[2]["bands"]["g"]["flux_scale"] == pytest.approx(flux_scale(STUDY_ZP["g"], 26.6, 90.0))
    assert info[0]["bands"]["r"]["calibration"] == "header" and info[0]["bands"]["r"]["zero_point"] == 26.6
    prov = json.loads((out / "provenance.json").read_text())
    assert (
        prov["rule"] == "infer"
        and prov["seeds"] == {"infer": 11}
        and len(prov["config"]["estimator_sha256"]) == 64
    )
    # same seed, same samples; another seed, other samples
    infer_images(path, images, tmp_path / "again", settings=settings)
    again = zarr.open_group(str(tmp_path / "again" / "samples.zarr"), mode="r")["samples"][:]
    np.testing.assert_array_equal(samples, again)
    infer_images(
        path, images, tmp_path / "other", settings=InferSettings(num_samples=300, seed=12, corner=False)
    )
    other = zarr.open_group(str(tmp_path / "other" / "samples.zarr"), mode="r")["samples"][:]
    assert not np.allclose(samples, other)


@pytest.mark.slow
def test_out_of_distribution_image_is_flagged_and_still_inferred(
    trained: tuple[Study, Path], tmp_path: Path
) -> None:
    study, path = trained
    normal = write_per_band(tmp_path, "normal", study.images[0])
    bright = write_per_band(tmp_path, "bright", study.images[0] * 300.0)
    table = infer_images(
        path, [normal, bright], tmp_path / "out", settings=InferSettings(num_samples=50, corner=False)
    )
    flags = table.groupby("image")["ood_flag"].first()
    scores = table.groupby("image")["ood_score"].first()
    assert flags["bright"] and scores["bright"] > scores["normal"]
    assert table.groupby("image").size()["bright"] == 6  # inferred anyway


@pytest.mark.slow
def test_bad_input_leaves_nothing(trained: tuple[Study, Path], tmp_path: Path) -> None:
    study, path = trained
    good = write_per_band(tmp_path, "good", study.images[0])
    bad = write_fits(tmp_path / "bad.fits", np.ones((3, 32, 32)), pixel_scale=0.3, MAGZERO=26.0, EXPTIME=1.0)
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"bad\.fits: pixel scale"):
        infer_images(path, [good, str(bad)], out, settings=InferSettings(num_samples=20, corner=False))
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    with pytest.raises(DataError, match=r"no\.pt: no trained estimator here"):
        infer_images(tmp_path / "no.pt", [good], out)
    # an existing folder with other content is refused unless force, and replaced with it
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(DataError, match=r"out: output folder exists and is not empty: .*--force"):
        infer_images(path, [good], out, settings=InferSettings(num_samples=20, corner=False))
    assert (out / "mine.txt").read_text() == "keep me"
    infer_images(path, [good], out, settings=InferSettings(num_samples=20, corner=False), force=True)
    assert not (out / "mine.txt").exists() and (out / "summary.csv").exists()
    # an empty existing folder is fine
    (tmp_path / "empty").mkdir()
    infer_images(path, [good], tmp_path / "empty", settings=InferSettings(num_samples=20, corner=False))
    # two images with one name
    with pytest.raises(DataError, match="image name 'good' is also that of"):
        infer_images(
            path, [good, good], tmp_path / "twice", settings=InferSettings(num_samples=20, corner=False)
        )


@pytest.mark.slow
def test_estimator_without_observing_record_names_the_study(
    trained: tuple[Study, Path], tmp_path: Path
) -> None:
    study, path = trained
    record = torch.load(path, weights_only=True)
    del record["observing"]
    old = tmp_path / "results" / "paper" / "train" / "nsf" / "estimator.pt"
    old.parent.mkdir(parents=True)
    torch.save(record, old)
    good = write_per_band(tmp_path, "good", study.images[0])
    with pytest.raises(
        DataError,
        match=r"lacks survey, bands, pixel_scale, num_pix .*retrain it, study 'paper': "
        r"snakemake -f .*results/paper/train/nsf/estimator\.pt",
    ):
        infer_images(old, [good], tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_command_line(trained: tuple[Study, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    study, path = trained
    pattern = write_per_band(tmp_path, "lens", study.images[0], zero_point=26.6, exptime=90.0)
    args = [
        "infer",
        "--estimator",
        str(path),
        pattern,
        "--out",
        str(tmp_path / "out"),
        "--num-samples",
        "40",
        "--seed",
        "5",
        "--no-corner",
    ]
    assert main(args) == 0
    assert (tmp_path / "out" / "summary.csv").exists()
    # the same numbers given as options (header keywords ignored) give the same samples
    given = [
        "--zero-point",
        "26.6",
        "--exptime",
        "g=90,r=90,i=90",
        "--zero-point-key",
        "NOPE",
        "--exptime-key",
        "NOPE",
    ]
    assert main([*args[:4], "--out", str(tmp_path / "given"), *args[6:], *given]) == 0
    import zarr

    a, b = (
        zarr.open_group(str(tmp_path / d / "samples.zarr"), mode="r")["samples"][:] for d in ("out", "given")
    )
    np.testing.assert_array_equal(a, b)
    capsys.readouterr()
    assert main(args) == 1  # the folder exists now
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("lenspipe: data error: ") and "--force" in err[-1]


# --------------------------------------------------------------------------------------------------
# The rule, on the finished tiny study.


@pytest.mark.slow
def test_infer_rule_joins_every_estimator_and_matches_the_command(
    finished_run: tuple[Path, Path], tmp_path: Path
) -> None:
    import zarr

    from lenspipe.store import open_store

    from .conftest import dry_run_jobs, snakemake, write_config

    work, cfg = finished_run
    test_images = open_store(work / "results/test/split/test.zarr").load_images(slice(0, 2))
    folder = work / "observed"
    folder.mkdir(exist_ok=True)
    write_per_band(folder, "lens0", test_images[0])
    cube = np.pad(to_observed(test_images[1], 26.7, 45.0), ((0, 0), (3, 3), (2, 2)))  # 70x68: centre-cropped
    write_fits(folder / "lens1.fits", cube, MAGZERO=26.7, EXPTIME=45.0)
    config = yaml.safe_load(cfg.read_text())
    config["observed"] = {"images": ["observed/lens0_{band}.fits", "observed/lens1.fits"], "num_samples": 120}
    overlay = write_config(tmp_path / "observed.yaml", config)
    estimators = list(config["estimators"])
    assert dry_run_jobs(work, overlay) == {
        "infer": sorted(f"estimator={e}" for e in estimators),
        "infer_join": [""],
    }
    snakemake(["--cores", "2", "--configfile", str(overlay)], cwd=work)
    assert dry_run_jobs(work, overlay) == {} and dry_run_jobs(work, cfg) == {}

    out = work / "results/test/infer"
    joined = pd.read_csv(out / "summary.csv", keep_default_na=False)
    assert len(joined) == len(estimators) * 2 * 6 and list(dict.fromkeys(joined["estimator"])) == estimators
    assert (
        set(joined["image"]) == {"lens0", "lens1"}
        and "| image | estimator |" in (out / "summary.md").read_text()
    )
    for est in estimators:
        assert (out / est / "corner" / "lens1.png").exists() and (out / est / "provenance.json").exists()
    info = json.loads((out / "nsf" / "images.json").read_text())
    assert info[1]["bands"]["g"]["crop_y0_x0"] == [3, 2]

    # the command, with the config's seed, gives the rule's numbers
    images = [str(folder / "lens0_{band}.fits"), str(folder / "lens1.fits")]
    args = [
        "infer",
        "--estimator",
        str(work / "results/test/train/nsf/estimator.pt"),
        *images,
        "--out",
        str(tmp_path / "cli"),
        "--num-samples",
        "120",
        "--seed",
        str(config["seed"]),
        "--no-corner",
    ]
    assert main(args) == 0
    rule, command = (
        zarr.open_group(str(d / "samples.zarr"), mode="r")["samples"][:]
        for d in (out / "nsf", tmp_path / "cli")
    )
    np.testing.assert_array_equal(rule, command)
    pd.testing.assert_frame_equal(
        joined[joined["estimator"] == "nsf"].reset_index(drop=True),
        pd.read_csv(tmp_path / "cli" / "summary.csv", keep_default_na=False),
    )


def test_observed_config_section(tiny_config: dict) -> None:
    from lenspipe.config import check_config
    from lenspipe.errors import ConfigError
    from lenspipe.rule_params import has_observed, infer_params, observed_files

    tiny_config["observed"] = {
        "images": ["c/l1.fits", "c/l2_{band}.fits", {"g": "a.fits", "r": "b.fits", "i": "c.fits"}],
        "zero_points": 26.6,
        "exposure_time_key": None,
    }
    check_config(tiny_config)
    assert observed_files(tiny_config) == [
        "c/l1.fits",
        "c/l2_g.fits",
        "c/l2_r.fits",
        "c/l2_i.fits",
        "a.fits",
        "b.fits",
        "c.fits",
    ]
    params = infer_params(tiny_config)
    assert (
        params["num_samples"] == tiny_config["evaluation"]["num_samples"]
        and params["seed"] == tiny_config["seed"]
    )
    cal = Calibration.from_config(params)
    assert (
        cal.zero_points == {"*": 26.6} and cal.exposure_time_key is None and cal.zero_point_key == "MAGZERO"
    )
    # without the section: no infer target can be built, and each function says so
    del tiny_config["observed"]
    assert not has_observed(tiny_config)
    for function in (infer_params, observed_files):
        with pytest.raises(ConfigError, match=r"^config error: observed: expected an `observed` section"):
            function(tiny_config)
    tiny_config["observed"] = {"images": []}
    with pytest.raises(ConfigError, match="observed.images: expected at least 1 entries"):
        check_config(tiny_config)
    tiny_config["observed"] = {"images": ["a.fits"], "zero_point": 26.0}
    with pytest.raises(ConfigError, match="observed.zero_point: expected one of the known keys"):
        check_config(tiny_config)
