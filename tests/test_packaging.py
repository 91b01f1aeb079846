"""environment.yml (how users set up) must name exactly what CI installs (.ci/run + pyproject),
and notebooks must be committed cleanly executed."""

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_what_ci_installs():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert {_name(d) for d in conda} == {"python", "pip"}
    assert any(d.startswith("python=3.11") for d in conda)
    assert "-e .[dev]" in pip
    env_names = {_name(d) for d in pip if not d.startswith("-e")}

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    ci = (ROOT / ".ci" / "run").read_text()
    ci_torch = re.search(r"pip install -q (torch==[\d.]+)", ci).group(1)
    ci_names = {_name(d) for d in project["dependencies"] + project["optional-dependencies"]["dev"]}
    assert env_names == ci_names | {"torch"}
    assert ci_torch in pip, "environment.yml and .ci/run must pin the same torch"


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_is_committed_cleanly_executed(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    counts = [c.get("execution_count") for c in code]
    assert all(counts), f"{path.name}: some code cells were not executed; run all and save"
    assert counts == list(range(1, len(code) + 1)), f"{path.name}: not run top to bottom once"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: committed with an error output"
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3"
