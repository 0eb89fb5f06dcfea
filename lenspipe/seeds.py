"""Seeds derived from the config's one global seed and a job's identity, never from job counts.

A shard's seed depends on (global seed, "simulate", shard index) only, so adding shards later
never changes existing ones; training and sampling seeds depend on the estimator's name.
"""

from __future__ import annotations

import hashlib


def derive_seed(global_seed: int, *keys: object) -> int:
    """A 31-bit seed from the global seed and keys (stable across processes and Python versions)."""
    text = "/".join([str(int(global_seed)), *(str(k) for k in keys)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


def shard_seed(global_seed: int, shard: int) -> int:
    """Seed of simulation shard `shard`."""
    return derive_seed(global_seed, "simulate", int(shard))


def split_seed(global_seed: int) -> int:
    """Seed of the train/test permutation."""
    return derive_seed(global_seed, "split")


def train_seed(global_seed: int, estimator: str) -> int:
    """Network initialisation and batch order of one estimator."""
    return derive_seed(global_seed, "train", estimator)


def validation_seed(global_seed: int) -> int:
    """The validation split, shared by all estimators so their validation losses compare."""
    return derive_seed(global_seed, "train", "validation")


def sample_seed(global_seed: int, estimator: str) -> int:
    """Posterior sampling of one estimator."""
    return derive_seed(global_seed, "sample", estimator)


def metrics_seed(global_seed: int) -> int:
    """Random choices of the metrics (TARP reference points), shared by all estimators."""
    return derive_seed(global_seed, "metrics")


def job_seeds(rule: str, global_seed: int, wildcards: dict[str, str]) -> dict[str, int]:
    """The seeds a job of `rule` derives (recorded in its provenance JSON)."""
    g = int(global_seed)
    est = wildcards.get("estimator", "")
    return {
        "simulate": lambda: {"shard": shard_seed(g, int(wildcards.get("shard", 0)))},
        "split": lambda: {"split": split_seed(g)},
        "train": lambda: {"train": train_seed(g, est), "validation": validation_seed(g)},
        "sample": lambda: {"sample": sample_seed(g, est)},
        "evaluate": lambda: {"metrics": metrics_seed(g)},
    }.get(rule, dict)()
