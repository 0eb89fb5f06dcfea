"""The physical lens light (lenspipe.lenslight): its formula, its physics, its config checks, and deeplenstronomy
images that carry exactly the per-image values lenspipe drew."""

from __future__ import annotations

import copy
import hashlib
import json

import numpy as np
import pytest

from lenspipe import deeplens, lenslight
from lenspipe.config import check_config, load_config
from lenspipe.errors import ConfigError, DataError
from lenspipe.limits import (
    lens_light_columns,
    lens_light_features,
    lens_light_limits,
    perturbed_features,
    theta_e_limits,
)
from lenspipe.priors import Cosmology, einstein_radius
from lenspipe.rule_params import simulate_params

from .conftest import REPO

PHYSICAL = load_config(REPO / "config" / "physical.yaml")
SETTINGS = PHYSICAL["simulation"]["lens"]["light"]["physical"]
BANDS = ("g", "r", "i")
COSMOLOGY = Cosmology(H0=70.0, Om0=0.3)


def model(**changes: object) -> lenslight.PhysicalLight:
    settings = {**copy.deepcopy(SETTINGS), **changes}
    return lenslight.PhysicalLight.from_config(settings, BANDS, "simulation.lens.light.physical")


def fixed(sigma_v, z_l, noise: float = 0.0) -> lenslight.Draws:  # noqa: ANN001
    sigma_v, z_l = np.atleast_1d(np.asarray(sigma_v, float)), np.atleast_1d(np.asarray(z_l, float))
    n = len(sigma_v)
    return lenslight.Draws(
        sigma_v, z_l, np.full(n, noise), np.full(n, noise), np.full((n, len(BANDS)), noise)
    )


def test_magnitudes_colours_and_sizes_follow_the_formula() -> None:
    """Each column is the docstring's formula, computed here independently (astropy distances, numpy integrals)."""
    from astropy.cosmology import FlatLambdaCDM

    m = model()
    draws = lenslight.draw(50, (150.0, 400.0), (0.2, 0.4), 3, seed=3)
    table = lenslight.light(m, draws, COSMOLOGY)
    cosmo = FlatLambdaCDM(H0=70.0, Om0=0.3)
    v = np.log10(draws.sigma_v)
    absolute = -8.39 - 5.80 * v + 0.55 * draws.magnitude
    np.testing.assert_allclose(table["absolute_magnitude"], absolute, rtol=0, atol=1e-12)
    log_re = 2.46 - 2.79 * v + 0.84 * v**2 + 0.11 * draws.size
    np.testing.assert_allclose(table["log10_R_e_kpc"], log_re, rtol=0, atol=1e-12)
    d_a_kpc = cosmo.angular_diameter_distance(draws.z_l).to_value("kpc")
    np.testing.assert_allclose(table["R_sersic"], 10**log_re / d_a_kpc * 206264.80624709636, rtol=1e-12)
    dm = cosmo.distmod(draws.z_l).value
    wave, flux = lenslight.template("kcorrect_lrg1")
    lam_r, resp_r = lenslight.response("sdss_r0")

    def ab(lam, resp, w, f):  # noqa: ANN001, ANN202
        return np.trapezoid(np.interp(lam, w, f, left=0, right=0) * lam * resp, lam) / np.trapezoid(
            resp / lam, lam
        )

    rest = ab(lam_r, resp_r, wave, flux)
    for b, band in enumerate(BANDS):
        lam, resp = lenslight.response(f"decam_{band}")
        k = np.array(
            [-2.5 * np.log10(ab(lam, resp, wave * (1 + z), flux / (1 + z)) / rest) for z in draws.z_l]
        )
        np.testing.assert_allclose(table[f"kcorrection-{band}"], k, rtol=0, atol=1e-10)
        mag = absolute + dm + k + 0.035 * draws.colours[:, b]
        np.testing.assert_allclose(table[f"magnitude-{band}"], mag, rtol=0, atol=1e-10)


def test_kcorrections_are_those_of_a_red_galaxy() -> None:
    """Rest-frame DECam g-r ~0.75 of an early type; at z 0.3 observed g-r ~1.5-1.6 and r-i ~0.5 (LRG colours)."""
    m = model()
    k = {b: lenslight.kcorrection(m, b, np.array([0.0, 0.3])) for b in BANDS}
    assert 0.65 < k["g"][0] - k["r"][0] < 0.85
    assert 1.45 < k["g"][1] - k["r"][1] < 1.7 and 0.4 < k["r"][1] - k["i"][1] < 0.65
    assert (
        abs(
            lenslight.kcorrection(model(filters={"g": "sdss_r0", "r": "sdss_r0", "i": "sdss_r0"}), "r", 0.0)[
                0
            ]
        )
        < 1e-12
    )


def test_at_fixed_sigma_v_a_more_distant_lens_is_fainter_redder_and_smaller() -> None:
    z = np.linspace(0.2, 0.4, 11)
    table = lenslight.light(model(), fixed(np.full(11, 250.0), z), COSMOLOGY)
    for band in BANDS:
        assert np.all(np.diff(table[f"magnitude-{band}"]) > 0)
    assert np.all(np.diff(table["magnitude-g"] - table["magnitude-r"]) > 0)
    assert np.all(np.diff(table["magnitude-r"] - table["magnitude-i"]) > 0)
    assert np.all(np.diff(table["R_sersic"]) < 0)
    # and at fixed z_l a more massive lens is brighter and larger
    more = lenslight.light(model(), fixed(np.linspace(150, 400, 11), np.full(11, 0.3)), COSMOLOGY)
    assert np.all(np.diff(more["magnitude-i"]) < 0) and np.all(np.diff(more["R_sersic"]) > 0)


def test_zero_scatter_is_a_deterministic_relation() -> None:
    m = model(
        magnitude={"coefficients": [-8.39, -5.80], "scatter": 0.0},
        size={"coefficients": [2.46, -2.79, 0.84], "scatter": 0.0},
        colour_scatter=0.0,
    )
    a = lenslight.light(m, lenslight.draw(20, (150.0, 400.0), (0.2, 0.4), 3, seed=1), COSMOLOGY)
    b = lenslight.light(m, lenslight.draw(20, (150.0, 400.0), (0.2, 0.4), 3, seed=1), COSMOLOGY)
    noiseless = lenslight.light(m, fixed(a["sigma_v"], a["z_l"]), COSMOLOGY)
    for col in ("magnitude-g", "magnitude-r", "magnitude-i", "R_sersic"):
        np.testing.assert_array_equal(a[col], b[col])
        np.testing.assert_array_equal(a[col], noiseless[col])
    assert not a[["magnitude_scatter", "size_scatter", "colour_scatter-g"]].to_numpy().any()


def _physical(**light: object) -> dict:
    cfg = copy.deepcopy(PHYSICAL)
    cfg["simulation"]["lens"]["light"].update(light)
    return cfg


def _physical_setting(dotted: str, value: object) -> dict:
    cfg = copy.deepcopy(PHYSICAL)
    section = cfg["simulation"]["lens"]["light"]["physical"]
    *head, last = dotted.split(".")
    for key in head:
        section = section[key]
    section[last] = value
    return cfg


KEY = "simulation.lens.light.physical"
BAD = [
    ("magnitude.scatter", -0.1, f"{KEY}.magnitude.scatter: expected a value >= 0 (got -0.1)"),
    ("size.scatter", -1, f"{KEY}.size.scatter: expected a value >= 0 (got -1)"),
    ("colour_scatter", -0.01, f"{KEY}.colour_scatter: expected a value >= 0 (got -0.01)"),
    ("magnitude.coefficients", [], f"{KEY}.magnitude.coefficients: expected at least 1 entries"),
    ("magnitude.coefficients", [-8.4, "steep"], f"{KEY}.magnitude.coefficients.1: expected a number"),
    ("size.coefficients", [2.46, float("nan")], f"{KEY}.size.coefficients[1]: expected a finite number"),
    ("evolution", float("inf"), f"{KEY}.evolution: expected a finite number"),
    ("template", "elliptical", f"{KEY}.template: expected one of kcorrect_lrg1 (got 'elliptical')"),
    (
        "filters.r",
        "decam_q",
        f"{KEY}.filters.r: expected a filter response kcorrect ships (e.g. decam_r) (got 'decam_q')",
    ),
    (
        "filters",
        {"g": "decam_g", "r": "decam_r"},
        f"{KEY}.filters: expected a filter for every band (g, r, i)",
    ),
    ("absolute_band", "johnson_v", f"{KEY}.absolute_band: expected a filter response kcorrect ships"),
]


@pytest.mark.parametrize(("key", "value", "message"), BAD, ids=[f"{k}={v}" for k, v, _ in BAD])
def test_bad_physical_settings_are_refused_naming_the_key(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_config(_physical_setting(key, value))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_physical_light_refuses_what_it_replaces() -> None:
    light = "simulation.lens.light"
    cases = [
        (_physical(magnitude=19.0), f"{light}.magnitude: expected no value with model: physical"),
        (
            _physical(R_sersic={"min": 0.5, "max": 1.5}),
            f"{light}.R_sersic: expected no value with model: physical",
        ),
        (
            _physical(model="empirical"),
            f"{light}.model: expected one of independent, physical (got 'empirical')",
        ),
    ]
    no_settings = _physical()
    del no_settings["simulation"]["lens"]["light"]["physical"]
    cases.append((no_settings, f"{light}.physical: expected a value (the key is missing)"))
    colours = _physical()
    colours["simulation"]["lens"]["colours"] = {"g": 1.8, "r": 0.5, "i": 0.0}
    cases.append((colours, "simulation.lens.colours: expected no colours with lens light model physical"))
    independent = load_config(REPO / "config" / "test.yaml")
    independent["simulation"]["lens"]["light"]["physical"] = copy.deepcopy(SETTINGS)
    cases.append((independent, f"{light}.physical: expected settings only with model: physical"))
    for cfg, message in cases:
        with pytest.raises(ConfigError) as err:
            check_config(cfg)
        assert message in str(err.value), str(err.value)


# simulate params (sha256 of every shard's params, JSON with sorted keys) of the studies before the physical
# lens light existed: the schema gained no default, so no existing study is simulated again.
PARAMS_BEFORE = {
    "config.yaml": "c991ecd6c8885cf7556009e9de33ee3e0dc7859a44723647153b41a652423865",
    "test.yaml": "895b68925d372c45765e7c9ebd262ea298e222ed6d9bc0617e0e6ced2a7f33d3",
    "survey.yaml": "6106480115558dbf530b2ddbdd7db283baf33d39313af44bfa0ff11f86b52cf7",
    "realistic.yaml": "c66aee3f892ab73e71da53ee61b39e7e680b3a40c9de8fdf01d77b486cc116e7",
}


def _params_digest(cfg: dict) -> str:
    shards = range(cfg["simulation"]["n_shards"])
    return hashlib.sha256(
        json.dumps([simulate_params(cfg, s) for s in shards], sort_keys=True).encode()
    ).hexdigest()


@pytest.mark.parametrize("name", list(PARAMS_BEFORE))
def test_existing_studies_simulate_params_are_unchanged(name: str) -> None:
    cfg = load_config(REPO / "config" / name)
    check_config(cfg)
    assert _params_digest(cfg) == PARAMS_BEFORE[name]


def test_a_light_coefficient_changes_only_the_physical_studys_simulation() -> None:
    """Every coefficient is in the simulate rule's params (none hides in code), so changing one re-simulates."""
    base = copy.deepcopy(PHYSICAL)
    check_config(base)
    for key, value in [
        ("magnitude.coefficients", [-8.3, -5.80]),
        ("magnitude.scatter", 0.4),
        ("size.scatter", 0.2),
        ("colour_scatter", 0.02),
        ("evolution", 0.5),
    ]:
        changed = _physical_setting(key, value)
        check_config(changed)
        assert simulate_params(changed, 0) != simulate_params(base, 0), key
        assert changed["run"] == "physical"  # its own results/physical/: no other study is touched


def physical_spec(**light: object) -> deeplens.SimulatorSpec:
    cfg = _physical(**light)
    check_config(cfg)
    return deeplens.SimulatorSpec.from_config(cfg["simulation"], cfg["priors"])


@pytest.fixture(scope="module")
def physical_batch() -> deeplens.Batch:
    return deeplens.simulate(physical_spec(), 24, seed=11)


def test_images_carry_exactly_the_drawn_lens(physical_batch: deeplens.Batch) -> None:
    """deeplenstronomy's metadata holds each image's own sigma_v, z_l, magnitudes and size from lenslight."""
    meta, spec = physical_batch.metadata, physical_spec()
    expected = deeplens.physical_light(spec, 24, 11)
    rows = expected.iloc[meta["OBJID-g"].to_numpy(int)].reset_index(drop=True)
    for band in BANDS:
        np.testing.assert_array_equal(
            meta[f"PLANE_1-OBJECT_1-LIGHT_PROFILE_1-magnitude-{band}"], rows[f"magnitude-{band}"]
        )
        np.testing.assert_array_equal(
            meta[f"PLANE_1-OBJECT_1-LIGHT_PROFILE_1-R_sersic-{band}"], rows["R_sersic"]
        )
        np.testing.assert_array_equal(
            meta[f"PLANE_1-OBJECT_1-MASS_PROFILE_1-sigma_v-{band}"], rows["sigma_v"]
        )
        np.testing.assert_array_equal(meta[f"PLANE_1-OBJECT_1-REDSHIFT-{band}"], rows["z_l"])
    # every input of the model is recorded per image
    for col in expected.columns:
        np.testing.assert_array_equal(meta[f"lens_light-{col}"], rows[col])
    labels = deeplens.labels(meta, ("theta_E", "sigma_v", "z_l", "z_s"), "g")
    np.testing.assert_allclose(labels[:, 0], einstein_radius(*labels[:, 1:].T, spec.cosmology), rtol=1e-4)
    # the light is drawn, not fixed: the z_s and e1 draws of deeplenstronomy still vary
    assert meta["PLANE_2-OBJECT_1-REDSHIFT-g"].nunique() == len(meta)


def test_brighter_lens_light_in_the_pixels(physical_batch: deeplens.Batch) -> None:
    """The noise-free lens-light plane's total flux in each band is the magnitude's (within the stamp)."""
    batch = deeplens.simulate(physical_spec(), 8, seed=12, planes=True)
    meta = batch.metadata
    for b, band in enumerate(BANDS):
        flux = batch.planes[:, 0, b].sum(axis=(1, 2))
        expected = 10 ** (
            -0.4 * (meta[f"lens_light-magnitude-{band}"] - meta[f"magnitude_zero_point-{band}"])
        )
        ratio = flux / expected.to_numpy()
        assert np.all((ratio > 0.8) & (ratio < 1.01)), ratio  # light beyond the 16.8" stamp is lost


def test_same_seed_same_images_and_values() -> None:
    a = deeplens.simulate(physical_spec(), 6, seed=5)
    b = deeplens.simulate(physical_spec(), 6, seed=5)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.metadata.equals(b.metadata)
    c = deeplens.simulate(physical_spec(), 6, seed=6)
    assert not np.array_equal(a.metadata["lens_light-z_l"], c.metadata["lens_light-z_l"])


def test_a_value_deeplenstronomy_did_not_use_stops_the_simulation(monkeypatch: pytest.MonkeyPatch) -> None:
    """If deeplenstronomy read the per-image values out of order (or changed one), the check names the image."""
    original = deeplens.PerImageValues.value

    def shifted(self, column, bands):  # noqa: ANN001, ANN202
        if column == "z_l" and self.next[column] == 3:
            self.next[column] += 1  # skip one image's z_l: every later image gets its neighbour's
        return original(self, column, bands)

    monkeypatch.setattr(deeplens.PerImageValues, "value", shifted)
    with pytest.raises(DataError, match="read more than|lenspipe asked for"):
        deeplens.simulate(physical_spec(), 6, seed=5)


def test_per_image_values_must_be_read_once_per_image() -> None:
    values = deeplens.PerImageValues(deeplens.physical_light(physical_spec(), 3, 1), BANDS)
    values.value("sigma_v", "g,r,i")
    with pytest.raises(DataError, match="expected 3 each"):
        values.finish()
    with pytest.raises(DataError, match="outside lenspipe.deeplens.simulate"):
        deeplens.lenspipe_per_image("z_l", bands="g")


def test_yaml_hands_the_lens_to_lenspipe_values() -> None:
    doc = deeplens.build_config(physical_spec(), 10, 1)
    lens = doc["SPECIES"]["GALAXY_1"]
    name = "lenspipe_per_image_{}"
    assert lens["MASS_PROFILE_1"]["PARAMETERS"]["sigma_v"]["DISTRIBUTION"]["NAME"] == name.format("sigma_v")
    light = lens["LIGHT_PROFILE_1"]["PARAMETERS"]
    assert light["magnitude"]["DISTRIBUTION"]["NAME"] == name.format("magnitude")
    assert light["R_sersic"]["DISTRIBUTION"]["NAME"] == name.format("R_sersic")
    assert light["n_sersic"]["DISTRIBUTION"]["NAME"] == "uniform"
    plane = doc["GEOMETRY"]["CONFIGURATION_1"]["PLANE_1"]["PARAMETERS"]
    assert plane["REDSHIFT"]["DISTRIBUTION"]["NAME"] == name.format("z_l")


def test_oracle_recovers_z_l_from_the_light(physical_batch: deeplens.Batch) -> None:
    """Lens light + theta_E predict z_l far better than theta_E alone (many lenses: formula only, no images)."""
    spec, names = physical_spec(), ["sigma_v", "theta_E", "e1", "e2", "z_l", "z_s"]

    def lenses(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        table = deeplens.physical_light(spec, n, seed)
        rng = np.random.default_rng(seed)
        z_s = rng.uniform(0.6, 0.8, n)
        theta = np.column_stack(
            [
                table["sigma_v"],
                einstein_radius(table["sigma_v"], table["z_l"], z_s, spec.cosmology),
                rng.uniform(-0.4, 0.4, (n, 2)),
                table["z_l"],
                z_s,
            ]
        )
        return lens_light_features(table.add_prefix("lens_light-"), theta, names), theta

    (train_x, train_t), (test_x, test_t) = lenses(3000, 1), lenses(600, 2)
    oracle = lens_light_limits(train_x, test_x, train_t, test_t, names)
    alone = theta_e_limits(train_t, test_t, names)
    assert oracle["theta_E"] is None
    assert oracle["z_l"] > 0.85 and alone["z_l"] < 0.3
    assert oracle["sigma_v"] > alone["sigma_v"]
    features = lens_light_features(
        physical_batch.metadata, deeplens.labels(physical_batch.metadata, names, "g"), names
    )
    assert features.shape == (len(physical_batch), 3 + 2 + 2)
    assert lens_light_features(physical_batch.metadata, np.zeros((len(physical_batch), 1)), ["z_l"]) is None


def test_oracle_features_are_laid_out_as_the_columns_say(physical_batch: deeplens.Batch) -> None:
    """Each slice of lens_light_columns holds what it names (the benchmarks perturb and split by it)."""
    names = ["sigma_v", "theta_E", "z_l"]
    meta = physical_batch.metadata
    theta = deeplens.labels(meta, names, "g")
    features = lens_light_features(meta, theta, names)
    columns = lens_light_columns(len(BANDS))
    mags = np.column_stack([meta[f"lens_light-magnitude-{b}"] for b in BANDS])
    np.testing.assert_array_equal(features[:, columns["magnitudes"]], mags)
    np.testing.assert_array_equal(
        features[:, columns["colours"]], np.column_stack([mags[:, 0] - mags[:, 1], mags[:, 1] - mags[:, 2]])
    )
    np.testing.assert_array_equal(
        features[:, columns["log_size"]][:, 0], np.log10(meta["lens_light-R_sersic"])
    )
    np.testing.assert_array_equal(features[:, columns["theta_E"]][:, 0], theta[:, 1])
    assert sum(c.stop - c.start for c in columns.values()) == features.shape[1]


def test_perturbed_features_move_the_named_columns_and_recompute_the_colours() -> None:
    """Offsets land on the named columns only; the colours follow the perturbed magnitudes (the input untouched)."""
    columns = lens_light_columns(3)
    features = np.array([[21.0, 19.5, 19.0, 1.5, 0.5, 0.1, 1.2], [20.0, 19.0, 18.8, 1.0, 0.2, 0.0, 0.9]])
    before = features.copy()
    out = perturbed_features(
        features, np.array([[0.1, -0.2, 0.0, 0.05], [0.0, 0.0, 0.3, -0.1]]), [0, 1, 2, 6]
    )
    np.testing.assert_allclose(out[:, columns["magnitudes"]], [[21.1, 19.3, 19.0], [20.0, 19.0, 19.1]])
    np.testing.assert_allclose(out[:, columns["colours"]], [[1.8, 0.3], [1.0, -0.1]])
    np.testing.assert_array_equal(out[:, columns["log_size"]], before[:, columns["log_size"]])
    np.testing.assert_allclose(out[:, columns["theta_E"]][:, 0], [1.25, 0.8])
    np.testing.assert_array_equal(features, before)


def test_deeplenstronomy_userdist_cannot_hand_over_per_image_values(tmp_path) -> None:  # noqa: ANN001
    """Why lenspipe hands the values over itself: deeplenstronomy's USERDIST tables are read with pandas'
    removed `delim_whitespace` (a TypeError with pandas 3), its 'sample' mode draws rows with replacement, and its
    checker refuses the in-order 'iterate' mode. A fixed deeplenstronomy shows up here."""
    import pandas as pd
    from deeplenstronomy import check, utils

    table = tmp_path / "lenses.txt"
    table.write_text("PLANE_1-OBJECT_1-REDSHIFT WEIGHT\n" + "".join(f"0.{i + 20} 1\n" for i in range(10)))
    with pytest.raises(TypeError, match="delim_whitespace"):
        utils.read_distribution_file(str(table))
    frame = pd.DataFrame({"z": np.arange(10.0), "WEIGHT": 1.0})
    np.random.seed(0)
    _, drawn = utils.draw_from_user_dist("unused", 10, "sample", df=frame)
    assert len(np.unique(drawn)) < 10  # rows repeat: not one row per image
    source = __import__("inspect").getsource(check.AllChecks.check_input_distributions)
    assert "['interpolate', 'sample']" in source


@pytest.mark.slow
def test_tiny_physical_study_end_to_end_and_exact_reruns(tmp_path) -> None:  # noqa: ANN001
    """The tiny study with the physical lens light runs through every rule, its R^2 table has the oracle row, and
    a light coefficient changed re-runs its simulation and everything after it, nothing else changed nothing."""
    import pandas as pd

    from lenspipe.limits import LIMIT_ROW, ORACLE_ROW

    from .conftest import copy_workflow, dry_run_jobs, snakemake, write_config

    work = copy_workflow(tmp_path)
    cfg = load_config(REPO / "config" / "test.yaml")
    cfg["run"] = "physical_test"
    cfg["estimators"] = {"maf": cfg["estimators"]["maf"]}
    cfg["simulation"]["lens"] = copy.deepcopy(PHYSICAL["simulation"]["lens"])
    path = write_config(work / "config" / "physical_test.yaml", cfg)
    snakemake(["--cores", "2", "--configfile", str(path)], cwd=work, timeout=1800)
    out = work / "results" / "physical_test"
    r2 = pd.read_csv(out / "compare" / "r2.csv")
    assert list(r2["estimator"]) == ["maf", LIMIT_ROW, ORACLE_ROW]
    meta = pd.read_parquet(out / "simulate" / "shard_0000.zarr" / "metadata.parquet")
    assert {"lens_light-magnitude-g", "lens_light-R_sersic", "lens_light-absolute_magnitude"} <= set(
        meta.columns
    )
    assert dry_run_jobs(work, path) == {}
    cfg["simulation"]["lens"]["light"]["physical"]["magnitude"]["scatter"] = 0.4
    changed = dry_run_jobs(work, write_config(work / "config" / "changed.yaml", cfg))
    assert changed == {
        "simulate": ["shard=0000", "shard=0001"],
        "split": [""],
        "train": ["estimator=maf"],
        "sample": ["estimator=maf"],
        "evaluate": ["estimator=maf"],
        "compare": [""],
    }


def test_magnitude_bins_are_half_open_with_the_last_closed() -> None:
    """The benchmarks' brightness bins: [lo, hi) each, the last [lo, hi]; by default the fifths."""
    from lenspipe.limits import magnitude_bins

    magnitude = np.array([15.0, 16.0, 17.0, 17.0, 18.0, 19.0])
    edges, masks = magnitude_bins(magnitude, [15.0, 17.0, 19.0])
    assert edges == [15.0, 17.0, 19.0]
    assert [m.tolist() for m in masks] == [
        [True, True, False, False, False, False],
        [False, False, True, True, True, True],
    ]
    edges, masks = magnitude_bins(np.arange(100.0))
    assert len(edges) == 6 and edges[0] == 0.0 and edges[-1] == 99.0
    assert [int(m.sum()) for m in masks] == [20, 20, 20, 20, 20]
