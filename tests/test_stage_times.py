"""benchmarks/stage_times.py: a resumed job counts all its segments (its own record), not only the last one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import load_benchmark

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _bench(run: Path, stage: str, name: str, seconds: float, cpu: float, rss: float = 500.0) -> None:
    path = run / "benchmarks" / stage / f"{name}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{seconds}\t0:00:00\t{rss}\t0\t0\t0\t0\t0\t100\t{cpu}\n")


def _record(run: Path, stage: str, name: str, file: str, **values: float | None) -> None:
    path = run / stage / name / file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values))


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """A run whose nsf was trained in two segments (killed, resumed) and sampled in two; maf in one go."""
    run = tmp_path / "results" / "demo"
    _bench(run, "train", "nsf", 100.0, 190.0)  # the last segment only
    _record(run, "train", "nsf", "summary.json", wall_time_s=1000.0, cpu_time_s=1900.0, resumed_from_epoch=40)
    _bench(run, "train", "maf", 300.0, 580.0)  # the record is a little shorter (no interpreter start)
    _record(run, "train", "maf", "summary.json", wall_time_s=290.0, cpu_time_s=570.0, resumed_from_epoch=None)
    _bench(run, "sample", "nsf", 20.0, 39.0)
    _record(run, "sample", "nsf", "timing.json", wall_time_s=60.0, sampling_s=58.0)  # no CPU time recorded
    _bench(run, "sample", "maf", 30.0, 59.0)  # no record: the benchmark file is all there is
    _bench(run, "evaluate", "nsf", 5.0, 9.0)
    return run


def test_resumed_jobs_count_every_segment(run: Path) -> None:
    """A resumed job's time and CPU time are its record's totals; its wall span stays the last segment's."""
    stage_times = load_benchmark("stage_times")
    train = {j.name: j for j in stage_times.read_jobs(run / "benchmarks" / "train")}
    assert (train["nsf"].seconds, train["nsf"].cpu_seconds, train["nsf"].resumed) == (1000.0, 1900.0, True)
    assert train["nsf"].end - train["nsf"].start == pytest.approx(100.0)
    assert (train["maf"].seconds, train["maf"].cpu_seconds, train["maf"].resumed) == (300.0, 580.0, False)
    sample = {j.name: j for j in stage_times.read_jobs(run / "benchmarks" / "sample")}
    assert (sample["nsf"].seconds, sample["nsf"].cpu_seconds, sample["nsf"].resumed) == (60.0, 39.0, True)
    assert (sample["maf"].seconds, sample["maf"].resumed) == (30.0, False)
    (evaluate,) = stage_times.read_jobs(run / "benchmarks" / "evaluate")
    assert (evaluate.seconds, evaluate.resumed) == (5.0, False)  # no records for other stages


def test_table_counts_resumed_jobs(run: Path) -> None:
    """The table's sums use the totals and say how many jobs were resumed."""
    stage_times = load_benchmark("stage_times")
    rows = {
        cells[0]: cells[1:]
        for line in stage_times.table(run / "benchmarks").splitlines()[2:]
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    assert rows["train"][:4] == ["2 (1)", rows["train"][1], "21:40", "16:40 (nsf)"]
    assert rows["train"][4] == "41:20"  # CPU: 1900 + 580 s
    assert rows["sample"][:4] == ["2 (1)", rows["sample"][1], "1:30", "1:00 (nsf)"]
    assert rows["evaluate"][0] == "1"
    assert rows["**all**"][0] == "5 (2)" and rows["**all**"][3] == ""
