"""The one module that touches deeplenstronomy: the config as a deeplenstronomy YAML, make_dataset run in a
private directory, and the simulator's silent bugs handled (each tested in tests/test_deeplens.py).

deeplenstronomy 0.0.2.3 bugs handled here:
- its PLANE_n-REDSHIFT-<band> columns hold the previous image's redshift: rewritten from the true
  PLANE_n-OBJECT_1-REDSHIFT-<band> columns, and labels come from those;
- it drops the first image (its drop mask reads that lagged column): callers ask for more and trim
  (lenspipe.simulate);
- it passes the sky brightness (mag/arcsec^2) to lenstronomy as counts/s/arcsec^2, so images are nearly
  noise-free: with sky_noise 'survey' the missing Gaussian background variance is added (`add_sky_noise`);
- one magnitude is drawn for all bands, so the bands are copies: the `lenspipe_uniform_colours`
  distribution adds a per-band colour to one uniform draw;
- OBJID restarts at 0 in every call: never used to join anything.
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

from lenspipe import __version__
from lenspipe.errors import ConfigError, DataError
from lenspipe.priors import Cosmology
from lenspipe.seeds import derive_seed

SKY_NOISE_MODES = ("survey", "legacy")
COLOUR_DISTRIBUTION = "lenspipe_uniform_colours"
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
    """A uniform range [min, max] from the config."""

    min: float
    max: float

    @classmethod
    def from_config(cls, value: Any, key: str) -> Uniform:
        """Read {min, max}; anything else is a ConfigError naming `key`."""
        try:
            return cls(float(value["min"]), float(value["max"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(key, "a range {min: number, max: number}", value) from exc

    def distribution(self) -> dict[str, Any]:
        """deeplenstronomy's DISTRIBUTION entry drawing from this range."""
        return {"DISTRIBUTION": {"NAME": "uniform", "PARAMETERS": {"minimum": self.min, "maximum": self.max}}}


@dataclass(frozen=True)
class LightSpec:
    """A light profile: its lenstronomy name, uniform parameter ranges, and per-band magnitude offsets."""

    profile: str
    params: dict[str, Uniform]
    colours: dict[str, float]

    @classmethod
    def from_config(cls, obj: Mapping[str, Any], key: str, bands: tuple[str, ...]) -> LightSpec:
        """Read simulation.<obj> (light + colours); every band needs a colour."""
        light = _get(obj, "light", key)
        params = {
            name: Uniform.from_config(rng, f"{key}.light.{name}")
            for name, rng in light.items()
            if name != "profile"
        }
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
        """deeplenstronomy's LIGHT_PROFILE entry; the magnitude is drawn once and offset by band."""
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

    @classmethod
    def from_config(cls, simulation: Mapping[str, Any], priors: Mapping[str, Any]) -> SimulatorSpec:
        """Build from the validated `simulation` and `priors` config sections."""
        bands = tuple(str(b) for b in _get(simulation, "bands", "simulation"))
        sky_noise = str(simulation.get("sky_noise", "survey"))
        if sky_noise not in SKY_NOISE_MODES:
            raise ConfigError("simulation.sky_noise", "one of " + ", ".join(SKY_NOISE_MODES), sky_noise)
        cosmo = _get(simulation, "cosmology", "simulation")
        lens = _get(simulation, "lens", "simulation")
        return cls(
            survey=str(_get(simulation, "survey", "simulation")),
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
            lens_light=LightSpec.from_config(lens, "simulation.lens", bands),
            source_light=LightSpec.from_config(
                _get(simulation, "source", "simulation"), "simulation.source", bands
            ),
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
    from deeplenstronomy import surveys

    preset = getattr(surveys, spec.survey, None)
    if preset is None or spec.survey.startswith("_"):
        raise ConfigError("simulation.survey", "a deeplenstronomy survey preset (e.g. delve)", spec.survey)
    sections = yaml.safe_load(preset())
    image, survey = sections["IMAGE"]["PARAMETERS"], sections["SURVEY"]["PARAMETERS"]
    image.update(numPix=spec.num_pix, pixel_scale=spec.pixel_scale)
    survey["BANDS"] = ",".join(spec.bands)
    return image, survey


def build_config(spec: SimulatorSpec, size: int, seed: int) -> dict[str, Any]:
    """The deeplenstronomy config of `size` lens systems drawn with `seed` (one configuration, two planes)."""
    image, survey = survey_sections(spec)
    mass = {
        "sigma_v": spec.priors["sigma_v"].distribution(),
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
                    "PARAMETERS": {"REDSHIFT": spec.priors["z_l"].distribution()},
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
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's, when PyYAML has it: same text, faster
    return header + yaml.dump(build_config(spec, size, seed), Dumper=dumper, sort_keys=False)


def lenspipe_uniform_colours(
    minimum: float, maximum: float, colours: Mapping[str, float], bands: str = ""
) -> list[float]:
    """One uniform draw plus each band's colour offset, so bands differ (deeplenstronomy's own draws are one value)."""
    draw = random.uniform(minimum, maximum)
    return [draw + float(colours[b]) for b in bands.split(",")]


def register_distributions() -> None:
    """Make lenspipe's distributions callable by name from a deeplenstronomy config."""
    from deeplenstronomy import distributions

    setattr(distributions, COLOUR_DISTRIBUTION, lenspipe_uniform_colours)


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
    raw_images, meta, raw_planes = run_make_dataset(text, planes=planes)
    returned = len(meta)
    if raw_images.shape[0] != returned:
        raise DataError(
            "deeplenstronomy", f"{raw_images.shape[0]} images but {returned} metadata rows (seed {seed})"
        )
    meta = fix_plane_redshifts(meta)
    batch = Batch(raw_images, meta, int(seed), int(size), returned, text, raw_planes)
    # deeplenstronomy's own sentinel mask reads the lagged column, so it can drop the wrong row: redo it.
    keep = meta[f"{LABEL_COLUMNS['z_s']}-{spec.bands[0]}"].to_numpy() < SENTINEL_REDSHIFT
    if not keep.all():
        batch = batch.select(keep)
    sky = add_sky_noise(
        batch.images, batch.metadata, spec.bands, spec.sky_noise == "survey", derive_seed(seed, "sky_noise")
    )
    batch.metadata = pd.concat([batch.metadata, sky], axis=1)
    return batch


def run_make_dataset(
    yaml_text: str, planes: bool = False
) -> tuple[np.ndarray, pd.DataFrame, np.ndarray | None]:
    """Bare make_dataset on a YAML text, in a private temporary directory (it writes under the CWD).

    The caller's global numpy/python RNG states are restored afterwards (make_dataset reseeds both), and
    deeplenstronomy's prints go to stderr; a config it rejects becomes a ConfigError.
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
