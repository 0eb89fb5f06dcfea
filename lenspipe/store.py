"""Zarr stores of lens images: `images` (n, bands, H, W) float32, `theta` (n, n_params) float32.

One layout for simulation shards and for the split's train/test stores. Each store is written
atomically (temporary directory, then rename) and carries SHA-256 checksums of its arrays, so a
missing, damaged or truncated chunk is detected on open instead of being read as zeros.

Images are stored uncompressed in chunks of 256 images, chosen by measurement (benchmarks/store_codecs.py, 4,096
survey images): noisy images compress by 5-7 % only, and uncompressed chunks read at 3.3 GB/s against 1.7 GB/s
with blosc-lz4 and 0.7 GB/s with zstd, so the streaming training loader never waits on decompression.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from lenspipe import parameters as params_table
from lenspipe.atomic import atomic_path
from lenspipe.errors import ConfigError, DataError

T = TypeVar("T")
METADATA_FILE = "metadata.parquet"
CHUNK_IMAGES = 256


def zarr_codecs() -> dict[str, Any]:
    from zarr.codecs import ZstdCodec

    return {"compressors": ZstdCodec(level=1, checksum=True)}


def image_codecs() -> dict[str, Any]:
    """Images uncompressed: read speed at training time over 6 % of disk (module docstring); integrity is the
    store's SHA-256."""
    return {"compressors": None}


# Chunk-sized buffers the streaming loader needs beyond its windows: a batch, or a chunk read through Zarr.
EXTRA_CHUNKS = 1
# Windows the streaming loader holds at once: the one served and the next one being read.
WINDOW_COPIES = 2


def window_chunks(budget_mb: int, chunk_images: int, image_bytes: int, reserved_bytes: int = 0) -> int:
    """Chunks per shuffle window of the streaming loader (lenspipe.stream) that fit `budget_mb` less
    `reserved_bytes` (validation pairs kept in memory); a budget below one window of one chunk is a ConfigError
    naming the key."""
    chunk_bytes = chunk_images * image_bytes
    chunks = (int(budget_mb) * 2**20 - reserved_bytes) // chunk_bytes
    if chunks < WINDOW_COPIES + EXTRA_CHUNKS:
        need = math.ceil(((WINDOW_COPIES + EXTRA_CHUNKS) * chunk_bytes + reserved_bytes) / 2**20)
        raise ConfigError(
            "training.memory_budget_mb",
            f"at least {need} MB for the streaming loader ({WINDOW_COPIES + EXTRA_CHUNKS} chunks of "
            f"{chunk_images} images of {image_bytes / 1e3:.0f} kB: a window served, the next being read, a batch)",
            budget_mb,
        )
    return int(chunks - EXTRA_CHUNKS) // WINDOW_COPIES


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
    images = np.ascontiguousarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"images must be (n, bands, H, W), got shape {images.shape}")
    write_store_blocks(
        path, [images], images.shape, theta, parameter_names, attrs, metadata, chunk_size=chunk_size
    )


def write_store_blocks(
    path: str | os.PathLike[str],
    blocks: Iterable[np.ndarray],
    shape: tuple[int, ...],
    theta: np.ndarray,
    parameter_names: list[str] | tuple[str, ...],
    attrs: Mapping[str, Any] | None = None,
    metadata: Any = None,
    chunk_size: int = CHUNK_IMAGES,
) -> None:
    """Write a store atomically from consecutive image blocks (together `shape`), whole chunks at a time, so a
    store larger than memory is written holding one block and one chunk (the split)."""
    import zarr

    theta = np.ascontiguousarray(theta, dtype=np.float32)
    if theta.shape != (shape[0], len(parameter_names)):
        raise ValueError(
            f"theta shape {theta.shape} does not match {shape[0]} images x {len(parameter_names)} parameters"
        )
    with atomic_path(path) as tmp:
        group = zarr.open_group(str(tmp), mode="w")
        chunk = max(1, min(chunk_size, shape[0]))
        img = group.create_array(
            "images", shape=shape, chunks=(chunk, *shape[1:]), dtype="float32", **image_codecs()
        )
        digest = hashlib.sha256()
        pending: list[np.ndarray] = []
        written = held = 0
        for block in blocks:
            block = np.ascontiguousarray(block, dtype=np.float32)
            digest.update(block.tobytes())
            pending.append(block)
            held += len(block)
            if held >= chunk:
                data = pending[0] if len(pending) == 1 else np.concatenate(pending)
                whole = (held // chunk) * chunk
                img[written : written + whole] = data[:whole]
                written, held = written + whole, held - whole
                pending = [data[whole:]] if held else []
        if held:
            img[written : written + held] = pending[0] if len(pending) == 1 else np.concatenate(pending)
            written += held
        if written != shape[0]:
            raise ValueError(f"image blocks hold {written} images, the store's shape says {shape[0]}")
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
                "n": int(shape[0]),
                "checksums": {"images": digest.hexdigest(), "theta": _sha256(theta)},
            }
        )
        if metadata is not None:
            metadata.to_parquet(tmp / METADATA_FILE, index=False)


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def sha256_chunked(array: Any, step: int, per_step: list[str] | None = None) -> str:
    """SHA-256 of `array` read `step` rows at a time; `per_step` (if given) receives each step's own SHA-256."""
    digest = hashlib.sha256()
    for start in range(0, array.shape[0], step):
        data = np.ascontiguousarray(array[start : start + step]).tobytes()
        digest.update(data)
        if per_step is not None:
            per_step.append(hashlib.sha256(data).hexdigest())
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


def open_group(
    path: str | os.PathLike[str], kind: str, expected: str, read: Callable[[Any], T]
) -> tuple[Path, T]:
    """Open the Zarr group at `path` read-only and return `read(group)`: a missing directory, or a group `read`
    fails on (zarr raises many kinds on damaged stores), is a DataError naming the file and the `kind` of store."""
    import zarr

    path = Path(path)
    if not path.is_dir():
        raise DataError(path, f"{kind} not found (expected {expected})")
    try:
        return path, read(zarr.open_group(str(path), mode="r"))
    except Exception as exc:
        raise DataError(path, f"truncated or damaged {kind} ({type(exc).__name__}: {exc})") from exc


def verify_checksum(
    path: str | os.PathLike[str],
    array: Any,
    step: int,
    expected: str | None,
    mismatch: str,
    per_step: list[str] | None = None,
) -> None:
    """Recompute the SHA-256 of `array` (a Zarr or numpy array) `step` rows at a time; DataError(path, mismatch) when it
    differs from `expected`, and a DataError naming the path when a chunk cannot be read. `per_step` receives each
    step's SHA-256 (the streaming loader checks every chunk it reads later against them)."""
    try:
        got = sha256_chunked(array, step=max(1, int(step)), per_step=per_step)
    except Exception as exc:
        raise DataError(path, f"cannot read {mismatch.split()[0]} ({type(exc).__name__}: {exc})") from exc
    if got != expected:
        raise DataError(path, mismatch)


def open_store(path: str | os.PathLike[str], verify: bool = True) -> Store:
    """Open a store, checking its layout and (if `verify`) every chunk against the stored checksums."""

    def read(group: Any) -> tuple[dict[str, Any], Any, np.ndarray, list[str]]:
        theta_arr = group["theta"]
        return (
            dict(group.attrs),
            group["images"],
            np.asarray(theta_arr[:], dtype=np.float32),
            list(theta_arr.attrs["parameter_names"]),
        )

    path, (attrs, images, theta, names) = open_group(path, "store", "a Zarr directory", read)
    n = attrs.get("n")
    if n is None or "checksums" not in attrs:
        raise DataError(path, "store has no size/checksum attributes (not written by lenspipe, or truncated)")
    if images.shape[0] != n or theta.shape[0] != n:
        raise DataError(path, f"expected {n} images and labels, found {images.shape[0]} and {theta.shape[0]}")
    store = Store(path, images, theta, names, attrs)
    if verify:
        verify_store(store)
    return store


def verify_store(store: Store) -> list[str]:
    """Recompute the arrays' checksums chunk by chunk; a mismatch names the store and the array. Returns each image
    chunk's SHA-256 (verified with the whole array's)."""
    expected = store.attrs["checksums"]
    chunk_digests: list[str] = []
    verify_checksum(
        store.path,
        store.theta,
        len(store.theta),
        expected["theta"],
        "theta does not match its checksum (damaged or missing chunk)",
    )
    verify_checksum(
        store.path,
        store.images,
        store.images.chunks[0],
        expected["images"],
        "images do not match their checksum (damaged or missing chunk)",
        chunk_digests,
    )
    return chunk_digests
