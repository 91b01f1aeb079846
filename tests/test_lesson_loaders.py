"""The notebooks' loaders of results files (ctx.lessons, ctx.reference) refuse a file of the
wrong structure in one line naming it and the command that remakes it, as the CLIs do
(ctx.io.read_results), where they used to fail later with a KeyError or TypeError."""

from __future__ import annotations

import pytest

from ctx.io import write_json
from ctx.lessons import regimes, training
from ctx.reference import reference_manifest

# loader (given the folder) -> (file under that folder, what it holds, words of the error)
LOADERS = {
    "diagnosis": (
        regimes.load_diagnosis, "regimes/diagnosis.json", {"runs": []}, ["'runs' is a list", "diagnose"],
    ),
    "mechanisms": (
        regimes.load_mechanisms, "regimes/mechanisms.json", {"runs": {}}, ["has no 'regimes'", "mechanisms"],
    ),
    "error kinds": (
        regimes.load_error_kinds, "regimes/error_kinds.json", {"regimes": {}, "paired": 3, "command": "c"},
        ["'paired' is an int", "error-kinds"],
    ),
    "ablation": (
        training.load_ablation, "ablation.json", {"runs": [{"variant": "ce"}], "config": {}},
        ["'runs[0]' has no 'seed'", "ablation"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", LOADERS, ids=list(LOADERS))
def test_a_results_file_of_the_wrong_shape_is_one_line(name, tmp_path):
    load, path, data, words = LOADERS[name]
    write_json(data, tmp_path / path)
    with pytest.raises(ValueError) as err:
        load(tmp_path)
    msg = str(err.value)
    assert msg.startswith(f"{tmp_path / path} should hold ") and "\n" not in msg
    assert "restore it from git or regenerate it with `python -m ctx.experiments " in msg
    for word in words:
        assert word in msg, msg


def test_the_reference_manifest_is_checked_and_missing_means_empty(tmp_path, monkeypatch):
    monkeypatch.setenv("CTX_REFERENCE_DIR", str(tmp_path))
    assert reference_manifest() == {}
    write_json([{"regime": "scarce"}], tmp_path / "manifest.json")
    with pytest.raises(ValueError) as err:
        reference_manifest()
    assert str(err.value) == (
        f"{tmp_path / 'manifest.json'} should hold an object, but it is a list: restore it from "
        "git or regenerate it with `python -m ctx.experiments reference --regime chosen`"
    )
    write_json({"regime": "scarce"}, tmp_path / "manifest.json")
    assert reference_manifest() == {"regime": "scarce"}
