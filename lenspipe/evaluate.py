"""Stage evaluate: one estimator's metrics (CSV, JSON) and figures from its posterior samples and the test store.

The metric maths lives in lenspipe.metrics and lenspipe.calibration, the figures in lenspipe.plots.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lenspipe import atomic, calibration
from lenspipe.errors import ConfigError, DataError
from lenspipe.metrics import EvaluationSettings, compute_metrics, metrics_table, summarise, write_table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationOutputs:
    """Where rule evaluate writes: the metrics CSV and JSON, and each figure's files (PDF, PNG) by name."""

    csv: str
    json: str
    figures: Mapping[str, Sequence[str]]

    @classmethod
    def from_named(cls, outputs: Mapping[str, Any]) -> EvaluationOutputs:
        """From the rule's named outputs: csv, json, provenance (written by lenspipe.jobs), one entry per figure."""
        figures = {
            name: [str(p) for p in files]
            for name, files in outputs.items()
            if name not in ("csv", "json", "provenance")
        }
        return cls(str(outputs["csv"]), str(outputs["json"]), figures)


def evaluate(
    *,
    samples: str | os.PathLike[str],
    test: str | os.PathLike[str],
    epochs: str | os.PathLike[str],
    outputs: Mapping[str, Any],
    sbc_samples: int,
    corner_images: Sequence[int],
    seed: int,
    estimator: str = "",
) -> dict[str, Any]:
    """Rule evaluate: metrics and figures of `estimator` into its named `outputs`; the config slice as params."""
    settings = EvaluationSettings.from_params(sbc_samples, corner_images, seed)
    return evaluate_samples(samples, test, epochs, EvaluationOutputs.from_named(outputs), settings, estimator)


def evaluate_samples(
    samples_path: str | os.PathLike[str],
    test_path: str | os.PathLike[str],
    epochs_path: str | os.PathLike[str],
    outputs: EvaluationOutputs,
    settings: EvaluationSettings,
    estimator: str = "",
) -> dict[str, Any]:
    """Metrics CSV and JSON, then every figure, of one estimator from its samples and the test store."""
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
