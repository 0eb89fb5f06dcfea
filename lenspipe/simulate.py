"""The simulation stage: one shard of exactly `size` lens images, labels and metadata, written to a Zarr store.

deeplenstronomy (through lenspipe.deeplens) loses images, so a shard asks for one more than it needs and
tops up with further calls (seeds derived from the shard seed) until it holds exactly `size`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lenspipe import __version__, deeplens
from lenspipe.atomic import write_text
from lenspipe.errors import ConfigError, DataError
from lenspipe.priors import einstein_radius
from lenspipe.seeds import derive_seed
from lenspipe.store import write_store

log = logging.getLogger(__name__)

NONFINITE_MODES = ("fail", "drop")
# deeplenstronomy 0.0.2.3 drops the first image of every call; more losses are topped up by further calls.
EXPECTED_LOSS = 1
MAX_CALLS = 20
THETA_E_RTOL = 1e-4


@dataclass(frozen=True)
class SimulationSettings:
    """One shard's settings, built once from the `simulate_params` slice of the config."""

    spec: deeplens.SimulatorSpec
    parameters: tuple[str, ...]
    shard: int
    size: int
    seed: int
    nonfinite: str = "fail"

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> SimulationSettings:
        """Build from {simulation, priors, parameters, shard, size, seed} (rules/common.smk: simulate_params)."""
        try:
            simulation, priors = params["simulation"], params["priors"]
            parameters, shard, size, seed = (
                params["parameters"],
                params["shard"],
                params["size"],
                params["seed"],
            )
        except KeyError as exc:
            raise ConfigError(
                str(exc.args[0]), "a value in the simulate params (the key is missing)"
            ) from exc
        nonfinite = str(simulation.get("nonfinite", "fail"))
        if nonfinite not in NONFINITE_MODES:
            raise ConfigError("simulation.nonfinite", "one of " + ", ".join(NONFINITE_MODES), nonfinite)
        if int(size) < 1:
            raise ConfigError("simulation.n_images", "at least one image per shard", size)
        return cls(
            deeplens.SimulatorSpec.from_config(simulation, priors),
            tuple(parameters),
            int(shard),
            int(size),
            int(seed),
            nonfinite,
        )

    @property
    def name(self) -> str:
        """The shard as messages name it."""
        return f"shard {self.shard:04d}"


@dataclass
class Shard:
    """A simulated shard: images (n, bands, H, W) float32 in counts/s, theta (n, n_params) float32, metadata."""

    images: np.ndarray
    theta: np.ndarray
    metadata: pd.DataFrame
    yaml: str  # the deeplenstronomy config of the first call (the shard seed), kept for provenance
    calls: list[dict[str, int]]
    nonfinite_dropped: int

    def __len__(self) -> int:
        return int(self.images.shape[0])


def call_seed(seed: int, call: int) -> int:
    """Seed of the shard's `call`-th make_dataset call: the shard seed first, then derived top-up seeds."""
    return int(seed) if call == 0 else derive_seed(seed, "top-up", call)


def simulate_shard(settings: SimulationSettings) -> Shard:
    """Simulate exactly `settings.size` valid images, topping up deeplenstronomy's losses with further calls."""
    spec = settings.spec
    batches: list[deeplens.Batch] = []
    calls: list[dict[str, int]] = []
    have = nonfinite = 0
    while have < settings.size:
        if len(calls) == MAX_CALLS:
            raise DataError(
                settings.name,
                f"only {have} of {settings.size} images after {MAX_CALLS} deeplenstronomy calls",
            )
        need = settings.size - have
        batch = deeplens.simulate(spec, need + EXPECTED_LOSS, call_seed(settings.seed, len(calls)))
        bad = ~np.isfinite(batch.images).all(axis=(1, 2, 3))
        if bad.any():
            if settings.nonfinite == "fail":
                raise DataError(
                    settings.name, f"{int(bad.sum())} images with NaN/inf pixels (simulation.nonfinite: fail)"
                )
            nonfinite += int(bad.sum())
            batch = batch.select(~bad)
        batch = batch.select(slice(0, need))
        calls.append(
            {"seed": batch.seed, "requested": batch.requested, "returned": batch.returned, "kept": len(batch)}
        )
        batch.metadata.insert(0, "call", len(calls) - 1)
        batch.metadata.insert(1, "call_seed", batch.seed)
        batches.append(batch)
        have += len(batch)
    # Rows follow images by position (the split adds shard and shard_row); OBJID repeats across calls.
    meta = pd.concat([b.metadata for b in batches], ignore_index=True)
    images = np.concatenate([b.images for b in batches], dtype=np.float32)
    theta64 = deeplens.labels(meta, settings.parameters, spec.bands[0])
    check_einstein_radius(meta, spec, settings.name)
    return Shard(
        images, theta64.astype(np.float32), deeplens.parquet_safe(meta), batches[0].yaml, calls, nonfinite
    )


def check_einstein_radius(meta: pd.DataFrame, spec: deeplens.SimulatorSpec, name: str) -> None:
    """The simulator's theta_E must follow from its sigma_v, z_l, z_s (SIS normalisation); else its labels are wrong."""
    sim = deeplens.labels(meta, ("theta_E", "sigma_v", "z_l", "z_s"), spec.bands[0])
    expected = einstein_radius(sim[:, 1], sim[:, 2], sim[:, 3], spec.cosmology)
    worst = float(np.max(np.abs(sim[:, 0] / expected - 1.0))) if len(sim) else 0.0
    if not worst <= THETA_E_RTOL:
        raise DataError(name, f"simulator theta_E differs from sigma_v, z_l, z_s by {worst:.2e} (relative)")


def store_attrs(settings: SimulationSettings, shard: Shard) -> dict[str, Any]:
    """Store attributes: what made the shard (settings, seeds of every call, package versions)."""
    spec = settings.spec
    return {
        "shard": settings.shard,
        "seed": settings.seed,
        "bands": list(spec.bands),
        "survey": spec.survey,
        "sky_noise": spec.sky_noise,
        "pixel_scale": spec.pixel_scale,
        "num_pix": spec.num_pix,
        "units": "counts/s (e-/s) per pixel",
        "nonfinite": settings.nonfinite,
        "nonfinite_dropped": shard.nonfinite_dropped,
        "deeplenstronomy_calls": shard.calls,
        "lenspipe_version": __version__,
        **{f"{name}_version": v for name, v in deeplens.versions().items()},
    }


def run_shard(
    params: Mapping[str, Any], store: str | os.PathLike[str], yaml_path: str | os.PathLike[str]
) -> Shard:
    """Rule simulate: simulate one shard, write its deeplenstronomy YAML and its store (both atomically)."""
    settings = SimulationSettings.from_params(params)
    start = time.perf_counter()
    shard = simulate_shard(settings)
    write_text(yaml_path, shard.yaml)
    write_store(
        store,
        shard.images,
        shard.theta,
        settings.parameters,
        attrs=store_attrs(settings, shard),
        metadata=shard.metadata,
    )
    elapsed = time.perf_counter() - start
    simulated = sum(c["requested"] for c in shard.calls)
    log.info(
        "%s: %d images (seed %d, %d deeplenstronomy call(s), %d simulated, %d non-finite dropped) in %.1f s, %.1f img/s",
        settings.name,
        len(shard),
        settings.seed,
        len(shard.calls),
        simulated,
        shard.nonfinite_dropped,
        elapsed,
        len(shard) / elapsed,
    )
    return shard
