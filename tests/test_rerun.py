"""Exact incremental re-runs: after a finished tiny study, a config change re-runs exactly what depends on it."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml

from .conftest import dry_run_jobs, write_config

pytestmark = pytest.mark.slow

ESTIMATORS = ["coupling_resnet", "maf", "nsf", "nsf_16x512"]
PER_ESTIMATOR = ("train", "sample", "evaluate")


def _est(names: list[str]) -> list[str]:
    return sorted(f"estimator={n}" for n in names)


def _expect(
    shards: list[str] | None = None,
    split: bool = False,
    estimators: dict[str, list[str]] | None = None,
    compare: bool = False,
) -> dict[str, list[str]]:
    jobs: dict[str, list[str]] = {}
    if shards:
        jobs["simulate"] = sorted(f"shard={s}" for s in shards)
    if split:
        jobs["split"] = [""]
    for rule, names in (estimators or {}).items():
        if names:
            jobs[rule] = _est(names)
    if compare:
        jobs["compare"] = [""]
    return jobs


def _changed(finished_run: tuple[Path, Path], tmp_path: Path, edit) -> dict[str, list[str]]:
    work, cfg = finished_run
    config = yaml.safe_load(cfg.read_text())
    edit(config)
    return dry_run_jobs(work, write_config(tmp_path / "changed.yaml", config))


def test_nothing_changed_runs_nothing(finished_run: tuple[Path, Path]) -> None:
    work, cfg = finished_run
    start = time.perf_counter()
    assert dry_run_jobs(work, cfg) == {}
    print(f"dry run of a finished study: {time.perf_counter() - start:.1f} s")


def test_prior_change_reruns_everything(finished_run, tmp_path: Path) -> None:
    jobs = _changed(finished_run, tmp_path, lambda c: c["priors"]["e1"].update(max=0.35))
    all_est = dict.fromkeys(PER_ESTIMATOR, ESTIMATORS)
    assert jobs == _expect(["0000", "0001"], True, all_est, True)


def test_estimator_setting_reruns_that_estimator_only(finished_run, tmp_path: Path) -> None:
    jobs = _changed(finished_run, tmp_path, lambda c: c["estimators"]["maf"].update(hidden_features=64))
    assert jobs == _expect(estimators=dict.fromkeys(PER_ESTIMATOR, ["maf"]), compare=True)


def test_added_estimator_runs_only_it(finished_run, tmp_path: Path) -> None:
    def add(c: dict) -> None:
        c["estimators"]["maf_small"] = {"flow": "maf", "num_transforms": 2, "hidden_features": 32}

    jobs = _changed(finished_run, tmp_path, add)
    assert jobs == _expect(estimators=dict.fromkeys(PER_ESTIMATOR, ["maf_small"]), compare=True)


def test_removed_estimator_reruns_only_compare(finished_run, tmp_path: Path) -> None:
    jobs = _changed(finished_run, tmp_path, lambda c: c["estimators"].pop("nsf"))
    assert jobs == _expect(compare=True)


def test_evaluation_setting_reruns_no_simulation_or_training(finished_run, tmp_path: Path) -> None:
    jobs = _changed(finished_run, tmp_path, lambda c: c["evaluation"].update(num_samples=150))
    assert jobs == _expect(estimators={"sample": ESTIMATORS, "evaluate": ESTIMATORS}, compare=True)
    jobs = _changed(finished_run, tmp_path, lambda c: c["evaluation"].update(corner_images=[1]))
    assert jobs == _expect(estimators={"evaluate": ESTIMATORS}, compare=True)


def test_training_setting_reruns_all_training(finished_run, tmp_path: Path) -> None:
    jobs = _changed(finished_run, tmp_path, lambda c: c["training"].update(learning_rate=1e-3))
    assert jobs == _expect(estimators=dict.fromkeys(PER_ESTIMATOR, ESTIMATORS), compare=True)


@pytest.mark.parametrize(
    "setting",
    [
        {"schedule": "cosine"},
        {"schedule": "plateau", "lr_patience": 3},
        {"smoothing": 0.8, "min_delta": 0.01},
        {"weight_decay": 1e-4},
        {"augment": "d4"},
        {"theta_E": "derived"},
        {"loader": "stream"},
    ],
    ids=lambda s: "+".join(s),
)
def test_optional_training_setting_reruns_training_and_what_follows(
    finished_run, tmp_path: Path, setting: dict
) -> None:
    jobs = _changed(finished_run, tmp_path, lambda c: c["training"].update(setting))
    assert jobs == _expect(estimators=dict.fromkeys(PER_ESTIMATOR, ESTIMATORS), compare=True)


def test_spelled_out_training_defaults_rerun_nothing(finished_run, tmp_path: Path) -> None:
    """The optional training settings at their defaults leave the params, and the finished study, as they were."""
    defaults = {
        "schedule": "none",
        "warmup_epochs": 0,
        "smoothing": 0.0,
        "min_delta": 0.0,
        "augment": "none",
        "theta_E": "inferred",
        "loader": "auto",
    }
    assert _changed(finished_run, tmp_path, lambda c: c["training"].update(defaults)) == {}


def test_dropout_reruns_that_estimator_only(finished_run, tmp_path: Path) -> None:
    jobs = _changed(
        finished_run, tmp_path, lambda c: c["estimators"]["nsf_16x512"].update(dropout_probability=0.1)
    )
    assert jobs == _expect(estimators=dict.fromkeys(PER_ESTIMATOR, ["nsf_16x512"]), compare=True)


def test_added_shards_simulate_only_new_ones(finished_run, tmp_path: Path) -> None:
    def grow(c: dict) -> None:
        c["simulation"]["n_images"] = 90  # 3 shards of 30, as before
        c["simulation"]["n_shards"] = 3

    jobs = _changed(finished_run, tmp_path, grow)
    assert jobs == _expect(["0002"], True, dict.fromkeys(PER_ESTIMATOR, ESTIMATORS), True)


def test_run_name_keeps_studies_apart(finished_run, tmp_path: Path) -> None:
    """Another run name builds the whole study anew under results/<run>/, writing nothing of the first."""
    from .conftest import snakemake

    work, cfg = finished_run
    config = yaml.safe_load(cfg.read_text())
    config["run"] = "other"
    other = write_config(tmp_path / "other.yaml", config)
    out = snakemake(["-n", "--cores", "2", "--configfile", str(other)], cwd=work).stdout
    outputs = re.findall(r"output: ([^\n]+)", out)
    paths = [p.strip() for line in outputs for p in line.split(",")]
    assert paths and all(p.startswith("results/other/") for p in paths), paths
    assert dry_run_jobs(work, cfg) == {}  # the first study is still complete
