"""Planning a big study: `snakemake -n` on a config of --shards shards (default 1,000 shards, 1,000,000 images).

Writes the config (config/survey.yaml with the shard count, image count and a training memory budget) to a
temporary folder, then times two dry runs from the repository root: the default profile, and the SLURM profile
(site block filled in, `shards_per_job: --shards-per-job`), and counts the SLURM dry run's group jobs
(`Group job shards`): 1,000 shards at 50 per job plan as 20 SLURM jobs. Where no SLURM controller answers, sinfo and
scontrol wait for their timeouts (40 s, not planning): --no-cluster puts failing stand-ins first on PATH, as on a
laptop without SLURM.

Usage: .venv/bin/python benchmarks/plan.py [--shards 1000] [--images 1000000] [--shards-per-job 50] [--no-cluster]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def dry_run(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Seconds and output of `snakemake -n ARGS` in the repository root."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "snakemake"), "-n", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
    )
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(proc.stdout[-2000:] + proc.stderr[-2000:])
    return seconds, proc.stdout + proc.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=1000)
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--shards-per-job", type=int, default=50)
    parser.add_argument("--budget-mb", type=int, default=8192)
    parser.add_argument("--no-cluster", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="plan-"))
    try:
        run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, tmp: Path) -> None:
    """Write the config and profile into `tmp`, time the two dry runs, print the figures."""
    config = yaml.safe_load((REPO / "config" / "survey.yaml").read_text())
    config["run"] = "plan_benchmark"
    config["simulation"].update({"n_images": args.images, "n_shards": args.shards})
    config["training"]["memory_budget_mb"] = args.budget_mb
    (tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    profile = (REPO / "profiles" / "slurm" / "config.yaml").read_text()
    profile = re.sub(r"(?m)^  account: my_account", "  account: astro42", profile)
    profile = re.sub(r"(?m)^  shards_per_job: \d+", f"  shards_per_job: {args.shards_per_job}", profile)
    (tmp / "slurm").mkdir()
    (tmp / "slurm" / "config.yaml").write_text(profile)
    env = dict(os.environ)
    if args.no_cluster:
        bin_dir = tmp / "bin"
        bin_dir.mkdir()
        for tool in ("sinfo", "scontrol", "sacct", "squeue"):
            (bin_dir / tool).write_text("#!/bin/sh\nexit 1\n")
            (bin_dir / tool).chmod(0o755)
        env["PATH"] = f"{bin_dir}:{env['PATH']}"
    cfg = ["--configfile", str(tmp / "config.yaml")]
    local_s, local = dry_run([*cfg, "--cores", "2", "-q", "rules"], env)
    slurm_s, slurm = dry_run([*cfg, "--profile", str(tmp / "slurm")], env)
    jobs = re.search(r"(?m)^total\s+(\d+)", local)
    groups = len(re.findall(r"Group job shards", slurm))
    print(f"{args.shards} shards, {args.images} images ({jobs.group(1) if jobs else '?'} jobs)")
    print(f"snakemake -n, default profile: {local_s:.1f} s")
    print(
        f"snakemake -n, SLURM profile, shards_per_job {args.shards_per_job}: {slurm_s:.1f} s, "
        f"{groups} group jobs of simulate shards"
    )


if __name__ == "__main__":
    main()
