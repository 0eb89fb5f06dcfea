"""Where a finished study's posteriors break the images' symmetry: e1/e2 pulls by Einstein radius, sign misses.

The simulation is symmetric under the square's rotations and reflections, so an honest posterior has no preferred
sign of e1 or e2: averaged over test images, the posterior mean minus the truth is 0 in every bin of theta_E.
For each estimator given, from the study's own samples (sample/<name>/samples.zarr) and test store, prints per
theta_E bin the mean of (posterior mean - truth) for e1 and e2 with its standard error, the SBC rank histogram's
first and last of 20 bins for every parameter (50 expected per 1,000 images), and the "sign misses": test images
with |truth| > 0.15 whose posterior mean has the other sign, split by the truth's sign (a symmetric estimator
misses both signs alike). The study's files are only read.

Usage: .venv/bin/python benchmarks/equivariance.py --study results/realistic-derived --estimators nsf maf nsf_d4
       [--edges 0 0.5 1 4]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lenspipe.sample import open_samples
from lenspipe.store import open_store

ELLIPTICITIES = ("e1", "e2")


def pulls(
    samples: np.ndarray, theta: np.ndarray, names: Sequence[str], edges: Sequence[float]
) -> list[dict[str, float]]:
    """Per theta_E bin [edges[i], edges[i+1]) and ellipticity: n, mean(posterior mean - truth), its standard error."""
    j_theta = list(names).index("theta_E")
    rows = []
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        sel = (theta[:, j_theta] >= low) & (theta[:, j_theta] < high)
        for name in ELLIPTICITIES:
            j = list(names).index(name)
            d = samples[sel, :, j].mean(axis=1) - theta[sel, j]
            n = int(sel.sum())
            rows.append(
                {
                    "low": low,
                    "high": high,
                    "parameter": name,
                    "n": n,
                    "pull": float(d.mean()) if n else float("nan"),
                    "error": float(d.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
                }
            )
    return rows


def extreme_ranks(samples: np.ndarray, theta: np.ndarray, bins: int = 20) -> list[tuple[int, int]]:
    """Per parameter: test images whose truth ranks in the lowest and in the highest 1/bins of their samples."""
    rank = (samples < theta[:, None, :]).mean(axis=1)
    return [(int((r < 1 / bins).sum()), int((r >= 1 - 1 / bins).sum())) for r in rank.T]


def sign_misses(
    samples: np.ndarray, theta: np.ndarray, j: int, threshold: float = 0.15
) -> tuple[int, int, int, int]:
    """(misses with positive truth, images with truth > threshold, misses with negative truth, images < -threshold):
    a miss is a posterior mean of the other sign than the truth."""
    mean, truth = samples[:, :, j].mean(axis=1), theta[:, j]
    pos, neg = truth > threshold, truth < -threshold
    return (
        int((pos & (mean < 0)).sum()),
        int(pos.sum()),
        int((neg & (mean > 0)).sum()),
        int(neg.sum()),
    )


def main() -> None:
    """Read each estimator's samples, print its pulls, extreme ranks and sign misses."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, required=True, help="results/<run> of a finished study")
    parser.add_argument("--estimators", nargs="+", required=True)
    parser.add_argument("--edges", nargs="+", type=float, default=[0.0, 0.5, 1.0, 4.0], help="theta_E bins")
    args = parser.parse_args()
    test = open_store(args.study / "split/test.zarr", verify=False)
    theta, names = np.asarray(test.theta), list(test.parameter_names)
    for name in args.estimators:
        samples = np.asarray(open_samples(args.study / f"sample/{name}/samples.zarr").samples)
        print(f"== {name} ({samples.shape[0]} test images x {samples.shape[1]} samples)")
        for row in pulls(samples, theta, names, args.edges):
            print(
                f"  theta_E [{row['low']:g}, {row['high']:g}) n={row['n']:4d} {row['parameter']}: "
                f"posterior mean - truth {row['pull']:+.4f} +- {row['error']:.4f}"
            )
        ranks = extreme_ranks(samples, theta)
        print(
            "  SBC first / last of 20 bins: "
            + ", ".join(f"{n} {a}/{b}" for n, (a, b) in zip(names, ranks, strict=True))
        )
        for e in ELLIPTICITIES:
            mp, np_, mn, nn = sign_misses(samples, theta, names.index(e))
            print(f"  {e} sign misses (|truth| > 0.15): {mp} of {np_} positive, {mn} of {nn} negative")


if __name__ == "__main__":
    main()
