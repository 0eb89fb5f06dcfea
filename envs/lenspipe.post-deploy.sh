#!/usr/bin/env bash
# Snakemake runs this once, inside the new envs/lenspipe.yaml environment, from the workflow's
# working directory: it installs the lenspipe package of this checkout (editable, without touching
# the pinned dependencies), so the rules' scripts can import it.
set -euo pipefail
if ! grep -q '^name = "lenspipe"' pyproject.toml 2>/dev/null; then
    echo "lenspipe post-deploy: run snakemake from the lenspipe checkout (no lenspipe pyproject.toml in $PWD)" >&2
    exit 1
fi
python -m pip install --no-deps -e .
