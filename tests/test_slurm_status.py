"""The SLURM status hook (lenspipe/slurm.py) without a cluster: every abnormal end is judged failed, a job
lost from sacct and squeue fails after MISSING_CHECKS checks, `scancel --name` is a stop; and the real
plugin's check_active_jobs, run with the hook against fake sacct/squeue programs, reports them (where
the plugin alone keeps `CANCELLED by 0` active forever). The site block's check refuses placeholders."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lenspipe import slurm
from lenspipe.errors import ConfigError
from lenspipe.slurm import FAILED_STATES, MISSING_CHECKS, StatusBook, check_site, judge, minutes

UID = os.getuid()
RUNNING_STATES = ("PENDING", "RUNNING", "REQUEUED", "COMPLETING", "CONFIGURING", "SUSPENDED", "RESIZING")


def nothing_in_squeue() -> dict[str, str]:
    return {}


def squeue_fails() -> None:
    return None


# --- judge: states, lost jobs, stop requests ---------------------------------------------------


@pytest.mark.parametrize("state", sorted(FAILED_STATES) + ["CANCELLED by 0", f"CANCELLED by {UID + 1}"])
def test_every_abnormal_end_is_failed(state: str) -> None:
    verdict = judge(["7", "8"], {"7": state, "8": "RUNNING"}, nothing_in_squeue, StatusBook(), UID)
    assert list(verdict.failed) == ["7"] and not verdict.stop
    assert verdict.failed["7"].startswith(f"SLURM job 7 ended {state}: ")


@pytest.mark.parametrize("state", RUNNING_STATES)
def test_live_states_stay_active(state: str) -> None:
    assert judge(["7"], {"7": state}, nothing_in_squeue, StatusBook(), UID).failed == {}


def test_a_job_lost_from_sacct_and_squeue_fails_after_a_few_checks() -> None:
    book = StatusBook()
    for _ in range(MISSING_CHECKS - 1):
        assert judge(["7"], {}, nothing_in_squeue, book, UID).failed == {}
    assert "neither sacct nor squeue" in judge(["7"], {}, nothing_in_squeue, book, UID).failed["7"]
    assert book.unseen == {}


def test_squeue_vouches_for_a_job_sacct_has_not_recorded_yet() -> None:
    book = StatusBook()
    for _ in range(2 * MISSING_CHECKS):
        assert judge(["7"], {}, lambda: {"7": "PENDING"}, book, UID).failed == {}
        assert judge(["7"], {}, squeue_fails, book, UID).failed == {}  # unknown is not lost
    assert book.unseen == {}
    # slurmdbd behind, slurmctld knows: sacct gets a few checks to say who cancelled it, then squeue decides.
    for _ in range(MISSING_CHECKS - 1):
        assert judge(["7"], {}, lambda: {"7": "CANCELLED"}, book, UID).failed == {}
    verdict = judge(["7"], {}, lambda: {"7": "CANCELLED"}, book, UID)
    assert verdict.failed["7"] == "SLURM job 7 ended CANCELLED: cancelled (scancel)"
    assert book.lingering == {}


def test_a_failed_status_query_judges_nothing() -> None:
    book = StatusBook(unseen={"7": MISSING_CHECKS - 1})
    assert judge(["7"], None, nothing_in_squeue, book, UID).failed == {}
    assert book.unseen == {"7": MISSING_CHECKS - 1}


def test_with_requeue_slurm_gets_a_few_checks_to_requeue() -> None:
    book = StatusBook()
    for _ in range(MISSING_CHECKS - 1):
        assert judge(["7"], {"7": "PREEMPTED"}, nothing_in_squeue, book, UID, requeue=True).failed == {}
    assert (
        "pre-empted"
        in judge(["7"], {"7": "PREEMPTED"}, nothing_in_squeue, book, UID, requeue=True).failed["7"]
    )


def test_scancel_name_is_a_stop_one_scancel_is_a_retry() -> None:
    mine, admin = f"CANCELLED by {UID}", f"CANCELLED by {UID + 1}"
    assert judge(["1", "2"], {"1": mine, "2": mine}, nothing_in_squeue, StatusBook(), UID).stop
    assert judge(
        ["1", "2", "3"], {"1": mine, "2": mine, "3": "TIMEOUT"}, nothing_in_squeue, StatusBook(), UID
    ).stop
    assert not judge(["1"], {"1": mine}, nothing_in_squeue, StatusBook(), UID).stop  # one job: retried
    assert not judge(["1", "2"], {"1": admin, "2": admin}, nothing_in_squeue, StatusBook(), UID).stop
    running = judge(
        ["1", "2", "3"], {"1": mine, "2": mine, "3": "RUNNING"}, nothing_in_squeue, StatusBook(), UID
    )
    assert set(running.failed) == {"1", "2"} and not running.stop  # not every job: cancelled ones are retried


# --- the hook on the real plugin, with fake SLURM programs -------------------------------------

FAKE = """#!/bin/sh
# A fake {name}: records its arguments, prints {name}.out (when asked for the run's jobs), exits with {name}.rc.
echo "$*" >> "{dir}/{name}.calls"
case "$*" in *--name*) cat "{dir}/{name}.out" ;; esac
exit $(cat "{dir}/{name}.rc" 2>/dev/null || echo 0)
"""


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """sacct, squeue, scontrol and scancel on PATH that answer from files in the returned directory."""
    for name in ("sacct", "squeue", "scontrol", "scancel"):
        path = tmp_path / name
        path.write_text(FAKE.format(name=name, dir=tmp_path))
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
        (tmp_path / f"{name}.out").write_text("")
    (tmp_path / "scontrol.out").write_text("MinJobAge = 300 sec\n")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(slurm, "_BOOK", StatusBook())
    return tmp_path


class Throttle:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


def plugin_executor(reported: dict[str, list[str]]) -> Any:
    """A snakemake-executor-plugin-slurm Executor with just what check_active_jobs reads (no Snakemake run)."""
    plugin = pytest.importorskip("snakemake_executor_plugin_slurm")
    executor = object.__new__(plugin.Executor)
    settings = SimpleNamespace(init_seconds_before_status_checks=1, status_attempts=2, status_command="sacct",
                               requeue=False, keep_successful_logs=True)  # fmt: skip
    scheduler = SimpleNamespace(exit_gracefully=lambda: reported["stop"].append("stop"))
    executor.__dict__.update(
        workflow=SimpleNamespace(executor_settings=settings, scheduler=scheduler,
                                 remote_execution_settings=SimpleNamespace(seconds_between_status_checks=1)),
        logger=logging.getLogger("fake-plugin"),
        status_rate_limiter=Throttle(),
        run_uuid="run-1",
        _status_query_calls=0, _status_query_failures=0, _status_query_total_seconds=0.0,
        _status_query_min_seconds=None, _status_query_max_seconds=0.0, _status_query_cycle_rows=[],
        _preemption_warning=False, _failed_nodes=set(), _next_seconds_between_status_checks=None,
    )  # fmt: skip
    executor.report_job_success = lambda job: reported["ok"].append(job.external_jobid)
    executor.report_job_error = lambda job, msg=None, **kw: reported["error"].append(
        f"{job.external_jobid}: {msg}"
    )
    return executor


def check(executor: Any, ids: list[str], original: bool = False) -> list[str]:
    """Run one status check over jobs `ids`; returns the ids still active."""
    jobs = [
        SimpleNamespace(external_jobid=i, aux={"slurm_logfile": Path(f"/nonexistent/{i}.log")}) for i in ids
    ]
    method = type(executor).check_active_jobs
    method = method.__wrapped__ if original else method

    async def run() -> list[str]:
        return [job.external_jobid async for job in method(executor, jobs)]

    return asyncio.run(run())


@pytest.fixture
def hooked() -> None:
    pytest.importorskip("snakemake_executor_plugin_slurm")
    assert slurm.install_status_hook()
    assert slurm.install_status_hook()  # a second install changes nothing


def test_the_plugin_alone_keeps_a_cancelled_job_forever(fake_slurm: Path, hooked: None) -> None:
    """The bug (plugin 2.8.0): `CANCELLED by 0` is not `CANCELLED`. Fails once upstream fixes it: drop the hook."""
    (fake_slurm / "sacct.out").write_text("11|CANCELLED by 0\n12|RUNNING\n")
    reported: dict[str, list[str]] = {"ok": [], "error": [], "stop": []}
    assert check(plugin_executor(reported), ["11", "12"], original=True) == ["11", "12"]
    assert reported == {"ok": [], "error": [], "stop": []}


def test_hooked_plugin_fails_every_abnormal_end(fake_slurm: Path, hooked: None) -> None:
    lines = {"11": "CANCELLED by 0", "12": "RUNNING", "13": "PREEMPTED", "14": "COMPLETED", "15": "OUT_OF_MEMORY",
             "16": "TIMEOUT", "17": "NODE_FAIL", "18": "PENDING", "19": "DEADLINE", "20": "BOOT_FAIL"}  # fmt: skip
    (fake_slurm / "sacct.out").write_text("".join(f"{k}|{v}\n" for k, v in lines.items()))
    reported: dict[str, list[str]] = {"ok": [], "error": [], "stop": []}
    assert check(plugin_executor(reported), list(lines)) == ["12", "18"]
    assert reported["ok"] == ["14"] and reported["stop"] == []
    failed = {line.split(":")[0] for line in reported["error"]}
    assert failed == set(lines) - {"12", "14", "18"}
    assert any(line.startswith("11: SLURM job 11 ended CANCELLED by 0") for line in reported["error"])


def test_hooked_plugin_fails_a_lost_job_and_keeps_jobs_through_failed_queries(
    fake_slurm: Path, hooked: None
) -> None:
    reported: dict[str, list[str]] = {"ok": [], "error": [], "stop": []}
    executor = plugin_executor(reported)
    (fake_slurm / "sacct.out").write_text("21|RUNNING\n")
    (fake_slurm / "sacct.rc").write_text("1")  # slurmdbd down: every attempt fails
    assert check(executor, ["21", "22"]) == ["21", "22"], "the plugin alone drops both jobs here"
    (fake_slurm / "sacct.rc").write_text("0")
    (fake_slurm / "squeue.out").write_text("22|PENDING\n")
    assert check(executor, ["21", "22"]) == ["21", "22"]
    (fake_slurm / "squeue.out").write_text("")  # 22 now unknown to both: lost
    for _ in range(MISSING_CHECKS - 1):
        assert check(executor, ["21", "22"]) == ["21", "22"]
    assert check(executor, ["21", "22"]) == ["21"]
    assert len(reported["error"]) == 1 and reported["error"][0].startswith("22: SLURM job 22 is lost")


def test_hooked_plugin_stops_on_scancel_name(fake_slurm: Path, hooked: None) -> None:
    (fake_slurm / "sacct.out").write_text(f"31|CANCELLED by {UID}\n32|CANCELLED by {UID}\n33|COMPLETED\n")
    reported: dict[str, list[str]] = {"ok": [], "error": [], "stop": []}
    assert check(plugin_executor(reported), ["31", "32", "33"]) == []
    assert reported["stop"] == ["stop"] and len(reported["error"]) == 2 and reported["ok"] == ["33"]


def test_ctrl_c_cancels_every_job_of_the_run(fake_slurm: Path, hooked: None) -> None:
    """The plugin cancels the jobs in its list; the hook also cancels the run by name (jobs mid-check)."""
    executor = plugin_executor({"ok": [], "error": [], "stop": []})
    executor._submitted_job_clusters = set()
    jobs = [SimpleNamespace(external_jobid=i) for i in ("41", "42")]
    type(executor).cancel_jobs(executor, jobs)
    assert (fake_slurm / "scancel.calls").read_text().splitlines() == ["41 42", "--name run-1"]
    (fake_slurm / "scancel.calls").unlink()
    type(executor).cancel_jobs(executor, [])  # between checks the list is empty: the name still reaches them
    assert (fake_slurm / "scancel.calls").read_text().splitlines() == ["--name run-1"]


def test_ctrl_c_waits_for_the_sbatch_calls_under_way(fake_slurm: Path, hooked: None) -> None:
    """The plugin submits from a thread pool: a submission under way at Ctrl-C finishes before the run is
    cancelled by name (its job is then cancelled too), and one not yet started never starts."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    executor = plugin_executor({"ok": [], "error": [], "stop": []})
    executor._submitted_job_clusters = set()
    executor._job_submission_executor = ThreadPoolExecutor(max_workers=1)
    events: list[str] = []
    started = threading.Event()

    def sbatch(name: str) -> None:
        started.set()
        time.sleep(0.5)
        events.append(f"submitted {name}")

    executor._job_submission_executor.submit(sbatch, "a")
    executor._job_submission_executor.submit(sbatch, "b")  # queued behind a
    assert started.wait(5)
    type(executor).cancel_jobs(executor, [])
    events.append("cancelled")
    assert events == ["submitted a", "cancelled"]
    assert (fake_slurm / "scancel.calls").read_text().splitlines() == ["--name run-1"]
    time.sleep(0.7)
    assert events == ["submitted a", "cancelled"], "a queued submission ran after Ctrl-C"


def test_hook_refuses_another_plugin_version(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    plugin = pytest.importorskip("snakemake_executor_plugin_slurm")
    method = plugin.Executor.check_active_jobs
    monkeypatch.setattr(plugin.Executor, "check_active_jobs", getattr(method, "__wrapped__", method))
    monkeypatch.setattr(slurm.importlib.metadata, "version", lambda name: "3.0.0")
    assert not slurm.install_status_hook()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "found 3.0.0: not installed" in err


# --- the site block --------------------------------------------------------------------------


def test_placeholder_account_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slurm, "partition_limits", lambda: None)
    problem = check_site("my_account", {"cpu": 60}, ["-n"])
    assert isinstance(problem, ConfigError) and "\n" not in str(problem)
    assert str(problem).startswith(
        "config error: profiles/slurm/config.yaml: account: expected your SLURM account"
    )
    assert check_site("astro42", {"cpu": 60}) is None  # no sinfo: nothing more to check


def test_partitions_and_time_limits_are_checked_against_sinfo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slurm, "partition_limits", lambda: {"cpu": None, "gpu": 12 * 60.0})
    assert check_site("astro42", {"cpu": 10**6, "gpu": 720}) is None
    assert "partition: expected one of cpu, gpu" in str(check_site("astro42", {"a100": 60}))
    assert str(check_site("my_account", {}, ["--profile=/site/prof"])).startswith(
        "config error: /site/prof/config.yaml"
    )
    too_long = str(check_site("astro42", {"gpu": 1440}))
    assert (
        "runtimes on partition gpu: expected at most its time limit, 720 min" in too_long
        and "1440 min" in too_long
    )
    assert [minutes(t) for t in ("infinite", "UNLIMITED", "30:00", "2:00:00", "1-12:00:00", "45")] == [
        None, None, 30, 120, 2160, 45]  # fmt: skip
