"""benchmarks/error_by_brightness.py: an estimator's error and posterior width per bin of the lens's magnitude."""

from __future__ import annotations

import numpy as np

from .conftest import load_benchmark


def test_errors_and_widths_are_per_bin() -> None:
    bench = load_benchmark("error_by_brightness")
    rng = np.random.default_rng(0)
    magnitude = np.array([16.0, 16.5, 18.0, 18.0, 20.0, 21.0])
    truth = np.zeros(6)
    # bright lenses: posterior centred 0.01 off, sd 0.01; faint: centred 0.04 off, sd 0.04 (the last edge included)
    offsets = np.array([0.01, -0.01, 0.02, 0.02, 0.04, -0.04])
    widths = np.array([0.01, 0.01, 0.02, 0.02, 0.04, 0.04])
    draws = rng.standard_normal((6, 200_000))
    draws = (draws - draws.mean(1, keepdims=True)) / draws.std(1, keepdims=True)
    samples = offsets[:, None] + widths[:, None] * draws
    rows = bench.binned_errors(samples, truth, magnitude, [15.0, 17.0, 19.0, 21.0])
    assert [r[0] for r in rows] == [2, 2, 2]
    np.testing.assert_allclose([r[1] for r in rows], [0.01, 0.02, 0.04], rtol=1e-9)
    np.testing.assert_allclose([r[2] for r in rows], [0.01, 0.02, 0.04], rtol=1e-9)
    empty = bench.binned_errors(samples, truth, magnitude, [10.0, 12.0])
    assert empty[0][0] == 0 and np.isnan(empty[0][1])
