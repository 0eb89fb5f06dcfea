"""An ensemble of a finished study's estimators, measured against its members on the study's test set.

Bundles the members' train/<name>/ outputs with lenspipe.ensemble (the ensemble rule's code) into a temporary
folder, samples every test image with lenspipe.sample.sample_test_set (the sample rule's code), computes the
metrics with lenspipe.metrics.compute_metrics (the evaluate rule's maths, with the members' SBC sample count and
TARP seed, read from their metrics.json), and prints R^2, 68%/95% coverage, TARP and sampling speed of every member
(from the study's evaluate/ and sample/ outputs) and of the ensemble. The study's files are only read.

Usage: .venv/bin/python benchmarks/ensemble.py --study results/paper --members maf nsf [--weights 1 1]
       [--samples 5000] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

from lenspipe.ensemble import ensemble
from lenspipe.metrics import EvaluationSettings, compute_metrics
from lenspipe.sample import SampleSettings, open_samples, sample_test_set
from lenspipe.store import open_store


def main() -> None:
    """Bundle, sample, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, required=True, help="results/<run> of a finished study")
    parser.add_argument("--members", nargs="+", required=True)
    parser.add_argument("--weights", nargs="+", type=float, default=None)
    parser.add_argument("--samples", type=int, default=5000, help="posterior samples per test image")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    study, names = args.study, args.members
    member_metrics = {n: json.loads((study / f"evaluate/{n}/metrics.json").read_text()) for n in names}
    timing = {n: json.loads((study / f"sample/{n}/timing.json").read_text()) for n in names}
    first = member_metrics[names[0]]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        settings = {"members": names, **({"weights": args.weights} if args.weights else {})}
        ensemble(
            members=[study / f"train/{n}/estimator.pt" for n in names],
            summaries=[study / f"train/{n}/summary.json" for n in names],
            epochs=[study / f"train/{n}/epochs.csv" for n in names],
            outputs={
                "estimator": out / "estimator.pt",
                "epochs": out / "epochs.csv",
                "summary": out / "summary.json",
            },
            settings=settings,
            estimator="ensemble",
        )
        start = time.perf_counter()
        ens_timing = sample_test_set(
            out / "estimator.pt",
            study / "split/test.zarr",
            out / "samples.zarr",
            out / "timing.json",
            SampleSettings(args.samples, args.seed, threads=args.threads),
            estimator="ensemble",
        )
        wall = time.perf_counter() - start
        samples = open_samples(out / "samples.zarr").samples
    test = open_store(study / "split/test.zarr", verify=False)
    box = open_samples(study / f"sample/{names[0]}/samples.zarr", verify=False).prior_box
    metrics = compute_metrics(
        samples,
        test.theta,
        list(test.parameter_names),
        box.low,
        box.high,
        EvaluationSettings(int(first["sbc_samples"]), (), int(first["seed"])),
    )
    rows = {**member_metrics, "ensemble": metrics}
    params = list(test.parameter_names)
    print(f"{len(test)} test images x {args.samples} samples; ensemble of {', '.join(names)} ({settings})")
    for key in ("r2", "coverage_68", "coverage_95"):
        print(f"\n| {key} | " + " | ".join(params) + " |\n|---|" + "---:|" * len(params))
        for est, m in rows.items():
            print(f"| {est} | " + " | ".join(f"{m['per_parameter'][p][key]:.3f}" for p in params) + " |")
    print("\n| estimator | TARP ATC | TARP KS p | min SBC KS p | samples/s |\n|---|---:|---:|---:|---:|")
    speeds = {n: timing[n]["samples_per_s"] for n in names} | {"ensemble": ens_timing["samples_per_s"]}
    for est, m in rows.items():
        sbc = min(m["per_parameter"][p]["sbc_ks_pvalue"] for p in params)
        print(
            f"| {est} | {m['tarp']['atc']:+.4f} | {m['tarp']['ks_pvalue']:.3g} | {sbc:.3g} | {speeds[est]:.0f} |"
        )
    harmonic = len(names) / sum(1 / speeds[n] for n in names)
    print(
        f"\nsampling: ensemble {speeds['ensemble']:.0f} samples/s ({wall:.0f} s wall), members' harmonic mean "
        f"{harmonic:.0f} (their own runs): ratio {speeds['ensemble'] / harmonic:.2f}"
    )


if __name__ == "__main__":
    main()
