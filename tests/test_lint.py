"""Static checks: ruff (linter and formatter) on the code, Snakemake's linter on the workflow."""

from __future__ import annotations

import subprocess

from .conftest import BIN, REPO, job_blocks, snakemake


def test_ruff_clean() -> None:
    proc = subprocess.run([str(BIN / "ruff"), "check", "."], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_formatted() -> None:
    """`ruff format --check` (what `make lint` runs): CI fails on code the formatter would change."""
    proc = subprocess.run(
        [str(BIN / "ruff"), "format", "--check", "."], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_snakemake_lint_clean() -> None:
    proc = snakemake(["--lint", "--configfile", "config/test.yaml"], cwd=REPO, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Lints for" not in out, out


def test_sampling_and_evaluation_outrank_training() -> None:
    """Where cores are scarce, a trained estimator is sampled and evaluated before the next training starts."""
    import re

    proc = snakemake(["-n", "--configfile", "config/test.yaml"], cwd=REPO)
    priority: dict[str, set[int]] = {}
    for rule, block in job_blocks(proc.stdout):
        found = re.search(r"priority: (\d+)", block)
        priority.setdefault(rule, set()).add(int(found.group(1)) if found else 0)
    assert priority["train"] == {0}
    assert priority["sample"] == priority["evaluate"] == {10}


def test_one_name_per_stage() -> None:
    """Stage X: rule X in rules/X.smk, scripts/X.py calling lenspipe.X.X with keyword arguments only."""
    import ast
    import re

    stages = sorted(p.stem for p in (REPO / "rules").glob("*.smk") if p.stem != "common")
    assert stages == [
        "compare",
        "ensemble",
        "evaluate",
        "infer",
        "infer_join",
        "sample",
        "simulate",
        "split",
        "train",
    ]
    for stage in stages:
        assert re.findall(r"^rule (\w+):", (REPO / "rules" / f"{stage}.smk").read_text(), re.M) == [stage]
        module = ast.parse((REPO / "lenspipe" / f"{stage}.py").read_text())
        assert stage in {f.name for f in module.body if isinstance(f, ast.FunctionDef)}, (
            f"lenspipe/{stage}.py"
        )
        script = (REPO / "scripts" / f"{stage}.py").read_text()
        assert f"from lenspipe.{stage} import {stage}\n" in script
        calls = [
            n
            for n in ast.walk(ast.parse(script))
            if isinstance(n, ast.Call) and getattr(n.func, "id", "") == stage
        ]
        assert len(calls) == 1 and not calls[0].args and calls[0].keywords, f"scripts/{stage}.py"
