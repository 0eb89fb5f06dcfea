"""Config validation, done once (rules/common.smk): the JSON schema (types, bounds, required keys, defaults),
then the checks a schema cannot express.

Every problem becomes a ConfigError whose one-line message names the key and what was expected,
so a bad config stops the run before any job starts, without a traceback. The Settings classes that
the stages build from the config trust it: they check nothing again.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from lenspipe import rule_params
from lenspipe.errors import ConfigError
from lenspipe.flows import known_flows

# Bands whose observing conditions each survey defines (deeplenstronomy's survey tables).
SURVEY_BANDS: dict[str, tuple[str, ...]] = {"delve": ("g", "r", "i", "z")}
SCHEMA = Path(__file__).resolve().parent.parent / "config" / "schema.yaml"

_TYPE_NAMES = {
    "number": "a number",
    "integer": "an integer",
    "string": "a string",
    "array": "a list",
    "object": "a mapping",
    "boolean": "true or false",
}


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML config file; a missing or unreadable file is a ConfigError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), "an existing YAML config file", "no such file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), "valid YAML", str(exc).splitlines()[0]) from exc
    if not isinstance(data, dict):
        raise ConfigError(str(path), "a mapping of settings at the top level")
    return data


def check_config(config: dict[str, Any], schema: str | os.PathLike[str] | None = None) -> None:
    """Validate `config` against the schema (filling in its defaults), then the cross-field rules.

    Raises ConfigError on the first problem.
    """
    check_schema(config, schema or SCHEMA)
    check_semantics(config)


def check_schema(config: dict[str, Any], schema: str | os.PathLike[str]) -> None:
    """Types, bounds and required keys, reported as 'key: expected ...'; absent keys get the schema's default."""
    schema_doc = yaml.safe_load(Path(schema).read_text())
    validator = _with_defaults(schema_doc)
    while errors := sorted(
        validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path)))
    ):
        if not any(_read_as_yaml(config, error) for error in errors):
            raise _to_config_error(errors[0])


def _read_as_yaml(config: dict[str, Any], error: Any) -> bool:
    """Where a string stands for a number or a boolean the schema wants, put that value in its place: Snakemake's
    `--config 'training={weight_decay: 0.01}'` passes nested values as strings, and PyYAML reads 1e-4 (no dot) as
    one. True if it changed the config."""
    if error.validator not in ("type", "oneOf", "anyOf") or not isinstance(error.instance, str):
        return False
    try:
        value = yaml.safe_load(error.instance)
    except yaml.YAMLError:
        return False
    if isinstance(value, str):
        try:  # YAML 1.1 reads 1e-4 (no dot) as a string
            value = float(value)
        except ValueError:
            return False
    if not isinstance(value, int | float) or not error.absolute_path:
        return False
    *parents, last = error.absolute_path
    container: Any = config
    for key in parents:
        container = container[key]
    container[last] = value
    return True


def _with_defaults(schema: Mapping[str, Any]) -> Any:
    """A Draft 2020-12 validator that sets each absent property with a default (as snakemake.utils.validate does)."""
    import jsonschema

    properties = jsonschema.Draft202012Validator.VALIDATORS["properties"]

    def set_defaults(
        validator: Any, props: Mapping[str, Any], instance: Any, subschema: Any
    ) -> Iterable[Any]:
        if isinstance(instance, dict):
            for name, spec in props.items():
                if "default" in spec:
                    instance.setdefault(name, spec["default"])
        yield from properties(validator, props, instance, subschema)

    return jsonschema.validators.extend(jsonschema.Draft202012Validator, {"properties": set_defaults})(schema)


def _dotted(path: Any) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _to_config_error(error: Any) -> ConfigError:
    key = _dotted(error.absolute_path)
    kind, spec = error.validator, error.validator_value
    if kind == "required":
        missing = [name for name in spec if name not in error.instance]
        return ConfigError(
            f"{key}.{missing[0]}" if error.absolute_path else missing[0], "a value (the key is missing)"
        )
    if kind == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        name = f"{key}.{extra[0]}" if error.absolute_path else extra[0]
        allowed = ", ".join(error.schema.get("properties", {}))
        return ConfigError(name, f"one of the known keys ({allowed})", "unknown key")
    if kind == "type":
        types = spec if isinstance(spec, list) else [spec]
        return ConfigError(key, " or ".join(_TYPE_NAMES.get(t, t) for t in types), error.instance)
    if kind == "enum":
        return ConfigError(key, "one of " + ", ".join(map(str, spec)), error.instance)
    if kind in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        sign = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[kind]
        return ConfigError(key, f"a value {sign} {spec}", error.instance)
    if kind in ("minItems", "minProperties"):
        return ConfigError(key, f"at least {spec} entries", error.instance)
    if kind == "uniqueItems":
        return ConfigError(key, "no repeated entries", error.instance)
    if kind in ("oneOf", "anyOf"):
        return ConfigError(
            key, error.schema.get("description", "a value of one of the allowed forms"), error.instance
        )
    if kind == "pattern":
        return ConfigError(key, f"a name matching {spec}", error.instance)
    return ConfigError(key, error.message)


def _check_range(key: str, rng: Mapping[str, float]) -> None:
    if not rng["min"] < rng["max"]:
        raise ConfigError(f"{key}.min", f"a minimum below the maximum {rng['max']}", rng["min"])


def check_finite(value: Any, key: str = "") -> None:
    """Every number in the config finite (YAML's .inf and .nan pass a schema's `number`)."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            check_finite(v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            check_finite(v, f"{key}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(key, "a finite number", value)


def check_semantics(config: Mapping[str, Any]) -> None:
    """Cross-field rules the schema cannot express."""
    check_finite(config)
    sim = config["simulation"]
    for name, rng in config["priors"].items():
        _check_range(f"priors.{name}", rng)
    if not config["priors"]["z_s"]["min"] > config["priors"]["z_l"]["max"]:
        raise ConfigError(
            "priors.z_s.min",
            f"every source redshift above every lens redshift (z_s.min > z_l.max = {config['priors']['z_l']['max']})",
            config["priors"]["z_s"]["min"],
        )
    if config["priors"]["z_l"]["min"] <= 0:
        raise ConfigError("priors.z_l.min", "a redshift > 0", config["priors"]["z_l"]["min"])
    if config["priors"]["sigma_v"]["min"] <= 0:
        raise ConfigError(
            "priors.sigma_v.min", "a velocity dispersion > 0 km/s", config["priors"]["sigma_v"]["min"]
        )
    for obj in ("lens", "source"):
        for name, rng in sim[obj]["light"].items():
            if isinstance(rng, Mapping) and name != "physical":
                _check_range(f"simulation.{obj}.light.{name}", rng)
    physical = sim["lens"]["light"].get("model") == "physical"
    if physical and "colours" in sim["lens"]:
        raise ConfigError(
            "simulation.lens.colours",
            "no colours with lens light model physical (its template gives them)",
            "given",
        )
    known = SURVEY_BANDS[sim["survey"]]
    for band in sim["bands"]:
        if band not in known:
            raise ConfigError(
                "simulation.bands", f"bands of the {sim['survey']} survey ({', '.join(known)})", band
            )
    for obj in ("source",) if physical else ("lens", "source"):
        missing = [b for b in sim["bands"] if b not in sim[obj]["colours"]]
        if missing:
            raise ConfigError(
                f"simulation.{obj}.colours",
                f"a colour for every band ({', '.join(sim['bands'])})",
                f"none for {', '.join(missing)}",
            )
    check_noise_settings(sim, config["priors"])
    if sim["n_shards"] > sim["n_images"]:
        raise ConfigError(
            "simulation.n_shards", f"at most n_images ({sim['n_images']}) shards", sim["n_shards"]
        )
    frac = config["split"]["test_fraction"]
    if not 0 < frac < 1:
        raise ConfigError("split.test_fraction", "a fraction in (0, 1)", frac)
    n_test = n_test_images(sim["n_images"], frac)
    if n_test < 1 or sim["n_images"] - n_test < 2:
        raise ConfigError(
            "split.test_fraction", f"at least 1 test and 2 training images out of {sim['n_images']}", frac
        )
    flows = known_flows()
    for name, entry in config["estimators"].items():
        if entry["flow"] not in flows and not rule_params.is_ensemble(entry):
            raise ConfigError(
                f"estimators.{name}.flow",
                "an sbi flow, coupling_resnet or ensemble (" + ", ".join(flows) + ")",
                entry["flow"],
            )
    rule_params.check_ensembles(config)
    for i in config["evaluation"]["corner_images"]:
        if i >= n_test:
            raise ConfigError("evaluation.corner_images", f"indices of test images (< {n_test})", i)
    evaluation = config["evaluation"]
    if evaluation.get("sbc_samples", 0) > evaluation["num_samples"]:  # SBC ranks need that many samples
        raise ConfigError(
            "evaluation.sbc_samples",
            f"at most evaluation.num_samples ({evaluation['num_samples']})",
            evaluation["sbc_samples"],
        )
    check_training(config)


def check_training(config: Mapping[str, Any]) -> None:
    """The optional training settings: each only with what it applies to; augmentation and a derived theta_E
    only where they are exact (lenspipe.augment.check_config; theta_E needs sigma_v, z_l, z_s inferred); a memory
    budget that holds the streaming loader's smallest window of the split's chunks."""
    training = config["training"]
    if "memory_budget_mb" in training and training.get("loader", "auto") != "memory":
        from lenspipe.store import CHUNK_IMAGES, window_chunks

        sim = config["simulation"]
        window_chunks(training["memory_budget_mb"], CHUNK_IMAGES, 4 * len(sim["bands"]) * sim["num_pix"] ** 2)
    schedule = training.get("schedule", "none")
    for key in ("lr_decay", "lr_patience"):
        if key in training and schedule != "plateau":
            raise ConfigError(
                f"training.{key}", "no value unless training.schedule is plateau", training[key]
            )
    if "min_learning_rate" in training:
        if schedule == "none":
            raise ConfigError(
                "training.min_learning_rate",
                "no value unless training.schedule is plateau or cosine",
                training["min_learning_rate"],
            )
        if not training["min_learning_rate"] < training["learning_rate"]:
            raise ConfigError(
                "training.min_learning_rate",
                f"a rate below training.learning_rate ({training['learning_rate']})",
                training["min_learning_rate"],
            )
    if training.get("warmup_epochs", 0) >= training["max_epochs"]:
        raise ConfigError(
            "training.warmup_epochs",
            f"fewer warm-up epochs than training.max_epochs ({training['max_epochs']})",
            training["warmup_epochs"],
        )
    if training.get("augment", "none") == "d4":
        from lenspipe import augment

        augment.check_config(config)
    if training.get("theta_E", "inferred") == "derived":
        needed = ["theta_E", "sigma_v", "z_l", "z_s"]
        missing = [n for n in needed if n not in config["parameters"]]
        if missing:
            raise ConfigError(
                "training.theta_E",
                "inferred unless theta_E, sigma_v, z_l and z_s are all inferred parameters "
                "(derived: theta_E follows from the others)",
                f"derived without {', '.join(missing)} in parameters",
            )


def check_noise_settings(simulation: Mapping[str, Any], priors: Mapping[str, Any]) -> None:
    """Zero points, exposures and sky that give every image a finite, positive noise variance (deeplens's tables)."""
    from lenspipe import deeplens

    deeplens.check_noise_variance(deeplens.SimulatorSpec.from_config(simulation, priors))


def check_targets(targets: Iterable[str], out: str, estimators: Iterable[str], observed: bool = True) -> None:
    """Paths on the command line (targets) the config cannot build: one that names an estimator the config does not
    have (train, sample, evaluate, infer), or an infer output when the config has no `observed` section."""
    known = list(estimators)
    # an infer folder is results/<run>/infer/<estimator> (the Snakefile's constraint on {estimator}), no slash needed
    per_estimator = re.compile(
        rf"^{re.escape(out)}/(?:(?:train|sample|evaluate)/([^/]+)/|infer/([A-Za-z0-9_]+)(?:/|$))"
    )
    for target in targets:
        target = str(target)
        if not observed and target.startswith(f"{out}/infer/"):
            raise ConfigError(
                "observed",
                f"an `observed` section (observed.images: the FITS images to infer) for target {target}",
            )
        match = per_estimator.match(target)
        name = match and (match.group(1) or match.group(2))
        if name and name not in known:
            raise ConfigError(
                "estimators", f"an estimator of the config ({', '.join(known)}) in target {target}", name
            )


def missing_configfiles(argv: Sequence[str]) -> list[str]:
    """Config files named by --configfile(s) on a Snakemake command line that do not exist.

    Called by profiles/default/config.yaml, before Snakemake reads the config.
    """
    files, taking = [], False
    for arg in argv:
        if arg in ("--configfile", "--configfiles"):
            taking = True
        elif arg.startswith(("--configfile=", "--configfiles=")):
            files.append(arg.split("=", 1)[1])
            taking = False
        elif taking and not arg.startswith("-"):
            files.append(arg)
        else:
            taking = False
    return [f for f in files if not Path(f).is_file()]


def n_test_images(n_images: int, test_fraction: float) -> int:
    """Number of test images of the split (rounded, as the split rule does)."""
    return int(round(n_images * test_fraction))
