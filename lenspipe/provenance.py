"""Provenance: which code, packages, config slice and seeds made an output.

Every job writes one JSON beside its outputs, so a figure can be traced to what produced it.
"""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from lenspipe import __version__, atomic

PACKAGES = ("lenspipe", "sbi", "torch", "deeplenstronomy", "lenstronomy", "snakemake", "zarr", "numpy")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape the results (None if absent)."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = __version__ if name == "lenspipe" else None
    return versions


def git_commit(path: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """The git commit of the workflow checkout (and whether it had local changes), or None outside git."""
    cwd = Path(path) if path else Path.cwd()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def record(
    params: Mapping[str, Any], seeds: Mapping[str, int] | None = None, rule: str | None = None
) -> dict[str, Any]:
    """The provenance record of one job: rule, config slice (its params), seeds, packages, git, platform."""
    return {
        "rule": rule,
        "config": plain(params),
        "seeds": dict(seeds or {}),
        "packages": package_versions(),
        "git": git_commit(),
        "python": platform.python_version(),
    }


def write(
    path: str | os.PathLike[str],
    params: Mapping[str, Any],
    seeds: Mapping[str, int] | None = None,
    rule: str | None = None,
) -> None:
    """Write the provenance JSON atomically."""
    atomic.write_json(path, record(params, seeds, rule))


def plain(value: Any) -> Any:
    """Snakemake's Namedlist/params objects and tuples to plain JSON types."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file read in 1 MiB blocks (an estimator.pt recorded in a provenance)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
