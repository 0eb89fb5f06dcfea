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
from lenspipe.limits import (
    LIMIT_ROW,
    ORACLE_ROW,
    lens_light_features,
    lens_light_limits,
    theta_e_limits,
)
from lenspipe.store import METADATA_FILE, open_store

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
    "training_cpu_time_s": ("training CPU time [s]", "{:.0f}"),
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
    limits: Mapping[str, float | None] | None = None,
    oracle: Mapping[str, float | None] | None = None,
) -> dict[str, Any]:
    """The comparison DataFrames, one row per estimator (in the given order), keyed by table name.

    `limits` (lenspipe.limits.theta_e_limits) adds a row to the R^2 table: what theta_E alone allows; `oracle`
    (lenspipe.limits.lens_light_limits, physical lens light only) a last one: what the lens light and theta_E allow.
    """
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
        if table == "r2" and limits:
            rows.append({"estimator": LIMIT_ROW, **{n: _num(limits.get(n)) for n in names}})
        if table == "r2" and oracle:
            rows.append({"estimator": ORACLE_ROW, **{n: _num(oracle.get(n)) for n in names}})
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
                # an ensemble (lenspipe.ensemble) has no best epoch or loss of its own: null, shown as --
                "best_epoch": _int(training[est]["best_epoch"]),
                "best_val_loss": _num(training[est]["best_val_loss"]),
                "training_wall_time_s": float(training[est]["wall_time_s"]),
                # summaries written before CPU time was recorded have none: shown as --
                "training_cpu_time_s": _num(training[est].get("cpu_time_s")),
                "train_pairs_per_s": _num(training[est]["train_pairs_per_s"]),
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


def _int(x: Any) -> int | float:
    return float("nan") if x is None else int(x)


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


def physical_light_limits(train_store: Any, test_store: Any) -> dict[str, float | None] | None:
    """The oracle of lenspipe.limits from the stores' metadata; None when the images have no physical lens light."""
    if not all((s.path / METADATA_FILE).exists() for s in (train_store, test_store)):
        return None
    names = test_store.parameter_names
    train_x = lens_light_features(train_store.metadata(), train_store.theta, names)
    test_x = lens_light_features(test_store.metadata(), test_store.theta, names)
    if train_x is None or test_x is None:
        return None
    return lens_light_limits(train_x, test_x, train_store.theta, test_store.theta, names)


def compare(
    *,
    estimators: Sequence[str],
    metrics: Sequence[str | os.PathLike[str]],
    training: Sequence[str | os.PathLike[str]],
    sampling: Sequence[str | os.PathLike[str]],
    tables: Sequence[str | os.PathLike[str]],
    figure: Sequence[str | os.PathLike[str]],
    train: str | os.PathLike[str] | None = None,
    test: str | os.PathLike[str] | None = None,
) -> dict:
    """Read every estimator's metrics, training summary and sampling timing; write the tables and the figure.

    With the split's `train` and `test` stores, the R^2 table also gets the limit theta_E alone allows
    (lenspipe.limits), and, when the images have the physical lens light, the limit of the true lens light and
    theta_E together (the oracle).
    """
    if not (len(estimators) == len(metrics) == len(training) == len(sampling)):
        raise ValueError("one metrics, training and sampling file per estimator expected")
    by_metrics = {
        e: read_json(p, ("parameters", "per_parameter", "tarp"))
        for e, p in zip(estimators, metrics, strict=True)
    }
    by_training = {e: read_json(p, TRAINING_KEYS) for e, p in zip(estimators, training, strict=True)}
    by_sampling = {e: read_json(p, SAMPLING_KEYS) for e, p in zip(estimators, sampling, strict=True)}
    limits = oracle = None
    if train is not None and test is not None:  # labels only: the split verified the stores
        train_store, test_store = open_store(train, verify=False), open_store(test, verify=False)
        names = test_store.parameter_names
        limits = theta_e_limits(train_store.theta, test_store.theta, names)
        oracle = physical_light_limits(train_store, test_store)
    built = build_tables(estimators, by_metrics, by_training, by_sampling, limits, oracle)
    write_tables(built, tables)
    names = by_metrics[estimators[0]]["parameters"]
    plots.comparison(long_table(estimators, by_metrics), names, figure)
    return built
