"""The split's normalisation statistics (split/normalisation.json): per-band mean and std of the training images.

This module alone computes, writes and reads the file: the split stage computes it on the training part
only, training reads it back and the embedding net standardises each band with it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lenspipe import atomic
from lenspipe.errors import DataError


@dataclass(frozen=True)
class Normalisation:
    """Per-band image statistics of the training split."""

    bands: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    n_train: int | None = None

    @classmethod
    def from_images(cls, images: np.ndarray, bands: Sequence[str]) -> Normalisation:
        """Per-band mean and standard deviation over all pixels of images (n, bands, H, W), float64 accumulation."""
        flat = images.transpose(1, 0, 2, 3).reshape(images.shape[1], -1).astype(np.float64)
        std = flat.std(axis=1)
        if not np.all(np.isfinite(std)) or np.any(std <= 0):
            raise DataError(
                "training images", f"per-band standard deviations must be finite and > 0, got {std.tolist()}"
            )
        return cls(tuple(bands), tuple(flat.mean(axis=1).tolist()), tuple(std.tolist()), int(images.shape[0]))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Normalisation:
        """Read and check the JSON: one finite mean and positive std per band."""
        path = Path(path)
        try:
            stats = json.loads(path.read_text())
            assert {"bands", "mean", "std"} <= set(stats)
        except Exception as exc:
            raise DataError(path, "expected the split's normalisation JSON with bands, mean and std") from exc
        bands, mean, std = (
            tuple(stats["bands"]),
            tuple(map(float, stats["mean"])),
            tuple(map(float, stats["std"])),
        )
        if not (len(bands) == len(mean) == len(std)) or not bands:
            raise DataError(
                path,
                f"expected one mean and one std per band, got {len(bands)} bands, "
                f"{len(mean)} means, {len(std)} stds",
            )
        if not all(np.isfinite(mean)) or not all(np.isfinite(s) and s > 0 for s in std):
            raise DataError(
                path, f"expected finite means and positive stds, got mean {list(mean)}, std {list(std)}"
            )
        return cls(bands, mean, std, stats.get("n_train"))

    def as_dict(self) -> dict:
        """The JSON form: bands, mean, std, n_train."""
        return {
            "bands": list(self.bands),
            "mean": list(self.mean),
            "std": list(self.std),
            "n_train": self.n_train,
        }

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write the JSON atomically."""
        atomic.write_json(path, self.as_dict())
