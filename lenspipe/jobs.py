"""What every Snakemake job script does: send stderr and logging to the job's log, turn a LenspipeError
into one clear line there (no traceback) and a failed job, and write the job's provenance JSON."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lenspipe.errors import LenspipeError


@contextlib.contextmanager
def job(smk: Any) -> Iterator[None]:
    """Run a job's body with stderr and logging in its log; then its `provenance` output, if it declares one."""
    sys.stderr = open(smk.log[0], "w", buffering=1)  # noqa: SIM115 - stays open for the job's life
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
        force=True,
    )
    try:
        yield
    except LenspipeError as exc:
        sys.stderr.write(f"lenspipe: {exc}\n")
        sys.stderr.flush()
        raise SystemExit(1) from None
    outputs = dict(smk.output.items())
    if (
        "provenance" in outputs and not Path(outputs["provenance"]).exists()
    ):  # train writes a richer one itself
        from lenspipe import provenance
        from lenspipe.seeds import job_seeds

        wildcards = dict(smk.wildcards.items())
        provenance.write(
            outputs["provenance"],
            dict(smk.params.items()),
            job_seeds(smk.rule, smk.config["seed"], wildcards),
            rule=smk.rule,
        )
