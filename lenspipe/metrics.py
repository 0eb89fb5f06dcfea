"""Accuracy and calibration metrics of one estimator on the test set, from its stored posterior samples.

Per parameter: R^2 of the posterior mean, residual statistics, coverage of central credible
intervals, SBC rank tests; jointly: TARP. Written as a CSV (one row per parameter) and a JSON.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lenspipe import atomic, calibration
from lenspipe import parameters as params_table
from lenspipe.errors import ConfigError, DataError
from lenspipe.seeds import metrics_seed

log = logging.getLogger(__name__)

# What every column means: written into the JSON and stated in the report's captions.
DEFINITIONS = {
    "r2": "coefficient of determination of the posterior mean (sklearn r2_score)",
    "bias": "mean over test images of the residual r = posterior mean - true value (parameter units)",
    "mean_abs_residual": "mean |r| over test images (parameter units)",
    "mean_abs_residual_norm": "mean |r| divided by the prior width (high - low of the prior box): comparable across parameters",
    "mean_abs_relative_residual": "mean |r| / |true value| (the definition that reproduces the seed's table; "
    "ill-conditioned for e1, e2, whose true values straddle 0)",
    "median_residual": "median of r (parameter units)",
    "residual_halfwidth_68": "half the 16th-84th percentile range of r (parameter units; sigma for a Gaussian)",
    "coverage_68": "fraction of test images whose true value is inside the central 68% interval (16th-84th percentile)",
    "coverage_95": "fraction of test images whose true value is inside the central 95% interval (2.5th-97.5th percentile)",
    "sbc_ks_pvalue": "KS p-value of SBC rank uniformity (sbi check_sbc; rank = samples below the true value)",
    "sbc_c2st_dap": "C2ST accuracy, data-averaged posterior (one sample per image) vs the true values (0.5 ideal)",
    "tarp_atc": "TARP area between the expected-coverage curve and the diagonal for alpha > 0.5 (0 ideal; < 0 over-confident)",
    "tarp_ks_pvalue": "KS p-value between the TARP expected-coverage curve and the diagonal",
}
PER_PARAMETER = (
    "r2",
    "bias",
    "mean_abs_residual",
    "mean_abs_residual_norm",
    "mean_abs_relative_residual",
    "median_residual",
    "residual_halfwidth_68",
    "coverage_68",
    "coverage_95",
    "sbc_ks_pvalue",
    "sbc_c2st_dap",
)


@dataclass(frozen=True)
class EvaluationSettings:
    """Samples per image used for SBC ranks, test images given corner plots, seed of TARP's reference points."""

    sbc_samples: int
    corner_images: tuple[int, ...] = ()
    seed: int = 0

    @classmethod
    def from_params(
        cls, sbc_samples: int, corner_images: Sequence[int], global_seed: int
    ) -> EvaluationSettings:
        """Settings from the config slice; one seed for every estimator, so all share TARP references."""
        return cls(int(sbc_samples), tuple(int(i) for i in corner_images), metrics_seed(global_seed))


@dataclass(frozen=True)
class EvaluationOutputs:
    """Where rule evaluate writes: the metrics CSV and JSON, and each figure's files (PDF, PNG) by name."""

    csv: str
    json: str
    figures: Mapping[str, Sequence[str]]

    @classmethod
    def from_named(cls, output: Any) -> EvaluationOutputs:
        """From Snakemake's named outputs: csv, json, provenance (written by lenspipe.jobs), one entry per figure."""
        figures = {
            name: [str(p) for p in files]
            for name, files in output.items()
            if name not in ("csv", "json", "provenance")
        }
        return cls(str(output.csv), str(output.json), figures)


@dataclass(frozen=True)
class PosteriorSummary:
    """Per test image and parameter: posterior mean, 16th and 84th percentile of the samples."""

    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray


def summarise(samples: np.ndarray) -> PosteriorSummary:
    """Posterior mean and 68% central interval of samples (n_test, n_samples, n_params)."""
    low, high = np.quantile(samples, [0.16, 0.84], axis=1)
    return PosteriorSummary(samples.mean(axis=1, dtype=np.float64), low, high)


def accuracy(
    theta: np.ndarray, mean: np.ndarray, low: Sequence[float], high: Sequence[float]
) -> dict[str, np.ndarray]:
    """R^2 and residual statistics per parameter, r = posterior mean - true value (see DEFINITIONS)."""
    from sklearn.metrics import r2_score

    theta = np.asarray(theta, dtype=np.float64)
    res = mean - theta
    abs_res = np.abs(res)
    q16, q84 = np.percentile(res, [16, 84], axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(theta != 0, abs_res / np.abs(theta), np.nan)
    return {
        "r2": np.atleast_1d(r2_score(theta, mean, multioutput="raw_values")),
        "bias": res.mean(axis=0),
        "mean_abs_residual": abs_res.mean(axis=0),
        "mean_abs_residual_norm": abs_res.mean(axis=0) / (np.asarray(high, float) - np.asarray(low, float)),
        "mean_abs_relative_residual": np.nanmean(relative, axis=0),
        "median_residual": np.median(res, axis=0),
        "residual_halfwidth_68": (q84 - q16) / 2,
    }


def compute_metrics(
    samples: np.ndarray,
    theta: np.ndarray,
    names: Sequence[str],
    low: Sequence[float],
    high: Sequence[float],
    settings: EvaluationSettings,
) -> dict[str, Any]:
    """Every metric of one estimator from its samples (n_test, n_samples, n_params) and the true values."""
    n, s, p = samples.shape
    if theta.shape != (n, p):
        raise ValueError(f"true values {theta.shape} do not match samples {samples.shape}")
    if settings.sbc_samples > s:
        raise ConfigError(
            "evaluation.sbc_samples", f"at most evaluation.num_samples ({s})", settings.sbc_samples
        )
    summary = summarise(samples)
    per = {k: np.asarray(v, dtype=float) for k, v in accuracy(theta, summary.mean, low, high).items()}
    levels = calibration.credibility_levels()
    curve = calibration.central_coverage(samples, theta, levels)
    for level in calibration.HEADLINE:
        per[f"coverage_{round(level * 100)}"] = curve[int(np.argmin(np.abs(levels - level)))]
    ranks = calibration.sbc_ranks(samples, theta, settings.sbc_samples)
    sbc = calibration.sbc_checks(ranks, theta, samples[:, 0, :], settings.sbc_samples)
    for key in ("ks_pvalue", "c2st_dap"):
        per[f"sbc_{key}"] = np.array([np.nan if v is None else v for v in sbc[key]], dtype=float)
    tarp = calibration.tarp(samples, theta, np.asarray(low), np.asarray(high), settings.seed)
    return {
        "n_test": n,
        "num_samples": s,
        "sbc_samples": settings.sbc_samples,
        "parameters": list(names),
        "units": [q.unit for q in params_table.get(list(names))],
        "per_parameter": {
            name: {k: _plain(per[k][j]) for k in PER_PARAMETER} for j, name in enumerate(names)
        },
        "tarp": tarp,
        "coverage_curve": {
            "levels": levels.tolist(),
            **{name: curve[:, j].tolist() for j, name in enumerate(names)},
        },
        "definitions": DEFINITIONS,
    }


def _plain(x: float) -> float | None:
    """A JSON-safe float: NaN (a metric that is undefined here) becomes None."""
    x = float(x)
    return None if math.isnan(x) else x


def metrics_table(metrics: Mapping[str, Any]) -> Any:
    """One row per parameter with every per-parameter metric, then a `joint` row with TARP's ATC and KS p."""
    import pandas as pd

    rows = [{"parameter": name, **metrics["per_parameter"][name]} for name in metrics["parameters"]]
    rows.append(
        {
            "parameter": "joint",
            "tarp_atc": metrics["tarp"]["atc"],
            "tarp_ks_pvalue": metrics["tarp"]["ks_pvalue"],
        }
    )
    return pd.DataFrame(rows, columns=["parameter", *PER_PARAMETER, "tarp_atc", "tarp_ks_pvalue"])


def evaluate(
    samples_path: str | os.PathLike[str],
    test_path: str | os.PathLike[str],
    epochs_path: str | os.PathLike[str],
    outputs: EvaluationOutputs,
    settings: EvaluationSettings,
    estimator: str = "",
) -> dict[str, Any]:
    """One estimator's evaluation: metrics CSV and JSON, then every figure, from its samples and the test store."""
    from lenspipe.sample import open_samples
    from lenspipe.store import open_store

    posterior = open_samples(samples_path)
    test = open_store(test_path, verify=True)
    if posterior.parameter_names != list(test.parameter_names) or posterior.samples.shape[0] != len(test):
        raise DataError(
            samples_path,
            f"samples {posterior.samples.shape} for {posterior.parameter_names} do not "
            f"match the test store ({len(test)} images of {test.parameter_names})",
        )
    samples, theta, names, box = posterior.samples, test.theta, posterior.parameter_names, posterior.prior_box
    for i in settings.corner_images:  # checked before the minutes of metrics, not after
        if not 0 <= i < len(theta):
            raise ConfigError("evaluation.corner_images", f"indices of test images (< {len(theta)})", i)
    metrics = compute_metrics(samples, theta, names, box.low, box.high, settings)
    metrics["estimator"] = estimator
    metrics["seed"] = settings.seed
    write_table(metrics_table(metrics), outputs.csv)
    atomic.write_json(outputs.json, metrics)
    log.info("metrics of %s written to %s", estimator, outputs.json)
    write_figures(samples, theta, metrics, epochs_path, outputs.figures, settings, estimator, box)
    return metrics


def write_figures(
    samples: np.ndarray,
    theta: np.ndarray,
    metrics: Mapping[str, Any],
    epochs_path: str | os.PathLike[str],
    figures: Mapping[str, Sequence[str]],
    settings: EvaluationSettings,
    estimator: str,
    box: Any,
) -> None:
    """Every per-estimator figure whose name is in `figures` (name -> [pdf, png])."""
    from lenspipe import plots

    names = metrics["parameters"]
    per = metrics["per_parameter"]
    summary = summarise(samples)
    expected = set(plots.FIGURES) | {f"corner_{i}" for i in settings.corner_images}
    if set(figures) != expected:
        raise ValueError(f"figure outputs {sorted(figures)} differ from the expected {sorted(expected)}")
    for i in settings.corner_images:
        plots.corner_plot(samples[i], theta[i], names, f"{estimator}: test image {i}", figures[f"corner_{i}"])
    plots.predicted_vs_true(
        theta,
        summary.mean,
        summary.low,
        summary.high,
        [per[n]["r2"] for n in names],
        names,
        box,
        figures["predicted_vs_true"],
    )
    plots.residuals(theta, summary.mean, per, names, box, figures["residuals"])
    curve = metrics["coverage_curve"]
    plots.coverage(
        np.asarray(curve["levels"]),
        np.array([curve[n] for n in names]).T,
        np.asarray(metrics["tarp"]["alpha"]),
        np.asarray(metrics["tarp"]["ecp"]),
        len(theta),
        names,
        figures["coverage"],
    )
    ranks = calibration.sbc_ranks(samples, theta, settings.sbc_samples)
    plots.sbc_ranks(
        ranks, settings.sbc_samples, [per[n]["sbc_ks_pvalue"] for n in names], names, figures["sbc_ranks"]
    )
    plots.loss_curve(epochs_path, f"{estimator}: training", figures["loss"])
    log.info("%d figures of %s written", len(figures), estimator)


def write_table(table: Any, path: str | os.PathLike[str]) -> None:
    """A DataFrame as CSV, atomically, 6 significant digits (the JSON keeps full precision)."""
    atomic.write_text(path, table.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
