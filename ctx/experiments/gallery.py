"""The regime gallery: per regime, the seed-0 CE and Contextrast runs of the regime study as fp16
weights that notebook 07 loads to compare their predictions (no training in the notebook).

    python -m ctx.experiments gallery --runs-dir runs/regimes --out data/regimes
    python -m ctx.experiments gallery --runs-dir ... --remake-dir runs/regimes-remade

Per regime: the phase-2 (final) seed-0 `ce` and `contextrast` runs when both are in
results/regimes.json, else the phase-1 (tune) seed-0 runs of CE and of Contextrast at the
regime's Rule-1 setting, once its tuning is complete; other regimes are skipped, with the reason
in the manifest. A run counts when its row is in the results file; its folder (runs-dir/<phase>/
<regime>/<run>) must hold the finished checkpoint trained with the row's config, and is only read.
A run whose folder is gone is retrained into `--remake-dir` from the row's config (the study's own
`Job`, one CPU thread), and the manifest says whether it reproduced the row's validation mIoU;
without `--remake-dir`, runs the gallery already ships stay when they are that very run.

Each run ships as `<out>/<regime>_<variant>.pt` (the model's state dict in fp16, its config and
class count; `ctx.engine.checkpoint.load_model` loads it back as fp32). `<out>/manifest.json`
records per run: regime, variant, phase, setting, steps, source run, the `python -m ctx.train`
command that trains it, and the mIoU of the shipped weights on the split the protocol allows for
its phase (validation for tune runs, test for final runs), paths relative to the repository;
and the commands that made it (`--regimes` updates only those regimes of an existing gallery).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch

from ctx.engine.checkpoint import CHECKPOINT, load_model
from ctx.engine.config import TrainConfig, config_from_dict, config_mismatch
from ctx.engine.loop import train_or_load
from ctx.evaluate import evaluate_run
from ctx.experiments.regime_study import Job, chosen_setting, load_results, tune_jobs
from ctx.experiments.regimes import REGIMES
from ctx.io import load_checkpoint, read_results, save_checkpoint, write_json
from ctx.resources import portable

SEED = 0
VARIANTS = ("ce", "contextrast")
MANIFEST = "manifest.json"
SPLIT = {"tune": "val", "final": "test"}  # the split the protocol lets each phase be scored on


def _row(rows: list[dict], job: Job) -> dict | None:
    """The results row of `job` (None if it is not in)."""
    for r in rows:
        if (r["phase"], r["regime"], r["variant"], r["seed"], r.get("alpha"), r.get("warmup")) == (
            job.key
        ):
            return r
    return None


def gallery_jobs(tuning: list[dict], finals: list[dict], regime: str) -> tuple[list, str]:
    """([(Job, row)] for the regime's seed-0 ce and contextrast, reason) — the final runs when
    both are in, else the tuning runs at the Rule-1 setting; ([], why) when neither is ready."""
    cx = [
        r for r in finals if (r["regime"], r["variant"], r["seed"]) == (regime, "contextrast", SEED)
    ]
    if cx and (ce := _row(finals, Job("final", regime, "ce", SEED))):
        job = Job("final", regime, "contextrast", SEED, cx[0]["alpha"], cx[0]["warmup"])
        return [(Job("final", regime, "ce", SEED), ce), (job, cx[0])], "final runs"
    setting = chosen_setting(tuning, regime)
    if setting is None:
        done = sum(_row(tuning, j) is not None for j in tune_jobs(regime))
        n = len(tune_jobs(regime))
        return [], f"phase-1 tuning incomplete when the gallery was made ({done} of {n} runs)"
    jobs = [
        Job("tune", regime, "ce", SEED),
        Job("tune", regime, "contextrast", SEED, setting["alpha"], setting["warmup"]),
    ]
    return [(j, _row(tuning, j)) for j in jobs], "tuning runs at the Rule-1 setting"


def train_command(cfg: TrainConfig) -> str:
    """The `python -m ctx.train` line that trains `cfg`: a flag per field that differs from
    TrainConfig's default (`ctx.train.parse_args` reads it back to `cfg`)."""
    default = dataclasses.asdict(TrainConfig())
    flags = []
    for k, v in dataclasses.asdict(cfg).items():
        if v == default[k] or k == "progress":
            continue
        value = " ".join(map(str, v)) if isinstance(v, tuple | list) else str(v)
        flags.append(f"--{k.replace('_', '-')} {value}")
    return " ".join(["python -m ctx.train", *flags])


def source_checkpoint(job: Job, row: dict, runs_dir: Path, remake_dir: Path | None) -> dict:
    """Where `job`'s finished checkpoint is: {"path", "remade", "remade_val_miou"}. The study's
    folder is read if it holds the finished run of the row's config (ValueError if it holds
    another); a missing one is retrained into `remake_dir` (FileNotFoundError without one)."""
    want = config_from_dict(row["config"])
    path = runs_dir / job.name / CHECKPOINT
    if path.exists():
        ckpt = load_checkpoint(path)
        bad = config_mismatch(ckpt["config"], want)
        if bad or ckpt["step"] < ckpt["max_steps"] or ckpt["step"] != row["steps"]:
            why = "; ".join(bad) or f"step {ckpt['step']} of {ckpt['max_steps']}"
            raise ValueError(f"{path} is not the run its results row records ({why})")
        return {"path": path, "remade": False, "remade_val_miou": None}
    if remake_dir is None:
        raise FileNotFoundError(
            f"{path}: the study's run {job.name} is not there; pass --remake-dir DIR to retrain "
            f"it from its recorded config"
        )
    cfg = job.config(remake_dir, device="cpu", threads=row["threads"], progress=False)
    bad = config_mismatch(row["config"], cfg)
    if bad:
        raise ValueError(f"{job.name}: the study's plan no longer gives its recorded config: {bad}")
    print(
        f"[remake] {job.name}: not in {runs_dir}; from {remake_dir} (trained there unless finished)",
        flush=True,
    )
    result = train_or_load(cfg)
    return {
        "path": result.checkpoint,
        "remade": True,
        "remade_val_miou": result.history[-1]["val"]["miou"],
    }


def export_weights(src: Path, dst: Path, config: dict | None = None) -> Path:
    """Save the model of checkpoint `src` as fp16 weights with its class count and `config` (a
    run's recorded config; default: the checkpoint's, its folder made relative)."""
    model, ckpt = load_model(src, "cpu")
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    config = config or {**ckpt["config"], "out": portable(ckpt["config"]["out"])}
    keep = {"model": state, "config": config}
    keep.update({k: ckpt[k] for k in ("num_classes", "step", "max_steps")})
    return save_checkpoint(keep, dst)


def _sources(jobs: list, runs_dir: Path, remake_dir: Path | None) -> tuple[list[dict], str]:
    """(`source_checkpoint` of every (job, row), "") or ([], why) when a run is missing."""
    sources = []
    for job, row in jobs:
        try:
            sources.append(source_checkpoint(job, row, runs_dir, remake_dir))
        except FileNotFoundError:
            return [], f"run {job.name} is not in the runs folder (--remake-dir retrains it)"
    return sources, ""


def export_run(job: Job, row: dict, src: dict, out: Path) -> dict:
    """Ship one run (`src`: its `source_checkpoint`) into `out`; its manifest entry."""
    dst = export_weights(src["path"], out / f"{job.regime}_{job.variant}.pt", row["config"])
    split = SPLIT[job.phase]
    metrics = evaluate_run(dst, split, device="cpu")
    cfg = config_from_dict(row["config"])
    study = row["val_miou"] if job.phase == "tune" else row["miou"]
    entry = {
        "regime": job.regime,
        "variant": job.variant,
        "phase": job.phase,
        "seed": job.seed,
        "setting": None if job.alpha is None else {"alpha": job.alpha, "warmup": job.warmup},
        "steps": row["steps"],
        "source_run": job.name,
        "file": portable(dst),
        "command": train_command(cfg),
        "split": split,
        "miou": metrics["miou"],
        "boundary_miou": metrics["boundary_miou"],
        "scenes": metrics["scenes"],
        "study_miou": study,
        "remade": src["remade"],
        "check": f"python -m ctx.evaluate {portable(dst)} --split {split}",
    }
    if src["remade"]:
        entry["remade_val_miou"] = src["remade_val_miou"]
        entry["remade_same_as_study"] = math.isclose(
            src["remade_val_miou"], row["val_miou"], abs_tol=1e-9
        )
    return entry


def export_gallery(
    results_dir: Path,
    runs_dir: Path,
    out: Path,
    command: str,
    remake_dir: Path | None = None,
    regimes: list[str] | None = None,
    threads: int | None = None,
) -> dict:
    """Ship every ready regime's seed-0 ce and contextrast runs into `out` (module doc) and write
    `out`/manifest.json; returns the manifest. A regime that is not ready, or one of whose runs
    is missing (without `remake_dir`), is skipped with the reason; but runs the gallery already
    ships stay when they are the very runs the study now calls for (a runs folder moved or
    deleted, a mistyped --runs-dir loses nothing). `regimes`: update only these in an existing
    manifest (its `commands` lists every command that made it). A command that changes no run
    and no reason leaves an existing manifest, and its list of commands, as they were.
    `threads`: CPU threads of the evaluation (a remade run trains with its row's threads)."""
    if threads:
        torch.set_num_threads(threads)
    tuning = load_results(results_dir / "regimes" / "tuning.json")["runs"]
    finals = load_results(results_dir / "regimes.json")["runs"]
    exists = (out / MANIFEST).exists()
    old = read_manifest(out) if exists else {"commands": [], "runs": [], "skipped": {}}
    todo = regimes or list(REGIMES)
    others = regimes is not None  # keep the regimes this command does not update
    runs = [e for e in old["runs"] if others and e["regime"] not in todo]
    skipped = {r: why for r, why in old["skipped"].items() if others and r not in todo}
    kept = False
    for regime in todo:
        jobs, why = gallery_jobs(tuning, finals, regime)
        sources, missing = _sources(jobs, runs_dir, remake_dir)
        shipped = [e for e in old["runs"] if e["regime"] == regime]
        same = {e["source_run"] for e in shipped} == {job.name for job, _ in jobs}
        on_disk = all((out / Path(e["file"]).name).exists() for e in shipped)
        if not sources and shipped and same and on_disk:
            runs += shipped
            kept = True
            print(
                f"[gallery] {regime}: kept the shipped runs, the study's own ({missing})",
                flush=True,
            )
            continue
        if not sources:
            skipped[regime] = missing or why
            print(f"[gallery] {regime}: skipped, {skipped[regime]}", flush=True)
        for (job, row), src in zip(jobs, sources, strict=False):
            runs.append(e := export_run(job, row, src, out))
            print(
                f"[gallery] {e['file']}: {e['split']} mIoU {e['miou']:.2f} % (study "
                f"{e['study_miou']:.2f} %)",
                flush=True,
            )
    order = list(REGIMES)
    runs = sorted(runs, key=lambda e: (order.index(e["regime"]), e["variant"]))
    skipped = {r: skipped[r] for r in order if r in skipped}
    if exists and runs == old["runs"] and skipped == old["skipped"]:
        print(f"[gallery] nothing changed: {out / MANIFEST} is as it was", flush=True)
        return old
    for stale in set(out.glob("*.pt")) - {out / Path(e["file"]).name for e in runs}:
        stale.unlink()  # a regime no longer shipped
    commands = old["commands"] if others or kept else []
    manifest = {
        "commands": [c for c in commands if c != command] + [command],
        "seed": SEED,
        "runs": runs,
        "skipped": skipped,
    }
    write_json(manifest, out / MANIFEST)
    return manifest


def read_manifest(folder: Path) -> dict:
    """The gallery's manifest (FileNotFoundError naming the command that makes it)."""
    path = folder / MANIFEST
    if not path.exists():
        raise FileNotFoundError(
            f"no regime gallery at {folder}: it ships in data/regimes/ (git checkout -- data/), "
            f"or make it with `python -m ctx.experiments gallery`"
        )
    shape = {"runs": [{"regime": str, "variant": str, "file": str}], "skipped": dict}
    return read_results(path, shape, "python -m ctx.experiments gallery")


def load_gallery_model(folder: Path, entry: dict, device: str | torch.device = "cpu"):
    """(model in eval mode, fp32, on `device`; its TrainConfig) of a manifest entry."""
    model, ckpt = load_model(folder / Path(entry["file"]).name, device)
    return model, config_from_dict(ckpt["config"])
