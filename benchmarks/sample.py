"""Sampling throughput: lenspipe's batched sampling against a per-image posterior.sample loop, in one run.

Both use the same trained estimator, the same test images, threads and device:
  lenspipe   lenspipe.sample.sample_test_set (rule sample): images in batches, each embedded once, the
             flow run for many images at once, MADE layers (maf) inverted degree by degree
             (lenspipe.made_inverse); timed by its sampling seconds (Zarr writing reported apart)
  baseline   for each image, est.posterior.sample((num_samples,), x=image): sbi's DirectPosterior, as a
             script without lenspipe would sample
and prints posterior samples/s of each and the ratio lenspipe / baseline (target >= 3).

Without --estimator-file it first trains one quickly with lenspipe.train.train (the train rule's code) on
synthetic lenses (lenspipe.data.synthetic_lenses); the test images are synthetic lenses too (the sampling
cost does not depend on what the images show).

Usage: .venv/bin/python benchmarks/sample.py [--estimator-file results/paper/train/maf/estimator.pt]
       [--estimator maf] [--images 1000] [--samples 5000] [--baseline-images 1000] [--threads 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from lenspipe import posterior
from lenspipe.data import synthetic_lenses
from lenspipe.priors import Cosmology, prior_box
from lenspipe.sample import SampleSettings, sample_test_set
from lenspipe.split import normalisation
from lenspipe.store import open_store, write_store

REPO = Path(__file__).resolve().parent.parent


def train_small(
    config: dict, name: str, pairs: int, epochs: int, root: Path, threads: int, device: str
) -> Path:
    """Train estimator `name` of the config for `epochs` epochs on synthetic pairs; returns its estimator.pt."""
    from lenspipe import atomic
    from lenspipe.train import ExecutionSettings, TrainJob, TrainOutputs, train, training_params

    config = copy.deepcopy(config)
    config["training"].update({"max_epochs": epochs, "stop_after_epochs": 10**6})
    sim = config["simulation"]
    box = prior_box(config["priors"], config["parameters"], Cosmology(**sim["cosmology"]))
    images, theta = synthetic_lenses(pairs, box, seed=1, bands=len(sim["bands"]), num_pix=sim["num_pix"])
    write_store(root / "train.zarr", images, theta, config["parameters"], attrs={"bands": sim["bands"]})
    atomic.write_json(root / "normalisation.json", normalisation(images, sim["bands"]))
    job = TrainJob.from_params(training_params(config, name), name)
    outputs = TrainOutputs.in_dir(root / "train")
    train(
        job,
        root / "train.zarr",
        root / "normalisation.json",
        outputs,
        ExecutionSettings(device, "warn", threads),
    )
    return outputs.estimator


def test_store(est: posterior.TrainedEstimator, n: int, path: Path) -> Path:
    """A test store of `n` synthetic lenses shaped as the estimator expects."""
    bands, num_pix = est.image_shape[0], est.image_shape[1]
    images, theta = synthetic_lenses(n, est.prior_box, seed=2, bands=bands, num_pix=num_pix)
    write_store(path, images, theta, list(est.parameter_names), attrs={"bands": list(est.bands)})
    return path


def baseline(
    est: posterior.TrainedEstimator, images: np.ndarray, num_samples: int
) -> tuple[float, float, np.ndarray]:
    """Wall and CPU seconds of a per-image loop of sbi's posterior.sample, and the last image's samples."""
    wall, cpu = time.perf_counter(), time.process_time()
    for image in images:
        x = torch.from_numpy(image[None]).to(est.device)
        draws = est.posterior.sample((num_samples,), x=x, show_progress_bars=False)
    return time.perf_counter() - wall, time.process_time() - cpu, draws.cpu().numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    parser.add_argument(
        "--estimator-file", default=None, help="a trained estimator.pt (default: train one now)"
    )
    parser.add_argument("--estimator", default="maf", help="config entry to train when no file is given")
    parser.add_argument("--train-pairs", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument(
        "--baseline-images", type=int, default=None, help="images for the loop (default: all)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    config = yaml.safe_load(Path(args.config).read_text())

    with tempfile.TemporaryDirectory(prefix="lenspipe-bench-") as tmp:
        root = Path(tmp)
        path = Path(args.estimator_file) if args.estimator_file else None
        if path is None:
            start = time.perf_counter()
            path = train_small(
                config, args.estimator, args.train_pairs, args.epochs, root, args.threads, args.device
            )
            print(
                f"trained {args.estimator} on {args.train_pairs} synthetic pairs, {args.epochs} epochs "
                f"({time.perf_counter() - start:.0f} s)"
            )
        est = posterior.load(path, device=args.device)
        store = test_store(est, args.images, root / "test.zarr")
        images = open_store(store).load_images()
        n_base = min(args.baseline_images or args.images, args.images)
        # one-off costs (kernel set-up, sbi's lazy imports) paid before timing, for both
        est.sample_images(images[:2], 10, seed=0)
        baseline(est, images[:2], 10)

        cpu = time.process_time()
        timing = sample_test_set(
            path,
            store,
            root / "samples.zarr",
            root / "timing.json",
            SampleSettings(args.samples, seed=1, device=args.device, threads=args.threads),
            estimator=est.name,
        )
        cpu = time.process_time() - cpu
        base_wall, base_cpu, last = baseline(est, images[:n_base], args.samples)
        assert est.prior_box.contains(last).all()

    n_fast, n_slow = args.images * args.samples, n_base * args.samples
    print(
        json.dumps(
            {
                "estimator": est.name,
                "settings": est.settings,
                "device": str(est.device),
                "threads": args.threads,
            }
        )
    )
    print(f"{args.images} images x {args.samples} samples; baseline loop over {n_base} images")
    print("posterior samples/s by wall clock, and by CPU time of the process (robust on a shared machine)")
    print(f"{'method':<36}{'wall s':>9}{'samples/s':>12}{'CPU s':>9}{'samples/CPU s':>15}")
    print(
        f"{'lenspipe sample_images (batched)':<36}{timing['sampling_s']:>9.1f}{n_fast / timing['sampling_s']:>12.0f}"
    )
    print(
        f"{'  with store reading, Zarr writing':<36}{timing['wall_time_s']:>9.1f}"
        f"{n_fast / timing['wall_time_s']:>12.0f}{cpu:>9.1f}{n_fast / cpu:>15.0f}"
    )
    print(
        f"{'per-image posterior.sample loop':<36}{base_wall:>9.1f}{n_slow / base_wall:>12.0f}{base_cpu:>9.1f}"
        f"{n_slow / base_cpu:>15.0f}"
    )
    print(
        f"ratio lenspipe / per-image loop: {(n_fast / timing['sampling_s']) / (n_slow / base_wall):.2f}x by wall clock "
        f"(sampling only), {(n_fast / cpu) / (n_slow / base_cpu):.2f}x by CPU time (I/O included); target >= 3"
    )


if __name__ == "__main__":
    main()
