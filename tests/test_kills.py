"""Kills: a simulation, training or sampling job killed with SIGKILL midway leaves nothing that looks
complete, and a plain re-run finishes the work (training continues from its checkpoint)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from lenspipe.store import open_store

from .conftest import BIN, copy_workflow, snakemake, write_config

pytestmark = pytest.mark.slow


def _job_process(parent: psutil.Process, script: str) -> psutil.Process | None:
    """The Python process running the Snakemake script `script` (e.g. 'train.py') under `parent`."""
    for child in parent.children(recursive=True):
        try:
            cmd = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if re.search(rf"\.snakemake/scripts/\w+\.{re.escape(script)}", cmd):
            return child
    return None


def _kill_job_midway(work: Path, cfg: Path, target: str, script: str, ready, timeout: float = 300) -> str:
    """Start snakemake on `target`, SIGKILL the job's process once `ready()` holds, return snakemake's output."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.Popen(
        [str(BIN / "snakemake"), target, "--cores", "1", "--configfile", str(cfg)],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + timeout
    killed = False
    while time.monotonic() < deadline and proc.poll() is None:
        job = _job_process(parent, script)
        if job is not None and ready():
            job.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.05)
    out, _ = proc.communicate(timeout=120)
    assert killed, f"the {script} job was not caught running:\n{out[-3000:]}"
    assert proc.returncode != 0, out[-3000:]
    return out


def _visible_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else []


@pytest.fixture(scope="module")
def split_done(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A copy of the workflow with the tiny study simulated and split, set for longer training and sampling."""
    import yaml

    from .conftest import REPO

    work = copy_workflow(tmp_path_factory.mktemp("kills"))
    config = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    config["training"].update(max_epochs=40, stop_after_epochs=40)
    config["estimators"] = {"maf": {"flow": "maf", "num_transforms": 2, "hidden_features": 32}}
    # 100,000 samples per image: one test image per sampling batch, so the job spends several batches midway
    config["evaluation"]["num_samples"] = 100_000
    cfg = write_config(work / "config" / "kills.yaml", config)
    snakemake(["--cores", "2", "--configfile", str(cfg), "--until", "split"], cwd=work)
    return work, cfg


def test_killed_simulation_leaves_no_shard(tmp_path: Path, tiny_config: dict) -> None:
    work = copy_workflow(tmp_path)
    tiny_config["simulation"].update(n_images=500, n_shards=1)
    cfg = write_config(work / "config" / "big_shard.yaml", tiny_config)
    shard = "results/test/simulate/shard_0000.zarr"
    started = time.monotonic()
    _kill_job_midway(work, cfg, shard, "simulate.py", lambda: time.monotonic() - started > 6)
    folder = work / "results/test/simulate"
    assert not (work / shard).exists()
    assert [n for n in _visible_files(folder) if n.endswith(".zarr")] == []
    snakemake([shard, "--cores", "1", "--configfile", str(cfg)], cwd=work)
    assert len(open_store(work / shard)) == 500
    # the killed job's temporary (if it was killed while writing) is removed by the re-run: its process is gone
    assert [p.name for p in folder.iterdir() if ".tmp-" in p.name] == []


def test_killed_training_resumes_from_checkpoint(split_done: tuple[Path, Path]) -> None:
    work, cfg = split_done
    folder = work / "results/test/train/maf"
    log = work / "results/test/logs/train/maf.log"
    target = "results/test/train/maf/estimator.pt"

    def after_epoch_3() -> bool:
        return log.exists() and re.search(r"epoch 3/40", log.read_text()) is not None

    _kill_job_midway(work, cfg, target, "train.py", after_epoch_3)
    assert not (folder / "estimator.pt").exists() and not (folder / "summary.json").exists()
    assert (folder / "checkpoint.pt").exists()
    snakemake([target, "--cores", "1", "--configfile", str(cfg)], cwd=work)
    text = log.read_text()
    resumed = re.search(r"resuming from the checkpoint after epoch (\d+)", text)
    assert resumed and int(resumed.group(1)) >= 3, text[-2000:]
    assert not re.search(r"epoch 1/40", text), "training started over"
    epochs = (folder / "epochs.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in epochs] == list(range(1, 41))


def test_killed_sampling_leaves_no_samples(split_done: tuple[Path, Path]) -> None:
    work, cfg = split_done
    target = "results/test/sample/maf/samples.zarr"
    snakemake(["results/test/train/maf/estimator.pt", "--cores", "1", "--configfile", str(cfg)], cwd=work)
    resume = work / "results/test/sample/maf/.samples.zarr.partial/resume.json"

    def first_batch_written() -> bool:
        # the job is midway once its partial store records a finished batch (a fixed time raced a fast machine)
        return resume.exists()

    _kill_job_midway(work, cfg, target, "sample.py", first_batch_written)
    assert not (work / target).exists()
    assert [n for n in _visible_files(work / "results/test/sample/maf") if n.endswith(".zarr")] == []
    snakemake([target, "--cores", "1", "--configfile", str(cfg)], cwd=work)
    log = (work / "results/test/logs/sample/maf.log").read_text()
    assert re.search(r"resuming .* from image [1-9]", log), log[-2000:]
    import zarr

    samples = zarr.open_group(str(work / target), mode="r")
    assert samples["samples"].shape[1] == 100_000
