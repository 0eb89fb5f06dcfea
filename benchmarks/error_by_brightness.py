"""Where an estimator's error on a parameter is: its rms error and posterior width by the lens's magnitude.

A physical-light study's z_l is the lens's colour, so how well it can be read depends on the lens's brightness
(and on how much the arcs outshine it). This script reads a finished run's test store (labels, and the per-image
`lens_light-magnitude-<band>` metadata) and each estimator's posterior samples, and prints, per bin of the lens's
magnitude in one band, the rms error of the posterior mean, the median posterior standard deviation and the
number of images; benchmarks/deblending_limit.py prints the same bins for its Cramer-Rao bound
(`--magnitude-bins`), so the two can be set side by side.

Usage: .venv/bin/python benchmarks/error_by_brightness.py --run results/physical [--estimators nsf maf]
       [--parameter z_l] [--band r] [--magnitude-bins 15 17.8 18.5 19 19.7 22.5]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lenspipe.limits import magnitude_bins
from lenspipe.sample import open_samples
from lenspipe.store import open_store


def binned_errors(
    samples: np.ndarray, truth: np.ndarray, magnitude: np.ndarray, edges: list[float]
) -> list[tuple[int, float, float]]:
    """(images, rms error of the posterior mean, median posterior sd) per magnitude bin [edges[k], edges[k+1]]
    (the last bin's upper edge included); samples (n, draws) of one parameter."""
    error = samples.mean(axis=1) - truth
    width = samples.std(axis=1)
    out = []
    for inside in magnitude_bins(magnitude, edges)[1]:
        if not inside.any():
            out.append((0, float("nan"), float("nan")))
            continue
        out.append(
            (int(inside.sum()), float(np.sqrt(np.mean(error[inside] ** 2))), float(np.median(width[inside])))
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished run's folder, results/<run>")
    parser.add_argument("--estimators", nargs="+", default=["nsf"])
    parser.add_argument("--parameter", default="z_l")
    parser.add_argument("--band", default="r", help="band of the lens magnitude that bins the images")
    parser.add_argument("--magnitude-bins", type=float, nargs="+", help="bin edges (default: the fifths)")
    args = parser.parse_args()
    test = open_store(args.run / "split" / "test.zarr", verify=False)
    column = f"lens_light-magnitude-{args.band}"
    metadata = test.metadata()
    if column not in metadata.columns:
        raise SystemExit(f"{args.run}: the test store has no {column} (not a physical-light study)")
    magnitude = metadata[column].to_numpy(float)
    names = list(test.parameter_names)
    if args.parameter not in names:
        raise SystemExit(f"--parameter: expected one of {', '.join(names)}, got {args.parameter!r}")
    truth = test.theta[:, names.index(args.parameter)].astype(float)
    edges = magnitude_bins(magnitude, args.magnitude_bins)[0]
    heads = [f"{lo:.2f}-{hi:.2f}" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    print(f"{args.run}: {len(truth)} test images; {args.parameter}, by the lens's {args.band} magnitude")
    print("| estimator | R^2 | what | " + " | ".join(heads) + " |")
    print("|---|---:|---|" + "---:|" * len(heads))
    for estimator in args.estimators:
        posterior = open_samples(args.run / "sample" / estimator / "samples.zarr", verify=False)
        draws = posterior.samples[:, :, posterior.parameter_names.index(args.parameter)].astype(float)
        r2 = 1.0 - np.mean((draws.mean(axis=1) - truth) ** 2) / truth.var()
        rows = binned_errors(draws, truth, magnitude, edges)
        print(f"| {estimator} | {r2:.3f} | rms error | " + " | ".join(f"{r[1]:.4f}" for r in rows) + " |")
        print(f"| {estimator} | | posterior sd | " + " | ".join(f"{r[2]:.4f}" for r in rows) + " |")
    print("| images | | | " + " | ".join(str(r[0]) for r in rows) + " |")


if __name__ == "__main__":
    main()
