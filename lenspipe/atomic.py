"""Atomic outputs: write under a temporary name beside the target, then rename.

A job killed midway leaves only a hidden temporary file, never something that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path (file or directory) that is renamed to `path` if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(target)
    remove(tmp)
    remove_stale(target)
    try:
        yield tmp
        promote(tmp, target)
    finally:
        remove(tmp)


def remove_stale(path: Path) -> None:
    """Remove the temporaries of `path` left by killed jobs (their process is gone), so kills leave no clutter.

    On a shared file system a temporary of a process on another node looks dead here; Snakemake never runs one
    job twice at once, so only a lost job's temporary can be removed this way (its late rename would then fail)."""
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            remove(stale)


def _alive(pid: int) -> bool:
    """Whether a process with this id runs here (another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def partial_path(path: str | os.PathLike[str]) -> Path:
    """The fixed hidden name beside `path` under which a resumable job keeps its unfinished output."""
    target = Path(path)
    return target.with_name(f".{target.name}.partial")


def promote(partial: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Rename a finished partial output (file or directory) to `path`, replacing what is there."""
    target = Path(path)
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    os.replace(partial, target)


def remove(path: Path) -> None:
    """Delete a file, link or directory tree at `path`, if there is one."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write JSON atomically, keys sorted so identical data gives identical files."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
