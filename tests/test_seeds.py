"""Seeds: stable, independent of job counts, and the provenance record names the ones the stages use."""

from __future__ import annotations

from lenspipe.metrics import EvaluationSettings
from lenspipe.sample import SampleSettings
from lenspipe.seeds import derive_seed, job_seeds, shard_seed
from lenspipe.split import SplitSettings


def test_derived_seeds_are_stable_and_distinct() -> None:
    assert derive_seed(1, "simulate", 0) == derive_seed(1, "simulate", 0)
    seeds = {shard_seed(7, k) for k in range(200)}
    assert len(seeds) == 200 and all(0 <= s < 2**31 for s in seeds)
    assert shard_seed(7, 3) != shard_seed(8, 3)


def test_job_seeds_match_what_the_stages_use() -> None:
    g = 20240601
    assert job_seeds("split", g, {})["split"] == SplitSettings.from_params({"test_fraction": 0.1}, g).seed
    assert (
        job_seeds("sample", g, {"estimator": "maf"})["sample"]
        == SampleSettings.from_params(10, g, "maf").seed
    )
    assert (
        job_seeds("evaluate", g, {"estimator": "maf"})["metrics"]
        == EvaluationSettings.from_params(10, [0], g).seed
    )
    assert job_seeds("simulate", g, {"shard": "0003"})["shard"] == shard_seed(g, 3)
    assert job_seeds("compare", g, {}) == {}
