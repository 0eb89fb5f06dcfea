"""The one module that touches deeplenstronomy: the config as a deeplenstronomy YAML, make_dataset run in a
private directory, and the simulator's silent bugs handled (each tested in tests/test_deeplens.py).

deeplenstronomy 0.0.2.3 bugs handled here:
- its PLANE_n-REDSHIFT-<band> columns hold the previous image's redshift: rewritten from the true
  PLANE_n-OBJECT_1-REDSHIFT-<band> columns, and labels come from those;
- it drops the first image (its drop mask reads that lagged column): callers ask for more and trim
  (lenspipe.simulate);
- it passes the sky brightness (mag/arcsec^2) to lenstronomy as counts/s/arcsec^2, so images are nearly
  noise-free: with sky_noise 'survey' the missing Gaussian background variance is added (`add_sky_noise`);
- its DELVE zero points are per exposure (~31.3-31.6) where lenstronomy reads the magnitude of 1 e-/s: with
  sky_noise 'survey' per-second zero points are given to it instead, before it simulates, so lens, source, sky
  and Poisson noise are all in e-/s (`survey_sections`); its r- and z-band sky tables hold impossible bins
  (fainter than any night sky), which are dropped (`lenspipe_sky_brightness`);
- its Poisson noise uses one exposure's time even for coadds: a coadd of N exposures is given to it as one
  exposure of N times the time with sqrt(N) times the read noise, which is the same noise (`survey_sections`);
- one magnitude is drawn for all bands, so the bands are copies: the `lenspipe_uniform_colours`
  distribution adds a per-band colour to one uniform draw;
- OBJID restarts at 0 in every call: never used to join anything across calls;
- its USERDIST tables cannot hand over one row per image (pandas 3 rejects its reader; rows are drawn with
  replacement; in-order 'iterate' is refused by its checker): the physical lens light's per-image values
  (lenspipe.lenslight) go through lenspipe's own `lenspipe_per_image_*` distributions, read in image order, and
  every image's metadata is checked against them (`PerImageValues`, `with_physical_light`).
It also builds an astropy cosmology per image (about 70% of its time with astropy 8): one is reused during a
call (`shared_cosmology`), which leaves the images bit-for-bit the same.
"""

from __future__ import annotations

import contextlib
import functools
import io
import random
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from lenspipe import __version__, depth, lenslight
from lenspipe.errors import ConfigError, DataError
from lenspipe.priors import Cosmology
from lenspipe.seeds import derive_seed

SKY_NOISE_MODES = ("survey", "legacy")
COLOUR_DISTRIBUTION = "lenspipe_uniform_colours"
ZERO_POINT_DISTRIBUTION = "lenspipe_per_band"
SKY_DISTRIBUTION = "lenspipe_{survey}_sky_brightness"
EXPOSURE_DISTRIBUTION = "lenspipe_{survey}_exposure_time"
# Physical lens light: lenspipe draws these per image and deeplenstronomy reads them, image by image, from here.
PER_IMAGE_DISTRIBUTION = "lenspipe_per_image_{column}"
PER_IMAGE_COLUMNS = ("sigma_v", "z_l", "magnitude", "R_sersic")
SURVEYS = ("delve",)
# Per-second DECam zero points (magnitude of 1 e-/s), which is what lenstronomy's magnitude_zero_point means:
# DES's calibrated values in g, r, i; z (no DES value at hand) is the preset's 31.262 - 2.5 log10(85.55 s, its
# median z exposure). deeplenstronomy's DELVE preset stores per-exposure values (31.550 / 31.284 / 31.608 /
# 31.262); its value minus 2.5 log10 of the band's median exposure (88.7 / 56.7 / 88.7 s) gives 26.68 / 26.90 /
# 26.74 in g, r, i, within 0.12 mag of DES's.
PER_SECOND_ZERO_POINTS: dict[str, dict[str, float]] = {
    "delve": {"g": 26.58, "r": 26.78, "i": 26.75, "z": 26.43}
}
# No ground-based night sky is fainter than this (dark sky at zenith: g ~22.5, r ~21.5, i ~20.5, z ~19.5
# mag/arcsec^2); the DELVE preset's sky tables have a few bins beyond it (r: 27.1, 27.5; z: 23.2-24.4).
SKY_FAINTEST = 23.0
# deeplenstronomy marks a system whose source plane is not behind the lens with a redshift >= 10.
SENTINEL_REDSHIFT = 10.0
# Metadata columns (suffix -<band>) of each inferable parameter: plane 1 holds the lens, plane 2 the source.
LABEL_COLUMNS = {
    "sigma_v": "PLANE_1-OBJECT_1-MASS_PROFILE_1-sigma_v",
    "theta_E": "PLANE_1-OBJECT_1-MASS_PROFILE_1-theta_E",
    "e1": "PLANE_1-OBJECT_1-MASS_PROFILE_1-e1",
    "e2": "PLANE_1-OBJECT_1-MASS_PROFILE_1-e2",
    "z_l": "PLANE_1-OBJECT_1-REDSHIFT",
    "z_s": "PLANE_2-OBJECT_1-REDSHIFT",
}
_CONFIG_FILE = "lenspipe.yaml"
_OUTDIR = "deeplenstronomy_out"


@dataclass(frozen=True)
class Uniform:
    """A uniform range [min, max] from the config, or a fixed value (a plain number: min == max)."""

    min: float
    max: float

    @classmethod
    def from_config(cls, value: Any, key: str) -> Uniform:
        """Read {min, max} or a plain number (fixed); anything else is a ConfigError naming `key`."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            return cls(float(value), float(value))
        try:
            return cls(float(value["min"]), float(value["max"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(key, "a number or a range {min: number, max: number}", value) from exc

    @property
    def fixed(self) -> bool:
        """Whether this is one value rather than a range."""
        return self.min == self.max

    def distribution(self) -> float | dict[str, Any]:
        """deeplenstronomy's entry: the value itself when fixed, else a DISTRIBUTION drawing from the range."""
        if self.fixed:
            return self.min
        return {"DISTRIBUTION": {"NAME": "uniform", "PARAMETERS": {"minimum": self.min, "maximum": self.max}}}


@dataclass(frozen=True)
class LightSpec:
    """A light profile: its lenstronomy name, uniform parameter ranges, and per-band magnitude offsets."""

    profile: str
    params: dict[str, Uniform]
    colours: dict[str, float]

    @classmethod
    def from_config(
        cls, obj: Mapping[str, Any], key: str, bands: tuple[str, ...], physical: bool = False
    ) -> LightSpec:
        """Read simulation.<obj> (light + colours); every band needs a colour.

        With `physical` (the lens's physical light) magnitude, size and colours come from lenspipe.lenslight.
        """
        light = _get(obj, "light", key)
        params = {
            name: Uniform.from_config(rng, f"{key}.light.{name}")
            for name, rng in light.items()
            if name not in ("profile", lenslight.MODEL_KEY, "physical")
        }
        if physical:
            return cls(str(_get(light, "profile", f"{key}.light")), params, {})
        if "magnitude" not in params:
            raise ConfigError(f"{key}.light.magnitude", "a magnitude range")
        colours = _get(obj, "colours", key)
        missing = [b for b in bands if b not in colours]
        if missing:
            raise ConfigError(
                f"{key}.colours",
                f"a colour for every band ({', '.join(bands)})",
                f"none for {', '.join(missing)}",
            )
        return cls(str(_get(light, "profile", f"{key}.light")), params, {b: float(colours[b]) for b in bands})

    def profile_entry(self) -> dict[str, Any]:
        """deeplenstronomy's LIGHT_PROFILE entry; the magnitude is drawn once (or fixed) and offset by band.

        Without a magnitude (physical lens light), magnitude and R_sersic are lenspipe's per-image values.
        """
        if "magnitude" not in self.params:
            return {
                "NAME": self.profile,
                "PARAMETERS": {
                    "center_x": 0.0,
                    "center_y": 0.0,
                    **{name: rng.distribution() for name, rng in self.params.items()},
                    "magnitude": per_image("magnitude"),
                    "R_sersic": per_image("R_sersic"),
                },
            }
        mag = self.params["magnitude"]
        params: dict[str, Any] = {
            "center_x": 0.0,
            "center_y": 0.0,
            **{name: rng.distribution() for name, rng in self.params.items() if name != "magnitude"},
            "magnitude": {
                "DISTRIBUTION": {
                    "NAME": COLOUR_DISTRIBUTION,
                    "PARAMETERS": {"minimum": mag.min, "maximum": mag.max, "colours": dict(self.colours)},
                }
            },
        }
        return {"NAME": self.profile, "PARAMETERS": params}


@dataclass(frozen=True)
class SimulatorSpec:
    """Everything deeplenstronomy needs from the config: survey, image, cosmology, lens and source models, priors."""

    survey: str
    bands: tuple[str, ...]
    num_pix: int
    pixel_scale: float
    sky_noise: str
    cosmology: Cosmology
    lens_mass: str
    priors: dict[str, Uniform]
    lens_light: LightSpec
    source_light: LightSpec
    zero_points: dict[str, float] | None = None  # per-second, per band (survey noise); None: the preset's
    exposures: int = 1  # coadded exposures per band (survey noise)
    lens_light_model: lenslight.PhysicalLight | None = None  # None: lens light independent of the mass

    @classmethod
    def from_config(cls, simulation: Mapping[str, Any], priors: Mapping[str, Any]) -> SimulatorSpec:
        """Build from the validated `simulation` and `priors` config sections."""
        bands = tuple(str(b) for b in _get(simulation, "bands", "simulation"))
        sky_noise = str(simulation.get("sky_noise", "survey"))
        if sky_noise not in SKY_NOISE_MODES:
            raise ConfigError("simulation.sky_noise", "one of " + ", ".join(SKY_NOISE_MODES), sky_noise)
        cosmo = _get(simulation, "cosmology", "simulation")
        lens = _get(simulation, "lens", "simulation")
        survey = str(_get(simulation, "survey", "simulation"))
        if survey not in SURVEYS:
            raise ConfigError(
                "simulation.survey",
                "a deeplenstronomy survey preset lenspipe knows (" + ", ".join(SURVEYS) + ")",
                survey,
            )
        exposures = int(simulation.get("exposures", 1))
        model = lenslight.model_from_config(
            _get(lens, "light", "simulation.lens"), bands, "simulation.lens.light"
        )
        zero_points = None
        if sky_noise == "survey":
            zero_points = per_second_zero_points(survey, bands, simulation.get("zero_points"))
        elif exposures != 1:
            raise ConfigError(
                "simulation.exposures", "1 with sky_noise: legacy (deeplenstronomy's own noise)", exposures
            )
        return cls(
            survey=survey,
            bands=bands,
            num_pix=int(_get(simulation, "num_pix", "simulation")),
            pixel_scale=float(_get(simulation, "pixel_scale", "simulation")),
            sky_noise=sky_noise,
            cosmology=Cosmology(H0=float(cosmo["H0"]), Om0=float(cosmo["Om0"])),
            lens_mass=str(_get(lens, "mass", "simulation.lens")),
            priors={
                name: Uniform.from_config(_get(priors, name, "priors"), f"priors.{name}")
                for name in ("sigma_v", "e1", "e2", "z_l", "z_s")
            },
            lens_light=LightSpec.from_config(lens, "simulation.lens", bands, physical=model is not None),
            source_light=LightSpec.from_config(
                _get(simulation, "source", "simulation"), "simulation.source", bands
            ),
            zero_points=zero_points,
            exposures=exposures,
            lens_light_model=model,
        )


def per_second_zero_points(
    survey: str, bands: tuple[str, ...], given: Mapping[str, Any] | None
) -> dict[str, float]:
    """Each band's per-second zero point: the config's `simulation.zero_points`, else the survey's table."""
    table = {**PER_SECOND_ZERO_POINTS.get(survey, {}), **{str(k): v for k, v in (given or {}).items()}}
    out = {}
    for band in bands:
        if band not in table:
            raise ConfigError("simulation.zero_points", f"a per-second zero point for band {band}")
        value = float(table[band])
        if not np.isfinite(value):
            raise ConfigError(f"simulation.zero_points.{band}", "a finite magnitude", table[band])
        out[band] = value
    return out


def check_noise_variance(spec: SimulatorSpec) -> None:
    """Refuse settings whose background variance (sky, read noise, exposure) can be non-finite or <= 0 in a band.

    The extremes of the survey's sky and exposure tables are tried; the key named is the one to change.
    """
    from lenstronomy.Util.data_util import bkg_noise

    image, survey = survey_sections(spec)
    for band in spec.bands:
        if spec.zero_points is None:
            zero_point, key = (
                float(preset_table(f"{spec.survey}_magnitude_zero_point")[band]),
                "simulation.survey",
            )
            skies = preset_table(f"{spec.survey}_sky_brightness")[band]["VALUES"]
        else:
            zero_point, key = spec.zero_points[band], f"simulation.zero_points.{band}"
            skies = sky_table(spec.survey, band)[0]
        exposures = [spec.exposures * t for t in preset_table(f"{spec.survey}_exposure_time")[band]["VALUES"]]
        read_noise = float(image["read_noise"])
        with np.errstate(over="ignore", invalid="ignore"):
            sky = 10.0 ** (-0.4 * (np.array([min(skies), max(skies)]) - zero_point))
            var = np.array(
                [
                    bkg_noise(read_noise, t, c, spec.pixel_scale) ** 2
                    for t in (min(exposures), max(exposures))
                    for c in sky
                ]
            )
        if not np.all(np.isfinite(sky)):
            raise ConfigError(
                key,
                "a zero point that gives finite sky counts (magnitude of 1 e-/s, ~26-27 for DECam)",
                zero_point,
            )
        if not (np.all(np.isfinite(var)) and np.all(var > 0)):
            raise ConfigError(
                "simulation.exposures" if spec.exposures != 1 else key,
                f"settings giving a finite, positive noise variance in band {band}",
                f"{var.tolist()}",
            )


def _get(section: Mapping[str, Any], key: str, where: str) -> Any:
    try:
        return section[key]
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{where}.{key}", "a value (the key is missing)") from exc


def survey_sections(spec: SimulatorSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    """The IMAGE and SURVEY parameters of deeplenstronomy's survey preset, with the config's image size and bands.

    This is what make_dataset(survey=...) appends, written explicitly: the preset would also force its own
    numPix (100) and bands (g,r,i,z).
    """
    sections = preset_sections(spec.survey)
    image, survey = sections["IMAGE"]["PARAMETERS"], sections["SURVEY"]["PARAMETERS"]
    image.update(numPix=spec.num_pix, pixel_scale=spec.pixel_scale)
    survey["BANDS"] = ",".join(spec.bands)
    if spec.zero_points is not None:  # survey noise: the preset's units repaired before anything is simulated
        survey["magnitude_zero_point"] = _named(ZERO_POINT_DISTRIBUTION, values=dict(spec.zero_points))
        survey["sky_brightness"] = _named(SKY_DISTRIBUTION.format(survey=spec.survey))
        # A coadd of N exposures of t seconds has the noise of one exposure of N t seconds with sqrt(N) times
        # the read noise (variance N rn^2 + N t sky, Poisson on N t); deeplenstronomy's Poisson term reads
        # exposure_time only, so it is given the coadd as one exposure.
        image["exposure_time"] = _named(
            EXPOSURE_DISTRIBUTION.format(survey=spec.survey), exposures=spec.exposures
        )
        image["read_noise"] = float(image["read_noise"]) * float(np.sqrt(spec.exposures))
        survey["num_exposures"] = 1
    return image, survey


def _named(name: str, **parameters: Any) -> dict[str, Any]:
    return {"DISTRIBUTION": {"NAME": name, "PARAMETERS": parameters or None}}


def per_image(column: str) -> dict[str, Any]:
    """deeplenstronomy's entry for a value lenspipe drew per image (`lenspipe_per_image_<column>`)."""
    return _named(PER_IMAGE_DISTRIBUTION.format(column=column))


def build_config(spec: SimulatorSpec, size: int, seed: int) -> dict[str, Any]:
    """The deeplenstronomy config of `size` lens systems drawn with `seed` (one configuration, two planes)."""
    image, survey = survey_sections(spec)
    physical = spec.lens_light_model is not None
    mass = {
        "sigma_v": per_image("sigma_v") if physical else spec.priors["sigma_v"].distribution(),
        "e1": spec.priors["e1"].distribution(),
        "e2": spec.priors["e2"].distribution(),
        "center_x": 0.0,
        "center_y": 0.0,
    }
    return {
        "DATASET": {
            "NAME": "lenspipe",
            "PARAMETERS": {"SIZE": int(size), "OUTDIR": _OUTDIR, "SEED": int(seed)},
        },
        "COSMOLOGY": {"PARAMETERS": {"H0": spec.cosmology.H0, "Om0": spec.cosmology.Om0}},
        "IMAGE": {"PARAMETERS": image},
        "SURVEY": {"PARAMETERS": survey},
        "SPECIES": {
            "GALAXY_1": {
                "NAME": "LENS",
                "LIGHT_PROFILE_1": spec.lens_light.profile_entry(),
                "MASS_PROFILE_1": {"NAME": spec.lens_mass, "PARAMETERS": mass},
            },
            # deeplenstronomy requires a mass profile on every galaxy; the source plane's is never used.
            "GALAXY_2": {
                "NAME": "SOURCE",
                "LIGHT_PROFILE_1": spec.source_light.profile_entry(),
                "MASS_PROFILE_1": {
                    "NAME": "SIS",
                    "PARAMETERS": {"theta_E": 0.0, "center_x": 0.0, "center_y": 0.0},
                },
            },
        },
        "GEOMETRY": {
            "CONFIGURATION_1": {
                "NAME": "GALAXY_GALAXY",
                "FRACTION": 1.0,
                "PLANE_1": {
                    "OBJECT_1": "LENS",
                    "PARAMETERS": {
                        "REDSHIFT": per_image("z_l") if physical else spec.priors["z_l"].distribution()
                    },
                },
                "PLANE_2": {
                    "OBJECT_1": "SOURCE",
                    "PARAMETERS": {"REDSHIFT": spec.priors["z_s"].distribution()},
                },
            }
        },
    }


def config_yaml(spec: SimulatorSpec, size: int, seed: int) -> str:
    """The config of `build_config` as the YAML file make_dataset reads (it fails on a dict), with a header."""
    header = (
        f"# deeplenstronomy config generated by lenspipe {__version__} from the lenspipe config: do not edit.\n"
        f"# {COLOUR_DISTRIBUTION} is registered by lenspipe.deeplens, which also handles deeplenstronomy's bugs\n"
        f"# (sky_noise: {spec.sky_noise}). SIZE includes the image deeplenstronomy drops; further calls that topped\n"
        "# up a shard are listed in its store's deeplenstronomy_calls attribute.\n"
    )
    if spec.lens_light_model is not None:
        header += (
            "# lenspipe_per_image_* hand over lenspipe's per-image sigma_v, z_l, lens magnitudes and R_sersic\n"
            "# (lenspipe.lenslight, drawn from SEED): the store's metadata holds them (lens_light-* columns).\n"
        )
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's, when PyYAML has it: same text, faster
    return header + yaml.dump(build_config(spec, size, seed), Dumper=dumper, sort_keys=False)


def lenspipe_uniform_colours(
    minimum: float, maximum: float, colours: Mapping[str, float], bands: str = ""
) -> list[float]:
    """One uniform draw plus each band's colour offset, so bands differ (deeplenstronomy's own draws are one value)."""
    draw = random.uniform(minimum, maximum)
    return [draw + float(colours[b]) for b in bands.split(",")]


def lenspipe_per_band(values: Mapping[str, float], bands: str = "") -> list[float]:
    """A fixed value per band (deeplenstronomy's fixed values are one number for all bands)."""
    return [float(values[b]) for b in bands.split(",")]


def sky_table(survey: str, band: str) -> tuple[list[float], list[float]]:
    """The survey's sky-brightness bins (mag/arcsec^2) and weights of one band, impossible bins dropped."""
    table = preset_table(f"{survey}_sky_brightness")[band]
    pairs = [
        (v, w) for v, w in zip(table["VALUES"], table["WEIGHTS"], strict=True) if v <= SKY_FAINTEST and w > 0
    ]
    return [v for v, _ in pairs], [w for _, w in pairs]


@functools.cache
def preset_table(function: str) -> dict[str, Any]:
    """The literal `dist` table inside one of deeplenstronomy's survey distribution functions (read, not copied).

    The module's source is parsed, not imported: importing deeplenstronomy.distributions takes ~1 s, which every
    `snakemake` start paid for the config checks.
    """
    return _preset_tables().get(function) or _missing_table(function)


@functools.cache
def _preset_tables() -> dict[str, dict[str, Any]]:
    """Every function of deeplenstronomy/distributions.py that holds a literal `dist` table, by name."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec("deeplenstronomy")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("deeplenstronomy", "an installed package (pip install deeplenstronomy==0.0.2.3)")
    source = Path(next(iter(spec.submodule_search_locations))) / "distributions.py"
    tables: dict[str, dict[str, Any]] = {}
    for func in ast.parse(source.read_text()).body:
        if not isinstance(func, ast.FunctionDef):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "dist" for t in node.targets
            ):
                with contextlib.suppress(ValueError):
                    tables[func.name] = ast.literal_eval(node.value)
                break
    return tables


def _missing_table(function: str) -> dict[str, Any]:
    """Raise: deeplenstronomy has no literal table named `function` (another version than the pinned one)."""
    raise DataError(f"deeplenstronomy.distributions.{function}", "a literal `dist` table")


def lenspipe_sky_brightness(survey: str, bands: str = "") -> list[float]:
    """A draw of the survey's sky brightness per band, from its table without the impossible bins."""
    out = []
    for band in bands.split(","):
        values, weights = sky_table(survey, band)
        out.append(random.choices(values, weights)[0])
    return out


def lenspipe_exposure_time(survey: str, exposures: int, bands: str = "") -> list[float]:
    """The total time of `exposures` coadded exposures, each drawn as the survey's exposure time."""
    from deeplenstronomy import distributions

    single = getattr(distributions, f"{survey}_exposure_time")(bands=bands)
    return [float(exposures) * float(t) for t in single]


class PerImageValues:
    """Values lenspipe drew per image, handed to deeplenstronomy in image order, one column at a time.

    deeplenstronomy draws every parameter of image 0, then image 1, ...: each `lenspipe_per_image_<column>` call
    returns the next image's value of that column. `simulate` then checks that every image's metadata holds
    the values of its own row (OBJID), and `finish` that each column was read exactly once per image.
    """

    def __init__(self, table: pd.DataFrame, bands: tuple[str, ...]) -> None:
        self.table = table.reset_index(drop=True)
        self.bands = bands
        self.next = dict.fromkeys(PER_IMAGE_COLUMNS, 0)

    def value(self, column: str, bands: str) -> list[float]:
        row = self.next[column]
        if row >= len(self.table):
            raise DataError(
                "deeplenstronomy", f"read more than {len(self.table)} per-image values of {column}"
            )
        self.next[column] = row + 1
        names = bands.split(",")
        if column == "magnitude":
            return [float(self.table.at[row, f"magnitude-{b}"]) for b in names]
        return [float(self.table.at[row, column])] * len(names)

    def finish(self) -> None:
        wrong = {c: n for c, n in self.next.items() if n != len(self.table)}
        if wrong:
            raise DataError(
                "deeplenstronomy", f"read per-image values {wrong} times, expected {len(self.table)} each"
            )


_PER_IMAGE: list[PerImageValues] = []  # the values of the make_dataset call running now (at most one)


def lenspipe_per_image(column: str, bands: str = "") -> list[float]:
    """The next image's value of `column` (per band), from the values of the running call."""
    if not _PER_IMAGE:
        raise DataError(
            "deeplenstronomy", f"asked for a per-image {column} outside lenspipe.deeplens.simulate"
        )
    return _PER_IMAGE[-1].value(column, bands)


@contextlib.contextmanager
def _per_image_values(values: PerImageValues | None) -> Iterator[None]:
    if values is None:
        yield
        return
    _PER_IMAGE.append(values)
    try:
        yield
    finally:
        _PER_IMAGE.remove(values)
    values.finish()


def register_distributions() -> None:
    """Make lenspipe's distributions callable by name from a deeplenstronomy config."""
    from deeplenstronomy import distributions

    setattr(distributions, COLOUR_DISTRIBUTION, lenspipe_uniform_colours)
    for column in PER_IMAGE_COLUMNS:
        setattr(
            distributions,
            PER_IMAGE_DISTRIBUTION.format(column=column),
            functools.partial(lenspipe_per_image, column),
        )
    setattr(distributions, ZERO_POINT_DISTRIBUTION, lenspipe_per_band)
    for survey in SURVEYS:
        setattr(
            distributions,
            SKY_DISTRIBUTION.format(survey=survey),
            functools.partial(lenspipe_sky_brightness, survey),
        )
        setattr(
            distributions,
            EXPOSURE_DISTRIBUTION.format(survey=survey),
            functools.partial(lenspipe_exposure_time, survey),
        )


@dataclass
class Batch:
    """What one make_dataset call gave, bugs handled: images (n, bands, H, W) in counts/s and aligned metadata rows."""

    images: np.ndarray
    metadata: pd.DataFrame
    seed: int
    requested: int
    returned: int  # images deeplenstronomy returned (it loses some)
    yaml: str  # the config file make_dataset ran
    planes: np.ndarray | None = (
        None  # (n, 4, bands, H, W): lens light, source, point sources, noise (noise-free light)
    )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def select(self, rows: np.ndarray | slice) -> Batch:
        """The same batch restricted to `rows` (a boolean mask or a slice), images and metadata together."""
        meta = self.metadata[rows] if not isinstance(rows, slice) else self.metadata.iloc[rows]
        planes = None if self.planes is None else self.planes[rows]
        return Batch(
            self.images[rows],
            meta.reset_index(drop=True),
            self.seed,
            self.requested,
            self.returned,
            self.yaml,
            planes,
        )


def simulate(spec: SimulatorSpec, size: int, seed: int, planes: bool = False) -> Batch:
    """Run make_dataset for `size` systems with `seed` and handle its bugs; may return fewer images than asked."""
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    text = config_yaml(spec, size, seed)
    light = None if spec.lens_light_model is None else physical_light(spec, size, seed)
    values = None if light is None else PerImageValues(light, spec.bands)
    raw_images, meta, raw_planes = run_make_dataset(text, planes=planes, per_image=values)
    returned = len(meta)
    if raw_images.shape[0] != returned:
        raise DataError(
            "deeplenstronomy", f"{raw_images.shape[0]} images but {returned} metadata rows (seed {seed})"
        )
    meta = fix_plane_redshifts(meta)
    if light is not None:
        meta = with_physical_light(meta, light, spec.bands, seed)
    batch = Batch(raw_images, meta, int(seed), int(size), returned, text, raw_planes)
    # deeplenstronomy's own sentinel mask reads the lagged column, so it can drop the wrong row: redo it.
    keep = meta[f"{LABEL_COLUMNS['z_s']}-{spec.bands[0]}"].to_numpy() < SENTINEL_REDSHIFT
    if not keep.all():
        batch = batch.select(keep)
    sky = add_sky_noise(
        batch.images, batch.metadata, spec.bands, spec.sky_noise == "survey", derive_seed(seed, "sky_noise")
    )
    meta = pd.concat([batch.metadata, sky], axis=1)
    coadds = pd.DataFrame(
        {f"coadd_exposures-{band}": spec.exposures for band in spec.bands}, index=meta.index
    )
    meta = pd.concat([meta, coadds], axis=1)
    batch.metadata = pd.concat([meta, depth.image_depths(meta, spec.bands)], axis=1)
    return batch


def physical_light(spec: SimulatorSpec, size: int, seed: int) -> pd.DataFrame:
    """Each image's sigma_v, z_l and physical lens light (lenspipe.lenslight), drawn from the call's seed."""
    assert spec.lens_light_model is not None
    sigma_v, z_l = spec.priors["sigma_v"], spec.priors["z_l"]
    draws = lenslight.draw(
        size,
        (sigma_v.min, sigma_v.max),
        (z_l.min, z_l.max),
        len(spec.bands),
        derive_seed(seed, "lens_light"),
    )
    return lenslight.light(spec.lens_light_model, draws, spec.cosmology)


# Metadata columns (suffix -<band>) that must hold the per-image values lenspipe handed to deeplenstronomy.
PER_IMAGE_METADATA = {
    "sigma_v": "PLANE_1-OBJECT_1-MASS_PROFILE_1-sigma_v",
    "z_l": "PLANE_1-OBJECT_1-REDSHIFT",
    "R_sersic": "PLANE_1-OBJECT_1-LIGHT_PROFILE_1-R_sersic",
}


def with_physical_light(
    meta: pd.DataFrame, light: pd.DataFrame, bands: tuple[str, ...], seed: int
) -> pd.DataFrame:
    """Check every image's metadata against the values lenspipe asked for, and add the model's columns.

    Rows are matched by OBJID (the image's index within this call); a value deeplenstronomy did not use as
    given stops the simulation.
    """
    objid = meta[f"OBJID-{bands[0]}"].to_numpy(dtype=int)
    if objid.min(initial=0) < 0 or objid.max(initial=0) >= len(light):
        raise DataError("deeplenstronomy", f"OBJID outside 0..{len(light) - 1} (seed {seed})")
    rows = light.iloc[objid].reset_index(drop=True)
    expected = {f"{col}-{b}": rows[name] for name, col in PER_IMAGE_METADATA.items() for b in bands}
    expected.update(
        {f"PLANE_1-OBJECT_1-LIGHT_PROFILE_1-magnitude-{b}": rows[f"magnitude-{b}"] for b in bands}
    )
    for column, want in expected.items():
        got = meta[column].to_numpy(dtype=float)
        bad = np.flatnonzero(got != want.to_numpy(dtype=float))
        if bad.size:
            i = int(bad[0])
            raise DataError(
                "deeplenstronomy",
                f"image {objid[i]} (seed {seed}) has {column} = {got[i]!r}, lenspipe asked for {float(want.iloc[i])!r}",
            )
    model = rows.add_prefix(lenslight.PREFIX)
    model.index = meta.index
    return pd.concat([meta, model], axis=1)


def run_make_dataset(
    yaml_text: str, planes: bool = False, per_image: PerImageValues | None = None
) -> tuple[np.ndarray, pd.DataFrame, np.ndarray | None]:
    """Bare make_dataset on a YAML text, in a private temporary directory (it writes under the CWD).

    The caller's global numpy/python RNG states are restored afterwards (make_dataset reseeds both), and
    deeplenstronomy's prints go to stderr; a config it rejects becomes a ConfigError. `per_image`: the values
    the config's `lenspipe_per_image_*` distributions hand out.
    """
    from deeplenstronomy.check import ConfigFileError
    from deeplenstronomy.deeplenstronomy import make_dataset

    register_distributions()
    printed = io.StringIO()
    with (
        tempfile.TemporaryDirectory(prefix="lenspipe-deeplens-") as tmp,
        contextlib.chdir(tmp),
        _restored_rng(),
        shared_cosmology(),
        _per_image_values(per_image),
        contextlib.redirect_stdout(printed),
    ):
        Path(_CONFIG_FILE).write_text(yaml_text)
        try:
            dataset = make_dataset(_CONFIG_FILE, store_in_memory=True, return_planes=planes)
        except ConfigFileError as exc:
            problems = "; ".join(line.strip() for line in printed.getvalue().splitlines() if line.strip())
            raise ConfigError("simulation", "settings deeplenstronomy accepts", problems) from exc
    if printed.getvalue().strip():
        sys.stderr.write(printed.getvalue())
    images = np.asarray(dataset.CONFIGURATION_1_images, dtype=np.float64)
    meta = dataset.CONFIGURATION_1_metadata.reset_index(drop=True)
    return images, meta, (np.asarray(dataset.CONFIGURATION_1_planes) if planes else None)


@contextlib.contextmanager
def _restored_rng() -> Iterator[None]:
    """Put back the global numpy and python RNG states that make_dataset reseeds."""
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


@contextlib.contextmanager
def shared_cosmology() -> Iterator[None]:
    """Reuse one astropy FlatLambdaCDM per parameter set while make_dataset runs.

    deeplenstronomy builds a new one for every image, which with astropy 8 (unit composition in its
    critical density) is about 70% of the simulation time; the instances are immutable, so the images are
    bit-for-bit the same (tests/test_deeplens.py).
    """
    from deeplenstronomy import image_generator

    original = image_generator.FlatLambdaCDM
    image_generator.FlatLambdaCDM = functools.lru_cache(maxsize=4)(original)
    try:
        yield
    finally:
        image_generator.FlatLambdaCDM = original


def fix_plane_redshifts(meta: pd.DataFrame) -> pd.DataFrame:
    """Rewrite the lagged PLANE_n-REDSHIFT-<band> columns with the true PLANE_n-OBJECT_1-REDSHIFT-<band> values."""
    meta = meta.copy()
    for col in [
        c for c in meta.columns if c.startswith("PLANE_") and "-REDSHIFT-" in c and "-OBJECT_" not in c
    ]:
        plane, band = col.split("-REDSHIFT-")
        meta[col] = meta[f"{plane}-OBJECT_1-REDSHIFT-{band}"]
    return meta


def sky_sigmas(meta: pd.DataFrame, band: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-image background sigma (counts/s) of one band: as the survey gives it, and as deeplenstronomy made it.

    Both use lenstronomy's bkg_noise; the survey's sky counts are 10**(-0.4 (m_sky - zero point)) per arcsec^2,
    deeplenstronomy passes m_sky itself.
    """
    from lenstronomy.Util.data_util import bkg_noise

    def col(name: str) -> np.ndarray:
        return meta[f"{name}-{band}"].to_numpy(dtype=float)

    m_sky = col("sky_brightness")
    args = (col("read_noise"), col("exposure_time"))
    kwargs = {"pixel_scale": col("pixel_scale"), "num_exposures": col("num_exposures")}
    survey = bkg_noise(*args, 10.0 ** (-0.4 * (m_sky - col("magnitude_zero_point"))), **kwargs)
    legacy = bkg_noise(*args, m_sky, **kwargs)
    return survey, legacy


def add_sky_noise(
    images: np.ndarray, meta: pd.DataFrame, bands: tuple[str, ...], survey_noise: bool, seed: int
) -> pd.DataFrame:
    """Give each image and band the survey's Gaussian sky background, in place (or keep deeplenstronomy's).

    The legacy background is Gaussian, so adding independent Gaussian noise of variance sigma_survey^2 -
    sigma_legacy^2 gives exactly the survey's. Returns the per-band sky_sigma columns (counts/s).
    """
    columns: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(seed)
    for b, band in enumerate(bands):
        survey, legacy = sky_sigmas(meta, band)
        if survey_noise:
            if np.any(survey < legacy):
                raise DataError(
                    f"band {band}",
                    "survey sky noise below deeplenstronomy's own (check the survey's zero points)",
                )
            noise = rng.standard_normal(images[:, b].shape, dtype=np.float32)
            noise *= np.sqrt(survey**2 - legacy**2).astype(np.float32)[:, None, None]
            images[:, b] += noise
        columns[f"sky_sigma-{band}"] = survey if survey_noise else legacy
        columns[f"sky_sigma_legacy-{band}"] = legacy
    return pd.DataFrame(columns, index=meta.index)


def labels(meta: pd.DataFrame, names: list[str] | tuple[str, ...], band: str) -> np.ndarray:
    """The (n, len(names)) float64 parameters of each image, from the simulator's true per-image columns."""
    unknown = [n for n in names if n not in LABEL_COLUMNS]
    if unknown:
        raise ConfigError("parameters", "names from " + ", ".join(LABEL_COLUMNS), unknown[0])
    return np.column_stack([meta[f"{LABEL_COLUMNS[n]}-{band}"].to_numpy(dtype=np.float64) for n in names])


def parquet_safe(meta: pd.DataFrame) -> pd.DataFrame:
    """Columns Parquet stores without surprises: numbers stay numbers, anything else becomes a string."""
    out = meta.copy()
    out.columns = [str(c) for c in out.columns]
    for col in out.columns:
        series = out[col]
        if series.dtype == object:
            numeric = pd.to_numeric(series, errors="coerce")
            out[col] = numeric if numeric.notna().sum() == series.notna().sum() else series.astype(str)
    return out


def versions() -> dict[str, str]:
    """Installed deeplenstronomy and lenstronomy versions (deeplenstronomy.__version__ is wrong: 0.0.2.0)."""
    return {name: importlib_metadata.version(name) for name in ("deeplenstronomy", "lenstronomy")}


def preset_zero_points(survey: str, bands: tuple[str, ...] | list[str]) -> dict[str, float]:
    """The magnitude zero point per band of a survey preset, as the simulation passes it to lenstronomy.

    lenstronomy reads it as the magnitude of 1 count/s; deeplenstronomy's DELVE values are per exposure.
    """
    from deeplenstronomy import distributions

    spec = preset_sections(survey)["SURVEY"]["PARAMETERS"]["magnitude_zero_point"]
    value = spec["DISTRIBUTION"]["NAME"] if isinstance(spec, Mapping) else None
    if value is None:
        values = [float(spec)] * len(bands)
    else:
        values = [float(v) for v in getattr(distributions, value)(bands=",".join(bands))]
    return dict(zip(bands, values, strict=True))


def preset_sections(survey: str) -> dict[str, Any]:
    """The IMAGE and SURVEY sections of deeplenstronomy's preset `survey` (what make_dataset(survey=...) adds),
    a fresh copy each call; an unknown name is a ConfigError on simulation.survey."""
    from deeplenstronomy import surveys

    preset = getattr(surveys, survey, None)
    if preset is None or survey.startswith("_"):
        raise ConfigError("simulation.survey", "a deeplenstronomy survey preset (e.g. delve)", survey)
    return yaml.safe_load(preset())


# lenstronomy's SingleBand settings (kwargs_single_band) among a survey preset's IMAGE and SURVEY parameters.
SINGLE_BAND_KEYS = (
    "pixel_scale",
    "exposure_time",
    "magnitude_zero_point",
    "read_noise",
    "ccd_gain",
    "sky_brightness",
    "seeing",
    "num_exposures",
    "psf_type",
)


def observing_conditions(
    survey: str, bands: tuple[str, ...] | list[str], seed: int
) -> dict[str, dict[str, Any]]:
    """One draw of a survey preset's per-band observing conditions, as lenstronomy's kwargs_single_band per band.

    The preset's distributions draw with Python's `random`; its state is seeded here and restored afterwards.
    """
    from deeplenstronomy import distributions

    sections = preset_sections(survey)
    params = {**sections["IMAGE"]["PARAMETERS"], **sections["SURVEY"]["PARAMETERS"]}
    state = random.getstate()
    random.seed(seed)
    try:
        out: dict[str, dict[str, Any]] = {b: {} for b in bands}
        for key in SINGLE_BAND_KEYS:
            value = params[key]
            if (
                key == "sky_brightness" and survey in SURVEYS
            ):  # the survey's table without its impossible bins
                draws = lenspipe_sky_brightness(survey, bands=",".join(bands))
            elif isinstance(value, Mapping) and "DISTRIBUTION" in value:
                draws = getattr(distributions, value["DISTRIBUTION"]["NAME"])(bands=",".join(bands))
            else:
                draws = [value] * len(bands)
            for band, draw in zip(bands, draws, strict=True):
                out[band][key] = draw
    finally:
        random.setstate(state)
    return out
