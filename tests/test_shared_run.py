"""Notebooks 00 and 01 share one CE run: `with locked(cfg.out): train_or_load(cfg)`. Two
processes doing that at once (CI runs notebooks two at a time) must train once: the second
waits for the lock and then loads the finished run."""

import json
import multiprocessing as mp
import os
from pathlib import Path

from ctx.engine.loop import train_or_load
from ctx.io import locked


def _worker(cfg, marks: str, start) -> None:
    start.wait()  # both processes ask for the run at the same moment

    def trained_an_epoch(model, entry) -> None:  # called only while training, not on a load
        with open(marks, "a") as f:
            f.write(f"{os.getpid()}\n")

    with locked(cfg.out):
        result = train_or_load(cfg, on_epoch_end=trained_an_epoch)
    Path(marks + f".{os.getpid()}.json").write_text(json.dumps(result.history[-1]["val"]))


def test_two_processes_share_one_run(tiny_train_config, tmp_path):
    marks = str(tmp_path / "trained_by")
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_worker, args=(tiny_train_config, marks, start)) for _ in range(2)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    trainers = set(Path(marks).read_text().split())
    assert len(trainers) == 1  # one process trained, the other loaded its run
    results = [json.loads(f.read_text()) for f in tmp_path.glob("trained_by.*.json")]
    assert len(results) == 2 and results[0] == results[1]
