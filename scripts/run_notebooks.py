"""Execute the notebooks top to bottom in place (FAST mode unless CTX_FAST=0), as they are
committed, and print each one's run time.

    python scripts/run_notebooks.py                      # all of notebooks/*.ipynb
    python scripts/run_notebooks.py notebooks/03_*.ipynb

A cell that displays widgets could hold the run for the full cell timeout (300 s) before the
next cell started, and nothing failed: nbclient waits for the kernel's reply in one long poll
that now and then wakes only at its timeout, though the reply came long before
(jupyter/nbclient#312; in notebook 07 the widget cell's reply was sent 0.4 s into the cell, the
next cell began 300 s later). Here on 2 Dec 2026, 6 of 28 runs of notebooks 02, 05 and 07
stalled so. `Executor` waits in polls of at most a second instead, the fix proposed in
jupyter/nbclient#311: 14 runs of notebook 07 in a row with it, none stalled (at 6 in 28, all 14
clear would happen 4 % of the time). nbval, which the tests use, has not shown the stall.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from queue import Empty

import nbformat
from jupyter_core.utils import ensure_async, run_sync
from nbconvert.preprocessors import ExecutePreprocessor

ROOT = Path(__file__).resolve().parents[1]


POLL = 1.0  # s: the longest single wait for a kernel reply


def polled(get_msg, poll: float = POLL):
    """`get_msg(timeout=...)` (a channel's, sync or async) as a coroutine function that waits
    in polls of at most `poll` seconds until its caller's timeout (None: forever), then raises
    queue.Empty as `get_msg` would."""

    async def get(timeout: float | None = None, **kwargs):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = poll if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return await ensure_async(get_msg(timeout=min(poll, left), **kwargs))
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    return get


class Executor(ExecutePreprocessor):
    """ExecutePreprocessor whose waits for a shell reply are `polled`, so a missed wake-up
    costs a second, not the cell timeout."""

    async def async_start_new_kernel_client(self):
        kc = await super().async_start_new_kernel_client()
        kc.shell_channel.get_msg = polled(kc.shell_channel.get_msg)
        return kc

    # setup_kernel calls the sync wrapper, which nbclient built from its own coroutine
    start_new_kernel_client = run_sync(async_start_new_kernel_client)


def run(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    Executor(timeout=300, kernel_name="python3").preprocess(
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
