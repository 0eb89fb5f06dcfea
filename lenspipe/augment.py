"""Exact symmetry augmentation: the square's 8 rotations and reflections (the group D4) on images and parameters.

A lens image (SIE and light profiles centred on the grid centre, round Gaussian PSF, i.i.d. noise) rotated or
reflected with the pixel grid is the image of the transformed lens: sigma_v, theta_E, z_l and z_s are unchanged,
and the ellipticities (e1, e2) = (1 - q)/(1 + q) (cos 2 phi, sin 2 phi) are spin-2: a reflection about an axis
(flip of rows or of columns) maps (e1, e2) -> (e1, -e2), a reflection about a diagonal (transpose) maps
(e1, e2) -> (-e1, e2), a 90-degree rotation (transpose and one flip) maps (e1, e2) -> (-e1, -e2).

Element k in 0..7 of the group: bit 0 transposes (swaps the H and W axes), bit 1 flips the rows (H), bit 2 flips the
columns (W), applied in that order. Each training pair gets its own element per batch, drawn from a seeded
generator (lenspipe.trainer keeps its state in the checkpoint). Parameters are transformed in physical units,
before the estimator maps them to its unconstrained space (a sign change is exact in floating point, and the prior
box of an odd parameter must be symmetric about 0: lenspipe.config checks it), so the augmentation never depends on
the flow's internal transforms.

The checks here are torch-free (lenspipe.config calls them while Snakemake parses the workflow).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lenspipe.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import Tensor

N_ELEMENTS = 8
TRANSPOSE, FLIP_ROWS, FLIP_COLUMNS = 1, 2, 4
# How each parameter transforms: invariant, or its sign flips under transposes ("diagonal") or axis flips ("axis").
PARAMETER_RULES: dict[str, str] = {
    "sigma_v": "invariant",
    "theta_E": "invariant",
    "z_l": "invariant",
    "z_s": "invariant",
    "e1": "diagonal",
    "e2": "axis",
}
AUGMENTATIONS = ("none", "d4")
AUGMENT_SETTING = "training.augment: d4"


def parameter_signs(names: Sequence[str], element: int) -> list[float]:
    """The factor (+1 or -1) of each parameter under group element `element`; ValueError for an unknown name."""
    check_parameters(names)
    transpose = bool(element & TRANSPOSE)
    axis = bool(element & FLIP_ROWS) != bool(element & FLIP_COLUMNS)
    flips = {"invariant": False, "diagonal": transpose, "axis": axis}
    return [-1.0 if flips[PARAMETER_RULES[n]] else 1.0 for n in names]


def check_parameters(names: Sequence[str], key: str = "parameters", setting: str = AUGMENT_SETTING) -> None:
    """Every parameter has a rule (invariant, or a sign flip); else a ConfigError naming the first one without.
    `setting`: the config setting that needs the rules, for the message."""
    for name in names:
        if name not in PARAMETER_RULES:
            raise ConfigError(
                key,
                "parameters whose transformation under the square's rotations and reflections is known ("
                + ", ".join(PARAMETER_RULES)
                + f") with {setting}",
                name,
            )


def check_image_shape(shape: Sequence[int], key: str = "training.augment") -> None:
    """Images (..., H, W) must be square to be rotated by 90 degrees."""
    if len(shape) < 2 or int(shape[-1]) != int(shape[-2]):
        raise ConfigError(
            key, "square images (H == W) for d4 augmentation", "images " + "x".join(str(s) for s in shape)
        )


def check_config(config: Mapping[str, Any], setting: str = AUGMENT_SETTING) -> None:
    """What D4 symmetry (training.augment: d4, or an ensemble's symmetrise: d4, named by `setting` in the messages)
    needs of a validated config: every inferred parameter has a rule, and the simulated distribution is itself
    symmetric (else the augmented pairs come from another distribution, and the posterior is not equivariant):
    the e1, e2 priors and the light ellipticities symmetric about 0, the source position symmetric with the same
    range on both axes (a rotation swaps them). Raises ConfigError naming the key."""
    check_parameters(config["parameters"], setting=setting)
    for name in ("e1", "e2"):
        rng = config["priors"][name]
        if rng["min"] != -rng["max"]:
            raise ConfigError(
                f"priors.{name}",
                f"a range symmetric about 0 with {setting} (a reflection maps {name} to -{name})",
                f"{{min: {rng['min']}, max: {rng['max']}}}",
            )
    sim = config["simulation"]
    for obj in ("lens", "source"):
        light = sim[obj]["light"]
        for name in ("e1", "e2"):
            if name in light and not _symmetric(light[name]):
                raise ConfigError(
                    f"simulation.{obj}.light.{name}",
                    f"0 or a range symmetric about 0 with {setting} (a reflection maps {name} to -{name})",
                    light[name],
                )
        centre = [light.get(c, 0.0) for c in ("center_x", "center_y")]
        for name, value in zip(("center_x", "center_y"), centre, strict=True):
            if not _symmetric(value):
                raise ConfigError(
                    f"simulation.{obj}.light.{name}",
                    f"0 or a range symmetric about 0 with {setting} (reflections flip the position)",
                    value,
                )
        if _as_range(centre[0]) != _as_range(centre[1]):
            raise ConfigError(
                f"simulation.{obj}.light.center_y",
                f"the same value or range as center_x with {setting} (a rotation swaps them)",
                centre[1],
            )


def _as_range(value: Any) -> tuple[float, float]:
    if isinstance(value, Mapping):
        return float(value["min"]), float(value["max"])
    return float(value), float(value)


def _symmetric(value: Any) -> bool:
    low, high = _as_range(value)
    return low == -high


# --------------------------------------------------------------------------------------------------
# On tensors (torch imported lazily: the checks above run while Snakemake parses the workflow).


def transform_images(x: Tensor, element: int) -> Tensor:
    """Images (..., H, W) under group element `element` (a view where possible)."""
    if element & TRANSPOSE:
        x = x.transpose(-1, -2)
    if element & FLIP_ROWS:
        x = x.flip(-2)
    if element & FLIP_COLUMNS:
        x = x.flip(-1)
    return x


def transform_array(x: np.ndarray, element: int) -> np.ndarray:
    """transform_images on a numpy array (..., H, W), contiguous: the images a symmetrised posterior conditions on."""
    import torch

    return np.ascontiguousarray(transform_images(torch.from_numpy(np.asarray(x)), element).numpy())


class D4Augmentation:
    """One random element of D4 per training pair: images rotated/reflected, parameters transformed to match."""

    def __init__(self, parameter_names: Sequence[str], image_shape: Sequence[int]) -> None:
        import torch

        check_parameters(parameter_names)
        check_image_shape(image_shape)
        # signs[k, j]: factor of parameter j under element k.
        self.signs = torch.tensor(
            [parameter_signs(parameter_names, k) for k in range(N_ELEMENTS)], dtype=torch.float32
        )
        # pixels[k]: the source pixel (flat index) of each output pixel under element k: one gather per batch.
        h, w = int(image_shape[-2]), int(image_shape[-1])
        grid = torch.arange(h * w).view(h, w)
        self.pixels = torch.stack([transform_images(grid, k).reshape(-1) for k in range(N_ELEMENTS)])

    def __call__(self, theta: Tensor, x: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """(theta, x) of a batch, each pair under its own element drawn from `generator` (on the CPU)."""
        import torch

        element = torch.randint(0, N_ELEMENTS, (theta.shape[0],), generator=generator)
        if self.pixels.device != x.device:
            self.pixels, self.signs = self.pixels.to(x.device), self.signs.to(x.device)
        element = element.to(x.device)
        signs = self.signs.to(dtype=theta.dtype)[element]
        flat = x.reshape(*x.shape[:-2], -1)
        index = self.pixels[element].view(x.shape[0], *([1] * (flat.dim() - 2)), -1).expand_as(flat)
        return theta * signs, torch.gather(flat, -1, index).view(x.shape)
