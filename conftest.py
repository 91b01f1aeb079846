"""Settings for every test run, unit tests and notebooks alike (nbval's kernels inherit them)."""

import os

os.environ.setdefault("CTX_FAST", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# Share the cores between xdist workers and the notebook kernels they start: oversubscribed
# OpenMP threads spin against each other and run many times slower on a 2-core machine.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _workers)))
