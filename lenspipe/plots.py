"""Paper figures, saved byte-for-byte reproducibly: the same data gives the same PDF/PNG/SVG files.

Every figure is drawn inside `paper_style()` and written with `save_figure`, which removes the
timestamps matplotlib would otherwise embed (and the PNG software string) and fixes the resolution.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lenspipe import parameters as params_table
from lenspipe.atomic import atomic_path
from lenspipe.errors import DataError

DPI = 200
# PDF font subsetting logs every table it prunes at INFO: keep the jobs' logs readable.
logging.getLogger("fontTools").setLevel(logging.WARNING)
# Per-estimator figures, each written as PDF (the paper) and PNG (the report); corner plots come per image.
FIGURES = ("predicted_vs_true", "residuals", "coverage", "sbc_ranks", "loss")
FORMATS = ("pdf", "png")

STYLE: dict[str, Any] = {
    "font.family": "STIXGeneral",  # Times-like text and maths from the fonts matplotlib ships
    "mathtext.fontset": "stix",
    "font.size": 10,
    "axes.labelsize": 10,
    "axes.titlesize": 10,
    "legend.fontsize": 8,
    "xtick.labelsize": 8.5,
    "ytick.labelsize": 8.5,
    "xtick.direction": "in",
    "ytick.direction": "in",
    "axes.linewidth": 0.8,
    "lines.linewidth": 1.2,
    "pdf.fonttype": 42,  # TrueType fonts embedded: journals accept them, text stays editable
    "ps.fonttype": 42,
    "svg.hashsalt": "lenspipe",  # fixed SVG element ids
    "svg.fonttype": "path",
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.03,
}
# Behind in-panel labels (R^2, bias), so error bars and points do not run through them.
LABEL_BOX = {"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1.5}
# Metadata keys set to None are left out of the file: no date, no software string.
_METADATA = {
    "pdf": {"CreationDate": None},
    "png": {"Software": None},
    "svg": {"Date": None},
}


@contextlib.contextmanager
def paper_style() -> Iterator[None]:
    """The paper's matplotlib settings, for the duration of the block (headless backend)."""
    import matplotlib

    matplotlib.use("Agg")
    with matplotlib.rc_context(STYLE):
        yield


def save_figure(fig: Any, *paths: str | os.PathLike[str]) -> None:
    """Save `fig` to each path (format from the suffix) atomically and reproducibly, then close it."""
    import matplotlib.pyplot as plt

    try:
        # the settings that shape the written bytes, also when the caller drew outside paper_style()
        with _rc({k: STYLE[k] for k in ("svg.hashsalt", "svg.fonttype", "pdf.fonttype", "savefig.dpi")}):
            for path in paths:
                fmt = Path(path).suffix.lstrip(".").lower()
                if fmt not in _METADATA:
                    raise ValueError(f"{path}: unsupported figure format {fmt!r} (expected pdf, png or svg)")
                with atomic_path(path) as tmp:
                    fig.savefig(tmp, format=fmt, dpi=DPI, metadata=_METADATA[fmt])
    finally:
        plt.close(fig)


def _rc(settings: Mapping[str, Any]) -> contextlib.AbstractContextManager:
    """matplotlib rc settings for the duration of a block."""
    import matplotlib

    return matplotlib.rc_context(dict(settings))


def _top_legend(fig: Any, ax: Any) -> None:
    """The legend of `ax` once, above all panels (it would hide data inside one)."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(
        handles, labels, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=len(labels), frameon=False
    )


def _p_text(p: float | None) -> str:
    """A p-value for a panel title: mathtext, with very small values as a bound."""
    if p is None or not np.isfinite(p):
        return "$p$ undefined"
    return "$p < 10^{-4}$" if p < 1e-4 else f"$p = {p:.3g}$"


def _grid(n: int, ncols: int = 3, panel: float = 2.4) -> tuple[Any, np.ndarray]:
    """A figure with `n` panels in rows of `ncols`; unused panels are hidden."""
    import matplotlib.pyplot as plt

    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel * ncols + 0.4, panel * nrows + 0.2), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat[:n]


def corner_plot(
    samples: np.ndarray,
    truth: np.ndarray | None,
    names: Sequence[str],
    title: str,
    paths: Sequence[str | os.PathLike[str]],
) -> None:
    """Corner plot of one image's posterior samples (S, P) with the true values marked (if known)."""
    import corner

    table = params_table.get(list(names))
    # corner draws about 2 inches per parameter: larger type so it stays readable scaled to a page
    with paper_style(), _rc({"xtick.labelsize": 11, "ytick.labelsize": 11}):
        fig = corner.corner(
            np.asarray(samples, dtype=np.float64),
            bins=int(
                np.clip(np.sqrt(len(samples)) / 2, 10, 30)
            ),  # 30 bins for 5,000 samples, fewer for fewer
            smooth=1.0,
            labels=[p.axis_label for p in table],
            truths=None if truth is None else np.asarray(truth, dtype=np.float64),
            truth_color="#d62728",
            quantiles=[0.16, 0.5, 0.84],
            show_titles=True,
            title_fmt=".3g",
            title_kwargs={"fontsize": 13},
            label_kwargs={"fontsize": 16},
            color="#1f4e79",
            plot_datapoints=False,
            fill_contours=True,
            levels=(0.393, 0.865),  # 1 and 2 sigma of a 2-D Gaussian
        )
        fig.suptitle(title, fontsize=16, y=1.01)
        save_figure(fig, *paths)


def predicted_vs_true(
    truth: np.ndarray,
    mean: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    r2: Sequence[float],
    names: Sequence[str],
    box: Any,
    paths: Sequence[str | os.PathLike[str]],
    estimate: str = "mean",
) -> None:
    """Posterior point estimate (`estimate` names it: mean or median) against the true value per parameter,
    68% intervals as error bars, identity line, R^2."""
    table = params_table.get(list(names))
    with paper_style():
        fig, axes = _grid(len(table))
        for j, (ax, p) in enumerate(zip(axes, table, strict=True)):
            lo, hi = box.low[j], box.high[j]
            yerr = np.vstack([mean[:, j] - low[:, j], high[:, j] - mean[:, j]]).clip(min=0)
            ax.errorbar(
                truth[:, j],
                mean[:, j],
                yerr=yerr,
                fmt="o",
                ms=1.8,
                lw=0.4,
                color="#1f4e79",
                ecolor="#1f4e79",
                alpha=0.5,
                elinewidth=0.4,
                capsize=0,
            )
            ax.plot([lo, hi], [lo, hi], color="#d62728", lw=1.0, label="1:1")
            ax.set_xlim(lo, hi)
            ax.set_ylim(lo, hi)
            ax.set_aspect("equal")
            ax.set_xlabel(f"true {p.axis_label}")
            ax.set_ylabel(f"posterior {estimate} {p.label}")
            ax.text(0.05, 0.93, f"$R^2 = {r2[j]:.3f}$", transform=ax.transAxes, va="top", bbox=LABEL_BOX)
        fig.tight_layout()
        save_figure(fig, *paths)


def residuals(
    truth: np.ndarray,
    mean: np.ndarray,
    stats: Mapping[str, Mapping[str, float]],
    names: Sequence[str],
    box: Any,
    paths: Sequence[str | os.PathLike[str]],
) -> None:
    """Residual (posterior mean - true) against the true value per parameter, with median and 68% band."""
    table = params_table.get(list(names))
    with paper_style():
        fig, axes = _grid(len(table))
        for j, (ax, p) in enumerate(zip(axes, table, strict=True)):
            res = mean[:, j] - truth[:, j]
            s = stats[p.name]
            ax.scatter(truth[:, j], res, s=2, color="#1f4e79", alpha=0.6, linewidths=0)
            ax.axhline(0.0, color="k", lw=0.8)
            ax.axhline(s["median_residual"], color="#d62728", lw=1.0, label="median")
            for sign in (-1, 1):
                ax.axhline(
                    s["median_residual"] + sign * s["residual_halfwidth_68"],
                    color="#d62728",
                    lw=0.8,
                    ls="--",
                    label="68% half-width" if sign > 0 else None,
                )
            ax.set_xlim(box.low[j], box.high[j])
            ax.set_xlabel(f"true {p.axis_label}")
            unit = f" [{p.unit}]" if p.unit else ""
            ax.set_ylabel(f"residual {p.label}{unit}")
            ax.text(
                0.04,
                0.95,
                f"bias = {s['bias']:.3g}",
                transform=ax.transAxes,
                va="top",
                fontsize=8,
                bbox=LABEL_BOX,
            )
        fig.tight_layout()
        _top_legend(fig, axes[0])
        save_figure(fig, *paths)


def coverage(
    levels: np.ndarray,
    empirical: np.ndarray,
    tarp_alpha: np.ndarray,
    tarp_ecp: np.ndarray,
    n_test: int,
    names: Sequence[str],
    paths: Sequence[str | os.PathLike[str]],
) -> None:
    """Empirical against expected coverage of central credible intervals per parameter, TARP's joint curve, diagonal."""
    import matplotlib.pyplot as plt

    table = params_table.get(list(names))
    grid = np.linspace(0.0, 1.0, 101)
    band = 1.96 * np.sqrt(grid * (1 - grid) / max(n_test, 1))
    with paper_style():
        fig, ax = plt.subplots(figsize=(4.8, 3.5))
        ax.fill_between(grid, grid - band, grid + band, color="0.85", lw=0, label=f"95% band ($N={n_test}$)")
        ax.plot([0, 1], [0, 1], color="k", lw=0.8)
        x = np.concatenate([[0.0], levels, [1.0]])
        for j, p in enumerate(table):
            ax.plot(x, np.concatenate([[0.0], empirical[:, j], [1.0]]), lw=1.1, label=p.label)
        ax.plot(tarp_alpha, tarp_ecp, color="k", ls="--", lw=1.2, label="TARP (joint)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_xlabel("credibility level")
        ax.set_ylabel("empirical coverage")
        ax.text(
            0.97,
            0.03,
            "below: over-confident",
            ha="right",
            va="bottom",
            fontsize=7.5,
            color="0.3",
            transform=ax.transAxes,
        )
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
        fig.tight_layout()
        save_figure(fig, *paths)


def sbc_ranks(
    ranks: np.ndarray,
    num_ranked: int,
    ks_pvalues: Sequence[float],
    names: Sequence[str],
    paths: Sequence[str | os.PathLike[str]],
    bins: int | None = None,
) -> None:
    """Histograms of the SBC ranks per parameter, with the uniform expectation and its 99% binomial band.

    Ranks take the num_ranked + 1 integer values 0..num_ranked; bin edges are integers, and each bin's
    expectation follows from how many values it holds, so unequal bins do not read as miscalibration.
    """
    from scipy.stats import binom

    table = params_table.get(list(names))
    n = ranks.shape[0]
    bins = min(bins or int(np.clip(n // 10, 1, 20)), num_ranked + 1)
    edges = np.unique(np.round(np.linspace(0, num_ranked + 1, bins + 1)))
    p_bin = np.diff(edges) / (num_ranked + 1)
    lo, hi = binom.ppf(0.005, n, p_bin), binom.ppf(0.995, n, p_bin)
    with paper_style():
        fig, axes = _grid(len(table))
        for j, (ax, p) in enumerate(zip(axes, table, strict=True)):
            ax.fill_between(
                edges,
                np.append(lo, lo[-1]),
                np.append(hi, hi[-1]),
                step="post",
                color="0.85",
                lw=0,
                label="uniform: 99% band",
            )
            ax.stairs(n * p_bin, edges, color="k", lw=0.8, label="uniform: expected")
            ax.hist(ranks[:, j], bins=edges, histtype="stepfilled", color="#1f4e79", alpha=0.7)
            ax.set_xlim(0, num_ranked + 1)
            ax.set_xlabel(f"rank of true {p.label}")
            ax.set_ylabel("test images")
            ax.set_title(f"KS {_p_text(ks_pvalues[j])}")
        fig.tight_layout()
        _top_legend(fig, axes[0])
        save_figure(fig, *paths)


def loss_curve(
    epochs_csv: str | os.PathLike[str], title: str, paths: Sequence[str | os.PathLike[str]]
) -> None:
    """Training and validation loss per epoch from the training job's epochs CSV, best epoch marked."""
    import matplotlib.pyplot as plt
    import pandas as pd

    try:
        table = pd.read_csv(epochs_csv)
    except (OSError, ValueError) as exc:
        raise DataError(epochs_csv, f"cannot read the epochs table ({exc})") from exc
    missing = {"epoch", "train_loss", "val_loss"} - set(table.columns)
    if missing or table.empty:
        raise DataError(
            epochs_csv,
            f"expected columns epoch, train_loss, val_loss and one row per epoch "
            f"(missing: {', '.join(sorted(missing)) or 'rows'})",
        )
    if "member" in table.columns:  # an ensemble's table (lenspipe.ensemble): every member's curves
        member_curves(table, title, paths)
        return
    best = table.loc[table["val_loss"].idxmin()]
    with paper_style():
        fig, ax = plt.subplots(figsize=(3.6, 2.7))
        ax.plot(table["epoch"], table["train_loss"], label="training")
        ax.plot(table["epoch"], table["val_loss"], label="validation")
        if "val_loss_smoothed" in table.columns:  # training.smoothing / a schedule: what early stopping read
            ax.plot(table["epoch"], table["val_loss_smoothed"], ls="--", lw=1.0, label="validation, smoothed")
        ax.axvline(best["epoch"], color="0.4", ls=":", lw=1.0, label=f"best epoch ({int(best['epoch'])})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(r"loss ($-\log q(\theta \mid x)$)")
        ax.set_title(title)
        ax.legend(frameon=False)
        fig.tight_layout()
        save_figure(fig, *paths)


def member_curves(table: Any, title: str, paths: Sequence[str | os.PathLike[str]]) -> None:
    """An ensemble's members' training (dashed) and validation (solid) losses, one colour per member."""
    import matplotlib.pyplot as plt

    with paper_style():
        fig, ax = plt.subplots(figsize=(3.6, 2.7))
        for i, (member, rows) in enumerate(table.groupby("member", sort=False)):
            colour = f"C{i % 10}"
            ax.plot(rows["epoch"], rows["train_loss"], color=colour, ls="--", lw=1.0)
            ax.plot(rows["epoch"], rows["val_loss"], color=colour, label=f"{member} (validation)")
        ax.set_xlabel("epoch")
        ax.set_ylabel(r"loss ($-\log q(\theta \mid x)$)")
        ax.set_title(f"{title} (members; dashed: training)")
        ax.legend(frameon=False)
        fig.tight_layout()
        save_figure(fig, *paths)


def comparison(table: Any, names: Sequence[str], paths: Sequence[str | os.PathLike[str]]) -> None:
    """R^2 and the 68%/95% coverage per parameter, bars grouped by estimator (one figure for the paper)."""
    import matplotlib.pyplot as plt

    labels = [p.label for p in params_table.get(list(names))]
    estimators = list(dict.fromkeys(table["estimator"]))
    panels = (
        ("r2", "$R^2$ of the posterior mean", None),
        ("coverage_68", "coverage of 68% intervals", 0.68),
        ("coverage_95", "coverage of 95% intervals", 0.95),
    )
    x = np.arange(len(names))
    width = 0.8 / max(len(estimators), 1)
    with paper_style():
        fig, axes = plt.subplots(len(panels), 1, figsize=(7.0, 6.6), sharex=True)
        for ax, (metric, ylabel, target) in zip(axes, panels, strict=True):
            for k, est in enumerate(estimators):
                rows = table[table["estimator"] == est].set_index("parameter").loc[list(names)]
                ax.bar(x + (k - (len(estimators) - 1) / 2) * width, rows[metric].to_numpy(), width, label=est)
            if target is None:
                ax.axhline(0.0, color="k", lw=0.6)
                ax.set_ylim(min(-0.1, float(table[metric].min()) - 0.05), 1.05)
            else:
                ax.axhline(target, color="k", ls="--", lw=0.8)
                ax.set_ylim(0, 1.05)
            ax.set_ylabel(ylabel)
        axes[-1].set_xticks(x, labels)
        axes[0].legend(
            ncols=min(len(estimators), 4), frameon=False, loc="lower left", bbox_to_anchor=(0, 1.0)
        )
        fig.tight_layout()
        save_figure(fig, *paths)
