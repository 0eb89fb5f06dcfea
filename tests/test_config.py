"""Config validation: the shipped configs pass; each bad config fails with one line naming the key."""

from __future__ import annotations

import pytest
import yaml
from snakemake.utils import update_config

from lenspipe.config import check_config, load_config
from lenspipe.errors import ConfigError

from .conftest import REPO, copy_workflow, snakemake, write_config


@pytest.mark.parametrize("name", ["config.yaml", "test.yaml"])
def test_shipped_configs_are_valid(name: str) -> None:
    check_config(load_config(REPO / "config" / name))


def _set(cfg: dict, dotted: str, value: object) -> None:
    *head, last = dotted.split(".")
    for key in head:
        cfg = cfg[key]
    if value is _DELETE:
        del cfg[last]
    else:
        cfg[last] = value


_DELETE = object()

BAD = [
    # (dotted key, value, expected message fragment)
    ("priors.sigma_v.min", "fast", "priors.sigma_v.min: expected a number (got 'fast')"),
    ("priors.e1.min", 0.5, "priors.e1.min: expected a minimum below the maximum 0.4 (got 0.5)"),
    ("priors.z_s.min", 0.35, "priors.z_s.min: expected every source redshift above every lens redshift"),
    (
        "simulation.bands",
        ["g", "r", "y"],
        "simulation.bands: expected bands of the delve survey (g, r, i, z) (got 'y')",
    ),
    ("split.test_fraction", 1.5, "split.test_fraction: expected a fraction in (0, 1) (got 1.5)"),
    ("split.test_fraction", 0.0, "split.test_fraction: expected a fraction in (0, 1) (got 0.0)"),
    ("simulation.n_shards", 100, "simulation.n_shards: expected at most n_images (60) shards (got 100)"),
    ("simulation.n_shards", 0, "simulation.n_shards: expected a value >= 1 (got 0)"),
    ("simulation.n_images", -5, "simulation.n_images: expected a value >= 1 (got -5)"),
    ("simulation.sky_noise", "loud", "simulation.sky_noise: expected one of survey, legacy (got 'loud')"),
    (
        "parameters",
        ["sigma_v", "mass"],
        "parameters.1: expected one of sigma_v, theta_E, e1, e2, z_l, z_s (got 'mass')",
    ),
    ("seed", _DELETE, "seed: expected a value (the key is missing)"),
    ("priors.z_l", _DELETE, "priors.z_l: expected a value (the key is missing)"),
    (
        "simulation.lens.colours",
        {"g": 1.0, "r": 0.5},
        "simulation.lens.colours: expected a colour for every band",
    ),
    ("training.batch_size", 2.5, "training.batch_size: expected an integer (got 2.5)"),
    (
        "evaluation.corner_images",
        [0, 99],
        "evaluation.corner_images: expected indices of test images (< 12) (got 99)",
    ),
    (
        "estimators.maf.flow",
        "realnvp",
        "estimators.maf.flow: expected an sbi flow or coupling_resnet (coupling_resnet, made, maf",
    ),
    ("simulation.pixelscale", 0.2, "simulation.pixelscale: expected one of the known keys"),
]


@pytest.mark.parametrize(("key", "value", "message"), BAD, ids=[f"{k}={v!r}" for k, v, _ in BAD])
def test_bad_config_names_key(tiny_config: dict, key: str, value: object, message: str) -> None:
    _set(tiny_config, key, value)
    with pytest.raises(ConfigError) as info:
        check_config(tiny_config)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_missing_config_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="expected an existing YAML config file"):
        load_config(tmp_path / "nope.yaml")


def test_workflow_stops_with_one_line(tmp_path, tiny_config: dict) -> None:
    """A bad config stops snakemake before any job, with one line naming the key and no traceback."""
    work = copy_workflow(tmp_path)
    tiny_config["priors"]["e2"] = {"min": 0.3, "max": -0.3}
    cfg = write_config(tmp_path / "bad.yaml", tiny_config)
    proc = snakemake(["--configfile", str(cfg), "-n", "--cores", "1"], cwd=work, check=False)
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert "lenspipe: config error: priors.e2.min: expected a minimum below the maximum -0.3 (got 0.3)" in err
    assert "Traceback" not in err
    assert not (work / "results").exists()


def test_missing_config_file_on_the_command_line(tmp_path) -> None:
    work = copy_workflow(tmp_path)
    proc = snakemake(["-n", "--configfile", "config/nope.yaml"], cwd=work, check=False)
    err = proc.stderr.strip()
    assert proc.returncode != 0
    assert err.endswith(
        "lenspipe: config error: --configfile: expected an existing YAML config file "
        "(got 'config/nope.yaml': no such file)"
    )
    assert "Traceback" not in err


def test_unknown_estimator_target_names_the_estimators(tmp_path) -> None:
    work = copy_workflow(tmp_path)
    proc = snakemake(
        ["results/test/train/foo/estimator.pt", "-n", "--configfile", "config/test.yaml"],
        cwd=work,
        check=False,
    )
    err = proc.stderr.strip()
    assert proc.returncode != 0
    assert err.endswith(
        "lenspipe: config error: estimators: expected an estimator of the config "
        "(maf, nsf, nsf_16x512, coupling_resnet) in target results/test/train/foo/estimator.pt (got 'foo')"
    )
    assert "Traceback" not in err


def test_legacy_overlay_changes_only_the_noise_and_the_run_name(tmp_path) -> None:
    """config/legacy.yaml on top of config.yaml: the seeds' noise setting in results/paper_legacy, all else the paper's."""
    work = copy_workflow(tmp_path)
    proc = snakemake(["-n", "--configfile", "config/config.yaml", "config/legacy.yaml"], cwd=work)
    out = proc.stdout
    assert "results/paper_legacy/compare/r2.csv" in out and "results/paper/" not in out
    assert out.count("rule simulate:") == 10 and not (work / "results").exists()
    merged = load_config(REPO / "config" / "config.yaml")
    update_config(merged, yaml.safe_load((REPO / "config" / "legacy.yaml").read_text()))
    check_config(merged)
    paper = load_config(REPO / "config" / "config.yaml")
    assert (
        merged["simulation"].pop("sky_noise") == "legacy" and paper["simulation"].pop("sky_noise") == "survey"
    )
    assert merged.pop("run") == "paper_legacy" and paper.pop("run") == "paper"
    assert merged == paper
