"""Calibration checks: hand-worked small cases, equivalence with sbi's TARP and SBC on the same samples,
and the Gaussian toy whose exact posterior passes while an over-confident one fails."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lenspipe import calibration

from .gaussian_toy import gaussian_toy


def test_central_coverage_by_hand() -> None:
    samples = np.tile(np.arange(101, dtype=np.float64), (4, 1))[:, :, None]  # quantile q of 0..100 is 100 q
    theta = np.array([[10.0], [20.0], [50.0], [90.0]])
    cov = calibration.central_coverage(samples, theta, np.array([0.68, 0.95]))
    # 68%: [16, 84] holds 20 and 50; 95%: [2.5, 97.5] holds all four.
    np.testing.assert_allclose(cov, [[0.5], [1.0]])


def test_sbc_ranks_count_samples_strictly_below() -> None:
    samples = np.arange(10, dtype=np.float64)[None, :, None].repeat(3, axis=0)
    theta = np.array([[4.5], [4.0], [-1.0]])
    assert calibration.sbc_ranks(samples, theta, 10)[:, 0].tolist() == [5, 4, 0]
    assert calibration.sbc_ranks(samples, theta, 4)[:, 0].tolist() == [4, 4, 0]  # first 4 samples only


def test_sbc_ranks_equal_sbi() -> None:
    from sbi.diagnostics.sbc import _run_sbc

    samples, theta = gaussian_toy(40, 50, 3, seed=3)
    ours = calibration.sbc_ranks(samples, theta.astype(np.float32), 50)
    theirs = _run_sbc(
        torch.as_tensor(theta, dtype=torch.float32),
        torch.zeros(40, 1),
        torch.as_tensor(samples).permute(1, 0, 2),
        "marginals",
        show_progress_bar=False,
    )
    np.testing.assert_array_equal(ours, theirs.numpy().astype(np.int64))


def test_tarp_curve_by_hand() -> None:
    ecp, alpha = calibration.tarp_curve(np.array([0.1, 0.3, 0.6, 0.9]), num_bins=2)
    np.testing.assert_allclose(alpha, [0.0, 0.5, 1.0])
    np.testing.assert_allclose(ecp, [0.0, 0.5, 1.0])


def test_tarp_equals_sbi_on_the_same_samples() -> None:
    from sbi.diagnostics.tarp import _run_tarp

    rng = np.random.default_rng(5)
    n, s, p = 60, 200, 3
    samples = rng.uniform(size=(n, s, p))
    theta = rng.uniform(size=(n, p))
    refs = rng.uniform(size=(n, p))
    theta[0] = refs[0]  # closer than every sample: coverage value 0
    samples[1] = refs[1]  # every sample closer: coverage value 1 (so sbi's grid spans [0, 1] too)
    values = calibration.tarp_coverage_values(samples, theta, refs)
    assert values.min() == 0.0 and values.max() == 1.0
    ecp, alpha = calibration.tarp_curve(values, num_bins=6)
    sbi_ecp, sbi_alpha = _run_tarp(
        torch.as_tensor(samples).permute(1, 0, 2),
        torch.as_tensor(theta),
        torch.as_tensor(refs),
        num_bins=6,
        z_score_theta=False,
    )
    np.testing.assert_allclose(ecp, sbi_ecp.numpy(), atol=1e-6)  # sbi's histogram is float32
    np.testing.assert_allclose(alpha, sbi_alpha.numpy(), atol=1e-12)


@pytest.fixture(scope="module")
def toy_checks() -> dict[str, dict]:
    """Coverage, TARP and SBC of the Gaussian toy's exact posterior and of one three times too narrow."""
    out = {}
    for name, scale in (("calibrated", 1.0), ("overconfident", 0.3)):
        samples, theta = gaussian_toy(500, 400, 2, seed=11, scale=scale)
        ranks = calibration.sbc_ranks(samples, theta, 400)
        out[name] = {
            "coverage": calibration.central_coverage(samples, theta, np.array(calibration.HEADLINE)),
            "tarp": calibration.tarp(samples, theta, np.full(2, -5.0), np.full(2, 5.0), seed=2),
            "sbc": calibration.sbc_checks(ranks, theta, samples[:, 0, :], 400),
        }
    return out


def test_exact_posterior_is_calibrated(toy_checks: dict) -> None:
    c = toy_checks["calibrated"]
    sd = np.sqrt(np.array([0.68 * 0.32, 0.95 * 0.05]) / 500)[:, None]  # binomial spread of the coverage
    assert np.all(np.abs(c["coverage"] - np.array([[0.68], [0.95]])) < 3.5 * sd)
    assert abs(c["tarp"]["atc"]) < 0.05 and c["tarp"]["ks_pvalue"] > 0.05
    assert min(c["sbc"]["ks_pvalue"]) > 0.01
    assert max(c["sbc"]["c2st_dap"]) < 0.6


def test_overconfident_posterior_fails(toy_checks: dict) -> None:
    c = toy_checks["overconfident"]
    assert np.all(c["coverage"][0] < 0.4) and np.all(c["coverage"][1] < 0.7)
    assert c["tarp"]["atc"] < -0.05 and c["tarp"]["ks_pvalue"] < 0.05
    assert max(c["sbc"]["ks_pvalue"]) < 1e-6


def test_tarp_is_seeded() -> None:
    samples, theta = gaussian_toy(50, 100, 2, seed=1)
    a = calibration.tarp(samples, theta, np.full(2, -5.0), np.full(2, 5.0), seed=7)
    b = calibration.tarp(samples, theta, np.full(2, -5.0), np.full(2, 5.0), seed=7)
    assert a == b
