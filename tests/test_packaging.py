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
    assert "-e .[dev,notebooks]" in pip
    env_names = {_name(d) for d in pip if not d.startswith("-e")}

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    ci = (ROOT / ".ci" / "run").read_text()
    ci_torch = re.search(r"pip install -q (torch==[\d.]+)", ci).group(1)
    extras = project["optional-dependencies"]
    ci_names = {_name(d) for d in project["dependencies"] + extras["dev"] + extras["notebooks"]}
    assert '-e ".[dev,notebooks]"' in ci
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


def test_library_dependencies_are_light():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] != "ctx", "the bare name ctx is someone else's on the public index"
    heavy = {"jupyterlab", "ipywidgets", "umap-learn", "scikit-learn"}
    assert not heavy & {_name(d) for d in project["dependencies"]}
    assert heavy <= {_name(d) for d in project["optional-dependencies"]["notebooks"]}
    assert (ROOT / "LICENSE").is_file() and project["license-files"] == ["LICENSE"]


def test_every_data_folder_ships_in_the_wheel():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = [p for p in (ROOT / "data").rglob("*") if p.is_dir() and p.name != "__pycache__"]
    packages = {"ctx._data." + ".".join(p.relative_to(ROOT / "data").parts) for p in folders}
    assert packages | {"ctx._data"} <= set(setuptools["packages"])
    assert setuptools["package-dir"] == {"ctx._data": "data"}
    assert all(setuptools["package-data"][p] == ["*"] for p in packages | {"ctx._data"})


def test_every_code_package_ships_in_the_wheel():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = setuptools["packages"]
    code = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "ctx").rglob("__init__.py")}
    assert code <= set(packages), code - set(packages)


def test_shipped_files_hold_no_machine_paths():
    import torch

    texts = [p.read_text() for p in ROOT.glob("data/**/*.json")]
    texts += [p.read_text() for p in ROOT.glob("results/**/*.json")]
    for path in ROOT.glob("data/reference/*/model.pt"):
        texts.append(json.dumps(torch.load(path, weights_only=True)["config"]))
    for text in texts:
        assert not re.search(r'"(/|[A-Za-z]:\\\\)[^"]*"', text), re.search(r'"/[^"]*"', text)


def test_public_api_from_the_top_level():
    import importlib

    import ctx

    for name in ctx.__all__:
        if name == "__version__":
            continue
        value = getattr(ctx, name)
        module = importlib.import_module(ctx._LAZY.get(name, "ctx.train"))
        assert value is getattr(module, name)
    assert callable(ctx.train) and ctx.train.__name__ == "train"  # the function, not the module
    submodules = {p.stem for p in (ROOT / "ctx").glob("*.py")}
    assert submodules & set(ctx.__all__) == {"train"}  # a name may not hide a module, but train
    from ctx import ContextrastLoss, TrainConfig, pixel_anchor_loss, train  # noqa: F401

    with pytest.raises(AttributeError):
        ctx.no_such_name  # noqa: B018


def test_version_command():
    import os
    import subprocess
    import sys

    import ctx

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "ctx", "--version"], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0 and proc.stdout.strip() == f"ctx {ctx.__version__}"


@pytest.mark.parametrize("module", ["ctx.lessons.base", "ctx.lessons.bane"])
def test_notebook_modules_name_the_extra_when_it_is_missing(module):
    import os
    import subprocess
    import sys

    code = f"import sys; sys.modules['ipywidgets'] = None; import {module}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 1
    assert "pip install 'ctx-contextrast[notebooks]'" in proc.stderr
