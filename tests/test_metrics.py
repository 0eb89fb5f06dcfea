"""Accuracy metrics against values worked out by hand, and rule evaluate's function on a stand-in estimator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lenspipe import metrics
from lenspipe.errors import ConfigError
from lenspipe.plots import FIGURES
from lenspipe.sample import SampleSettings, sample_test_set

from .gaussian_toy import BOX, StandInEstimator, gaussian_toy, install_stand_in, write_test_store


def test_accuracy_by_hand() -> None:
    theta = np.array([[1.0], [2.0], [3.0], [4.0]])
    mean = np.array([[1.5], [2.0], [2.5], [5.0]])  # residuals 0.5, 0, -0.5, 1
    got = {k: float(v[0]) for k, v in metrics.accuracy(theta, mean, [0.0], [10.0]).items()}
    assert got["r2"] == pytest.approx(1 - 1.5 / 5.0)  # SS_res = 1.5, SS_tot = 5
    assert got["bias"] == pytest.approx(0.25)
    assert got["mean_abs_residual"] == pytest.approx(0.5)
    assert got["mean_abs_residual_norm"] == pytest.approx(0.05)  # prior width 10
    assert got["mean_abs_relative_residual"] == pytest.approx((0.5 + 0 + 0.5 / 3 + 0.25) / 4)
    assert got["median_residual"] == pytest.approx(0.25)
    # percentiles of (-0.5, 0, 0.5, 1), linear: 16th at index 0.48 -> -0.26, 84th at 2.52 -> 0.76
    assert got["residual_halfwidth_68"] == pytest.approx((0.76 + 0.26) / 2)


def test_summarise_by_hand() -> None:
    samples = np.tile(np.arange(101, dtype=np.float32), (2, 1))[:, :, None]
    s = metrics.summarise(samples)
    np.testing.assert_allclose(s.mean, [[50.0], [50.0]])
    np.testing.assert_allclose(s.low, [[16.0], [16.0]])
    np.testing.assert_allclose(s.high, [[84.0], [84.0]])


def test_compute_metrics_table_and_json_fields() -> None:
    samples, theta = gaussian_toy(8, 300, 2, seed=4)
    settings = metrics.EvaluationSettings(sbc_samples=100, seed=3)
    m = metrics.compute_metrics(samples, theta, ["e1", "e2"], [-5.0, -5.0], [5.0, 5.0], settings)
    assert m["parameters"] == ["e1", "e2"] and m["n_test"] == 8 and m["sbc_samples"] == 100
    assert set(m["per_parameter"]["e1"]) == set(metrics.PER_PARAMETER)
    assert m["per_parameter"]["e1"]["sbc_c2st_dap"] is None  # fewer than MIN_C2ST test images
    table = metrics.metrics_table(m)
    assert table["parameter"].tolist() == ["e1", "e2", "joint"]
    assert table.loc[2, "tarp_atc"] == m["tarp"]["atc"]
    json.dumps(m, allow_nan=False)  # strict JSON: undefined metrics are null, not NaN


def test_sbc_samples_above_num_samples_is_a_config_error() -> None:
    samples, theta = gaussian_toy(8, 50, 1)
    with pytest.raises(ConfigError, match="evaluation.sbc_samples"):
        metrics.compute_metrics(
            samples, theta, ["e1"], [-5.0], [5.0], metrics.EvaluationSettings(sbc_samples=51)
        )


def _outputs(root: Path, corner_images: tuple[int, ...]) -> metrics.EvaluationOutputs:
    names = [*FIGURES, *(f"corner_{i}" for i in corner_images)]
    figures = {n: [str(root / f"{n}.pdf"), str(root / f"{n}.png")] for n in names}
    return metrics.EvaluationOutputs(str(root / "metrics.csv"), str(root / "metrics.json"), figures)


@pytest.fixture
def stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A test store, the stand-in estimator's samples of it, and a training epochs table."""
    install_stand_in(monkeypatch, StandInEstimator())
    test = tmp_path / "test.zarr"
    write_test_store(test, 12)
    samples = tmp_path / "samples.zarr"
    (tmp_path / "est.pt").write_bytes(b"stand-in estimator")  # not read by the stand-in; resuming hashes it
    sample_test_set(
        tmp_path / "est.pt",
        test,
        samples,
        tmp_path / "timing.json",
        SampleSettings(num_samples=200, seed=5),
        estimator="toy",
    )
    epochs = tmp_path / "epochs.csv"
    pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "train_loss": [3.0, 2.0, 1.5],
            "val_loss": [3.1, 2.2, 2.4],
            "seconds": [1.0, 1.0, 1.0],
        }
    ).to_csv(epochs, index=False)
    return {"test": test, "samples": samples, "epochs": epochs}


def test_evaluate_writes_metrics_and_every_figure(stores: dict[str, Path], tmp_path: Path) -> None:
    out = _outputs(tmp_path / "eval", (0, 3))
    settings = metrics.EvaluationSettings.from_params(100, [0, 3], 20240601)
    m = metrics.evaluate(stores["samples"], stores["test"], stores["epochs"], out, settings, estimator="toy")
    table = pd.read_csv(out.csv)
    assert table["parameter"].tolist() == [*BOX.names, "joint"]
    assert json.loads(Path(out.json).read_text())["per_parameter"] == m["per_parameter"]
    assert m["per_parameter"]["sigma_v"]["r2"] > 0.9  # the stand-in is centred on the truth
    for files in out.figures.values():
        assert all(Path(f).stat().st_size > 1000 for f in files)


def test_corner_image_beyond_the_test_set_is_a_config_error(stores: dict[str, Path], tmp_path: Path) -> None:
    out = _outputs(tmp_path / "eval", (12,))
    settings = metrics.EvaluationSettings(sbc_samples=100, corner_images=(12,))
    with pytest.raises(ConfigError, match="evaluation.corner_images"):
        metrics.evaluate(stores["samples"], stores["test"], stores["epochs"], out, settings)
