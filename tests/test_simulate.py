"""lenspipe.simulate: exact shard size, true labels (theta_E relation), determinism, top-ups across deeplenstronomy
calls, non-finite images, and the store a shard is written to."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from lenspipe import deeplens, simulate
from lenspipe.errors import DataError
from lenspipe.priors import Cosmology, einstein_radius
from lenspipe.seeds import shard_seed
from lenspipe.store import open_store

from .conftest import REPO, copy_workflow, snakemake, write_config

CONFIG = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
SIZE = 24


def shard_params(shard: int = 0, size: int = SIZE, **simulation: object) -> dict:
    """The params rule simulate passes (rules/common.smk: simulate_params) for the tiny config."""
    sim = {k: v for k, v in copy.deepcopy(CONFIG["simulation"]).items() if k not in ("n_images", "n_shards")}
    sim.update(simulation)
    return {
        "simulation": sim,
        "priors": CONFIG["priors"],
        "parameters": CONFIG["parameters"],
        "shard": shard,
        "size": size,
        "seed": shard_seed(CONFIG["seed"], shard),
    }


def settings(**kwargs: object) -> simulate.SimulationSettings:
    return simulate.SimulationSettings.from_params(shard_params(**kwargs))


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[simulate.Shard, Path, Path]:
    """One shard of SIZE images written by simulate.simulate, as rule simulate does."""
    out = tmp_path_factory.mktemp("simulate")
    store, yaml_path = out / "shard_0000.zarr", out / "shard_0000.deeplenstronomy.yaml"
    return simulate.simulate(params=shard_params(), store=store, yaml_path=yaml_path), store, yaml_path


def lossy(real=deeplens.simulate):  # noqa: ANN001, ANN202
    """deeplens.simulate losing every other image, as a worse simulator might (forces top-up calls)."""

    def run(spec, size, seed, planes=False):  # noqa: ANN001, ANN202
        batch = real(spec, size, seed, planes)
        return batch.select(np.arange(len(batch)) % 2 == 0)

    return run


def poisoned(first_seed: int, real=deeplens.simulate):  # noqa: ANN001, ANN202
    """deeplens.simulate whose first call has a NaN pixel in image 1 and an inf pixel in image 3."""

    def run(spec, size, seed, planes=False):  # noqa: ANN001, ANN202
        batch = real(spec, size, seed, planes)
        if seed == first_seed:
            batch.images[1, 0, 5, 5] = np.nan
            batch.images[3, 2, 0, 0] = np.inf
        return batch

    return run


def test_settings_from_params() -> None:
    s = settings(shard=3, size=7)
    assert (s.shard, s.size, s.seed, s.nonfinite) == (3, 7, shard_seed(CONFIG["seed"], 3), "fail")
    assert s.parameters == tuple(CONFIG["parameters"]) and s.spec.bands == ("g", "r", "i")
    assert s.name == "shard 0003"


def test_shard_holds_exactly_size_images(written: tuple[simulate.Shard, Path, Path]) -> None:
    shard, _, _ = written
    assert shard.images.shape == (SIZE, 3, 64, 64) and shard.images.dtype == np.float32
    assert shard.theta.shape == (SIZE, 6) and shard.theta.dtype == np.float32
    assert len(shard.metadata) == SIZE
    # deeplenstronomy returned one fewer than asked: one call of SIZE + 1 filled the shard.
    assert shard.calls == [
        {"seed": shard_seed(CONFIG["seed"], 0), "requested": SIZE + 1, "returned": SIZE, "kept": SIZE}
    ]


def test_theta_e_follows_from_sigma_v_and_true_redshifts(written: tuple[simulate.Shard, Path, Path]) -> None:
    shard, _, _ = written
    names = list(CONFIG["parameters"])
    col = {n: shard.theta[:, names.index(n)].astype(np.float64) for n in names}
    expected = einstein_radius(
        col["sigma_v"], col["z_l"], col["z_s"], Cosmology(**CONFIG["simulation"]["cosmology"])
    )
    np.testing.assert_allclose(col["theta_E"], expected, rtol=1e-4, atol=0)
    for name, rng in CONFIG["priors"].items():
        assert np.all((col[name] >= rng["min"]) & (col[name] <= rng["max"])), name


def test_lagged_redshift_labels_would_break_theta_e(written: tuple[simulate.Shard, Path, Path]) -> None:
    """The previous image's redshifts (deeplenstronomy's PLANE_n-REDSHIFT columns) do not give the simulated theta_E."""
    shard, _, _ = written
    names = list(CONFIG["parameters"])
    th = shard.theta.astype(np.float64)
    lagged = einstein_radius(
        th[1:, names.index("sigma_v")],
        th[:-1, names.index("z_l")],
        th[:-1, names.index("z_s")],
        Cosmology(**CONFIG["simulation"]["cosmology"]),
    )
    assert np.max(np.abs(lagged / th[1:, names.index("theta_E")] - 1)) > 1e-2


def test_same_params_give_identical_arrays(written: tuple[simulate.Shard, Path, Path]) -> None:
    shard, _, _ = written
    again = simulate.simulate_shard(settings())
    np.testing.assert_array_equal(again.images, shard.images)
    np.testing.assert_array_equal(again.theta, shard.theta)
    assert again.metadata.equals(shard.metadata) and again.yaml == shard.yaml
    other = simulate.simulate_shard(settings(shard=1, size=4))
    assert not np.array_equal(other.theta, shard.theta[:4])


def test_store_and_yaml(written: tuple[simulate.Shard, Path, Path]) -> None:
    shard, store_path, yaml_path = written
    store = open_store(store_path)
    np.testing.assert_array_equal(store.load_images(), shard.images)
    np.testing.assert_array_equal(store.theta, shard.theta)
    assert store.parameter_names == CONFIG["parameters"]
    attrs = store.attrs
    for key, value in {
        "shard": 0,
        "seed": shard_seed(CONFIG["seed"], 0),
        "bands": ["g", "r", "i"],
        "survey": "delve",
        "sky_noise": "survey",
        "pixel_scale": 0.263,
        "lenspipe_version": "0.1.0",
    }.items():
        assert attrs[key] == value, key
    meta = store.metadata()
    assert len(meta) == SIZE and meta.equals(shard.metadata)
    np.testing.assert_array_equal(
        meta["PLANE_1-OBJECT_1-MASS_PROFILE_1-sigma_v-g"].to_numpy(np.float32), store.theta[:, 0]
    )
    doc = yaml.safe_load(yaml_path.read_text())
    assert yaml_path.read_text() == shard.yaml
    assert (
        doc["DATASET"]["PARAMETERS"]["SEED"] == attrs["seed"]
        and doc["DATASET"]["PARAMETERS"]["SIZE"] == SIZE + 1
    )


def sky_ratio(images: np.ndarray, meta, band: int, name: str) -> np.ndarray:  # noqa: ANN001
    """Corner pixel scatter of each image over the sky sigma its own metadata row gives (about 1 when aligned)."""
    k = 8
    img = images[:, band]
    corners = np.concatenate([img[:, :k, :k], img[:, :k, -k:], img[:, -k:, :k], img[:, -k:, -k:]], axis=-1)
    return corners.reshape(len(img), -1).std(axis=-1) / meta[f"sky_sigma-{name}"].to_numpy()


def test_top_ups_across_calls_keep_rows_aligned(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lossy simulator needs several calls; OBJID then restarts per call, but rows stay with their images."""
    monkeypatch.setattr(deeplens, "simulate", lossy())
    shard = simulate.simulate_shard(settings(size=16))
    assert len(shard) == len(shard.metadata) == 16 and len(shard.calls) > 1
    assert sum(c["kept"] for c in shard.calls) == 16
    assert shard.metadata["OBJID-g"].duplicated().any()  # OBJID is no key
    assert shard.metadata["call_seed"].nunique() == len(shard.calls)
    for b, band in enumerate(("g", "r", "i")):
        ratio = sky_ratio(shard.images, shard.metadata, b, band)
        assert np.all(np.abs(ratio - 1) < 0.25), band
    # The check has power: rows shifted by one do not match their images.
    shifted = shard.metadata.iloc[np.roll(np.arange(16), 1)].reset_index(drop=True)
    assert any(
        np.any(np.abs(sky_ratio(shard.images, shifted, b, band) - 1) >= 0.25) for b, band in enumerate("gri")
    )
    theta_E = einstein_radius(
        shard.theta[:, 0], shard.theta[:, 4], shard.theta[:, 5], Cosmology(H0=70.0, Om0=0.3)
    )
    np.testing.assert_allclose(shard.theta[:, 1], theta_E, rtol=1e-4)


def test_nonfinite_fail_names_the_shard(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings(size=6)
    monkeypatch.setattr(deeplens, "simulate", poisoned(s.seed))
    with pytest.raises(DataError, match=r"shard 0000: 2 images with NaN/inf pixels"):
        simulate.simulate_shard(s)


def test_nonfinite_drop_tops_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    params = shard_params(size=6, nonfinite="drop")
    monkeypatch.setattr(deeplens, "simulate", poisoned(params["seed"]))
    with caplog.at_level(logging.INFO, logger="lenspipe.simulate"):
        shard = simulate.simulate(params=params, store=tmp_path / "s.zarr", yaml_path=tmp_path / "s.yaml")
    assert len(shard) == 6 and np.isfinite(shard.images).all() and shard.nonfinite_dropped == 2
    assert len(shard.calls) == 2 and open_store(tmp_path / "s.zarr").attrs["nonfinite_dropped"] == 2
    assert "2 non-finite dropped" in caplog.text


def test_gives_up_when_the_simulator_returns_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def empty(spec, size, seed, planes=False):  # noqa: ANN001, ANN202
        return deeplens.Batch(np.zeros((0, 3, 64, 64)), pd.DataFrame(), seed, size, 0, "")

    monkeypatch.setattr(deeplens, "simulate", empty)
    with pytest.raises(DataError, match=f"shard 0000: only 0 of 5 images after {simulate.MAX_CALLS}"):
        simulate.simulate_shard(settings(size=5))


@pytest.mark.slow
def test_rule_simulate_writes_each_shard(tmp_path: Path) -> None:
    """Rule simulate through Snakemake: one store, YAML, log line and benchmark per shard; a rerun has nothing to do."""
    config = copy.deepcopy(CONFIG)
    config["simulation"].update(n_images=11, n_shards=2)
    workdir = copy_workflow(tmp_path)
    write_config(workdir / "config" / "rule.yaml", config)
    # The shared pieces and this rule only, so the test does not depend on the other stages' rules.
    (workdir / "Snakefile.simulate").write_text(
        'include: "rules/common.smk"\ninclude: "rules/simulate.smk"\n'
    )
    out = f"results/{config['run']}"
    targets = [f"{out}/simulate/shard_{i:04d}.zarr" for i in (0, 1)]
    args = ["-s", "Snakefile.simulate", "--configfile", "config/rule.yaml"]
    snakemake([*args, "--cores", "2", *targets], cwd=workdir)
    for i, size in ((0, 6), (1, 5)):
        store = open_store(workdir / targets[i])
        assert len(store) == size and store.attrs["shard"] == i
        assert store.attrs["seed"] == shard_seed(config["seed"], i)
        doc = yaml.safe_load((workdir / f"{out}/simulate/shard_{i:04d}.deeplenstronomy.yaml").read_text())
        assert doc["DATASET"]["PARAMETERS"]["SEED"] == store.attrs["seed"]
        assert f"shard {i:04d}: {size} images" in (workdir / f"{out}/logs/simulate/{i:04d}.log").read_text()
        assert (workdir / f"{out}/benchmarks/simulate/{i:04d}.tsv").is_file()
    # Another process, the same numbers.
    again = simulate.simulate_shard(settings(shard=1, size=5))
    np.testing.assert_array_equal(open_store(workdir / targets[1]).load_images(), again.images)
    dry = snakemake([*args, "-n", *targets], cwd=workdir)
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_the_astropy_cosmology_is_built_once_per_parameters() -> None:
    """Building astropy's FlatLambdaCDM costs ~0.1 s; einstein_radius runs per image piece when an ensemble with a
    derived theta_E samples, so the object is cached per (H0, Om0) (it is immutable)."""
    assert Cosmology().astropy() is Cosmology(70.0, 0.3).astropy()
    assert Cosmology(H0=67.0).astropy() is not Cosmology().astropy()
    assert Cosmology(H0=67.0).astropy().H0.value == 67.0
