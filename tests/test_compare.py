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
                "cpu_time_s": 900.0 + seed,
                "device": "cpu",
                "train_pairs_per_s": 1500.0,
            }
        )
    )
    files[2].write_text(json.dumps({"sampling_s": 12.5, "samples_per_s": 4.0e5, "device": "cpu"}))
    return files


def _run(root: Path, estimators: list[str]) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    for k, e in enumerate(estimators):
        _write_estimator(root, e, seed=k)
    return _compare(root, estimators)


def _compare(root: Path, estimators: list[str]) -> dict:
    """The compare stage over the estimators' files in `root` (as _write_estimator names them): every table."""
    out = root / "compare"
    compare.compare(
        estimators=estimators,
        metrics=[root / f"{e}.metrics.json" for e in estimators],
        training=[root / f"{e}.summary.json" for e in estimators],
        sampling=[root / f"{e}.timing.json" for e in estimators],
        tables=[out / f"{t}.{ext}" for t in compare.TABLES for ext in compare.TABLE_FORMATS],
        figure=[out / "comparison.pdf", out / "comparison.png"],
    )
    return {t: pd.read_csv(out / f"{t}.csv") for t in compare.TABLES}


def test_one_row_per_estimator_in_order_without_nan(tmp_path: Path) -> None:
    tables = _run(tmp_path, ["maf", "nsf_16x512"])
    for name, table in tables.items():
        assert table["estimator"].tolist() == ["maf", "nsf_16x512"], name
        assert not table.isna().any().any(), name
    assert tables["r2"].columns.tolist() == ["estimator", *NAMES]
    assert tables["cost"].loc[1, "epochs"] == 41 and tables["cost"].loc[1, "training_cpu_time_s"] == 901.0
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


def test_an_ensemble_row_has_no_best_epoch_or_loss(tmp_path: Path) -> None:
    """An ensemble's summary (lenspipe.ensemble) has null best_epoch and best_val_loss: `--` in its row only."""
    _run(tmp_path, ["maf", "nsf"])
    summary = json.loads((tmp_path / "nsf.summary.json").read_text())
    (tmp_path / "nsf.summary.json").write_text(
        json.dumps({**summary, "best_epoch": None, "best_val_loss": None})
    )
    cost = _compare(tmp_path, ["maf", "nsf"])["cost"].set_index("estimator")
    out = tmp_path / "compare"
    assert cost.loc["maf", "best_epoch"] == 20 and np.isnan(cost.loc["nsf", "best_epoch"])
    rows = (out / "cost.md").read_text().splitlines()
    assert "| nsf | 41 | -- | -- |" in rows[-1] and "| maf | 40 | 20 | -3.5 |" in rows[-2]


def test_a_summary_without_cpu_time_shows_dashes(tmp_path: Path) -> None:
    """Summaries written before training recorded its CPU time still compare: that cell is --, not an error."""
    _run(tmp_path, ["maf", "nsf"])
    summary = json.loads((tmp_path / "nsf.summary.json").read_text())
    del summary["cpu_time_s"]
    (tmp_path / "nsf.summary.json").write_text(json.dumps(summary))
    _compare(tmp_path, ["maf", "nsf"])
    rows = (tmp_path / "compare" / "cost.md").read_text().splitlines()
    assert (
        "| maf | 40 | 20 | -3.5 | 480 | 900 |" in rows[-2]
        and "| nsf | 41 | 21 | -3.5 | 480 | -- |" in rows[-1]
    )


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
                "training_cpu_time_s": 911.6,
                "train_pairs_per_s": 1520.3,
                "training_device": "cuda",
                "sampling_s": 12.34,
                "samples_per_s": 405000.0,
                "sampling_device": "cpu",
            }
        ]
    )
    tex = compare.to_latex("cost", df)
    assert r"maf & 202 & 182 & -3.25 & 480 & 912 & 1520 & cuda & 12.3 & 405000 & cpu \\" in tex
    assert "training time [s]" in tex and "training CPU time [s]" in tex and "_" not in tex.replace(r"\_", "")


def test_missing_training_field_names_the_file(tmp_path: Path) -> None:
    metrics_json, summary, timing = _write_estimator(tmp_path, "maf", seed=0)
    summary.write_text(json.dumps({"epochs": 3}))
    with pytest.raises(DataError, match="maf.summary.json.*best_epoch"):
        compare.compare(
            estimators=["maf"],
            metrics=[metrics_json],
            training=[summary],
            sampling=[timing],
            tables=[],
            figure=[],
        )


def test_table_paths_must_name_a_table(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expected <table>.<format>"):
        compare.write_tables({"r2": pd.DataFrame({"estimator": ["maf"]})}, [tmp_path / "r3.csv"])


def test_cross_study_table_reads_the_compare_tables(tmp_path) -> None:
    """python -m lenspipe.studies: the compare rule's R^2 and 68% coverage per study, the seeds' rows first."""
    from lenspipe.studies import cross_study_table, main

    for study, (r2, cov) in {"paper": (0.9, 0.7), "survey": (0.5, 0.66)}.items():
        folder = tmp_path / study / "compare"
        folder.mkdir(parents=True)
        (folder / "r2.csv").write_text(
            f"estimator,sigma_v,theta_E\nmaf,{r2},0.99\ntheta_E alone (limit),0.905,\n"
        )
        (folder / "coverage_68.csv").write_text(f"estimator,sigma_v,theta_E\nmaf,{cov},0.6\n")
    text = cross_study_table([tmp_path / "paper", tmp_path / "survey"])
    lines = text.splitlines()
    assert lines[0] == "| study | estimator | sigma_v | theta_E |"
    assert lines[2] == "| seeds | maf | 0.903 | 0.999 |"
    assert "| paper | maf | 0.900 / 0.70 | 0.990 / 0.60 |" in lines
    assert "| paper | theta_E alone (limit) | 0.905 | -- |" in lines
    assert lines[-2] == "| survey | maf | 0.500 / 0.66 | 0.990 / 0.60 |"
    assert main([str(tmp_path / "missing")]) == 1
    # a physical study's R^2 table ends with the oracle row: R^2 only, like the theta_E limit
    folder = tmp_path / "physical" / "compare"
    folder.mkdir(parents=True)
    (folder / "r2.csv").write_text(
        "estimator,sigma_v,theta_E\nmaf,0.9,0.99\ntheta_E alone (limit),0.905,\n"
        "lens light + theta_E (oracle),0.93,\n"
    )
    (folder / "coverage_68.csv").write_text("estimator,sigma_v,theta_E\nmaf,0.7,0.6\n")
    text = cross_study_table([tmp_path / "physical"])
    assert text.splitlines()[-1] == "| physical | lens light + theta_E (oracle) | 0.930 | -- |"


def test_theta_e_limit_is_what_theta_e_alone_predicts() -> None:
    """k-NN regression on the true theta_E: a parameter that is a function of it scores ~1, an independent one ~0."""
    from lenspipe.limits import theta_e_limits

    rng = np.random.default_rng(0)

    def draw(n: int) -> np.ndarray:
        theta_e = rng.uniform(0.5, 2.0, n)
        return np.column_stack(
            [
                theta_e,
                np.sin(3 * theta_e),
                rng.normal(size=n),
                theta_e + rng.normal(scale=0.5 * theta_e.std(), size=n),
            ]
        )

    limits = theta_e_limits(draw(4000), draw(1000), ["theta_E", "f", "independent", "noisy"])
    assert limits["theta_E"] is None
    assert limits["f"] > 0.99 and abs(limits["independent"]) < 0.05
    assert limits["noisy"] == pytest.approx(0.8, abs=0.05)  # var(theta_E) / (var + 0.25 var)
    assert theta_e_limits(draw(10), draw(5)[:, 1:], ["f", "independent", "noisy"]) == {}


def _stores(root: Path, physical: bool) -> tuple[Path, Path]:
    """Train and test stores of lenses whose e1 follows a 'lens light' (the oracle's features) but not theta_E."""
    from lenspipe.store import write_store

    paths = []
    for name, n, seed in (("train", 600, 1), ("test", 200, 2)):
        rng = np.random.default_rng(seed)
        theta = np.column_stack(
            [rng.uniform(150, 400, n), rng.uniform(0.5, 2.0, n), rng.uniform(-0.4, 0.4, n)]
        )
        meta = pd.DataFrame({"OBJID-g": np.arange(n)})
        if physical:
            meta["lens_light-magnitude-g"] = 20.0 + 3 * theta[:, 2]
            meta["lens_light-magnitude-r"] = 19.0 + rng.normal(size=n)
            meta["lens_light-R_sersic"] = rng.uniform(0.5, 2.0, n)
        path = root / f"{name}.zarr"
        write_store(path, np.zeros((n, 2, 8, 8)), theta, ["sigma_v", "theta_E", "e1"], metadata=meta)
        paths.append(path)
    return paths[0], paths[1]


@pytest.mark.parametrize("physical", [True, False])
def test_oracle_row_only_with_the_physical_lens_light(tmp_path: Path, physical: bool) -> None:
    from lenspipe.limits import LIMIT_ROW, ORACLE_ROW

    train, test = _stores(tmp_path, physical)
    files = [_write_estimator(tmp_path, "maf", seed=0)]
    out = tmp_path / "compare"
    compare.compare(
        estimators=["maf"],
        metrics=[f[0] for f in files],
        training=[f[1] for f in files],
        sampling=[f[2] for f in files],
        tables=[out / "r2.csv", out / "r2.md"],
        figure=[out / "comparison.png"],
        train=train,
        test=test,
    )
    r2 = pd.read_csv(out / "r2.csv")
    assert list(r2["estimator"]) == ["maf", LIMIT_ROW, *([ORACLE_ROW] if physical else [])]
    assert abs(r2.iloc[1]["e1"]) < 0.1  # theta_E alone knows nothing of e1
    if physical:
        assert r2.iloc[2]["e1"] > 0.9  # the light does
        assert ORACLE_ROW in (out / "r2.md").read_text()
