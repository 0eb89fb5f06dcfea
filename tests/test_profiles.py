"""The profiles parse and resolve without a cluster: `--profile slurm` from the repo root finds
profiles/slurm, its site block drives every site value, and profiles/default (loaded by Snakemake next
to any profile) sets local options only for local runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from snakemake.cli import get_profile_dir
from snakemake.profiles import ProfileConfigFileParser
from snakemake.utils import available_cpu_count

from .conftest import BIN, REPO, copy_workflow, job_blocks, snakemake
from .slurm.profile import SLURM_PROFILE, merged_profile

DEFAULT_PROFILE = REPO / "profiles" / "default" / "config.yaml"

# Prints, for each (argv, environment) case read from stdin as JSON, the options Snakemake resolves
# from that command line. A subprocess, since profile lookup reads the working directory, and
# profiles/default's template reads sys.argv and the environment (set here per case).
RESOLVE = """
import json, os, sys
from snakemake.cli import parse_args
keys = ("executor", "jobs", "cores", "resources", "set_resources", "default_resources", "groups",
        "group_components", "latency_wait", "retries", "slurm_init_seconds_before_status_checks")
results = []
for argv, env in json.load(sys.stdin):
    os.environ.update(env)
    sys.argv = ["snakemake", *argv]
    _, args = parse_args(argv)
    results.append({k: repr(getattr(args, k, None)) for k in keys})
    for name in env:
        del os.environ[name]
print(json.dumps(results))
"""


def parse_profile(path: Path) -> dict:
    """A profile file as Snakemake reads it (YTE rendered, mappings flattened to CLI values)."""
    with path.open() as stream:
        return dict(ProfileConfigFileParser().parse(stream))


def resolve(*cases: tuple[list[str], dict[str, str]]) -> list[dict[str, str]]:
    """The options Snakemake resolves for each `snakemake ARGV` (with extra environment) in the repo root."""
    environ = {k: v for k, v in os.environ.items() if k not in ("SNAKEMAKE_PROFILE", "LENSPIPE_GPUS")}
    proc = subprocess.run(
        [str(BIN / "python"), "-c", RESOLVE],
        input=json.dumps(cases),
        cwd=REPO,
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def planned_jobs(out: str) -> list[tuple[str, str, dict[str, str]]]:
    """(rule, wildcards, resources) of every job in a dry run's output."""
    jobs = []
    for rule, block in job_blocks(out):
        wild = re.search(r"wildcards: ([^\n]+)", block)
        res = re.search(r"resources: ([^\n]+)", block)
        resources = dict(item.split("=", 1) for item in res.group(1).split(", ")) if res else {}
        jobs.append((rule, wild.group(1).strip() if wild else "", resources))
    return jobs


# A site block filled in, as a user's edit leaves it (the shipped placeholders are refused).
SITE = {"account": "astro42"}


@pytest.fixture(autouse=True)
def no_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No SLURM cluster answers (sinfo fails), even while a SLURM test runs on this machine."""
    monkeypatch.setenv("SLURM_CONF", str(tmp_path_factory.getbasetemp() / "no-cluster" / "slurm.conf"))


def filled_profile(dest: Path, site: dict | None = None) -> Path:
    """profiles/slurm with its site block filled in (SITE, then `site`), written to dest/config.yaml."""
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / "config.yaml"
    path.write_text(
        yaml.safe_dump(merged_profile({"__variables__": {**SITE, **(site or {})}}), sort_keys=False)
    )
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the workflow with the repo root's `slurm` link and the site block filled in, as a user's
    checkout has it."""
    dest = copy_workflow(tmp_path_factory.mktemp("profiles"))
    link = REPO / "slurm"
    if link.is_symlink():
        (dest / "slurm").symlink_to(os.readlink(link))
    filled_profile(dest / "profiles" / "slurm")
    return dest


def test_slurm_name_resolves_from_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--profile slurm` in the repo root finds ./slurm, a relative link to profiles/slurm (no second copy)."""
    link = REPO / "slurm"
    assert link.is_symlink(), "./slurm must be a symlink to profiles/slurm (committed; not in .gitignore)"
    assert os.readlink(link) == "profiles/slurm"
    monkeypatch.chdir(REPO)
    found = get_profile_dir("slurm")
    assert found is not None, "snakemake does not find the profile `slurm` from the repo root"
    assert found[1].resolve() == SLURM_PROFILE.resolve()


def test_slurm_profile_parses(tmp_path: Path) -> None:
    """The slurm profile renders: SLURM executor, site values in default resources, a GPU for train."""
    profile = parse_profile(filled_profile(tmp_path))
    assert profile["executor"] == "slurm"
    assert int(profile["jobs"]) >= 1
    defaults = dict(item.split("=", 1) for item in profile["default-resources"])
    assert {"slurm_account", "slurm_partition", "runtime", "mem_mb"} <= defaults.keys()
    train = {item.split("=", 1)[0].removeprefix("train:"): item.split("=", 1)[1]
             for item in profile["set-resources"] if item.startswith("train:")}  # fmt: skip
    assert train["gpu"] == "1"
    assert train["slurm_partition"] != defaults["slurm_partition"], "train should go to the GPU partition"
    sample = [item for item in profile["set-resources"] if item.startswith("sample:")]
    assert not any(item.startswith("sample:gpu=") for item in sample), "sample is a CPU job unless asked"
    assert "groups" not in profile, "one shard per job unless shards_per_job > 1"
    assert "slurm-array-jobs" not in profile, "plugin 2.8.0's job arrays misreport task states"
    # A retry (any failure: scancel, pre-emption, memory or time limit) gets twice the memory and time.
    assert profile["retries"] == "1"
    assert {"runtime=60*attempt", "mem_mb=4000*attempt"} <= set(profile["default-resources"])
    assert "train:runtime=480*attempt" in profile["set-resources"]


def test_slurm_site_block_drives_the_profile(tmp_path: Path) -> None:
    """Site values change the rendered profile with no other edit: GPU model, sampling on GPU, grouping."""
    site = {
        "gpu_partition": "a100q",
        "gpu_model": "a100",
        "cpus_per_gpu": 8,
        "sample_on_gpu": True,
        "shards_per_job": 20,
    }
    profile = parse_profile(filled_profile(tmp_path, site))
    resources = set(profile["set-resources"])
    assert "slurm_account=astro42" in profile["default-resources"]
    for rule in ("train", "sample"):
        assert {f"{rule}:gpu=1", f"{rule}:gpu_model=a100", f"{rule}:cpus_per_gpu=8",
                f"{rule}:slurm_partition=a100q"} <= resources  # fmt: skip
    assert profile["groups"] == ["simulate=shards"]
    assert profile["group-components"] == ["shards=20"]


def test_every_site_variable_is_used() -> None:
    """Each variable of the site block is read somewhere in the profile (no dead settings)."""
    text = SLURM_PROFILE.read_text()
    body = text.split("# ====", 2)[-1]
    for name in yaml.safe_load(text)["__variables__"]:
        assert re.search(rf"\b{name}\b", body), f"site variable {name} is never used"


def test_resolved_options(tmp_path: Path) -> None:
    """As typed in the repo root: plain runs get the local profile (all cores, local GPUs shared);
    the slurm profile gets the SLURM executor and nothing of profiles/default (no core cap)."""
    assert "cores" in DEFAULT_PROFILE.read_text()
    slurm_profile = str(filled_profile(tmp_path / "slurm").parent)
    remote_args = (["--profile", slurm_profile, "-n"], ["--executor=slurm", "-n"], ["-e", "slurm", "-n"])
    local, gpus, no_gpus, *remote = resolve(
        (["-n"], {}),
        (["-n"], {"LENSPIPE_GPUS": "2"}),
        (["-n"], {"LENSPIPE_GPUS": "0"}),
        *[(args, {"LENSPIPE_GPUS": "2"}) for args in remote_args],
    )
    assert local["executor"] == "None"
    assert local["cores"] == repr(available_cpu_count())
    assert "'gpu': Resource(\"gpu\", 2)" in gpus["resources"]
    assert "'train': {'gpu': Resource(\"gpu\", 1)}" in gpus["set_resources"]
    assert no_gpus["resources"] == "{}"
    for args, resolved in zip(remote_args, remote, strict=True):
        assert resolved["cores"] == "None", f"{args}: profiles/default leaked cores into a cluster run"
        assert resolved["resources"] == "{}", f"{args}: profiles/default leaked global resources"
    slurm = remote[0]
    assert slurm["executor"] == "'slurm'"
    assert slurm["jobs"] == "100"
    assert "slurm_account" in slurm["default_resources"]


def test_slurm_dry_run_plans_gpu_training(work: Path) -> None:
    """A dry run of the tiny study with the slurm profile: training on the GPU partition, the rest on CPU."""
    proc = snakemake(["--profile", "slurm", "-n", "--configfile", "config/test.yaml"], cwd=work)
    out = proc.stdout + proc.stderr
    assert "Using profiles slurm" in out
    site = {**yaml.safe_load(SLURM_PROFILE.read_text())["__variables__"], **SITE}
    jobs = [job for job in planned_jobs(out) if job[0] != "all"]
    assert {rule for rule, _, _ in jobs} >= {"simulate", "split", "train"}
    for rule, wildcards, resources in jobs:
        assert resources.get("slurm_account") == site["account"], (rule, wildcards, resources)
        if rule not in ("split", "train"):
            assert resources.get("mem_mb") == str(site["cpu_mem_mb"]), (rule, wildcards, resources)
        if rule == "train":
            assert resources.get("gpu") == "1", (rule, wildcards, resources)
            assert resources.get("slurm_partition") == site["gpu_partition"], (rule, wildcards, resources)
            assert resources.get("runtime") == str(site["train_runtime"]), (rule, wildcards, resources)
        else:
            assert "gpu" not in resources, (rule, wildcards, resources)
            assert resources.get("slurm_partition") == site["cpu_partition"], (rule, wildcards, resources)


def test_default_profile_dry_run(work: Path) -> None:
    """Plain `snakemake -n` (no --cores) plans the tiny study with the local profile."""
    proc = snakemake(["-n", "--configfile", "config/test.yaml"], cwd=work)
    out = proc.stdout + proc.stderr
    assert "Using workflow specific profile profiles/default" in out
    assert {rule for rule, _, _ in planned_jobs(out)} >= {"simulate", "split", "train"}


def test_a_retry_gets_twice_the_memory_and_time(work: Path) -> None:
    """Every job's memory and runtime at attempt 2 (a retry) are twice those of attempt 1, the rules'
    own (split, train: sized from the config) as well as the profile's defaults."""
    plans = []
    for attempt in ("1", "2"):
        out = snakemake(
            ["--profile", "slurm", "-n", "--configfile", "config/test.yaml", "--attempt", attempt], cwd=work
        )
        plans.append(
            {(rule, wildcards): res for rule, wildcards, res in planned_jobs(out.stdout + out.stderr)}
        )
    first, second = plans
    assert first.keys() == second.keys() and {rule for rule, _ in first} >= {
        "simulate",
        "split",
        "train",
        "sample",
    }
    for job, resources in first.items():
        if job[0] == "all":
            continue
        for name in ("mem_mb", "runtime"):
            assert int(second[job][name]) == 2 * int(resources[name]), (job, name, resources, second[job])


FAKE_SLURM = """#!/bin/sh
echo "$0 $*" >> "{calls}"
case "$0" in *sinfo) printf 'cpu|infinite\\ngpu|2-00:00:00\\n' ;; *sbatch) echo 1 ;; esac
"""


def fake_slurm(bin_dir: Path, calls: Path) -> None:
    """SLURM's commands as FAKE_SLURM, in `bin_dir`: Snakemake's SLURM plugin will not even load without squeue or
    sacct on the PATH, so a machine without SLURM needs them all."""
    bin_dir.mkdir()
    for name in ("sbatch", "sinfo", "squeue", "sacct", "sacctmgr", "scontrol", "srun"):
        (bin_dir / name).write_text(FAKE_SLURM.format(calls=calls))
        (bin_dir / name).chmod(0o755)


def test_placeholder_site_block_is_refused_before_anything_is_submitted(tmp_path: Path) -> None:
    """profiles/slurm as shipped (account my_account): one line naming the file and the setting, no traceback,
    and nothing submitted (sbatch and srun never run)."""
    (tmp_path / "work").mkdir()
    dest = copy_workflow(tmp_path / "work")
    (dest / "slurm").symlink_to("profiles/slurm")
    bin_dir = tmp_path / "bin"
    calls = tmp_path / "calls.txt"
    fake_slurm(bin_dir, calls)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("SNAKEMAKE_PROFILE", None)
    proc = subprocess.run([str(BIN / "snakemake"), "--profile", "slurm", "--configfile", "config/test.yaml"],
                          cwd=dest, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    out = (proc.stdout + proc.stderr).strip()
    assert proc.returncode != 0
    assert [line for line in out.splitlines() if not line.startswith("Using profiles")] == [
        "lenspipe: config error: slurm/config.yaml: account: expected your SLURM account "
        "(sacctmgr -n show assoc user=$USER format=account), not the placeholder (got 'my_account')"
    ], out
    called = calls.read_text().split("\n") if calls.exists() else []
    assert not [c for c in called if c and Path(c.split()[0]).name in ("sbatch", "srun")], called


def test_a_partition_shorter_than_a_retry_is_refused(work: Path, tmp_path: Path) -> None:
    """sinfo says gpu allows 2 days: train_runtime 1500 min retried (3000 min) does not fit; 1440 does."""
    bin_dir = tmp_path / "bin"
    fake_slurm(bin_dir, tmp_path / "calls.txt")
    env_path = f"{bin_dir}{os.pathsep}{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    for runtime, ok in ((1440, True), (1500, False)):
        profile = filled_profile(tmp_path / f"p{runtime}", {"train_runtime": runtime}).parent
        proc = subprocess.run([str(BIN / "snakemake"), "--profile", str(profile), "-n", "--configfile", "config/test.yaml"],
                              cwd=work, env={**os.environ, "PATH": env_path}, capture_output=True, text=True,
                              timeout=300)  # fmt: skip
        out = proc.stdout + proc.stderr
        if ok:
            assert proc.returncode == 0, out[-3000:]
        else:
            assert proc.returncode != 0 and out.strip().splitlines()[1:] == [
                f"lenspipe: config error: {profile}/config.yaml: runtimes on partition gpu: expected at most its "
                "time limit, 2880 min (a retry asks for its runtime x attempt) (got '3000 min')"
            ], out
