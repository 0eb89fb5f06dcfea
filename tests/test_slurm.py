"""The tiny study through real SLURM: a single-node cluster on 127.0.0.1 with fake GPUs (four, so
the four training jobs run at once; tests/slurm/slurm_cluster.py) runs every job of config/test.yaml
via sbatch with the slurm profile, overlaid with the test cluster's site values
(tests/slurm/profile.yaml); sacct must then show every job COMPLETED and the training jobs holding
gres/gpu on the GPU partition, with CUDA_VISIBLE_DEVICES set. Then jobs that end abnormally: a training
job scancelled and simulate jobs killed at their memory limit are retried until the study finishes, and
`scancel --name <run ID>` and Ctrl-C stop Snakemake within seconds; the same command then finishes it.
The three take about 6.5 minutes on 2 cores (210 s, 95 s, 80 s; cluster start ~10 s), and up to
35 minutes when other work keeps the 2 cores at load ~10.

Needs root (apt-get install, daemons); skipped with the reason otherwise, except under CI=true, where
it fails instead."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from .conftest import BIN, copy_workflow, snakemake
from .slurm.profile import TEST_OVERLAY, write_profile
from .slurm.slurm_cluster import (
    ACCOUNT,
    CPU_PARTITION,
    GPU_PARTITION,
    NODE_NAME,
    Cluster,
    install_packages,
    missing_programs,
    start_cluster,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

# Hard limit on a SLURM run, should a job ever be missed again (the tiny study takes 3-7 min on 2 cores,
# 13 min when other work keeps them busy: the plugin's status checks back off to 3 min apart).
RUN_LIMIT_S = 1200


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


def sacct_jobs(cluster: Cluster, run_id: str, extra: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """The SLURM jobs of one Snakemake run (sacct, allocations only, one dict per job, in submission order)."""
    fields = ["JobID", "JobName", "State", "Partition", "Account", "AllocTRES", *extra, "Comment"]
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
    # The fake GPU is unusable to CUDA: with gpu_fallback: warn, each summary says so and names the node.
    for name in estimators:
        warning = json.loads((work / "results" / "test" / "train" / name / "summary.json").read_text())[
            "device_warning"
        ]
        assert warning and f"node {NODE_NAME}: SLURM job" in warning and "training on the CPU" in warning, (
            warning
        )

    # The study is complete: a local dry run finds nothing left to do.
    check = snakemake(["-n", "--configfile", "config/test.yaml"], cwd=work)
    assert "Nothing to be done" in check.stdout + check.stderr, check.stdout[-3000:]


# --- jobs that end abnormally, and stopping a study ----------------------------------------------

# The training outputs of the tiny study: the fault and stop tests run the study up to training only.
TRAINED = "results/test/train/{}/summary.json"
# Memory of each simulate job (one shard per job) in the fault test, scaled by the attempt as the profile
# scales cpu_mem_mb: a shard's step needs ~350-375 MB (proportional set size) for ~8 s, so attempt 1 is
# killed at its limit (FAILED: the test cluster enforces memory by sampling each second, not by cgroups)
# and attempt 2 completes.
TINY_SIMULATE_MEM = "240*attempt"
# How long Snakemake may take to exit: after Ctrl-C (it cancels its jobs and stops waiting at once), and
# after `scancel --name` (seen at the next status check; the plugin backs off to 3 min between checks).
STOP_LIMIT_S = {"Ctrl-C": 60, "scancel --name": 240}


def default_sigint() -> None:
    """Snakemake gets SIGINT's default action, as from a terminal's Ctrl-C. A pytest started in the background of
    a non-interactive shell (`nohup make test &`) ignores SIGINT, children inherit an ignored signal, and the
    Ctrl-C test would then find a Snakemake that cannot be interrupted."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Run:
    """Snakemake with the test profile, started in the background in `work`; its output goes to `log`."""

    def __init__(self, cluster: Cluster, work: Path, profile: Path, log: Path, targets: list[str]) -> None:
        env = {**cluster.env, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        env.pop("SNAKEMAKE_PROFILE", None)
        self.cluster, self.work, self.log = cluster, work, log
        self.out = log.open("w")
        self.proc = subprocess.Popen(
            [str(BIN / "snakemake"), "--profile", str(profile), "--configfile", "config/test.yaml", "--verbose",
             *targets],
            cwd=work, env=env, stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=default_sigint,
        )  # fmt: skip
        self.started = time.monotonic()

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def run_id(self, timeout: float = 120) -> str:
        """The SLURM run ID Snakemake prints once its executor starts."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            found = re.search(r"SLURM run ID: (\S+)", self.text())
            if found:
                return found.group(1)
            time.sleep(0.5)
        pytest.fail("no SLURM run ID in the log\n" + self.text()[-3000:])

    def queue(self, run_id: str) -> list[tuple[str, str, str]]:
        """(job id, state, comment) of the run's jobs in squeue."""
        out = self.cluster.run("squeue", "-h", "--name", run_id, "-o", "%i|%T|%k", check=False).stdout
        return [tuple(line.split("|", 2)) for line in out.splitlines() if line.count("|") == 2]

    def wait_for(
        self, run_id: str, ready, what: str, timeout: float = RUN_LIMIT_S
    ) -> list[tuple[str, str, str]]:
        """Poll squeue until `ready(jobs)`; fail if Snakemake exits or `timeout` passes first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            jobs = self.queue(run_id)
            if ready(jobs):
                return jobs
            time.sleep(0.5)
        self.stop()
        pytest.fail(f"never saw {what} (snakemake exit {self.proc.returncode})\n" + self.text()[-3000:])

    def wait(self, timeout: float) -> int | None:
        """Snakemake's exit status, or None (after killing its process group) if it ran past `timeout`."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            return None
        finally:
            self.out.close()

    def stop(self) -> None:
        """Kill the process group this Run started (a hung Snakemake and its children)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def running_train(jobs: list[tuple[str, str, str]]) -> list[str]:
    """Job ids of the running training jobs."""
    return [jid for jid, state, comment in jobs if state == "RUNNING" and comment.startswith("rule_train_")]


def test_cancelled_and_memory_killed_jobs_are_retried(cluster: Cluster, tmp_path: Path) -> None:
    """One training job scancelled while it runs, and the simulate jobs killed at their memory limit: all are
    seen as failed and submitted again (simulate with twice the memory), and the study finishes unattended."""
    (tmp_path / "work").mkdir()
    work = copy_workflow(tmp_path / "work")
    overlay = yaml.safe_load(TEST_OVERLAY.read_text())
    overlay["__variables__"]["shards_per_job"] = 1
    profile = write_profile(tmp_path / "profile", {**overlay, "retries": 1})
    config = yaml.safe_load((profile / "config.yaml").read_text())
    config["set-resources"]["simulate"]["mem_mb"] = TINY_SIMULATE_MEM
    (profile / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    estimators = list(yaml.safe_load((work / "config" / "test.yaml").read_text())["estimators"])

    run = Run(cluster, work, profile, tmp_path / "snakemake.log", [TRAINED.format(e) for e in estimators])
    run_id = run.run_id()
    jobs = run.wait_for(run_id, lambda jobs: any(c == "rule_train_wildcards_maf" for _, s, c in jobs if s == "RUNNING"),
                        "the maf training job running")  # fmt: skip
    cancelled = next(
        jid for jid, state, comment in jobs if comment == "rule_train_wildcards_maf" and state == "RUNNING"
    )
    cluster.run("scancel", cancelled)
    status = run.wait(RUN_LIMIT_S)
    elapsed = time.monotonic() - run.started
    assert status == 0, f"snakemake exit {status}\n" + diagnostics(work, run.log, cluster, run_id)
    print(f"SLURM run with a cancelled and a memory-killed job: {elapsed:.0f} s")

    records = {job["JobID"]: job for job in sacct_jobs(cluster, run_id, extra=("ReqMem",))}
    assert records[cancelled]["State"] == "CANCELLED by 0", records[cancelled]
    # Seen as cancelled from sacct (`by 0`), or from squeue where slurmdbd has not recorded the job yet.
    assert re.search(rf"SLURM job {cancelled} ended CANCELLED( by 0)?: cancelled", run.text()), run.text()[
        -3000:
    ]
    maf = [job for job in records.values() if job["Comment"] == "rule_train_wildcards_maf"]
    assert [job["State"] for job in maf] == ["CANCELLED by 0", "COMPLETED"], maf
    shards = Counter(job["Comment"] for job in records.values() if job["Comment"].startswith("rule_simulate"))
    assert len(shards) == 2, records
    for comment in shards:
        tries = [job for job in records.values() if job["Comment"] == comment]
        assert [job["State"] for job in tries] in (["FAILED", "COMPLETED"], ["OUT_OF_MEMORY", "COMPLETED"]), (
            tries
        )
        assert [job["ReqMem"] for job in tries] == ["240M", "480M"], tries
        killed_log = next((work / ".snakemake" / "slurm_logs").rglob(f"{tries[0]['JobID']}.log"))
        assert "exceeded memory limit" in killed_log.read_text(), killed_log
    others = [job for job in records.values()
              if job["Comment"] not in shards and job["Comment"] != "rule_train_wildcards_maf"]  # fmt: skip
    assert others and all(job["State"] == "COMPLETED" for job in others), others
    check = snakemake(
        ["-n", *[TRAINED.format(e) for e in estimators], "--configfile", "config/test.yaml"], cwd=work
    )
    assert "Nothing to be done" in check.stdout + check.stderr, check.stdout[-3000:]


def test_scancel_name_and_ctrl_c_stop_the_study_and_the_same_command_finishes_it(
    cluster: Cluster, tmp_path: Path
) -> None:
    """`scancel --name <run ID>` and then Ctrl-C, each while training jobs run: Snakemake exits within
    STOP_LIMIT_S, submits nothing more, leaves no lock and every finished output as it was; the same
    command a third time finishes the study."""
    (tmp_path / "work").mkdir()
    work = copy_workflow(tmp_path / "work")
    profile = write_profile(tmp_path / "profile", {**yaml.safe_load(TEST_OVERLAY.read_text()), "retries": 1})
    # Training long enough to be stopped: the tiny config's 2 epochs end within seconds of the jobs starting on a
    # quiet machine, before a stop can reach them (the third run resumes them from their checkpoints).
    config = yaml.safe_load((work / "config" / "test.yaml").read_text())
    config["training"].update(max_epochs=300, stop_after_epochs=300)
    (work / "config" / "test.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    estimators = list(config["estimators"])
    targets = [TRAINED.format(e) for e in estimators]
    finished = ["results/test/split/train.zarr", "results/test/split/normalisation.json"]

    for attempt, how in enumerate(("scancel --name", "Ctrl-C")):
        run = Run(cluster, work, profile, tmp_path / f"stop{attempt}.log", targets)
        run_id = run.run_id()
        run.wait_for(run_id, lambda jobs: len(running_train(jobs)) >= 2, "two training jobs running")
        stamps = {name: (work / name).stat().st_mtime_ns for name in finished}
        stopped = time.monotonic()
        if how == "Ctrl-C":
            os.kill(run.proc.pid, signal.SIGINT)
        else:
            cluster.run("scancel", "--name", run_id)
        status = run.wait(STOP_LIMIT_S[how])
        took = time.monotonic() - stopped
        assert status is not None, (
            f"{how}: snakemake still ran after {STOP_LIMIT_S[how]} s\n" + run.text()[-4000:]
        )
        assert status != 0, run.text()[-3000:]
        print(f"{how}: snakemake exited {took:.0f} s after the stop")
        assert not list((work / ".snakemake" / "locks").glob("*")), f"{how}: a lock was left"
        assert {name: (work / name).stat().st_mtime_ns for name in finished} == stamps, (
            f"{how}: finished output changed"
        )
        time.sleep(2)
        left = [job for job in run.queue(run_id) if job[1] in ("PENDING", "RUNNING", "CONFIGURING")]
        assert not left, f"{how}: jobs left in the queue: {left}"
        trains = [job for job in sacct_jobs(cluster, run_id) if job["Comment"].startswith("rule_train_")]
        assert len(trains) <= len(estimators), f"{how}: jobs were submitted again: {trains}"
        assert all(job["State"].startswith("CANCELLED") or job["State"] == "COMPLETED" for job in trains), (
            trains
        )

    run = Run(cluster, work, profile, tmp_path / "finish.log", targets)
    status = run.wait(RUN_LIMIT_S)
    assert status == 0, f"snakemake exit {status}\n" + run.text()[-4000:]
    assert "rule split:" not in run.text() and "rule simulate:" not in run.text(), (
        "finished jobs were run again"
    )
    for name in estimators:
        assert (work / TRAINED.format(name)).exists()
