"""The reference runs the notebooks explore, rebuilt from the regime study's chosen setting.

    python -m ctx.experiments reference --regime chosen   # the regime Rule 2 chose
    python -m ctx.experiments reference --regime scarce   # any regime whose phase 1 is complete

Trains (or resumes) the seed-0 `ce` and `contextrast` runs of the regime at its Rule-1 PA setting
with exactly the configs of the study's final seed-0 runs (`Job.config`), plus the anchor
recorder that notebook 05 plays (it only reads the model in eval mode, so the weights equal the
study's), and exports them to data/reference/ with a manifest (`ctx.reference.export_reference`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ctx.engine.loop import train_or_load
from ctx.experiments.regime_study import Job, chosen_setting, claim, load_results, recorder
from ctx.experiments.regimes import REGIMES
from ctx.reference import export_reference


def reference_jobs(tuning: list[dict], regime: str) -> list[Job]:
    """The seed-0 final jobs of `regime`: CE, and Contextrast at the regime's Rule-1 setting."""
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}: choose one of {', '.join(REGIMES)}")
    setting = chosen_setting(tuning, regime)
    if setting is None:
        raise ValueError(
            f"regime {regime!r} has no PA setting yet (its phase-1 tuning is incomplete): "
            f"run `python -m ctx.experiments regimes --regimes {regime}` first"
        )
    return [
        Job("final", regime, "ce", 0),
        Job("final", regime, "contextrast", 0, setting["alpha"], setting["warmup"]),
    ]


def check_snapshots(run_dir: Path, history: list[dict]) -> None:
    """Raise unless run_dir/anchors.pt holds the anchors of every evaluation in `history` (a run
    trained without the recorder can't be replayed by notebook 05)."""
    path = run_dir / "anchors.pt"
    steps = torch.load(path, weights_only=True)["step"] if path.exists() else []
    want = [h["step"] for h in history]
    if steps != want:
        raise ValueError(
            f"{run_dir} has anchor snapshots at {len(steps)} of its {len(want)} evaluations "
            "(trained without the anchor recorder): delete the folder and run again"
        )


def resolve_regime(name: str, results_dir: Path) -> str:
    """`name`, or for "chosen" the default regime the study's Rule 2 picked."""
    if name != "chosen":
        return name
    chosen = load_results(results_dir / "regimes.json").get("default_regime")
    if chosen is None:
        raise ValueError(
            "the regime study has not chosen a default regime yet (results/regimes.json): "
            "name one with --regime, e.g. --regime default"
        )
    return chosen


def build_reference(
    regime: str,
    results_dir: Path,
    runs_dir: Path,
    out_dir: Path,
    command: str,
    test_scenes: int | None = None,
    **run,
) -> dict:
    """Train the reference runs of `regime` into runs_dir (resumable) and export them to
    out_dir; `run`: device, threads, progress. Returns the manifest, which also records the
    study's own test mIoU of the same runs where phase 2 has them (they must agree)."""
    tuning = load_results(results_dir / "regimes" / "tuning.json")["runs"]
    finals = load_results(results_dir / "regimes.json")["runs"]
    jobs = reference_jobs(tuning, regime)
    sources = {}
    for job in jobs:
        cfg = job.config(runs_dir, **run)
        with claim(Path(cfg.out)) as mine:  # a study worker may share runs_dir
            if not mine:
                raise ValueError(f"another process is training {cfg.out}: run again after it")
            result = train_or_load(cfg, on_epoch_end=recorder(job, cfg))
        check_snapshots(Path(cfg.out), result.history)
        sources[job.variant] = Path(cfg.out)
    study = {
        r["variant"]: r["miou"]
        for r in finals
        if (r["phase"], r["regime"], r["seed"]) == ("final", regime, 0)
        and any(r["variant"] == j.variant and r.get("alpha") == j.alpha for j in jobs)
    }
    setting = {"alpha": jobs[1].alpha, "warmup": jobs[1].warmup}
    about = {"regime": regime, "setting": setting, "study_test_miou": study}
    return export_reference(sources, out_dir, command, about, test_scenes)
