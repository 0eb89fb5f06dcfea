"""Config validation: the JSON schema (types, required keys), then the checks a schema cannot express.

Every problem becomes a ConfigError whose one-line message names the key and what was expected,
so a bad config stops the run before any job starts, without a traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

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


def check_config(config: Mapping[str, Any], schema: str | os.PathLike[str] | None = None) -> None:
    """Validate `config` against the schema, then the cross-field rules; raise ConfigError on the first problem."""
    check_schema(config, schema or SCHEMA)
    check_semantics(config)


def check_schema(config: Mapping[str, Any], schema: str | os.PathLike[str]) -> None:
    """Types and required keys, reported as 'key: expected ...'."""
    import jsonschema

    schema_doc = yaml.safe_load(Path(schema).read_text())
    validator = jsonschema.Draft202012Validator(schema_doc)
    errors = sorted(
        validator.iter_errors(dict(config)),
        key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))),
    )
    if errors:
        raise _to_config_error(errors[0])


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
    if kind == "pattern":
        return ConfigError(key, f"a name matching {spec}", error.instance)
    return ConfigError(key, error.message)


def _check_range(key: str, rng: Mapping[str, float]) -> None:
    if not rng["min"] < rng["max"]:
        raise ConfigError(f"{key}.min", f"a minimum below the maximum {rng['max']}", rng["min"])


def check_semantics(config: Mapping[str, Any]) -> None:
    """Cross-field rules the schema cannot express."""
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
            if isinstance(rng, Mapping):
                _check_range(f"simulation.{obj}.light.{name}", rng)
    known = SURVEY_BANDS[sim["survey"]]
    for band in sim["bands"]:
        if band not in known:
            raise ConfigError(
                "simulation.bands", f"bands of the {sim['survey']} survey ({', '.join(known)})", band
            )
    for obj in ("lens", "source"):
        missing = [b for b in sim["bands"] if b not in sim[obj]["colours"]]
        if missing:
            raise ConfigError(
                f"simulation.{obj}.colours",
                f"a colour for every band ({', '.join(sim['bands'])})",
                f"none for {', '.join(missing)}",
            )
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
        if entry["flow"] not in flows:
            raise ConfigError(
                f"estimators.{name}.flow",
                "an sbi flow or coupling_resnet (" + ", ".join(flows) + ")",
                entry["flow"],
            )
    for i in config["evaluation"]["corner_images"]:
        if i >= n_test:
            raise ConfigError("evaluation.corner_images", f"indices of test images (< {n_test})", i)


def check_targets(targets: Iterable[str], out: str, estimators: Iterable[str]) -> None:
    """Paths on the command line (targets) that name an estimator the config does not have."""
    known = list(estimators)
    pattern = re.compile(rf"^{re.escape(out)}/(?:train|sample|evaluate)/([^/]+)/")
    for target in targets:
        match = pattern.match(str(target))
        if match and match.group(1) not in known:
            raise ConfigError(
                "estimators",
                f"an estimator of the config ({', '.join(known)}) in target {target}",
                match.group(1),
            )


def missing_configfiles(argv: Sequence[str]) -> list[str]:
    """Config files named by --configfile(s) on a Snakemake command line that do not exist."""
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
