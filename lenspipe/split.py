"""Train/test split: concatenate the shards, permute them with a seeded generator, and compute the
per-band normalisation statistics on the training part only (later stages read only these)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lenspipe import atomic
from lenspipe.config import n_test_images
from lenspipe.errors import DataError
from lenspipe.seeds import split_seed
from lenspipe.store import open_store, write_store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitSettings:
    """How the shards are divided."""

    test_fraction: float
    seed: int

    @classmethod
    def from_params(cls, split: dict, global_seed: int) -> SplitSettings:
        return cls(float(split["test_fraction"]), split_seed(global_seed))


def split_shards(
    shards: Sequence[str | os.PathLike[str]],
    train_path: str | os.PathLike[str],
    test_path: str | os.PathLike[str],
    normalisation_path: str | os.PathLike[str],
    settings: SplitSettings,
) -> dict:
    """Write the train and test stores and normalisation JSON; returns the normalisation statistics."""
    import pandas as pd

    stores = [open_store(s, verify=True) for s in shards]  # a damaged shard stops here, named
    names = stores[0].parameter_names
    bands = stores[0].bands
    for store in stores[1:]:
        if (
            store.parameter_names != names
            or store.bands != bands
            or store.images.shape[1:] != stores[0].images.shape[1:]
        ):
            raise DataError(
                store.path, f"shard layout differs from {stores[0].path} (parameters, bands or image shape)"
            )
    images = np.concatenate([s.load_images() for s in stores])
    theta = np.concatenate([s.theta for s in stores])
    frames = []
    for store in stores:
        meta = store.metadata()
        meta.insert(0, "shard_row", np.arange(len(store)))
        meta.insert(0, "shard", int(store.attrs.get("shard", -1)))
        frames.append(meta)
    metadata = pd.concat(frames, ignore_index=True)

    n = len(theta)
    n_test = n_test_images(n, settings.test_fraction)
    order = np.random.default_rng(settings.seed).permutation(n)
    test_idx, train_idx = np.sort(order[:n_test]), np.sort(order[n_test:])
    stats = normalisation(images[train_idx], bands)
    common = {
        key: stores[0].attrs[key]
        for key in ("bands", "pixel_scale", "survey", "sky_noise")
        if key in stores[0].attrs
    }
    for part, idx, path in (("train", train_idx, train_path), ("test", test_idx, test_path)):
        write_store(
            path,
            images[idx],
            theta[idx],
            names,
            attrs={**common, "part": part, "split_seed": settings.seed, "n_shards": len(stores)},
            metadata=metadata.iloc[idx].reset_index(drop=True),
        )
        log.info("%s: %d images -> %s", part, len(idx), path)
    atomic.write_json(normalisation_path, stats)
    return stats


def normalisation(images: np.ndarray, bands: Sequence[str]) -> dict:
    """Per-band mean and standard deviation over all pixels (float64 accumulation)."""
    flat = images.transpose(1, 0, 2, 3).reshape(images.shape[1], -1).astype(np.float64)
    std = flat.std(axis=1)
    if not np.all(np.isfinite(std)) or np.any(std <= 0):
        raise DataError(
            "training images", f"per-band standard deviations must be finite and > 0, got {std.tolist()}"
        )
    return {
        "bands": list(bands),
        "mean": flat.mean(axis=1).tolist(),
        "std": std.tolist(),
        "n_train": int(images.shape[0]),
    }


def read_normalisation(path: str | os.PathLike[str]) -> dict:
    """Read the normalisation JSON written by the split."""
    import json

    path = Path(path)
    try:
        stats = json.loads(path.read_text())
        assert {"bands", "mean", "std"} <= set(stats)
    except Exception as exc:
        raise DataError(path, "expected the split's normalisation JSON with bands, mean and std") from exc
    return stats
