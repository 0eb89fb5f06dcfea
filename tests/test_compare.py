"""Comparison tables: one row per estimator in config order, no NaN, a new estimator adds a row, formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lenspipe import compare, metrics
from lenspipe.errors import DataError

from .gaussian_toy import gaussian_toy

NAMES = ["sigma_v", "e1"]


def _write_estimator(root: Path, name: str, seed: int) -> tuple[Path, Path, Path]:
    """Metrics JSON (from a toy), training summary and sampling timing of one estimator."""
    samples, theta = gaussian_toy(8, 200, 2, seed=seed)
    m = metrics.compute_metrics(
        samples, theta, NAMES, [-5.0, -5.0], [5.0, 5.0], metrics.EvaluationSettings(sbc_samples=100, seed=1)
    )
    files = (root / f"{name}.metrics.json", root / f"{name}.summary.json", root / f"{name}.timing.json")
    files[0].write_text(json.dumps(m))
    files[1].write_text(
        json.dumps(
            {
                "epochs": 40 + seed,
                "best_epoch": 20 + seed,
                "best_val_loss": -3.5,
                "wall_time_s": 480.0,
                "device": "cpu",
                "train_pairs_per_s": 1500.0,
            }
        )
    )
    files[2].write_text(json.dumps({"sampling_s": 12.5, "samples_per_s": 4.0e5, "device": "cpu"}))
    return files


def _run(root: Path, estimators: list[str]) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    files = [_write_estimator(root, e, seed=k) for k, e in enumerate(estimators)]
    out = root / "compare"
    tables = [out / f"{t}.{ext}" for t in compare.TABLES for ext in compare.TABLE_FORMATS]
    compare.compare(
        estimators,
        [f[0] for f in files],
        [f[1] for f in files],
        [f[2] for f in files],
        tables,
        [out / "comparison.pdf", out / "comparison.png"],
    )
    return {t: pd.read_csv(out / f"{t}.csv") for t in compare.TABLES}


def test_one_row_per_estimator_in_order_without_nan(tmp_path: Path) -> None:
    tables = _run(tmp_path, ["maf", "nsf_16x512"])
    for name, table in tables.items():
        assert table["estimator"].tolist() == ["maf", "nsf_16x512"], name
        assert not table.isna().any().any(), name
    assert tables["r2"].columns.tolist() == ["estimator", *NAMES]
    assert tables["cost"].loc[1, "epochs"] == 41
    toy = json.loads((tmp_path / "maf.metrics.json").read_text())
    assert tables["coverage_68"].loc[0, "e1"] == pytest.approx(
        toy["per_parameter"]["e1"]["coverage_68"], rel=1e-5
    )
    assert tables["calibration"].loc[0, "tarp_atc"] == pytest.approx(toy["tarp"]["atc"], rel=1e-5)
    assert (tmp_path / "compare" / "comparison.png").stat().st_size > 1000


def test_a_new_estimator_adds_a_row(tmp_path: Path) -> None:
    two = _run(tmp_path / "two", ["maf", "nsf"])
    three = _run(tmp_path / "three", ["maf", "nsf", "coupling_resnet"])
    for name in compare.TABLES:
        assert len(three[name]) == len(two[name]) + 1
        assert three[name]["estimator"].tolist()[-1] == "coupling_resnet"
    pd.testing.assert_frame_equal(three["r2"].iloc[:2], two["r2"])


def test_markdown_and_latex_by_hand() -> None:
    df = pd.DataFrame(
        {"estimator": ["maf", "nsf_16x512"], "sigma_v": [0.9031, np.nan], "e1": [0.97654, -0.5]}
    )
    assert compare.to_markdown("r2", df) == (
        "| estimator | sigma_v | e1 |\n|---|---:|---:|\n| maf | 0.903 | 0.977 |\n| nsf_16x512 | -- | -0.500 |\n"
    )
    tex = compare.to_latex("r2", df).splitlines()
    assert tex[1:5] == [
        r"\begin{tabular}{lrr}",
        r"\toprule",
        r"Estimator & $\sigma_v$ & $e_1$ \\",
        r"\midrule",
    ]
    assert tex[5:] == [
        r"maf & 0.903 & 0.977 \\",
        r"nsf\_16x512 & -- & -0.500 \\",
        r"\bottomrule",
        r"\end{tabular}",
    ]


def test_cost_table_headers_are_escaped_for_latex() -> None:
    df = pd.DataFrame(
        [
            {
                "estimator": "maf",
                "epochs": 202,
                "best_epoch": 182,
                "best_val_loss": -3.25,
                "training_wall_time_s": 480.4,
                "train_pairs_per_s": 1520.3,
                "training_device": "cuda",
                "sampling_s": 12.34,
                "samples_per_s": 405000.0,
                "sampling_device": "cpu",
            }
        ]
    )
    tex = compare.to_latex("cost", df)
    assert r"maf & 202 & 182 & -3.25 & 480 & 1520 & cuda & 12.3 & 405000 & cpu \\" in tex
    assert "training time [s]" in tex and "_" not in tex.replace(r"\_", "")


def test_missing_training_field_names_the_file(tmp_path: Path) -> None:
    metrics_json, summary, timing = _write_estimator(tmp_path, "maf", seed=0)
    summary.write_text(json.dumps({"epochs": 3}))
    with pytest.raises(DataError, match="maf.summary.json.*best_epoch"):
        compare.compare(["maf"], [metrics_json], [summary], [timing], [], [])


def test_table_paths_must_name_a_table(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expected <table>.<format>"):
        compare.write_tables({"r2": pd.DataFrame({"estimator": ["maf"]})}, [tmp_path / "r3.csv"])
