"""benchmarks/equivariance.py: the pulls, extreme ranks and sign misses it prints, on posteriors made to order."""

from __future__ import annotations

import numpy as np

from .conftest import load_benchmark

NAMES = ["sigma_v", "theta_E", "e1", "e2"]


def posteriors(
    n: int = 2000, s: int = 400, pull: float = 0.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated Gaussian posteriors (truth drawn from the posterior); e1's shifted by `pull` below theta_E 0.5."""
    rng = np.random.default_rng(seed)
    centre = np.column_stack(
        [
            rng.uniform(150, 400, n),
            rng.uniform(0.2, 3.0, n),
            rng.uniform(-0.3, 0.3, n),
            rng.uniform(-0.3, 0.3, n),
        ]
    )
    width = np.array([20.0, 0.05, 0.05, 0.05])
    theta = centre + rng.normal(size=centre.shape) * width
    samples = centre[:, None, :] + rng.normal(size=(n, s, 4)) * width
    samples[theta[:, 1] < 0.5, :, 2] += pull
    return samples, theta


def test_a_calibrated_symmetric_posterior_shows_no_pull() -> None:
    bench = load_benchmark("equivariance")
    samples, theta = posteriors()
    for row in bench.pulls(samples, theta, NAMES, [0.0, 0.5, 4.0]):
        assert abs(row["pull"]) < 4 * row["error"], row
    for first, last in bench.extreme_ranks(samples, theta):
        assert 60 < first < 140 and 60 < last < 140  # 100 expected of 2,000
    misses = bench.sign_misses(samples, theta, 2)
    assert abs(misses[0] - misses[2]) < 15


def test_a_pull_on_small_einstein_radii_is_found_there_only() -> None:
    bench = load_benchmark("equivariance")
    samples, theta = posteriors(pull=-0.08)
    rows = {(r["low"], r["parameter"]): r for r in bench.pulls(samples, theta, NAMES, [0.0, 0.5, 4.0])}
    assert (
        rows[(0.0, "e1")]["pull"] < -0.06
        and abs(rows[(0.0, "e1")]["pull"] + 0.08) < 4 * rows[(0.0, "e1")]["error"]
    )
    assert abs(rows[(0.5, "e1")]["pull"]) < 4 * rows[(0.5, "e1")]["error"]
    assert abs(rows[(0.0, "e2")]["pull"]) < 4 * rows[(0.0, "e2")]["error"]
    first, last = bench.extreme_ranks(samples, theta)[2]
    assert last > first + 50  # truths above their (pulled-low) samples
    pos_miss, pos, neg_miss, neg = bench.sign_misses(samples, theta, 2, threshold=0.05)
    assert pos_miss / pos > neg_miss / neg
