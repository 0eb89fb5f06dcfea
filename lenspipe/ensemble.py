"""Stage ensemble: an `estimators:` entry with `flow: ensemble` bundles its members' trained estimators into one.

    ensemble: {flow: ensemble, members: [maf, nsf]}            # uniform mixture
    ensemble: {flow: ensemble, members: [maf, nsf], weights: [2, 1]}
    restarts: {flow: ensemble, members: [maf, maf_b, maf_c], combine: best}   # keep the lowest validation loss
    nsf_d4: {flow: ensemble, members: [nsf], symmetrise: d4}      # one flow, made exactly D4-equivariant

Nothing is trained: the members are the config's other estimators (their own train jobs). Their estimator.pt
records go, whole, into the ensemble's estimator.pt with the normalised weights, so sample, evaluate, compare
and infer read one file like any other estimator's (lenspipe.posterior.load returns the mixture,
lenspipe.posterior.EnsembleEstimator). Its epochs.csv holds every member's rows (a `member` column); its
summary.json the members' training summaries, and their sums as the ensemble's training cost.

`combine: best` keeps only the member with the lowest best validation loss (restarts of one flow: a flow stuck on a
plateau, such as MAF on an ellipticity sign, has a worse validation loss than one that escaped it). The members of
a study share its validation pairs (drawn from the study's seed, not the estimator's), so their losses compare;
the selected member's record becomes the estimator's, whole: it samples as a single flow.

`symmetrise: d4` mixes every member also over the square's 8 rotations and reflections g of the image:
q(theta | x) = sum_k w_k / 8 sum_g q_k(g theta | g x), with g acting on (e1, e2) as lenspipe.augment says. The true
posterior of a D4-symmetric simulation is equivariant, q(g theta | g x) = q(theta | x); a trained flow is so only
approximately (on the realistic study NSF's broad e1 posteriors of barely resolved lenses lean to negative e1:
README), and the symmetrised mixture is so exactly, at the sampling cost of the plain one (each sample draws its
element as it draws its member). Nothing is retrained: one member suffices.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lenspipe import atomic
from lenspipe.errors import DataError
from lenspipe.provenance import file_sha256
from lenspipe.rule_params import ENSEMBLE_BEST, ENSEMBLE_FLOW, ENSEMBLE_MIXTURE

log = logging.getLogger(__name__)

FLOW = ENSEMBLE_FLOW  # the config's flow name (lenspipe.rule_params), in the records and summaries
# What every member must share with the first: the mixture is one posterior over one parameter set and image.
SHARED = ("parameter_names", "prior_box", "bands", "image_shape", "normalisation", "derived")
# What the ensemble's record takes from its first member: inference on observed images (lenspipe.infer) reads the
# training images' observing conditions and the first member's OOD reference of its embeddings.
FROM_FIRST = ("observing", "ood")


def ensemble(
    *,
    members: Sequence[str | os.PathLike[str]],
    summaries: Sequence[str | os.PathLike[str]],
    epochs: Sequence[str | os.PathLike[str]],
    outputs: Mapping[str, Any],
    settings: Mapping[str, Any],
    estimator: str,
) -> dict[str, Any]:
    """Rule ensemble: the members' estimator.pt (in settings["members"] order) -> the ensemble's outputs."""
    names = list(settings["members"])
    if not len(members) == len(summaries) == len(epochs) == len(names):
        raise ValueError(f"one estimator, summary and epochs file per member of {names}")
    records = [read_member(path) for path in members]
    check_shared(estimator, names, records, members)
    member_summaries = {n: read_summary(p) for n, p in zip(names, summaries, strict=True)}
    # combine: best -> the one member kept (None: the members' mixture)
    selected = (
        best_member(names, member_summaries, summaries)
        if settings.get("combine", ENSEMBLE_MIXTURE) == ENSEMBLE_BEST
        else None
    )
    if selected:
        weights = [1.0 if n == selected else 0.0 for n in names]
        record = selected_record(estimator, names, selected, records[names.index(selected)], member_summaries)
    else:
        weights = normalised_weights(settings.get("weights"), len(names))
        record = bundle(estimator, names, weights, records, settings.get("symmetrise"))
    summary = ensemble_summary(estimator, names, weights, member_summaries, selected=selected)
    if record.get("symmetrise"):
        summary["symmetrise"] = record["symmetrise"]
    from lenspipe import provenance
    from lenspipe.posterior import save

    save(outputs["estimator"], record)
    write_epochs(outputs["epochs"], names, epochs)
    if outputs.get("provenance"):
        files = {n: {"path": str(p), "sha256": file_sha256(p)} for n, p in zip(names, members, strict=True)}
        provenance.write(
            outputs["provenance"], {"settings": dict(settings), "members": files}, {}, rule="ensemble"
        )
    atomic.write_json(outputs["summary"], summary)
    if selected:
        losses = ", ".join(f"{n} {member_summaries[n]['best_val_loss']:.4g}" for n in names)
        log.info(
            "%s: %s, the lowest validation loss of %s -> %s",
            estimator,
            selected,
            losses,
            outputs["estimator"],
        )
    else:
        log.info(
            "%s: mixture of %s (weights %s) -> %s", estimator, ", ".join(names), weights, outputs["estimator"]
        )
    return summary


def best_member(
    names: Sequence[str],
    summaries: Mapping[str, Mapping[str, Any]],
    paths: Sequence[str | os.PathLike[str]],
) -> str:
    """The member with the lowest best validation loss (the first of equals), on the same validation pairs."""
    losses = []
    for name, path in zip(names, paths, strict=True):
        loss = summaries[name].get("best_val_loss")
        if isinstance(loss, bool) or not isinstance(loss, int | float) or not math.isfinite(loss):
            raise DataError(path, f"member {name} has no finite best_val_loss to select by (got {loss!r})")
        if summaries[name].get("n_validation") != summaries[names[0]].get("n_validation"):
            raise DataError(
                path,
                f"member {name} was validated on {summaries[name].get('n_validation')} pairs, "
                f"{names[0]} on {summaries[names[0]].get('n_validation')}: their validation losses do not compare",
            )
        losses.append(float(loss))
    return names[losses.index(min(losses))]


def selected_record(
    name: str,
    names: Sequence[str],
    chosen: str,
    record: Mapping[str, Any],
    summaries: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """The selected member's record under the ensemble's name, with what it was selected from."""
    return {
        **dict(record),
        "estimator": name,
        "selection": {
            "combine": ENSEMBLE_BEST,
            "members": list(names),
            "selected": chosen,
            "best_val_loss": {n: float(summaries[n]["best_val_loss"]) for n in names},
        },
    }


def normalised_weights(weights: Sequence[float] | None, n: int) -> list[float]:
    """The mixture weights summing to one; none given: uniform."""
    if weights is None:
        return [1.0 / n] * n
    total = float(sum(weights))
    return [float(w) / total for w in weights]


def read_summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A member's training summary.json."""
    try:
        return dict(json.loads(Path(path).read_text()))
    except (OSError, ValueError) as exc:
        raise DataError(path, f"cannot read the training summary ({exc})") from exc


def read_member(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A member's estimator record (weights included); anything but a single trained estimator is a DataError."""
    import torch

    from lenspipe.posterior import FORMAT

    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(path, f"not a readable estimator file ({type(exc).__name__})") from exc
    if not isinstance(record, Mapping) or record.get("format") != FORMAT:
        raise DataError(path, f"not a lenspipe estimator (expected format {FORMAT})")
    if record.get("members"):
        raise DataError(path, "an ensemble cannot be a member of an ensemble (list its members instead)")
    return dict(record)


def check_shared(
    name: str,
    names: Sequence[str],
    records: Sequence[Mapping[str, Any]],
    paths: Sequence[str | os.PathLike[str]],
) -> None:
    """Every member shares the first's parameters, prior box, bands, image shape, normalisation, theta_E mode."""
    first = records[0]
    for record, path in zip(records[1:], paths[1:], strict=True):
        for key in SHARED:
            if record.get(key) != first.get(key):
                raise DataError(
                    path,
                    f"its {key} differs from member {names[0]}'s ({paths[0]}): members of ensemble {name} "
                    "must be trained on the same study",
                )


def bundle(
    name: str,
    names: Sequence[str],
    weights: Sequence[float],
    records: Sequence[Mapping[str, Any]],
    symmetrise: str | None = None,
) -> dict[str, Any]:
    """The mixture's estimator record (members already checked by check_shared): what its members share, the
    first's observing record, every member whole; `symmetrise` ("d4"; None or "none": not symmetrised)."""
    first = records[0]
    symmetric = {"symmetrise": symmetrise} if symmetrise not in (None, "none") else {}
    out: dict[str, Any] = {
        "format": first["format"],
        "estimator": name,
        "estimator_settings": {"flow": FLOW, "members": list(names), "weights": list(weights), **symmetric},
        **{k: first[k] for k in ("parameter_names", "prior_box", "bands", "image_shape", "normalisation")},
        **{k: first[k] for k in ("derived", *FROM_FIRST) if k in first},
        "training": {
            "epochs": sum(int(r.get("training", {}).get("epochs", 0)) for r in records),
            "members": {n: dict(r.get("training", {})) for n, r in zip(names, records, strict=True)},
        },
        "members": [dict(r, estimator=n) for n, r in zip(names, records, strict=True)],
        "weights": list(weights),
        **symmetric,
    }
    return out


def ensemble_summary(
    name: str,
    names: Sequence[str],
    weights: Sequence[float],
    summaries: Mapping[str, Mapping[str, Any]],
    selected: str | None = None,
) -> dict[str, Any]:
    """summary.json: the members' summaries, the training cost (epochs, time) as their sums (every member trained).

    A mixture has no training loss and no best epoch of its own: best_epoch and best_val_loss are null; a selection
    (`selected`: combine best) has its selected member's.
    """
    parts = [summaries[n] for n in names]
    wall = sum(float(s.get("wall_time_s") or 0.0) for s in parts)
    pairs = [float(s["n_train"]) * int(s["epochs"]) for s in parts if s.get("train_pairs_per_s")]
    seconds = [p / float(s["train_pairs_per_s"]) for p, s in zip(pairs, parts, strict=False)]
    devices = list(dict.fromkeys(str(s.get("device", "")) for s in parts))
    return {
        "estimator": name,
        "flow": FLOW,
        "members": list(names),
        "weights": list(weights),
        "epochs": sum(int(s["epochs"]) for s in parts),
        "best_epoch": summaries[selected].get("best_epoch") if selected else None,
        "best_val_loss": summaries[selected].get("best_val_loss") if selected else None,
        **({"combine": ENSEMBLE_BEST, "selected": selected} if selected else {}),
        "wall_time_s": round(wall, 3),
        "fit_time_s": round(sum(float(s.get("fit_time_s") or 0.0) for s in parts), 3),
        "cpu_time_s": round(sum(float(s["cpu_time_s"]) for s in parts), 3)
        if all(s.get("cpu_time_s") is not None for s in parts)
        else None,
        "device": devices[0] if len(devices) == 1 else " + ".join(devices),
        "train_pairs_per_s": round(sum(pairs) / sum(seconds), 2) if len(seconds) == len(parts) else None,
        "n_train": parts[0].get("n_train"),
        "n_validation": parts[0].get("n_validation"),
        "n_weights": sum(int(s.get("n_weights") or 0) for s in parts),
        "member_summaries": {n: dict(summaries[n]) for n in names},
    }


def write_epochs(
    path: str | os.PathLike[str], names: Sequence[str], epochs: Sequence[str | os.PathLike[str]]
) -> None:
    """epochs.csv: every member's epochs table, a first column `member` naming whose row it is."""
    import pandas as pd

    tables = []
    for name, file in zip(names, epochs, strict=True):
        try:
            table = pd.read_csv(file)
        except (OSError, ValueError) as exc:
            raise DataError(file, f"cannot read the epochs table ({exc})") from exc
        tables.append(table.assign(member=name)[["member", *table.columns]])
    atomic.write_text(path, pd.concat(tables, ignore_index=True).to_csv(index=False, float_format="%.8g"))
