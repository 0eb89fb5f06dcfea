"""Train/test split: permute the shards' images with a seeded generator into a train and a test store, and compute
the per-band normalisation statistics on the training part only (later stages read only these).

The images are never all in memory: each store is written shard by shard, whole chunks at a time
(`store.write_store_blocks`), and the statistics are read back from the training store chunk by chunk
(`Normalisation.from_array`). Peak memory: one shard's images, one chunk, and one band of the training images in
float64 up to `normalisation.EXACT_MAX_BYTES` (a larger study is reduced in two chunked passes instead). The stores
are copies, not an index over the shards: training then reads one contiguous store in large chunks.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lenspipe import depth
from lenspipe.config import n_test_images
from lenspipe.errors import DataError
from lenspipe.normalisation import Normalisation
from lenspipe.seeds import split_seed
from lenspipe.store import Store, open_store, write_store_blocks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitSettings:
    """How the shards are divided."""

    test_fraction: float
    seed: int

    @classmethod
    def from_params(cls, split: Mapping[str, Any], global_seed: int) -> SplitSettings:
        return cls(float(split["test_fraction"]), split_seed(global_seed))


def split(
    *,
    shards: Sequence[str | os.PathLike[str]],
    train: str | os.PathLike[str],
    test: str | os.PathLike[str],
    normalisation: str | os.PathLike[str],
    split: Mapping[str, Any],
    seed: int,
) -> dict:
    """Rule split: train and test stores and normalisation JSON from the shards; `split` is the config's section."""
    return split_shards(shards, train, test, normalisation, SplitSettings.from_params(split, seed))


def split_shards(
    shards: Sequence[str | os.PathLike[str]],
    train_path: str | os.PathLike[str],
    test_path: str | os.PathLike[str],
    normalisation_path: str | os.PathLike[str],
    settings: SplitSettings,
    check_depth: bool = True,
) -> dict:
    """Write the train and test stores and normalisation JSON; returns the normalisation statistics.

    Each shard's image noise is checked against its metadata's noise (`lenspipe.depth.check_noise`);
    `check_depth=False` is for synthetic stores that carry no simulator metadata.
    """
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
    common = {
        key: stores[0].attrs[key]
        for key in ("bands", "pixel_scale", "survey", "sky_noise", "zero_points", "exposures")
        if key in stores[0].attrs
    }
    # The train pass reads every shard, so each shard's noise is checked there (check_depth).
    for part, idx, path, check in (
        ("train", train_idx, train_path, check_depth),
        ("test", test_idx, test_path, False),
    ):
        write_store_blocks(
            path,
            shard_blocks(stores, frames, idx, bands, check),
            (len(idx), *stores[0].images.shape[1:]),
            theta[idx],
            names,
            attrs={**common, "part": part, "split_seed": settings.seed, "n_shards": len(stores)},
            metadata=metadata.iloc[idx].reset_index(drop=True),
        )
        log.info("%s: %d images -> %s", part, len(idx), path)
    stats = Normalisation.from_array(open_store(train_path, verify=False).images, bands)
    stats.write(normalisation_path)
    return stats.as_dict()


def shard_blocks(
    stores: Sequence[Store], frames: Sequence[Any], idx: np.ndarray, bands: Sequence[str], check_depth: bool
) -> Iterator[np.ndarray]:
    """The images of the sorted global rows `idx`, one shard's block at a time (one shard in memory); with
    `check_depth`, each shard's noise is checked against its metadata (`lenspipe.depth.check_noise`) first."""
    start = 0
    for store, meta in zip(stores, frames, strict=True):
        stop = start + len(store)
        rows = idx[(idx >= start) & (idx < stop)] - start
        if check_depth or len(rows):
            images = store.load_images()
            if check_depth:  # images that do not match their metadata's depth stop here, named
                depth.check_noise(images, meta, bands, str(store.path))
            yield images[rows]
            del images
        start = stop
