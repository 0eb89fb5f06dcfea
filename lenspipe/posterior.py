"""Trained estimators: the estimator.pt format, loading one, and sampling it fast for many images.

Contract (the evaluation stage relies on it):

    est = lenspipe.posterior.load(path, device="cpu", parameter_names=None)
    est.posterior            sbi DirectPosterior (prior = the saved prior box as BoxUniform);
                             .sample / .sample_batched / .log_prob in physical units, raw images as x
    est.parameter_names      tuple of names, in theta's column order
    est.prior_box            lenspipe.priors.PriorBox
    est.bands, est.image_shape   the images it expects: raw (not normalised), (bands, H, W)
    est.sample_images(images, num_samples, seed, batch_size=64, offset=0, progress=False, max_rows=None)
        images (N, bands, H, W) raw float -> np.ndarray (N, num_samples, n_params) float32, every
        sample inside the prior box. Each image is embedded once and the flow inverted by
        lenspipe.made_inverse (nflows' inverse, MADE layers degree by degree); the noise for image i comes
        from its own generator seeded by derive_seed(seed, offset + i), so results do not depend on
        batch_size or max_rows (rows per flow call; default rows_per_flow_call(device)); pass
        offset = index of images[0] when sampling a larger set in pieces.
    est.log_prob_images(images, theta)
        theta (N, S, n_params) or (N, n_params) -> np.ndarray (N, S) or (N,) float32: the
        normalised posterior log density in physical units; -inf outside the prior box.

With a derived theta_E (training.theta_E: derived) the flow models the other parameters (`flow_parameter_names`,
`flow_box`; `posterior` is theirs) and `sample_images` computes each sample's theta_E from its sigma_v, z_l, z_s.

Errors: a missing or unreadable file, an estimator trained for other parameters than
`parameter_names`, or images of the wrong shape raise lenspipe.errors.DataError naming the file.
The flow lives in the prior box's unconstrained space (lenspipe.estimators.BoundedEstimator), so
there is no leakage: sbi's rejection step accepts every sample and its leakage correction is 1.
An ensemble's estimator.pt (lenspipe.ensemble: its members' records and the mixture weights) loads as an
EnsembleEstimator with the same attributes and methods (no sbi `posterior`): the mixture of its members.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch

from lenspipe.embedding import EmbeddingSettings, build_embedding_net
from lenspipe.errors import ConfigError, DataError
from lenspipe.estimators import (
    BoundedEstimator,
    EstimatorSettings,
    density_estimator_builder,
    reference_theta,
)
from lenspipe.priors import PriorBox
from lenspipe.seeds import derive_seed

FORMAT = "lenspipe.estimator/1"
# (image, sample) rows per flow call in sample_images. On CPU a cache-sized chunk is fastest (2^18 rows ran 1.7x
# slower than 2^13 on 2 cores); on a GPU the rows of many images must go through the flow together, or batching
# gains nothing over a per-image loop (5,000 rows per call).
MAX_ROWS = 1 << 13
MAX_ROWS_CUDA = 1 << 18


def rows_per_flow_call(device: torch.device) -> int:
    """How many (image, sample) rows sample_images passes to the flow at once on `device`."""
    return MAX_ROWS_CUDA if device.type == "cuda" else MAX_ROWS


def build_estimator(
    settings: EstimatorSettings,
    embedding: EmbeddingSettings,
    box: PriorBox,
    image_shape: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    theta: torch.Tensor,
    x: torch.Tensor,
) -> BoundedEstimator:
    """Embedding net + bounded flow, built from reference pairs (shapes, theta z-scoring)."""
    net = build_embedding_net(embedding, image_shape, mean, std)
    return density_estimator_builder(settings, net, box)(theta, x)


def estimator_record(
    estimator: BoundedEstimator,
    settings: EstimatorSettings,
    embedding: EmbeddingSettings,
    parameter_names: Sequence[str],
    box: PriorBox,
    normalisation: Mapping[str, Any],
    image_shape: Sequence[int],
    training: Mapping[str, Any],
) -> dict[str, Any]:
    """Everything to rebuild a trained estimator, in types torch.load(weights_only=True) accepts."""
    return {
        "format": FORMAT,
        "estimator": settings.name,
        "estimator_settings": settings.as_dict(),
        "embedding": embedding.as_dict(),
        "parameter_names": list(parameter_names),
        "prior_box": box.as_dict(),
        "normalisation": dict(normalisation),
        "bands": list(normalisation["bands"]),
        "image_shape": [int(s) for s in image_shape],
        "training": dict(training),
        "state_dict": {k: v.detach().cpu() for k, v in estimator.state_dict().items()},
    }


def save(path: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
    """Write an estimator record atomically."""
    from lenspipe.atomic import atomic_path

    with atomic_path(path) as tmp:
        torch.save(dict(record), tmp)


def from_record(record: Mapping[str, Any]) -> BoundedEstimator:
    """Rebuild the estimator of a record and load its weights (the caller's RNG state is left alone)."""
    settings = EstimatorSettings.from_config(record["estimator"], record["estimator_settings"])
    embedding = EmbeddingSettings(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in record["embedding"].items()}
    )
    box = flow_box(record)
    shape = [int(s) for s in record["image_shape"]]
    norm = record["normalisation"]
    theta = reference_theta(box)
    x = torch.zeros(theta.shape[0], *shape)
    with torch.random.fork_rng(devices=[]):
        estimator = build_estimator(settings, embedding, box, shape, norm["mean"], norm["std"], theta, x)
    estimator.load_state_dict(record["state_dict"])
    return estimator.eval()


def flow_box(record: Mapping[str, Any]) -> PriorBox:
    """The prior box of the parameters the flow models: the record's, less the derived ones (theta_E derived)."""
    box = PriorBox.from_dict(record["prior_box"])
    derived = record.get("derived") or {}
    return box.select([n for n in box.names if n not in derived]) if derived else box


def _read_record(est: Any, path: Path, record: Mapping[str, Any]) -> None:
    """The attributes a single estimator and an ensemble both take from their estimator.pt record."""
    est.path = path
    est.name = record["estimator"]
    est.settings = dict(record["estimator_settings"])
    est.parameter_names = tuple(record["parameter_names"])
    est.prior_box = PriorBox.from_dict(record["prior_box"])
    est.bands = tuple(record["bands"])
    est.image_shape = tuple(int(s) for s in record["image_shape"])
    est.normalisation = dict(record["normalisation"])
    est.training = dict(record.get("training", {}))


class TrainedEstimator:
    """A trained estimator on a device: the sbi posterior, and fast batched sampling for many images.

    With a derived theta_E (record["derived"]) the flow models the other parameters; every sample gets theta_E
    from its own sigma_v, z_l, z_s (lenspipe.priors.einstein_radius), so samples have the record's parameters.
    `posterior` and `flow_parameter_names` are then the flow's (theta_E left out), and `log_prob_images` is the
    density of the flow's parameters (theta_E's column is only checked against the box).
    """

    def __init__(
        self, path: Path, record: Mapping[str, Any], estimator: BoundedEstimator, device: torch.device
    ) -> None:
        _read_record(self, path, record)
        self.record: dict[str, Any] = {
            k: v for k, v in record.items() if k != "state_dict"
        }  # without the weights
        self.estimator = estimator
        self.device = device
        self._noise_ok = estimator.supports_noise()
        self.derived: dict[str, Any] = dict(record.get("derived") or {})
        self.flow_box = flow_box(record)
        self.flow_parameter_names: tuple[str, ...] = self.flow_box.names
        self._flow_columns = [self.parameter_names.index(n) for n in self.flow_parameter_names]

    @cached_property
    def posterior(self):  # noqa: ANN201 - sbi's DirectPosterior, imported lazily
        """sbi's posterior: the trained estimator with the saved prior box as prior."""
        from sbi.inference.posteriors import DirectPosterior

        return DirectPosterior(
            posterior_estimator=self.estimator,
            prior=self.flow_box.sbi_prior(str(self.device)),
            device=str(self.device),
        )

    def check_images(self, images: np.ndarray) -> np.ndarray:
        """Images as float32 (N, bands, H, W); another shape is a DataError naming this estimator."""
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise DataError(
                self.path,
                f"images of shape {tuple(images.shape)} given, this estimator expects "
                f"(N, {', '.join(map(str, self.image_shape))}) (bands {', '.join(self.bands)})",
            )
        if not np.isfinite(images).all():
            raise DataError(self.path, "images given to the estimator contain NaN or inf pixels")
        return images

    def sample_images(
        self,
        images: np.ndarray,
        num_samples: int,
        seed: int,
        batch_size: int = 64,
        offset: int = 0,
        progress: bool = False,
        max_rows: int | None = None,
    ) -> np.ndarray:
        """Posterior samples (N, num_samples, n_params) float32 for raw images (N, bands, H, W)."""
        from tqdm import tqdm

        rows_per_call = max_rows or rows_per_flow_call(self.device)
        images = self.check_images(images)
        n, d = images.shape[0], len(self.flow_parameter_names)
        out = np.empty((n, num_samples, d), dtype=np.float32)
        starts = range(0, n, batch_size)
        with torch.no_grad():
            for start in tqdm(starts, desc=f"sampling {self.name}", unit="batch", disable=not progress):
                x = torch.from_numpy(images[start : start + batch_size]).to(self.device)
                first = offset + start
                if self._noise_ok:
                    out[start : start + len(x)] = self._sample_from_noise(
                        x, num_samples, seed, first, rows_per_call
                    )
                else:
                    out[start : start + len(x)] = self._sample_generic(x, num_samples, seed, first)
        return self.complete(out)

    def complete(self, flow_theta: np.ndarray) -> np.ndarray:
        """Samples of the flow's parameters (..., d_flow) -> the record's parameters, derived ones computed."""
        if not self.derived:
            return flow_theta
        from lenspipe.priors import Cosmology, einstein_radius

        names = self.parameter_names
        out = np.empty((*flow_theta.shape[:-1], len(names)), dtype=np.float32)
        out[..., self._flow_columns] = flow_theta
        j = names.index("theta_E")
        cosmology = Cosmology(**self.derived["theta_E"]["cosmology"])
        column = lambda name: flow_theta[..., self.flow_parameter_names.index(name)]  # noqa: E731
        theta_e = einstein_radius(column("sigma_v"), column("z_l"), column("z_s"), cosmology)
        low, high = inside_float32(self.prior_box.low[j], self.prior_box.high[j])
        out[..., j] = np.clip(theta_e.astype(np.float32), low, high)
        return out

    def sample_counts(
        self,
        images: np.ndarray,
        counts: Sequence[int],
        seed: int,
        offset: int = 0,
        max_rows: int | None = None,
    ) -> list[np.ndarray]:
        """counts[i] samples (counts[i], n_params) of each image i, drawn as sample_images draws: image i's noise from
        derive_seed(seed, offset + i), so an image's first n samples are those sample_images(num_samples=n) gives."""
        images = self.check_images(images)
        counts = [int(c) for c in counts]
        if len(counts) != len(images):
            raise ValueError(f"one count per image: {len(counts)} counts for {len(images)} images")
        with torch.no_grad():
            x = torch.from_numpy(images).to(self.device)
            if self._noise_ok:
                rows = max_rows or rows_per_flow_call(self.device)
                flat = self._sample_from_noise(x, counts, seed, offset, rows)
                pieces = np.split(flat, np.cumsum(counts)[:-1])
            else:
                d = len(self.flow_parameter_names)
                pieces = [
                    self._sample_generic(x[i : i + 1], c, seed, offset + i)[0]
                    if c
                    else np.empty((0, d), dtype=np.float32)
                    for i, c in enumerate(counts)
                ]
        return [self.complete(p) for p in pieces]

    def _sample_from_noise(
        self, x: torch.Tensor, num_samples: int | Sequence[int], seed: int, first: int, rows_per_call: int
    ) -> np.ndarray:
        """Samples (len(x), num_samples, d); with a count per image instead, all images' samples as rows (sum, d)."""
        d = len(self.flow_parameter_names)
        counts = [num_samples] * len(x) if isinstance(num_samples, int) else list(num_samples)
        context = self.estimator.embed(x)
        noise = torch.cat(
            [
                torch.randn(counts[i], d, generator=self._generator(seed, first + i), device=self.device)
                for i in range(len(x))
            ]
        )
        image_of_row = torch.repeat_interleave(
            torch.arange(len(x), device=self.device), torch.tensor(counts, device=self.device)
        )
        theta = torch.cat(
            [
                self.estimator.sample_from_noise(
                    noise[r : r + rows_per_call], context, image_of_row[r : r + rows_per_call]
                )
                for r in range(0, noise.shape[0], rows_per_call)
            ]
            or [noise]
        )
        if isinstance(num_samples, int):
            return theta.reshape(len(x), num_samples, d).cpu().numpy()
        return theta.cpu().numpy()

    def _sample_generic(self, x: torch.Tensor, num_samples: int, seed: int, first: int) -> np.ndarray:
        """Flows without a standard-normal base (e.g. mdn): sbi's sampler per image, seeded per image."""
        out = []
        devices = [self.device] if self.device.type == "cuda" else []
        for i in range(len(x)):
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(derive_seed(seed, first + i))
                out.append(self.estimator.sample(torch.Size([num_samples]), x[i : i + 1])[:, 0])
        return torch.stack(out).cpu().numpy()

    def _generator(self, seed: int, index: int) -> torch.Generator:
        gen = torch.Generator(device=self.device)
        gen.manual_seed(derive_seed(seed, index))
        return gen

    def log_prob_images(self, images: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """log p(theta | image) (N, S) for theta (N, S, n_params) (or (N,) for (N, n_params)); -inf outside the box."""
        images = self.check_images(images)
        theta = np.asarray(theta, dtype=np.float32)
        single = theta.ndim == 2
        if single:
            theta = theta[:, None, :]
        if (
            theta.ndim != 3
            or theta.shape[0] != images.shape[0]
            or theta.shape[2] != len(self.parameter_names)
        ):
            raise ValueError(
                f"theta must be (N={images.shape[0]}, S, {len(self.parameter_names)}), got {theta.shape}"
            )
        n, s, d = theta.shape
        out = np.empty((n, s), dtype=np.float32)
        inside = self.prior_box.contains(theta)
        theta = np.ascontiguousarray(theta[..., self._flow_columns])
        with torch.no_grad():
            for i in range(n):
                x = torch.from_numpy(images[i : i + 1]).to(self.device)
                th = torch.from_numpy(np.where(inside[i][:, None], theta[i], self._centre())).to(self.device)
                if self._noise_ok:
                    context = self.estimator.embed(x).expand(s, -1)
                    lp = self.estimator.log_prob_from_context(th, context)
                else:
                    lp = self.estimator.log_prob(th[:, None, :], x)[:, 0]
                out[i] = lp.cpu().numpy()
        out[~inside] = -np.inf
        return out[:, 0] if single else out

    def _centre(self) -> np.ndarray:
        return ((np.asarray(self.flow_box.low) + np.asarray(self.flow_box.high)) / 2).astype(np.float32)


class EnsembleEstimator:
    """A mixture of trained estimators (an `ensemble` entry): q(theta|x) = sum_k w_k q_k(theta|x), as ltu-ili's ensembles.

    Sampling draws each sample's member from the weights with a generator seeded by (seed, image index), then that
    many samples from each member, seeded by (seed, member name, image index): the draws depend on the seed and
    the image's index only, never on the batching. The members were trained on the same images; the OOD score of
    lenspipe.infer reads the first member's embedding (`estimator`, `record["ood"]`).

    Symmetrised (record["symmetrise"] == "d4", lenspipe.ensemble): the components are (member k, element g of the
    square's symmetry group), weight w_k / 8; component (k, g) samples member k on the image under g and maps its
    samples back (lenspipe.augment's sign of each parameter under g; g is its own inverse on the parameters).
    """

    def __init__(
        self,
        path: Path,
        record: Mapping[str, Any],
        members: Sequence[TrainedEstimator],
        weights: Sequence[float],
        device: torch.device,
    ) -> None:
        from lenspipe import augment

        _read_record(self, path, record)
        self.record: dict[str, Any] = {k: v for k, v in record.items() if k != "members"}
        self.members = list(members)
        self.member_names: tuple[str, ...] = tuple(m.name for m in self.members)
        w = np.asarray(weights, dtype=np.float64)
        self.weights = w / w.sum()
        self.device = device
        self.estimator = self.members[0].estimator  # embeddings for the OOD score (lenspipe.infer)
        self.symmetrise: str | None = record.get("symmetrise")
        if self.symmetrise not in (None, "d4"):
            raise DataError(path, f"unknown symmetrisation {self.symmetrise!r} (expected d4)")
        # The mixture's components (member k, group element g) and their weights: g = 0 only (the identity) unless
        # symmetrised, so an ensemble that is not samples exactly as before symmetrisation existed.
        elements = range(augment.N_ELEMENTS) if self.symmetrise else range(1)
        self.components: list[tuple[int, int]] = [(k, g) for k in range(len(self.members)) for g in elements]
        self.component_weights = np.array([self.weights[k] / len(elements) for k, _ in self.components])
        try:  # only a symmetrised mixture needs every parameter's rule (a plain one mixes any parameters)
            self._signs = {
                g: np.asarray(augment.parameter_signs(self.parameter_names, g), dtype=np.float32)
                for g in elements
                if self.symmetrise
            }
        except ConfigError as exc:
            raise DataError(path, f"cannot symmetrise these parameters ({exc})") from exc
        low, high = zip(
            *(inside_float32(a, b) for a, b in zip(self.prior_box.low, self.prior_box.high, strict=True)),
            strict=True,
        )
        self._inside = (np.array(low, dtype=np.float32), np.array(high, dtype=np.float32))

    @property
    def posterior(self) -> NoReturn:
        """No single sbi posterior: sample with sample_images, evaluate with log_prob_images."""
        raise AttributeError(
            f"{self.name} is an ensemble of {', '.join(self.member_names)}: no sbi posterior"
        )

    def check_images(self, images: np.ndarray) -> np.ndarray:
        """Images as float32 (N, bands, H, W), as every member checks them."""
        return self.members[0].check_images(images)

    def choices(self, num_samples: int, seed: int, index: int) -> np.ndarray:
        """The component (index into `components`; the member 0..K-1 unless symmetrised) of each of image `index`'s
        samples: seeded by (seed, "ensemble", index) only."""
        rng = np.random.default_rng(derive_seed(seed, "ensemble", index))
        return rng.choice(len(self.components), size=num_samples, p=self.component_weights)

    def component_seed(self, seed: int, component: int) -> int:
        """The seed of a component's draws: its member's (seed, "member", name); a symmetry element adds itself."""
        k, g = self.components[component]
        name = self.members[k].name
        return derive_seed(seed, "member", name) if g == 0 else derive_seed(seed, "member", name, "d4", g)

    def _component(
        self, images: np.ndarray, theta: np.ndarray | None, component: int
    ) -> tuple[np.ndarray, Any]:
        """Component (k, g)'s view: the images under g and theta's parameters transformed by g (its own inverse)."""
        from lenspipe.augment import transform_array

        _, g = self.components[component]
        if g == 0:
            return images, theta
        return transform_array(images, g), None if theta is None else theta * self._signs[g]

    def sample_images(
        self,
        images: np.ndarray,
        num_samples: int,
        seed: int,
        batch_size: int = 64,
        offset: int = 0,
        progress: bool = False,
        max_rows: int | None = None,
    ) -> np.ndarray:
        """Mixture samples (N, num_samples, n_params) float32: each member draws only the samples assigned to it."""
        from tqdm import tqdm

        images = self.check_images(images)
        n = images.shape[0]
        out = np.empty((n, num_samples, len(self.parameter_names)), dtype=np.float32)
        for start in tqdm(
            range(0, n, batch_size), desc=f"sampling {self.name}", unit="batch", disable=not progress
        ):
            batch = images[start : start + batch_size]
            first = offset + start
            choice = np.stack([self.choices(num_samples, seed, first + i) for i in range(len(batch))])
            for c, (k, g) in enumerate(self.components):
                counts = (choice == c).sum(axis=1)
                if not counts.any():
                    continue
                view, _ = self._component(batch, None, c)
                draws = self.members[k].sample_counts(
                    view, counts, self.component_seed(seed, c), first, max_rows
                )
                for i, rows in enumerate(draws):
                    if g:  # back to the image's frame; a sample on the box's low edge stays inside the box
                        rows = np.clip(rows * self._signs[g], *self._inside)
                    out[start + i, choice[i] == c] = rows
        return out

    def log_prob_images(self, images: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """log q(theta | image) = logsumexp_k(log w_k + log q_k(theta | image)), shaped as the members'; -inf outside.
        Symmetrised: over the components (k, g), log w_k / 8 + log q_k(g theta | g image)."""
        images = self.check_images(images)
        theta = np.asarray(theta, dtype=np.float32)
        logs = []
        for c, (k, _) in enumerate(self.components):
            view, moved = self._component(images, theta, c)
            logs.append(self.members[k].log_prob_images(view, moved).astype(np.float64))
        logs = np.stack(logs)
        logs += np.log(self.component_weights).reshape(-1, *[1] * (logs.ndim - 1))
        top = logs.max(axis=0)
        safe = np.where(np.isfinite(top), top, 0.0)
        with np.errstate(divide="ignore"):  # every member -inf (outside the box): -inf
            return (safe + np.log(np.exp(logs - safe).sum(axis=0))).astype(np.float32)


def inside_float32(low: float, high: float) -> tuple[np.float32, np.float32]:
    """The float32 range inside [low, high] and below high (sbi's BoxUniform needs theta < high), as
    lenspipe.estimators.BoxTransform clamps samples."""
    lo, hi = np.float32(low), np.float32(high)
    if float(lo) < low:
        lo = np.nextafter(lo, np.float32(np.inf))
    return lo, np.nextafter(hi, np.float32(-np.inf))


def load(
    path: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    parameter_names: Sequence[str] | None = None,
) -> TrainedEstimator | EnsembleEstimator:
    """Load a trained estimator (estimator.pt, or an ensemble's) onto `device`; `parameter_names`: the config's."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no trained estimator here (expected the train rule's estimator.pt)")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DataError(path, f"not a readable estimator file ({type(exc).__name__}: {first})") from exc
    if not isinstance(record, Mapping) or record.get("format") != FORMAT:
        raise DataError(path, f"not a lenspipe estimator (expected format {FORMAT})")
    if parameter_names is not None and list(parameter_names) != list(record["parameter_names"]):
        raise DataError(
            path,
            f"trained for parameters {list(record['parameter_names'])}, the config asks for "
            f"{list(parameter_names)} (names and order): retrain it",
        )
    device = _device(device)
    if record.get("members"):
        return _load_ensemble(path, record, device)
    try:
        estimator = from_record(record).to(device)
    except (ConfigError, KeyError, RuntimeError, TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DataError(path, f"cannot rebuild the estimator ({type(exc).__name__}: {first})") from exc
    return TrainedEstimator(path, record, estimator, device)


def _load_ensemble(path: Path, record: Mapping[str, Any], device: torch.device) -> EnsembleEstimator:
    """An ensemble's members, each rebuilt from the record it carries (lenspipe.ensemble bundles them)."""
    members = []
    for member in record["members"]:
        try:
            estimator = from_record(member).to(device)
        except (ConfigError, KeyError, RuntimeError, TypeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise DataError(
                path, f"cannot rebuild member {member.get('estimator')} ({type(exc).__name__}: {first})"
            ) from exc
        members.append(TrainedEstimator(path, member, estimator, device))
    return EnsembleEstimator(path, record, members, record["weights"], device)


def _device(device: str | torch.device) -> torch.device:
    if isinstance(device, str) and device in ("auto", "cuda"):
        from lenspipe.device import resolve_device

        return resolve_device(device, "warn")
    return torch.device(device)
