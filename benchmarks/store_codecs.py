"""Read speed of a training store's images by codec and chunk shape: the choice behind lenspipe.store.zarr_codecs.

Copies the first --n images of a store (default: the survey study's training store) into temporary stores with each
codec and chunk size, then reads each back chunk by chunk (as the streaming loader does) and prints GB/s, the size on
disk, and the ratio to the uncompressed store measured in the same run.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def codecs() -> dict[str, dict]:
    from zarr.codecs import BloscCodec, BloscShuffle, ZstdCodec

    return {
        "zstd-1": {"compressors": ZstdCodec(level=1, checksum=True)},
        "lz4-blosc": {"compressors": BloscCodec(cname="lz4", clevel=1, shuffle=BloscShuffle.shuffle)},
        "none": {"compressors": None},
    }


def read_speed(path: Path, chunk: int, repeats: int) -> float:
    """GB/s reading every chunk of images, best of `repeats`."""
    import zarr

    arr = zarr.open_group(str(path), mode="r")["images"]
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        for start in range(0, arr.shape[0], chunk):
            np.asarray(arr[start : start + chunk])
        best = max(best, arr.nbytes / (time.perf_counter() - t0) / 1e9)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", default="results/survey/split/train.zarr")
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--chunks", default="64,256,1024")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import zarr

    images = np.asarray(zarr.open_group(args.store, mode="r")["images"][: args.n], dtype=np.float32)
    tmp = Path(tempfile.mkdtemp(prefix="codecs-"))
    try:
        rows = []
        for chunk in map(int, args.chunks.split(",")):
            for name, kwargs in codecs().items():
                path = tmp / f"{name}-{chunk}.zarr"
                group = zarr.open_group(str(path), mode="w")
                arr = group.create_array(
                    "images", shape=images.shape, chunks=(chunk, *images.shape[1:]), dtype="float32", **kwargs
                )
                t0 = time.perf_counter()
                arr[:] = images
                write = images.nbytes / (time.perf_counter() - t0) / 1e9
                size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
                rows.append((chunk, name, read_speed(path, chunk, args.repeats), write, size / images.nbytes))
                shutil.rmtree(path)
        base = {c: r for c, n, r, _, _ in rows if n == "none"}
        print(f"{len(images)} images {images.shape[1:]}, {images.nbytes / 1e6:.0f} MB")
        print(
            f"{'chunk':>6} {'codec':>10} {'read GB/s':>10} {'x none':>7} {'write GB/s':>11} {'size/raw':>9}"
        )
        for chunk, name, read, write, ratio in rows:
            print(
                f"{chunk:>6} {name:>10} {read:>10.2f} {read / base[chunk]:>7.2f} {write:>11.2f} {ratio:>9.3f}"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
