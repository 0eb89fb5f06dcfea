"""The tiny study end to end: every stage's outputs, one table row per estimator and no NaN, provenance
for every job, the HTML report, and identical numbers and figure files from an independent second run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from lenspipe.store import open_store

from .conftest import copy_workflow, load_benchmark, snakemake, write_config

pytestmark = pytest.mark.slow

ESTIMATORS = ["maf", "nsf", "nsf_16x512", "coupling_resnet"]


def test_every_stage_output(finished_run: tuple[Path, Path]) -> None:
    work, _ = finished_run
    out = work / "results" / "test"
    shards = [open_store(out / f"simulate/shard_{i:04d}.zarr") for i in range(2)]
    assert [len(s) for s in shards] == [30, 30]
    assert (
        (out / "simulate/shard_0000.deeplenstronomy.yaml").read_text().startswith("# deeplenstronomy config")
    )
    train, test = open_store(out / "split/train.zarr"), open_store(out / "split/test.zarr")
    assert (len(train), len(test)) == (48, 12)
    assert train.images.shape[1:] == (3, 64, 64) and train.parameter_names == [
        "sigma_v",
        "theta_E",
        "e1",
        "e2",
        "z_l",
        "z_s",
    ]
    norm = json.loads((out / "split/normalisation.json").read_text())
    assert norm["bands"] == ["g", "r", "i"] and len(norm["std"]) == 3
    for est in ESTIMATORS:
        summary = json.loads((out / f"train/{est}/summary.json").read_text())
        assert summary["epochs"] == 2
        assert (out / f"train/{est}/estimator.pt").stat().st_size > 0
        assert not (out / f"train/{est}/checkpoint.pt").exists()
        import zarr

        samples = zarr.open_group(str(out / f"sample/{est}/samples.zarr"), mode="r")["samples"]
        assert samples.shape == (12, 200, 6)
        metrics = pd.read_csv(out / f"evaluate/{est}/metrics.csv")
        assert list(metrics["parameter"]) == [
            *train.parameter_names,
            "joint",
        ]  # joint: TARP over all parameters
        for fig in (
            "predicted_vs_true",
            "residuals",
            "coverage",
            "sbc_ranks",
            "loss",
            "corner_0",
            "corner_1",
        ):
            for ext in ("pdf", "png"):
                assert (out / f"evaluate/{est}/figures/{fig}.{ext}").stat().st_size > 1000


def test_comparison_tables_have_one_row_per_estimator_and_no_nan(finished_run: tuple[Path, Path]) -> None:
    work, _ = finished_run
    compare = work / "results/test/compare"
    tables = sorted(compare.glob("*.csv"))
    assert {t.stem for t in tables} >= {
        "r2",
        "mean_abs_residual",
        "coverage_68",
        "coverage_95",
        "calibration",
        "cost",
    }
    for table in tables:
        frame = pd.read_csv(table)
        if (
            table.stem == "r2"
        ):  # last row: what theta_E alone allows (lenspipe.limits), "--" for theta_E itself
            limit = frame.iloc[-1]
            assert limit.iloc[0] == "theta_E alone (limit)" and np.isnan(limit["theta_E"]), table.name
            assert np.isfinite(limit.drop(["estimator", "theta_E"]).astype(float)).all(), table.name
            frame = frame.iloc[:-1]
        assert list(frame.iloc[:, 0]) == ESTIMATORS, table.name
        assert not frame.isna().any().any(), f"NaN in {table.name}"
        assert (compare / f"{table.stem}.md").exists() and "\\toprule" in (
            compare / f"{table.stem}.tex"
        ).read_text()
    cost = pd.read_csv(compare / "cost.csv")
    assert (cost.select_dtypes("number") >= 0).all().all()
    for ext in ("pdf", "png"):
        assert (compare / f"comparison.{ext}").stat().st_size > 1000


def test_every_job_writes_provenance(finished_run: tuple[Path, Path]) -> None:
    work, _ = finished_run
    out = work / "results/test"
    files = [
        out / "simulate/shard_0000.provenance.json",
        out / "split/provenance.json",
        out / "compare/provenance.json",
    ]
    files += [
        out / f"{stage}/{est}/provenance.json"
        for stage in ("train", "sample", "evaluate")
        for est in ESTIMATORS
    ]
    for file in files:
        record = json.loads(file.read_text())
        assert set(record["packages"]) >= {
            "lenspipe",
            "sbi",
            "torch",
            "deeplenstronomy",
            "lenstronomy",
            "snakemake",
        }
        assert all(
            record["packages"][p] for p in ("sbi", "torch", "deeplenstronomy", "lenstronomy", "snakemake")
        )
        assert record["config"], file
        assert "git" in record
    shard = json.loads(files[0].read_text())
    assert shard["seeds"]["shard"] == shard["config"]["settings"]["seed"]
    assert json.loads((out / "sample/maf/provenance.json").read_text())["seeds"]["sample"] > 0


def test_html_report(finished_run: tuple[Path, Path]) -> None:
    work, cfg = finished_run
    report = work / "report.html"
    snakemake(["--report", str(report), "--configfile", str(cfg)], cwd=work, timeout=600)
    text = report.read_text(errors="replace")
    assert report.stat().st_size > 100_000
    for needle in ("comparison", "coverage", "predicted_vs_true", "r2"):
        assert needle in text


def test_second_run_gives_identical_outputs(finished_run: tuple[Path, Path], tmp_path: Path) -> None:
    """An independent run of the same config (one estimator, to keep it short) reproduces every byte."""
    work, cfg = finished_run
    config = yaml.safe_load(cfg.read_text())
    config["estimators"] = {"maf": config["estimators"]["maf"]}
    other = copy_workflow(tmp_path)
    snakemake(
        ["--cores", "2", "--configfile", str(write_config(other / "config" / "maf.yaml", config))],
        cwd=other,
        timeout=1200,
    )
    first, second = work / "results/test", other / "results/test"
    for shard in (
        "simulate/shard_0000.zarr",
        "simulate/shard_0001.zarr",
        "split/train.zarr",
        "split/test.zarr",
    ):
        a, b = open_store(first / shard), open_store(second / shard)
        assert np.array_equal(a.theta, b.theta) and np.array_equal(a.load_images(), b.load_images()), shard
    same = ["split/normalisation.json", "evaluate/maf/metrics.csv", "evaluate/maf/metrics.json"]
    losses = [pd.read_csv(d / "train/maf/epochs.csv").drop(columns="seconds") for d in (first, second)]
    pd.testing.assert_frame_equal(*losses)
    same += [str(p.relative_to(first)) for p in (first / "evaluate/maf/figures").iterdir()]
    for rel in same:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel
    # the comparison tables (all but the measured times of `cost`) are rebuilt byte for byte
    before = {
        p.name: p.read_bytes()
        for p in (first / "compare").iterdir()
        if not p.name.startswith(("cost", "provenance"))
    }
    snakemake(["--cores", "1", "--configfile", str(cfg), "--forcerun", "compare"], cwd=work)
    after = {
        p.name: p.read_bytes()
        for p in (first / "compare").iterdir()
        if not p.name.startswith(("cost", "provenance"))
    }
    assert before == after


def test_stage_times_table_reads_every_stage(finished_run: tuple[Path, Path]) -> None:
    """benchmarks/stage_times.py (the README's per-stage wall times) counts every job of the finished run."""
    stage_times = load_benchmark("stage_times")
    work, _ = finished_run
    bench = work / "results" / "test" / "benchmarks"
    rows = {
        line.split("|")[1].strip(): line.split("|")[2].strip()
        for line in stage_times.table(bench).splitlines()[2:]
    }
    n = len(ESTIMATORS)
    assert rows == {
        "simulate": "2",
        "split": "1",
        "train": str(n),
        "sample": str(n),
        "evaluate": str(n),
        "compare": "1",
        "**all**": str(2 + 1 + 3 * n + 1),
    }
    jobs = stage_times.read_jobs(bench / "train")
    assert sorted(j.name for j in jobs) == sorted(ESTIMATORS) and all(
        0 < j.seconds and j.start < j.end for j in jobs
    )
