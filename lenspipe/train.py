"""Stage train: one estimator's training job, end to end: settings from the config slice, the training data,
the networks, the epoch loop (lenspipe.trainer, with its per-epoch checkpoint), then the estimator file,
the epochs table, the summary and the provenance.

A killed job re-run with the same settings and data continues from its checkpoint.

Command line (what the resume test runs): python -m lenspipe.train --config C --estimator E
--train-store S --normalisation N --outdir D [--threads T]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lenspipe import atomic
from lenspipe.data import load_training_data
from lenspipe.device import choose_device, describe, set_threads
from lenspipe.embedding import EmbeddingSettings, count_parameters
from lenspipe.errors import DataError, LenspipeError
from lenspipe.estimators import EstimatorSettings
from lenspipe.normalisation import Normalisation
from lenspipe.posterior import build_estimator, estimator_record, save
from lenspipe.priors import Cosmology, PriorBox, prior_box
from lenspipe.provenance import plain
from lenspipe.rule_params import training_params
from lenspipe.seeds import train_seed, validation_seed
from lenspipe.trainer import Trainer, TrainingSettings

log = logging.getLogger(__name__)

EPOCHS_HEADER = ("epoch", "train_loss", "val_loss", "seconds")
EXTRA_HEADER = ("learning_rate", "val_loss_smoothed")  # with a schedule or a smoothed validation loss


# --------------------------------------------------------------------------------------------------
# Settings.


@dataclass(frozen=True)
class ExecutionSettings:
    """Where and how fast to train; changing these never changes what is trained."""

    device: str = "auto"
    gpu_fallback: str = "warn"
    threads: int = 1

    @classmethod
    def from_config(cls, training: Mapping[str, Any], threads: int | None = None) -> ExecutionSettings:
        """From the validated `training` section (or the train rule's `execution` params) and the job's threads."""
        return cls(
            str(training.get("device", "auto")),
            str(training.get("gpu_fallback", "warn")),
            int(threads if threads is not None else training.get("threads", 1)),
        )


@dataclass(frozen=True)
class TrainJob:
    """Everything that defines one estimator's training (built from `training_params`)."""

    estimator: EstimatorSettings
    embedding: EmbeddingSettings
    training: TrainingSettings
    parameter_names: tuple[str, ...]
    box: PriorBox
    bands: tuple[str, ...]
    num_pix: int
    seed: int
    params: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_params(cls, params: Mapping[str, Any], estimator: str) -> TrainJob:
        params = json.loads(json.dumps(plain(params)))  # Snakemake's Namedlists to plain data
        cosmology = Cosmology(**params["cosmology"])
        names = tuple(params["parameters"])
        return cls(
            estimator=EstimatorSettings.from_config(estimator, params["estimator"]),
            embedding=EmbeddingSettings.from_config(params["embedding"]),
            training=TrainingSettings.from_config(params["training"]),
            parameter_names=names,
            box=prior_box(params["priors"], list(names), cosmology),
            bands=tuple(params["bands"]),
            num_pix=int(params["num_pix"]),
            seed=int(params["seed"]),
            params=params,
        )

    @property
    def name(self) -> str:
        return self.estimator.name

    @property
    def derived(self) -> tuple[str, ...]:
        """Parameters computed from the others per sample instead of inferred (training.theta_E: derived)."""
        return ("theta_E",) if self.training.theta_E == "derived" else ()

    @property
    def flow_parameter_names(self) -> tuple[str, ...]:
        """The parameters the flow models: the config's, less the derived ones."""
        return tuple(n for n in self.parameter_names if n not in self.derived)

    @property
    def flow_box(self) -> PriorBox:
        """The prior box of the flow's parameters."""
        return self.box.select(self.flow_parameter_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (len(self.bands), self.num_pix, self.num_pix)

    @property
    def train_seed(self) -> int:
        """Network initialisation and batch order: one stream per estimator."""
        return train_seed(self.seed, self.name)

    @property
    def validation_seed(self) -> int:
        """The validation split, shared by all estimators so their validation losses compare."""
        return validation_seed(self.seed)


@dataclass(frozen=True)
class TrainOutputs:
    """The files of one training job (all in one folder); the checkpoint lives there while training."""

    estimator: Path
    epochs: Path
    summary: Path
    provenance: Path | None = None

    @classmethod
    def in_dir(cls, folder: str | os.PathLike[str]) -> TrainOutputs:
        folder = Path(folder)
        return cls(
            folder / "estimator.pt",
            folder / "epochs.csv",
            folder / "summary.json",
            folder / "provenance.json",
        )

    @classmethod
    def from_mapping(cls, outputs: Mapping[str, Any]) -> TrainOutputs:
        return cls(**{k: Path(v) for k, v in outputs.items() if k in cls.__dataclass_fields__})

    @property
    def checkpoint(self) -> Path:
        return self.estimator.with_name("checkpoint.pt")


# --------------------------------------------------------------------------------------------------
# One training job, end to end.


def train(
    *,
    store: str | os.PathLike[str],
    normalisation: str | os.PathLike[str],
    outputs: Mapping[str, Any],
    settings: Mapping[str, Any],
    execution: Mapping[str, Any],
    estimator: str,
    threads: int | None = None,
) -> dict[str, Any]:
    """Rule train: estimator `estimator` from the training store into its named `outputs`; returns the summary.

    `settings` is the config slice the estimator depends on (rule_params.training_params), `execution` where it runs.
    """
    return train_job(
        TrainJob.from_params(settings, estimator),
        store,
        normalisation,
        TrainOutputs.from_mapping(outputs),
        ExecutionSettings.from_config(execution, threads),
    )


def train_job(
    job: TrainJob,
    train_store: str | os.PathLike[str],
    normalisation: str | os.PathLike[str],
    outputs: TrainOutputs,
    execution: ExecutionSettings | None = None,
) -> dict[str, Any]:
    """Train `job` on the split's training store and write its outputs; returns the summary."""
    execution = execution or ExecutionSettings()
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    set_threads(execution.threads)
    device_choice = choose_device(execution.device, execution.gpu_fallback)
    device = device_choice.device
    norm = Normalisation.from_file(normalisation)
    if list(norm.bands) != list(job.bands):
        raise DataError(
            normalisation, f"statistics for bands {list(norm.bands)}, the config asks for {list(job.bands)}"
        )
    data = load_training_data(
        train_store,
        job.parameter_names,
        job.bands,
        job.box,
        job.training.validation_fraction,
        job.validation_seed,
        job.training.loader,
        job.training.memory_budget_mb,
    )
    if data.image_shape != job.image_shape:
        raise DataError(
            train_store,
            f"images are {data.image_shape}, the config asks for {job.image_shape} (bands, num_pix, num_pix)",
        )
    if job.derived:
        data = data.select_parameters(job.flow_parameter_names)
        log.info(
            "%s: %s derived per sample, the flow infers %s",
            job.name,
            ", ".join(job.derived),
            data.parameter_names,
        )
    log.info(
        "%s: %d training and %d validation pairs, images %s, flow %s",
        job.name,
        data.n_train,
        data.n_validation,
        "x".join(map(str, data.image_shape)),
        job.estimator.flow,
    )

    fit_start = time.perf_counter()
    torch.manual_seed(job.train_seed)
    theta_ref, x_ref = data.reference()
    estimator = build_estimator(
        job.estimator, job.embedding, job.flow_box, data.image_shape, norm.mean, norm.std, theta_ref, x_ref
    )
    n_weights = count_parameters(estimator)
    log.info(
        "%s: %d trainable parameters (embedding %d)",
        job.name,
        n_weights,
        count_parameters(estimator.embedding_net),
    )
    trainer = Trainer(
        estimator,
        data,
        job.training,
        device,
        job.train_seed,
        outputs.checkpoint,
        fingerprint(job, train_store, norm),
        label=job.name,
    )
    result = trainer.fit()
    fit_s = time.perf_counter() - fit_start

    epoch_seconds = sum(r[3] for r in result.rows)
    summary = {
        "estimator": job.name,
        "flow": job.estimator.flow,
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "stopped": result.stopped,
        "resumed_from_epoch": result.resumed_from,
        "wall_time_s": round(result.previous_s + time.perf_counter() - wall_start, 3),
        # CPU seconds of every thread, earlier (killed) attempts included: the cost on a shared machine, where
        # wall time also counts the other jobs; null when resumed from a checkpoint that did not record it
        "cpu_time_s": None
        if result.previous_cpu_s is None
        else round(result.previous_cpu_s + time.process_time() - cpu_start, 3),
        "fit_time_s": round(
            fit_s, 3
        ),  # this session: build the networks and run the epochs (as sbi's .train())
        "device": describe(device),
        "device_warning": device_choice.warning,
        "train_pairs_per_s": round(data.n_train * result.epochs / epoch_seconds, 2)
        if epoch_seconds > 0
        else None,
        "n_train": data.n_train,
        "n_validation": data.n_validation,
        "n_weights": n_weights,
        "seed": job.train_seed,
    }
    if not job.training.plain:
        summary["final_learning_rate"] = result.extras[-1][0] if result.extras else None
    if job.derived:
        summary["derived"] = list(job.derived)
    record = estimator_record(
        estimator,
        job.estimator,
        job.embedding,
        job.parameter_names,
        job.box,
        norm.as_dict(),
        data.image_shape,
        {k: summary[k] for k in ("epochs", "best_epoch", "best_val_loss", "stopped", "seed")},
    )
    if job.derived:
        record["derived"] = {name: {"cosmology": dict(job.params["cosmology"])} for name in job.derived}
    record.update(inference_record(estimator, data, train_store))
    save(outputs.estimator, record)
    write_epochs(outputs.epochs, result.rows, None if job.training.plain else result.extras)
    if outputs.provenance is not None:
        from lenspipe import provenance

        provenance.write(
            outputs.provenance,
            job.params,
            {"train": job.train_seed, "validation": job.validation_seed},
            rule="train",
        )
    atomic.write_json(outputs.summary, summary)
    outputs.checkpoint.unlink(missing_ok=True)  # finished: nothing to resume
    log.info("%s: wrote %s", job.name, outputs.estimator)
    return summary


def inference_record(estimator: Any, data: Any, train_store: str | os.PathLike[str]) -> dict:
    """What inference on observed images needs (lenspipe.infer): the training images' observing conditions
    (survey, bands, pixel scale, noise, zero points, exposures) and the OOD reference of their embeddings
    (lenspipe.ood), fitted on the training pairs, thresholded on validation."""
    from lenspipe.flux import OBSERVING_KEY
    from lenspipe.ood import OODReference, embed_batches
    from lenspipe.store import open_store

    attrs = open_store(train_store, verify=False).attrs
    keys = ("survey", "bands", "pixel_scale", "sky_noise", "zero_points", "exposures")
    observing = {k: attrs[k] for k in keys if k in attrs}
    observing["num_pix"] = int(data.image_shape[-1])
    train = embed_batches(estimator, data.image_batches("train"))
    ood = OODReference.fit(train, embed_batches(estimator, data.image_batches("validation")))
    return {OBSERVING_KEY: observing, "ood": ood.as_dict()}


def fingerprint(job: TrainJob, train_store: str | os.PathLike[str], norm: Normalisation) -> str:
    """Identity of a training run (settings, seeds, data checksums): a checkpoint resumes only its own run."""
    from lenspipe.store import open_store

    checksums = open_store(train_store, verify=False).attrs.get("checksums", {})
    text = json.dumps(
        {
            "params": plain(job.params),
            "estimator": job.name,
            "data": checksums,
            "normalisation": norm.as_dict(),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------------------------------
# Outputs.


def write_epochs(
    path: str | os.PathLike[str],
    rows: Sequence[Sequence[float]],
    extras: Sequence[Sequence[float]] | None = None,
) -> None:
    """epochs.csv: epoch, train_loss, val_loss, seconds; with `extras` (a schedule or smoothing) also each
    epoch's learning_rate and val_loss_smoothed."""
    if extras is None:
        lines = [",".join(EPOCHS_HEADER)]
        lines += [f"{int(e)},{t:.8g},{v:.8g},{s:.3f}" for e, t, v, s in rows]
    else:
        lines = [",".join((*EPOCHS_HEADER, *EXTRA_HEADER))]
        lines += [
            f"{int(e)},{t:.8g},{v:.8g},{s:.3f},{lr:.8g},{sm:.8g}"
            for (e, t, v, s), (lr, sm) in zip(rows, extras, strict=True)
        ]
    atomic.write_text(path, "\n".join(lines) + "\n")


# --------------------------------------------------------------------------------------------------
# Command line.


def main(argv: Sequence[str] | None = None) -> int:
    """Train one estimator of a config file outside Snakemake (used by the resume test)."""
    from lenspipe.config import check_config, load_config

    parser = argparse.ArgumentParser(prog="python -m lenspipe.train", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--estimator", required=True)
    parser.add_argument("--train-store", required=True)
    parser.add_argument("--normalisation", required=True)
    parser.add_argument("--outdir", required=True)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True
    )
    try:
        config = load_config(args.config)
        check_config(config)
        job = TrainJob.from_params(training_params(config, args.estimator), args.estimator)
        train_job(
            job,
            args.train_store,
            args.normalisation,
            TrainOutputs.in_dir(args.outdir),
            ExecutionSettings.from_config(config["training"], args.threads),
        )
    except LenspipeError as exc:
        print(f"lenspipe: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
