"""The two pin sets, envs/constraints.txt (pip) and envs/lenspipe.yaml (conda), cannot drift apart."""

from __future__ import annotations

import re
import tomllib

import yaml

from .conftest import REPO

ENVS = REPO / "envs"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)$")


def _name(package: str) -> str:
    """Canonical package name (PEP 503): case and -_. runs do not matter."""
    return re.sub(r"[-_.]+", "-", package).lower()


def constraints() -> dict[str, str]:
    """{package: version} of envs/constraints.txt; every non-comment line must be an exact pin."""
    pins: dict[str, str] = {}
    for number, raw in enumerate((ENVS / "constraints.txt").read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = PIN.match(line)
        assert match, f"envs/constraints.txt:{number}: expected `package==version`, got {raw!r}"
        pins[_name(match.group(1))] = match.group(2)
    return pins


def conda_env() -> dict:
    """envs/lenspipe.yaml as a dict."""
    return yaml.safe_load((ENVS / "lenspipe.yaml").read_text())


def conda_pins() -> tuple[dict[str, str], dict[str, str]]:
    """({conda package: version spec}, {pip package: version}) of envs/lenspipe.yaml."""
    conda: dict[str, str] = {}
    pip: dict[str, str] = {}
    for dep in conda_env()["dependencies"]:
        if isinstance(dep, dict):
            assert set(dep) == {"pip"}, f"envs/lenspipe.yaml: unexpected dependency block {dep}"
            for number, entry in enumerate(dep["pip"]):
                match = PIN.match(entry.strip())
                assert match, (
                    f"envs/lenspipe.yaml pip entry {number}: expected `package==version`, got {entry!r}"
                )
                assert _name(match.group(1)) not in pip, f"envs/lenspipe.yaml: {entry} listed twice"
                pip[_name(match.group(1))] = match.group(2)
        else:
            name, _, version = str(dep).partition("=")
            conda[_name(name)] = version.lstrip("=")
    return conda, pip


def test_conda_env_has_the_constraints_pins() -> None:
    """Every pin of constraints.txt is in the conda env with the same version, and nothing else is."""
    pins = constraints()
    conda, pip = conda_pins()
    both = set(conda) & set(pip)
    assert not both, f"installed by both conda and pip: {sorted(both)}"
    env = {**{k: v for k, v in conda.items() if k not in ("python", "pip")}, **pip}
    missing = {k: v for k, v in pins.items() if k not in env}
    extra = {k: v for k, v in env.items() if k not in pins}
    differ = {k: (pins[k], env[k]) for k in pins.keys() & env.keys() if pins[k] != env[k]}
    assert not missing, f"pinned in envs/constraints.txt but not in envs/lenspipe.yaml: {missing}"
    assert not extra, f"in envs/lenspipe.yaml but not pinned in envs/constraints.txt: {extra}"
    assert not differ, f"versions differ (constraints.txt, lenspipe.yaml): {differ}"


def test_conda_env_python_and_channels() -> None:
    """Python 3.11 (pyproject's minimum) and pip from conda-forge, no defaults channel."""
    env = conda_env()
    conda, _ = conda_pins()
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert conda.get("python") == requires.removeprefix(">="), (conda, requires)
    assert "pip" in conda
    assert env["channels"][0] == "conda-forge" and "nodefaults" in env["channels"]


def test_every_dependency_is_pinned() -> None:
    """pyproject's dependencies and test extras are all pinned, so `make venv` and conda agree on all of them."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + [
        d for extra in project.get("optional-dependencies", {}).values() for d in extra
    ]
    names = {_name(re.split(r"[<>=!~;\[ ]", dep, maxsplit=1)[0]) for dep in wanted}
    unpinned = sorted(names - constraints().keys())
    assert not unpinned, f"dependencies of pyproject.toml without a pin in envs/constraints.txt: {unpinned}"


def test_post_deploy_script_installs_lenspipe() -> None:
    """The conda env gets the lenspipe package itself from its post-deploy script (the scripts import it)."""
    script = ENVS / "lenspipe.post-deploy.sh"
    assert script.exists(), (
        "envs/lenspipe.post-deploy.sh missing: scripts could not import lenspipe in the conda env"
    )
    assert "pip install --no-deps -e ." in script.read_text()


def test_rules_use_the_env() -> None:
    """Every rule file that names a conda env names envs/lenspipe.yaml."""
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for env in re.findall(r"conda:\s*\n\s*\"([^\"]+)\"", smk.read_text()):
            assert env == "../envs/lenspipe.yaml", f"{smk.name}: conda env {env}"
