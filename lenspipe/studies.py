"""The cross-study table: each estimator's R^2 and 68% coverage per parameter as the simulation goes from the
seeds' design (paper) to DELVE's real depth (survey) to drawn nuisance light (realistic) to the lens light that
follows the lens's physics (physical), beside the seeds' own R^2 and the limits the images allow.

It reads the `compare` rule's own tables (results/<run>/compare/r2.csv, coverage_68.csv), so it never recomputes
a number:  python -m lenspipe.studies results/paper results/survey results/realistic results/physical
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from lenspipe.errors import DataError
from lenspipe.limits import LIMIT_ROW, ORACLE_ROW

# The seeds' table (MISSION.md, seed 1: 10,000 legacy-noise images, R^2 of the posterior mean; no coverage).
SEEDS_R2 = {
    "maf": {"sigma_v": 0.903, "theta_E": 0.999, "e1": 0.976, "e2": 0.987, "z_l": -0.007, "z_s": -0.006},
    "nsf": {"sigma_v": 0.902, "theta_E": 0.999, "e1": 0.988, "e2": 0.988, "z_l": -0.008, "z_s": -0.012},
}


def _read(path: Path) -> dict[str, dict[str, float]]:
    import pandas as pd

    if not path.is_file():
        raise DataError(path, "the compare rule's table (run the study first)")
    frame = pd.read_csv(path)
    return {
        str(row["estimator"]): {c: float(row[c]) for c in frame.columns[1:]} for _, row in frame.iterrows()
    }


def cross_study_table(studies: Sequence[str | os.PathLike[str]]) -> str:
    """Markdown: one row per (study, estimator), cells 'R^2 / 68% coverage'; the seeds' rows first."""
    rows: list[tuple[str, str, dict[str, str]]] = []
    names: list[str] = []
    for study in studies:
        root = Path(study)
        r2, cov = _read(root / "compare" / "r2.csv"), _read(root / "compare" / "coverage_68.csv")
        for est, values in r2.items():
            names = names or list(values)
            if est in (LIMIT_ROW, ORACLE_ROW):  # limits: R^2 only, no coverage
                rows.append((root.name, est, {n: "--" if v != v else f"{v:.3f}" for n, v in values.items()}))
            else:
                rows.append((root.name, est, {n: f"{values[n]:.3f} / {cov[est][n]:.2f}" for n in values}))
    if not names:
        raise DataError("studies", "at least one study folder")
    lines = ["| study | estimator | " + " | ".join(names) + " |", "|---|---|" + "---:|" * len(names)]
    for est, values in SEEDS_R2.items():
        lines.append(
            f"| seeds | {est} | "
            + " | ".join(f"{values[n]:.3f}" if n in values else "" for n in names)
            + " |"
        )
    for study, est, cells in rows:
        lines.append(f"| {study} | {est} | " + " | ".join(cells[n] for n in names) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("studies", nargs="+", help="results/<run> folders, in the order of the table")
    args = parser.parse_args(argv)
    try:
        sys.stdout.write(cross_study_table(args.studies))
    except DataError as exc:
        sys.stderr.write(f"lenspipe: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
