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


def job_seeds(rule: str, global_seed: int, wildcards: dict[str, str]) -> dict[str, int]:
    """The seeds a job of `rule` derives (recorded in its provenance JSON)."""
    g = int(global_seed)
    est = wildcards.get("estimator", "")
    return {
        "simulate": lambda: {"shard": shard_seed(g, int(wildcards.get("shard", 0)))},
        "split": lambda: {"split": derive_seed(g, "split")},
        "train": lambda: {"train": derive_seed(g, "train", est), "validation": derive_seed(g, "train", "validation")},
        "sample": lambda: {"sample": derive_seed(g, "sample", est)},
        "evaluate": lambda: {"metrics": derive_seed(g, "metrics")},
    }.get(rule, dict)()
