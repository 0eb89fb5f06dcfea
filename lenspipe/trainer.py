"""The epoch loop of one estimator's training: sbi's NPE objective, Adam, early stopping, a checkpoint per epoch.

The loop is ours: it minimises exactly what sbi's `NPE.train` minimises in its single (amortised)
round, the estimator's `loss` (negative log posterior density; tests check it equals NPE's loss), with
sbi's defaults (Adam, gradient norm clipped at 5, stop after `stop_after_epochs` epochs without a better
validation loss, keep the best weights). sbi 0.27's `train` has no per-epoch hook, and calling it one
epoch at a time (`resume_training=True`) reloads the best weights at the end of every call and miscounts
epochs without improvement, so it cannot checkpoint a normal run. `max_epochs` is exactly the number of
epochs run at most. A killed job re-run with the same settings and data continues from its checkpoint.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lenspipe import atomic
from lenspipe.data import TrainingData
from lenspipe.errors import LenspipeError
from lenspipe.estimators import BoundedEstimator

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

    @classmethod
    def from_config(cls, training: Mapping[str, Any]) -> TrainingSettings:
        """From the validated `training` section (execution keys ignored)."""
        return cls(
            learning_rate=float(training["learning_rate"]),
            batch_size=int(training["batch_size"]),
            validation_fraction=float(training["validation_fraction"]),
            stop_after_epochs=int(training["stop_after_epochs"]),
            max_epochs=int(training["max_epochs"]),
        )


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
