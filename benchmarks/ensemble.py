"""An ensemble of a finished study's estimators, measured against its members on the study's test images.

Bundles the members' train/<name>/ outputs with lenspipe.ensemble (the ensemble rule's code) into a temporary
folder, draws posterior samples of the first --images test images with the ensemble (seeded per image, as rule
sample does), and computes the metrics with lenspipe.metrics.compute_metrics (the evaluate rule's maths, with the
members' SBC sample count and TARP seed from their metrics.json) for the ensemble and, on the same images, for each
member from the study's own samples (sample/<name>/samples.zarr). Prints R^2, 68%/95% coverage, TARP and SBC, and
the sampling speed of members and ensemble timed in this run on --time-images images, with the ratio of the
ensemble's to the members' harmonic mean (what a mixture should cost). The study's files are only read.

Usage: .venv/bin/python benchmarks/ensemble.py --study results/paper --members maf nsf [--weights 1 1]
       [--images 300] [--samples 2000] [--time-images 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import torch

from lenspipe import posterior
from lenspipe.ensemble import ensemble
from lenspipe.metrics import EvaluationSettings, compute_metrics
from lenspipe.sample import SampleSettings, open_samples
from lenspipe.store import open_store


def main() -> None:
    """Bundle, sample, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, required=True, help="results/<run> of a finished study")
    parser.add_argument("--members", nargs="+", required=True)
    parser.add_argument("--weights", nargs="+", type=float, default=None)
    parser.add_argument("--images", type=int, default=None, help="first test images measured (default all)")
    parser.add_argument("--samples", type=int, default=2000, help="posterior samples per test image")
    parser.add_argument("--time-images", type=int, default=8, help="images of the speed comparison")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    study, names = args.study, args.members
    member_metrics = {n: json.loads((study / f"evaluate/{n}/metrics.json").read_text()) for n in names}
    first = member_metrics[names[0]]
    test = open_store(study / "split/test.zarr", verify=False)
    n = min(args.images or len(test), len(test))
    images, theta, params = test.load_images(slice(0, n)), test.theta[:n], list(test.parameter_names)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        settings = {"members": names, **({"weights": args.weights} if args.weights else {})}
        ensemble(
            members=[study / f"train/{m}/estimator.pt" for m in names],
            summaries=[study / f"train/{m}/summary.json" for m in names],
            epochs=[study / f"train/{m}/epochs.csv" for m in names],
            outputs={
                "estimator": out / "estimator.pt",
                "epochs": out / "epochs.csv",
                "summary": out / "s.json",
            },
            settings=settings,
            estimator="ensemble",
        )
        est = posterior.load(out / "estimator.pt", device="cpu", parameter_names=params)
    batch = SampleSettings(args.samples, args.seed).images_per_batch
    start = time.perf_counter()
    samples = est.sample_images(images, args.samples, args.seed, batch_size=batch, progress=True)
    wall = time.perf_counter() - start
    box = est.prior_box
    evaluation = EvaluationSettings(int(first["sbc_samples"]), (), int(first["seed"]))
    rows = {
        m: compute_metrics(
            open_samples(study / f"sample/{m}/samples.zarr", verify=False).samples[:n],
            theta,
            params,
            box.low,
            box.high,
            evaluation,
        )
        for m in names
    }
    rows["ensemble"] = compute_metrics(samples, theta, params, box.low, box.high, evaluation)
    print(f"{n} test images x {args.samples} samples (members: their study samples); ensemble {settings}")
    for key in ("r2", "coverage_68", "coverage_95"):
        print(f"\n| {key} | " + " | ".join(params) + " |\n|---|" + "---:|" * len(params))
        for name, m in rows.items():
            print(f"| {name} | " + " | ".join(f"{m['per_parameter'][p][key]:.3f}" for p in params) + " |")
    print("\n| estimator | TARP ATC | TARP KS p | min SBC KS p |\n|---|---:|---:|---:|")
    for name, m in rows.items():
        sbc = min(m["per_parameter"][p]["sbc_ks_pvalue"] for p in params)
        print(f"| {name} | {m['tarp']['atc']:+.4f} | {m['tarp']['ks_pvalue']:.3g} | {sbc:.3g} |")
    timed = images[: args.time_images]
    speeds = {}
    for name, sampler in [*((m.name, m) for m in est.members), ("ensemble", est)]:
        sampler.sample_images(
            timed[:1], 100, args.seed
        )  # warm-up: the first call's one-off costs are not timed
        best = float("inf")
        for _ in range(2):  # the best of two: a shared machine's pauses are not the estimator's
            start = time.perf_counter()
            sampler.sample_images(timed, args.samples, args.seed, batch_size=batch)
            best = min(best, time.perf_counter() - start)
        speeds[name] = len(timed) * args.samples / best
    harmonic = len(names) / sum(1 / speeds[m] for m in names)
    print(
        "\nsamples/s on "
        + f"{len(timed)} images: "
        + ", ".join(f"{k} {v:.0f}" for k, v in speeds.items())
        + f"; ensemble / members' harmonic mean = {speeds['ensemble'] / harmonic:.2f}"
        + f" (all {n} images: {n * args.samples / wall:.0f} samples/s, {wall:.0f} s)"
    )


if __name__ == "__main__":
    main()
