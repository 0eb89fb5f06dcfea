"""Where training runs: auto (CUDA when usable, else CPU), cpu or cuda, with a GPU fallback policy.

On a cluster a job asking for a GPU may land without a usable one; `training.gpu_fallback` decides
whether it then trains on the CPU (with a warning) or fails. The choice is logged with
CUDA_VISIBLE_DEVICES, which SLURM sets to the GPUs it granted.
"""

from __future__ import annotations

import logging
import os

import torch

from lenspipe.errors import ConfigError

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
FALLBACKS = ("warn", "fail")


def cuda_problem(device: str = "cuda") -> str | None:
    """Why CUDA cannot be used (None if a tensor can be placed on `device`)."""
    if not torch.cuda.is_available():
        return "torch.cuda.is_available() is False"
    try:
        torch.zeros(1, device=device)
    except Exception as exc:  # driver/runtime errors come in many types
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def resolve_device(requested: str = "auto", gpu_fallback: str = "warn") -> torch.device:
    """The torch device for `training.device`; a missing GPU warns (CPU) or raises, per `gpu_fallback`."""
    if requested not in DEVICES and not requested.startswith("cuda:"):
        raise ConfigError("training.device", "one of " + ", ".join(DEVICES), requested)
    if gpu_fallback not in FALLBACKS:
        raise ConfigError("training.gpu_fallback", "one of " + ", ".join(FALLBACKS), gpu_fallback)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
    if requested == "cpu":
        device = torch.device("cpu")
    else:
        target = "cuda" if requested == "auto" else requested
        problem = cuda_problem(target)
        if problem is None:
            device = torch.device(target)
        elif requested == "auto":
            log.info("no usable CUDA GPU (%s): using the CPU", problem)
            device = torch.device("cpu")
        elif gpu_fallback == "fail":
            raise ConfigError(
                "training.device",
                "a usable CUDA GPU (training.gpu_fallback is fail)",
                f"{requested}: {problem}; CUDA_VISIBLE_DEVICES={visible}",
            )
        else:
            log.warning(
                "training.device is %s but no usable CUDA GPU (%s; CUDA_VISIBLE_DEVICES=%s): "
                "training on the CPU (training.gpu_fallback: warn)",
                requested,
                problem,
                visible,
            )
            device = torch.device("cpu")
    log.info("device: %s", describe(device))
    return device


def describe(device: torch.device) -> str:
    """One line naming the device: GPU model and CUDA_VISIBLE_DEVICES, or CPU and its torch threads."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)}; CUDA_VISIBLE_DEVICES={visible})"
    return f"cpu ({torch.get_num_threads()} torch threads; CUDA_VISIBLE_DEVICES={visible})"


def set_threads(threads: int) -> None:
    """Use `threads` torch intra-op threads (the rule's threads), and as many inter-op threads if still allowed."""
    threads = max(1, int(threads))
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # only settable before the first parallel work in the process
        pass
