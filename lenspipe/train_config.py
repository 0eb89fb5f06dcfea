"""The train rule's view of the config: the slice each estimator's training depends on, and its memory.

Kept free of torch and sbi: Snakemake imports it while parsing the workflow, on every invocation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from lenspipe.errors import ConfigError

# Where and how fast a job trains, not what it trains: changing them must not retrain anything.
EXECUTION_KEYS = ("device", "gpu_fallback", "threads")


def training_params(config: Mapping[str, Any], estimator: str) -> dict[str, Any]:
    """The config slice one estimator's training depends on (the train rule's params)."""
    if estimator not in config["estimators"]:
        raise ConfigError(f"estimators.{estimator}", "an estimator of the config", estimator)
    sim = config["simulation"]
    return {
        "training": {k: v for k, v in config["training"].items() if k not in EXECUTION_KEYS},
        "embedding": dict(config["embedding"]),
        "estimator": dict(config["estimators"][estimator]),
        "parameters": list(config["parameters"]),
        "priors": {k: dict(v) for k, v in config["priors"].items()},
        "cosmology": dict(sim["cosmology"]),
        "bands": list(sim["bands"]),
        "num_pix": int(sim["num_pix"]),
        "seed": int(config["seed"]),
    }


def execution_params(config: Mapping[str, Any]) -> dict[str, str]:
    """Where the training runs (device, GPU fallback): a params entry of its own, read by the job from params."""
    training = config["training"]
    return {
        "device": str(training.get("device", "auto")),
        "gpu_fallback": str(training.get("gpu_fallback", "warn")),
    }


def train_params(config: Mapping[str, Any]) -> Callable[[Any], dict[str, Any]]:
    """The train rule's params function: wildcards -> training_params(config, wildcards.estimator)."""

    def params(wildcards: Any) -> dict[str, Any]:
        return training_params(config, wildcards.estimator)

    return params


def train_mem_mb(config: Mapping[str, Any]) -> int:
    """Memory of a training job in MB: the training images in float32, the networks, headroom."""
    sim = config["simulation"]
    image_bytes = 4 * len(sim["bands"]) * sim["num_pix"] ** 2
    return int(1.2 * sim["n_images"] * image_bytes / 2**20) + 3072
