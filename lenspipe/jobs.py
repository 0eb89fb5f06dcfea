"""What every Snakemake job script does first: send stderr and logging to the job's log, and turn a
LenspipeError into one clear line there (no traceback) and a failed job."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

from lenspipe.errors import LenspipeError


@contextlib.contextmanager
def job(log_path: str) -> Iterator[None]:
    """Run a job's body with stderr and logging in `log_path`; a LenspipeError ends it with its message."""
    sys.stderr = open(log_path, "w", buffering=1)  # noqa: SIM115 - stays open for the job's life
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s",
                        force=True)
    try:
        yield
    except LenspipeError as exc:
        sys.stderr.write(f"lenspipe: {exc}\n")
        sys.stderr.flush()
        raise SystemExit(1) from None
