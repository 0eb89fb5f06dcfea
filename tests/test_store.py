"""Zarr stores: round trip, atomic writes, and detection of missing, damaged or truncated data."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lenspipe import atomic
from lenspipe.errors import DataError
from lenspipe.store import open_store, write_store

NAMES = ["sigma_v", "theta_E", "e1"]


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "shard_0000.zarr"
    write_store(
        path,
        rng.normal(size=(40, 3, 8, 8)),
        rng.normal(size=(40, 3)),
        NAMES,
        attrs={"bands": ["g", "r", "i"]},
        metadata=pd.DataFrame({"x": np.arange(40)}),
        chunk_size=8,
    )
    return path


def _chunks(path: Path) -> list[Path]:
    return sorted(p for p in (path / "images" / "c").rglob("*") if p.is_file())


def test_round_trip_with_units(store_path: Path) -> None:
    store = open_store(store_path)
    assert len(store) == 40 and store.bands == ["g", "r", "i"]
    assert store.images.dtype == np.float32 and store.images.chunks[0] == 8
    assert store.parameter_names == NAMES
    import zarr

    attrs = dict(zarr.open_group(str(store_path), mode="r")["theta"].attrs)
    assert attrs["units"] == ["km/s", "arcsec", ""]
    assert np.array_equal(store.load_images([3, 7]), store.load_images()[[3, 7]])
    assert list(store.metadata()["x"]) == list(range(40))
    assert sum(len(b) for b in store.iter_images(batch=16)) == 40


def test_missing_chunk_is_detected(store_path: Path) -> None:
    _chunks(store_path)[2].unlink()  # zarr would silently read zeros
    with pytest.raises(DataError, match=r"shard_0000.zarr: images do not match their checksum"):
        open_store(store_path)


def test_damaged_chunk_is_detected(store_path: Path) -> None:
    chunk = _chunks(store_path)[1]
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with pytest.raises(DataError, match="shard_0000.zarr"):
        open_store(store_path)


@pytest.mark.parametrize("victim", ["zarr.json", "theta", "images/zarr.json"])
def test_truncated_store_is_detected(store_path: Path, victim: str) -> None:
    target = store_path / victim
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(DataError, match="shard_0000.zarr: truncated or damaged store"):
        open_store(store_path)


def test_missing_store_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope.zarr: store not found"):
        open_store(tmp_path / "nope.zarr")


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.zarr"
    with pytest.raises(ValueError):
        write_store(target, np.zeros((4, 3, 8, 8)), np.zeros((5, 3)), NAMES)
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_keeps_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    atomic.write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text().strip().endswith("}") and '"v": 1' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_atomic_path_removes_temporaries_of_dead_jobs_only(tmp_path: Path) -> None:
    """A killed job's `.name.tmp-<pid>` is removed by the next write of `name`; a live process's is kept."""
    import os
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    target = tmp_path / "shard.zarr"
    (tmp_path / f".shard.zarr.tmp-{dead_pid}").mkdir()
    (tmp_path / f".shard.zarr.tmp-{dead_pid}" / "chunk").write_text("partial")
    live = tmp_path / f".shard.zarr.tmp-{os.getppid()}"
    live.mkdir()
    other = tmp_path / f".other.zarr.tmp-{dead_pid}"
    other.mkdir()
    atomic.write_text(target, "done")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["shard.zarr", live.name, other.name])
