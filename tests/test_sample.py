"""Rule sample's function on a stand-in estimator: layout, box, seeding, timing, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lenspipe import sample
from lenspipe.errors import DataError
from lenspipe.priors import PriorBox
from lenspipe.seeds import derive_seed

from .gaussian_toy import BOX, StandInEstimator, install_stand_in, write_test_store, write_untrained_estimator


def _run(tmp_path: Path, name: str, settings: sample.SampleSettings) -> sample.SampleSet:
    if not (
        tmp_path / "est.pt"
    ).exists():  # the stand-in is not read from it, but resuming fingerprints its bytes
        (tmp_path / "est.pt").write_bytes(b"stand-in estimator")
    sample.sample_test_set(
        tmp_path / "est.pt",
        tmp_path / "test.zarr",
        tmp_path / f"{name}.zarr",
        tmp_path / f"{name}.json",
        settings,
        estimator="toy",
    )
    return sample.open_samples(tmp_path / f"{name}.zarr")


def test_settings_from_params_derive_the_seed_from_the_estimator() -> None:
    s = sample.SampleSettings.from_params(5000, 20240601, "maf", threads=2)
    assert (
        s.seed
        == derive_seed(20240601, "sample", "maf")
        != sample.SampleSettings.from_params(5000, 20240601, "nsf").seed
    )
    assert s.images_per_batch == sample.ROWS_PER_BATCH // 5000 and s.threads == 2


def test_samples_store_layout_box_and_timing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = install_stand_in(monkeypatch, StandInEstimator())
    write_test_store(tmp_path / "test.zarr", 10)
    monkeypatch.setattr(sample, "ROWS_PER_BATCH", 4 * 50)  # 4 images per batch: 3 batches
    settings = sample.SampleSettings(num_samples=50, seed=9)
    got = _run(tmp_path, "a", settings)
    assert calls == [(str(tmp_path / "est.pt"), "auto")]
    assert got.samples.shape == (10, 50, 3) and got.samples.dtype == np.float32
    assert got.parameter_names == list(BOX.names) and got.prior_box == BOX
    assert got.attrs["units"] == ["km/s", "arcsec", ""] and got.attrs["seed"] == 9
    assert BOX.contains(got.samples).all()
    timing = json.loads((tmp_path / "a.json").read_text())
    assert timing["n_images"] == 10 and timing["num_samples"] == 50 and timing["images_per_batch"] == 4
    assert timing["samples_per_s"] > 0 and timing["sampling_s"] <= timing["wall_time_s"]
    # same settings, same samples, whatever the batching (the estimator seeds each image by its index)
    monkeypatch.setattr(sample, "ROWS_PER_BATCH", 3 * 50)
    np.testing.assert_array_equal(_run(tmp_path, "b", settings).samples, got.samples)
    assert not np.array_equal(_run(tmp_path, "c", sample.SampleSettings(50, seed=10)).samples, got.samples)


def test_damaged_samples_store_is_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_stand_in(monkeypatch, StandInEstimator())
    write_test_store(tmp_path / "test.zarr", 6)
    monkeypatch.setattr(sample, "ROWS_PER_BATCH", 2 * 20)
    _run(tmp_path, "a", sample.SampleSettings(num_samples=20, seed=1))
    chunk = sorted((tmp_path / "a.zarr" / "samples" / "c").rglob("*"))[-1]
    chunk.unlink()  # a missing chunk would read back as zeros
    with pytest.raises(DataError, match="checksum"):
        sample.open_samples(tmp_path / "a.zarr")
    with pytest.raises(DataError, match="not found"):
        sample.open_samples(tmp_path / "missing.zarr")


def test_samples_outside_the_box_fail_and_leave_no_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_stand_in(monkeypatch, StandInEstimator(outside=True))
    write_test_store(tmp_path / "test.zarr", 4)
    with pytest.raises(DataError, match="outside the prior box"):
        _run(tmp_path, "a", sample.SampleSettings(num_samples=10, seed=1))
    assert not (tmp_path / "a.zarr").exists() and not (tmp_path / "a.json").exists()


def test_parameter_mismatch_names_the_estimator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = PriorBox(("sigma_v", "theta_E", "e2"), BOX.low, BOX.high)
    install_stand_in(monkeypatch, StandInEstimator(prior_box=other))
    write_test_store(tmp_path / "test.zarr", 4)
    with pytest.raises(DataError, match="est.pt.*infers"):
        _run(tmp_path, "a", sample.SampleSettings(num_samples=10, seed=1))


def test_real_estimator_file_through_the_contract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_untrained_estimator(tmp_path / "est.pt")
    write_test_store(tmp_path / "test.zarr", 5)
    monkeypatch.setattr(sample, "ROWS_PER_BATCH", 2 * 30)
    got = _run(tmp_path, "a", sample.SampleSettings(num_samples=30, seed=4))
    assert got.samples.shape == (5, 30, 3) and BOX.contains(got.samples).all()
    assert json.loads((tmp_path / "a.json").read_text())["device"] == "cpu"
    monkeypatch.setattr(sample, "ROWS_PER_BATCH", 5 * 30)  # one batch: the same samples
    np.testing.assert_array_equal(
        _run(tmp_path, "b", sample.SampleSettings(num_samples=30, seed=4)).samples, got.samples
    )


def _interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: sample.SampleSettings) -> Path:
    """Sample 10 images in 4 batches of 3 with an estimator killed on its third batch; returns the partial store."""
    install_stand_in(monkeypatch, StandInEstimator(fail_at_call=2))
    with pytest.raises(RuntimeError, match="killed"):
        _run(tmp_path, "a", settings)
    assert not (tmp_path / "a.zarr").exists() and not (tmp_path / "a.json").exists()
    partial = tmp_path / ".a.zarr.partial"
    assert len(json.loads((partial / sample.RESUME_FILE).read_text())["batch_sha256"]) == 2
    return partial


@pytest.fixture
def resumable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[sample.SampleSet, sample.SampleSettings]:
    """An uninterrupted reference run (10 images, batches of 3) beside which interrupted runs are made."""
    write_test_store(tmp_path / "test.zarr", 10)
    monkeypatch.setattr(sample, "ROWS_PER_BATCH", 3 * 40)
    settings = sample.SampleSettings(num_samples=40, seed=5)
    install_stand_in(monkeypatch, StandInEstimator())
    return _run(tmp_path, "ref", settings), settings


def test_interrupted_sampling_resumes_where_it_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, resumable: tuple[sample.SampleSet, sample.SampleSettings]
) -> None:
    ref, settings = resumable
    partial = _interrupted(tmp_path, monkeypatch, settings)
    again = StandInEstimator()
    install_stand_in(monkeypatch, again)
    got = _run(tmp_path, "a", settings)
    assert again.offsets == [6, 9]  # only the two unfinished batches were sampled
    np.testing.assert_array_equal(got.samples, ref.samples)
    assert got.attrs["checksum"] == ref.attrs["checksum"]
    assert not partial.exists() and not (tmp_path / "a.zarr" / sample.RESUME_FILE).exists()
    timing = json.loads((tmp_path / "a.json").read_text())
    assert timing["resumed_from_image"] == 6 and 0 < timing["sampling_s"] <= timing["wall_time_s"]
    assert json.loads((tmp_path / "ref.json").read_text())["resumed_from_image"] == 0


@pytest.mark.parametrize("change", ["seed", "estimator file", "damaged chunk", "damaged state"])
def test_partial_samples_from_other_inputs_or_damaged_are_not_resumed(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    resumable: tuple[sample.SampleSet, sample.SampleSettings],
    change: str,
) -> None:
    ref, settings = resumable
    partial = _interrupted(tmp_path, monkeypatch, settings)
    if change == "seed":
        settings = sample.SampleSettings(num_samples=40, seed=6)
    elif change == "estimator file":
        (tmp_path / "est.pt").write_bytes(b"retrained estimator")
    elif change == "damaged chunk":
        chunk = sorted(p for p in (partial / "samples").rglob("*") if p.is_file())[0]
        chunk.write_bytes(chunk.read_bytes()[:-5])
    else:
        (partial / sample.RESUME_FILE).write_text("{")
    again = StandInEstimator()
    install_stand_in(monkeypatch, again)
    got = _run(tmp_path, "a", settings)
    assert again.offsets == [0, 3, 6, 9]  # started over
    if change == "seed":
        assert not np.array_equal(got.samples, ref.samples)
    else:
        np.testing.assert_array_equal(got.samples, ref.samples)
