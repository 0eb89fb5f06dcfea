"""Training throughput: lenspipe's training against plain sbi, same networks, data and threads, in one run.

For each estimator of the config it times, on the same synthetic pairs (lenspipe.data.synthetic_lenses):
  lenspipe   what lenspipe.train.train() times as its fit: build the networks, then lenspipe's epoch loop
             (Trainer, a checkpoint every epoch); images standardised per band inside the net
  sbi        NPE(prior, density_estimator=builder).append_simulations(theta, x).train(...) with the same
             CNN and flow: sbi's defaults (per-pixel z-scoring of x), and with z_score_x='none' on
             images standardised beforehand (isolates what the per-pixel z-scoring costs)
  lenspipe d4  lenspipe's training with `training.augment: d4` (each pair rotated/reflected per batch)
and prints training pairs/s (training pairs x epochs / seconds), by wall clock and by the process's CPU
time, the ratios lenspipe / sbi (target >= 1) and d4 / plain lenspipe (what the augmentation costs: target
>= 0.95, issue 13). Variants run interleaved, `--repeats` times; the best of each is kept. On a shared machine
use --threads 1 and read the CPU-time row. `--no-sbi` times lenspipe with and without augmentation only.

Usage: .venv/bin/python benchmarks/train.py [--pairs 2000] [--epochs 2] [--threads 2] [--repeats 1]
       [--estimators maf nsf] [--config config/config.yaml] [--no-sbi]
"""

from __future__ import annotations

import argparse
import copy
import logging
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import yaml

from lenspipe import atomic
from lenspipe.data import load_training_data, synthetic_lenses
from lenspipe.embedding import EmbeddingSettings, LensCNN
from lenspipe.estimators import EstimatorSettings, flow_builder
from lenspipe.normalisation import Normalisation
from lenspipe.posterior import build_estimator
from lenspipe.priors import Cosmology, prior_box
from lenspipe.rule_params import training_params
from lenspipe.store import write_store
from lenspipe.train import TrainJob
from lenspipe.trainer import NullTracker, Trainer

REPO = Path(__file__).resolve().parent.parent


class Clock:
    """Wall and CPU seconds of a block (CPU time is robust on a shared machine: other jobs do not inflate it)."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def run_lenspipe(config: dict, name: str, store: Path, norm: Path, out: Path, augment: str = "none") -> dict:
    """lenspipe's training as train() runs it: build the networks, then the epoch loop with checkpoints."""
    config = copy.deepcopy(config)
    config["training"]["augment"] = augment
    job = TrainJob.from_params(training_params(config, name), name)
    stats = Normalisation.from_file(norm)
    data = load_training_data(
        store, job.parameter_names, job.bands, job.box, job.training.validation_fraction, job.validation_seed
    )
    with Clock() as clock:
        torch.manual_seed(job.train_seed)
        theta_ref, x_ref = data.reference()
        estimator = build_estimator(
            job.estimator, job.embedding, job.box, data.image_shape, stats.mean, stats.std, theta_ref, x_ref
        )
        result = Trainer(
            estimator,
            data,
            job.training,
            torch.device("cpu"),
            job.train_seed,
            checkpoint=out / "checkpoint.pt",
            fingerprint="benchmark",
            label=name,
        ).fit()
    assert result.epochs == config["training"]["max_epochs"]
    return {"wall": clock.wall, "cpu": clock.cpu, "n_train": data.n_train}


def run_sbi(
    config: dict, name: str, theta: torch.Tensor, images: torch.Tensor, z_score_x: str, seed: int
) -> dict:
    """Plain sbi NPE with the same CNN and flow; times its .train() (network building and epochs)."""
    from sbi.inference import NPE

    training, sim = config["training"], config["simulation"]
    box = prior_box(config["priors"], config["parameters"], Cosmology(**sim["cosmology"]))
    entry = {**config["estimators"][name], "z_score_x": z_score_x}
    settings = EstimatorSettings.from_config(name, entry)
    torch.manual_seed(seed)
    # The seed CNN as plain PyTorch code writes it (NCHW layout); lenspipe runs it channels-last.
    cnn = LensCNN(
        EmbeddingSettings.from_config(config["embedding"]), tuple(images.shape[1:]), channels_last=False
    )
    npe = NPE(
        prior=box.sbi_prior(),
        density_estimator=flow_builder(settings, cnn),
        tracker=NullTracker(),
        show_progress_bars=False,
    )
    npe.append_simulations(theta, images)
    with Clock() as clock, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "max_num_epochs reached" is the point here
        npe.train(
            training_batch_size=training["batch_size"],
            learning_rate=training["learning_rate"],
            validation_fraction=training["validation_fraction"],
            stop_after_epochs=10**6,
            max_num_epochs=training["max_epochs"] - 1,
        )  # sbi runs max_num_epochs + 1 epochs
    epochs = npe.summary["epochs_trained"][-1]
    assert epochs == training["max_epochs"], epochs
    n_train = int((1 - training["validation_fraction"]) * len(theta))
    return {"wall": clock.wall, "cpu": clock.cpu, "n_train": n_train}


def warm_up(config: dict, images: torch.Tensor) -> None:
    """Pay one-off costs before timing: torch's optimiser imports (torch._dynamo), oneDNN kernel set-up."""
    for channels_last in (False, True):
        cnn = LensCNN(
            EmbeddingSettings.from_config(config["embedding"]), tuple(images.shape[1:]), channels_last
        )
        for fused in (False, True):
            opt = torch.optim.Adam(cnn.parameters(), fused=fused)
            for _ in range(2):
                opt.zero_grad()
                cnn(images[:50]).sum().backward()
                opt.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--estimators", nargs="*", default=None)
    parser.add_argument("--no-sbi", action="store_true", help="time lenspipe with and without d4 only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)

    config = yaml.safe_load(Path(args.config).read_text())
    config = copy.deepcopy(config)
    config["training"].update(
        {"max_epochs": args.epochs, "stop_after_epochs": 10**6, "threads": args.threads}
    )
    sim = config["simulation"]
    box = prior_box(config["priors"], config["parameters"], Cosmology(**sim["cosmology"]))
    images, theta = synthetic_lenses(args.pairs, box, seed=1, bands=len(sim["bands"]), num_pix=sim["num_pix"])
    stats = Normalisation.from_images(images, sim["bands"]).as_dict()
    mean = np.asarray(stats["mean"], dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(stats["std"], dtype=np.float32).reshape(1, -1, 1, 1)
    theta_t, images_t = torch.from_numpy(theta), torch.from_numpy(images)
    standardised_t = torch.from_numpy((images - mean) / std)
    names = args.estimators or list(config["estimators"])
    warm_up(config, images_t)

    print(
        f"{args.pairs} synthetic pairs {images.shape[1:]} ({int(0.9 * args.pairs)} training), {args.epochs} epochs, "
        f"batch {config['training']['batch_size']}, {args.threads} torch threads, best of {args.repeats}"
    )
    print(
        "training pairs/s (training pairs x epochs / seconds), by wall clock and by CPU time of the process"
    )
    print(
        f"{'estimator':<16}{'clock':>6}{'lenspipe':>10}{'sbi':>10}{'sbi z_x=none':>14}{'ratio':>8}{'ratio none':>12}"
        f"{'lenspipe d4':>13}{'d4/plain':>10}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store, norm = root / "train.zarr", root / "normalisation.json"
        write_store(store, images, theta, config["parameters"], attrs={"bands": sim["bands"]})
        atomic.write_json(norm, stats)
        for name in names:
            best: dict[str, dict[str, float]] = {}
            for repeat in range(args.repeats):
                runs = {
                    "sbi": lambda n=name: run_sbi(config, n, theta_t, images_t, "independent", seed=0),
                    "lenspipe": lambda n=name, r=repeat: run_lenspipe(
                        config, n, store, norm, root / f"{n}_{r}"
                    ),
                    "sbi_none": lambda n=name: run_sbi(config, n, theta_t, standardised_t, "none", seed=0),
                    "lenspipe_d4": lambda n=name, r=repeat: run_lenspipe(
                        config, n, store, norm, root / f"{n}_{r}_d4", augment="d4"
                    ),
                }
                if args.no_sbi:
                    runs = {k: v for k, v in runs.items() if not k.startswith("sbi")}
                for key in list(runs) if repeat % 2 == 0 else list(reversed(runs)):
                    result = runs[key]()
                    for clock in ("wall", "cpu"):
                        rate = result["n_train"] * args.epochs / result[clock]
                        best.setdefault(key, {})[clock] = max(best.get(key, {}).get(clock, 0.0), rate)
            nan = {"wall": float("nan"), "cpu": float("nan")}
            for clock in ("wall", "cpu"):
                ours, d4 = best["lenspipe"][clock], best["lenspipe_d4"][clock]
                sbi, none = best.get("sbi", nan)[clock], best.get("sbi_none", nan)[clock]
                print(
                    f"{name if clock == 'wall' else '':<16}{clock:>6}{ours:>10.1f}{sbi:>10.1f}{none:>14.1f}"
                    f"{ours / sbi:>8.2f}{ours / none:>12.2f}{d4:>13.1f}{d4 / ours:>10.3f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
