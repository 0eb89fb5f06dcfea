"""The parameter table: every inferable parameter's name, LaTeX label, unit and meaning, stated once.

Plots, tables, array attributes and the prior box all take names and units from here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Parameter:
    """One inferable lens parameter."""

    name: str
    label: str  # LaTeX, for plots
    unit: str  # "" for dimensionless
    description: str

    @property
    def axis_label(self) -> str:
        """Label with unit, for plot axes."""
        return f"{self.label} [{self.unit}]" if self.unit else self.label


PARAMETERS: dict[str, Parameter] = {
    p.name: p
    for p in (
        Parameter("sigma_v", r"$\sigma_v$", "km/s", "velocity dispersion of the SIE lens"),
        Parameter("theta_E", r"$\theta_E$", "arcsec", "Einstein radius (from sigma_v, z_l, z_s)"),
        Parameter("e1", r"$e_1$", "", "lens mass ellipticity, first component"),
        Parameter("e2", r"$e_2$", "", "lens mass ellipticity, second component"),
        Parameter("z_l", r"$z_l$", "", "lens redshift"),
        Parameter("z_s", r"$z_s$", "", "source redshift"),
    )
}

# Parameters drawn from a prior in the config; theta_E is derived from them.
SAMPLED = ("sigma_v", "e1", "e2", "z_l", "z_s")
DERIVED = ("theta_E",)


def get(names: list[str] | tuple[str, ...]) -> list[Parameter]:
    """The Parameter records for `names`, in that order; unknown names raise KeyError."""
    return [PARAMETERS[n] for n in names]
