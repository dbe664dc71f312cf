"""One version per package: requirements.lock, pyproject.toml and environment.yml must agree."""

from __future__ import annotations

import re
import tomllib

import yaml

from cpt_utils.paths import REPO_ROOT


def _lock() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name.lower())] = version.strip()
    return pins


def test_lock_pins_everything_exactly_and_torch_is_the_cpu_installable_release():
    pins = _lock()
    assert pins["torch"] == "2.13.0"
    assert not [n for n in pins if n.startswith("nvidia-") or n == "triton"]  # no CUDA stack in the lock


def test_pyproject_dependencies_match_the_lock():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    pins = _lock()
    for dep in project["dependencies"]:
        name, version = dep.split("==")
        assert pins[re.sub(r"[-_.]+", "-", name.lower())] == version, dep


def test_environment_yml_names_the_same_versions():
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    named = {re.sub(r"[-_.]+", "-", p.split("==")[0].lower()): p.split("==")[1] for p in pip_section}
    assert named == _lock()
    assert "python=3.11" in env["dependencies"]
