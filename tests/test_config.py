"""Config validation: the shipped configs pass; each bad config fails with one line naming the key."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from lenspipe.config import check_config, load_config
from lenspipe.errors import ConfigError

from .conftest import REPO, copy_workflow, snakemake, write_config


@pytest.mark.parametrize(
    "name", ["config.yaml", "survey.yaml", "realistic.yaml", "physical.yaml", "big.yaml", "test.yaml"]
)
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
        "evaluation.sbc_samples",
        201,
        "evaluation.sbc_samples: expected at most evaluation.num_samples (200) (got 201)",
    ),
    (
        "estimators.maf.flow",
        "realnvp",
        "estimators.maf.flow: expected an sbi flow, coupling_resnet or ensemble (coupling_resnet, made, maf",
    ),
    ("simulation.pixelscale", 0.2, "simulation.pixelscale: expected one of the known keys"),
    ("priors.e2.max", float("inf"), "priors.e2.max: expected a finite number (got inf)"),
    (
        "simulation.lens.light.R_sersic",
        float("nan"),
        "simulation.lens.light.R_sersic: expected a finite number",
    ),
    (
        "simulation.lens.light.n_sersic",
        "four",
        "simulation.lens.light.n_sersic: expected a fixed value (a plain number) "
        "or a uniform range {min, max} (got 'four')",
    ),
    (
        "simulation.lens.light.n_sersic",
        {"min": 4.0, "max": 4.0},
        "simulation.lens.light.n_sersic.min: expected a minimum below the maximum 4.0",
    ),
    (
        "simulation.zero_points",
        {"g": 26.5, "r": 26.8, "i": 1000.0},
        "simulation.zero_points.i: expected a zero point that gives finite sky counts",
    ),
    (
        "simulation.zero_points",
        {"g": "26.5 mag"},
        "simulation.zero_points.g: expected a number (got '26.5 mag')",
    ),
    ("simulation.exposures", 0, "simulation.exposures: expected a value >= 1 (got 0)"),
    ("simulation.nonfinite", "ignore", "simulation.nonfinite: expected one of fail, drop (got 'ignore')"),
    ("training.learning_rate", 0, "training.learning_rate: expected a value > 0 (got 0)"),
    ("training.batch_size", 0, "training.batch_size: expected a value >= 1 (got 0)"),
    ("training.validation_fraction", 1.0, "training.validation_fraction: expected a value < 1 (got 1.0)"),
    ("training.max_epochs", 0, "training.max_epochs: expected a value >= 1 (got 0)"),
    ("training.clip_max_norm", 1.0, "training.clip_max_norm: expected one of the known keys"),
    ("embedding.features", 0, "embedding.features: expected a value >= 1 (got 0)"),
    # The optional training settings (issue 13).
    ("training.schedule", "step", "training.schedule: expected one of none, plateau, cosine (got 'step')"),
    ("training.augment", "flip", "training.augment: expected one of none, d4 (got 'flip')"),
    ("training.theta_E", "fixed", "training.theta_E: expected one of inferred, derived (got 'fixed')"),
    ("training.lr_decay", 0, "training.lr_decay: expected a value > 0 (got 0)"),
    ("training.lr_decay", -0.5, "training.lr_decay: expected a value > 0 (got -0.5)"),
    ("training.lr_decay", 1.0, "training.lr_decay: expected a value < 1 (got 1.0)"),
    ("training.lr_patience", 0, "training.lr_patience: expected a value >= 1 (got 0)"),
    ("training.stop_after_epochs", 0, "training.stop_after_epochs: expected a value >= 1 (got 0)"),
    ("training.weight_decay", 0, "training.weight_decay: expected a value > 0 (got 0)"),
    ("training.weight_decay", -1e-4, "training.weight_decay: expected a value > 0 (got -0.0001)"),
    ("training.smoothing", 1.0, "training.smoothing: expected a value < 1 (got 1.0)"),
    ("training.min_delta", -0.1, "training.min_delta: expected a value >= 0 (got -0.1)"),
    ("training.warmup_epochs", -1, "training.warmup_epochs: expected a value >= 0 (got -1)"),
    (
        "training.warmup_epochs",
        2,
        "training.warmup_epochs: expected fewer warm-up epochs than training.max_epochs",
    ),
    ("training.lr_decay", 0.5, "training.lr_decay: expected no value unless training.schedule is plateau"),
    (
        "training.lr_patience",
        3,
        "training.lr_patience: expected no value unless training.schedule is plateau",
    ),
    (
        "training.min_learning_rate",
        1e-6,
        "training.min_learning_rate: expected no value unless training.schedule is plateau or cosine",
    ),
    (
        "estimators.maf.dropout_probability",
        1.0,
        "estimators.maf.dropout_probability: expected a value < 1 (got 1.0)",
    ),
    ("embedding.channels", [], "embedding.channels: expected at least 1 entries (got [])"),
    ("evaluation.num_samples", 1, "evaluation.num_samples: expected a value >= 2 (got 1)"),
]


@pytest.mark.parametrize(("key", "value", "message"), BAD, ids=[f"{k}={v!r}" for k, v, _ in BAD])
def test_bad_config_names_key(tiny_config: dict, key: str, value: object, message: str) -> None:
    _set(tiny_config, key, value)
    with pytest.raises(ConfigError) as info:
        check_config(tiny_config)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


COMBINED_BAD = [
    (
        {"training.schedule": "cosine", "training.min_learning_rate": 1e-3},
        "training.min_learning_rate: expected a rate below training.learning_rate (0.0005) (got 0.001)",
    ),
    (
        {"training.theta_E": "derived", "parameters": ["sigma_v", "theta_E", "e1", "e2", "z_l"]},
        "training.theta_E: expected inferred unless theta_E, sigma_v, z_l and z_s are all inferred parameters",
    ),
    (
        {"training.theta_E": "derived", "parameters": ["sigma_v", "e1", "e2", "z_l", "z_s"]},
        "(got 'derived without theta_E in parameters')",
    ),
    (
        {"training.augment": "d4", "priors.e2": {"min": -0.4, "max": 0.3}},
        "priors.e2: expected a range symmetric",
    ),
]


@pytest.mark.parametrize(("edits", "message"), COMBINED_BAD, ids=[m.split(":")[0] for _, m in COMBINED_BAD])
def test_bad_combination_names_key(tiny_config: dict, edits: dict, message: str) -> None:
    for key, value in edits.items():
        _set(tiny_config, key, value)
    with pytest.raises(ConfigError) as info:
        check_config(tiny_config)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_optional_training_settings_pass(tiny_config: dict) -> None:
    tiny_config["training"].update(
        schedule="plateau",
        warmup_epochs=1,
        lr_decay=0.5,
        lr_patience=3,
        min_learning_rate=1e-6,
        smoothing=0.8,
        min_delta=1e-3,
        weight_decay=1e-4,
        augment="d4",
        theta_E="derived",
    )
    tiny_config["estimators"]["nsf_16x512"]["dropout_probability"] = 0.1
    check_config(tiny_config)


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


def test_strings_for_numbers_read_as_in_a_config_file(tiny_config: dict) -> None:
    """Snakemake's --config passes nested values as strings ('training={weight_decay: 0.01}'), and PyYAML reads
    1e-6 (no dot) as one: where the schema wants a number they become one; other strings are left alone."""
    tiny_config["training"].update(
        {"weight_decay": "0.01", "schedule": "plateau", "min_learning_rate": "1e-6"}
    )
    tiny_config["priors"]["sigma_v"]["min"] = "100"
    tiny_config["embedding"]["channels"] = ["4", "8"]
    check_config(tiny_config)
    assert (
        tiny_config["training"]["weight_decay"] == 0.01
        and tiny_config["training"]["min_learning_rate"] == 1e-6
    )
    assert tiny_config["priors"]["sigma_v"]["min"] == 100 and tiny_config["embedding"]["channels"] == [4, 8]
    assert tiny_config["training"]["schedule"] == "plateau"
    for key, value, message in [
        ("weight_decay", "abc", "training.weight_decay: expected a number (got 'abc')"),
        ("weight_decay", "-1", "training.weight_decay: expected a value > 0 (got -1)"),
        ("schedule", "1", "training.schedule: expected one of none, plateau, cosine (got '1')"),
    ]:
        bad = copy.deepcopy(tiny_config)
        bad["training"][key] = value
        with pytest.raises(ConfigError, match=re.escape(message)):
            check_config(bad)


def test_numbers_in_nested_command_line_config(tmp_path) -> None:
    """`--config 'training={weight_decay: 0.01}'` plans the study (Snakemake hands the 0.01 over as a string)."""
    work = copy_workflow(tmp_path)
    proc = snakemake(
        [
            "-n",
            "--configfile",
            "config/test.yaml",
            "--config",
            "training={weight_decay: 0.01}",
            "priors={sigma_v: {min: 100}}",
        ],
        cwd=work,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "rule train:" in proc.stdout and not (work / "results").exists()


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


def test_augmentation_it_cannot_do_stops_the_workflow(tmp_path) -> None:
    """training.augment: d4 on the paper study (source ellipticity fixed at 0.1) stops before any job, one line."""
    work = copy_workflow(tmp_path)
    config = load_config(REPO / "config" / "config.yaml")
    config["training"]["augment"] = "d4"
    cfg = write_config(tmp_path / "paper_d4.yaml", config)
    proc = snakemake(["--configfile", str(cfg), "-n", "--cores", "1"], cwd=work, check=False)
    err = proc.stderr.strip()
    assert proc.returncode != 0 and "Traceback" not in err
    assert err.splitlines()[-1].startswith(
        "lenspipe: config error: simulation.source.light.e1: expected 0 or a range symmetric about 0 with "
        "training.augment: d4"
    )
    assert not (work / "results").exists()


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


def test_check_targets_knows_every_per_estimator_path() -> None:
    """train/sample/evaluate/<estimator>/... and infer/<estimator> name an estimator, infer's joined tables do not;
    an infer target needs the `observed` section."""
    import re

    from lenspipe.config import check_targets

    out, known = "results/test", ["maf", "nsf"]
    fine = [
        "results/test/train/maf/estimator.pt",
        "results/test/infer/nsf",
        "results/test/infer/nsf/",
        "results/test/infer/maf/summary.csv",
        "results/test/infer/summary.csv",
        "results/test/infer/summary.md",
        "results/test/infer/provenance.json",
        "results/other/infer/foo",
        "--cores",
        "all",
    ]
    check_targets(fine, out, known)
    for target in (
        "results/test/sample/foo/timing.json",
        "results/test/infer/foo",
        "results/test/infer/foo/",
        "results/test/infer/foo/summary.csv",
    ):
        with pytest.raises(ConfigError, match=rf"\(maf, nsf\) in target {re.escape(target)} \(got 'foo'\)$"):
            check_targets([target], out, known)
    check_targets(["results/test/train/maf/estimator.pt", "infer"], out, known, observed=False)
    for target in ("results/test/infer/summary.csv", "results/test/infer/maf"):
        with pytest.raises(
            ConfigError, match=rf"^config error: observed: expected .* for target {re.escape(target)}$"
        ):
            check_targets([target], out, known, observed=False)


def test_infer_target_without_observed_section_names_it(tmp_path) -> None:
    work = copy_workflow(tmp_path)
    proc = snakemake(
        ["results/test/infer/summary.csv", "-n", "--configfile", "config/test.yaml"], cwd=work, check=False
    )
    err = proc.stderr.strip()
    assert proc.returncode != 0 and "Traceback" not in err
    assert err.endswith(
        "lenspipe: config error: observed: expected an `observed` section (observed.images: the FITS images to "
        "infer) for target results/test/infer/summary.csv"
    )


STUDIES = {"paper": "config.yaml", "survey": "survey.yaml", "realistic": "realistic.yaml"}


def test_the_three_studies_differ_only_as_documented() -> None:
    """paper -> survey changes the noise (and keeps maf, nsf); survey -> realistic draws the nuisance light and
    trains until converged."""
    paper, survey, realistic = (load_config(REPO / "config" / f) for f in STUDIES.values())
    assert (paper["run"], survey["run"], realistic["run"]) == tuple(STUDIES)
    assert paper["simulation"]["sky_noise"] == "legacy" and survey["simulation"]["sky_noise"] == "survey"
    # The paper run is the seeds' design: only the five priors are drawn, every light parameter is a plain number.
    for obj in ("lens", "source"):
        light = paper["simulation"][obj]["light"]
        assert all(isinstance(v, float) for k, v in light.items() if k != "profile"), light
        assert all(
            isinstance(v, dict) for k, v in realistic["simulation"][obj]["light"].items() if k != "profile"
        )
    # the seeds' four, then restarts of their MAF (its settings under other names) and the best of them
    restarts = ["maf", "maf_2", "maf_3", "maf_4", "maf_5"]
    assert list(paper["estimators"]) == [
        "maf",
        "nsf",
        "nsf_16x512",
        "coupling_resnet",
        *restarts[1:],
        "maf_best_of_5",
    ]
    assert all(paper["estimators"][r] == paper["estimators"]["maf"] for r in restarts)
    assert paper["estimators"]["maf_best_of_5"] == {
        "flow": "ensemble",
        "members": restarts,
        "combine": "best",
    }
    assert list(survey["estimators"]) == ["maf", "nsf"]
    assert all(survey["estimators"][e] == paper["estimators"][e] for e in survey["estimators"])
    # realistic trains the same two (calibrated on their own with its training: no mixture needed, README)
    assert realistic["estimators"] == survey["estimators"]
    for cfg in (paper, survey, realistic):
        cfg.pop("run"), cfg.pop("estimators")
    assert (
        survey["simulation"].pop("sky_noise") == "survey" and paper["simulation"].pop("sky_noise") == "legacy"
    )
    assert survey["simulation"].pop("exposures") == 1
    realistic["simulation"].pop("sky_noise"), realistic["simulation"].pop("exposures")
    assert survey == paper
    # realistic also trains until converged (issue 13: a cosine over 90 epochs from a rate of 1e-3, measured
    # against the seeds' loop), with a wider embedding head; the paper and survey studies keep the seeds' setting
    converging = {"schedule", "min_learning_rate", "smoothing", "min_delta", "augment", "theta_E"}
    assert converging.isdisjoint(survey["training"]) and converging <= set(realistic["training"])
    assert realistic["training"]["schedule"] == "cosine"
    assert realistic["training"]["theta_E"] == "derived"  # measured both ways on realistic (README)
    assert (realistic["training"].pop("learning_rate"), survey["training"].pop("learning_rate")) == (
        1e-3,
        5e-4,
    )
    assert (realistic["training"].pop("max_epochs"), survey["training"].pop("max_epochs")) == (90, 1000)
    assert survey["embedding"] == {"channels": [8, 16, 32], "hidden_features": 32, "features": 16}
    assert realistic.pop("embedding") == {"channels": [8, 16, 32], "hidden_features": 128, "features": 32}
    survey.pop("embedding")
    assert (
        realistic["training"].pop("stop_after_epochs") == 30
        and survey["training"].pop("stop_after_epochs") == 20
    )
    for key in converging:
        realistic["training"].pop(key)
    for obj in ("lens", "source"):
        realistic["simulation"][obj]["light"] = survey["simulation"][obj]["light"]
    assert realistic == survey


def test_physical_differs_from_realistic_only_in_the_lens_light_and_its_training() -> None:
    """physical: realistic's study with the lens light that follows sigma_v and z_l (no lens colours to set),
    trained with the reduce-on-plateau setting (realistic's cosine leaves MAF 0.04-0.06 behind NSF there: README),
    and the mixture that calibrates its NSF."""
    realistic, physical = (load_config(REPO / "config" / f) for f in ("realistic.yaml", "physical.yaml"))
    assert physical["run"] == "physical" and physical["simulation"]["sky_noise"] == "survey"
    assert physical["estimators"].pop("mixture") == {"flow": "ensemble", "members": ["maf", "nsf"]}
    plateau = {
        "learning_rate": 5e-4,
        "max_epochs": 1000,
        "schedule": "plateau",
        "lr_decay": 0.5,
        "lr_patience": 15,
    }
    assert physical.pop("training") == {**realistic.pop("training"), **plateau}
    light = physical["simulation"]["lens"].pop("light")
    assert light.pop("model") == "physical" and "physical" in light
    assert light.pop("physical") and not {"magnitude", "R_sersic"} & set(light)
    expected = realistic["simulation"]["lens"].pop("light")
    assert light == {k: v for k, v in expected.items() if k not in ("magnitude", "R_sersic")}
    assert realistic["simulation"]["lens"].pop("colours")
    physical.pop("run"), realistic.pop("run")
    assert physical == realistic


@pytest.mark.parametrize("study", [*STUDIES, "physical"])
def test_each_study_is_one_command(tmp_path, study: str) -> None:
    """`snakemake -n --configfile config/<study>.yaml` plans the whole study into results/<study>/."""
    work = copy_workflow(tmp_path)
    file = STUDIES.get(study, f"{study}.yaml")
    cfg = load_config(REPO / "config" / file)
    proc = snakemake(["-n", "--configfile", f"config/{file}"], cwd=work)
    out = proc.stdout
    assert f"results/{study}/compare/r2.csv" in out
    assert out.count("rule simulate:") == cfg["simulation"]["n_shards"]
    ensembles = [e for e, entry in cfg["estimators"].items() if entry["flow"] == "ensemble"]
    assert out.count("rule train:") == len(cfg["estimators"]) - len(ensembles)
    assert out.count("rule ensemble:") == len(ensembles) and not (work / "results").exists()


def test_schema_fills_its_defaults_once(tiny_config: dict) -> None:
    """check_config sets absent keys to the schema's defaults (what Snakemake's validate did)."""
    del tiny_config["evaluation"]["sbc_samples"], tiny_config["training"]["threads"]
    tiny_config["evaluation"]["num_samples"] = 1000  # the default sbc_samples needs at least as many
    check_config(tiny_config)
    assert tiny_config["evaluation"]["sbc_samples"] == 1000 and tiny_config["training"]["threads"] == 1


def test_settings_agree_with_the_schema() -> None:
    """Every Settings field read from the config is a schema key of its section, every key of a section is read,
    a default in both is the same value, and the Settings' defaults pass the schema's bounds."""
    import dataclasses

    import jsonschema

    from lenspipe.embedding import EmbeddingSettings
    from lenspipe.metrics import EvaluationSettings
    from lenspipe.sample import SampleSettings
    from lenspipe.simulate import SimulationSettings
    from lenspipe.split import SplitSettings
    from lenspipe.train import ExecutionSettings
    from lenspipe.trainer import TrainingSettings

    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    # (Settings class, config section, fields that do not come from that section)
    settings = [
        (TrainingSettings, "training", set()),
        (ExecutionSettings, "training", set()),
        (EmbeddingSettings, "embedding", set()),
        (SplitSettings, "split", {"seed"}),
        (SampleSettings, "evaluation", {"seed", "device", "threads"}),
        (EvaluationSettings, "evaluation", {"seed"}),
        (SimulationSettings, "simulation", {"spec", "parameters", "shard", "size", "seed"}),
    ]
    # keys read by code outside the Settings classes (rules, the simulator spec, shard bookkeeping)
    read_elsewhere = {
        "simulation": {
            "n_images",
            "n_shards",
            "survey",
            "bands",
            "num_pix",
            "pixel_scale",
            "sky_noise",
            "zero_points",
            "exposures",
            "cosmology",
            "lens",
            "source",
        },
        "evaluation": {"corner_images"},
    }
    read: dict[str, set[str]] = {}
    for cls, section, other in settings:
        props = schema["properties"][section]["properties"]
        for f in dataclasses.fields(cls):
            if f.name in other:
                continue
            assert f.name in props, (
                f"{cls.__name__}.{f.name}: no key {section}.{f.name} in config/schema.yaml"
            )
            read.setdefault(section, set()).add(f.name)
            if f.default is dataclasses.MISSING or f.default is None:  # None: an optional key, absent (off)
                continue
            if "default" in props[f.name]:
                assert f.default == props[f.name]["default"], (
                    f"{cls.__name__}.{f.name} vs the schema's default"
                )
            value = list(f.default) if isinstance(f.default, tuple) else f.default
            jsonschema.validate(value, props[f.name])  # a default outside the schema's bounds fails here
    for section, keys in read.items():
        unread = set(schema["properties"][section]["properties"]) - keys - read_elsewhere.get(section, set())
        assert not unread, f"{section}: schema keys no Settings class reads: {sorted(unread)}"


def test_big_study_is_realistic_at_ten_times_the_size_streamed() -> None:
    """big: the realistic study at 100,000 images in 100 shards, a few epochs, training images streamed."""
    from lenspipe.rule_params import train_mem_mb

    realistic, big = (load_config(REPO / "config" / f) for f in ("realistic.yaml", "big.yaml"))
    assert train_mem_mb(big) <= 4096  # the job asks for 4 GB: the training images are streamed
    assert (big["simulation"].pop("n_images"), big["simulation"].pop("n_shards")) == (100_000, 100)
    # the budget is below the training pairs' images (81,000 x 3 x 64 x 64 float32): they must stream
    assert big["training"].pop("memory_budget_mb") * 2**20 < 81_000 * 3 * 64 * 64 * 4
    for cfg in (realistic, big):
        for key in ("n_images", "n_shards"):
            cfg["simulation"].pop(key, None)
        cfg.pop("run"), cfg["training"].pop("max_epochs"), cfg["evaluation"].pop("num_samples")
        cfg["evaluation"].pop("sbc_samples")  # at most num_samples
    assert big == realistic
