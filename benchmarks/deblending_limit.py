"""How precisely could the lens's own light be measured from a physical-light study's images? A bound on z_l.

Issue 17's oracle regresses z_l on the lens's true magnitudes, colours, size and theta_E: it skips the measurement.
This script bounds what a measurement can give. It simulates images of the study's design (its config, its shard
seeds; deeplenstronomy's noise-free planes kept: the lens light and the lensed source per band), and for each image
computes the Fisher matrix of the light's amplitudes from the image's own per-pixel noise (the survey's background
plus the light's Poisson noise: the script checks it against the simulated images' residuals). Its inverse is the
Cramer-Rao covariance of the lens magnitudes, for three models of what must be fitted beside the lens:

  isolated        the lens alone (no arcs): a matched filter per band
  source known    one source amplitude whose colours are known (as the study draws it: fixed colours)
  source free     a source amplitude per band (a real source's colours are not known)

With every shape known exactly (the lens's size and profile, the source's and the lensed arcs' shapes, theta_E)
these are lower bounds on a fit's errors. With `--shapes` the script also frees the shapes: it renders each image's
lens and source light with lenstronomy from the metadata (checked against deeplenstronomy's planes to 1e-9) and adds
the derivatives by the lens light's R_sersic, n_sersic, e1, e2, the source's R_sersic, n_sersic, e1, e2, centre and
the SIE's theta_E, e1, e2 (central differences), each drawn nuisance shape with its prior's precision (a uniform's
1 / variance) added, as an estimator trained on the study knows its priors. The lens's log size and theta_E then
get errors too (rows "shapes free"). An estimator does not know the image's seeing either (the study draws it per
image and band from the survey's conditions): with `--seeing` the rows "..., seeing free" also free each band's PSF FWHM
(derivatives of both renderings, in that band only), with the precision of the seeing's spread over the shard's
images (1 / its variance per band).

The oracle's features (lenspipe.limits: magnitudes, colours, log size, theta_E) get each image's errors drawn from
its covariance (bands correlated through the shared source and shapes), and the same k-NN regression (trained on
noisy features too, as an estimator learns from noisy images) gives R^2 per parameter on the last
`--test-fraction` of the images (one draw of the errors). The k-NN reads noisy features poorly (it smooths over its
neighbours), so z_l is also read by gradient boosting trained on `--draws` noisy copies of each training image,
averaged over `--repeats` draws, with its rms error per bin of the lens's r magnitude (the bins of
benchmarks/error_by_brightness.py, which reads an estimator's error the same way). A Gaussian (Fisher)
approximation read by one regression: it says what precision the images allow, not that a fit attains it.

Usage: .venv/bin/python benchmarks/deblending_limit.py [--config config/physical.yaml] [--images 10000]
       [--shard-size 1000] [--test-fraction 0.1] [--seed 0] [--shapes [--seeing]] [--draws 10] [--repeats 3]
       [--magnitude-bins 15 17.8 18.5 19 19.7 22.5] [--save bound.npz]
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from lenspipe import deeplens
from lenspipe.config import load_config
from lenspipe.limits import (
    lens_light_columns,
    lens_light_features,
    lens_light_limits,
    magnitude_bins,
    perturbed_features,
)
from lenspipe.rule_params import simulate_params
from lenspipe.simulate import SimulationSettings

REPO = Path(__file__).resolve().parent.parent
MAG_PER_LN = 2.5 / np.log(10.0)
MODES = ("isolated", "source known", "source free")


def variance_maps(lens: np.ndarray, source: np.ndarray, meta: pd.DataFrame, bands: list[str]) -> np.ndarray:
    """Per-pixel noise variance (n, bands, H, W) in (counts/s)^2: the survey background's sigma^2 (metadata
    `sky_sigma`) plus the noise-free light's Poisson variance, light / exposure time (lenstronomy's add_poisson)."""
    sky = np.column_stack([meta[f"sky_sigma-{b}"].to_numpy(float) for b in bands])
    time = np.column_stack([meta[f"exposure_time-{b}"].to_numpy(float) for b in bands])
    light = np.clip(lens + source, 0.0, None)
    return sky[:, :, None, None] ** 2 + light / time[:, :, None, None]


def per_band(planes: np.ndarray) -> np.ndarray:
    """(n, bands, H, W) -> (n, bands, bands, H, W): template k holds band k's plane and zeros in the others."""
    n, bands = planes.shape[:2]
    out = np.zeros((n, bands, *planes.shape[1:]), dtype=planes.dtype)
    for k in range(bands):
        out[:, k, k] = planes[:, k]
    return out


def templates(lens: np.ndarray, source: np.ndarray, mode: str) -> np.ndarray:
    """The images' derivatives by each free amplitude factor (n, k, bands, H, W), the lens's bands first: the
    lens per band, then nothing (isolated), the whole source (source known) or the source per band (source free)."""
    parts = [per_band(lens)]
    if mode == "source known":
        parts.append(source[:, None])
    elif mode == "source free":
        parts.append(per_band(source))
    elif mode != "isolated":
        raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    return np.concatenate(parts, axis=1)


def magnitude_covariance(lens: np.ndarray, source: np.ndarray, variance: np.ndarray, mode: str) -> np.ndarray:
    """Cramer-Rao covariance (n, bands, bands) of the lens's magnitudes: the inverse Fisher matrix of the amplitude
    factors (1 at the truth, so their errors are relative flux errors) times (2.5 / ln 10)^2, lens block."""
    t = templates(lens.astype(np.float64), source.astype(np.float64), mode)
    fisher = np.einsum("nibhw,njbhw->nij", t / variance[:, None], t)
    bands = lens.shape[1]
    return MAG_PER_LN**2 * np.linalg.inv(fisher)[:, :bands, :bands]


def with_correlated_errors(
    features: np.ndarray, covariance: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """The oracle's features with each image's errors drawn from its covariance (n, k, k): over the magnitudes
    (k = bands), or the magnitudes, log10 size and theta_E (k = bands + 2); colours recomputed from the perturbed
    magnitudes, whatever the covariance leaves out stays exact."""
    n_bands = (features.shape[1] - 1) // 2  # magnitudes, colours, log size, theta_E
    columns = lens_light_columns(n_bands)
    where = list(range(n_bands))
    if covariance.shape[1] == n_bands + 2:
        where += [columns["log_size"].start, columns["theta_E"].start]
    elif covariance.shape[1] != n_bands:
        raise ValueError(f"covariance: expected {n_bands} or {n_bands + 2} rows, got {covariance.shape[1]}")
    chol = np.linalg.cholesky(covariance)
    offsets = np.einsum("nij,nj->ni", chol, rng.standard_normal((len(features), len(where))))
    return perturbed_features(features, offsets, where)


# deeplenstronomy's metadata columns of the lens light, the SIE and the source light (suffix -<band>)
PREFIXES = {
    "lens": "PLANE_1-OBJECT_1-LIGHT_PROFILE_1-",
    "mass": "PLANE_1-OBJECT_1-MASS_PROFILE_1-",
    "source": "PLANE_2-OBJECT_1-LIGHT_PROFILE_1-",
}
KEYS = {
    "lens": ("R_sersic", "n_sersic", "e1", "e2", "center_x", "center_y"),
    "mass": ("theta_E", "e1", "e2", "center_x", "center_y"),
    "source": ("R_sersic", "n_sersic", "e1", "e2", "center_x", "center_y"),
}
# The shapes a fit must find beside the amplitudes, and the config entry that draws each (its prior); None: the
# oracle's own features (lens size, theta_E), which get no prior. Lens and SIE centres are the grid's (known).
SHAPES = (
    ("lens", "R_sersic", None),
    ("lens", "n_sersic", ("simulation", "lens", "light", "n_sersic")),
    ("lens", "e1", ("simulation", "lens", "light", "e1")),
    ("lens", "e2", ("simulation", "lens", "light", "e2")),
    ("source", "R_sersic", ("simulation", "source", "light", "R_sersic")),
    ("source", "n_sersic", ("simulation", "source", "light", "n_sersic")),
    ("source", "e1", ("simulation", "source", "light", "e1")),
    ("source", "e2", ("simulation", "source", "light", "e2")),
    ("source", "center_x", ("simulation", "source", "light", "center_x")),
    ("source", "center_y", ("simulation", "source", "light", "center_y")),
    ("mass", "theta_E", None),
    ("mass", "e1", ("priors", "e1")),
    ("mass", "e2", ("priors", "e2")),
)
STEP = 1e-4  # central-difference step: relative for sizes and theta_E, absolute for the rest
REPLICA_RTOL = 1e-9


def seeing_priors(meta: pd.DataFrame, bands: list[str]) -> list[tuple[str, str, float]]:
    """("psf", band, precision) per band: the seeing's precision as the images' spread of it (1 / variance), what
    an estimator trained on the study's images knows of a band's seeing before it looks at one."""
    out = []
    for band in bands:
        spread = float(meta[f"seeing-{band}"].to_numpy(float).var())
        if not spread > 0:
            raise ValueError(
                f"seeing-{band}: the images' seeing does not vary (variance {spread}): nothing to free"
            )
        out.append(("psf", band, 1.0 / spread))
    return out


def boosted_predictions(
    features: np.ndarray,
    covariance: np.ndarray | None,
    target: np.ndarray,
    train: slice,
    test: slice,
    draws: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Predictions of `target` on the test images by gradient boosting trained on `draws` noisy copies of each
    training image's features (errors from its covariance; None: the true features, one copy), tested on one
    noisy draw: a better reader of noisy features than the oracle's k-NN (the k-NN's smoothing costs R^2)."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    def noisy(rows: slice, copies: int) -> np.ndarray:
        if covariance is None:
            return features[rows]
        return np.concatenate(
            [with_correlated_errors(features[rows], covariance[rows], rng) for _ in range(copies)]
        )

    copies = 1 if covariance is None else draws
    x_train, x_test = noisy(train, copies), noisy(test, 1)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std[std == 0] = 1.0  # a constant feature (e.g. one band: no colour) carries nothing
    model = HistGradientBoostingRegressor(max_iter=500, learning_rate=0.05, random_state=0)
    model.fit((x_train - mean) / std, np.tile(target[train], copies))
    return model.predict((x_test - mean) / std)


def free_shapes(config: dict) -> list[tuple[str, str, float]]:
    """(part, name, prior precision) of every shape the config draws (a fixed value is known: left out); the
    precision of a uniform range is 12 / width^2, 0 for the oracle's features."""
    out = []
    for part, name, path in SHAPES:
        if path is None:
            out.append((part, name, 0.0))
            continue
        value = config
        for key in path:
            value = value.get(key, {}) if isinstance(value, dict) else {}
        if isinstance(value, dict) and {"min", "max"} <= set(value):
            out.append((part, name, 12.0 / (float(value["max"]) - float(value["min"])) ** 2))
    return out


class Renderer:
    """One image's lens light and lensed source in one band, rendered by lenstronomy from its metadata as
    deeplenstronomy renders them (its ImageModel: Gaussian PSF of the band's seeing, default numerics), amplitude
    1, with any one shape changed."""

    def __init__(self, meta: pd.DataFrame, row: int, band: str, num_pix: int) -> None:
        from lenstronomy.Data.imaging_data import ImageData
        from lenstronomy.Data.psf import PSF
        from lenstronomy.ImSim.image_model import ImageModel
        from lenstronomy.LensModel.lens_model import LensModel
        from lenstronomy.LightModel.light_model import LightModel
        from lenstronomy.Util.simulation_util import data_configure_simple

        def value(column: str) -> float:
            return float(meta[f"{column}-{band}"].iloc[row])

        scale = value("pixel_scale")
        self.seeing = value("seeing")
        self.kwargs = {part: {k: value(PREFIXES[part] + k) for k in keys} for part, keys in KEYS.items()}

        def model(fwhm: float) -> ImageModel:
            return ImageModel(
                ImageData(**data_configure_simple(num_pix, scale, value("exposure_time"))),
                PSF(psf_type="GAUSSIAN", fwhm=fwhm, pixel_size=scale),
                LensModel(["SIE"]),
                LightModel(["SERSIC_ELLIPSE"]),
                LightModel(["SERSIC_ELLIPSE"]),
                kwargs_numerics={},
            )

        self.model_with_seeing = model
        self.model = model(self.seeing)

    def image(
        self, part: str, change: tuple[str, str, float] | None = None, model: object | None = None
    ) -> np.ndarray:
        """The lens light (part 'lens') or the lensed source ('source'; a 'mass' change moves it too), through
        `model` (another seeing's) if given."""
        kwargs = {p: dict(k) for p, k in self.kwargs.items()}
        if change is not None:
            kwargs[change[0]][change[1]] = change[2]
        model = self.model if model is None else model
        if part == "lens":
            return model.lens_surface_brightness([{"amp": 1.0, **kwargs["lens"]}])
        return model.source_surface_brightness([{"amp": 1.0, **kwargs["source"]}], [kwargs["mass"]])

    def derivative(self, part: str, name: str) -> np.ndarray:
        """d(image of amplitude 1) / d(shape), by central differences."""
        value = self.kwargs[part][name]
        h = STEP * abs(value) if name in ("R_sersic", "theta_E") else STEP
        image = "lens" if part == "lens" else "source"
        up, down = self.image(image, (part, name, value + h)), self.image(image, (part, name, value - h))
        return (up - down) / (2 * h)

    def seeing_derivatives(self) -> tuple[np.ndarray, np.ndarray]:
        """d(lens image) and d(lensed source image), each of amplitude 1, by the band's PSF FWHM [arcsec]."""
        h = STEP * self.seeing
        up, down = self.model_with_seeing(self.seeing + h), self.model_with_seeing(self.seeing - h)
        return tuple(  # type: ignore[return-value]
            (self.image(part, model=up) - self.image(part, model=down)) / (2 * h)
            for part in ("lens", "source")
        )


def amplitude(template: np.ndarray, plane: np.ndarray, what: str) -> float:
    """The factor that makes lenstronomy's amplitude-1 `template` deeplenstronomy's `plane`; refused unless the
    two agree to REPLICA_RTOL (the renderer must be deeplenstronomy's, or its derivatives mean nothing)."""
    factor = float((template * plane).sum() / (template**2).sum())
    if np.abs(factor * template - plane).max() > REPLICA_RTOL * np.abs(plane).max():
        raise RuntimeError(f"{what}: lenstronomy's rendering differs from deeplenstronomy's plane")
    return factor


def shape_templates(
    meta: pd.DataFrame,
    row: int,
    lens: np.ndarray,
    source: np.ndarray,
    bands: list[str],
    shapes: list[tuple[str, str, float]],
) -> np.ndarray:
    """One image's derivatives (len(shapes), bands, H, W) by each free shape, at its amplitudes (`lens` and
    `source`: its planes, in the order of `bands`); a band's seeing ("psf", band) moves that band only."""
    out = np.zeros((len(shapes), *lens.shape))
    for k, band in enumerate(bands):
        renderer = Renderer(meta, row, band, lens.shape[-1])
        factors = {
            "lens": amplitude(renderer.image("lens"), lens[k], f"image {row} band {band} lens"),
            "source": amplitude(renderer.image("source"), source[k], f"image {row} band {band} source"),
        }
        for j, (part, name, _) in enumerate(shapes):
            if part == "psf":
                if name == band:
                    d_lens, d_source = renderer.seeing_derivatives()
                    out[j, k] = factors["lens"] * d_lens + factors["source"] * d_source
                continue
            out[j, k] = factors["lens" if part == "lens" else "source"] * renderer.derivative(part, name)
    return out


def full_covariances(
    meta: pd.DataFrame,
    lens: np.ndarray,
    source: np.ndarray,
    variance: np.ndarray,
    bands: list[str],
    modes: tuple[str, ...],
    shapes: list[tuple[str, str, float]],
    seeing: bool = False,
) -> dict[str, np.ndarray]:
    """Per amplitude mode: the Cramer-Rao covariance (n, bands + 2, bands + 2) of the lens's magnitudes, log10 size
    and theta_E with every shape free too (each nuisance shape with its prior's precision); with `seeing`, also
    with each band's seeing free (key "<mode>, seeing free"). The derivatives are rendered once per image for
    all of them."""
    n, n_bands = len(lens), len(bands)
    size = [j for j, s in enumerate(shapes) if s[:2] == ("lens", "R_sersic")][0]
    einstein = [j for j, s in enumerate(shapes) if s[:2] == ("mass", "theta_E")][0]
    r_sersic = meta[f"{PREFIXES['lens']}R_sersic-{bands[0]}"].to_numpy(float)
    every = list(shapes) + (seeing_priors(meta, bands) if seeing else [])
    subsets = {"": list(range(len(shapes)))}
    if seeing:
        subsets[", seeing free"] = list(range(len(every)))
    out = {mode + tail: np.empty((n, n_bands + 2, n_bands + 2)) for mode in modes for tail in subsets}
    for i in range(n):
        shaped = shape_templates(meta, i, lens[i], source[i], bands, every)
        for mode in modes:
            amps = templates(lens[i : i + 1], source[i : i + 1], mode)[0]
            for tail, keep in subsets.items():
                t = np.concatenate([amps, shaped[keep]])
                fisher = np.einsum("ibhw,jbhw->ij", t / variance[i], t)
                fisher[len(amps) :, len(amps) :] += np.diag([every[j][2] for j in keep])
                jac = np.zeros((n_bands + 2, len(t)))
                jac[:n_bands, :n_bands] = MAG_PER_LN * np.eye(n_bands)
                jac[n_bands, len(amps) + size] = 1.0 / (r_sersic[i] * np.log(10.0))
                jac[n_bands + 1, len(amps) + einstein] = 1.0
                out[mode + tail][i] = jac @ np.linalg.inv(fisher) @ jac.T
    return out


def simulate(
    config: dict, n_images: int, shard_size: int, shapes: bool = False, seeing: bool = False
) -> tuple[pd.DataFrame, np.ndarray, dict, list]:
    """Images of the config's design with planes, shard by shard with the config's shard seeds: the metadata, the
    labels, each mode's covariance (n, k, k: the magnitudes; with `shapes`, also 'shapes free, <mode>' over the
    magnitudes, log size and theta_E, and with `seeing` 'shapes free, <mode>, seeing free'), and each shard's
    residual chi^2 per pixel per band (image minus noise-free light, over the variance map: ~1 if the noise model
    is right)."""
    names = list(config["parameters"])
    metas, thetas, chi2 = [], [], []
    free = free_shapes(config) if shapes else []
    shape_modes = ("source known", "source free") if shapes else ()
    covs: dict[str, list[np.ndarray]] = {m: [] for m in MODES}
    tails = ("", ", seeing free") if seeing else ("",)
    covs.update({f"shapes free, {m}{t}": [] for m in shape_modes for t in tails})
    n_shards = -(-n_images // shard_size)
    for shard in tqdm(range(n_shards), desc="shards"):
        params = simulate_params(config, shard)
        settings = SimulationSettings.from_params(params)
        size = min(shard_size, n_images - shard * shard_size)
        # deeplenstronomy loses the first image of a call: ask for one more; keep what came, up to `size`
        batch = deeplens.simulate(settings.spec, size + 1, settings.seed, planes=True).select(slice(0, size))
        assert batch.planes is not None
        bands = list(settings.spec.bands)
        lens, source = batch.planes[:, 0], batch.planes[:, 1]
        variance = variance_maps(lens, source, batch.metadata, bands)
        chi2.append(((batch.images - lens - source) ** 2 / variance).mean(axis=(0, 2, 3)))
        for mode in MODES:
            covs[mode].append(magnitude_covariance(lens, source, variance, mode))
        if shape_modes:
            full = full_covariances(batch.metadata, lens, source, variance, bands, shape_modes, free, seeing)
            for key, cov in full.items():
                covs[f"shapes free, {key}"].append(cov)
        metas.append(batch.metadata)
        thetas.append(deeplens.labels(batch.metadata, names, bands[0]))
    meta = pd.concat(metas, ignore_index=True)
    return meta, np.concatenate(thetas), {m: np.concatenate(c) for m, c in covs.items()}, chi2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "config" / "physical.yaml"))
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0, help="seed of the magnitude errors' draws")
    parser.add_argument(
        "--shapes", action="store_true", help="also free every shape (lenstronomy derivatives)"
    )
    parser.add_argument(
        "--seeing", action="store_true", help="with --shapes: also free each band's seeing (the PSF's FWHM)"
    )
    parser.add_argument(
        "--draws", type=int, default=10, help="noisy copies of each training image for the z_l regression"
    )
    parser.add_argument("--repeats", type=int, default=3, help="independent draws of the z_l regression")
    parser.add_argument(
        "--magnitude-bins",
        type=float,
        nargs="+",
        help="edges of the lens r magnitude bins of the z_l error table (default: the test images' fifths)",
    )
    parser.add_argument(
        "--save",
        type=Path,
        help="also write the features, labels, lens r magnitudes and each mode's covariances to this .npz",
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    config = load_config(args.config)
    names = list(config["parameters"])
    if args.seeing and not args.shapes:
        parser.error("--seeing needs --shapes")
    meta, theta, covs, chi2 = simulate(config, args.images, args.shard_size, args.shapes, args.seeing)
    features = lens_light_features(meta, theta, names)
    if features is None:
        raise SystemExit(f"{args.config}: no physical lens light (simulation.lens.light.model) or no theta_E")
    bands = list(config["simulation"]["bands"])
    if args.save is not None:
        np.savez_compressed(
            args.save,
            features=features,
            theta=theta,
            names=np.array(names),
            magnitudes=np.column_stack([meta[f"lens_light-magnitude-{b}"].to_numpy(float) for b in bands]),
            modes=np.array(list(covs)),
            **{f"cov{k}": cov for k, cov in enumerate(covs.values())},
        )
    n_test = max(1, round(args.test_fraction * len(theta)))
    train, test = slice(0, len(theta) - n_test), slice(len(theta) - n_test, None)
    chi = np.mean(chi2, axis=0)
    print(
        f"{len(theta)} images of {args.config}; residual chi^2 per pixel: "
        + ", ".join(f"{b} {c:.3f}" for b, c in zip(bands, chi, strict=True))
    )
    rng = np.random.default_rng(args.seed)
    rows = {"oracle (true light + theta_E)": features}
    errors = {}
    for mode, cov in covs.items():
        rows[f"oracle, Cramer-Rao errors: {mode}"] = with_correlated_errors(features, cov, rng)
        errors[mode] = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
    print(f"\nR^2 on {n_test} test images (k-NN on the features, trained on {len(theta) - n_test})")
    print("| features | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for label, x in rows.items():
        r2 = lens_light_limits(x[train], x[test], theta[train], theta[test], names)
        cells = ["--" if r2.get(n) is None else f"{r2[n]:.3f}" for n in names]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("\nLens magnitude errors [mag]: median (fraction of images above 0.1 mag) per band")
    print("| fitted beside the lens | " + " | ".join(bands) + " |")
    print("|---|" + "---:|" * len(bands))
    for mode, err in errors.items():
        cells = [f"{np.median(err[:, k]):.3f} ({np.mean(err[:, k] > 0.1):.2f})" for k in range(len(bands))]
        print(f"| {mode} | " + " | ".join(cells) + " |")
    print("\nLens colour errors [mag]: median per neighbouring pair of bands (what z_l is read from)")
    pairs = [f"{a}-{b}" for a, b in zip(bands[:-1], bands[1:], strict=True)]
    print("| fitted beside the lens | " + " | ".join(pairs) + " |")
    print("|---|" + "---:|" * len(pairs))
    for mode, cov in covs.items():
        colour = [cov[:, k, k] + cov[:, k + 1, k + 1] - 2 * cov[:, k, k + 1] for k in range(len(pairs))]
        print(f"| {mode} | " + " | ".join(f"{np.median(np.sqrt(v)):.3f}" for v in colour) + " |")
    z_l = names.index("z_l")
    band = "r" if "r" in bands else bands[0]
    r_mag = meta[f"lens_light-magnitude-{band}"].to_numpy(float)[test]
    edges, bins = magnitude_bins(r_mag, args.magnitude_bins)
    print(
        f"\nz_l by gradient boosting ({args.draws} noisy copies of each training image; mean +- sd over "
        f"{args.repeats} draws), and its rms error by the lens's {band} magnitude"
    )
    heads = [f"{lo:.2f}-{hi:.2f} ({m.sum()})" for lo, hi, m in zip(edges[:-1], edges[1:], bins, strict=True)]
    print("| features | z_l R^2 | " + " | ".join(heads) + " |")
    print("|---|---:|" + "---:|" * len(bins))
    truth = theta[test, z_l]
    for mode, cov in {"true light": None, **covs}.items():
        predictions = [
            boosted_predictions(features, cov, theta[:, z_l], train, test, args.draws, rng)
            for _ in range(1 if cov is None else args.repeats)
        ]
        r2 = [1.0 - np.mean((p - truth) ** 2) / truth.var() for p in predictions]
        rms = np.mean([[np.sqrt(np.mean((p - truth)[m] ** 2)) for m in bins] for p in predictions], axis=0)
        print(
            f"| {mode} | {np.mean(r2):.3f} +- {np.std(r2):.3f} | "
            + " | ".join(f"{v:.4f}" for v in rms)
            + " |"
        )
    shape_modes = [m.removeprefix("shapes free, ") for m in covs if m.startswith("shapes free")]
    if shape_modes:
        print("\nWith every shape free: median error of the lens's log10 size [dex] and of theta_E [arcsec]")
        for mode in shape_modes:
            err = errors[f"shapes free, {mode}"]
            print(f"- {mode}: log10 size {np.median(err[:, -2]):.4f}, theta_E {np.median(err[:, -1]):.4f}")


if __name__ == "__main__":
    main()
