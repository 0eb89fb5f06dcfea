"""Training: every estimator trains on a tiny synthetic store, determinism, resume after kill -9, errors."""

from __future__ import annotations

import copy
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lenspipe import posterior as lp_posterior
from lenspipe.data import TrainingData, load_training_data, split_indices, synthetic_lenses
from lenspipe.device import resolve_device
from lenspipe.errors import ConfigError, DataError, DeviceError
from lenspipe.normalisation import Normalisation
from lenspipe.priors import Cosmology, PriorBox, prior_box
from lenspipe.rule_params import train_mem_mb, training_params
from lenspipe.store import CHUNK_IMAGES, write_store
from lenspipe.train import (
    ExecutionSettings,
    TrainJob,
    TrainOutputs,
    train_job,
)

REPO = Path(__file__).resolve().parent.parent
OUTPUT_FILES = ("estimator.pt", "epochs.csv", "summary.json", "provenance.json")


@dataclass
class Study:
    """A tiny config and its synthetic training store and normalisation."""

    config: dict
    store: Path
    normalisation: Path
    box: PriorBox
    images: np.ndarray


def make_study(root: Path, config: dict, n: int = 64, seed: int = 3, chunk: int = CHUNK_IMAGES) -> Study:
    config = copy.deepcopy(config)
    config["simulation"]["num_pix"] = 32
    config["training"].update({"max_epochs": 2, "batch_size": 16, "threads": 1})
    sim = config["simulation"]
    box = prior_box(config["priors"], config["parameters"], Cosmology(**sim["cosmology"]))
    images, theta = synthetic_lenses(n, box, seed, bands=len(sim["bands"]), num_pix=sim["num_pix"])
    store, norm = root / "split" / "train.zarr", root / "split" / "normalisation.json"
    write_store(store, images, theta, config["parameters"], attrs={"bands": sim["bands"]}, chunk_size=chunk)
    Normalisation.from_images(images, sim["bands"]).write(norm)
    return Study(config, store, norm, box, images)


@pytest.fixture
def study(tmp_path: Path, tiny_config: dict) -> Study:
    return make_study(tmp_path, tiny_config)


def run_training(
    study: Study, name: str, outdir: Path, config: dict | None = None, **training: object
) -> dict:
    config = copy.deepcopy(config or study.config)
    config["training"].update(training)
    job = TrainJob.from_params(training_params(config, name), name)
    return train_job(
        job,
        study.store,
        study.normalisation,
        TrainOutputs.in_dir(outdir),
        ExecutionSettings.from_config(config["training"]),
    )


def read_epochs(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def check_posterior(study: Study, estimator: Path) -> None:
    """Samples from the saved estimator: shape, finite, inside the prior box (sbi's posterior and the fast path)."""
    est = lp_posterior.load(estimator, parameter_names=study.config["parameters"])
    samples = est.sample_images(study.images[:3], 40, seed=1, batch_size=2)
    assert samples.shape == (3, 40, len(study.config["parameters"])) and samples.dtype == np.float32
    assert np.isfinite(samples).all() and study.box.contains(samples).all()
    theta = est.posterior.sample((30,), x=torch.from_numpy(study.images[:1]), show_progress_bars=False)
    assert theta.shape == (30, 6) and study.box.contains(theta.numpy()).all()


# --------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["maf", "nsf", "nsf_16x512", "coupling_resnet"])
def test_each_estimator_trains(
    study: Study, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    out = tmp_path / "train" / name
    summary = run_training(study, name, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)  # checkpoint removed when done
    rows = read_epochs(out / "epochs.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]  # max_epochs is exactly the number of epochs
    assert set(rows[0]) == {"epoch", "train_loss", "val_loss", "seconds"}
    assert json.loads((out / "summary.json").read_text()) == summary
    for key in ("epochs", "best_epoch", "best_val_loss", "wall_time_s", "device", "train_pairs_per_s"):
        assert key in summary
    assert 0 < summary["cpu_time_s"]
    assert (
        summary["epochs"] == 2 and summary["stopped"] == "max_epochs" and summary["device"].startswith("cpu")
    )
    record = torch.load(out / "estimator.pt", weights_only=True)  # no pickled objects
    assert record["estimator"] == name and record["parameter_names"] == study.config["parameters"]
    assert record["image_shape"] == [3, 32, 32] and record["bands"] == ["g", "r", "i"]
    assert record["estimator_settings"]["flow"] == study.config["estimators"][name]["flow"]
    assert list(cwd.iterdir()) == []  # no TensorBoard logs (sbi-logs) in the working directory
    check_posterior(study, out / "estimator.pt")


@pytest.mark.slow
@pytest.mark.parametrize(
    "entry",
    [
        {"flow": "zuko_nsf", "num_transforms": 2, "hidden_features": 32},
        {"flow": "maf_rqs", "num_transforms": 2, "hidden_features": 32},
        {"flow": "mdn", "num_components": 3, "hidden_features": 32},
        {"flow": "maf", "num_transforms": 2, "hidden_features": 32, "dropout_probability": 0.2},
        {"flow": "nsf", "num_transforms": 2, "hidden_features": 32, "dropout_probability": 0.2},
    ],
)
def test_a_fifth_estimator_is_a_config_entry(study: Study, entry: dict, tmp_path: Path) -> None:
    config = copy.deepcopy(study.config)
    config["estimators"]["fifth"] = entry
    summary = run_training(study, "fifth", tmp_path / "fifth", config=config, max_epochs=1)
    assert summary["epochs"] == 1 and summary["flow"] == entry["flow"]
    check_posterior(study, tmp_path / "fifth" / "estimator.pt")


@pytest.mark.slow
def test_same_config_same_weights(study: Study, tmp_path: Path) -> None:
    run_training(study, "maf", tmp_path / "a")
    run_training(study, "maf", tmp_path / "b")
    losses = [
        [(r["train_loss"], r["val_loss"]) for r in read_epochs(tmp_path / d / "epochs.csv")] for d in "ab"
    ]
    assert losses[0] == losses[1]
    a, b = (torch.load(tmp_path / d / "estimator.pt", weights_only=True)["state_dict"] for d in "ab")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # Another estimator name draws another seed.
    config = copy.deepcopy(study.config)
    config["estimators"]["maf_twin"] = dict(config["estimators"]["maf"])
    run_training(study, "maf_twin", tmp_path / "c", config=config)
    c = torch.load(tmp_path / "c" / "estimator.pt", weights_only=True)["state_dict"]
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.slow
def test_early_stopping_keeps_the_best_epoch(study: Study, tmp_path: Path) -> None:
    # learning_rate 0: the validation loss never improves after epoch 1.
    summary = run_training(
        study, "maf", tmp_path / "es", max_epochs=10, stop_after_epochs=2, learning_rate=0.0
    )
    assert summary["epochs"] == 3 and summary["best_epoch"] == 1 and summary["stopped"] == "early_stopping"


# Every optional setting with state to restore: the plateau's rate and counters, the smoothed loss, the
# augmentation's generator, AdamW's moments (min_delta large, so the rate decays within the 6 epochs).
ALL_OPTIONS = {
    "schedule": "plateau",
    "warmup_epochs": 1,
    "lr_decay": 0.5,
    "lr_patience": 1,
    "min_learning_rate": 1e-5,
    "smoothing": 0.7,
    "min_delta": 10.0,
    "weight_decay": 1e-3,
    "augment": "d4",
}
STREAMING = {"loader": "stream", "memory_budget_mb": 16}


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [{}, ALL_OPTIONS, STREAMING],
    ids=["plain", "schedule_smoothing_adamw_d4", "streaming"],
)
def test_killed_training_resumes_from_its_checkpoint(
    tmp_path: Path, tiny_config: dict, caplog: pytest.LogCaptureFixture, options: dict
) -> None:
    # Streaming: a store of 3 chunks, so the loader shuffles chunks and reads them on its worker thread.
    study = make_study(tmp_path, tiny_config, n=96, chunk=32 if options is STREAMING else CHUNK_IMAGES)
    config = copy.deepcopy(study.config)
    config["training"].update({"max_epochs": 6, "stop_after_epochs": 20, **options})
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(yaml.safe_dump(config))
    out = tmp_path / "train" / "maf"
    cmd = [
        sys.executable,
        "-m",
        "lenspipe.train",
        "--config",
        str(cfg_file),
        "--estimator",
        "maf",
        "--train-store",
        str(study.store),
        "--normalisation",
        str(study.normalisation),
        "--outdir",
        str(out),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path
    )
    first_run, deadline = [], time.time() + 120
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        first_run.append(line)
        if re.search(r"maf: epoch 3/6", line):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "".join(first_run)
    assert (out / "checkpoint.pt").is_file() and not (out / "estimator.pt").exists()
    logged = {
        int(m.group(1)): m.group(2)
        for m in map(re.compile(r"epoch (\d+)/6: (train_loss \S+ val_loss \S+)").search, first_run)
        if m
    }

    # A checkpoint of other settings is never resumed (here: another learning rate, on a copy).
    other = tmp_path / "other"
    shutil.copytree(out, other)
    with caplog.at_level("INFO"):
        summary = run_training(study, "maf", other, config=config, max_epochs=1, learning_rate=1e-3)
    assert summary["resumed_from_epoch"] is None and "made with other settings" in caplog.text

    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    killed_cpu = checkpoint["cpu_s"]
    assert killed_cpu > 0
    if (
        not options
    ):  # a checkpoint from before CPU time was recorded resumes; the total is then unknown (null)
        legacy = tmp_path / "legacy"
        legacy.mkdir()
        del checkpoint["cpu_s"]
        torch.save(checkpoint, legacy / "checkpoint.pt")
        summary = run_training(study, "maf", legacy, config=config)
        assert summary["resumed_from_epoch"] == len(checkpoint["rows"]) and summary["cpu_time_s"] is None
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    resumed = int(re.search(r"resuming from the checkpoint after epoch (\d+)", done.stdout).group(1))
    assert resumed >= 3
    assert f"maf: epoch {resumed + 1}/6" in done.stdout and "maf: epoch 1/6" not in done.stdout
    rows = read_epochs(out / "epochs.csv")
    assert [int(r["epoch"]) for r in rows] == list(range(1, 7))
    for epoch, text in logged.items():  # the epochs of the killed run are kept, not redone
        row = rows[epoch - 1]
        assert text == f"train_loss {float(row['train_loss']):.4f} val_loss {float(row['val_loss']):.4f}"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 6 and summary["resumed_from_epoch"] == resumed
    assert summary["cpu_time_s"] > killed_cpu  # the killed attempt's CPU time is counted
    assert not (out / "checkpoint.pt").exists() and all((out / f).is_file() for f in OUTPUT_FILES)

    # Resuming is exact: the same weights (and rates, smoothed losses) as an uninterrupted run.
    run_training(study, "maf", tmp_path / "straight", config=config)
    a = torch.load(out / "estimator.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "straight" / "estimator.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    straight = read_epochs(tmp_path / "straight" / "epochs.csv")
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in rows] == [
        {k: v for k, v in r.items() if k != "seconds"} for r in straight
    ]
    if options is STREAMING:
        assert "streaming" in done.stdout
    elif options:
        rates = [float(r["learning_rate"]) for r in rows]
        assert rates[0] == pytest.approx(2.5e-4) and rates[1] == pytest.approx(5e-4)  # warm-up, then the rate
        assert rates[-1] < rates[1]  # the plateau decayed it, across the kill


@pytest.mark.slow
def test_smoothed_early_stopping_and_min_delta(study: Study, tmp_path: Path) -> None:
    """An improvement below min_delta does not reset the patience; the best weights are still the raw best."""
    summary = run_training(study, "maf", tmp_path / "md", max_epochs=10, stop_after_epochs=2, min_delta=1e9)
    assert summary["epochs"] == 3 and summary["stopped"] == "early_stopping"
    rows = read_epochs(tmp_path / "md" / "epochs.csv")
    assert list(rows[0]) == ["epoch", "train_loss", "val_loss", "seconds"]  # no schedule, no smoothing
    assert summary["best_epoch"] == 1 + int(np.argmin([float(r["val_loss"]) for r in rows]))
    summary = run_training(study, "maf", tmp_path / "sm", max_epochs=3, smoothing=0.5, schedule="cosine")
    rows = read_epochs(tmp_path / "sm" / "epochs.csv")
    val = [float(r["val_loss"]) for r in rows]
    smoothed = [float(r["val_loss_smoothed"]) for r in rows]
    assert smoothed[0] == pytest.approx(val[0]) and smoothed[1] == pytest.approx(0.5 * val[0] + 0.5 * val[1])
    assert [float(r["learning_rate"]) for r in rows] == pytest.approx([5e-4, 2.5e-4, 0.0])  # cosine to 0
    assert summary["final_learning_rate"] == 0.0


@pytest.mark.slow
def test_augmentation_changes_training_and_keeps_its_seed(study: Study, tmp_path: Path) -> None:
    run_training(study, "maf", tmp_path / "plain", max_epochs=1)
    run_training(study, "maf", tmp_path / "d4", max_epochs=1, augment="d4")
    run_training(study, "maf", tmp_path / "d4_again", max_epochs=1, augment="d4")
    plain, d4, again = (read_epochs(tmp_path / d / "epochs.csv")[0] for d in ("plain", "d4", "d4_again"))
    assert d4["train_loss"] != plain["train_loss"] and d4["train_loss"] == again["train_loss"]


@pytest.mark.slow
def test_theta_e_derived_from_the_inferred_parameters(study: Study, tmp_path: Path) -> None:
    """theta_E: derived trains a flow on the five other parameters; every sample carries theta_E computed from
    its own sigma_v, z_l, z_s, so samples keep the config's six columns (the six-parameter table stays)."""
    from lenspipe.priors import einstein_radius

    summary = run_training(study, "nsf", tmp_path / "derived", max_epochs=1, theta_E="derived")
    assert summary["derived"] == ["theta_E"]
    record = torch.load(tmp_path / "derived" / "estimator.pt", weights_only=True)
    assert record["parameter_names"] == study.config["parameters"] and "theta_E" in record["derived"]
    est = lp_posterior.load(tmp_path / "derived" / "estimator.pt", parameter_names=study.config["parameters"])
    assert est.flow_parameter_names == ("sigma_v", "e1", "e2", "z_l", "z_s")
    samples = est.sample_images(study.images[:3], 50, seed=1)
    assert samples.shape == (3, 50, 6) and study.box.contains(samples).all()
    names = study.config["parameters"]
    col = {n: samples[..., names.index(n)] for n in names}
    cosmology = Cosmology(**study.config["simulation"]["cosmology"])
    np.testing.assert_allclose(
        col["theta_E"], einstein_radius(col["sigma_v"], col["z_l"], col["z_s"], cosmology), rtol=1e-6
    )
    assert np.array_equal(samples, est.sample_images(study.images[:3], 50, seed=1))  # seeded
    log_prob = est.log_prob_images(study.images[:3], samples[:, :4])
    assert log_prob.shape == (3, 4) and np.isfinite(log_prob).all()
    theta = est.posterior.sample((5,), x=torch.from_numpy(study.images[:1]), show_progress_bars=False)
    assert theta.shape == (5, 5)  # sbi's posterior is the flow's (theta_E left out)
    # The sample stage writes the six columns (the training store stands in for a test store here).
    from lenspipe.sample import SampleSettings, open_samples, sample_test_set

    out = tmp_path / "samples.zarr"
    sample_test_set(
        tmp_path / "derived" / "estimator.pt",
        study.store,
        out,
        tmp_path / "timing.json",
        SampleSettings.from_params(20, 3, "nsf"),
    )
    written = open_samples(out)
    assert written.parameter_names == names and written.samples.shape == (len(study.images), 20, 6)
    s = written.samples
    np.testing.assert_allclose(
        s[..., 1], einstein_radius(s[..., 0], s[..., 4], s[..., 5], cosmology).astype(np.float32), rtol=1e-6
    )


# --------------------------------------------------------------------------------------------------
# Fast checks: settings, data errors, devices, outputs.

# The training params of the shipped studies, as they were before the optional training settings existed
# (sha256 of the sorted JSON, first 16 hex digits): a change would retrain every estimator of a running study.
PARAMS_BEFORE = {
    "config.yaml": {
        "maf": "d849fa9670018ddd",
        "nsf": "52034bc2148348c7",
        "nsf_16x512": "6979ecdf55ef4b93",
        "coupling_resnet": "e5eb8d5c25c73b60",
    },
    "test.yaml": {
        "maf": "f506b3de1ef2166b",
        "nsf": "bad6594a1e26f4f2",
        "nsf_16x512": "f60aa12678860bc6",
        "coupling_resnet": "b675401b60f5f14c",
    },
}


def _params_hash(params: dict) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


@pytest.mark.parametrize("name", list(PARAMS_BEFORE))
def test_training_params_of_the_shipped_configs_are_unchanged(name: str) -> None:
    from lenspipe.config import check_config, load_config
    from lenspipe.rule_params import OPTIONAL_TRAINING

    config = load_config(REPO / "config" / name)
    check_config(config)
    # the estimators that existed then (estimators added since, e.g. the paper study's MAF restarts, are new jobs)
    assert {e: _params_hash(training_params(config, e)) for e in PARAMS_BEFORE[name]} == PARAMS_BEFORE[name]
    # Spelling out the optional settings' defaults changes nothing either (the plateau's own keys need plateau).
    plateau_only = ("lr_decay", "lr_patience", "min_learning_rate")
    config["training"].update({k: v for k, v in OPTIONAL_TRAINING.items() if k not in plateau_only})
    check_config(config)
    assert {e: _params_hash(training_params(config, e)) for e in PARAMS_BEFORE[name]} == PARAMS_BEFORE[name]
    # A setting that changes training is in the params.
    config["training"]["schedule"] = "cosine"
    assert training_params(config, "maf")["training"]["schedule"] == "cosine"


def test_optional_training_defaults_are_one_table() -> None:
    """TrainingSettings' defaults are rule_params.OPTIONAL_TRAINING's, and an absent key reads as its default."""
    import dataclasses

    from lenspipe.rule_params import OPTIONAL_TRAINING
    from lenspipe.trainer import TrainingSettings

    defaults = {f.name: f.default for f in dataclasses.fields(TrainingSettings)}
    assert {k: defaults[k] for k in OPTIONAL_TRAINING} == OPTIONAL_TRAINING
    base = {"learning_rate": 5e-4, "batch_size": 50, "validation_fraction": 0.1, "stop_after_epochs": 20}
    settings = TrainingSettings.from_config({**base, "max_epochs": 1000})
    assert settings == TrainingSettings() and settings.plain and settings.weight_decay is None


def test_learning_rate_schedules() -> None:
    from lenspipe.trainer import LearningRate, TrainingSettings

    plain = LearningRate(TrainingSettings(learning_rate=1e-3))
    assert [plain.rate(e) for e in (1, 2, 500)] == [1e-3] * 3
    warm = LearningRate(TrainingSettings(learning_rate=1e-3, warmup_epochs=3))
    assert [warm.rate(e) for e in (1, 2, 3, 4, 9)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])
    cosine = LearningRate(
        TrainingSettings(
            learning_rate=1e-3, schedule="cosine", warmup_epochs=1, max_epochs=12, min_learning_rate=1e-4
        )
    )
    assert cosine.rate(1) == pytest.approx(5e-4) and cosine.rate(2) == pytest.approx(1e-3)
    assert cosine.rate(7) == pytest.approx(5.5e-4) and cosine.rate(12) == pytest.approx(1e-4)
    plateau = LearningRate(
        TrainingSettings(
            learning_rate=1e-3, schedule="plateau", lr_patience=2, lr_decay=0.1, min_learning_rate=2e-5
        )
    )
    rates = []
    for epoch, val in enumerate([5.0, 4.0, 4.0, 4.0, 4.0, 4.0, 3.0, 3.0, 3.0, 3.0, 3.0], start=1):
        rates.append(plateau.rate(epoch))
        plateau.after_epoch(epoch, val)
    assert rates == pytest.approx([1e-3] * 4 + [1e-4] * 2 + [2e-5] * 5)


def test_training_params_are_the_config_slice(tiny_config: dict) -> None:
    params = training_params(tiny_config, "nsf")
    assert set(params) == {
        "training",
        "embedding",
        "estimator",
        "parameters",
        "priors",
        "cosmology",
        "bands",
        "num_pix",
        "seed",
    }
    assert params["estimator"] == tiny_config["estimators"]["nsf"]
    assert not {"device", "gpu_fallback", "threads"} & set(params["training"])  # where, not what
    job = TrainJob.from_params(params, "nsf")
    other = TrainJob.from_params(training_params(tiny_config, "maf"), "maf")
    assert job.train_seed != other.train_seed and job.validation_seed == other.validation_seed
    assert job.box.names == tuple(tiny_config["parameters"])
    with pytest.raises(ConfigError, match="estimators.nope"):
        training_params(tiny_config, "nope")
    assert train_mem_mb(tiny_config) > 3072


def test_training_data_serves_shuffled_batches(study: Study) -> None:
    from lenspipe.store import open_store

    data = load_training_data(
        study.store, study.config["parameters"], ["g", "r", "i"], study.box, 0.25, seed=0
    )
    assert isinstance(data, TrainingData) and (data.n_train, data.n_validation) == (48, 16)
    assert data.image_shape == (3, 32, 32) and data.parameter_names == tuple(study.config["parameters"])
    epoch = list(data.train_batches(10, torch.Generator().manual_seed(0)))
    assert len(epoch) == 4 and all(
        t.shape == (10, 6) and x.shape == (10, 3, 32, 32) for t, x in epoch
    )  # drop_last
    again = list(data.train_batches(10, torch.Generator().manual_seed(0)))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(epoch, again, strict=True))  # seeded order
    theta = open_store(study.store).theta
    _, val_idx = split_indices(64, 0.25, 0)
    validation = torch.cat([t for t, _ in data.validation_batches(7)])
    torch.testing.assert_close(validation, torch.from_numpy(theta[val_idx]))  # every validation pair, once
    seen = torch.cat([t for t, _ in epoch])
    assert not set(map(tuple, seen.tolist())) & set(map(tuple, validation.tolist()))  # disjoint
    theta_b, images_b = epoch[0]  # pairs stay pairs
    rows = [int(np.argmin(np.abs(study.images - img.numpy()).sum(axis=(1, 2, 3)))) for img in images_b]
    torch.testing.assert_close(theta_b, torch.from_numpy(theta[rows]))


def test_store_for_other_parameters_is_a_data_error(tmp_path: Path, tiny_config: dict) -> None:
    study = make_study(tmp_path, tiny_config, n=12)
    names = list(reversed(study.config["parameters"]))
    with pytest.raises(DataError) as info:
        load_training_data(study.store, names, ["g", "r", "i"], study.box, 0.1, 0)
    assert str(study.store) in str(info.value) and "in this order" in str(info.value)
    with pytest.raises(DataError, match="bands"):
        load_training_data(study.store, study.config["parameters"], ["g", "r"], study.box, 0.1, 0)
    narrow = PriorBox(
        study.box.names,
        study.box.low,
        tuple(lo + 1e-3 * (hi - lo) for lo, hi in zip(study.box.low, study.box.high, strict=True)),
    )
    with pytest.raises(DataError, match="outside the prior box"):
        load_training_data(study.store, study.config["parameters"], ["g", "r", "i"], narrow, 0.1, 0)


def test_normalisation_of_other_bands_is_a_data_error(study: Study, tmp_path: Path) -> None:
    stats = json.loads(study.normalisation.read_text())
    stats["bands"] = ["g", "r", "z"]
    study.normalisation.write_text(json.dumps(stats))
    with pytest.raises(DataError, match="normalisation.json"):
        run_training(study, "maf", tmp_path / "bad")
    assert not (tmp_path / "bad" / "estimator.pt").exists()


def test_device_choice_and_gpu_fallback(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == "cpu"
    with caplog.at_level("INFO"):
        assert resolve_device("cuda", "warn").type == "cpu"
    assert "training on the CPU" in caplog.text and "CUDA_VISIBLE_DEVICES=3" in caplog.text
    with pytest.raises(DeviceError, match="training.gpu_fallback is fail"):
        resolve_device("cuda", "fail")
    with pytest.raises(ConfigError, match="training.device"):
        resolve_device("tpu")
