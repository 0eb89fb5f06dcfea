"""Does training converge? lenspipe's training against sbi's own NPE.train on one study's split stores, several seeds.

Issue 13's point 0: on the paper study MAF sometimes stops on the ellipticity-sign plateau (R^2 of e1 or e2 ~ 0)
and lenspipe's theta_E intervals were too wide where sbi's were not. This script trains one estimator of a config
`--seeds` times with each runner, each to its own early stopping, on the study's split stores:

  lenspipe   lenspipe.train.train_job, as the train rule runs it (the config's training section, bounded flow in
             the logit-mapped prior box, images standardised per band inside the net); seed k trains the
             estimator under the name <estimator>_seed<k>, so only the initialisation and batch order differ
  sbi        sbi's NPE(prior=BoxUniform(box), density_estimator=the same CNN + flow builder).train(...) with the
             same batch size, rate, validation fraction and patience; x the per-band standardised images,
             sbi's default z-scoring; torch.manual_seed(k) before building

and prints, per run: epochs (best), its own best validation loss (each in its runner's parameter space: not
comparable), the mean test log-density of the true parameters in physical units (comparable: lenspipe's bounded
flow has no leakage; sbi's density is its flow's, unnormalised for leakage outside the box), R^2 of the posterior
means per parameter, the 68% coverage per parameter, whether both ellipticity signs were learned (R^2 of e1 and
e2 > 0.5), and the training time. Rows are appended to OUT/runs.csv as they finish, and a run already there is
not run again (a long comparison survives a killed session).

Usage: .venv/bin/python benchmarks/convergence.py --split results/paper/split --config config/config.yaml \
       --estimator maf [--seeds 3] [--runners lenspipe sbi] [--test-images 1000] [--samples 500] \
       [--threads 2] --out results/paper/convergence_maf
"""

from __future__ import annotations

import argparse
import copy
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from lenspipe.config import check_config
from lenspipe.embedding import EmbeddingSettings, LensCNN
from lenspipe.estimators import EstimatorSettings, flow_builder
from lenspipe.normalisation import Normalisation
from lenspipe.priors import Cosmology, prior_box
from lenspipe.rule_params import training_params
from lenspipe.store import open_store
from lenspipe.train import ExecutionSettings, TrainJob, TrainOutputs, train_job
from lenspipe.trainer import NullTracker

SIGN_LEARNED_R2 = 0.5


def r2_and_coverage(samples: np.ndarray, truth: np.ndarray, names: list[str]) -> dict[str, float]:
    """R^2 of the posterior means and coverage of the central 68% interval, per parameter."""
    mean = samples.mean(axis=1)
    low, high = np.quantile(samples, [0.16, 0.84], axis=1)
    out: dict[str, float] = {}
    for j, name in enumerate(names):
        resid = ((truth[:, j] - mean[:, j]) ** 2).sum()
        total = ((truth[:, j] - truth[:, j].mean()) ** 2).sum()
        out[f"r2_{name}"] = float(1.0 - resid / total)
        out[f"cov68_{name}"] = float(np.mean((truth[:, j] >= low[:, j]) & (truth[:, j] <= high[:, j])))
    return out


def standardised(images: np.ndarray, norm: Normalisation) -> np.ndarray:
    """Images standardised per band with the split's statistics (what lenspipe's net does inside)."""
    mean = np.asarray(norm.mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(norm.std, dtype=np.float32).reshape(1, -1, 1, 1)
    return ((images - mean) / std).astype(np.float32)


def run_lenspipe(config: dict, estimator: str, seed: int, split: Path, out: Path, test: tuple) -> dict:
    """One lenspipe training (a renamed copy of the estimator: another initialisation), then its test metrics."""
    from lenspipe import posterior

    name = f"{estimator}_seed{seed}"
    config = copy.deepcopy(config)
    config["estimators"] = {name: config["estimators"][estimator]}
    job = TrainJob.from_params(training_params(config, name), name)
    folder = out / "lenspipe" / name
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    summary = train_job(
        job,
        split / "train.zarr",
        split / "normalisation.json",
        TrainOutputs.in_dir(folder),
        ExecutionSettings.from_config(config["training"]),
    )
    seconds = time.perf_counter() - start
    est = posterior.load(folder / "estimator.pt", device="cpu")
    images, theta, names, num_samples = test
    samples = est.sample_images(images, num_samples=num_samples, seed=seed)
    log_prob = est.log_prob_images(images, theta)
    return {
        "epochs": summary["epochs"],
        "best_epoch": summary["best_epoch"],
        "best_val_loss": summary["best_val_loss"],
        "test_log_prob": float(np.mean(log_prob)),
        "train_s": round(seconds, 1),
        **r2_and_coverage(samples, theta, names),
    }


def run_sbi(config: dict, estimator: str, seed: int, split: Path, test: tuple) -> dict:
    """sbi's own NPE.train with the same CNN and flow on per-band standardised images, then its test metrics."""
    from sbi.inference import NPE

    training, sim = config["training"], config["simulation"]
    box = prior_box(config["priors"], config["parameters"], Cosmology(**sim["cosmology"]))
    norm = Normalisation.from_file(split / "normalisation.json")
    store = open_store(split / "train.zarr", verify=True)
    x = torch.from_numpy(standardised(store.load_images(), norm))
    theta = torch.from_numpy(np.asarray(store.theta, dtype=np.float32))
    settings = EstimatorSettings.from_config(estimator, config["estimators"][estimator])
    torch.manual_seed(seed)
    cnn = LensCNN(EmbeddingSettings.from_config(config["embedding"]), tuple(x.shape[1:]), channels_last=False)
    npe = NPE(
        prior=box.sbi_prior(),
        density_estimator=flow_builder(settings, cnn),
        tracker=NullTracker(),
        show_progress_bars=False,
    )
    npe.append_simulations(theta, x)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = npe.train(
            training_batch_size=training["batch_size"],
            learning_rate=training["learning_rate"],
            validation_fraction=training["validation_fraction"],
            stop_after_epochs=training["stop_after_epochs"],
            max_num_epochs=training["max_epochs"] - 1,  # sbi runs max_num_epochs + 1 epochs
        )
    seconds = time.perf_counter() - start
    post = npe.build_posterior(net)
    images, truth, names, num_samples = test
    xs = torch.from_numpy(standardised(images, norm))
    with torch.no_grad():
        samples = (
            post.sample_batched((num_samples,), x=xs, show_progress_bars=False).permute(1, 0, 2).cpu().numpy()
        )
        log_prob = post.log_prob_batched(torch.from_numpy(truth)[None], x=xs, norm_posterior=False).numpy()
    best = int(np.argmin(npe.summary["validation_loss"])) + 1
    return {
        "epochs": int(npe.summary["epochs_trained"][-1]),
        "best_epoch": best,
        "best_val_loss": float(npe.summary["best_validation_loss"][-1]),
        "test_log_prob": float(np.mean(log_prob)),
        "train_s": round(seconds, 1),
        **r2_and_coverage(samples, truth, names),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--split", required=True, help="the study's split folder (train.zarr, test.zarr, ...)"
    )
    parser.add_argument("--config", required=True)
    parser.add_argument("--estimator", required=True)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--runners", nargs="+", default=["lenspipe", "sbi"], choices=["lenspipe", "sbi"])
    parser.add_argument("--test-images", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)

    config = yaml.safe_load(Path(args.config).read_text())
    check_config(config)
    if args.estimator not in config["estimators"]:
        parser.error(
            f"--estimator {args.estimator}: not in the config's estimators {list(config['estimators'])}"
        )
    config["training"]["threads"] = args.threads
    split, out = Path(args.split), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    test_store = open_store(split / "test.zarr", verify=True)
    n = min(args.test_images, len(test_store))
    names = list(config["parameters"])
    test = (
        test_store.load_images(slice(0, n)),
        np.asarray(test_store.theta[:n], dtype=np.float32),
        names,
        args.samples,
    )

    csv = out / "runs.csv"
    done = pd.read_csv(csv) if csv.exists() else pd.DataFrame(columns=["runner", "seed"])
    for seed in range(args.seeds):
        for runner in args.runners:
            if ((done["runner"] == runner) & (done["seed"] == seed)).any():
                continue
            if runner == "lenspipe":
                row = run_lenspipe(config, args.estimator, seed, split, out, test)
            else:
                row = run_sbi(config, args.estimator, seed, split, test)
            row = {"runner": runner, "seed": seed, **row}
            row["signs_learned"] = bool(
                row.get("r2_e1", 1.0) > SIGN_LEARNED_R2 and row.get("r2_e2", 1.0) > SIGN_LEARNED_R2
            )
            done = pd.concat([done, pd.DataFrame([row])], ignore_index=True)
            tmp = csv.with_suffix(".csv.tmp")
            done.to_csv(tmp, index=False, float_format="%.4g")
            tmp.replace(csv)
            print(pd.DataFrame([row]).to_string(index=False), flush=True)
    print(f"\n{args.estimator} on {split} ({n} test images, {args.samples} samples each):")
    print(done.to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
