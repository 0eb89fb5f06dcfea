"""Benchmark of the simulation stage, against baselines measured in the same run.

1. One shard through lenspipe (lenspipe.simulate.run_shard: simulation, bug handling, Zarr + YAML writing) vs a
   bare deeplenstronomy make_dataset on the same config: images/s of each and their ratio (target: overhead < 5%).
2. Two shards in two processes vs one shard in one process: the speed-up (target >= 1.8x on 2 cores).

Usage: .venv/bin/python benchmarks/simulate.py [--config config/config.yaml] [--images 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from lenspipe.config import load_config
from lenspipe.seeds import shard_seed


def shard_params(config: dict[str, Any], shard: int, size: int) -> dict[str, Any]:
    """What rules/common.smk's simulate_params gives rule simulate, with the shard size set to `size`."""
    sim = {k: v for k, v in config["simulation"].items() if k not in ("n_images", "n_shards")}
    return {
        "simulation": sim,
        "priors": config["priors"],
        "parameters": config["parameters"],
        "shard": shard,
        "size": size,
        "seed": shard_seed(config["seed"], shard),
    }


def time_pipeline(params: dict[str, Any]) -> tuple[int, float, float]:
    """Images, wall seconds and CPU seconds of one shard through lenspipe, Zarr store and YAML included."""
    from lenspipe.simulate import run_shard

    with tempfile.TemporaryDirectory(prefix="lenspipe-bench-") as tmp:
        wall, cpu = time.perf_counter(), time.process_time()
        shard = run_shard(params, Path(tmp) / "shard.zarr", Path(tmp) / "shard.yaml")
        return len(shard), time.perf_counter() - wall, time.process_time() - cpu


def time_bare(params: dict[str, Any], shared_cosmology: bool = False) -> tuple[int, float, float]:
    """Images, wall and CPU seconds of a bare make_dataset on the same config (in memory, as its docs suggest), optionally
    with lenspipe's one speed-up of deeplenstronomy itself (an astropy cosmology reused across images)."""
    from deeplenstronomy.deeplenstronomy import make_dataset

    from lenspipe import deeplens

    spec = deeplens.SimulatorSpec.from_config(params["simulation"], params["priors"])
    text = deeplens.config_yaml(spec, params["size"], params["seed"])
    deeplens.register_distributions()  # the config's colour distribution
    reuse = deeplens.shared_cosmology() if shared_cosmology else contextlib.nullcontext()
    with tempfile.TemporaryDirectory(prefix="lenspipe-bench-") as tmp, contextlib.chdir(tmp), reuse:
        Path("bare.yaml").write_text(text)
        wall, cpu = time.perf_counter(), time.process_time()
        dataset = make_dataset("bare.yaml", store_in_memory=True)
        return len(dataset.CONFIGURATION_1_images), time.perf_counter() - wall, time.process_time() - cpu


def _worker(params: dict[str, Any], barrier: Any, queue: Any) -> None:
    """One shard job in its own process; imports happen before the barrier so only the simulation is timed."""
    import deeplenstronomy.deeplenstronomy  # noqa: F401
    import lenstronomy  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import zarr  # noqa: F401

    import lenspipe.simulate  # noqa: F401

    barrier.wait()
    n, _, cpu = time_pipeline(params)
    queue.put((n, cpu))


def time_processes(params_list: list[dict[str, Any]]) -> tuple[int, float, float]:
    """Images, wall seconds and the workers' CPU share of one shard per process, all started together (spawned,
    like Snakemake jobs); a CPU share below 1 means other work on the machine took the cores."""
    # As Snakemake runs a `threads: 1` job: one thread for every numeric library.
    for var in (
        "OMP_NUM_THREADS",
        "GOTO_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "VECLIB_MAXIMUM_THREADS",
        "NUMEXPR_NUM_THREADS",
    ):
        os.environ[var] = "1"
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(len(params_list) + 1), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(p, barrier, queue)) for p in params_list]
    for proc in procs:
        proc.start()
    barrier.wait()
    start = time.perf_counter()
    results = [queue.get() for _ in procs]
    wall = time.perf_counter() - start
    for proc in procs:
        proc.join()
    return sum(n for n, _ in results), wall, sum(cpu for _, cpu in results) / (wall * len(procs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--images", type=int, default=300, help="images per shard")
    parser.add_argument(
        "--repeats", type=int, default=3, help="interleaved runs of each; medians are printed"
    )
    args = parser.parse_args()
    config = load_config(args.config)
    params = [shard_params(config, shard, args.images) for shard in (0, 1)]
    print(
        f"simulate benchmark: {args.images} images/shard, {config['simulation']['num_pix']}px, "
        f"bands {','.join(config['simulation']['bands'])}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f} (the machine is shared: figures vary)"
    )

    time_pipeline(shard_params(config, 0, 3))  # warm-up: imports and first-call caches
    runs: dict[str, list[tuple[int, float, float]]] = {"bare": [], "reuse": [], "pipe": []}
    for _ in range(args.repeats):  # interleaved, so that each repeat compares runs made under the same load
        runs["bare"].append(time_bare(params[0]))
        runs["reuse"].append(time_bare(params[0], shared_cosmology=True))
        runs["pipe"].append(time_pipeline(params[0]))
    names = {
        "bare": f"bare deeplenstronomy make_dataset ({args.images - 1} of {args.images} returned)",
        "reuse": "  the same, astropy cosmology reused",
        "pipe": "lenspipe shard (incl. Zarr, YAML)",
    }
    for key, name in names.items():
        wall = statistics.median(n / t for n, t, _ in runs[key])
        cpu = statistics.median(n / c for n, _, c in runs[key])
        print(f"{name:<58} {wall:6.1f} images/s, {cpu:6.1f} images/CPU-s (median of {args.repeats})")
    for base, label in (("bare", "bare"), ("reuse", "bare with the same cosmology reuse")):
        pairs = list(zip(runs["pipe"], runs[base], strict=True))
        ratio = {
            kind: statistics.median((p[0] / p[k]) / (b[0] / b[k]) for p, b in pairs)
            for kind, k in (("wall", 1), ("cpu", 2))
        }
        print(
            f"pipeline / {label}: {ratio['wall']:.3f} wall, {ratio['cpu']:.3f} CPU (median of paired runs; "
            f"overhead {100 * (1 - ratio['cpu']):+.1f}% per CPU-s, target < 5%)"
        )

    n1, t1, share1 = time_processes(params[:1])
    n2, t2, share2 = time_processes(params)
    print(
        f"1 shard, 1 process:    {n1} images in {t1:.2f} s = {n1 / t1:.1f} images/s (CPU share {share1:.0%})"
    )
    print(
        f"2 shards, 2 processes: {n2} images in {t2:.2f} s = {n2 / t2:.1f} images/s (CPU share {share2:.0%} each)"
    )
    print(
        f"parallel speed-up: {(n2 / t2) / (n1 / t1):.2f}x wall-clock (target >= 1.8x on 2 cores); "
        f"{2 * (n2 / (t2 * share2 * 2)) / (n1 / (t1 * share1)):.2f}x per CPU-second granted (what 2 free cores "
        f"would give); load average now {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
