"""Recovery check of `lenspipe infer`: lenses made with lenstronomy directly, written as DECam-like FITS, inferred.

Each lens has known parameters drawn from the study's priors (lens and source light from its simulation ranges and
colours), survey observing conditions (seeing, exposure time, sky) drawn per band from the survey preset, the
survey's noise (Poisson on the lens and source counts, Gaussian sky and read noise with the survey's sky
brightness, as the study's `sky_noise: survey`), and fluxes at the study's zero points (lenspipe.flux's
study_zero_points, the function the inference uses). The images are then written as FITS in DECam-like units:
electrons in the exposure, MAGZERO the zero point of 1 e-/s (g 26.58, r 26.78, i 26.75, as DES; 26.5 otherwise),
EXPTIME, a TAN WCS at the study's pixel scale, and 6 pixels wider than the study's images (so they are
centre-cropped). `lenspipe.infer.infer_images` (what `lenspipe infer` runs) reads them back and samples the posteriors.

Printed and written to OUT/recovery.{csv,md,json}: per parameter, the fraction of true values inside the central
68% and 95% intervals, the median's bias and mean |median - truth| / prior width, R^2 of the medians, and the
images flagged out of distribution; OUT/medians_vs_truths.{pdf,png} plots the posterior medians with 68% intervals.

    python benchmarks/recovery.py --config config/config.yaml \
        --estimator results/paper/train/nsf/estimator.pt --n 100 --out results/paper/recovery
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lenspipe.config import load_config

DECAM_ZERO_POINTS = {"g": 26.58, "r": 26.78, "i": 26.75}  # magnitude of 1 e-/s, DES (MISSION.md)
OTHER_ZERO_POINT = 26.5
PAD = 3  # pixels added on each side: the FITS cutouts are num_pix + 6 wide


def draw_lens(config: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """Parameters of one lens from the study's priors and simulation ranges (i-band magnitudes + colours)."""
    from lenspipe.priors import Cosmology, einstein_radius

    sim = config["simulation"]
    uniform = {name: float(rng.uniform(r["min"], r["max"])) for name, r in config["priors"].items()}
    cosmology = Cosmology(**sim["cosmology"])
    theta_e = float(einstein_radius(uniform["sigma_v"], uniform["z_l"], uniform["z_s"], cosmology))
    light = {}
    for obj in ("lens", "source"):
        ranges = sim[obj]["light"]
        drawn = {  # a range is drawn, a plain number is a fixed value
            k: float(rng.uniform(v["min"], v["max"])) if isinstance(v, Mapping) else float(v)
            for k, v in ranges.items()
            if k != "profile"
        }
        light[obj] = drawn
    return {**uniform, "theta_E": theta_e, "lens_light": light["lens"], "source_light": light["source"]}


def lens_image(
    config: Mapping[str, Any],
    lens: Mapping[str, Any],
    conditions: Mapping[str, Mapping[str, Any]],
    zero_points: Mapping[str, float],
    size: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """One lens (bands, size, size) in the study's units (counts/s at its zero points), with the survey's noise."""
    from lenstronomy.SimulationAPI.sim_api import SimAPI
    from lenstronomy.Util import data_util

    sim = config["simulation"]
    kwargs_model = {
        "lens_model_list": ["SIE"],
        "lens_light_model_list": ["SERSIC_ELLIPSE"],
        "source_light_model_list": ["SERSIC_ELLIPSE"],
    }
    kwargs_lens = [
        {"theta_E": lens["theta_E"], "e1": lens["e1"], "e2": lens["e2"], "center_x": 0.0, "center_y": 0.0}
    ]
    out = np.empty((len(sim["bands"]), size, size), dtype=np.float64)
    for b, band in enumerate(sim["bands"]):
        single = {
            **conditions[band],
            "pixel_scale": sim["pixel_scale"],
            "magnitude_zero_point": zero_points[band],
        }
        api = SimAPI(numpix=size, kwargs_single_band=single, kwargs_model=kwargs_model)
        lens_mag = {
            **_sersic(lens["lens_light"]),
            "magnitude": lens["lens_light"]["magnitude"] + sim["lens"]["colours"][band],
        }
        source_mag = {
            **_sersic(lens["source_light"]),
            "magnitude": lens["source_light"]["magnitude"] + sim["source"]["colours"][band],
        }
        kwargs_lens_light, kwargs_source, _ = api.magnitude2amplitude([lens_mag], [source_mag])
        image = api.image_model_class().image(kwargs_lens, kwargs_source, kwargs_lens_light)
        t = float(single["exposure_time"])
        poisson = np.sqrt(np.abs(image) / t) * rng.standard_normal(image.shape)  # lenstronomy's add_poisson
        sky_cps = 10.0 ** (-0.4 * (float(single["sky_brightness"]) - zero_points[band]))  # per arcsec^2
        sigma = data_util.bkg_noise(
            single["read_noise"], t, sky_cps, sim["pixel_scale"], num_exposures=single["num_exposures"]
        )
        out[b] = image + poisson + sigma * rng.standard_normal(image.shape)
    return out


def _sersic(drawn: Mapping[str, float]) -> dict[str, float]:
    return {
        "R_sersic": drawn["R_sersic"],
        "n_sersic": drawn["n_sersic"],
        "e1": drawn.get("e1", 0.0),
        "e2": drawn.get("e2", 0.0),
        "center_x": drawn.get("center_x", 0.0),
        "center_y": drawn.get("center_y", 0.0),
    }


def write_decam_fits(
    folder: Path,
    name: str,
    image: np.ndarray,
    bands: Sequence[str],
    zero_points: Mapping[str, float],
    conditions: Mapping[str, Mapping[str, Any]],
    pixel_scale: float,
    rng: np.random.Generator,
) -> str:
    """One FITS per band in electrons over the exposure, MAGZERO (1 e-/s) and EXPTIME, TAN WCS; returns the pattern."""
    from astropy.io import fits
    from astropy.wcs import WCS

    from lenspipe.flux import flux_scale

    ra, dec = float(rng.uniform(0, 360)), float(rng.uniform(-60, 0))
    for b, band in enumerate(bands):
        zp = DECAM_ZERO_POINTS.get(band, OTHER_ZERO_POINT)
        t = float(conditions[band]["exposure_time"])
        wcs = WCS(naxis=2)
        wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        wcs.wcs.cdelt = [-pixel_scale / 3600.0, pixel_scale / 3600.0]
        wcs.wcs.crpix = [(image.shape[-1] + 1) / 2, (image.shape[-2] + 1) / 2]
        wcs.wcs.crval = [ra, dec]
        header = wcs.to_header()
        header.update(
            MAGZERO=(zp, "mag of 1 e-/s"),
            EXPTIME=(t, "s"),
            BUNIT="electron",
            FILTER=band,
            BAND=band,
            SEEING=(float(conditions[band]["seeing"]), "arcsec FWHM"),
        )
        electrons = image[b] / flux_scale(zero_points[band], zp, t)
        fits.PrimaryHDU(electrons.astype(np.float32), header=header).writeto(
            folder / f"{name}_{band}.fits", overwrite=True
        )
    return str(folder / f"{name}_{{band}}.fits")


def recovery_table(
    samples: np.ndarray, truths: np.ndarray, names: Sequence[str], box: Any, flags: np.ndarray
) -> Any:
    """Per parameter: coverage of the central 68%/95% intervals, bias and error of the median, R^2 of the medians."""
    import pandas as pd
    from sklearn.metrics import r2_score

    from lenspipe.calibration import central_coverage

    coverage = central_coverage(samples, truths, np.array([0.68, 0.95]))
    median = np.median(samples, axis=1)
    width = np.asarray(box.high) - np.asarray(box.low)
    rows = []
    for j, name in enumerate(names):
        rows.append(
            {
                "parameter": name,
                "n_images": len(truths),
                "coverage_68": coverage[0, j],
                "coverage_95": coverage[1, j],
                "median_bias": float(np.mean(median[:, j] - truths[:, j])),
                "mean_abs_error_norm": float(np.mean(np.abs(median[:, j] - truths[:, j])) / width[j]),
                "r2_median": float(r2_score(truths[:, j], median[:, j])),
                "ood_flagged": int(flags.sum()),
            }
        )
    return pd.DataFrame(rows)


def run(config_path: str, estimator: str, n: int, out: str, seed: int, num_samples: int, force: bool) -> Any:
    """Make, write and infer `n` lenses; write and return the recovery table."""
    import pandas as pd

    from lenspipe import atomic, posterior
    from lenspipe.deeplens import observing_conditions
    from lenspipe.flux import study_zero_points
    from lenspipe.infer import InferSettings, infer_images, markdown
    from lenspipe.plots import predicted_vs_true
    from lenspipe.seeds import derive_seed

    config = load_config(config_path)
    sim = config["simulation"]
    est = posterior.load(estimator)
    zero_points = study_zero_points(est.record)  # the study's units, as the inference converts to them
    names = list(est.parameter_names)
    if list(est.bands) != list(sim["bands"]) or est.image_shape[-1] != sim["num_pix"]:
        raise SystemExit(
            f"{estimator} expects bands {est.bands}, {est.image_shape[-1]} pixels: not {config_path}'s"
        )
    out_dir = Path(out)
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise SystemExit(f"{out_dir} exists and is not empty (--force replaces it)")
    atomic.remove(out_dir)
    folder = out_dir / "fits"
    folder.mkdir(parents=True)
    size = sim["num_pix"] + 2 * PAD
    rng = np.random.default_rng(derive_seed(seed, "recovery"))
    patterns, truths, lenses = [], [], []
    start = time.perf_counter()
    for k in range(n):
        lens = draw_lens(config, rng)
        conditions = observing_conditions(sim["survey"], sim["bands"], derive_seed(seed, "conditions", k))
        image = lens_image(config, lens, conditions, zero_points, size, rng)
        patterns.append(
            write_decam_fits(
                folder, f"lens{k:04d}", image, sim["bands"], zero_points, conditions, sim["pixel_scale"], rng
            )
        )
        truths.append([lens[p] for p in names])
        lenses.append({"name": f"lens{k:04d}", **{p: lens[p] for p in names}, "conditions": conditions})
    made_s = time.perf_counter() - start
    truths_arr = np.asarray(truths, dtype=np.float64)
    atomic.write_json(out_dir / "truths.json", lenses)

    start = time.perf_counter()
    summary = infer_images(
        estimator,
        patterns,
        out_dir / "infer",
        settings=InferSettings(num_samples=num_samples, seed=seed, corner=False),
    )
    infer_s = time.perf_counter() - start
    import zarr

    samples = zarr.open_group(str(out_dir / "infer" / "samples.zarr"), mode="r")["samples"][:]
    flags = summary.groupby("image", sort=False)["ood_flag"].first().to_numpy(dtype=bool)
    inside = est.prior_box.contains(truths_arr)
    table = recovery_table(samples, truths_arr, names, est.prior_box, flags)
    table.to_csv(out_dir / "recovery.csv", index=False, float_format="%.4g")
    (out_dir / "recovery.md").write_text(markdown(table))
    medians = pd.DataFrame(np.median(samples, axis=1), columns=[f"{p}_median" for p in names])
    medians.insert(0, "image", [x["name"] for x in lenses])
    for j, p in enumerate(names):
        medians[f"{p}_true"] = truths_arr[:, j]
    medians["ood_flag"] = flags
    medians.to_csv(out_dir / "medians_vs_truths.csv", index=False, float_format="%.6g")
    low, high = np.quantile(samples, [0.16, 0.84], axis=1)
    # the figure shows what the table and the CSV hold: medians, and the R^2 of the medians
    predicted_vs_true(
        truths_arr,
        np.median(samples, axis=1),
        low,
        high,
        list(table["r2_median"]),
        names,
        est.prior_box,
        [out_dir / "medians_vs_truths.pdf", out_dir / "medians_vs_truths.png"],
        estimate="median",
    )
    record = {
        "estimator": str(estimator),
        "config": str(config_path),
        "n_images": n,
        "num_samples": num_samples,
        "seed": seed,
        "truths_inside_prior": bool(inside.all()),
        "study_zero_points": zero_points,
        "decam_zero_points": {b: DECAM_ZERO_POINTS.get(b, OTHER_ZERO_POINT) for b in sim["bands"]},
        "ood_flagged": int(flags.sum()),
        "make_images_s": round(made_s, 2),
        "infer_s": round(infer_s, 2),
        "table": json.loads(table.to_json(orient="records")),
    }
    atomic.write_json(out_dir / "recovery.json", record)
    return table


def main(argv: Sequence[str] | None = None) -> int:
    """Command line; prints the recovery table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--config", required=True, help="the study's config (priors, light ranges, colours, survey)"
    )
    p.add_argument("--estimator", required=True, help="its trained estimator.pt")
    p.add_argument("--n", type=int, default=100, help="lenses to make and infer (default 100)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=1, help="seed of the lenses, their noise and the sampling")
    p.add_argument("--num-samples", type=int, default=5000, help="posterior samples per lens (default 5000)")
    p.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    args = p.parse_args(argv)
    table = run(args.config, args.estimator, args.n, args.out, args.seed, args.num_samples, args.force)
    from lenspipe.infer import markdown

    print(markdown(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
