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


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the workflow with the repo root's `slurm` link, as a user's checkout has it."""
    dest = copy_workflow(tmp_path_factory.mktemp("profiles"))
    link = REPO / "slurm"
    if link.is_symlink():
        (dest / "slurm").symlink_to(os.readlink(link))
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


def test_slurm_profile_parses() -> None:
    """The slurm profile renders: SLURM executor, site values in default resources, a GPU for train."""
    profile = parse_profile(SLURM_PROFILE)
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


def test_slurm_site_block_drives_the_profile(tmp_path: Path) -> None:
    """Site values change the rendered profile with no other edit: GPU model, sampling on GPU, grouping."""
    site = {
        "account": "astro42",
        "gpu_partition": "a100q",
        "gpu_model": "a100",
        "cpus_per_gpu": 8,
        "sample_on_gpu": True,
        "shards_per_job": 20,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(merged_profile({"__variables__": site})))
    profile = parse_profile(path)
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


def test_resolved_options() -> None:
    """As typed in the repo root: plain runs get the local profile (all cores, local GPUs shared);
    `--profile slurm` gets the SLURM executor and nothing of profiles/default (no core cap)."""
    assert "cores" in DEFAULT_PROFILE.read_text()
    remote_args = (["--profile", "slurm", "-n"], ["--executor=slurm", "-n"], ["-e", "slurm", "-n"])
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
    site = yaml.safe_load(SLURM_PROFILE.read_text())["__variables__"]
    jobs = [job for job in planned_jobs(out) if job[0] != "all"]
    assert {rule for rule, _, _ in jobs} >= {"simulate", "split", "train"}
    for rule, wildcards, resources in jobs:
        assert resources.get("slurm_account") == site["account"], (rule, wildcards, resources)
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
