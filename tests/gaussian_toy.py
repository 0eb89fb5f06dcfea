"""Stand-ins for the evaluation tests: a conjugate Gaussian toy with known posteriors, and a fake trained
estimator that honours lenspipe.posterior's contract (load -> object with sample_images, prior_box...)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from lenspipe import posterior
from lenspipe.priors import PriorBox
from lenspipe.seeds import derive_seed
from lenspipe.store import write_store

NAMES = ["sigma_v", "theta_E", "e1"]
BOX = PriorBox(tuple(NAMES), (150.0, 0.5, -0.4), (400.0, 2.5, 0.4))


def gaussian_toy(
    n: int,
    n_samples: int,
    n_params: int = 2,
    seed: int = 0,
    scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Samples (n, n_samples, n_params) and true values (n, n_params) of the toy theta ~ N(0, 1), x = theta + N(0, 0.5^2).

    The exact posterior is N(0.8 x, 0.2); `scale` multiplies its width (1: calibrated, < 1: over-confident).
    """
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(n, n_params))
    x = theta + 0.5 * rng.normal(size=(n, n_params))
    mean, sd = 0.8 * x, np.sqrt(0.2) * scale
    samples = mean[:, None, :] + sd * rng.normal(size=(n, n_samples, n_params))
    return samples.astype(np.float32), theta


@dataclass
class StandInEstimator:
    """A fake trained estimator: a logit-normal posterior around the truth encoded in the image's first pixels."""

    prior_box: PriorBox = BOX
    width: float = 0.3
    outside: bool = False
    fail_at_call: int | None = None  # raise on this call (0-based), as if the job were killed there
    offsets: list[int] = field(default_factory=list)  # the `offset` of every call, in order

    @property
    def parameter_names(self) -> list[str]:
        return list(self.prior_box.names)

    @property
    def posterior(self) -> None:
        return None

    def sample_images(
        self, images: np.ndarray, num_samples: int, seed: int, batch_size: int = 64, offset: int = 0
    ) -> np.ndarray:
        if len(self.offsets) == self.fail_at_call:
            raise RuntimeError("stand-in estimator killed")
        self.offsets.append(offset)
        low, high = np.asarray(self.prior_box.low), np.asarray(self.prior_box.high)
        p = len(low)
        u = np.clip(images[:, 0, 0, :p].astype(np.float64), 0.01, 0.99)
        noise = np.stack(
            [
                np.random.default_rng(derive_seed(seed, offset + i)).normal(size=(num_samples, p))
                for i in range(len(images))
            ]
        )
        z = np.log(u / (1 - u))[:, None, :] + self.width * noise
        draws = low + (high - low) / (1 + np.exp(-z))
        if self.outside:
            draws[0, 0, 0] = high[0] + 1.0
        return draws.astype(np.float32)


def write_test_store(path: Path, n: int, seed: int = 1, box: PriorBox = BOX) -> np.ndarray:
    """A test store whose images carry the normalised true values in their first pixels; returns theta."""
    rng = np.random.default_rng(seed)
    low, high = np.asarray(box.low), np.asarray(box.high)
    u = rng.uniform(0.05, 0.95, size=(n, len(low)))
    theta = (low + (high - low) * u).astype(np.float32)
    images = rng.normal(0.0, 0.01, size=(n, 2, 4, 8)).astype(np.float32)
    images[:, 0, 0, : len(low)] = u
    write_store(path, images, theta, list(box.names), attrs={"bands": ["g", "r"]})
    return theta


def install_stand_in(monkeypatch: pytest.MonkeyPatch, estimator: StandInEstimator) -> list[tuple[str, str]]:
    """Make lenspipe.posterior.load return `estimator`; returns the (path, device) calls it receives."""
    calls: list[tuple[str, str]] = []

    def load(path: str, device: str = "cpu", parameter_names: list[str] | None = None) -> StandInEstimator:
        calls.append((str(path), device))
        return estimator

    monkeypatch.setattr(posterior, "load", load)
    return calls


def write_untrained_estimator(
    path: Path, box: PriorBox = BOX, image_shape: tuple[int, int, int] = (2, 4, 8), flow: str = "maf"
) -> Path:
    """A real estimator.pt (lenspipe.posterior's format) with untrained weights: the contract without training."""
    import torch

    from lenspipe.embedding import EmbeddingSettings
    from lenspipe.estimators import EstimatorSettings, reference_theta

    settings = EstimatorSettings.from_config(flow, {"flow": flow, "num_transforms": 2, "hidden_features": 16})
    embedding = EmbeddingSettings((4,), 8, 4)
    norm = {
        "bands": ["g", "r"][: image_shape[0]],
        "mean": [0.0] * image_shape[0],
        "std": [1.0] * image_shape[0],
    }
    theta = reference_theta(box)
    torch.manual_seed(0)
    estimator = posterior.build_estimator(
        settings,
        embedding,
        box,
        image_shape,
        norm["mean"],
        norm["std"],
        theta,
        torch.zeros(theta.shape[0], *image_shape),
    )
    record = posterior.estimator_record(estimator, settings, embedding, box.names, box, norm, image_shape, {})
    posterior.save(path, record)
    return path
