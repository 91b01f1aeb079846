"""Execute the notebooks top to bottom in place (FAST mode unless CTX_FAST=0), as they are
committed, and print each one's run time.

    python scripts/run_notebooks.py                      # all of notebooks/*.ipynb
    python scripts/run_notebooks.py notebooks/03_*.ipynb

Now and then a cell that displays widgets holds the run for the full cell timeout (300 s) before
the next cell starts, and nothing fails: nbclient receives the kernel's reply late
(jupyter/nbclient#312; measured on notebook 07: the reply was sent 0.4 s into the cell). nbval,
which the tests use, has not shown it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbconvert.preprocessors import ExecutePreprocessor

ROOT = Path(__file__).resolve().parents[1]


def run(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    ExecutePreprocessor(timeout=300, kernel_name="python3").preprocess(
        nb, {"metadata": {"path": str(path.parent)}}
    )
    seconds = time.perf_counter() - start
    nbformat.write(nb, path)
    return seconds


def main() -> None:
    os.environ.setdefault("CTX_FAST", "1")
    paths = [Path(p) for p in sys.argv[1:]] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    if missing := [str(p) for p in paths if p.suffix != ".ipynb" or not p.is_file()]:
        sys.exit(f"error: not a notebook file: {', '.join(missing)} (give paths to .ipynb files)")
    for path in paths:
        print(f"{path.name}: {run(path):.1f} s", flush=True)


if __name__ == "__main__":
    main()
