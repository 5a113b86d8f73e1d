"""pyproject.toml and environment.yml list the same packages, so either way of installing gets them all."""

from __future__ import annotations

import re

import tomllib
import yaml
from conftest import ROOT


def names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[ ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_environment_yml_installs_every_dependency_and_test_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = names(project["dependencies"]) | names(project["optional-dependencies"]["test"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert wanted <= names([p for p in pip if not p.startswith("-e")])
