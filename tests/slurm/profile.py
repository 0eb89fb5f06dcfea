"""Write a copy of profiles/slurm with an overlay's values merged in (the SLURM test's profile)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
SLURM_PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
TEST_OVERLAY = Path(__file__).resolve().parent / "profile.yaml"


def merged_profile(overlay: dict[str, Any], base: Path = SLURM_PROFILE) -> dict[str, Any]:
    """The profile at `base` with `overlay` merged in: its __variables__ one by one, other keys whole."""
    profile = yaml.safe_load(base.read_text())
    unknown = set(overlay.get("__variables__", {})) - set(profile["__variables__"])
    if unknown:
        raise KeyError(f"overlay sets site variables the profile does not have: {sorted(unknown)}")
    for key, value in overlay.items():
        if key == "__variables__":
            profile["__variables__"] = {**profile["__variables__"], **value}
        else:
            profile[key] = value
    return profile


def write_profile(dest: Path, overlay: dict[str, Any] | None = None) -> Path:
    """Write profiles/slurm merged with `overlay` (default: tests/slurm/profile.yaml) to dest/config.yaml."""
    if overlay is None:
        overlay = yaml.safe_load(TEST_OVERLAY.read_text())
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / "config.yaml"
    path.write_text(yaml.safe_dump(merged_profile(overlay), sort_keys=False))
    return dest
