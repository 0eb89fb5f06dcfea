"""Inference on observed images: FITS cutouts in, posterior samples, a summary table and corner plots out.

    infer_images(estimator_path, images, out, calibration, settings, force=False)

(what `lenspipe infer` runs; `infer`, the infer rule's stage function, calls it with the config's params) reads every
image (lenspipe.fits_io: checks, crop, flux units via lenspipe.flux), scores how far each lies from the training
images (lenspipe.ood), draws posterior samples with the trained estimator (image i's noise seeded from (seed, i), as
in the sample rule) and writes, atomically, the folder `out`:

    samples.zarr    samples (n_images, num_samples, n_params) float32, inside the prior box; attrs image_names...
    summary.csv/md  one row per image and parameter: median, 16th/84th and 2.5th/97.5th percentiles, OOD score/flag
    images.json     per image: files, pixel scale, crop, filled pixels, zero point, exposure time, flux scale, OOD
    corner/<image>.pdf|png, provenance.json
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lenspipe import atomic
from lenspipe.errors import ConfigError, DataError
from lenspipe.fits_io import Calibration, ImageSpec, ObservedImage, parse_image, read_observed, unique_names
from lenspipe.flux import OBSERVING_FIELDS, OBSERVING_KEY, study_zero_points
from lenspipe.ood import OODReference
from lenspipe.provenance import file_sha256

log = logging.getLogger(__name__)

QUANTILES = {"median": 50.0, "p16": 16.0, "p84": 84.0, "p2.5": 2.5, "p97.5": 97.5}
SUMMARY_COLUMNS = (
    "image",
    "estimator",
    "parameter",
    "unit",
    *QUANTILES,
    "ood_score",
    "ood_threshold",
    "ood_flag",
)


@dataclass(frozen=True)
class InferSettings:
    """How many posterior samples per image, their seed, NaN/inf filling, device, corner plots."""

    num_samples: int = 5000
    seed: int = 0
    fill_nonfinite: bool = False
    device: str = "cpu"
    corner: bool = True

    def __post_init__(self) -> None:
        if int(self.num_samples) < 2:
            raise ConfigError("num_samples", "at least 2 posterior samples per image", self.num_samples)


@dataclass(frozen=True)
class Study:
    """What the estimator was trained on: bands, image size, pixel scale, per-second zero points, OOD reference."""

    bands: tuple[str, ...]
    num_pix: int
    pixel_scale: float
    zero_points: dict[str, float]
    ood: OODReference


def study_of(est: Any) -> Study:
    """The study an estimator was trained on, from its record; a record without it names the study to retrain."""
    record = est.record
    observing = record.get(OBSERVING_KEY) or {}
    missing = [f for f in OBSERVING_FIELDS if f not in observing] + ([] if record.get("ood") else ["ood"])
    if missing:
        raise DataError(
            est.path,
            f"the estimator's record lacks {', '.join(missing)} (it was trained before lenspipe "
            f"recorded them): retrain it, {retrain_hint(est.path)}",
        )
    try:
        zero_points = study_zero_points(record)
        ood = OODReference.from_dict(record["ood"])
    except (ConfigError, KeyError, ValueError) as exc:
        raise DataError(
            est.path, f"unusable observing record ({exc}): retrain it, {retrain_hint(est.path)}"
        ) from exc
    bands = tuple(observing["bands"])
    if (
        bands != tuple(est.bands)
        or (len(bands), observing["num_pix"], observing["num_pix"]) != est.image_shape
    ):
        raise DataError(
            est.path,
            f"observing record (bands {bands}, num_pix {observing['num_pix']}) contradicts the "
            f"estimator's images {est.image_shape}",
        )
    return Study(bands, int(observing["num_pix"]), float(observing["pixel_scale"]), zero_points, ood)


def ood_scores(est: Any, study: Study, pixels: np.ndarray) -> tuple[np.ndarray, float]:
    """Out-of-distribution scores of the images and the threshold above which they are flagged.

    One estimator: the Mahalanobis distance of its embedding from its training embeddings' (threshold from its
    record). An ensemble: every member embeds the image differently, so each member's score is divided by its own
    threshold and the largest ratio is the score, with threshold 1: an image is flagged if any member flags it.
    """
    import torch

    from lenspipe.ood import embeddings

    x = torch.from_numpy(pixels)
    members = getattr(est, "members", None)
    if not members:
        return study.ood.score(embeddings(est.estimator, x)), float(study.ood.threshold)
    ratios = []
    for member in members:
        reference = OODReference.from_dict(member.record["ood"])
        ratios.append(reference.score(embeddings(member.estimator, x)) / reference.threshold)
    return np.max(ratios, axis=0), 1.0


def retrain_hint(path: Path) -> str:
    """How to retrain the estimator at `path` (its study's run name when the path shows it)."""
    match = re.search(r"results/([^/]+)/train/([^/]+)/estimator\.pt$", Path(path).as_posix())
    if match:
        run, est = match.groups()
        return f"study {run!r}: snakemake -f {path} --configfile <the config with run: {run}>"
    return "with the config of the study that made it (snakemake -f <its estimator.pt>)"


def check_out(out: Path, force: bool) -> None:
    """An output folder that exists with content is refused unless `force` (then replaced at the end)."""
    if out.exists() and not out.is_dir():
        raise DataError(out, "exists and is not a folder: choose another --out")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise DataError(
            out, "output folder exists and is not empty: choose another --out, or pass --force to replace it"
        )


def infer_images(
    estimator_path: str | os.PathLike[str],
    images: Sequence[str | Mapping[str, str] | ImageSpec],
    out: str | os.PathLike[str],
    calibration: Calibration | None = None,
    settings: InferSettings | None = None,
    force: bool = False,
) -> Any:
    """Posteriors for observed FITS images with one trained estimator; returns the summary table (pandas)."""
    from tqdm.auto import tqdm

    from lenspipe import posterior

    calibration = calibration or Calibration()
    settings = settings or InferSettings()
    out = Path(out)
    check_out(out, force)
    if not images:
        raise ConfigError("images", "at least one observed image")
    est = posterior.load(estimator_path, device=settings.device)
    study = study_of(est)
    specs = [s if isinstance(s, ImageSpec) else parse_image(s, study.bands) for s in images]
    unique_names(specs)

    observed: list[ObservedImage] = [
        read_observed(
            spec,
            study.bands,
            study.num_pix,
            study.pixel_scale,
            study.zero_points,
            calibration,
            fill=settings.fill_nonfinite,
        )
        for spec in tqdm(specs, desc="reading images", unit="image")
    ]
    pixels = np.stack([o.pixels for o in observed])
    scores, threshold = ood_scores(est, study, pixels)
    flags = scores > threshold
    for o, score, flag in zip(observed, scores, flags, strict=True):
        o.info.update(ood_score=float(score), ood_flag=bool(flag))
        if flag:
            log.warning(
                "%s: out of distribution (score %.3g > threshold %.3g): inferred anyway, flagged in every "
                "output",
                o.name,
                score,
                threshold,
            )

    samples = np.empty((len(observed), settings.num_samples, len(est.parameter_names)), dtype=np.float32)
    for i in tqdm(range(len(observed)), desc=f"inferring with {est.name}", unit="image"):
        # one image at a time with offset i: identical to sampling all at once (noise seeded per image index)
        samples[i] = est.sample_images(
            pixels[i : i + 1], settings.num_samples, settings.seed, batch_size=1, offset=i
        )[0]
    if not est.prior_box.contains(samples).all():
        raise DataError(est.path, "posterior samples outside the prior box")
    table = summary_table(
        [o.name for o in observed], samples, est.parameter_names, scores, flags, threshold, est.name
    )

    with atomic.atomic_path(out) as tmp:
        tmp.mkdir()
        write_samples(tmp / "samples.zarr", samples, [o.name for o in observed], est, settings.seed)
        table.to_csv(tmp / "summary.csv", index=False, float_format="%.6g")
        (tmp / "summary.md").write_text(markdown(table))
        atomic.write_json(tmp / "images.json", [o.info for o in observed])
        if settings.corner:
            corner_plots(
                tmp / "corner", [o.name for o in observed], samples, est.parameter_names, est.name, flags
            )
        from lenspipe import provenance

        provenance.write(
            tmp / "provenance.json",
            {
                "estimator": str(estimator_path),
                "estimator_sha256": file_sha256(estimator_path),
                "images": [{"name": s.name, "files": [str(p) for p in s.paths()]} for s in specs],
                "calibration": calibration.as_dict(),
                "settings": asdict(settings),
                "study": {
                    "bands": list(study.bands),
                    "num_pix": study.num_pix,
                    "pixel_scale": study.pixel_scale,
                    "zero_points": study.zero_points,
                    "ood_threshold": threshold,
                },
            },
            {"infer": settings.seed},
            rule="infer",
        )
    log.info(
        "%d images inferred with %s (%d flagged out of distribution) -> %s",
        len(observed),
        est.name,
        int(flags.sum()),
        out,
    )
    return table


def summary_table(
    names: Sequence[str],
    samples: np.ndarray,
    parameter_names: Sequence[str],
    scores: np.ndarray,
    flags: np.ndarray,
    threshold: float,
    estimator: str,
) -> Any:
    """One row per image and parameter: the posterior's quantiles, and the image's OOD score and flag."""
    import pandas as pd

    from lenspipe import parameters as params_table

    units = [p.unit for p in params_table.get(list(parameter_names))]
    q = np.percentile(samples, list(QUANTILES.values()), axis=1)  # (quantiles, images, params)
    rows = []
    for i, name in enumerate(names):
        for j, param in enumerate(parameter_names):
            rows.append(
                {
                    "image": name,
                    "estimator": estimator,
                    "parameter": param,
                    "unit": units[j],
                    **{k: float(q[k_i, i, j]) for k_i, k in enumerate(QUANTILES)},
                    "ood_score": float(scores[i]),
                    "ood_threshold": float(threshold),
                    "ood_flag": bool(flags[i]),
                }
            )
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def markdown(table: Any) -> str:
    """The summary table as Markdown (4 significant digits)."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    cols = list(table.columns)
    right = [is_numeric_dtype(table[c]) and not is_bool_dtype(table[c]) for c in cols]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---:" if r else "---" for r in right) + "|"]
    for row in table.itertuples(index=False):
        cells = [
            f"{v:.4g}"
            if isinstance(v, float)
            else ("**yes**" if v is True else "no" if v is False else str(v))
            for v in row
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_samples(path: Path, samples: np.ndarray, names: Sequence[str], est: Any, seed: int) -> None:
    """The samples store: (n_images, num_samples, n_params) float32 with names, units, prior box and checksum."""
    import zarr

    from lenspipe import parameters as params_table
    from lenspipe.store import zarr_codecs

    group = zarr.open_group(str(path), mode="w")
    arr = group.create_array(
        "samples", shape=samples.shape, chunks=(1, *samples.shape[1:]), dtype="float32", **zarr_codecs()
    )
    arr[:] = samples
    table = params_table.get(list(est.parameter_names))
    group.attrs.update(
        {
            "image_names": list(names),
            "parameter_names": list(est.parameter_names),
            "units": [p.unit for p in table],
            "labels": [p.label for p in table],
            "prior_box": est.prior_box.as_dict(),
            "estimator": est.name,
            "seed": int(seed),
            "checksum": hashlib.sha256(np.ascontiguousarray(samples).tobytes()).hexdigest(),
        }
    )


def corner_plots(
    folder: Path,
    names: Sequence[str],
    samples: np.ndarray,
    parameter_names: Sequence[str],
    estimator: str,
    flags: np.ndarray,
) -> None:
    """One corner plot per image (PDF and PNG), the OOD flag in its title."""
    from tqdm.auto import tqdm

    from lenspipe.plots import corner_plot

    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(tqdm(names, desc="corner plots", unit="image")):
        title = f"{name} ({estimator})" + (" - out of distribution" if flags[i] else "")
        corner_plot(
            samples[i], None, parameter_names, title, [folder / f"{name}.pdf", folder / f"{name}.png"]
        )


def infer(
    *,
    estimator: str | os.PathLike[str],
    out: str | os.PathLike[str],
    settings: Mapping[str, Any],
    threads: int = 1,
) -> Any:
    """The infer rule: one estimator infers the config's observed images (`settings`: the rule's params,
    lenspipe.rule_params.infer_params); the output folder is replaced."""
    import torch

    from lenspipe.provenance import plain

    params = plain(settings)
    torch.set_num_threads(int(threads))
    return infer_images(
        estimator,
        params["images"],
        out,
        calibration=Calibration.from_config(params),
        settings=InferSettings(
            num_samples=int(params["num_samples"]),
            seed=int(params["seed"]),
            fill_nonfinite=bool(params["fill_nonfinite"]),
        ),
        force=True,
    )
