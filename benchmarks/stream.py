"""Streaming against in-memory training data, in one run: training pairs/s and peak memory on a real training store.

Each variant runs in its own process (so its peak RSS is its own): open the store with lenspipe.data's loader
(`memory`, or `stream` under --budget-mb), build one estimator and run --epochs epochs of lenspipe's loop (Trainer,
validation included, no checkpoint). Printed per variant: seconds to open and check the store, training pairs/s
by wall clock and by CPU time (best of --repeats, variants interleaved), peak RSS; then stream / memory ratios
(target: pairs/s >= 0.95). --rewrite first copies the store into the split's current format (uncompressed chunks
of 256 images: lenspipe.store) in a temporary folder, so an older store measures what a new split would give.

Usage: .venv/bin/python benchmarks/stream.py [--store results/survey/split/train.zarr]
       [--normalisation .../normalisation.json] [--config config/survey.yaml] [--estimator maf] [--epochs 1]
       [--budget-mb 256] [--threads 2] [--repeats 2] [--rewrite]
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# the survey study's split (config/survey.yaml) in this checkout's results/
SURVEY = REPO / "results" / "survey" / "split"


def child(args: argparse.Namespace) -> None:
    """One variant in this process: prints its figures as one JSON line."""
    import torch
    import yaml

    from lenspipe.data import load_training_data
    from lenspipe.normalisation import Normalisation
    from lenspipe.posterior import build_estimator
    from lenspipe.rule_params import training_params
    from lenspipe.train import TrainJob
    from lenspipe.trainer import Trainer

    torch.set_num_threads(args.threads)
    config = copy.deepcopy(yaml.safe_load(Path(args.config).read_text()))
    config["training"].update({"max_epochs": args.epochs, "stop_after_epochs": 10**6, "loader": args.child})
    if args.child == "stream":
        config["training"]["memory_budget_mb"] = args.budget_mb
    job = TrainJob.from_params(training_params(config, args.estimator), args.estimator)
    stats = Normalisation.from_file(args.normalisation)
    t0 = time.perf_counter()
    data = load_training_data(
        args.store,
        job.parameter_names,
        job.bands,
        job.box,
        job.training.validation_fraction,
        job.validation_seed,
        job.training.loader,
        job.training.memory_budget_mb,
    )
    load_s = time.perf_counter() - t0
    torch.manual_seed(job.train_seed)
    theta_ref, x_ref = data.reference()
    estimator = build_estimator(
        job.estimator, job.embedding, job.box, data.image_shape, stats.mean, stats.std, theta_ref, x_ref
    )
    wall, cpu = time.perf_counter(), time.process_time()
    result = Trainer(estimator, data, job.training, torch.device("cpu"), job.train_seed).fit()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    pairs = data.n_train * result.epochs
    print(
        json.dumps(
            {
                "load_s": load_s,
                "wall": pairs / wall,
                "cpu": pairs / cpu,
                "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "n_train": data.n_train,
                "val_loss": result.rows[-1][2],
            }
        )
    )


def rewrite(store: Path, target: Path) -> Path:
    """The store copied chunk by chunk into lenspipe.store's current layout."""
    from lenspipe.store import open_store, write_store_blocks

    src = open_store(store)
    write_store_blocks(
        target,
        src.iter_images(),
        tuple(src.images.shape),
        src.theta,
        src.parameter_names,
        attrs={k: v for k, v in src.attrs.items() if k not in ("n", "checksums")},
    )
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=str(SURVEY / "train.zarr"))
    parser.add_argument("--normalisation", default=str(SURVEY / "normalisation.json"))
    parser.add_argument("--config", default=str(REPO / "config" / "survey.yaml"))
    parser.add_argument("--estimator", default="maf")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--budget-mb", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rewrite", action="store_true")
    parser.add_argument("--child", choices=["memory", "stream"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    try:
        store = rewrite(Path(args.store), tmp / "train.zarr") if args.rewrite else Path(args.store)
        best: dict[str, dict] = {}
        for repeat in range(args.repeats):
            variants = ["memory", "stream"] if repeat % 2 == 0 else ["stream", "memory"]
            for variant in variants:
                cmd = [sys.executable, __file__, "--child", variant, "--store", str(store)]
                for key in ("normalisation", "config", "estimator", "epochs", "budget_mb", "threads"):
                    cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                got = json.loads(out.strip().splitlines()[-1])
                old = best.setdefault(variant, got)
                for key in ("wall", "cpu"):
                    old[key] = max(old[key], got[key])
                for key in ("load_s", "rss_mb"):
                    old[key] = min(old[key], got[key])
        n_train = best["memory"]["n_train"]
        print(
            f"{store}: {n_train} training pairs, {args.estimator}, {args.epochs} epoch(s), {args.threads} threads, "
            f"stream budget {args.budget_mb} MB, best of {args.repeats}"
        )
        print(f"{'loader':<8}{'open s':>8}{'pairs/s wall':>14}{'pairs/s cpu':>13}{'peak RSS MB':>13}")
        for variant in ("memory", "stream"):
            b = best[variant]
            print(f"{variant:<8}{b['load_s']:>8.1f}{b['wall']:>14.1f}{b['cpu']:>13.1f}{b['rss_mb']:>13.0f}")
        m, s = best["memory"], best["stream"]
        print(
            f"{'ratio':<8}{s['load_s'] / m['load_s']:>8.2f}{s['wall'] / m['wall']:>14.3f}"
            f"{s['cpu'] / m['cpu']:>13.3f}{s['rss_mb'] / m['rss_mb']:>13.2f}   (stream / memory)"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
