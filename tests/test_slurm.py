"""The tiny study through real SLURM: a single-node cluster on 127.0.0.1 with fake GPUs (four, so
the four training jobs run at once; tests/slurm/slurm_cluster.py) runs every job of config/test.yaml
via sbatch with the slurm profile, overlaid with the test cluster's site values
(tests/slurm/profile.yaml); sacct must then show every job COMPLETED and the training jobs holding
gres/gpu on the GPU partition, with CUDA_VISIBLE_DEVICES set.

Needs root (apt-get install, daemons); skipped with the reason otherwise, except under CI=true, where
it fails instead."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from .conftest import BIN, copy_workflow, snakemake
from .slurm.profile import write_profile
from .slurm.slurm_cluster import (
    ACCOUNT,
    CPU_PARTITION,
    GPU_PARTITION,
    Cluster,
    install_packages,
    missing_programs,
    start_cluster,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

# Hard limit on the SLURM run (it takes 3-7 min on 2 cores): the plugin waits forever, ignoring
# SIGTERM, if it loses its jobs.
RUN_LIMIT_S = 900


def _cannot_run() -> str | None:
    """Why this machine cannot host the test cluster, or None if it can."""
    if os.geteuid() != 0:
        return "needs root to install SLURM with apt-get and start its daemons"
    if missing_programs() and shutil.which("apt-get") is None:
        return f"SLURM is not installed and apt-get is unavailable (missing: {', '.join(missing_programs())})"
    return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A fresh single-node cluster for this module; every daemon it started is stopped by PID afterwards."""
    reason = _cannot_run()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the SLURM test must run in CI, but it cannot: {reason}")
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("slurm")
    if missing_programs():
        install_packages(log=root / "apt.log")
    started = start_cluster(root)
    try:
        yield started
    finally:
        started.stop()


def planned_counts(work: Path, profile: Path) -> Counter:
    """{rule: jobs} of a dry run with the profile (rule `all` left out)."""
    out = snakemake(["--profile", str(profile), "-n", "--configfile", "config/test.yaml"], cwd=work).stdout
    table = out.split("Job stats:", 1)[1].split("total", 1)[0]
    counts = Counter({m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)})
    counts.pop("all", None)
    return counts


def sacct_jobs(cluster: Cluster, run_id: str) -> list[dict[str, str]]:
    """The SLURM jobs of one Snakemake run (sacct, allocations only, one dict per job)."""
    fields = ["JobID", "JobName", "State", "Partition", "Account", "AllocTRES", "Comment"]
    out = cluster.run(
        "sacct", "-X", "-P", "-n", "--starttime", "now-1days", "--name", run_id, "-o", ",".join(fields)
    ).stdout
    return [dict(zip(fields, line.split("|"), strict=True)) for line in out.splitlines() if line.strip()]


def diagnostics(work: Path, log: Path, cluster: Cluster, run_id: str | None) -> str:
    """What to read when the run fails: the end of Snakemake's log, SLURM's logs of failed jobs, sacct."""
    parts = ["--- snakemake (tail) ---", "\n".join(log.read_text(errors="replace").splitlines()[-60:])]
    for path in sorted((work / ".snakemake" / "slurm_logs").rglob("*.log"))[:20]:
        text = path.read_text(errors="replace")
        if "Error" in text or "error:" in text:
            body = "\n".join(line for line in text.splitlines()[-30:] if not line.startswith("environment:"))
            parts += [f"--- {path.relative_to(work)} ---", body]
    if run_id:
        parts += ["--- sacct ---", "\n".join(map(str, sacct_jobs(cluster, run_id)))]
    for daemon in ("slurmctld", "slurmd"):
        parts += [f"--- {daemon} (tail) ---", "\n".join(cluster.log(daemon).read_text().splitlines()[-15:])]
    return "\n".join(parts)


def test_tiny_study_on_slurm(cluster: Cluster, tmp_path: Path) -> None:
    """Every job of the tiny study goes through sbatch, completes, and training gets the GPU."""
    (tmp_path / "work").mkdir()
    work = copy_workflow(tmp_path / "work")
    profile = write_profile(tmp_path / "profile")
    site = yaml.safe_load((profile / "config.yaml").read_text())["__variables__"]
    assert (site["account"], site["cpu_partition"], site["gpu_partition"]) == (
        ACCOUNT,
        CPU_PARTITION,
        GPU_PARTITION,
    )
    planned = planned_counts(work, profile)
    estimators = list(yaml.safe_load((work / "config" / "test.yaml").read_text())["estimators"])
    assert planned["train"] == len(estimators), planned

    log = tmp_path / "snakemake.log"
    env = {**cluster.env, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("SNAKEMAKE_PROFILE", None)
    start = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.run(
            ["timeout", "-s", "KILL", str(RUN_LIMIT_S), str(BIN / "snakemake"), "--profile", str(profile),
             "--configfile", "config/test.yaml", "--verbose"],
            cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=RUN_LIMIT_S + 30,
        )  # fmt: skip
    elapsed = time.monotonic() - start
    text = log.read_text(errors="replace")
    found = re.search(r"SLURM run ID: (\S+)", text)
    run_id = found.group(1) if found else None
    if proc.returncode in (124, 137):
        pytest.fail(
            f"the SLURM run was killed after {RUN_LIMIT_S} s\n" + diagnostics(work, log, cluster, run_id)
        )
    assert proc.returncode == 0, f"snakemake failed ({proc.returncode})\n" + diagnostics(
        work, log, cluster, run_id
    )
    assert run_id, "no SLURM run ID in the log: did the slurm executor run at all?"
    print(f"SLURM run of the tiny study: {elapsed:.0f} s")

    # Every job went through sbatch and completed.
    jobs = sacct_jobs(cluster, run_id)
    not_done = [job for job in jobs if job["State"] != "COMPLETED"]
    assert not not_done, f"jobs not COMPLETED: {not_done}"
    rules = Counter()
    for job in jobs:
        assert job["Account"] == ACCOUNT, job
        # The plugin's comment: rule_<rule>[_wildcards_<...>], or rule_<group>_<rules> for a group job.
        rules[job["Comment"].removeprefix("rule_").split("_wildcards_")[0]] += 1
    shards = planned.pop("simulate")
    assert rules.pop("shards_simulate", 0) == -(-shards // site["shards_per_job"]), (rules, jobs)
    assert rules == planned, f"SLURM jobs per rule {dict(rules)} != planned jobs {dict(planned)}"

    # Training jobs held the GPU on the GPU partition; nothing else did.
    for job in jobs:
        is_train = job["Comment"].startswith("rule_train_")
        assert ("gres/gpu=1" in job["AllocTRES"]) == is_train, job
        assert job["Partition"] == (GPU_PARTITION if is_train else CPU_PARTITION), job
    train_logs = sorted((work / ".snakemake" / "slurm_logs" / "rule_train").rglob("*.log"))
    assert len(train_logs) == len(estimators), train_logs
    for path in train_logs:
        assert re.search(r"'CUDA_VISIBLE_DEVICES': '\d", path.read_text()), (
            f"no CUDA_VISIBLE_DEVICES in {path}"
        )

    # The study is complete: a local dry run finds nothing left to do.
    check = snakemake(["-n", "--configfile", "config/test.yaml"], cwd=work)
    assert "Nothing to be done" in check.stdout + check.stderr, check.stdout[-3000:]
