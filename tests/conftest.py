"""Shared fixtures: the repo root and fresh copies of the tiny config."""

from __future__ import annotations

import copy
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.fixture
def tiny_config() -> dict:
    """A fresh copy of config/test.yaml as a dict."""
    return copy.deepcopy(yaml.safe_load((REPO / "config" / "test.yaml").read_text()))


def snakemake(
    args: list[str], cwd: Path, timeout: float = 1200, check: bool = True
) -> subprocess.CompletedProcess:
    """Run this venv's snakemake in `cwd` and return the completed process (output captured)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(
        [str(BIN / "snakemake"), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def copy_workflow(dest: Path) -> Path:
    """Copy the workflow's files (not results or .snakemake) into `dest`, so a test runs in isolation."""
    for name in ("Snakefile", "rules", "scripts", "config", "envs", "profiles", "report"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, symlinks=True)
        elif src.exists():
            shutil.copy2(src, dest / name)
    return dest


def load_benchmark(name: str):  # noqa: ANN201 - the benchmark module
    """Import benchmarks/<name>.py (scripts, not a package) as module `name`."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def write_config(path: Path, config: dict) -> Path:
    """Write a config dict as YAML."""
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def job_blocks(out: str) -> list[tuple[str, str]]:
    """The (rule, text) of every job block in Snakemake's (dry-run) output, in order."""
    import re

    blocks = []
    for block in re.split(r"\n(?=\s*(?:local)?rule \w+:)", out):
        head = re.match(r"\s*(?:local)?rule (\w+):", block)
        if head:
            blocks.append((head.group(1), block))
    return blocks


def dry_run_jobs(work: Path, configfile: Path) -> dict[str, list[str]]:
    """Jobs a dry run would execute, as {rule: [wildcard strings]} (rule `all` left out)."""
    import re

    proc = snakemake(["-n", "--cores", "2", "--configfile", str(configfile)], cwd=work)
    jobs: dict[str, list[str]] = {}
    for rule, block in job_blocks(proc.stdout + proc.stderr):
        if rule == "all":
            continue
        wild = re.search(r"wildcards: ([^\n]+)", block)
        jobs.setdefault(rule, []).append(wild.group(1).strip() if wild else "")
    return {rule: sorted(w) for rule, w in jobs.items()}


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny study run once to the end in a copy of the workflow: (work dir, config path)."""
    work = copy_workflow(tmp_path_factory.mktemp("finished_run"))
    cfg = work / "config" / "test.yaml"
    snakemake(["--cores", "2", "--configfile", str(cfg)], cwd=work, timeout=1800)
    return work, cfg
