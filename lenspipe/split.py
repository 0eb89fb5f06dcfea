"""Train/test split: concatenate the shards, permute them with a seeded generator, and compute the
per-band normalisation statistics on the training part only (later stages read only these)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lenspipe import depth
from lenspipe.config import n_test_images
from lenspipe.errors import DataError
from lenspipe.normalisation import Normalisation
from lenspipe.seeds import split_seed
from lenspipe.store import open_store, write_store

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
    frames, blocks = [], []
    for store in stores:
        meta = store.metadata()
        blocks.append(store.load_images())
        if check_depth:  # images that do not match their metadata's depth stop here, named
            depth.check_noise(blocks[-1], meta, bands, str(store.path))
        meta.insert(0, "shard_row", np.arange(len(store)))
        meta.insert(0, "shard", int(store.attrs.get("shard", -1)))
        frames.append(meta)
    metadata = pd.concat(frames, ignore_index=True)
    images = np.concatenate(blocks)
    del blocks

    n = len(theta)
    n_test = n_test_images(n, settings.test_fraction)
    order = np.random.default_rng(settings.seed).permutation(n)
    test_idx, train_idx = np.sort(order[:n_test]), np.sort(order[n_test:])
    stats = Normalisation.from_images(images[train_idx], bands)
    common = {
        key: stores[0].attrs[key]
        for key in ("bands", "pixel_scale", "survey", "sky_noise", "zero_points", "exposures")
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
    stats.write(normalisation_path)
    return stats.as_dict()
