"""Wall time of each stage of a finished (or partly finished) run, from Snakemake's `benchmark:` files.

Every rule writes results/<run>/benchmarks/<rule>/<job>.tsv when a job ends (seconds, CPU seconds, peak RSS).
A stage's wall span runs from the earliest job start (file time minus its seconds) to the latest job end, so
jobs that ran side by side count once. Prints a Markdown table (the README's Results section uses it).

Usage: .venv/bin/python benchmarks/stage_times.py [--config config/config.yaml] [--results results]
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
STAGES = ("simulate", "split", "train", "ensemble", "sample", "evaluate", "compare")
OPTIONAL = ("ensemble",)  # a row only in a study whose config has ensembles


@dataclass(frozen=True)
class Job:
    """One job's benchmark record: its name, wall and CPU seconds, peak RSS, and when it ended."""

    name: str
    seconds: float
    cpu_seconds: float
    max_rss_mb: float
    end: float

    @property
    def start(self) -> float:
        return self.end - self.seconds


def read_jobs(folder: Path) -> list[Job]:
    """The jobs of one rule: one TSV per job (the last row counts when Snakemake's --benchmark-repeats is used)."""
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
    return jobs


def table(bench: Path) -> str:
    """Markdown table: per stage, jobs, wall span, sum and longest job, CPU seconds, peak RSS."""
    lines = [
        "| stage | jobs | wall span | sum of job times | longest job | CPU time | peak RSS |",
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
            f"| {stage} | {len(jobs)} | {_hms(span)} | {_hms(sum(j.seconds for j in jobs))} | "
            f"{_hms(longest.seconds)} ({longest.name}) | {_hms(sum(j.cpu_seconds for j in jobs))} | "
            f"{max(j.max_rss_mb for j in jobs) / 1024:.1f} GiB |"
        )
    if every:
        span = max(j.end for j in every) - min(j.start for j in every)
        lines.append(
            f"| **all** | {len(every)} | **{_hms(span)}** | {_hms(sum(j.seconds for j in every))} | | "
            f"{_hms(sum(j.cpu_seconds for j in every))} | |"
        )
    return "\n".join(lines)


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
