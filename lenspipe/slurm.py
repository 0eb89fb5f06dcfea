"""SLURM runs (profiles/slurm): the site block's check, and a status hook so that no job hangs the study.

snakemake-executor-plugin-slurm 2.8.0 polls `sacct -X --parsable2 -o JobIdRaw,State --name <run ID>`
and fails a job only on exact state names. `CANCELLED by <uid>` (what sacct prints after any scancel),
`PREEMPTED`, and a job known to neither sacct nor squeue count as running forever; a status query that
fails all its attempts drops every job from its watch list. Either way Snakemake waits forever.
`install_status_hook` wraps the plugin's `Executor.check_active_jobs`: every job the plugin still calls
active is judged again from the same sacct answer (`judge`), and reported failed when its state is
terminal or when neither sacct nor squeue has known it for MISSING_CHECKS checks in a row; Snakemake
then retries it per the profile. Two or more jobs cancelled at once by the user who runs Snakemake, with
no job of the run left, are a stop request (`scancel --name <run ID>`): nothing more is submitted and
Snakemake exits. On Ctrl-C the wait between status checks ends within a second, and every job of the
run is cancelled by name (the plugin cancels only the jobs in its list, which is empty during a check), once
the sbatch calls under way have returned (the plugin submits from a thread pool).

Upstream note (snakemake-executor-plugin-slurm, check_active_jobs): compare the state's first word
(`CANCELLED by 0`), fail PREEMPTED unless requeue is on, fail jobs that sacct and squeue both stop
reporting, keep the active jobs when every status query attempt failed, and cancel by run name.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lenspipe.errors import ConfigError

# Terminal SLURM states of a job that did not complete (sacct's first word; `CANCELLED by <uid>` is CANCELLED).
FAILED_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "TIMEOUT",
        "ERROR",
    }
)
# What each one means, for the error line.
MEANING = {
    "BOOT_FAIL": "its node failed to boot",
    "CANCELLED": "cancelled (scancel)",
    "DEADLINE": "past its deadline",
    "FAILED": "non-zero exit, or killed at its memory limit",
    "NODE_FAIL": "its node failed",
    "OUT_OF_MEMORY": "killed at its memory limit (mem_mb)",
    "PREEMPTED": "pre-empted by another job",
    "TIMEOUT": "killed at its time limit (runtime)",
}
# States SLURM leaves a job in while it requeues it itself (the plugin's `requeue` setting): failed if they last.
REQUEUED_STATES = frozenset({"NODE_FAIL", "PREEMPTED"})
# Status checks in a row a job may be unknown to both sacct and squeue (or sit requeue-able) before it fails.
MISSING_CHECKS = 3
# Ctrl-C: how long the sbatch calls under way may take to return before the jobs are cancelled by name.
SUBMIT_WAIT_S = 60.0
# The plugin version the hook is written and tested for (envs/constraints.txt pins it).
PLUGIN = "snakemake-executor-plugin-slurm"
PLUGIN_VERSION = "2.8."
# The site block's placeholders (profiles/slurm/config.yaml as shipped).
PLACEHOLDER_ACCOUNTS = frozenset({"", "my_account"})


def check_site(account: str, partitions: Mapping[str, float], argv: Sequence[str] = ()) -> ConfigError | None:
    """Why the site block cannot work, or None: the placeholder account, a partition SLURM does not have, or
    one whose time limit is shorter than the longest runtime a job (retries included) asks there, in minutes
    (such a job would pend forever)."""
    where = profile_file(argv)
    if str(account or "").strip() in PLACEHOLDER_ACCOUNTS:
        how = "your SLURM account (sacctmgr -n show assoc user=$USER format=account), not the placeholder"
        return ConfigError(f"{where}: account", how, account)
    limits = partition_limits()
    if limits is None:  # no sinfo here (a dry run on a laptop): nothing to check against
        return None
    for name, need in partitions.items():
        if name not in limits:
            return ConfigError(
                f"{where}: partition", "one of " + ", ".join(sorted(limits)) + " (sinfo -s)", name
            )
        limit = limits[name]
        if limit is not None and need > limit:
            return ConfigError(
                f"{where}: runtimes on partition {name}",
                f"at most its time limit, {limit:g} min (a retry asks for its runtime x attempt)",
                f"{need:g} min",
            )
    return None


def profile_file(argv: Sequence[str]) -> str:
    """The config.yaml of the --profile on the command line (profiles/slurm/config.yaml if none is given)."""
    args = list(argv)
    for i, arg in enumerate(args):
        value = arg.split("=", 1)[1] if arg.startswith("--profile=") else None
        if arg == "--profile" and i + 1 < len(args):
            value = args[i + 1]
        if value:
            return str(Path(value) / "config.yaml")
    return "profiles/slurm/config.yaml"


def minutes(limit: str) -> float | None:
    """A SLURM time limit ([days-]hours:minutes:seconds, minutes:seconds, infinite) in minutes; None: no limit."""
    if not limit or not limit[0].isdigit():
        return None
    days, _, clock = limit.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if len(parts) == 1:  # a bare number is minutes
        parts = [parts[0], 0]
    hours, mins, secs = ([0, 0, 0] + parts)[-3:]
    return (int(days or 0) * 24 + hours) * 60 + mins + secs / 60


def partition_limits() -> dict[str, float | None] | None:
    """Time limit in minutes of each partition (sinfo; None: unlimited), or None where sinfo is missing or fails."""
    try:
        proc = subprocess.run(
            ["sinfo", "-a", "-h", "-o", "%R|%l"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    rows = [line.strip().split("|", 1) for line in proc.stdout.splitlines() if "|" in line]
    return {name: minutes(limit) for name, limit in rows} if proc.returncode == 0 and rows else None


# --- the status hook ---------------------------------------------------------------------------


def state_word(state: str) -> str:
    """The state's name without its detail: `CANCELLED by 0` -> CANCELLED."""
    return state.split()[0] if state.strip() else ""


@dataclass
class StatusBook:
    """What the hook carries between status checks: the plugin's last answer, and counts per job id."""

    answer: dict[str, str] | None = None  # job id -> state of the plugin's last query; None: it failed
    queried: bool = False  # the plugin ran its query this round
    unseen: dict[str, int] = field(default_factory=dict)  # checks in a row in neither sacct nor squeue
    lingering: dict[str, int] = field(
        default_factory=dict
    )  # checks in a row requeue-able, or ended in squeue only


@dataclass(frozen=True)
class Verdict:
    """The jobs that have ended although the plugin calls them active (id -> one-line reason), and a stop."""

    failed: dict[str, str]
    stop: bool = False


def judge(
    job_ids: Sequence[str],
    answer: Mapping[str, str] | None,
    squeue: Callable[[], Mapping[str, str] | None],
    book: StatusBook,
    uid: int,
    requeue: bool = False,
) -> Verdict:
    """Judge the jobs the plugin still holds from its sacct `answer` (and squeue, asked only for jobs missing
    from it); `book` keeps the counts between checks. Nothing is judged when the answer is None."""
    if answer is None:
        return Verdict({})
    failed: dict[str, str] = {}
    queue: Mapping[str, str] | None = None
    asked = False
    mine = 0
    for jid in job_ids:
        state = answer.get(jid, answer.get(jid.split("_")[0]))  # an array task: its array's line
        source = "sacct"
        if state is None:
            if not asked:
                queue, asked = squeue(), True
            if queue is None:  # squeue failed too: nothing is known of this job this round
                continue
            state, source = queue.get(jid), "squeue"
        if state is None:
            book.unseen[jid] = book.unseen.get(jid, 0) + 1
            if book.unseen[jid] >= MISSING_CHECKS:
                failed[jid] = (
                    f"SLURM job {jid} is lost: neither sacct nor squeue has known it for {book.unseen[jid]} "
                    "status checks (node failure, purged record or slurmctld restart)"
                )
            continue
        book.unseen.pop(jid, None)
        word = state_word(state)
        if word not in FAILED_STATES:
            book.lingering.pop(jid, None)
            continue
        # SLURM may requeue it itself; squeue's state lacks sacct's detail (`by <uid>`): give both time.
        if (requeue and word in REQUEUED_STATES) or source == "squeue":
            book.lingering[jid] = book.lingering.get(jid, 0) + 1
            if book.lingering[jid] < MISSING_CHECKS:
                continue
        failed[jid] = f"SLURM job {jid} ended {state}: {MEANING.get(word, 'failed')}"
        mine += state == f"CANCELLED by {uid}"
    for jid in failed:
        book.unseen.pop(jid, None)
        book.lingering.pop(jid, None)
    return Verdict(failed, stop=mine >= 2 and len(failed) == len(job_ids))


def squeue_states(run_id: str, timeout: float = 60) -> dict[str, str] | None:
    """State of every job of the run that slurmctld still holds (squeue), or None if squeue failed."""
    cmd = ["squeue", "--noheader", "--states=all", "--format=%i|%T", "--name", run_id]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return dict(line.strip().split("|", 1) for line in proc.stdout.splitlines() if "|" in line)


_BOOK = StatusBook()  # one Snakemake process runs one SLURM executor, and checks status from one thread
_MARK = "_lenspipe_status_hook"


def stop_submissions(executor: Any, timeout: float = SUBMIT_WAIT_S) -> None:
    """Cancel the plugin's queued submissions and wait (up to `timeout` s) for the sbatch calls under way.

    Plugin 2.8 submits from a thread pool: on Ctrl-C, sbatch calls already started finish after the jobs were
    cancelled (by list and by name), and their jobs ran on with nobody waiting for them (found by the SLURM test).
    """
    pool = getattr(executor, "_job_submission_executor", None)
    if pool is None:
        return
    pool.shutdown(wait=False, cancel_futures=True)
    end = time.monotonic() + timeout
    for thread in list(getattr(pool, "_threads", ())):
        thread.join(max(0.0, end - time.monotonic()))


def install_status_hook() -> bool:
    """Wrap the SLURM plugin's status check and wait (once per process). False, with a warning line, if the
    plugin is not the version the hook is written for; True if installed."""
    try:
        import snakemake_executor_plugin_slurm as plugin
    except ImportError:
        return False
    executor = plugin.Executor
    if getattr(executor.check_active_jobs, _MARK, False):
        return True
    version = importlib.metadata.version(PLUGIN)
    if not version.startswith(PLUGIN_VERSION) or not hasattr(plugin, "query_job_status"):
        sys.stderr.write(
            f"lenspipe: warning: the SLURM status hook (lenspipe/slurm.py) is written for {PLUGIN} "
            f"{PLUGIN_VERSION}x, found {version}: not installed; a cancelled job may go unnoticed\n"
        )
        return False
    query, check = plugin.query_job_status, executor.check_active_jobs

    async def query_job_status(command: str, logger: Any) -> tuple[dict[str, str] | None, float | None]:
        result = await query(command, logger)
        _BOOK.answer, _BOOK.queried = result[0], True
        return result

    async def check_active_jobs(self: Any, active_jobs: list[Any]) -> AsyncIterator[Any]:
        _BOOK.answer, _BOOK.queried = None, False
        still = [job async for job in check(self, active_jobs)]
        if _BOOK.queried and _BOOK.answer is None:  # every query attempt failed: the plugin dropped them all
            self.logger.warning(
                "lenspipe: the SLURM status query failed; checking these jobs again next time"
            )
            for job in active_jobs:
                yield job
            return
        requeue = bool(getattr(self.workflow.executor_settings, "requeue", False))
        verdict = judge(
            [job.external_jobid for job in still],
            _BOOK.answer,
            lambda: squeue_states(self.run_uuid),
            _BOOK,
            os.getuid(),
            requeue,
        )
        if verdict.stop:
            self.logger.warning(
                f"lenspipe: {len(verdict.failed)} jobs of this run were cancelled by you (scancel): "
                "submitting nothing more; run the same command again to finish the study"
            )
            self.workflow.scheduler.exit_gracefully()
        for job in still:
            reason = verdict.failed.get(job.external_jobid)
            if reason is None:
                yield job
                continue
            log = job.aux.get("slurm_logfile")
            self.report_job_error(job, msg=f"{reason}. ", aux_logs=[str(log)] if log else [])

    async def sleep(self: Any) -> None:
        """The wait between status checks, ended within a second once the executor shuts down."""
        end = time.monotonic() + self.next_seconds_between_status_checks
        while self.wait and (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(1.0, left))

    cancel = executor.cancel_jobs

    def cancel_jobs(self: Any, active_jobs: list[Any]) -> None:
        """Ctrl-C: let no sbatch start and wait for those under way, cancel the jobs Snakemake holds, then every
        job of the run by its name: a job that is mid status check or just submitted is in no list at that
        moment and would run on."""
        try:
            stop_submissions(self)
            cancel(self, active_jobs)
        finally:
            try:
                subprocess.run(["scancel", "--name", self.run_uuid], capture_output=True, timeout=60)
            except (OSError, subprocess.SubprocessError) as exc:
                self.logger.warning(
                    f"lenspipe: scancel --name {self.run_uuid} failed ({exc}): cancel it by hand"
                )

    setattr(check_active_jobs, _MARK, True)
    check_active_jobs.__wrapped__ = check  # type: ignore[attr-defined]  # the plugin's own, for tests
    plugin.query_job_status = query_job_status
    executor.check_active_jobs = check_active_jobs
    executor.sleep = sleep
    executor.cancel_jobs = cancel_jobs
    return True
