"""Every rule's view of the config: the slice each job depends on (its params), shard sizes, memory estimates,
the optional `observed` section's images.

rules/common.smk calls these while Snakemake parses the workflow, on every invocation: kept free of
torch, sbi and astropy. A job's params are exactly what it depends on, so changing anything else reruns nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lenspipe.errors import ConfigError
from lenspipe.seeds import shard_seed

# Where and how fast a job trains, not what it trains: changing them must not retrain anything.
EXECUTION_KEYS = ("device", "gpu_fallback", "threads")
# Optional training settings (no schema defaults) and what an absent key means. A key set to this value is left
# out of the training params, so neither an absent key nor a spelled-out default changes a study's params (and
# retrains it). lenspipe.trainer.TrainingSettings reads its defaults from here. `weight_decay` has no "off" value:
# absent means Adam without decay; nor has `memory_budget_mb`: absent means no budget (training data in memory).
OPTIONAL_TRAINING: dict[str, Any] = {
    "schedule": "none",
    "warmup_epochs": 0,
    "lr_decay": 0.5,
    "lr_patience": 5,
    "min_learning_rate": 0.0,
    "smoothing": 0.0,
    "min_delta": 0.0,
    "augment": "none",
    "theta_E": "inferred",
    "loader": "auto",
}


def shard_ids(config: Mapping[str, Any]) -> list[str]:
    """Zero-padded shard indices of the config."""
    return [f"{i:04d}" for i in range(config["simulation"]["n_shards"])]


def shard_size(config: Mapping[str, Any], shard: str | int) -> int:
    """Images in shard `shard`: n_images / n_shards, the remainder to the first shards."""
    n, k = config["simulation"]["n_images"], config["simulation"]["n_shards"]
    return n // k + (1 if int(shard) < n % k else 0)


def simulate_params(config: Mapping[str, Any], shard: str | int) -> dict[str, Any]:
    """The slice of config a shard depends on (not the shard count: adding shards keeps old ones)."""
    return {
        "simulation": {k: v for k, v in config["simulation"].items() if k not in ("n_images", "n_shards")},
        "priors": config["priors"],
        "parameters": config["parameters"],
        "shard": int(shard),
        "size": shard_size(config, shard),
        "seed": shard_seed(config["seed"], int(shard)),
    }


def split_mem_mb(config: Mapping[str, Any]) -> int:
    """Memory of the split job in MB (lenspipe.split): a shard's images twice, and for the statistics one band of
    the training images in float64 (exact, up to 1 GiB: lenspipe.normalisation.EXACT_MAX_BYTES) or two float64
    chunks, plus headroom."""
    sim = config["simulation"]
    pixels = sim["num_pix"] ** 2
    shard = shard_size(config, 0) * 4 * len(sim["bands"]) * pixels
    band = 8 * sim["n_images"] * pixels
    stats = band if band <= 2**30 else 2 * 8 * 256 * len(sim["bands"]) * pixels
    return int((2 * shard + stats) / 2**20) + 1024


def training_params(config: Mapping[str, Any], estimator: str) -> dict[str, Any]:
    """The config slice one estimator's training depends on (the train rule's params)."""
    if estimator not in config["estimators"]:
        raise ConfigError(f"estimators.{estimator}", "an estimator of the config", estimator)
    sim = config["simulation"]
    return {
        "training": {
            k: v
            for k, v in config["training"].items()
            if k not in EXECUTION_KEYS and not (k in OPTIONAL_TRAINING and v == OPTIONAL_TRAINING[k])
        },
        "embedding": dict(config["embedding"]),
        "estimator": dict(config["estimators"][estimator]),
        "parameters": list(config["parameters"]),
        "priors": {k: dict(v) for k, v in config["priors"].items()},
        "cosmology": dict(sim["cosmology"]),
        "bands": list(sim["bands"]),
        "num_pix": int(sim["num_pix"]),
        "seed": int(config["seed"]),
    }


# --------------------------------------------------------------------------------------------------
# ensemble: an `estimators:` entry with `flow: ensemble` mixes other entries' trained estimators (no training).

ENSEMBLE_FLOW = "ensemble"
ENSEMBLE_KEYS = ("flow", "members", "weights", "combine", "symmetrise")
# `combine`: the mixture of the members (the default), or only the member of lowest validation loss
ENSEMBLE_MIXTURE, ENSEMBLE_BEST = "mixture", "best"
ENSEMBLE_COMBINE = (ENSEMBLE_MIXTURE, ENSEMBLE_BEST)
# `symmetrise: d4`: the mixture also over the square's 8 rotations/reflections of the image (lenspipe.posterior)
ENSEMBLE_SYMMETRISE = ("none", "d4")


def is_ensemble(entry: Mapping[str, Any]) -> bool:
    """Whether an `estimators:` entry is an ensemble of other entries."""
    return isinstance(entry, Mapping) and entry.get("flow") == ENSEMBLE_FLOW


def ensemble_names(config: Mapping[str, Any]) -> list[str]:
    """The config's ensembles, in config order."""
    return [name for name, entry in config["estimators"].items() if is_ensemble(entry)]


def trained_names(config: Mapping[str, Any]) -> list[str]:
    """The config's estimators a train job makes (all but the ensembles), in config order."""
    return [name for name, entry in config["estimators"].items() if not is_ensemble(entry)]


def ensemble_params(config: Mapping[str, Any], estimator: str) -> dict[str, Any]:
    """The ensemble rule's params: its members and, if given, their weights and how they combine (the members'
    files are its input)."""
    entry = config["estimators"].get(estimator)
    if not is_ensemble(entry):
        raise ConfigError(f"estimators.{estimator}", "an ensemble of the config (flow: ensemble)", estimator)
    params = {k: entry[k] for k in ("members", "weights", "combine") if k in entry}
    if entry.get("symmetrise", "none") != "none":  # none is the absent value: the same ensemble, not re-run
        params["symmetrise"] = entry["symmetrise"]
    return params


def check_ensembles(config: Mapping[str, Any]) -> None:
    """Each ensemble: at least 2 distinct members that are other, trained estimators of the config (1 is enough when
    symmetrised); as many positive weights as members if weights are given (a mixture only); `combine` mixture or
    best; `symmetrise` none or d4 (a mixture only, where the simulation is D4-symmetric: lenspipe.augment); no
    other setting."""
    trained = trained_names(config)
    for name in ensemble_names(config):
        entry = config["estimators"][name]
        key = f"estimators.{name}"
        for option in entry:
            if option not in ENSEMBLE_KEYS:
                raise ConfigError(
                    f"{key}.{option}",
                    "a setting of an ensemble (members, weights, combine, symmetrise)",
                    "unknown key",
                )
        symmetrise = entry.get("symmetrise", "none")
        if symmetrise not in ENSEMBLE_SYMMETRISE:
            raise ConfigError(f"{key}.symmetrise", " or ".join(ENSEMBLE_SYMMETRISE), symmetrise)
        fewest = 1 if symmetrise == "d4" else 2
        members = entry.get("members")
        if not isinstance(members, list) or len(members) < fewest:
            wanted = (
                "a list of at least 1 estimator of the config (symmetrise: d4)"
                if fewest == 1
                else "a list of at least 2 estimators of the config (or 1 with symmetrise: d4)"
            )
            raise ConfigError(f"{key}.members", wanted, members)
        for member in members:
            if member == name or is_ensemble(config["estimators"].get(member)):
                raise ConfigError(
                    f"{key}.members",
                    "estimators trained by the config (an ensemble cannot be a member)",
                    member,
                )
            if member not in trained:
                raise ConfigError(
                    f"{key}.members", f"estimators of the config ({', '.join(trained)})", member
                )
        if len(set(members)) != len(members):
            duplicate = next(m for m in members if members.count(m) > 1)
            raise ConfigError(f"{key}.members", "each member once (use weights to weigh one more)", duplicate)
        combine = entry.get("combine", ENSEMBLE_MIXTURE)
        if combine not in ENSEMBLE_COMBINE:
            raise ConfigError(f"{key}.combine", " or ".join(ENSEMBLE_COMBINE), combine)
        if symmetrise == "d4":
            if combine == ENSEMBLE_BEST:
                raise ConfigError(
                    f"{key}.symmetrise",
                    "none with combine: best (symmetrise a mixture: list the kept member alone)",
                    symmetrise,
                )
            from lenspipe import augment

            augment.check_config(config, setting=f"{key}.symmetrise: d4")
        weights = entry.get("weights")
        if weights is not None and combine == ENSEMBLE_BEST:
            raise ConfigError(
                f"{key}.weights",
                "no weights with combine: best (it keeps one member, not a mixture)",
                weights,
            )
        if weights is not None:
            ok = isinstance(weights, list) and all(
                isinstance(w, int | float) and not isinstance(w, bool) and w > 0 for w in weights
            )
            if not ok or len(weights) != len(members):
                raise ConfigError(
                    f"{key}.weights",
                    f"{len(members)} positive numbers, one per member ({', '.join(members)})",
                    weights,
                )


def execution_params(config: Mapping[str, Any]) -> dict[str, str]:
    """Where the training runs (device, GPU fallback): a params entry of its own, read by the job from params."""
    training = config["training"]
    return {
        "device": str(training.get("device", "auto")),
        "gpu_fallback": str(training.get("gpu_fallback", "warn")),
    }


def train_threads(config: Mapping[str, Any]) -> int:
    """Threads of a training job."""
    return config["training"].get("threads", 1)


def train_mem_mb(config: Mapping[str, Any]) -> int:
    """Memory of a training job in MB: the training images in float32 (or the streaming loader's budget when it
    streams them), the networks, headroom."""
    sim, training = config["simulation"], config["training"]
    image_bytes = 4 * len(sim["bands"]) * sim["num_pix"] ** 2
    in_memory = int(1.2 * sim["n_images"] * image_bytes / 2**20)
    budget = training.get("memory_budget_mb")
    loader = training.get("loader", OPTIONAL_TRAINING["loader"])
    if loader == "stream" or (loader == "auto" and budget is not None and in_memory > budget):
        return int(budget if budget is not None else 2048) + 3072
    return in_memory + 3072


# --------------------------------------------------------------------------------------------------
# infer, infer_join: the optional `observed` section (observed FITS images inferred by every estimator).

# Keys of `observed` that shape the results besides the images (calibration, NaN filling), with their defaults.
OBSERVED_DEFAULTS: dict[str, Any] = {
    "zero_points": None,
    "exposure_times": None,
    "zero_point_key": "MAGZERO",
    "exposure_time_key": "EXPTIME",
    "nanomaggies": False,
    "fill_nonfinite": False,
}


def has_observed(config: Mapping[str, Any]) -> bool:
    """Whether the config asks for inference on observed images (an `observed` section)."""
    return bool(config.get("observed"))


def observed(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The `observed` section; a config without it cannot build an infer target."""
    if not has_observed(config):
        raise ConfigError(
            "observed",
            "an `observed` section (observed.images: the FITS images to infer) for the infer targets",
        )
    return config["observed"]


def infer_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """The infer rule's params: the images, their calibration, samples per image and the seed."""
    section = observed(config)
    return {
        "images": [dict(i) if isinstance(i, Mapping) else str(i) for i in section["images"]],
        **{k: section.get(k, v) for k, v in OBSERVED_DEFAULTS.items()},
        "num_samples": int(section.get("num_samples", config["evaluation"]["num_samples"])),
        "seed": int(config["seed"]),
    }


def observed_files(config: Mapping[str, Any]) -> list[str]:
    """Every FITS file the observed images are read from ({band} patterns expanded with the study's bands)."""
    from lenspipe.fits_io import parse_image  # numpy only: astropy is imported when a file is read

    section = observed(config)
    bands = config["simulation"]["bands"]
    files: list[str] = []
    for entry in section["images"]:
        files += [str(p) for p in parse_image(entry, bands).paths()]
    return list(dict.fromkeys(files))
