"""GPU honesty: a job that holds a GPU from SLURM (or asks for `device: cuda`) while CUDA is unusable
fails with one line naming the node, or trains on the CPU with a WARNING in its log and its
summary.json, per `training.gpu_fallback`; `auto` outside a GPU allocation stays quiet.
CUDA is forced unavailable (torch.cuda.is_available -> False) in every test."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from lenspipe.device import choose_device, slurm_gpus
from lenspipe.errors import DeviceError, LenspipeError

from .test_train import make_study, run_training

# What SLURM 22.05 sets in a job step that holds one GPU (srun inside an sbatch job).
SLURM_GPU_JOB = {"SLURM_JOB_ID": "4242", "SLURM_JOB_GPUS": "1", "SLURM_STEP_GPUS": "1", "SLURM_GPUS_ON_NODE": "1",
                 "CUDA_VISIBLE_DEVICES": "0", "SLURMD_NODENAME": "gpu017"}  # fmt: skip
SLURM_CPU_JOB = {"SLURM_JOB_ID": "4243", "SLURMD_NODENAME": "cpu003"}


@pytest.fixture(autouse=True)
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """CUDA unusable, as on a GPU node whose driver is broken or with a CPU-only torch."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_slurm_gpus_reads_the_allocation() -> None:
    assert slurm_gpus(SLURM_GPU_JOB) == "SLURM job 4242 holds GPU 1"
    assert slurm_gpus({"SLURM_JOB_ID": "7", "SLURM_GPUS_ON_NODE": "2"}) == "SLURM job 7 holds GPU 2 GPU(s)"
    assert slurm_gpus(SLURM_CPU_JOB) is None
    assert slurm_gpus({"SLURM_JOB_ID": "7", "SLURM_GPUS_ON_NODE": "0"}) is None
    assert slurm_gpus({"CUDA_VISIBLE_DEVICES": "0"}) is None  # a workstation's GPU: not a SLURM allocation


def test_held_gpu_without_cuda_fails_with_one_line_naming_the_node() -> None:
    with pytest.raises(DeviceError) as info:
        choose_device("auto", "fail", env=SLURM_GPU_JOB)
    line = str(info.value)
    assert "\n" not in line and isinstance(info.value, LenspipeError)
    assert "node gpu017" in line and "SLURM job 4242 holds GPU 1" in line
    assert "torch.cuda.is_available() is False" in line and "training.gpu_fallback is fail" in line


def test_held_gpu_without_cuda_warns_and_trains_on_cpu(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="lenspipe.device"):
        choice = choose_device("auto", "warn", env=SLURM_GPU_JOB)
    assert choice.device.type == "cpu"
    assert choice.warning and "node gpu017" in choice.warning and "training on the CPU" in choice.warning
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [choice.warning]


def test_cuda_asked_without_a_gpu_follows_the_fallback() -> None:
    choice = choose_device("cuda", "warn", env=SLURM_CPU_JOB)
    assert choice.device.type == "cpu" and "training.device is cuda" in choice.warning
    assert "node cpu003" in choice.warning
    with pytest.raises(DeviceError, match="node cpu003: training.device is cuda"):
        choose_device("cuda", "fail", env=SLURM_CPU_JOB)


def test_auto_outside_a_gpu_allocation_keeps_quiet(caplog: pytest.LogCaptureFixture) -> None:
    for env in (SLURM_CPU_JOB, {}):
        with caplog.at_level(logging.INFO, logger="lenspipe.device"):
            choice = choose_device("auto", "fail", env=env)  # fail is never read: no GPU was promised
        assert choice.device.type == "cpu" and choice.warning is None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_summary_records_the_gpu_warning(
    tmp_path: Path, tiny_config: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A training job inside a GPU allocation with unusable CUDA: summary.json says so; without one, null."""
    study = make_study(tmp_path, tiny_config)
    for name, value in SLURM_GPU_JOB.items():
        monkeypatch.setenv(name, value)
    summary = run_training(study, "maf", tmp_path / "held", max_epochs=1, gpu_fallback="warn")
    written = json.loads((tmp_path / "held" / "summary.json").read_text())
    assert written["device"].startswith("cpu") and written == summary
    assert "node gpu017" in written["device_warning"] and "SLURM job 4242" in written["device_warning"]
    for name in SLURM_GPU_JOB:
        monkeypatch.delenv(name)
    quiet = run_training(study, "maf", tmp_path / "quiet", max_epochs=1, gpu_fallback="fail")
    assert quiet["device_warning"] is None
