"""Lens light that follows the lens's physics (`simulation.lens.light.model: physical`).

Per image, from the lens's velocity dispersion sigma_v [km/s] and redshift z_l (V = log10 sigma_v):

- rest-frame absolute magnitude in `absolute_band` (AB), a Faber-Jackson relation with Gaussian scatter:
  M = sum_k magnitude.coefficients[k] V^k + N(0, magnitude.scatter) - evolution z_l.
  Default (config/physical.yaml): M_r = -8.39 - 5.80 V, scatter 0.55 mag: the mean r-band magnitude at fixed
  sigma (<M|V> = M* + rho_VM sigma_M / sigma_V (V - V*), scatter sigma_M sqrt(1 - rho_VM^2)) of the
  maximum-likelihood Gaussian that Bernardi et al. 2003 (AJ 125, 1849; SDSS early types, r*) fitted to
  (M, log R, V): M* = -21.15, sigma_M = 0.84, V* = 2.20, sigma_V = 0.11, rho_VM = -0.76 (so <V|M> falls by
  0.1 dex per magnitude: their sigma ~ L^0.25). The forward relation <M|V> (shallower than the inverse
  L ~ sigma^4) is the right one to draw M given sigma, with the scatter at fixed sigma. `evolution` (mag per
  unit redshift, brighter with z) is passive luminosity evolution; 0 keeps the template and relation fixed.
- apparent magnitude per band b (AB): m_b = M + DM(z_l) + K_b(z_l) + N(0, colour_scatter), with DM the
  distance modulus of the study's cosmology and K_b the cross-band K-correction (Hogg et al. 2002,
  astro-ph/0210394, eq. 13) of a passive early-type template from `absolute_band` at rest to filter b at z_l:
  K_b(z) = -2.5 log10[(int T(l/(1+z)) l R_b(l) dl / (1+z)) / int R_b(l)/l dl
                      / (int T(l) l R_abs(l) dl / int R_abs(l)/l dl)],
  T the template's f_lambda, R the photon-counting responses. Template and responses are kcorrect's package
  data (Blanton & Roweis 2007, AJ 133, 734; kcorrect 5.1.9 ships them, nothing is downloaded): the LRG
  template `kcorrect-lrg1-v4.fits` (no star formation in its last 300 Myr), DECam g, r, i (with atmosphere,
  W. Wester 2014) and SDSS r (`sdss_r0`). `colour_scatter` is each band's independent scatter around the
  template, so a colour scatters by sqrt(2) colour_scatter (the red sequence's intrinsic colour scatter is a few
  hundredths of a magnitude: Bower, Lucey & Ellis 1992, MNRAS 254, 601).
- effective radius [kpc]: log10 R_e = sum_k size.coefficients[k] V^k + N(0, size.scatter); default the
  Hyde & Bernardi 2009 (MNRAS 394, 1978) relation as LensPop uses it (Collett 2015, ApJ 811, 20):
  2.46 - 2.79 V + 0.84 V^2, scatter 0.11 dex. Its angle R_sersic [arcsec] = R_e / D_A(z_l).

So at fixed sigma_v a lens at higher z_l is fainter (DM), redder (the 4000 A break moves from g into r) and
smaller (D_A). Every input and output of the model is recorded per image (`COLUMNS`, prefixed `lens_light-` in
the shard's metadata).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from lenspipe.errors import ConfigError
from lenspipe.priors import Cosmology

MODEL_KEY = "model"
PHYSICAL = "physical"
MODELS = ("independent", PHYSICAL)
# Template name in the config -> kcorrect's template file.
TEMPLATES = {"kcorrect_lrg1": "kcorrect-lrg1-v4.fits"}
RAD_TO_ARCSEC = 180.0 / np.pi * 3600.0
PREFIX = "lens_light-"


@dataclass(frozen=True)
class Relation:
    """A polynomial in V = log10(sigma_v / km/s) with Gaussian scatter."""

    coefficients: tuple[float, ...]
    scatter: float

    @classmethod
    def from_config(cls, value: Mapping[str, Any], key: str) -> Relation:
        coefficients = tuple(float(c) for c in value["coefficients"])
        if not coefficients or not all(np.isfinite(coefficients)):
            raise ConfigError(f"{key}.coefficients", "a list of finite numbers", value["coefficients"])
        scatter = float(value["scatter"])
        if not (np.isfinite(scatter) and scatter >= 0):
            raise ConfigError(f"{key}.scatter", "a finite scatter >= 0", value["scatter"])
        return cls(coefficients, scatter)

    def mean(self, v: np.ndarray) -> np.ndarray:
        """The relation's mean at V (array)."""
        return np.polynomial.polynomial.polyval(np.asarray(v, dtype=float), self.coefficients)


@dataclass(frozen=True)
class PhysicalLight:
    """The settings of the physical lens-light model (simulation.lens.light.physical)."""

    template: str
    filters: dict[str, str]  # band -> kcorrect response name
    absolute_band: str  # kcorrect response of the absolute magnitude (rest frame)
    magnitude: Relation
    size: Relation
    colour_scatter: float
    evolution: float

    @classmethod
    def from_config(cls, physical: Mapping[str, Any], bands: Sequence[str], key: str) -> PhysicalLight:
        """Read and check `physical` (the schema checked types and required keys); errors name the key."""
        template = str(physical["template"])
        if template not in TEMPLATES:
            raise ConfigError(f"{key}.template", "one of " + ", ".join(TEMPLATES), template)
        filters = {str(b): str(f) for b, f in physical["filters"].items()}
        missing = [b for b in bands if b not in filters]
        if missing:
            raise ConfigError(
                f"{key}.filters",
                f"a filter for every band ({', '.join(bands)})",
                f"none for {', '.join(missing)}",
            )
        known = response_names()
        for band in bands:
            if filters[band] not in known:
                raise ConfigError(
                    f"{key}.filters.{band}", "a filter response kcorrect ships (e.g. decam_r)", filters[band]
                )
        absolute_band = str(physical["absolute_band"])
        if absolute_band not in known:
            raise ConfigError(
                f"{key}.absolute_band", "a filter response kcorrect ships (e.g. sdss_r0)", absolute_band
            )
        colour_scatter = float(physical["colour_scatter"])
        if not (np.isfinite(colour_scatter) and colour_scatter >= 0):
            raise ConfigError(f"{key}.colour_scatter", "a finite scatter >= 0", physical["colour_scatter"])
        evolution = float(physical["evolution"])
        if not np.isfinite(evolution):
            raise ConfigError(f"{key}.evolution", "a finite number", physical["evolution"])
        return cls(
            template=template,
            filters={b: filters[b] for b in bands},
            absolute_band=absolute_band,
            magnitude=Relation.from_config(physical["magnitude"], f"{key}.magnitude"),
            size=Relation.from_config(physical["size"], f"{key}.size"),
            colour_scatter=colour_scatter,
            evolution=evolution,
        )

    @property
    def bands(self) -> tuple[str, ...]:
        return tuple(self.filters)


def _data_dir() -> Any:
    return resources.files("kcorrect") / "data"


@functools.cache
def response_names() -> frozenset[str]:
    """The filter responses kcorrect ships (file names without .dat)."""
    return frozenset(
        p.name[: -len(".dat")] for p in (_data_dir() / "responses").iterdir() if p.name.endswith(".dat")
    )


@functools.cache
def response(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A kcorrect filter response: wavelength [Angstrom] and photon-counting response, sorted by wavelength."""
    from astropy.io import ascii

    table = ascii.read(str(_data_dir() / "responses" / f"{name}.dat"), format="fixed_width")
    wave = np.asarray(table["lambda"], dtype=float)
    order = np.argsort(wave)
    return wave[order], np.asarray(table["pass"], dtype=float)[order]


@functools.cache
def template(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A kcorrect template: rest-frame wavelength [Angstrom] and f_lambda (arbitrary units)."""
    from astropy.io import fits

    with fits.open(str(_data_dir() / "templates" / TEMPLATES[name])) as hdus:
        row = hdus["FLUX"].data[0]
        return np.asarray(row["wave"], dtype=float), np.asarray(row["flux"], dtype=float).reshape(-1)


def _maggies(wave: np.ndarray, flux: np.ndarray, band: str) -> float:
    """AB maggies (up to the template's units) of f_lambda (wave, flux) through a photon-counting response."""
    lam, resp = response(band)
    f = np.interp(lam, wave, flux, left=0.0, right=0.0)
    return float(np.trapezoid(f * lam * resp, lam) / np.trapezoid(resp / lam, lam))


def kcorrection(model: PhysicalLight, band: str, z: np.ndarray) -> np.ndarray:
    """K_b(z): apparent magnitude in `band` at redshift z minus the absolute magnitude minus the distance modulus."""
    wave, flux = template(model.template)
    rest = _maggies(wave, flux, model.absolute_band)
    z = np.atleast_1d(np.asarray(z, dtype=float))
    out = np.array([_maggies(wave * (1.0 + zi), flux / (1.0 + zi), model.filters[band]) for zi in z])
    return -2.5 * np.log10(out / rest)


@dataclass(frozen=True)
class Draws:
    """One image set's random draws: sigma_v, z_l and the standard-normal scatters of the model."""

    sigma_v: np.ndarray
    z_l: np.ndarray
    magnitude: np.ndarray  # standard normal, times the magnitude scatter
    size: np.ndarray  # standard normal, times the size scatter
    colours: np.ndarray  # (n, bands) standard normal, times the colour scatter


def draw(n: int, sigma_v: tuple[float, float], z_l: tuple[float, float], bands: int, seed: int) -> Draws:
    """sigma_v and z_l uniform on their prior ranges, and the model's scatters, from one seeded generator."""
    rng = np.random.default_rng(seed)
    return Draws(
        sigma_v=rng.uniform(*sigma_v, size=n),
        z_l=rng.uniform(*z_l, size=n),
        magnitude=rng.standard_normal(n),
        size=rng.standard_normal(n),
        colours=rng.standard_normal((n, bands)),
    )


def light(model: PhysicalLight, draws: Draws, cosmology: Cosmology) -> pd.DataFrame:
    """Every image's model inputs and outputs (the formula of the module docstring), one row per image.

    Columns: sigma_v, z_l, V, absolute_magnitude (with scatter and evolution), magnitude_scatter,
    log10_R_e_kpc, size_scatter, R_e_kpc, distance_modulus, D_A_Mpc, R_sersic (arcsec), and per band
    kcorrection-<b>, colour_scatter-<b>, magnitude-<b>.
    """
    astropy_cosmology = cosmology.astropy()
    sigma_v, z_l = np.asarray(draws.sigma_v, float), np.asarray(draws.z_l, float)
    v = np.log10(sigma_v)
    mag_scatter = model.magnitude.scatter * np.asarray(draws.magnitude, float)
    absolute = model.magnitude.mean(v) + mag_scatter - model.evolution * z_l
    size_scatter = model.size.scatter * np.asarray(draws.size, float)
    log_re = model.size.mean(v) + size_scatter
    d_a = astropy_cosmology.angular_diameter_distance(z_l).to_value("Mpc")
    dm = astropy_cosmology.distmod(z_l).value
    columns: dict[str, np.ndarray] = {
        "sigma_v": sigma_v,
        "z_l": z_l,
        "V": v,
        "absolute_magnitude": absolute,
        "magnitude_scatter": mag_scatter,
        "log10_R_e_kpc": log_re,
        "size_scatter": size_scatter,
        "R_e_kpc": 10.0**log_re,
        "distance_modulus": dm,
        "D_A_Mpc": d_a,
        "R_sersic": 10.0**log_re / (d_a * 1e3) * RAD_TO_ARCSEC,
    }
    for i, band in enumerate(model.bands):
        k = kcorrection(model, band, z_l)
        colour = model.colour_scatter * np.asarray(draws.colours, float)[:, i]
        columns[f"kcorrection-{band}"] = k
        columns[f"colour_scatter-{band}"] = colour
        columns[f"magnitude-{band}"] = absolute + dm + k + colour
    return pd.DataFrame(columns)


def model_from_config(
    light_config: Mapping[str, Any], bands: Sequence[str], key: str
) -> PhysicalLight | None:
    """The physical model of simulation.lens.light, or None for the independent (default) light."""
    model = str(light_config.get(MODEL_KEY, "independent"))
    if model not in MODELS:
        raise ConfigError(f"{key}.{MODEL_KEY}", "one of " + ", ".join(MODELS), model)
    if model != PHYSICAL:
        if "physical" in light_config:
            raise ConfigError(f"{key}.physical", f"settings only with {MODEL_KEY}: {PHYSICAL}", "given")
        return None
    if "physical" not in light_config:
        raise ConfigError(f"{key}.physical", "the physical model's settings (the key is missing)")
    for name in ("magnitude", "R_sersic"):
        if name in light_config:
            raise ConfigError(
                f"{key}.{name}",
                f"no value with {MODEL_KEY}: {PHYSICAL} (it follows sigma_v and z_l)",
                "given",
            )
    return PhysicalLight.from_config(light_config["physical"], bands, f"{key}.physical")
