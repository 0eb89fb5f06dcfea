"""Flux units: observed pixel values to the simulation's (counts per second at the study's zero point).

An observed pixel value p, accumulated over an exposure of t seconds with zero point ZP_obs (the magnitude of a
source giving 1 pixel unit per second), is a magnitude m = ZP_obs - 2.5 log10(p / t). The simulation gives a
source of magnitude m a flux 10**(-0.4 (m - ZP_study)) in its units, so

    f_study = p / t * 10**(0.4 (ZP_study - ZP_obs)).

Nanomaggies are the case ZP_obs = 22.5, t = 1. The study's zero point per band comes from `study_zero_points`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

NANOMAGGY_ZERO_POINT = 22.5
OBSERVING_KEY = "observing"
# What the conversion needs from an estimator record's `observing` entry (written by training, lenspipe.train).
OBSERVING_FIELDS = ("survey", "bands", "pixel_scale", "num_pix")


def study_zero_points(record: Mapping[str, Any]) -> dict[str, float]:
    """The per-second zero point per band of the study an estimator record was trained on.

    The one place it is decided: an explicit `observing.zero_points` in the record wins; otherwise the survey
    preset's values, which the simulation passes to lenstronomy as the magnitude of 1 count/s.
    """
    observing = record[OBSERVING_KEY]
    bands = tuple(observing["bands"])
    explicit = observing.get("zero_points")
    if explicit is not None:
        return {b: float(explicit[b]) for b in bands}
    from lenspipe.deeplens import preset_zero_points

    return preset_zero_points(str(observing["survey"]), bands)


def flux_scale(zero_point_study: float, zero_point_obs: float, exposure_time: float) -> float:
    """The factor f_study / p: 10**(0.4 (ZP_study - ZP_obs)) / t."""
    return float(10.0 ** (0.4 * (zero_point_study - zero_point_obs)) / exposure_time)


def counts_per_second(magnitude: float | np.ndarray, zero_point: float) -> float | np.ndarray:
    """Flux of a source of `magnitude` in units where `zero_point` is the magnitude of 1 unit per second."""
    return 10.0 ** (-0.4 * (np.asarray(magnitude, dtype=np.float64) - zero_point))


@dataclass(frozen=True)
class BandCalibration:
    """How one band's pixel values were measured: zero point (1 unit/s) and exposure time, and where from."""

    zero_point: float
    exposure_time: float
    source: str  # "header", "given" or "nanomaggies"

    def scale(self, zero_point_study: float) -> float:
        """The factor that turns this band's pixel values into the study's units."""
        return flux_scale(zero_point_study, self.zero_point, self.exposure_time)
