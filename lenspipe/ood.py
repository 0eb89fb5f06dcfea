"""Out-of-distribution score: how far an image's embedding lies from the training images' embeddings.

At the end of training the embeddings (the flow's context, the CNN's output) of the training images are
summarised by their mean and covariance; an image's score is the Mahalanobis distance of its embedding from
that mean. The threshold is the 99th percentile of the held-out validation images' scores, so about 1% of
images like the training set are flagged by construction; a flagged image is still inferred.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

FORMAT = "lenspipe.ood/1"
# Percentile of the validation images' scores above which an image is flagged.
THRESHOLD_PERCENTILE = 99.0
# Ridge added to the covariance, relative to its mean diagonal (dead ReLU features have zero variance).
RIDGE = 1e-3


@dataclass(frozen=True)
class OODReference:
    """Mean and inverse covariance of the training embeddings, and the score threshold."""

    mean: np.ndarray
    precision: np.ndarray
    threshold: float
    percentile: float = THRESHOLD_PERCENTILE

    @classmethod
    def fit(
        cls, train: np.ndarray, validation: np.ndarray, percentile: float = THRESHOLD_PERCENTILE
    ) -> OODReference:
        """Fit on training embeddings (n, k); the threshold from held-out validation embeddings (m, k)."""
        train = np.asarray(train, dtype=np.float64)
        if train.ndim != 2 or len(train) < 2:
            raise ValueError(f"need at least 2 training embeddings (n, k), got shape {train.shape}")
        mean = train.mean(axis=0)
        cov = np.atleast_2d(np.cov(train, rowvar=False))
        ridge = RIDGE * max(float(np.mean(np.diag(cov))), 1e-12)
        precision = np.linalg.inv(cov + ridge * np.eye(cov.shape[0]))
        held_out = np.asarray(validation, dtype=np.float64)
        reference = held_out if len(held_out) else train
        scores = mahalanobis(reference, mean, precision)
        return cls(mean, precision, float(np.percentile(scores, percentile)), float(percentile))

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        """Mahalanobis distance (n,) of embeddings (n, k) from the training embeddings' mean."""
        return mahalanobis(np.asarray(embeddings, dtype=np.float64), self.mean, self.precision)

    def flag(self, scores: np.ndarray) -> np.ndarray:
        """True where a score lies above the threshold."""
        return np.asarray(scores) > self.threshold

    def as_dict(self) -> dict[str, Any]:
        """Plain types for the estimator record (torch.load(weights_only=True) reads them)."""
        return {
            "format": FORMAT,
            "mean": self.mean.tolist(),
            "precision": self.precision.tolist(),
            "threshold": self.threshold,
            "percentile": self.percentile,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OODReference:
        """Rebuild from `as_dict`'s output; anything else raises KeyError or ValueError."""
        if d.get("format") != FORMAT:
            raise ValueError(f"not an OOD reference of format {FORMAT}")
        return cls(
            np.asarray(d["mean"], dtype=np.float64),
            np.asarray(d["precision"], dtype=np.float64),
            float(d["threshold"]),
            float(d["percentile"]),
        )


def mahalanobis(x: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """sqrt((x - mean)^T P (x - mean)) for each row of x."""
    d = x - mean
    return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", d, precision, d), 0.0))


def embeddings(estimator: Any, images: Any, index: Any = None, batch_size: int = 256) -> np.ndarray:
    """The estimator's embeddings (n, k) of raw images (N, bands, H, W) (array or tensor; rows `index` if given)."""
    import torch

    images = torch.as_tensor(images)
    index = torch.arange(len(images)) if index is None else torch.as_tensor(index).cpu()
    return embed_batches(
        estimator,
        (
            images[index[start : start + batch_size].to(images.device)]
            for start in range(0, len(index), batch_size)
        ),
    )


def embed_batches(estimator: Any, batches: Iterable[Any]) -> np.ndarray:
    """The estimator's embeddings (n, k) of batches of raw images (a training data's `image_batches`)."""
    import torch

    device = next(estimator.parameters()).device
    out = []
    was_training = estimator.training
    estimator.eval()
    with torch.no_grad():
        for x in batches:
            out.append(estimator.embed(x.to(device)).detach().cpu().numpy())
    estimator.train(was_training)
    return np.concatenate(out).astype(np.float64) if out else np.empty((0, 0))
