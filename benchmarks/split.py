"""The split's peak memory and time on real shards, against the size of all their images (what a full copy holds).

Runs lenspipe.split.split_shards on the shards (default: the survey study's 10 shards, 10,000 images) into a
temporary folder, in a child process, and prints its wall time, peak RSS, the images' size in float32, and the ratio
peak RSS / images (a split that concatenates every shard in memory is above 2; the issue measured 2.8 GiB, 6x,
at 10,000 images). The stores written are compared with the study's own split (same values, same checksums).

Usage: .venv/bin/python benchmarks/split.py [--shards DIR/shard_*.zarr ...] [--seed-from config/survey.yaml]
"""

from __future__ import annotations

import argparse
import glob
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SURVEY = "results/survey"  # the survey study (config/survey.yaml), run from the repository root


def child(shards: list[str], out: Path, config: Path) -> None:
    """One split in this process: prints seconds and peak RSS as JSON."""
    from lenspipe.split import SplitSettings, split_shards

    cfg = yaml.safe_load(config.read_text())
    t0 = time.perf_counter()
    split_shards(
        shards,
        out / "train.zarr",
        out / "test.zarr",
        out / "normalisation.json",
        SplitSettings.from_params(cfg["split"], cfg["seed"]),
    )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": time.perf_counter() - t0, "rss": rss}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", nargs="*", default=sorted(glob.glob(f"{SURVEY}/simulate/shard_*.zarr")))
    parser.add_argument("--config", default=str(REPO / "config" / "survey.yaml"))
    parser.add_argument(
        "--reference", default=f"{SURVEY}/split", help="a split of the same shards to compare"
    )
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.out:
        child(args.shards, Path(args.out), Path(args.config))
        return
    from lenspipe.store import open_store

    images = sum(open_store(s, verify=False).images.nbytes for s in args.shards)
    tmp = Path(tempfile.mkdtemp(prefix="bench-split-"))
    try:
        cmd = [sys.executable, __file__, "--out", str(tmp), "--config", args.config, "--shards", *args.shards]
        got = json.loads(
            subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1]
        )
        print(f"{len(args.shards)} shards, {images / 2**30:.2f} GiB of images (float32)")
        print(
            f"split: {got['seconds']:.1f} s, peak RSS {got['rss'] / 2**30:.2f} GiB, "
            f"peak RSS / images {got['rss'] / images:.2f}"
        )
        ref = Path(args.reference)
        if (ref / "train.zarr").is_dir():
            same = all(
                open_store(tmp / p, verify=False).attrs["checksums"]
                == open_store(ref / p, verify=False).attrs["checksums"]
                for p in ("train.zarr", "test.zarr")
            )
            norm = json.loads((tmp / "normalisation.json").read_text()) == json.loads(
                (ref / "normalisation.json").read_text()
            )
            print(f"same stores as {ref}: {same}; same normalisation.json: {norm}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
