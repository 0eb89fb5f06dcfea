"""Figures: every evaluation figure is written as PDF and PNG, and two runs give byte-identical files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lenspipe import compare, metrics, plots

from .gaussian_toy import BOX, gaussian_toy


def _figures(root: Path, corner_images: tuple[int, ...]) -> dict[str, list[str]]:
    root.mkdir(parents=True)
    names = [*plots.FIGURES, *(f"corner_{i}" for i in corner_images)]
    return {n: [str(root / f"{n}.{ext}") for ext in plots.FORMATS] for n in names}


def _draw_all(root: Path, toy: dict) -> list[Path]:
    """Every per-estimator figure, the comparison figure and an SVG, into `root`."""
    settings = metrics.EvaluationSettings(sbc_samples=100, corner_images=(2,))
    figures = _figures(root, settings.corner_images)
    metrics.write_figures(
        toy["samples"], toy["theta"], toy["metrics"], toy["epochs"], figures, settings, "toy", BOX
    )
    long = compare.long_table(["a", "b_2"], {"a": toy["metrics"], "b_2": toy["metrics"]})
    plots.comparison(long, list(BOX.names), [root / "comparison.pdf", root / "comparison.png"])
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0], label="line")
    ax.legend()
    plots.save_figure(fig, root / "line.svg")
    return sorted(root.iterdir())


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Samples, truths, metrics and an epochs table of a small toy in the stand-in's prior box."""
    samples, z = gaussian_toy(9, 300, 3, seed=8)  # fewer than MIN_C2ST images: no classifier tests
    low, high = np.asarray(BOX.low), np.asarray(BOX.high)
    to_box = lambda v: low + (high - low) / (1 + np.exp(-v))  # noqa: E731
    samples, theta = to_box(samples).astype(np.float32), to_box(z)
    m = metrics.compute_metrics(
        samples,
        theta,
        list(BOX.names),
        BOX.low,
        BOX.high,
        metrics.EvaluationSettings(sbc_samples=100, seed=1),
    )
    epochs = tmp_path_factory.mktemp("epochs") / "epochs.csv"
    pd.DataFrame(
        {
            "epoch": [1, 2, 3, 4],
            "train_loss": [3.0, 2.0, 1.5, 1.2],
            "val_loss": [3.1, 2.2, 2.0, 2.1],
            "seconds": [1.0] * 4,
        }
    ).to_csv(epochs, index=False)
    return {"samples": samples, "theta": theta, "metrics": m, "epochs": epochs}


def test_figures_are_written_and_byte_identical_across_runs(tmp_path: Path, toy: dict) -> None:
    first = _draw_all(tmp_path / "one", toy)
    second = _draw_all(tmp_path / "two", toy)
    names = [p.name for p in first]
    assert names == [p.name for p in second]
    assert {"corner_2.pdf", "corner_2.png", "coverage.pdf", "loss.png", "comparison.png", "line.svg"} <= set(
        names
    )
    assert not [n for n in names if n.startswith(".")]  # no temporary files left behind
    for a, b in zip(first, second, strict=True):
        assert a.stat().st_size > 1000, a
        assert a.read_bytes() == b.read_bytes(), f"{a.name} differs between two runs"
    pdf = (tmp_path / "one" / "coverage.pdf").read_bytes()
    png = (tmp_path / "one" / "coverage.png").read_bytes()
    assert pdf.startswith(b"%PDF") and b"CreationDate" not in pdf
    assert png.startswith(b"\x89PNG") and b"Software" not in png


def test_unknown_figure_format_is_refused(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, _ = plt.subplots()
    with pytest.raises(ValueError, match="unsupported figure format"):
        plots.save_figure(fig, tmp_path / "figure.bmp")
    assert list(tmp_path.iterdir()) == []


def test_loss_curve_without_its_columns_names_the_file(tmp_path: Path) -> None:
    from lenspipe.errors import DataError

    bad = tmp_path / "epochs.csv"
    bad.write_text("epoch,loss\n1,2.0\n")
    with pytest.raises(DataError, match="epochs.csv.*train_loss"):
        plots.loss_curve(bad, "toy", [tmp_path / "loss.png"])
