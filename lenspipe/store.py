"""Zarr stores of lens images: `images` (n, bands, H, W) float32, `theta` (n, n_params) float32.

One layout for simulation shards and for the split's train/test stores. Each store is written
atomically (temporary directory, then rename) and carries SHA-256 checksums of its arrays, so a
missing, damaged or truncated chunk is detected on open instead of being read as zeros.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lenspipe import parameters as params_table
from lenspipe.atomic import atomic_path
from lenspipe.errors import DataError

METADATA_FILE = "metadata.parquet"
CHUNK_IMAGES = 256


def zarr_codecs() -> dict[str, Any]:
    from zarr.codecs import ZstdCodec

    return {"compressors": ZstdCodec(level=1, checksum=True)}


def write_store(
    path: str | os.PathLike[str],
    images: np.ndarray,
    theta: np.ndarray,
    parameter_names: list[str] | tuple[str, ...],
    attrs: Mapping[str, Any] | None = None,
    metadata: Any = None,
    chunk_size: int = CHUNK_IMAGES,
) -> None:
    """Write a store atomically: images (n, bands, H, W), theta (n, n_params), optional metadata table."""
    import zarr

    images = np.ascontiguousarray(images, dtype=np.float32)
    theta = np.ascontiguousarray(theta, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"images must be (n, bands, H, W), got shape {images.shape}")
    if theta.shape != (images.shape[0], len(parameter_names)):
        raise ValueError(
            f"theta shape {theta.shape} does not match {images.shape[0]} images x {len(parameter_names)} parameters"
        )
    with atomic_path(path) as tmp:
        group = zarr.open_group(str(tmp), mode="w")
        chunk = max(1, min(chunk_size, images.shape[0]))
        img = group.create_array(
            "images", shape=images.shape, chunks=(chunk, *images.shape[1:]), dtype="float32", **zarr_codecs()
        )
        img[:] = images
        th = group.create_array(
            "theta",
            shape=theta.shape,
            chunks=theta.shape if theta.size else (1, 1),
            dtype="float32",
            **zarr_codecs(),
        )
        th[:] = theta
        table = params_table.get(list(parameter_names))
        th.attrs.update(
            {
                "parameter_names": [p.name for p in table],
                "units": [p.unit for p in table],
                "labels": [p.label for p in table],
            }
        )
        group.attrs.update(
            {
                **(dict(attrs) if attrs else {}),
                "n": int(images.shape[0]),
                "checksums": {"images": _sha256(images), "theta": _sha256(theta)},
            }
        )
        if metadata is not None:
            metadata.to_parquet(tmp / METADATA_FILE, index=False)


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def sha256_chunked(array: Any, step: int) -> str:
    digest = hashlib.sha256()
    for start in range(0, array.shape[0], step):
        digest.update(np.ascontiguousarray(array[start : start + step]).tobytes())
    return digest.hexdigest()


@dataclass
class Store:
    """An opened store: `images` stays on disk (a zarr array), `theta` is loaded."""

    path: Path
    images: Any
    theta: np.ndarray
    parameter_names: list[str]
    attrs: dict[str, Any]

    def __len__(self) -> int:
        return int(self.theta.shape[0])

    @property
    def bands(self) -> list[str]:
        return list(self.attrs.get("bands", []))

    def load_images(self, index: np.ndarray | slice | None = None) -> np.ndarray:
        """Images as a float32 numpy array (all, a slice, or sorted integer indices)."""
        try:
            if index is None:
                return np.asarray(self.images[:], dtype=np.float32)
            if isinstance(index, slice):
                return np.asarray(self.images[index], dtype=np.float32)
            return np.asarray(self.images.get_orthogonal_selection((np.asarray(index),)), dtype=np.float32)
        except Exception as exc:  # zarr/numcodecs raise many kinds on damaged chunks
            raise DataError(self.path, f"cannot read images ({type(exc).__name__}: {exc})") from exc

    def iter_images(self, batch: int = CHUNK_IMAGES) -> Iterator[np.ndarray]:
        """Images in consecutive batches, for stores larger than memory."""
        for start in range(0, len(self), batch):
            yield self.load_images(slice(start, start + batch))

    def metadata(self) -> Any:
        """The per-image metadata table (pandas DataFrame)."""
        import pandas as pd

        file = self.path / METADATA_FILE
        if not file.exists():
            raise DataError(self.path, f"no {METADATA_FILE} in the store")
        return pd.read_parquet(file)


def open_store(path: str | os.PathLike[str], verify: bool = True) -> Store:
    """Open a store, checking its layout and (if `verify`) every chunk against the stored checksums."""
    import zarr

    path = Path(path)
    if not path.is_dir():
        raise DataError(path, "store not found (expected a Zarr directory)")
    try:
        group = zarr.open_group(str(path), mode="r")
        attrs = dict(group.attrs)
        images = group["images"]
        theta_arr = group["theta"]
        theta = np.asarray(theta_arr[:], dtype=np.float32)
        names = list(theta_arr.attrs["parameter_names"])
    except Exception as exc:
        raise DataError(path, f"truncated or damaged store ({type(exc).__name__}: {exc})") from exc
    n = attrs.get("n")
    if n is None or "checksums" not in attrs:
        raise DataError(path, "store has no size/checksum attributes (not written by lenspipe, or truncated)")
    if images.shape[0] != n or theta.shape[0] != n:
        raise DataError(path, f"expected {n} images and labels, found {images.shape[0]} and {theta.shape[0]}")
    store = Store(path, images, theta, names, attrs)
    if verify:
        verify_store(store)
    return store


def verify_store(store: Store) -> None:
    """Recompute the arrays' checksums chunk by chunk; a mismatch names the store and the array."""
    expected = store.attrs["checksums"]
    if _sha256(store.theta) != expected["theta"]:
        raise DataError(store.path, "theta does not match its checksum (damaged or missing chunk)")
    try:
        got = sha256_chunked(store.images, step=int(store.images.chunks[0]))
    except Exception as exc:
        raise DataError(store.path, f"cannot read images ({type(exc).__name__}: {exc})") from exc
    if got != expected["images"]:
        raise DataError(store.path, "images do not match their checksum (damaged or missing chunk)")
