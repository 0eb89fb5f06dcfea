"""Training one estimator: sbi's NPE objective, Adam, early stopping, a checkpoint after every epoch.

The epoch loop is ours: it minimises exactly what sbi's `NPE.train` minimises in its single (amortised)
round, the estimator's `loss` (negative log posterior density; tests check it equals NPE's loss), with
sbi's defaults (Adam, gradient norm clipped at 5, stop after `stop_after_epochs` epochs without a better
validation loss, keep the best weights). sbi 0.27's `train` has no per-epoch hook, and calling it one
epoch at a time (`resume_training=True`) reloads the best weights at the end of every call and miscounts
epochs without improvement, so it cannot checkpoint a normal run. `max_epochs` is exactly the number of
epochs run at most. A killed job re-run with the same settings and data continues from its checkpoint.

Command line (what the resume test runs): python -m lenspipe.train --config C --estimator E
--train-store S --normalisation N --outdir D [--threads T]
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lenspipe import atomic
from lenspipe.data import Normalisation, TrainingData, load_training_data
from lenspipe.device import choose_device, describe, set_threads
from lenspipe.embedding import EmbeddingSettings, count_parameters
from lenspipe.errors import ConfigError, DataError, LenspipeError
from lenspipe.estimators import BoundedEstimator, EstimatorSettings
from lenspipe.posterior import build_estimator, estimator_record, save
from lenspipe.priors import Cosmology, PriorBox, prior_box
from lenspipe.provenance import plain
from lenspipe.seeds import train_seed, validation_seed
from lenspipe.train_config import training_params

log = logging.getLogger(__name__)
logging.getLogger("fontTools").setLevel(logging.WARNING)  # matplotlib's font subsetting chatters at INFO

CHECKPOINT_FORMAT = "lenspipe.checkpoint/1"
EPOCHS_HEADER = ("epoch", "train_loss", "val_loss", "seconds")


# --------------------------------------------------------------------------------------------------
# Settings.


@dataclass(frozen=True)
class TrainingSettings:
    """The optimisation: the config's `training` section without the execution keys."""

    learning_rate: float = 5e-4
    batch_size: int = 50
    validation_fraction: float = 0.1
    stop_after_epochs: int = 20
    max_epochs: int = 1000
    clip_max_norm: float | None = 5.0  # sbi's default

    @classmethod
    def from_config(cls, training: Mapping[str, Any]) -> TrainingSettings:
        """Validate the slice; errors name `training.<key>`."""
        settings = cls(
            learning_rate=float(training.get("learning_rate", cls.learning_rate)),
            batch_size=int(training.get("batch_size", cls.batch_size)),
            validation_fraction=float(training.get("validation_fraction", cls.validation_fraction)),
            stop_after_epochs=int(training.get("stop_after_epochs", cls.stop_after_epochs)),
            max_epochs=int(training.get("max_epochs", cls.max_epochs)),
            clip_max_norm=training.get("clip_max_norm", cls.clip_max_norm),
        )
        checks = (
            ("learning_rate", settings.learning_rate >= 0, "a learning rate >= 0"),
            ("batch_size", settings.batch_size >= 1, "a positive integer"),
            ("validation_fraction", 0 < settings.validation_fraction < 1, "a fraction in (0, 1)"),
            ("stop_after_epochs", settings.stop_after_epochs >= 1, "a positive integer"),
            ("max_epochs", settings.max_epochs >= 1, "a positive integer"),
        )
        for key, ok, expected in checks:
            if not ok:
                raise ConfigError(f"training.{key}", expected, training.get(key))
        return settings


@dataclass(frozen=True)
class ExecutionSettings:
    """Where and how fast to train; changing these never changes what is trained."""

    device: str = "auto"
    gpu_fallback: str = "warn"
    threads: int = 1

    @classmethod
    def from_config(cls, training: Mapping[str, Any], threads: int | None = None) -> ExecutionSettings:
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
    loss_pdf: Path
    loss_png: Path
    provenance: Path | None = None

    @classmethod
    def in_dir(cls, folder: str | os.PathLike[str]) -> TrainOutputs:
        folder = Path(folder)
        return cls(
            folder / "estimator.pt",
            folder / "epochs.csv",
            folder / "summary.json",
            folder / "loss.pdf",
            folder / "loss.png",
            folder / "provenance.json",
        )

    @classmethod
    def from_mapping(cls, outputs: Mapping[str, Any]) -> TrainOutputs:
        return cls(**{k: Path(v) for k, v in outputs.items() if k in cls.__dataclass_fields__})

    @property
    def checkpoint(self) -> Path:
        return self.estimator.with_name("checkpoint.pt")


class NullTracker:
    """An sbi Tracker that records nothing: sbi's default writes TensorBoard logs into the working directory."""

    log_dir = None

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def add_figure(self, name: str, figure: Any, step: int | None = None) -> None:
        pass

    def flush(self) -> None:
        pass


# --------------------------------------------------------------------------------------------------
# The epoch loop.


@dataclass
class FitResult:
    """What the loop did: the epochs table and the best epoch (whose weights the estimator now holds)."""

    rows: list[list[float]]
    best_epoch: int
    best_val_loss: float
    stopped: str
    resumed_from: int | None
    previous_s: float  # training time of earlier (killed) sessions

    @property
    def epochs(self) -> int:
        return len(self.rows)


class Trainer:
    """Trains an sbi density estimator on TrainingData epoch by epoch, checkpointing after each epoch."""

    def __init__(
        self,
        estimator: BoundedEstimator,
        data: TrainingData,
        settings: TrainingSettings,
        device: torch.device,
        seed: int,
        checkpoint: Path | None = None,
        fingerprint: str = "",
        label: str = "",
    ) -> None:
        self.estimator = estimator.to(device)
        self.data = data.to(device)
        self.settings = settings
        self.device = device
        self.seed = seed
        self.checkpoint = checkpoint
        self.fingerprint = fingerprint
        self.label = label
        self.optimizer = adam(self.estimator.parameters(), settings.learning_rate)
        self.generator = torch.Generator().manual_seed(seed)

    def fit(self) -> FitResult:
        """Run epochs until early stopping or max_epochs; leaves the best weights in the estimator."""
        s = self.settings
        start = time.perf_counter()
        if self.checkpoint is not None:  # temporary files of a killed save
            for stale in self.checkpoint.parent.glob(f".{self.checkpoint.name}.tmp-*"):
                stale.unlink(missing_ok=True)
        state = self._load_checkpoint()
        rows: list[list[float]] = []
        best_val, best_epoch, since, best_state, before = math.inf, 0, 0, None, 0.0
        resumed_from = None
        if state is not None:
            rows, best_val, best_epoch, since, before = (
                state["rows"],
                state["best_val_loss"],
                state["best_epoch"],
                state["since_improvement"],
                state["elapsed_s"],
            )
            best_state = (
                state["best_state"] if state["best_state"] is not None else copy.deepcopy(state["model"])
            )
            resumed_from = len(rows)
            log.info(
                "%sresuming from the checkpoint after epoch %d (best %.4f at epoch %d)",
                self._prefix(),
                resumed_from,
                best_val,
                best_epoch,
            )
        epoch = len(rows)
        while epoch < s.max_epochs and since < s.stop_after_epochs:
            t0 = time.perf_counter()
            train_loss = self._train_epoch()
            val_loss = self._validate()
            epoch += 1
            if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
                raise LenspipeError(
                    f"training {self.label}: non-finite loss at epoch {epoch} (train {train_loss}, "
                    f"validation {val_loss}); the last checkpoint is epoch {epoch - 1}"
                )
            if val_loss < best_val:
                best_val, best_epoch, since = val_loss, epoch, 0
                best_state = _cpu_copy(self.estimator.state_dict())
            else:
                since += 1
            rows.append([epoch, train_loss, val_loss, time.perf_counter() - t0])
            self._save_checkpoint(
                rows, best_val, best_epoch, since, best_state, before + time.perf_counter() - start
            )
            log.info(
                "%sepoch %d/%d: train_loss %.4f val_loss %.4f (best %.4f at epoch %d) %.1f s, elapsed %.1f s",
                self._prefix(),
                epoch,
                s.max_epochs,
                train_loss,
                val_loss,
                best_val,
                best_epoch,
                rows[-1][3],
                before + time.perf_counter() - start,
            )
        if best_state is not None:
            self.estimator.load_state_dict(best_state)
        stopped = "early_stopping" if since >= s.stop_after_epochs else "max_epochs"
        log.info(
            "%sstopped after %d epochs (%s); best validation loss %.4f at epoch %d",
            self._prefix(),
            epoch,
            stopped.replace("_", " "),
            best_val,
            best_epoch,
        )
        return FitResult(rows, best_epoch, best_val, stopped, resumed_from, before)

    def _train_epoch(self) -> float:
        """One pass over shuffled training batches; returns the mean loss (loss summed on the device)."""
        s, est = self.settings, self.estimator
        est.train()
        total = torch.zeros((), device=self.device, dtype=torch.float64)
        count = 0
        params = [p for p in est.parameters() if p.requires_grad]
        for theta, x in self.data.train_batches(s.batch_size, self.generator):
            self.optimizer.zero_grad(set_to_none=True)
            losses = est.loss(theta, x)
            losses.mean().backward()
            if s.clip_max_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, max_norm=s.clip_max_norm)
            self.optimizer.step()
            total += losses.detach().sum()
            count += losses.shape[0]
        return float(total) / max(count, 1)

    def _validate(self) -> float:
        """Mean loss over every validation pair."""
        est = self.estimator
        est.eval()
        total = torch.zeros((), device=self.device, dtype=torch.float64)
        with torch.no_grad():
            for theta, x in self.data.validation_batches(max(self.settings.batch_size, 256)):
                total += est.loss(theta, x).sum()
        return float(total) / self.data.n_validation

    def _prefix(self) -> str:
        return f"{self.label}: " if self.label else ""

    def _save_checkpoint(
        self,
        rows: list[list[float]],
        best_val: float,
        best_epoch: int,
        since: int,
        best_state: dict | None,
        elapsed: float,
    ) -> None:
        if self.checkpoint is None:
            return
        is_current = best_epoch == len(rows)
        state = {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": self.fingerprint,
            "rows": [list(r) for r in rows],
            "model": self.estimator.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "best_val_loss": best_val,
            "best_epoch": best_epoch,
            "since_improvement": since,
            "best_state": None if is_current else best_state,  # None: the best weights are the model's
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            "elapsed_s": elapsed,
        }
        with atomic.atomic_path(self.checkpoint) as tmp:
            torch.save(state, tmp)

    def _load_checkpoint(self) -> dict | None:
        """The checkpoint's state if it was made by this very job (same settings and data), else None."""
        path = self.checkpoint
        if path is None or not path.is_file():
            return None
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
            if state.get("format") != CHECKPOINT_FORMAT:
                raise ValueError("unknown format")
        except Exception as exc:
            log.warning(
                "%signoring unreadable checkpoint %s (%s): training from scratch",
                self._prefix(),
                path,
                type(exc).__name__,
            )
            return None
        if state["fingerprint"] != self.fingerprint:
            log.info(
                "%signoring checkpoint %s: made with other settings or data; training from scratch",
                self._prefix(),
                path,
            )
            return None
        self.estimator.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())
        if self.device.type == "cuda" and state["cuda_rng"]:
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
        return state


def adam(params: Any, learning_rate: float) -> torch.optim.Adam:
    """Adam with its fused kernel (one update per tensor group instead of a loop of small ops; same maths)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=learning_rate, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
        return torch.optim.Adam(params, lr=learning_rate)


def _cpu_copy(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in state_dict.items()}


# --------------------------------------------------------------------------------------------------
# One training job, end to end.


def train(
    job: TrainJob,
    train_store: str | os.PathLike[str],
    normalisation: str | os.PathLike[str],
    outputs: TrainOutputs,
    execution: ExecutionSettings | None = None,
) -> dict[str, Any]:
    """Train `job` on the split's training store and write its outputs; returns the summary."""
    execution = execution or ExecutionSettings()
    wall_start = time.perf_counter()
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
    )
    if data.image_shape != job.image_shape:
        raise DataError(
            train_store,
            f"images are {data.image_shape}, the config asks for {job.image_shape} (bands, num_pix, num_pix)",
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
        job.estimator, job.embedding, job.box, data.image_shape, norm.mean, norm.std, theta_ref, x_ref
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
    save(outputs.estimator, record)
    write_epochs(outputs.epochs, result.rows)
    plot_losses(result.rows, result.best_epoch, job.name, outputs.loss_pdf, outputs.loss_png)
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


def write_epochs(path: str | os.PathLike[str], rows: Sequence[Sequence[float]]) -> None:
    """epochs.csv: epoch, train_loss, val_loss, seconds."""
    lines = [",".join(EPOCHS_HEADER)]
    lines += [f"{int(e)},{t:.8g},{v:.8g},{s:.3f}" for e, t, v, s in rows]
    atomic.write_text(path, "\n".join(lines) + "\n")


def plot_losses(
    rows: Sequence[Sequence[float]],
    best_epoch: int,
    title: str,
    pdf: str | os.PathLike[str],
    png: str | os.PathLike[str],
) -> None:
    """Training and validation loss per epoch, best epoch marked; PDF and PNG with no timestamps (reproducible)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from lenspipe.plots import save_figure

    epochs = [int(r[0]) for r in rows]
    style = {
        "font.size": 8,
        "axes.titlesize": 8,
        "legend.fontsize": 7,
        "pdf.fonttype": 42,
        "svg.hashsalt": "lenspipe",
    }
    with matplotlib.rc_context(style):
        fig = Figure(figsize=(3.4, 2.5), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        marker = "o" if len(rows) < 30 else None
        ax.plot(epochs, [r[1] for r in rows], color="C0", marker=marker, ms=2.5, lw=1.2, label="training")
        ax.plot(epochs, [r[2] for r in rows], color="C1", marker=marker, ms=2.5, lw=1.2, label="validation")
        if best_epoch:
            ax.axvline(best_epoch, color="0.4", ls=":", lw=1.0, label=f"best (epoch {best_epoch})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(r"loss $-\log q(\theta \mid x)$")
        ax.set_title(title)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(frameon=False)
        save_figure(fig, pdf, png)


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
        train(
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
