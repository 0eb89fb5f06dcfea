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
from typing import Any

import numpy as np

from lenspipe import atomic
from lenspipe.errors import DataError

# One band's training pixels in float64 up to this size are reduced exactly as the in-memory statistics (numpy's
# pairwise sums, bit for bit): 10,000 64x64 images take 0.3 GB.
EXACT_MAX_BYTES = 2**30


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
    def from_array(
        cls, images: Any, bands: Sequence[str], max_exact_bytes: int | None = None
    ) -> Normalisation:
        """The statistics of a Zarr (or numpy) image array read chunk by chunk, never all bands at once.

        When one band's pixels fit `max_exact_bytes` (default EXACT_MAX_BYTES) in float64, each band is gathered
        alone and reduced as `from_images` reduces it (numpy's pairwise sums, the deviations squared in place: the
        same numbers bit for bit); a larger array is reduced in two float64 passes per chunk (mean, then squared
        deviations), equal to ~1e-15 relative.
        """
        max_exact_bytes = EXACT_MAX_BYTES if max_exact_bytes is None else max_exact_bytes
        max_exact_bytes = EXACT_MAX_BYTES if max_exact_bytes is None else max_exact_bytes
        n, n_bands = int(images.shape[0]), int(images.shape[1])
        step = int(getattr(images, "chunks", (256,))[0])
        per_band = n * int(np.prod(images.shape[2:]))
        if n == 0:
            raise DataError("training images", "no training images to compute the normalisation from")
        mean, std = np.empty(n_bands), np.empty(n_bands)
        if 8 * per_band <= max_exact_bytes:
            pixels = int(np.prod(images.shape[2:]))
            for b in range(n_bands):
                flat = np.empty(per_band, dtype=np.float64)
                for start in range(0, n, step):
                    block = np.asarray(images[start : start + step])[:, b]
                    flat[start * pixels : start * pixels + block.size] = block.ravel()
                mean[b] = flat.mean()
                np.subtract(flat, np.add.reduce(flat) / per_band, out=flat)  # as numpy's std, without a copy
                np.multiply(flat, flat, out=flat)
                std[b] = np.sqrt(np.add.reduce(flat) / per_band)
                del flat
        else:
            total = np.zeros(n_bands)
            for start in range(0, n, step):
                total += np.asarray(images[start : start + step], dtype=np.float64).sum(axis=(0, 2, 3))
            mean = total / per_band
            squares = np.zeros(n_bands)
            for start in range(0, n, step):
                block = np.asarray(images[start : start + step], dtype=np.float64)
                squares += ((block - mean[None, :, None, None]) ** 2).sum(axis=(0, 2, 3))
            std = np.sqrt(squares / per_band)
        if not np.all(np.isfinite(std)) or np.any(std <= 0):
            raise DataError(
                "training images", f"per-band standard deviations must be finite and > 0, got {std.tolist()}"
            )
        return cls(tuple(bands), tuple(mean.tolist()), tuple(std.tolist()), n)

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
