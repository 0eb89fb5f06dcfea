"""Where training runs: auto (CUDA when usable, else CPU), cpu or cuda, with a GPU fallback policy.

On a cluster a job that holds a GPU from SLURM may land on a node whose CUDA is unusable (driver,
wrong torch build); `training.gpu_fallback` then decides whether it trains on the CPU with a warning
(in the job's log and its summary.json) or fails with one line naming the node. Outside a GPU
allocation, `auto` uses the CPU quietly. The choice is logged with CUDA_VISIBLE_DEVICES.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from lenspipe.errors import ConfigError, DeviceError

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


@dataclass(frozen=True)
class DeviceChoice:
    """The device a job runs on, and the warning to record (job log and summary) when it fell back to the CPU."""

    device: torch.device
    warning: str | None = None


def slurm_gpus(env: Mapping[str, str] | None = None) -> str | None:
    """The GPUs this process holds from SLURM ("SLURM job 12 holds GPU 0"), or None outside a GPU allocation."""
    env = os.environ if env is None else env
    job = env.get("SLURM_JOB_ID")
    gpus = next((env[k] for k in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS") if env.get(k)), "")
    if not gpus and env.get("SLURM_GPUS_ON_NODE", "0") not in ("", "0"):
        gpus = f"{env['SLURM_GPUS_ON_NODE']} GPU(s)"
    if not job or not gpus:
        return None
    return f"SLURM job {job} holds GPU {gpus}"


def node_name(env: Mapping[str, str] | None = None) -> str:
    """This machine's name as SLURM knows it (SLURMD_NODENAME inside a job), else the host name."""
    env = os.environ if env is None else env
    return env.get("SLURMD_NODENAME") or socket.gethostname()


def choose_device(
    requested: str = "auto", gpu_fallback: str = "warn", env: Mapping[str, str] | None = None
) -> DeviceChoice:
    """The torch device for `training.device`, honest about GPUs: a GPU the job holds from SLURM (or
    `device: cuda`) that CUDA cannot use fails the job or warns, per `gpu_fallback`; `auto` with no GPU
    allocation falls back to the CPU quietly."""
    if requested not in DEVICES and not requested.startswith("cuda:"):
        raise ConfigError("training.device", "one of " + ", ".join(DEVICES), requested)
    if gpu_fallback not in FALLBACKS:
        raise ConfigError("training.gpu_fallback", "one of " + ", ".join(FALLBACKS), gpu_fallback)
    env = os.environ if env is None else env
    visible = env.get("CUDA_VISIBLE_DEVICES", "unset")
    held = slurm_gpus(env)
    warning = None
    if requested == "cpu":
        device = torch.device("cpu")
        if held:
            log.warning("%s but training.device is cpu: the GPU stays idle", held)
    else:
        target = "cuda" if requested == "auto" else requested
        problem = cuda_problem(target)
        if problem is None:
            device = torch.device(target)
        elif requested == "auto" and not held:
            log.info("no usable CUDA GPU (%s): using the CPU", problem)
            device = torch.device("cpu")
        else:
            asked = held or f"training.device is {requested}"
            reason = f"node {node_name(env)}: {asked} but CUDA is unusable ({problem}; CUDA_VISIBLE_DEVICES={visible})"
            if gpu_fallback == "fail":
                raise DeviceError(f"{reason}; training.gpu_fallback is fail")
            warning = f"{reason}: training on the CPU (training.gpu_fallback: warn)"
            log.warning("%s", warning)
            device = torch.device("cpu")
    log.info("device: %s", describe(device))
    return DeviceChoice(device, warning)


def resolve_device(requested: str = "auto", gpu_fallback: str = "warn") -> torch.device:
    """The torch device of `choose_device` (for callers that need no warning record)."""
    return choose_device(requested, gpu_fallback).device


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
