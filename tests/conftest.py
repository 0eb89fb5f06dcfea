"""Shared fixtures: the repo root and fresh copies of the tiny config."""

from __future__ import annotations

import copy
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


def snakemake(args: list[str], cwd: Path, timeout: float = 1200, check: bool = True) -> subprocess.CompletedProcess:
    """Run this venv's snakemake in `cwd` and return the completed process (output captured)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run([str(BIN / "snakemake"), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
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


def write_config(path: Path, config: dict) -> Path:
    """Write a config dict as YAML."""
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
