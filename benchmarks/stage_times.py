"""Wall time of each stage of a finished (or partly finished) run, from Snakemake's `benchmark:` files.

Every rule writes results/<run>/benchmarks/<rule>/<job>.tsv when a job ends (seconds, CPU seconds, peak RSS).
A stage's wall span runs from the earliest job start (file time minus its seconds) to the latest job end, so
jobs that ran side by side count once. Prints a Markdown table (the README's Results section uses it).

A job killed and resumed (training from its checkpoint, sampling from its finished batches) leaves a benchmark
file for its last segment only; its own record (train/<job>/summary.json, sample/<job>/timing.json) sums every
segment, so a job's time and CPU time are the larger of the two (its wall span still comes from the file).

Usage: .venv/bin/python benchmarks/stage_times.py [--config config/config.yaml] [--results results]
"""

from __future__ import annotations

import argparse
import csv
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
STAGES = ("simulate", "split", "train", "ensemble", "sample", "evaluate", "compare")
OPTIONAL = ("ensemble",)  # a row only in a study whose config has ensembles
# The jobs' own records of time summed over resumed segments: stage -> (file in <run>/<stage>/<job>/, wall key,
# CPU key or None).
RECORDS = {
    "train": ("summary.json", "wall_time_s", "cpu_time_s"),
    "sample": ("timing.json", "wall_time_s", None),
}


@dataclass(frozen=True)
class Job:
    """One job's benchmark record: its name, wall and CPU seconds, peak RSS, and when it ended."""

    name: str
    seconds: float
    cpu_seconds: float
    max_rss_mb: float
    end: float
    # the benchmark file's seconds when the job's record (its total over resumed segments) is larger
    segment_seconds: float | None = None

    @property
    def start(self) -> float:
        return self.end - (self.seconds if self.segment_seconds is None else self.segment_seconds)

    @property
    def resumed(self) -> bool:
        return self.segment_seconds is not None


def read_jobs(folder: Path) -> list[Job]:
    """The jobs of one rule: one TSV per job (the last row counts when Snakemake's --benchmark-repeats is used);
    a train or sample job's time and CPU time are its record's totals where those are larger (resumed jobs)."""
    jobs = []
    for path in sorted(folder.glob("*.tsv")):
        with path.open() as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if not rows:
            continue
        row = rows[-1]
        jobs.append(
            Job(
                path.stem,
                float(row["s"]),
                float(row.get("cpu_time") or "nan"),
                float(row.get("max_rss") or "nan"),
                path.stat().st_mtime,
            )
        )
    if folder.name in RECORDS:
        jobs = [_with_record(job, folder.name, folder.parent.parent / folder.name / job.name) for job in jobs]
    return jobs


def _with_record(job: Job, stage: str, outputs: Path) -> Job:
    """The job with its own record's wall and CPU totals where they exceed the benchmark file's (a resumed job)."""
    name, wall_key, cpu_key = RECORDS[stage]
    try:
        record = json.loads((outputs / name).read_text())
    except (OSError, ValueError):
        return job  # no record (a failed job, or an older run): the benchmark file is all there is
    wall = record.get(wall_key)
    cpu = record.get(cpu_key) if cpu_key else None
    if wall is None or float(wall) <= job.seconds:
        return job
    return Job(
        job.name,
        float(wall),
        float(cpu) if cpu is not None and float(cpu) > job.cpu_seconds else job.cpu_seconds,
        job.max_rss_mb,
        job.end,
        segment_seconds=job.seconds,
    )


def table(bench: Path) -> str:
    """Markdown table: per stage, jobs, wall span, sum and longest job, CPU seconds, peak RSS."""
    lines = [
        "| stage | jobs (resumed) | wall span | sum of job times | longest job | CPU time | peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    every: list[Job] = []
    for stage in STAGES:
        jobs = read_jobs(bench / stage)
        if not jobs and stage in OPTIONAL:
            continue
        if not jobs:
            lines.append(f"| {stage} | 0 | not run | | | | |")
            continue
        every += jobs
        span = max(j.end for j in jobs) - min(j.start for j in jobs)
        longest = max(jobs, key=lambda j: j.seconds)
        lines.append(
            f"| {stage} | {_count(jobs)} | {_hms(span)} | {_hms(sum(j.seconds for j in jobs))} | "
            f"{_hms(longest.seconds)} ({longest.name}) | {_hms(sum(j.cpu_seconds for j in jobs))} | "
            f"{max(j.max_rss_mb for j in jobs) / 1024:.1f} GiB |"
        )
    if every:
        span = max(j.end for j in every) - min(j.start for j in every)
        lines.append(
            f"| **all** | {_count(every)} | **{_hms(span)}** | {_hms(sum(j.seconds for j in every))} | | "
            f"{_hms(sum(j.cpu_seconds for j in every))} | |"
        )
    return "\n".join(lines)


def _count(jobs: list[Job]) -> str:
    resumed = sum(j.resumed for j in jobs)
    return f"{len(jobs)} ({resumed})" if resumed else str(len(jobs))


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    parser.add_argument("--results", default=str(REPO / "results"))
    args = parser.parse_args()
    run = yaml.safe_load(Path(args.config).read_text())["run"]
    bench = Path(args.results) / run / "benchmarks"
    if not bench.is_dir():
        raise SystemExit(f"{bench}: no benchmark files (has the run '{run}' started?)")
    print(f"run '{run}' ({bench})")
    print(table(bench))


if __name__ == "__main__":
    main()
