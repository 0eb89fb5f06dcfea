"""The infer rule's view of the config: the optional `observed` section, its image files and the rule's params.

Kept free of torch and astropy: Snakemake imports it while parsing the workflow, on every invocation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Keys of `observed` that shape the results (all of them: images, calibration, sampling, NaN filling).
DEFAULTS: dict[str, Any] = {
    "zero_points": None,
    "exposure_times": None,
    "zero_point_key": "MAGZERO",
    "exposure_time_key": "EXPTIME",
    "nanomaggies": False,
    "fill_nonfinite": False,
}


def has_observed(config: Mapping[str, Any]) -> bool:
    """Whether the config asks for inference on observed images."""
    return bool(config.get("observed"))


def infer_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """The infer rule's params: the images, their calibration, samples per image and the seed."""
    observed = config["observed"]
    return {
        "images": [dict(i) if isinstance(i, Mapping) else str(i) for i in observed["images"]],
        **{k: observed.get(k, v) for k, v in DEFAULTS.items()},
        "num_samples": int(observed.get("num_samples", config["evaluation"]["num_samples"])),
        "seed": int(config["seed"]),
    }


def observed_files(config: Mapping[str, Any]) -> list[str]:
    """Every FITS file the observed images are read from ({band} patterns expanded with the study's bands)."""
    from lenspipe.fits_io import parse_image

    bands = config["simulation"]["bands"]
    files: list[str] = []
    for entry in config["observed"]["images"]:
        files += [str(p) for p in parse_image(entry, bands).paths()]
    return list(dict.fromkeys(files))
