"""Comparison across estimators: the paper's tables (CSV, Markdown, LaTeX booktabs) and one figure.

One row per estimator of the config, in config order: a new estimator adds a row, no code changes.
Every table but `cost` depends only on the samples, so reruns of a config reproduce it byte for byte;
`cost` holds measured times, which vary from run to run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lenspipe import atomic, plots
from lenspipe import parameters as params_table
from lenspipe.errors import DataError

# Per-parameter tables: rows estimators, columns parameters. Table -> (key in the metrics JSON, title, format);
# mean_abs_residual is the prior-width-normalised one.
PER_PARAMETER = {
    "r2": ("r2", "R^2 of the posterior mean", "{:.3f}"),
    "mean_abs_residual": ("mean_abs_residual_norm", "mean |posterior mean - true| / prior width", "{:.3g}"),
    "mean_abs_relative_residual": (
        "mean_abs_relative_residual",
        "mean |posterior mean - true| / |true| (the seed's definition)",
        "{:.3g}",
    ),
    "coverage_68": ("coverage_68", "coverage of the central 68% credible interval", "{:.3f}"),
    "coverage_95": ("coverage_95", "coverage of the central 95% credible interval", "{:.3f}"),
}
# Per-estimator tables: column -> (header, format).
CALIBRATION = {
    "tarp_atc": ("TARP ATC", "{:+.3f}"),
    "tarp_ks_pvalue": ("TARP KS p", "{:.3g}"),
    "sbc_ks_pvalue_min": ("min SBC KS p", "{:.3g}"),
}
COST = {
    "epochs": ("epochs", "{:d}"),
    "best_epoch": ("best epoch", "{:d}"),
    "best_val_loss": ("best val. loss", "{:.4g}"),
    "training_wall_time_s": ("training time [s]", "{:.0f}"),
    "train_pairs_per_s": ("training pairs/s", "{:.0f}"),
    "training_device": ("training device", "{}"),
    "sampling_s": ("sampling time [s]", "{:.1f}"),
    "samples_per_s": ("samples/s", "{:.0f}"),
    "sampling_device": ("sampling device", "{}"),
}
TABLES = (*PER_PARAMETER, "calibration", "cost")
TABLE_FORMATS = ("csv", "md", "tex")
TRAINING_KEYS = ("epochs", "best_epoch", "best_val_loss", "wall_time_s", "device", "train_pairs_per_s")
SAMPLING_KEYS = ("sampling_s", "samples_per_s", "device")


def read_json(path: str | os.PathLike[str], required: Sequence[str] = ()) -> dict[str, Any]:
    """A JSON record, with a clear error naming the file and any missing key."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(path, f"cannot read JSON ({exc})") from exc
    missing = [k for k in required if k not in record]
    if missing:
        raise DataError(path, f"missing keys: {', '.join(missing)}")
    return record


def build_tables(
    estimators: Sequence[str],
    metrics: Mapping[str, Mapping],
    training: Mapping[str, Mapping],
    sampling: Mapping[str, Mapping],
) -> dict[str, Any]:
    """The comparison DataFrames, one row per estimator (in the given order), keyed by table name."""
    import pandas as pd

    names = list(metrics[estimators[0]]["parameters"])
    for est in estimators:
        if list(metrics[est]["parameters"]) != names:
            raise DataError(
                est, f"metrics are for parameters {metrics[est]['parameters']}, others for {names}"
            )
    tables: dict[str, Any] = {}
    for table, (key, _, _) in PER_PARAMETER.items():
        rows = [
            {"estimator": est, **{n: _num(metrics[est]["per_parameter"][n][key]) for n in names}}
            for est in estimators
        ]
        tables[table] = pd.DataFrame(rows, columns=["estimator", *names])
    tables["calibration"] = pd.DataFrame(
        [
            {
                "estimator": est,
                "tarp_atc": metrics[est]["tarp"]["atc"],
                "tarp_ks_pvalue": metrics[est]["tarp"]["ks_pvalue"],
                "sbc_ks_pvalue_min": min(
                    _num(metrics[est]["per_parameter"][n]["sbc_ks_pvalue"]) for n in names
                ),
            }
            for est in estimators
        ],
        columns=["estimator", *CALIBRATION],
    )
    tables["cost"] = pd.DataFrame(
        [
            {
                "estimator": est,
                "epochs": int(training[est]["epochs"]),
                "best_epoch": int(training[est]["best_epoch"]),
                "best_val_loss": float(training[est]["best_val_loss"]),
                "training_wall_time_s": float(training[est]["wall_time_s"]),
                "train_pairs_per_s": float(training[est]["train_pairs_per_s"]),
                "training_device": str(training[est]["device"]).split(" (")[
                    0
                ],  # the device, not its thread details
                "sampling_s": float(sampling[est]["sampling_s"]),
                "samples_per_s": float(sampling[est]["samples_per_s"]),
                "sampling_device": str(sampling[est]["device"]),
            }
            for est in estimators
        ],
        columns=["estimator", *COST],
    )
    return tables


def long_table(estimators: Sequence[str], metrics: Mapping[str, Mapping]) -> Any:
    """All per-parameter metrics in long form: one row per (estimator, parameter), for the comparison figure."""
    import pandas as pd

    return pd.DataFrame(
        [
            {"estimator": est, "parameter": n, **metrics[est]["per_parameter"][n]}
            for est in estimators
            for n in metrics[est]["parameters"]
        ]
    )


def _num(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _formats(table: str, columns: Sequence[str]) -> tuple[list[str], list[str], list[Callable[[Any], str]]]:
    """Markdown headers, LaTeX headers and value formatters of a table's columns (after `estimator`)."""
    if table in PER_PARAMETER:
        fmt = PER_PARAMETER[table][2]
        params = params_table.get(list(columns))
        return list(columns), [p.label for p in params], [_formatter(fmt)] * len(columns)
    spec = CALIBRATION if table == "calibration" else COST
    return (
        [spec[c][0] for c in columns],
        [_latex_escape(spec[c][0]) for c in columns],
        [_formatter(spec[c][1]) for c in columns],
    )


def _formatter(fmt: str) -> Callable[[Any], str]:
    def format_value(x: Any) -> str:
        if isinstance(x, float | np.floating) and not np.isfinite(x):
            return "--"
        return fmt.format(int(x) if fmt == "{:d}" else x)

    return format_value


def _latex_escape(text: str) -> str:
    for char, repl in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
        text = text.replace(char, repl)
    return text


def to_markdown(table: str, df: Any) -> str:
    """A table as GitHub Markdown, values formatted for reading."""
    cols = list(df.columns[1:])
    headers, _, fmts = _formats(table, cols)
    lines = ["| estimator | " + " | ".join(headers) + " |", "|---|" + "---:|" * len(cols)]
    for _, row in df.iterrows():
        lines.append(
            f"| {row['estimator']} | " + " | ".join(f(row[c]) for f, c in zip(fmts, cols, strict=True)) + " |"
        )
    return "\n".join(lines) + "\n"


def to_latex(table: str, df: Any) -> str:
    """A table as a LaTeX booktabs tabular (needs \\usepackage{booktabs}), LaTeX labels in the header."""
    cols = list(df.columns[1:])
    _, headers, fmts = _formats(table, cols)
    title = PER_PARAMETER[table][1] if table in PER_PARAMETER else table
    lines = [
        f"% lenspipe: {title}",
        r"\begin{tabular}{l" + "r" * len(cols) + "}",
        r"\toprule",
        "Estimator & " + " & ".join(headers) + r" \\",
        r"\midrule",
    ]
    for _, row in df.iterrows():
        cells = [_latex_escape(str(row["estimator"]))] + [
            _latex_escape(f(row[c])) for f, c in zip(fmts, cols, strict=True)
        ]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def write_tables(tables: Mapping[str, Any], paths: Sequence[str | os.PathLike[str]]) -> None:
    """Write each path: its stem names the table, its suffix the format (csv, md, tex)."""
    from lenspipe.metrics import write_table

    for path in paths:
        name, fmt = Path(path).stem, Path(path).suffix.lstrip(".")
        if name not in tables or fmt not in TABLE_FORMATS:
            raise ValueError(
                f"{path}: expected <table>.<format> with table in {TABLES} and format in {TABLE_FORMATS}"
            )
        if fmt == "csv":
            write_table(tables[name], path)
        else:
            atomic.write_text(path, (to_markdown if fmt == "md" else to_latex)(name, tables[name]))


def compare(
    estimators: Sequence[str],
    metrics_paths: Sequence[str | os.PathLike[str]],
    training_paths: Sequence[str | os.PathLike[str]],
    sampling_paths: Sequence[str | os.PathLike[str]],
    table_paths: Sequence[str | os.PathLike[str]],
    figure_paths: Sequence[str | os.PathLike[str]],
) -> dict:
    """Read every estimator's metrics, training summary and sampling timing; write the tables and the figure."""
    if not (len(estimators) == len(metrics_paths) == len(training_paths) == len(sampling_paths)):
        raise ValueError("one metrics, training and sampling file per estimator expected")
    metrics = {
        e: read_json(p, ("parameters", "per_parameter", "tarp"))
        for e, p in zip(estimators, metrics_paths, strict=True)
    }
    training = {e: read_json(p, TRAINING_KEYS) for e, p in zip(estimators, training_paths, strict=True)}
    sampling = {e: read_json(p, SAMPLING_KEYS) for e, p in zip(estimators, sampling_paths, strict=True)}
    tables = build_tables(estimators, metrics, training, sampling)
    write_tables(tables, table_paths)
    names = metrics[estimators[0]]["parameters"]
    plots.comparison(long_table(estimators, metrics), names, figure_paths)
    return tables
