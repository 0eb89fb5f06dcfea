"""Priors: the seed's uniform priors from the config, the SIE Einstein radius, and the prior box.

theta_E is not drawn: it follows from sigma_v, z_l and z_s (SIS normalisation, as lenstronomy's
SIE uses), so its prior range is the image of the other parameters' box.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

C_KM_S = 299792.458
RAD_TO_ARCSEC = 180.0 / np.pi * 3600.0


@dataclass(frozen=True)
class Cosmology:
    """Flat LambdaCDM, as deeplenstronomy builds it."""

    H0: float = 70.0
    Om0: float = 0.3

    def astropy(self):  # noqa: ANN201 - astropy type, imported lazily
        """astropy's FlatLambdaCDM, built once per (H0, Om0): building one costs ~0.1 s (its unit conversions), and a
        derived theta_E computes per image piece when an ensemble samples (lenspipe.posterior)."""
        return _flat_lambda_cdm(float(self.H0), float(self.Om0))


@functools.lru_cache(maxsize=16)
def _flat_lambda_cdm(h0: float, om0: float):  # noqa: ANN202 - astropy type; its cosmologies are immutable
    from astropy.cosmology import FlatLambdaCDM

    return FlatLambdaCDM(H0=h0, Om0=om0)


def einstein_radius(sigma_v, z_l, z_s, cosmology: Cosmology):  # noqa: ANN001, ANN201
    """SIS Einstein radius in arcsec: 4 pi (sigma_v/c)^2 D_ls/D_s (array-friendly)."""
    cosmo = cosmology.astropy()
    z_l = np.asarray(z_l, dtype=float)
    z_s = np.asarray(z_s, dtype=float)
    d_s = cosmo.angular_diameter_distance(z_s).value
    d_ls = cosmo.angular_diameter_distance(z_l, z_s).value
    return 4.0 * np.pi * (np.asarray(sigma_v, dtype=float) / C_KM_S) ** 2 * d_ls / d_s * RAD_TO_ARCSEC


@dataclass(frozen=True)
class PriorBox:
    """Lower and upper bounds of every inferred parameter, in the config's parameter order."""

    names: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]

    def as_dict(self) -> dict[str, list]:
        return {"names": list(self.names), "low": list(self.low), "high": list(self.high)}

    @classmethod
    def from_dict(cls, d: Mapping) -> PriorBox:
        return cls(tuple(d["names"]), tuple(float(x) for x in d["low"]), tuple(float(x) for x in d["high"]))

    def contains(self, theta: np.ndarray) -> np.ndarray:
        """Boolean mask of rows of `theta` (..., n_params) inside the box (bounds included)."""
        low, high = np.asarray(self.low), np.asarray(self.high)
        return np.all((theta >= low) & (theta <= high), axis=-1)

    def select(self, names: Sequence[str]) -> PriorBox:
        """The box of `names` (a subset, in that order)."""
        index = [self.names.index(n) for n in names]
        return PriorBox(tuple(names), tuple(self.low[i] for i in index), tuple(self.high[i] for i in index))

    def sbi_prior(self, device: str = "cpu"):  # noqa: ANN201 - sbi type, imported lazily
        """The box as sbi's BoxUniform."""
        import torch
        from sbi.utils import BoxUniform

        return BoxUniform(
            low=torch.tensor(self.low, dtype=torch.float32),
            high=torch.tensor(self.high, dtype=torch.float32),
            device=device,
        )


def prior_box(priors: Mapping, parameters: list[str], cosmology: Cosmology) -> PriorBox:
    """The box of the inferred parameters: config priors, and theta_E's range from the others."""
    low, high = [], []
    for name in parameters:
        if name == "theta_E":
            # theta_E grows with sigma_v and z_s, falls with z_l.
            sv, zl, zs = priors["sigma_v"], priors["z_l"], priors["z_s"]
            lo = float(einstein_radius(sv["min"], zl["max"], zs["min"], cosmology))
            hi = float(einstein_radius(sv["max"], zl["min"], zs["max"], cosmology))
        else:
            lo, hi = float(priors[name]["min"]), float(priors[name]["max"])
        low.append(lo)
        high.append(hi)
    return PriorBox(tuple(parameters), tuple(low), tuple(high))
