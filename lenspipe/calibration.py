"""Calibration of posterior samples against the true values of a test set: coverage, TARP and SBC.

All checks read stored samples (n_test, n_samples, n_params), so no posterior is sampled again.
sbi's run_tarp/run_sbc sample a posterior and then apply exactly these reductions; the equivalence
of ours with sbi's on the same samples is a test (tests/test_calibration.py).
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

# Credibility levels of the coverage curve; the headline levels 0.68 and 0.95 are among them.
LEVELS = np.round(np.arange(1, 20) / 20, 2)
HEADLINE = (0.68, 0.95)
MIN_C2ST = 10  # fewer test images than this: the classifier two-sample tests are not run (None)


def credibility_levels() -> np.ndarray:
    """The coverage curve's levels: 0.05, 0.10, ..., 0.95 plus 0.68."""
    return np.unique(np.concatenate([LEVELS, HEADLINE]))


def central_coverage(samples: np.ndarray, theta: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Fraction of test images whose true value lies in the central credible interval, (n_levels, n_params).

    The interval at level c runs from the (1-c)/2 to the (1+c)/2 quantile of the samples (numpy's
    linear interpolation), bounds included: 68% is the 16th-84th percentile.
    """
    levels = np.asarray(levels, dtype=np.float64)
    q = np.concatenate([(1 - levels) / 2, (1 + levels) / 2])
    bounds = np.quantile(samples, q, axis=1)  # (2K, N, P)
    k = len(levels)
    inside = (theta[None] >= bounds[:k]) & (theta[None] <= bounds[k:])
    return inside.mean(axis=1)


def sbc_ranks(samples: np.ndarray, theta: np.ndarray, num_ranked: int) -> np.ndarray:
    """SBC ranks (n_test, n_params): how many of the first `num_ranked` samples lie below the true value.

    This is sbi's `run_sbc(reduce_fns="marginals")` rank on the stored samples (0..num_ranked).
    """
    return (samples[:, :num_ranked] < theta[:, None, :]).sum(axis=1).astype(np.int64)


def sbc_checks(ranks: np.ndarray, theta: np.ndarray, dap: np.ndarray, num_ranked: int) -> dict:
    """sbi's SBC checks per parameter: KS p-value of rank uniformity, and C2ST of the true values vs the DAP.

    `theta` are the test set's true values (draws from the prior), `dap` one posterior sample per test
    image (the data-averaged posterior, which equals the prior when calibrated). sbi's check_sbc also
    runs a C2ST of ranks vs a continuous uniform; it is left out: tied discrete ranks let the classifier
    score about 0.6 on exact posteriors (tests/test_calibration.py), and it doubles the cost.
    C2ST needs at least MIN_C2ST test images, else it is None.
    """
    import torch
    from sbi.diagnostics.sbc import check_prior_vs_dap, check_uniformity_frequentist

    ks = check_uniformity_frequentist(torch.as_tensor(ranks, dtype=torch.float32), num_ranked).numpy()
    if ranks.shape[0] < MIN_C2ST:
        c2st = [None] * ranks.shape[1]
    else:  # sbi's c2st fixes its classifier's and folds' seed
        c2st = (
            check_prior_vs_dap(
                torch.as_tensor(theta, dtype=torch.float32), torch.as_tensor(dap, dtype=torch.float32)
            )
            .numpy()
            .astype(float)
            .tolist()
        )
    return {"ks_pvalue": ks.astype(float).tolist(), "c2st_dap": c2st}


def tarp_references(n: int, n_params: int, seed: int) -> np.ndarray:
    """TARP reference points, uniform in the unit box of the normalised parameters (one per test image)."""
    return np.random.default_rng(seed).uniform(size=(n, n_params))


def tarp_coverage_values(
    samples: np.ndarray, theta: np.ndarray, references: np.ndarray, chunk: int = 64
) -> np.ndarray:
    """Per image, the fraction of samples closer (L2) to the reference point than the true value is (Lemos+ 2023)."""
    values = np.empty(theta.shape[0])
    for first in range(0, theta.shape[0], chunk):
        part = slice(first, first + chunk)
        r = references[part].astype(np.float64)
        d_samples = np.zeros(samples[part].shape[:2])
        for j in range(
            r.shape[1]
        ):  # squared distances, one parameter at a time (numpy is slow on a short last axis)
            d_samples += (samples[part, :, j].astype(np.float64) - r[:, None, j]) ** 2
        d_theta = ((theta[part].astype(np.float64) - r) ** 2).sum(axis=-1)
        values[part] = (d_samples < d_theta[:, None]).mean(axis=1)
    return values


def tarp_curve(values: np.ndarray, num_bins: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Expected coverage probability on a grid of credibility levels: (ecp, alpha), as sbi's _run_tarp builds it.

    The grid spans [0, 1] (sbi spans the range of the values, which equals [0, 1] whenever some
    true value lies closer to its reference than every sample and another farther than every sample).
    """
    if len(values) < 100:
        log.warning("TARP on %d test images: its curve and ATC need hundreds to mean much", len(values))
    num_bins = num_bins or max(1, len(values) // 10)
    hist, alpha = np.histogram(values, bins=num_bins, range=(0.0, 1.0))
    ecp = np.concatenate([[0.0], np.cumsum(hist) / hist.sum()])
    return ecp, alpha


def tarp_check(ecp: np.ndarray, alpha: np.ndarray) -> tuple[float, float]:
    """sbi's check_tarp: area between the ECP curve and the diagonal above alpha = 0.5 (ATC), and the KS p-value."""
    import torch
    from sbi.diagnostics.tarp import check_tarp

    atc, ks = check_tarp(
        torch.as_tensor(ecp, dtype=torch.float64), torch.as_tensor(alpha, dtype=torch.float64)
    )
    return float(atc), float(ks)


def tarp(
    samples: np.ndarray,
    theta: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    seed: int,
    num_bins: int | None = None,
) -> dict:
    """TARP on samples normalised by the prior box [low, high], references uniform in that box: ATC, KS p, curve."""
    width = np.asarray(high, dtype=np.float64) - np.asarray(low, dtype=np.float64)
    s = (samples - low) / width
    t = (theta - low) / width
    refs = tarp_references(theta.shape[0], theta.shape[1], seed)
    ecp, alpha = tarp_curve(tarp_coverage_values(s, t, refs), num_bins)
    atc, ks = tarp_check(ecp, alpha)
    return {"atc": atc, "ks_pvalue": ks, "alpha": alpha.tolist(), "ecp": ecp.tolist()}
