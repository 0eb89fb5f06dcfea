"""The epoch loop of one estimator's training: sbi's NPE objective, Adam, early stopping, a checkpoint per epoch.

The loop is ours: it minimises exactly what sbi's `NPE.train` minimises in its single (amortised)
round, the estimator's `loss` (negative log posterior density; tests check it equals NPE's loss), with
sbi's defaults (Adam, gradient norm clipped at 5, stop after `stop_after_epochs` epochs without a better
validation loss, keep the best weights). sbi 0.27's `train` has no per-epoch hook, and calling it one
epoch at a time (`resume_training=True`) reloads the best weights at the end of every call and miscounts
epochs without improvement, so it cannot checkpoint a normal run. `max_epochs` is exactly the number of
epochs run at most. A killed job re-run with the same settings and data continues from its checkpoint.

Optional settings (absent: the seeds' plain loop above, bit for bit): a learning-rate schedule (`LearningRate`:
linear warm-up, then constant, reduce-on-plateau or cosine), early stopping on an exponentially smoothed
validation loss with a minimum improvement, AdamW's weight decay, and D4 symmetry augmentation of the training
batches (lenspipe.augment). Their state (rate, plateau counters, smoothed loss, augmentation generator) is in the
checkpoint, so a resumed run is identical to an uninterrupted one.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lenspipe import atomic
from lenspipe.augment import D4Augmentation
from lenspipe.data import TrainingData
from lenspipe.errors import LenspipeError
from lenspipe.estimators import BoundedEstimator
from lenspipe.rule_params import OPTIONAL_TRAINING
from lenspipe.seeds import derive_seed

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "lenspipe.checkpoint/1"
CLIP_MAX_NORM = 5.0  # gradient norm clipped as sbi's NPE.train does by default (not a config setting)


@dataclass(frozen=True)
class TrainingSettings:
    """The optimisation: the config's `training` section without the execution keys (validated by lenspipe.config)."""

    learning_rate: float = 5e-4
    batch_size: int = 50
    validation_fraction: float = 0.1
    stop_after_epochs: int = 20
    max_epochs: int = 1000
    # Optional settings; defaults equal lenspipe.rule_params.OPTIONAL_TRAINING (tests check it).
    schedule: str = "none"  # none | plateau | cosine
    warmup_epochs: int = 0
    lr_decay: float = 0.5  # plateau: rate factor
    lr_patience: int = 5  # plateau: epochs without improvement of the smoothed validation loss
    min_learning_rate: float = 0.0
    smoothing: float = 0.0  # early stopping on s_t = smoothing s_(t-1) + (1 - smoothing) val_t
    min_delta: float = 0.0  # an improvement of s_t by less than this does not reset the patience
    weight_decay: float | None = None  # AdamW's decoupled weight decay; None: Adam
    augment: str = "none"  # none | d4
    theta_E: str = "inferred"  # inferred | derived (lenspipe.train: theta_E derived from the flow's samples)
    loader: str = "auto"  # auto | memory | stream (lenspipe.data.choose_loader)
    memory_budget_mb: int | None = None  # the training data's memory; None: no budget (auto: in memory)

    @classmethod
    def from_config(cls, training: Mapping[str, Any]) -> TrainingSettings:
        """From the validated `training` section (execution keys ignored)."""
        opt = {**OPTIONAL_TRAINING, **{k: v for k, v in training.items() if k in OPTIONAL_TRAINING}}
        decay = training.get("weight_decay")
        budget = training.get("memory_budget_mb")
        return cls(
            learning_rate=float(training["learning_rate"]),
            batch_size=int(training["batch_size"]),
            validation_fraction=float(training["validation_fraction"]),
            stop_after_epochs=int(training["stop_after_epochs"]),
            max_epochs=int(training["max_epochs"]),
            schedule=str(opt["schedule"]),
            warmup_epochs=int(opt["warmup_epochs"]),
            lr_decay=float(opt["lr_decay"]),
            lr_patience=int(opt["lr_patience"]),
            min_learning_rate=float(opt["min_learning_rate"]),
            smoothing=float(opt["smoothing"]),
            min_delta=float(opt["min_delta"]),
            weight_decay=None if decay is None else float(decay),
            augment=str(opt["augment"]),
            theta_E=str(opt["theta_E"]),
            loader=str(opt["loader"]),
            memory_budget_mb=None if budget is None else int(budget),
        )

    @property
    def plain(self) -> bool:
        """The seeds' loop: constant rate, early stopping on the raw validation loss (epochs.csv's four columns)."""
        return self.schedule == "none" and self.warmup_epochs == 0 and self.smoothing == 0.0


class LearningRate:
    """The learning rate per epoch: linear warm-up over `warmup_epochs`, then constant, plateau or cosine.

    Epochs count from 1. Warm-up epoch k <= W trains at rate * k / (W + 1). Cosine: from the rate at epoch W + 1
    to `min_learning_rate` at `max_epochs`. Plateau: the rate is multiplied by `lr_decay` (not below
    `min_learning_rate`) after `lr_patience` epochs in which the smoothed validation loss did not improve by more
    than `min_delta`. The state is a dict of numbers (saved in the checkpoint).
    """

    def __init__(self, settings: TrainingSettings) -> None:
        self.s = settings
        self.state: dict[str, float] = {"plateau_rate": settings.learning_rate, "best": math.inf, "bad": 0}

    def rate(self, epoch: int) -> float:
        """The rate of epoch `epoch` (1-based)."""
        s = self.s
        if epoch <= s.warmup_epochs:
            return s.learning_rate * epoch / (s.warmup_epochs + 1)
        if s.schedule == "cosine":
            span = max(1, s.max_epochs - s.warmup_epochs - 1)
            progress = min(1.0, (epoch - s.warmup_epochs - 1) / span)
            low = s.min_learning_rate
            return low + (s.learning_rate - low) * 0.5 * (1.0 + math.cos(math.pi * progress))
        if s.schedule == "plateau":
            return float(self.state["plateau_rate"])
        return s.learning_rate

    def after_epoch(self, epoch: int, smoothed_val: float) -> None:
        """Plateau bookkeeping on the smoothed validation loss of epoch `epoch` (after warm-up only)."""
        s, st = self.s, self.state
        if s.schedule != "plateau" or epoch <= s.warmup_epochs:
            return
        if smoothed_val < st["best"] - s.min_delta:
            st["best"], st["bad"] = smoothed_val, 0
            return
        st["bad"] += 1
        if st["bad"] >= s.lr_patience:
            st["plateau_rate"] = max(st["plateau_rate"] * s.lr_decay, s.min_learning_rate)
            st["bad"] = 0


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


@dataclass
class FitResult:
    """What the loop did: the epochs table and the best epoch (whose weights the estimator now holds)."""

    rows: list[list[float]]
    best_epoch: int
    best_val_loss: float
    stopped: str
    resumed_from: int | None
    previous_s: float  # training time of earlier (killed) sessions
    extras: list[list[float]] = dataclasses.field(default_factory=list)  # per epoch: rate, smoothed val loss
    # CPU seconds (all threads) of earlier sessions' epochs; None when a checkpoint from before this was recorded
    previous_cpu_s: float | None = 0.0

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
        self.optimizer = adam(self.estimator.parameters(), settings.learning_rate, settings.weight_decay)
        self.generator = torch.Generator().manual_seed(seed)
        self.rate = LearningRate(settings)
        self.augmentation = (
            D4Augmentation(data.parameter_names, data.image_shape) if settings.augment == "d4" else None
        )
        # Its own stream, so the batch order is the same with augmentation on or off.
        self.augment_generator = torch.Generator().manual_seed(derive_seed(seed, "augment"))

    def fit(self) -> FitResult:
        """Run epochs until early stopping or max_epochs; leaves the best weights in the estimator."""
        s = self.settings
        start, cpu_start = time.perf_counter(), time.process_time()
        if self.checkpoint is not None:  # temporary files of a killed save
            atomic.remove_stale(self.checkpoint)
        state = self._load_checkpoint()
        rows: list[list[float]] = []
        extras: list[list[float]] = []  # per epoch: learning rate, smoothed validation loss
        best_val, best_epoch, since, best_state, before = math.inf, 0, 0, None, 0.0
        smoothed, best_smoothed = math.nan, math.inf
        resumed_from, cpu_before = None, 0.0
        if state is not None:
            rows, best_val, best_epoch, since, before = (
                state["rows"],
                state["best_val_loss"],
                state["best_epoch"],
                state["since_improvement"],
                state["elapsed_s"],
            )
            # Checkpoints of the plain loop made before these keys existed: constant rate, raw validation loss.
            extras = state.get("extras") or [[s.learning_rate, r[2]] for r in rows]
            smoothed = state.get("smoothed", rows[-1][2] if rows else math.nan)
            cpu_before = state.get("cpu_s")  # absent in checkpoints written before CPU time was recorded
            best_smoothed = state.get("best_smoothed", best_val)
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
            rate = self.rate.rate(epoch + 1)
            if s.schedule != "none" or s.warmup_epochs > 0:
                for group in self.optimizer.param_groups:
                    group["lr"] = rate
            train_loss = self._train_epoch()
            val_loss = self._validate()
            epoch += 1
            if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
                raise LenspipeError(
                    f"training {self.label}: non-finite loss at epoch {epoch} (train {train_loss}, "
                    f"validation {val_loss}); the last checkpoint is epoch {epoch - 1}"
                )
            # Best weights: the lowest validation loss. Patience: epochs since the smoothed loss last improved by
            # more than min_delta (smoothing 0, min_delta 0: the same test, the seeds' early stopping).
            smoothed = val_loss if epoch == 1 else s.smoothing * smoothed + (1.0 - s.smoothing) * val_loss
            if val_loss < best_val:
                best_val, best_epoch = val_loss, epoch
                best_state = _cpu_copy(self.estimator.state_dict())
            if smoothed < best_smoothed - s.min_delta:
                best_smoothed, since = smoothed, 0
            else:
                since += 1
            self.rate.after_epoch(epoch, smoothed)
            rows.append([epoch, train_loss, val_loss, time.perf_counter() - t0])
            extras.append([rate, smoothed])
            self._save_checkpoint(
                rows,
                best_val,
                best_epoch,
                since,
                best_state,
                before + time.perf_counter() - start,
                extras,
                smoothed,
                best_smoothed,
                None if cpu_before is None else cpu_before + time.process_time() - cpu_start,
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
        return FitResult(rows, best_epoch, best_val, stopped, resumed_from, before, extras, cpu_before)

    def _train_epoch(self) -> float:
        """One pass over shuffled training batches; returns the mean loss (loss summed on the device)."""
        s, est = self.settings, self.estimator
        est.train()
        total = torch.zeros((), device=self.device, dtype=torch.float64)
        count = 0
        params = [p for p in est.parameters() if p.requires_grad]
        for theta, x in self.data.train_batches(s.batch_size, self.generator):
            if self.augmentation is not None:
                theta, x = self.augmentation(theta, x, self.augment_generator)
            self.optimizer.zero_grad(set_to_none=True)
            losses = est.loss(theta, x)
            losses.mean().backward()
            torch.nn.utils.clip_grad_norm_(params, max_norm=CLIP_MAX_NORM)
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
        extras: list[list[float]],
        smoothed: float,
        best_smoothed: float,
        cpu_s: float | None,
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
            "cpu_s": cpu_s,
            "extras": [list(r) for r in extras],
            "smoothed": smoothed,
            "best_smoothed": best_smoothed,
            "rate_state": dict(self.rate.state),
            "augment_generator": self.augment_generator.get_state(),
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
        if "rate_state" in state:
            self.rate.state = dict(state["rate_state"])
        if "augment_generator" in state:
            self.augment_generator.set_state(state["augment_generator"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())
        if self.device.type == "cuda" and state["cuda_rng"]:
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
        return state


def adam(params: Any, learning_rate: float, weight_decay: float | None = None) -> torch.optim.Optimizer:
    """Adam (AdamW with `weight_decay`) with its fused kernel (one update per tensor group instead of a loop of
    small ops; same maths)."""
    params = list(params)
    cls, kwargs = (
        (torch.optim.Adam, {})
        if weight_decay is None
        else (torch.optim.AdamW, {"weight_decay": weight_decay})
    )
    try:
        return cls(params, lr=learning_rate, fused=True, **kwargs)
    except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
        return cls(params, lr=learning_rate, **kwargs)


def _cpu_copy(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in state_dict.items()}
