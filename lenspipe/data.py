"""Training data behind a small interface: training/validation batches of (theta, raw images).

`TrainingData` is what the training loop sees; `InMemoryTrainingData` loads a split's training store
into memory (float32, one copy); `lenspipe.stream.StreamingTrainingData` reads it from Zarr window by window, for
studies larger than memory. `load_training_data` chooses between them (`choose_loader`: the config's
`training.loader`, or the training store against `training.memory_budget_mb`). `synthetic_lenses` makes cheap
learnable stand-in data for tests and benchmarks.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lenspipe.errors import DataError
from lenspipe.priors import PriorBox

log = logging.getLogger(__name__)

Batch = tuple[Tensor, Tensor]  # (theta (b, n_params), images (b, bands, H, W))


class TrainingData(ABC):
    """Training and validation pairs, served in batches on the training device."""

    n_train: int
    n_validation: int
    image_shape: tuple[int, ...]
    parameter_names: tuple[str, ...]

    @abstractmethod
    def reference(self, max_pairs: int = 4096) -> Batch:
        """Up to `max_pairs` training pairs, on the CPU, to build an estimator (shapes, theta z-scoring)."""

    @abstractmethod
    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        """One epoch of shuffled full training batches (the last partial batch dropped, as sbi does)."""

    @abstractmethod
    def validation_batches(self, batch_size: int) -> Iterator[Batch]:
        """Every validation pair once, in a fixed order."""

    @abstractmethod
    def image_batches(self, part: str, batch_size: int = 256) -> Iterator[Tensor]:
        """The raw images of the `part` ("train" or "validation") pairs in a fixed order, for their embeddings."""

    @abstractmethod
    def select_parameters(self, names: Sequence[str]) -> TrainingData:
        """The same pairs with theta restricted to the columns `names` (e.g. without a derived theta_E)."""

    def to(self, device: torch.device) -> TrainingData:
        """Serve batches on `device` (default: no-op)."""
        return self

    def batches_per_epoch(self, batch_size: int) -> int:
        """Number of training batches in one epoch."""
        return self.n_train // min(batch_size, self.n_train)


class InMemoryTrainingData(TrainingData):
    """All pairs in memory; train/validation are index sets into them (no copies)."""

    def __init__(
        self,
        theta: Tensor,
        images: Tensor,
        train_index: Tensor,
        validation_index: Tensor,
        parameter_names: Sequence[str],
    ) -> None:
        self.theta, self.images = theta, images
        self.train_index, self.validation_index = train_index, validation_index
        self.n_train, self.n_validation = int(train_index.numel()), int(validation_index.numel())
        self.image_shape = tuple(int(s) for s in images.shape[1:])
        self.parameter_names = tuple(parameter_names)

    def to(self, device: torch.device) -> InMemoryTrainingData:
        """Move the whole data set to `device` once (on a GPU: no host-to-device copy per batch)."""
        if self.images.device == torch.device(device):
            return self
        return InMemoryTrainingData(
            self.theta.to(device),
            self.images.to(device),
            self.train_index.to(device),
            self.validation_index.to(device),
            self.parameter_names,
        )

    def select_parameters(self, names: Sequence[str]) -> InMemoryTrainingData:
        """The same pairs with theta restricted to the columns `names` (e.g. without a derived theta_E)."""
        columns = [self.parameter_names.index(n) for n in names]
        return InMemoryTrainingData(
            self.theta[:, columns].contiguous(), self.images, self.train_index, self.validation_index, names
        )

    def reference(self, max_pairs: int = 4096) -> Batch:
        idx = self.train_index[:max_pairs]
        return self.theta[idx].cpu(), self.images[idx].cpu()

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        batch_size = min(batch_size, self.n_train)
        order = self.train_index[
            torch.randperm(self.n_train, generator=generator).to(self.train_index.device)
        ]
        for start in range(0, self.n_train - batch_size + 1, batch_size):
            idx = order[start : start + batch_size]
            yield self.theta.index_select(0, idx), self.images.index_select(0, idx)

    def validation_batches(self, batch_size: int) -> Iterator[Batch]:
        for start in range(0, self.n_validation, batch_size):
            idx = self.validation_index[start : start + batch_size]
            yield self.theta.index_select(0, idx), self.images.index_select(0, idx)

    def image_batches(self, part: str, batch_size: int = 256) -> Iterator[Tensor]:
        index = (self.train_index if part == "train" else self.validation_index).cpu()
        for start in range(0, len(index), batch_size):
            yield self.images[index[start : start + batch_size].to(self.images.device)]


# The loader when training.loader is absent (auto), and the budget a streaming loader gets when none is set.
DEFAULT_LOADER = "auto"
DEFAULT_STREAM_BUDGET_MB = 2048


def choose_loader(loader: str, memory_budget_mb: int | None, store_bytes: int) -> str:
    """ "memory" or "stream": `loader` if set; auto streams only a store larger than the configured budget (no
    budget: in memory, as every study before the streaming loader)."""
    if loader != "auto":
        return loader
    if memory_budget_mb is not None and store_bytes > memory_budget_mb * 2**20:
        return "stream"
    return "memory"


def split_indices(n: int, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/validation indices; the training part is int((1 - f) n), as sbi counts it."""
    n_train = int((1.0 - validation_fraction) * n)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[:n_train]), np.sort(order[n_train:])


def load_training_data(
    store_path: str | os.PathLike[str],
    parameter_names: Sequence[str],
    bands: Sequence[str],
    box: PriorBox,
    validation_fraction: float,
    seed: int,
    loader: str = DEFAULT_LOADER,
    memory_budget_mb: int | None = None,
) -> TrainingData:
    """Open the training store, check it against the config, split off the validation pairs, and serve them in
    memory or streamed from the store (`choose_loader`)."""
    from lenspipe.store import open_store, window_chunks

    path = Path(store_path)
    store = open_store(store_path, verify=False)
    if list(store.parameter_names) != list(parameter_names):
        raise DataError(
            path,
            f"theta columns are {store.parameter_names}, the config asks for "
            f"{list(parameter_names)} (in this order)",
        )
    if store.bands and list(store.bands) != list(bands):
        raise DataError(path, f"images have bands {store.bands}, the config asks for {list(bands)}")
    shape = tuple(store.images.shape)
    if len(shape) != 4 or shape[1] != len(bands):
        raise DataError(path, f"expected images (n, {len(bands)}, H, W), got shape {shape}")
    n_bytes = 4 * int(np.prod(shape))
    kind = choose_loader(loader, memory_budget_mb, n_bytes)
    if kind == "stream":
        from lenspipe import stream

        budget = memory_budget_mb if memory_budget_mb is not None else DEFAULT_STREAM_BUDGET_MB
        image_bytes = n_bytes // max(shape[0], 1)
        window_chunks(
            budget, int(store.images.chunks[0]), image_bytes
        )  # the budget holds one window at least
    else:
        from lenspipe.store import verify_store

        verify_store(store)
        images = store.load_images()
        bad = int(np.count_nonzero(~np.isfinite(images).all(axis=(1, 2, 3))))
        if bad:
            raise DataError(path, f"{bad} images contain NaN or inf pixels")
    theta = check_theta_in_box(store.theta, box, path)
    n_train = int((1.0 - validation_fraction) * len(theta))
    if n_train < 1 or len(theta) - n_train < 1:
        raise DataError(
            path,
            f"{len(theta)} pairs cannot give both training and validation pairs "
            f"(validation_fraction {validation_fraction})",
        )
    train_idx, val_idx = split_indices(len(theta), validation_fraction, seed)
    if kind == "stream":
        # The validation pairs stay in memory if they take at most half the budget; the windows get the rest.
        val_bytes = len(val_idx) * image_bytes
        keep = val_bytes <= budget * 2**20 / 2
        verified = stream.verify_chunks(store, val_idx if keep else None)
        window = window_chunks(budget, int(store.images.chunks[0]), image_bytes, val_bytes if keep else 0)
        log.info(
            "%s: streaming %.2f GB of images (memory budget %d MB: shuffle windows of %d chunks of %d images, "
            "validation pairs %s)",
            path,
            n_bytes / 1e9,
            budget,
            window,
            store.images.chunks[0],
            "in memory" if keep else "streamed",
        )
        return stream.StreamingTrainingData(
            store, verified, theta, train_idx, val_idx, parameter_names, window
        )
    return InMemoryTrainingData(
        torch.from_numpy(theta),
        torch.from_numpy(images),
        torch.from_numpy(train_idx),
        torch.from_numpy(val_idx),
        parameter_names,
    )


def check_theta_in_box(theta: np.ndarray, box: PriorBox, path: object, rtol: float = 1e-5) -> np.ndarray:
    """theta inside the prior box (float32 rounding at the edges clamped); far outside is a DataError."""
    low = np.asarray(box.low, dtype=np.float32)
    high = np.asarray(box.high, dtype=np.float32)
    slack = rtol * (high - low)
    outside = (theta < low - slack) | (theta > high + slack) | ~np.isfinite(theta)
    if outside.any():
        col = int(np.argmax(outside.any(axis=0)))
        n = int(outside[:, col].sum())
        raise DataError(
            path,
            f"{n} values of {box.names[col]} lie outside the prior box "
            f"[{box.low[col]:g}, {box.high[col]:g}] (simulated with other priors?)",
        )
    return np.clip(theta, low, high).astype(np.float32)


def synthetic_lenses(
    n: int, box: PriorBox, seed: int, bands: int = 3, num_pix: int = 64, noise: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """(images, theta): a ring whose radius, ellipticity and band fluxes follow theta, plus noise.

    Not a lens simulator: a cheap stand-in whose images depend on theta, so a network can learn.
    """
    rng = np.random.default_rng(seed)
    low, high = np.asarray(box.low), np.asarray(box.high)
    unit = rng.random((n, len(low)))
    theta = (low + unit * (high - low)).astype(np.float32)
    ax = (np.arange(num_pix) - (num_pix - 1) / 2) / (num_pix / 2)
    yy, xx = np.meshgrid(ax, ax, indexing="ij")
    radius = 0.2 + 0.5 * unit[:, 0]
    q1 = 0.6 * (unit[:, 1 % len(low)] - 0.5) if len(low) > 1 else np.zeros(n)
    q2 = 0.6 * (unit[:, 2 % len(low)] - 0.5) if len(low) > 2 else np.zeros(n)
    r = np.sqrt(
        ((1 + q1)[:, None, None] * xx) ** 2
        + ((1 - q1)[:, None, None] * yy) ** 2
        + 2 * q2[:, None, None] * xx * yy
    )
    ring = np.exp(-0.5 * ((r - radius[:, None, None]) / 0.06) ** 2)
    images = np.empty((n, bands, num_pix, num_pix), dtype=np.float32)
    for b in range(bands):
        flux = 1.0 + unit[:, (3 + b) % len(low)]
        images[:, b] = flux[:, None, None] * ring + noise * rng.standard_normal((n, num_pix, num_pix))
    return images, theta
