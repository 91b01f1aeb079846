"""Settings for every test run, unit tests and notebooks alike (nbval's kernels inherit them)."""

import os

os.environ.setdefault("CTX_FAST", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


def _workers(config) -> int:
    """How many processes share the cores: xdist workers (or 1)."""
    if "PYTEST_XDIST_WORKER_COUNT" in os.environ:  # inside a worker
        return int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    n = getattr(config.option, "numprocesses", None)  # the controller, before workers start
    if n in ("auto", "logical"):
        return os.cpu_count() or 1
    return int(n or 1)


def pytest_configure(config) -> None:
    # Share the cores between xdist workers and the notebook kernels they start: oversubscribed
    # OpenMP threads spin against each other and run many times slower on a 2-core machine.
    threads = max(1, (os.cpu_count() or 1) // _workers(config))
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
