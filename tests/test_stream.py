"""The streaming training loader: every pair once per epoch, seeded order, resume, memory budget, modified stores."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from lenspipe import store as store_module
from lenspipe.config import check_config
from lenspipe.data import InMemoryTrainingData, choose_loader, load_training_data, split_indices
from lenspipe.errors import ConfigError, DataError
from lenspipe.priors import PriorBox
from lenspipe.store import open_store, window_chunks, write_store
from lenspipe.stream import StreamingTrainingData, verify_chunks

NAMES = ["sigma_v", "theta_E"]
BOX = PriorBox(tuple(NAMES), (0.0, -1e6), (1e6, 0.0))


def make_store(path: Path, n: int = 100, chunk: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A store whose theta[:, 0] is the row number; images random, with the row number in pixel (0, 0, 0)."""
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((n, 2, 4, 4)).astype(np.float32)
    images[:, 0, 0, 0] = np.arange(n)
    theta = np.stack([np.arange(n), -np.arange(n)], axis=1).astype(np.float32)
    write_store(path, images, theta, NAMES, attrs={"bands": ["g", "r"]}, chunk_size=chunk)
    return images, theta


def streaming(path: Path, window: int = 2, keep_validation: bool = False) -> StreamingTrainingData:
    store = open_store(path, verify=False)
    train, val = split_indices(len(store), 0.2, seed=5)
    verified = verify_chunks(store, val if keep_validation else None)
    return StreamingTrainingData(store, verified, store.theta, train, val, NAMES, window)


def in_memory(path: Path, validation_fraction: float = 0.2) -> InMemoryTrainingData:
    store = open_store(path)
    train, val = split_indices(len(store), validation_fraction, seed=5)
    return InMemoryTrainingData(
        torch.from_numpy(store.theta),
        torch.from_numpy(store.load_images()),
        torch.from_numpy(train),
        torch.from_numpy(val),
        NAMES,
    )


def epoch(data, batch_size: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(data.train_batches(batch_size, torch.Generator().manual_seed(seed)))


def test_each_training_pair_once_per_epoch_images_with_their_theta(tmp_path: Path) -> None:
    make_store(tmp_path / "s.zarr")
    data = streaming(tmp_path / "s.zarr")
    batches = epoch(data, 10, seed=1)
    assert len(batches) == data.batches_per_epoch(10) == 8 and all(len(t) == 10 for t, _ in batches)
    rows = torch.cat([t[:, 0] for t, _ in batches]).numpy()
    assert sorted(rows) == sorted(data.train_index)  # each pair once, no validation pair
    assert all(torch.equal(t[:, 0], x[:, 0, 0, 0]) for t, x in batches)  # images stay with their theta
    partial = torch.cat([t[:, 0] for t, _ in epoch(data, 7, seed=1)]).numpy()
    assert len(partial) == 77 and len(set(partial)) == 77  # the last partial batch dropped, as in memory
    for kept in (False, True):
        val = list(streaming(tmp_path / "s.zarr", keep_validation=kept).validation_batches(6))
        assert list(torch.cat([t[:, 0] for t, _ in val]).numpy()) == list(data.validation_index)
        assert all(torch.equal(t[:, 0], x[:, 0, 0, 0]) for t, x in val)


def test_seeded_order_differs_from_in_memory_only_in_order(tmp_path: Path) -> None:
    make_store(tmp_path / "s.zarr")
    stream, memory = streaming(tmp_path / "s.zarr"), in_memory(tmp_path / "s.zarr")
    a, b, other = epoch(stream, 10, 1), epoch(stream, 10, 1), epoch(stream, 10, 2)
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x[0], y[0]) for x, y in zip(a, other, strict=True))
    mem = epoch(memory, 10, 1)
    order = lambda batches: torch.cat([t[:, 0] for t, _ in batches]).numpy()  # noqa: E731
    assert sorted(order(a)) == sorted(order(mem)) and list(order(a)) != list(order(mem))
    images = lambda batches: torch.cat([x for _, x in batches])  # noqa: E731
    # the same pairs: the same statistics of the epoch's images; per-batch means spread alike
    assert images(a).mean().item() == pytest.approx(images(mem).mean().item(), abs=1e-6)
    assert images(a).std().item() == pytest.approx(images(mem).std().item(), rel=1e-6)
    spread = [float(np.std([x[:, 1].mean().item() for _, x in b])) for b in (a, mem)]
    assert spread[0] == pytest.approx(spread[1], rel=0.5)
    ref_s, ref_m = stream.reference(30), memory.reference(30)
    assert torch.equal(ref_s[0], ref_m[0]) and torch.equal(ref_s[1], ref_m[1])
    kept = streaming(tmp_path / "s.zarr", keep_validation=True)
    for part in ("train", "validation"):
        want = torch.cat(list(memory.image_batches(part, 16)))
        assert torch.equal(torch.cat(list(stream.image_batches(part, 16))), want)
        assert torch.equal(torch.cat(list(kept.image_batches(part, 16))), want)


def test_interrupted_epoch_resumes_bit_identically(tmp_path: Path) -> None:
    """The epoch's order is drawn when it starts: the generator state saved before it gives the same batches
    after an interruption after k batches, and leaves the generator as an uninterrupted epoch does."""
    make_store(tmp_path / "s.zarr")
    data = streaming(tmp_path / "s.zarr")
    generator = torch.Generator().manual_seed(3)
    epoch(data, 10, 0)  # an earlier epoch of another stream
    start = generator.get_state()
    straight = list(data.train_batches(10, generator))
    after_straight = generator.get_state()

    generator.set_state(start)
    batches = data.train_batches(10, generator)
    first = [next(batches) for _ in range(3)]
    batches.close()  # killed after 3 batches: the worker thread is stopped
    assert torch.equal(generator.get_state(), after_straight)
    generator.set_state(start)  # the checkpoint's state
    resumed = list(data.train_batches(10, generator))
    assert all(torch.equal(x[1], y[1]) for x, y in zip(first, straight[:3], strict=True))
    assert all(
        torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(resumed, straight, strict=True)
    )


def test_memory_budget_chooses_the_loader(tmp_path: Path) -> None:
    size = 10 * 2**20
    assert choose_loader("auto", None, size) == "memory"
    assert choose_loader("auto", 100, size) == "memory"
    assert choose_loader("auto", 5, size) == "stream"
    assert choose_loader("memory", 5, size) == "memory" and choose_loader("stream", None, size) == "stream"
    make_store(tmp_path / "s.zarr", n=300, chunk=16)
    args = (tmp_path / "s.zarr", NAMES, ["g", "r"], BOX, 0.2, 5)
    assert isinstance(load_training_data(*args), InMemoryTrainingData)
    small = 0  # the store is 38 kB: a budget of 0 MB is "does not fit", but too small for the loader too
    with pytest.raises(ConfigError, match="training.memory_budget_mb: expected at least"):
        load_training_data(*args, memory_budget_mb=small)
    data = load_training_data(*args, loader="stream", memory_budget_mb=1)
    # 60 validation pairs (7.5 kB) kept in memory; the windows get the rest of the budget
    assert isinstance(data, StreamingTrainingData) and data.validation is not None
    assert data.window_chunks == ((2**20 - 60 * 128) // (16 * 128) - 1) // 2
    memory = load_training_data(*args)
    assert sorted(torch.cat([t[:, 0] for t, _ in epoch(data, 20, 1)]).tolist()) == sorted(
        torch.cat([t[:, 0] for t, _ in epoch(memory, 20, 1)]).tolist()
    )


def test_too_small_budget_is_a_config_error(tiny_config: dict) -> None:
    image_bytes = 3 * 64 * 64 * 4
    assert window_chunks(36, 256, image_bytes) == 1 and window_chunks(1024, 256, image_bytes) == 42
    with pytest.raises(ConfigError, match="training.memory_budget_mb: expected at least 36 MB"):
        window_chunks(35, 256, image_bytes)
    tiny_config["training"]["memory_budget_mb"] = 1
    with pytest.raises(ConfigError, match="training.memory_budget_mb"):
        check_config(tiny_config)
    tiny_config["training"]["loader"] = "memory"  # the budget does not apply to the in-memory loader
    check_config(tiny_config)


def test_store_chunked_for_slow_streaming_is_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_store(tmp_path / "small.zarr", chunk=4)
    with caplog.at_level(logging.WARNING):
        data = streaming(tmp_path / "small.zarr")
    assert "chunks of 4 images are small for streaming" in caplog.text
    assert len(epoch(data, 10, 1)) == 8  # warned, not refused
    # A compressed store (as the split wrote before) is read through Zarr: warned, the same batches.
    monkeypatch.setattr(store_module, "image_codecs", store_module.zarr_codecs)
    make_store(tmp_path / "zstd.zarr")
    monkeypatch.undo()
    make_store(tmp_path / "raw.zarr")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        zstd, raw = streaming(tmp_path / "zstd.zarr"), streaming(tmp_path / "raw.zarr")
    assert "ZstdCodec" in caplog.text and "decodes every chunk" in caplog.text and raw.raw and not zstd.raw
    assert all(torch.equal(a[1], b[1]) for a, b in zip(epoch(zstd, 10, 1), epoch(raw, 10, 1), strict=True))


def test_store_modified_during_training_stops_the_job(tmp_path: Path) -> None:
    make_store(tmp_path / "s.zarr")
    data = streaming(tmp_path / "s.zarr")
    epoch(data, 10, 1)
    images = zarr.open_group(str(tmp_path / "s.zarr"), mode="r+")["images"]
    images[40:48] = images[40:48] + 1.0  # chunk 5 rewritten in place
    with pytest.raises(DataError, match=r"s.zarr: images chunk 5 changed since training started"):
        epoch(data, 10, 1)
    with pytest.raises(DataError, match="images do not match their checksum"):
        streaming(tmp_path / "s.zarr")  # a new job refuses the store at the start
