"""Training data streamed from the split's Zarr training store, for studies larger than memory.

Order: each epoch the store's chunks are shuffled with the training generator, grouped into windows of
`window_chunks` chunks, and the training pairs of each window are shuffled; batches are consecutive runs of that
order (the last partial batch dropped, as the in-memory loader does). Every draw is made when the epoch starts, in
the calling thread, so the generator's state after an epoch (saved in the trainer's checkpoint) fixes the next
epoch: a job killed mid-epoch resumes from its last checkpoint bit-identically. A worker thread reads and checks
the next window's chunks into one of two buffers while the other is served; each batch is gathered (copied) from
its window, as the in-memory loader gathers from the whole set. The validation pairs stay in memory when they take
at most half the budget (read once, at the start), else they are streamed in order each epoch.

A store modified during training stops the job with a DataError: every chunk's SHA-256 is recorded when the store
is verified against its checksums at the start, with its file's identity (inode, size, modification time); a chunk
whose file changed since is hashed again when read and must match. (Hashing every read would cost 0.6 s per GB.)
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lenspipe.data import Batch, TrainingData
from lenspipe.errors import DataError
from lenspipe.store import Store

log = logging.getLogger(__name__)

MIN_CHUNK_IMAGES = 32  # smaller chunks: many small reads per window (warned)
MIN_WINDOW_CHUNKS = 4  # a window of fewer chunks shuffles poorly (warned)


@dataclass
class VerifiedStore:
    """What the start-of-training pass learnt: each chunk's SHA-256 and file identity, the validation images
    (None: streamed)."""

    digests: list[str]
    signatures: list[tuple[int, int, int] | None]
    validation: np.ndarray | None


def chunk_file(store: Store, c: int) -> Path:
    """The file of image chunk `c` (a local Zarr v3 store)."""
    return store.path / "images" / store.images.metadata.encode_chunk_key((c, 0, 0, 0))


def signature(path: Path) -> tuple[int, int, int] | None:
    """A file's identity: inode, size, modification time (None: missing)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def uncompressed(store: Store) -> bool:
    """Whether the images are stored as plain little-endian float32 bytes in C order (the split's layout), so a
    chunk's file is its images."""
    meta = store.images.metadata
    codecs = getattr(meta, "codecs", ())
    return (
        len(codecs) == 1
        and type(codecs[0]).__name__ == "BytesCodec"
        and str(getattr(codecs[0].endian, "value", codecs[0].endian)) in ("little", "None")
        and str(store.images.dtype) == "float32"
    )


def verify_chunks(store: Store, validation_index: np.ndarray | None = None) -> VerifiedStore:
    """One pass over the images: the store's checksums verified, every chunk's SHA-256 and file identity recorded,
    non-finite pixels refused (the in-memory loader's checks, without holding the images), and the images of the
    sorted rows `validation_index` kept if given."""
    path, images = store.path, store.images
    expected = store.attrs["checksums"]
    if hashlib.sha256(np.ascontiguousarray(store.theta).tobytes()).hexdigest() != expected["theta"]:
        raise DataError(path, "theta does not match its checksum (damaged or missing chunk)")
    step = int(images.chunks[0])
    whole, digests, signatures, bad = hashlib.sha256(), [], [], 0
    kept = (
        None if validation_index is None else np.empty((len(validation_index), *images.shape[1:]), np.float32)
    )
    at = 0
    for c, start in enumerate(range(0, images.shape[0], step)):
        signatures.append(signature(chunk_file(store, c)))
        block = np.ascontiguousarray(store.load_images(slice(start, start + step)))
        whole.update(block)
        digests.append(hashlib.sha256(block).hexdigest())
        bad += int(np.count_nonzero(~np.isfinite(block).all(axis=(1, 2, 3))))
        if kept is not None:
            rows = validation_index[(validation_index >= start) & (validation_index < start + step)] - start
            kept[at : at + len(rows)] = block[rows]
            at += len(rows)
    if whole.hexdigest() != expected["images"]:
        raise DataError(path, "images do not match their checksum (damaged or missing chunk)")
    if bad:
        raise DataError(path, f"{bad} images contain NaN or inf pixels")
    return VerifiedStore(digests, signatures, kept)


class StreamingTrainingData(TrainingData):
    """Training pairs read from the store window by window (module docstring); theta (small) is in memory."""

    def __init__(
        self,
        store: Store,
        verified: VerifiedStore,
        theta: np.ndarray,
        train_index: np.ndarray,
        validation_index: np.ndarray,
        parameter_names: Sequence[str],
        window_chunks: int,
    ) -> None:
        self.store, self.digests, self.signatures = store, verified.digests, verified.signatures
        self.validation = verified.validation
        self.chunk = int(store.images.chunks[0])
        self.theta = torch.from_numpy(np.ascontiguousarray(theta, dtype=np.float32))
        self.train_index = np.asarray(train_index, dtype=np.int64)
        self.validation_index = np.asarray(validation_index, dtype=np.int64)
        self.n_train, self.n_validation = len(self.train_index), len(self.validation_index)
        self.image_shape = tuple(int(s) for s in store.images.shape[1:])
        self.parameter_names = tuple(parameter_names)
        self.window_chunks = int(window_chunks)
        self.device = torch.device("cpu")
        n_chunks = len(self.digests)
        bounds = np.searchsorted(self.train_index, np.arange(n_chunks + 1) * self.chunk)
        self.chunk_rows = [self.train_index[bounds[c] : bounds[c + 1]] for c in range(n_chunks)]
        self.raw = uncompressed(store)
        self._warn_chunking()

    def _warn_chunking(self) -> None:
        """Chunks the loader reads slowly or shuffles poorly are warned about, not refused."""
        chunks = tuple(self.store.images.chunks)
        if not self.raw:
            log.warning(
                "%s: images stored with codecs %s: the streaming loader decodes every chunk each epoch (zstd reads "
                "at 0.7 GB/s, uncompressed at 3.3 GB/s); the split now writes them uncompressed",
                self.store.path,
                [type(codec).__name__ for codec in self.store.images.metadata.codecs],
            )
        if chunks[1:] != self.image_shape:
            log.warning(
                "%s: images chunked %s split each image over several chunks; the streaming loader reads whole "
                "chunks and will be slow (re-run the split to write chunks of whole images)",
                self.store.path,
                chunks,
            )
        elif self.chunk < MIN_CHUNK_IMAGES:
            log.warning(
                "%s: chunks of %d images are small for streaming (many small reads; the split writes 256)",
                self.store.path,
                self.chunk,
            )
        if self.window_chunks < MIN_WINDOW_CHUNKS:
            log.warning(
                "%s: a shuffle window of %d chunks (%d images) draws each batch from few chunks; a larger "
                "training.memory_budget_mb shuffles better",
                self.store.path,
                self.window_chunks,
                self.window_chunks * self.chunk,
            )

    def to(self, device: torch.device) -> StreamingTrainingData:
        """Serve batches on `device` (each batch copied there when served)."""
        moved = copy.copy(self)
        moved.device = torch.device(device)
        return moved

    def select_parameters(self, names: Sequence[str]) -> StreamingTrainingData:
        """The same pairs with theta restricted to the columns `names`."""
        columns = [self.parameter_names.index(n) for n in names]
        out = copy.copy(self)
        out.theta, out.parameter_names = self.theta[:, columns].contiguous(), tuple(names)
        return out

    def read_chunk(self, c: int, out: np.ndarray | None = None) -> np.ndarray:
        """Chunk `c`'s images (into `out`, a chunk-sized buffer, if given); hashed and checked against the SHA-256
        recorded when training started if its file changed since. An uncompressed chunk is read straight from its
        file (5x faster than through Zarr here)."""
        path = chunk_file(self.store, c)
        changed = signature(path) != self.signatures[c]
        rows = min(self.chunk, len(self.theta) - c * self.chunk)
        block = np.empty((self.chunk, *self.image_shape), dtype=np.float32) if out is None else out
        if not (self.raw and self._read_raw(path, block)):
            block[:rows] = self.store.load_images(slice(c * self.chunk, c * self.chunk + rows))
        if changed and hashlib.sha256(block[:rows]).hexdigest() != self.digests[c]:
            raise DataError(
                self.store.path,
                f"images chunk {c} changed since training started (the store was modified during training; "
                "re-run the split, then the training)",
            )
        return block

    @staticmethod
    def _read_raw(path: Path, block: np.ndarray) -> bool:
        """Read a whole uncompressed chunk file (padding rows included) into `block`; False if it is not one."""
        try:
            with open(path, "rb", buffering=0) as f:
                return (
                    os.fstat(f.fileno()).st_size == block.nbytes
                    and f.readinto(memoryview(block).cast("B")) == block.nbytes
                )
        except OSError:
            return False

    def epoch_plan(self, generator: torch.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per window: its chunks and the permutation of its training rows; all drawn from `generator` now."""
        order = torch.randperm(len(self.digests), generator=generator).numpy()
        plan = []
        for w in range(0, len(order), self.window_chunks):
            chunks = order[w : w + self.window_chunks]
            n_rows = sum(len(self.chunk_rows[c]) for c in chunks)
            plan.append((chunks, torch.randperm(n_rows, generator=generator).numpy()))
        return plan

    def load_window(
        self, chunks: np.ndarray, perm: np.ndarray, buffer: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Read one window's chunks into `buffer` (a worker thread); returns the global rows of its training pairs
        in their shuffled order, their positions in the buffer, and the buffer."""
        rows, where = [], []
        for k, c in enumerate(chunks):
            local = self.chunk_rows[c] - c * self.chunk
            if len(local):
                self.read_chunk(int(c), buffer[k * self.chunk : (k + 1) * self.chunk])
                rows.append(self.chunk_rows[c])
                where.append(local + k * self.chunk)
        if not rows:
            return np.empty(0, np.int64), np.empty(0, np.int64), buffer
        return np.concatenate(rows)[perm], np.concatenate(where)[perm], buffer

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        batch_size = min(batch_size, self.n_train)
        return self._serve(self.epoch_plan(generator), batch_size)

    def _serve(self, plan: list[tuple[np.ndarray, np.ndarray]], batch_size: int) -> Iterator[Batch]:
        """Batches of `plan`'s order, each gathered (copied) from its window's buffer, as the in-memory loader
        gathers; the next window is read into the other of two buffers on a worker thread while one is served."""
        executor = ThreadPoolExecutor(1, thread_name_prefix="lenspipe-stream")
        futures: dict[int, Future] = {}
        buffers = [
            np.empty((self.window_chunks * self.chunk, *self.image_shape), np.float32) for _ in range(2)
        ]

        def submit(w: int) -> None:
            if w < len(plan):
                futures[w] = executor.submit(self.load_window, *plan[w], buffers[w % 2])

        try:
            submit(0)
            submit(1)
            window, (rows, where, images), offset = 0, futures.pop(0).result(), 0
            for _ in range(self.n_train // batch_size):
                need, parts_rows, parts = batch_size, [], []
                while need:
                    if offset == len(rows):
                        window += 1
                        (rows, where, images), offset = futures.pop(window).result(), 0
                        submit(window + 1)  # into the buffer just served: its pairs are all copied out
                        continue
                    take = min(need, len(rows) - offset)
                    parts_rows.append(rows[offset : offset + take])
                    parts.append(images.take(where[offset : offset + take], axis=0))
                    offset, need = offset + take, need - take
                idx = parts_rows[0] if len(parts_rows) == 1 else np.concatenate(parts_rows)
                x = parts[0] if len(parts) == 1 else np.concatenate(parts)
                yield self._batch(idx, x)
        finally:
            for future in futures.values():
                future.cancel()
            executor.shutdown(wait=True, cancel_futures=True)

    def _batch(self, rows: np.ndarray, images: np.ndarray) -> Batch:
        theta = self.theta.index_select(0, torch.from_numpy(rows))
        return theta.to(self.device), torch.from_numpy(images).to(self.device)

    def ordered_images(self, index: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(rows, images) of the sorted rows `index` in batches of `batch_size`, chunks read ahead on a thread."""
        needed = iter(np.unique(index // self.chunk).tolist())
        executor = ThreadPoolExecutor(1, thread_name_prefix="lenspipe-stream")
        futures: dict[int, Future] = {}

        def top_up() -> None:
            while len(futures) < 2:
                c = next(needed, None)
                if c is None:
                    return
                futures[c] = executor.submit(self.read_chunk, c)

        try:
            loaded: dict[int, np.ndarray] = {}
            for start in range(0, len(index), batch_size):
                idx = index[start : start + batch_size]
                owner = idx // self.chunk
                parts = []
                for c in np.unique(owner).tolist():
                    if c not in loaded:
                        top_up()
                        loaded[c] = futures.pop(c).result()
                    parts.append(loaded[c][idx[owner == c] - c * self.chunk])
                for c in [c for c in loaded if c < owner[-1]]:
                    del loaded[c]
                top_up()
                yield idx, parts[0] if len(parts) == 1 else np.concatenate(parts)
        finally:
            for future in futures.values():
                future.cancel()
            executor.shutdown(wait=True, cancel_futures=True)

    def validation_batches(self, batch_size: int) -> Iterator[Batch]:
        for rows, images in self._validation(batch_size):
            yield self._batch(rows, images)

    def _validation(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(rows, images) of the validation pairs in order: from memory if kept, else read chunk by chunk."""
        if self.validation is None:
            yield from self.ordered_images(self.validation_index, batch_size)
            return
        for start in range(0, self.n_validation, batch_size):
            stop = start + batch_size
            yield self.validation_index[start:stop], self.validation[start:stop]

    def reference(self, max_pairs: int = 4096) -> Batch:
        idx = self.train_index[:max_pairs]
        rows, images = next(self.ordered_images(idx, len(idx)))
        return self.theta[torch.from_numpy(rows)], torch.from_numpy(images)

    def image_batches(self, part: str, batch_size: int = 256) -> Iterator[torch.Tensor]:
        batches = (
            self.ordered_images(self.train_index, batch_size)
            if part == "train"
            else self._validation(batch_size)
        )
        for _, images in batches:
            yield torch.from_numpy(images)
