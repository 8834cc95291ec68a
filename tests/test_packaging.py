"""environment.yml mirrors pyproject.toml's dependencies (pyproject is the source of truth)."""

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch"}


def names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~ \[]", r, maxsplit=1)[0].lower() for r in requirements}


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = names(project["dependencies"] + project["optional-dependencies"]["dev"])
    env = yaml.safe_load((REPO / "environment.yml").read_text())["dependencies"]
    conda = names([d for d in env if isinstance(d, str)])
    pip = names(next(d["pip"] for d in env if isinstance(d, dict)))
    expected = {CONDA_NAMES.get(n, n) for n in declared}
    assert expected <= (conda | pip), expected - (conda | pip)
