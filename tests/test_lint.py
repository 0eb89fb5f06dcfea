"""Static checks: ruff on the code, Snakemake's linter on the workflow."""

from __future__ import annotations

import subprocess

from .conftest import BIN, REPO, snakemake


def test_ruff_clean() -> None:
    proc = subprocess.run([str(BIN / "ruff"), "check", "."], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_snakemake_lint_clean() -> None:
    proc = snakemake(["--lint", "--configfile", "config/test.yaml"], cwd=REPO, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Lints for" not in out, out
