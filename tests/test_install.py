"""`pip install .` (a real wheel, not editable) gives a ctx that finds its data, trains and loads
the reference runs, from a folder that is not the repository."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

IN_THE_VENV = """
import importlib.metadata, json, sys
from pathlib import Path
import ctx, ctx.data
from ctx import TrainConfig, load_reference, train

package = Path(ctx.__file__).parent
cfg = TrainConfig(image_size=32, train_scenes=16, val_scenes=8, batch_size=8, max_steps=2,
                  widths=(8, 8, 16, 16), embed_dim=8, device="cpu", progress=False,
                  out="run", threads=1)
history = train(cfg).history
ref = load_reference("ce")
print(json.dumps({
    "package": str(package),
    "prefix": sys.prefix,
    "data_dir": str(ctx.data.DATA_DIR),
    "version": importlib.metadata.version("ctx-contextrast"),
    "steps": history[-1]["step"],
    "reference_steps": ref.history[-1]["step"],
    "reference_out": ref.config.out,
    "checkpoint_mode": oct(Path("run/checkpoint.pt").stat().st_mode & 0o777),
}))
"""


@pytest.mark.slow
def test_wheel_install_trains_and_loads_the_reference_runs(tmp_path):
    src = _mkdir(tmp_path / "src")  # only what the build may use: a wheel must not need the rest
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "ctx", src / "ctx", ignore=ignore)
    shutil.copytree(ROOT / "data", src / "data", ignore=ignore)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", tmp_path / "dist", src], check=True)
    (wheel,) = (tmp_path / "dist").glob("ctx_contextrast-*.whl")

    venv = tmp_path / "venv"  # a bare venv that borrows this environment's torch & co.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    outer = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    # a path line adds the folder but runs none of its .pth files: an editable ctx stays out
    (Path(site) / "outer.pth").write_text("\n".join(sorted(outer)) + "\n")
    subprocess.run([*pip, "--python", python, "install", "--no-deps", wheel], check=True)

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    work = _mkdir(tmp_path / "elsewhere")
    proc = subprocess.run(
        [python, "-c", IN_THE_VENV], cwd=work, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(got["package"]).is_relative_to(got["prefix"])  # the wheel's ctx, not the repo's
    assert got["data_dir"] == str(Path(got["package"]) / "_data")
    assert got["version"] == "0.1.0" and got["steps"] == 2 and got["reference_steps"] == 6000
    shipped = json.loads((ROOT / "data" / "reference" / "manifest.json").read_text())
    # the shipped config names its run folder relative to a checkout, never this machine's path
    assert got["reference_out"] == shipped["runs"]["ce"]["config"]["out"]
    assert got["reference_out"].startswith("runs/")
    assert got["checkpoint_mode"] == oct(0o666 & ~_umask())
    version = subprocess.run(
        [python, "-m", "ctx", "--version"], cwd=work, env=env, capture_output=True, text=True
    )
    assert version.stdout.strip() == "ctx 0.1.0"


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
