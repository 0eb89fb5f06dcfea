"""Posterior samples for every test image: drawn in image batches with a trained estimator, stored in Zarr.

The samples store holds `samples` (n_test, n_samples, n_params) float32 in physical units, with the
parameter names, units, prior box and seed as attributes, and a SHA-256 checksum checked on open.

Sampling is resumable: the store is filled under a hidden partial name beside the output, and after each
batch a small state file records the SHA-256 of every finished batch. A job killed midway (a SLURM time
limit, a pre-empted node) resumes at its next run from the first unfinished batch, provided the estimator
file, the test store and the settings are the ones it started with; the result is identical to an
uninterrupted run, because each image's draws depend only on the seed and the image's index.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lenspipe import atomic
from lenspipe import parameters as params_table
from lenspipe.errors import ConfigError, DataError
from lenspipe.priors import PriorBox
from lenspipe.seeds import sample_seed
from lenspipe.store import open_store, sha256_chunked, zarr_codecs

log = logging.getLogger(__name__)

# (image, sample) rows per sample_images call: one progress step and one Zarr chunk (3 MB of float32 for
# 6 parameters); large batches let a multi-threaded CPU or a GPU work on many images at once. How the flow
# itself is chunked within a call is lenspipe.posterior's choice (rows_per_flow_call: small on CPU, all on GPU).
ROWS_PER_BATCH = 2**17
RESUME_FILE = "resume.json"  # inside the partial store: fingerprint, per-batch SHA-256, time spent so far


@dataclass(frozen=True)
class SampleSettings:
    """How many posterior samples per test image, the seed of the sampling, and where it runs (auto: GPU if usable)."""

    num_samples: int
    seed: int
    device: str = "auto"
    threads: int = 1

    @classmethod
    def from_params(
        cls, num_samples: int, global_seed: int, estimator: str, threads: int = 1
    ) -> SampleSettings:
        """Settings of one estimator's sampling job; the seed is derived from the global one and the name."""
        if int(num_samples) < 1:
            raise ConfigError("evaluation.num_samples", "at least 1 posterior sample per image", num_samples)
        return cls(int(num_samples), sample_seed(global_seed, estimator), threads=int(threads))

    @property
    def images_per_batch(self) -> int:
        """Test images sampled together in one sample_images call."""
        return max(1, ROWS_PER_BATCH // self.num_samples)


@dataclass
class SampleSet:
    """An opened samples store: `samples` loaded as (n_test, n_samples, n_params) float32."""

    path: Path
    samples: np.ndarray
    parameter_names: list[str]
    prior_box: PriorBox
    attrs: dict[str, Any]

    @property
    def num_samples(self) -> int:
        return int(self.samples.shape[1])


def sample_test_set(
    estimator_path: str | os.PathLike[str],
    test_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    timing_path: str | os.PathLike[str],
    settings: SampleSettings,
    estimator: str = "",
) -> dict[str, Any]:
    """Draw `settings.num_samples` posterior samples for every test image into a Zarr store; returns the timing."""
    import torch
    import zarr
    from tqdm.auto import tqdm

    from lenspipe import posterior

    torch.set_num_threads(settings.threads)
    start_all = time.perf_counter()
    est = posterior.load(estimator_path, device=settings.device)
    device = str(getattr(est, "device", settings.device))
    test = open_store(test_path, verify=True)
    names = list(est.parameter_names)
    if names != list(test.parameter_names):
        raise DataError(
            estimator_path, f"estimator infers {names}, the test store holds {test.parameter_names}"
        )
    n, s, p = len(test), settings.num_samples, len(names)
    if n == 0:
        raise DataError(test_path, "the test store holds no images")
    box = est.prior_box
    batch = settings.images_per_batch
    fingerprint = _fingerprint(estimator_path, test.attrs, names, settings, batch, device, n)
    partial = atomic.partial_path(output)
    arr, spent, digest = _open_partial(partial, fingerprint, (n, s, p), batch)
    hashes = list(spent["batch_sha256"])
    done = len(hashes)
    if done:
        log.info(
            "resuming %s from image %d of %d (%d finished batches verified)", partial, done * batch, n, done
        )
    sampling_s = float(spent["sampling_s"])
    previous_wall = float(spent["wall_time_s"])
    n_batches = -(-n // batch)
    for k in tqdm(
        range(done, n_batches),
        desc=f"sampling {estimator or 'posterior'}",
        unit="batch",
        initial=done,
        total=n_batches,
    ):
        first = k * batch
        images = test.load_images(slice(first, first + batch))
        t0 = time.perf_counter()
        # per-image noise seeded from (seed, index of the image): samples do not depend on the batching
        draws = est.sample_images(images, num_samples=s, seed=settings.seed, batch_size=batch, offset=first)
        sampling_s += time.perf_counter() - t0
        draws = _checked(draws, (len(images), s, p), box, estimator_path, first)
        arr[first : first + len(images)] = draws
        digest.update(draws.tobytes())
        hashes.append(hashlib.sha256(draws.tobytes()).hexdigest())
        atomic.write_json(
            partial / RESUME_FILE,
            {
                "fingerprint": fingerprint,
                "batch_sha256": hashes,
                "sampling_s": sampling_s,
                "wall_time_s": previous_wall + time.perf_counter() - start_all,
            },
        )
    table = params_table.get(names)
    zarr.open_group(str(partial), mode="r+").attrs.update(
        {
            "parameter_names": names,
            "units": [q.unit for q in table],
            "labels": [q.label for q in table],
            "prior_box": box.as_dict(),
            "estimator": estimator,
            "seed": settings.seed,
            "images_per_batch": batch,
            "checksum": digest.hexdigest(),
        }
    )
    (partial / RESUME_FILE).unlink()
    atomic.promote(partial, output)
    wall = previous_wall + time.perf_counter() - start_all
    timing = {
        "estimator": estimator,
        "n_images": n,
        "num_samples": s,
        "images_per_batch": batch,
        "device": device,
        "threads": settings.threads,
        "resumed_from_image": min(done * batch, n),
        "sampling_s": sampling_s,
        "wall_time_s": wall,
        "samples_per_s": n * s / sampling_s if sampling_s > 0 else float("inf"),
    }
    atomic.write_json(timing_path, timing)
    log.info("%d images x %d samples in %.1f s (%.0f samples/s)", n, s, sampling_s, timing["samples_per_s"])
    return timing


def _fingerprint(
    estimator_path: str | os.PathLike[str],
    test_attrs: dict[str, Any],
    names: list[str],
    settings: SampleSettings,
    batch: int,
    device: str,
    n: int,
) -> str:
    """What a partial samples store must have been started with to be resumed: estimator bytes, test set, settings."""
    digest = hashlib.sha256()
    with open(estimator_path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    digest.update(
        json.dumps(
            {
                "test_checksums": test_attrs.get("checksums"),
                "n_images": n,
                "parameter_names": names,
                "num_samples": settings.num_samples,
                "seed": settings.seed,
                "images_per_batch": batch,
                "device": device,
            },
            sort_keys=True,
        ).encode()
    )
    return digest.hexdigest()


def _open_partial(
    partial: Path, fingerprint: str, shape: tuple[int, int, int], batch: int
) -> tuple[Any, dict[str, Any], Any]:
    """The partial store's samples array, the state saved with its finished batches, and their running SHA-256.

    A partial store started with other inputs or settings, or whose finished batches do not match their
    recorded SHA-256 (a damaged or missing chunk), is discarded and sampling starts over. Each finished batch
    is read once: to verify it and to feed the digest of the whole store.
    """
    import zarr

    fresh = {"batch_sha256": [], "sampling_s": 0.0, "wall_time_s": 0.0}
    state_path = partial / RESUME_FILE
    if state_path.is_file():
        try:
            state = json.loads(state_path.read_text())
            arr = zarr.open_group(str(partial), mode="r+")["samples"]
            hashes = list(state["batch_sha256"])
            ok = (
                state["fingerprint"] == fingerprint
                and tuple(arr.shape) == shape
                and len(hashes) <= -(-shape[0] // batch)
            )
            digest = hashlib.sha256()
            for k, expected in enumerate(hashes if ok else []):
                got = np.ascontiguousarray(arr[k * batch : (k + 1) * batch], dtype=np.float32).tobytes()
                if hashlib.sha256(got).hexdigest() != expected:
                    raise DataError(partial, f"finished batch {k} does not match its recorded checksum")
                digest.update(got)
            if ok:
                return arr, {**fresh, **state}, digest
            log.info("partial samples %s were started with other inputs or settings: starting over", partial)
        except Exception as exc:  # a damaged partial store is recomputed, never trusted
            log.warning("partial samples %s cannot be resumed (%s): starting over", partial, exc)
    atomic.remove(partial)
    group = zarr.open_group(str(partial), mode="w")
    arr = group.create_array(
        "samples", shape=shape, chunks=(min(batch, shape[0]), *shape[1:]), dtype="float32", **zarr_codecs()
    )
    return arr, fresh, hashlib.sha256()


def _checked(draws: Any, shape: tuple[int, ...], box: PriorBox, source: Any, first: int) -> np.ndarray:
    """The estimator's draws as float32, after checking their shape, finiteness and the prior box."""
    draws = np.ascontiguousarray(draws, dtype=np.float32)
    if draws.shape != shape:
        raise DataError(
            source, f"sample_images returned shape {draws.shape}, expected {shape} (images from {first})"
        )
    if not np.all(np.isfinite(draws)):
        raise DataError(source, f"non-finite posterior samples for test images from {first}")
    outside = int((~box.contains(draws)).sum())
    if outside:
        raise DataError(
            source, f"{outside} posterior samples outside the prior box (test images from {first})"
        )
    return draws


def open_samples(path: str | os.PathLike[str], verify: bool = True) -> SampleSet:
    """Load a samples store, checking its layout and (if `verify`) its checksum."""
    import zarr

    path = Path(path)
    if not path.is_dir():
        raise DataError(path, "samples store not found (expected a Zarr directory written by rule sample)")
    try:
        group = zarr.open_group(str(path), mode="r")
        attrs = dict(group.attrs)
        arr = group["samples"]
        samples = np.asarray(arr[:], dtype=np.float32)
        names = list(attrs["parameter_names"])
        box = PriorBox.from_dict(attrs["prior_box"])
    except Exception as exc:  # zarr raises many kinds on damaged stores
        raise DataError(path, f"truncated or damaged samples store ({type(exc).__name__}: {exc})") from exc
    if samples.ndim != 3 or samples.shape[2] != len(names):
        raise DataError(path, f"samples of shape {samples.shape} do not match {len(names)} parameters")
    if verify and sha256_chunked(samples, step=max(1, int(arr.chunks[0]))) != attrs.get("checksum"):
        raise DataError(path, "samples do not match their checksum (damaged or missing chunk)")
    return SampleSet(path, samples, names, box, attrs)
