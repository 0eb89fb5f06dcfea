"""The split: disjoint, complete, seeded, normalisation from the training part only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lenspipe.errors import DataError
from lenspipe.normalisation import Normalisation
from lenspipe.split import SplitSettings, split_shards
from lenspipe.store import open_store, write_store

NAMES = ["sigma_v", "theta_E"]


def _shards(tmp: Path, sizes: list[int]) -> list[Path]:
    paths, start = [], 0
    for k, n in enumerate(sizes):
        ids = np.arange(start, start + n, dtype=np.float32)
        images = np.broadcast_to(ids[:, None, None, None], (n, 3, 4, 4)).astype(np.float32).copy()
        images[:, 1] *= 2.0  # band r twice band g
        theta = np.stack([ids, -ids], axis=1)
        path = tmp / f"shard_{k:04d}.zarr"
        write_store(
            path,
            images,
            theta,
            NAMES,
            attrs={"shard": k, "bands": ["g", "r", "i"]},
            metadata=pd.DataFrame({"OBJID": np.arange(n)}),
            chunk_size=4,
        )
        paths.append(path)
        start += n
    return paths


def _run(tmp: Path, shards: list[Path], seed: int = 1, frac: float = 0.25) -> tuple:
    out = tmp / f"out{seed}"
    stats = split_shards(
        shards,
        out / "train.zarr",
        out / "test.zarr",
        out / "norm.json",
        SplitSettings(frac, seed),
        check_depth=False,
    )  # synthetic 4x4 stores: no noise to check (tests/test_depth.py does)
    return open_store(out / "train.zarr"), open_store(out / "test.zarr"), stats, out


def test_split_is_disjoint_complete_and_seeded(tmp_path: Path) -> None:
    shards = _shards(tmp_path, [10, 10])
    train, test, stats, out = _run(tmp_path, shards)
    ids_train, ids_test = train.theta[:, 0], test.theta[:, 0]
    assert len(test) == 5 and len(train) == 15
    assert set(ids_train).isdisjoint(ids_test)
    assert sorted(np.concatenate([ids_train, ids_test])) == list(range(20))
    # images stay aligned with their labels
    assert np.all(train.load_images()[:, 0, 0, 0] == ids_train)
    # metadata records where each image came from (never by OBJID, which restarts per shard)
    meta = test.metadata()
    assert np.all(meta["shard"] * 10 + meta["shard_row"] == test.theta[:, 0])
    # same seed, same split; another seed, another split
    again, _, _, _ = _run(tmp_path, shards, seed=1)
    other, _, _, _ = _run(tmp_path, shards, seed=2)
    assert np.array_equal(again.theta, train.theta)
    assert not np.array_equal(other.theta, train.theta)
    assert json.loads((out / "norm.json").read_text()) == stats


def test_normalisation_uses_training_images_only(tmp_path: Path) -> None:
    train, test, stats, _ = _run(tmp_path, _shards(tmp_path, [12, 8]))
    ids = train.theta[:, 0].astype(np.float64)
    assert stats["bands"] == ["g", "r", "i"]
    assert stats["n_train"] == len(train)
    assert stats["mean"][0] == pytest.approx(ids.mean())
    assert stats["mean"][1] == pytest.approx(2 * ids.mean())
    assert stats["std"][0] == pytest.approx(ids.std())
    assert stats["mean"][0] != pytest.approx(np.arange(20).mean())  # not the whole data set


def test_normalisation_rejects_constant_band() -> None:
    with pytest.raises(DataError, match="standard deviations must be finite and > 0"):
        Normalisation.from_images(np.ones((3, 2, 4, 4), np.float32), ["g", "r"])


def test_damaged_shard_is_named_and_nothing_written(tmp_path: Path) -> None:
    shards = _shards(tmp_path, [10, 10])
    # The first chunk: images are stored uncompressed, and the last chunk's padding past the array is not data.
    chunk = shards[1] / "images" / "c" / "0" / "0" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:-3] + b"xyz")
    with pytest.raises(DataError, match="shard_0001.zarr"):
        _run(tmp_path, shards)
    assert not (tmp_path / "out1" / "train.zarr").exists()


@pytest.mark.parametrize("exact", [True, False], ids=["exact_statistics", "chunked_statistics"])
def test_split_memory_is_bounded_and_values_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exact: bool
) -> None:
    """50 MB of shards split with a peak well under the images' size; the stores hold what the in-memory split
    gave (the seeded permutation of the concatenated shards), the statistics equal its (bit for bit when exact)."""
    import tracemalloc

    from lenspipe import normalisation

    rng = np.random.default_rng(0)
    shards, blocks = [], []
    for k in range(32):
        images = rng.standard_normal((128, 3, 32, 32)).astype(np.float32) * (k + 1)
        theta = rng.random((128, 2)).astype(np.float32)
        shards.append(tmp_path / f"shard_{k:04d}.zarr")
        write_store(
            shards[-1],
            images,
            theta,
            NAMES,
            attrs={"shard": k, "bands": ["g", "r", "i"]},
            metadata=pd.DataFrame({"OBJID": np.arange(128)}),
        )
        blocks.append(images)
    everything = np.concatenate(blocks)
    del blocks
    if not exact:
        monkeypatch.setattr(normalisation, "EXACT_MAX_BYTES", 0)
    tracemalloc.start()
    try:
        train, test, stats, _ = _run(tmp_path, shards, seed=4, frac=0.1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    bound = 0.9 if exact else 0.4  # exact: one band of the training images in float64 (2/3 of them here)
    assert peak < bound * everything.nbytes, f"peak {peak / 1e6:.1f} MB of {everything.nbytes / 1e6:.1f} MB"
    order = np.random.default_rng(SplitSettings(0.1, 4).seed).permutation(len(everything))
    n_test = len(test)
    assert np.array_equal(train.load_images(), everything[np.sort(order[n_test:])])
    assert np.array_equal(test.load_images(), everything[np.sort(order[:n_test])])
    expected = Normalisation.from_images(everything[np.sort(order[n_test:])], ["g", "r", "i"]).as_dict()
    if exact:
        assert stats == expected
    else:
        assert stats["mean"] == pytest.approx(expected["mean"], rel=1e-12, abs=1e-15)
        assert stats["std"] == pytest.approx(expected["std"], rel=1e-12)
