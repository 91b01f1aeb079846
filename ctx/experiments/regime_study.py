"""The regime study: where does Contextrast help? Pre-registered in results/regimes/PROTOCOL.md.

    python -m ctx.experiments regimes --threads 1            # one worker; start two for two cores
    python -m ctx.experiments regimes --regimes res128 long  # a worker for the heavy regimes
    python -m ctx.experiments regimes --report-only          # rewrite results/regimes.md/.png
    python -m ctx.experiments regimes --status               # how far it is (regime_progress)

Phase 1 (validation only): per regime, CE and Contextrast on a grid of PA settings (alpha x CE
warm-up), short runs, 2 seeds, scored on the validation scenes -> results/regimes/tuning.json.
Phase 2 (test): per regime, CE and Contextrast at the setting the protocol's rule picks from
phase 1, 5 seeds paired by seed -> results/regimes.json; in the default regime (picked by the
protocol's rule from validation numbers only) also `ccl` and `ce_time`; last, the post-hoc
controls of POST_HOC (`ccl` in `res128`). Every run trains into its own folder
under runs/regimes/ (a killed run resumes), and is appended to its results file under a lock.
Workers share the files: a run is claimed with a lock on its folder, so two workers never train
the same run, and each takes the first job of the plan that is free and whose inputs exist.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from ctx.data import NUM_CLASSES
from ctx.engine.config import TrainConfig
from ctx.engine.loop import train_or_load
from ctx.engine.step import evaluate
from ctx.experiments.recorder import AnchorRecorder
from ctx.experiments.regimes import REGIMES
from ctx.experiments.stats import mean_std, paired_diffs, t_interval
from ctx.experiments.variants import VARIANTS
from ctx.io import locked, read_results, write_json
from ctx.resources import portable

ALPHAS = (0.02, 0.05, 0.1)
WARMUPS = (0.0, 0.5)  # CE-only steps before the PA term, as a fraction of the run's steps
TUNE_SEEDS = (0, 1)
FINAL_SEEDS = (0, 1, 2, 3, 4)
TEST_SCENES = None  # final runs are scored on all the frozen test scenes (500)
MAX_COST_RATIO = 1.5  # a default regime's CE run may cost 1.5x today's (6.65 -> 10 minutes)
MIN_CE_VAL_MIOU = 60.0  # ... and must reach 60 % validation mIoU
TIE = 0.1  # mIoU points: closer than this counts as a tie
FALLBACK = "default"
# Controls added after the protocol was written, before any of their regime's test runs
# (PROTOCOL.md's log, 2026-12-02): `ccl` (random negatives) at Rule 1's setting in `res128`, the
# one regime where BANE's distance ranking acts past stage 1, so that Contextrast − `ccl` asks
# what boundary-aware negatives add where they have distances to rank. Reported as post hoc;
# no rule reads them, and they train after every run the protocol asks for.
POST_HOC = {"res128": ("ccl",)}


@dataclass(frozen=True)
class Job:
    """One training run of the study."""

    phase: str  # "tune" (validation only) | "final" (test)
    regime: str
    variant: str  # "ce" | "contextrast" | "ccl" | "ce_time"
    seed: int
    alpha: float | None = None  # PA weight (None for CE)
    warmup: float | None = None  # CE-only fraction of the steps (None for CE)
    steps: int | None = None  # None: the regime's own (tune: its tune_steps)

    @property
    def key(self) -> tuple:
        return (self.phase, self.regime, self.variant, self.seed, self.alpha, self.warmup)

    @property
    def name(self) -> str:
        pa = "" if self.alpha is None else f"_a{self.alpha:g}_w{self.warmup:g}"
        return f"{self.phase}/{self.regime}/{self.variant}{pa}_seed{self.seed}"

    def config(self, runs_dir: Path, **run) -> TrainConfig:
        """The run's TrainConfig (`run`: device, threads, progress)."""
        regime = REGIMES[self.regime]
        base = regime.config()
        steps = self.steps or (regime.tune_steps if self.phase == "tune" else base.max_steps)
        spec = VARIANTS["ce" if self.variant == "ce_time" else self.variant]
        pa = {}
        if self.alpha is not None:
            pa = {"alpha": self.alpha, "warmup_steps": round(self.warmup * steps)}
        return dataclasses.replace(
            base,
            **spec,
            **pa,
            **run,
            seed=self.seed,
            max_steps=steps,
            out=str(runs_dir / self.name),
        )


def _row_key(r: dict) -> tuple:
    return (r["phase"], r["regime"], r["variant"], r["seed"], r.get("alpha"), r.get("warmup"))


# --------------------------------------------------------------------------- protocol rules


def _by_seed(runs: list[dict], **match) -> dict[int, dict]:
    return {r["seed"]: r for r in runs if all(r.get(k) == v for k, v in match.items())}


def tuning_complete(tuning: list[dict], regime: str) -> bool:
    """All of a regime's phase-1 runs are in."""
    want = {j.key for j in tune_jobs(regime)}
    return want <= {_row_key(r) for r in tuning}


def chosen_setting(tuning: list[dict], regime: str) -> dict | None:
    """The protocol's rule 1: the (alpha, warmup) with the highest mean validation mIoU over the
    tuning seeds; within TIE of the best, the smaller alpha, then no warm-up. Also returns the
    paired validation difference to CE. None until the regime's tuning is complete."""
    if not tuning_complete(tuning, regime):
        return None
    rs = [r for r in tuning if r["regime"] == regime]
    ce = _by_seed(rs, variant="ce")
    scores = []
    for a in ALPHAS:
        for w in WARMUPS:
            runs = _by_seed(rs, variant="contextrast", alpha=a, warmup=w)
            vals = [runs[s]["val_miou"] for s in TUNE_SEEDS]
            diffs = [runs[s]["val_miou"] - ce[s]["val_miou"] for s in TUNE_SEEDS]
            scores.append(
                {
                    "alpha": a,
                    "warmup": w,
                    "val_miou": statistics.mean(vals),
                    "val_delta": statistics.mean(diffs),
                }
            )
    best = max(s["val_miou"] for s in scores)
    near = [s for s in scores if s["val_miou"] >= best - TIE]
    return min(near, key=lambda s: (s["alpha"], s["warmup"]))


def ce_cost(tuning: list[dict], regime: str) -> float:
    """CPU seconds of a full CE run of `regime`: its full steps x the median CPU seconds per step
    of its CE tuning runs on the CPU (NaN without them)."""
    per_step = [
        r["train_cpu_seconds"] / r["steps"]
        for r in tuning
        if (r["regime"], r["variant"], r["device"]) == (regime, "ce", "cpu")
    ]
    if not per_step:
        return math.nan
    return statistics.median(per_step) * REGIMES[regime].config().max_steps


def eligible(tuning: list[dict], finals: list[dict], regime: str) -> dict:
    """Rule 2's gate. Cost: a full CE run of the regime costs <= MAX_COST_RATIO x the default's
    (CPU seconds per step of the CE tuning runs, measured side by side; the default's full CE run
    takes 6.65 minutes on a quiet 2-core CPU, so 1.5x keeps it within 10). Quality: CE's final
    runs reach >= 60 % mean *validation* mIoU. `decided` is False while either is unknown."""
    ratio = ce_cost(tuning, regime) / ce_cost(tuning, FALLBACK)
    ce = [r["val_miou"] for r in finals if (r["regime"], r["variant"]) == (regime, "ce")]
    val = statistics.mean(ce) if len(ce) == len(FINAL_SEEDS) else math.nan
    cheap = ratio <= MAX_COST_RATIO
    return {
        "cost_ratio": ratio,
        "ce_val_miou": val,
        "eligible": bool(cheap and val >= MIN_CE_VAL_MIOU),
        "decided": not math.isnan(ratio) and (not cheap or not math.isnan(val)),
    }


def choose_default(
    tuning: list[dict], finals: list[dict], regimes: list[str] | None = None
) -> str | None:
    """The protocol's rule 2: among eligible regimes, the one whose chosen setting has the
    largest mean validation difference to CE (paired by seed); `default` if none is positive,
    or if the best is within TIE of default's. Candidates: `regimes`, else every regime a laptop
    CPU can train (not `Regime.gpu`). None until every candidate's tuning is in and the gates
    the outcome depends on are decided (`rule_2`)."""
    return rule_2(tuning, finals, regimes)[0]


def rule_2(
    tuning: list[dict], finals: list[dict], regimes: list[str] | None = None
) -> tuple[str | None, str | None]:
    """Rule 2 (see `choose_default`) as (choice, waits_for): the choice, or None with what it
    waits for: "phase 1" (a candidate's tuning) or the regime whose quality gate it reads next.
    Walking the candidates by gain, best first, the first eligible one wins, so a gate below it
    never changes the answer and is not waited for."""
    names = list(regimes or (name for name, r in REGIMES.items() if not r.gpu))
    chosen = {r: chosen_setting(tuning, r) for r in names}
    if any(c is None for c in chosen.values()):
        return None, "phase 1"
    gain = {r: c["val_delta"] for r, c in chosen.items()}
    for r in sorted(names, key=lambda r: -gain[r]):  # stable: ties keep the candidates' order
        if gain[r] <= 0:
            return FALLBACK, None  # no candidate left has a positive gain
        gate = eligible(tuning, finals, r)
        if not gate["decided"]:
            return None, r
        if not gate["eligible"]:
            continue
        if r != FALLBACK and FALLBACK in gain and gain[r] - gain[FALLBACK] < TIE:
            fallback = eligible(tuning, finals, FALLBACK)
            if not fallback["decided"]:
                return None, FALLBACK
            if fallback["eligible"]:
                return FALLBACK, None
        return r, None
    return FALLBACK, None


# --------------------------------------------------------------------------- the plan


def tune_jobs(regime: str) -> list[Job]:
    jobs = [Job("tune", regime, "ce", s) for s in TUNE_SEEDS]
    for s in TUNE_SEEDS:
        jobs += [Job("tune", regime, "contextrast", s, a, w) for a in ALPHAS for w in WARMUPS]
    return jobs


def ce_time_steps(finals: list[dict], regime: str) -> int | None:
    """Steps that give CE the time Contextrast took in `regime`: CPU seconds of the training
    process (other jobs on a shared machine don't count), the fastest per step of each variant
    over its seeds (cache contention only ever adds time)."""
    per = {
        v: [
            r["train_cpu_seconds"] / r["steps"]
            for r in finals
            if (r["regime"], r["variant"]) == (regime, v)
        ]
        for v in ("ce", "contextrast")
    }
    if len(per["ce"]) < len(FINAL_SEEDS) or len(per["contextrast"]) < len(FINAL_SEEDS):
        return None
    return round(REGIMES[regime].config().max_steps * min(per["contextrast"]) / min(per["ce"]))


def plan(tuning: list[dict], finals: list[dict], regimes: list[str]) -> Iterator[Job]:
    """Every job whose inputs exist, in order: phase 1 breadth first (CE's tuning runs of every
    regime, then the PA grids), so the validation map of all regimes comes first. Then phase 2:
    while Rule 2 is undecided, the final CE runs its gates read, in the order it reads them
    (the regimes by validation gain, best first); once it has chosen, the default regime's
    finals first (CE, Contextrast, then `ccl` and `ce_time`); then every other regime's CE and
    Contextrast (once Rule 1 has chosen its setting); last the POST_HOC controls. The order
    changes no run, only when it trains."""
    for regime in regimes:
        yield from tune_jobs(regime)[: len(TUNE_SEEDS)]
    for regime in regimes:
        yield from tune_jobs(regime)[len(TUNE_SEEDS) :]
    settings = {r: chosen_setting(tuning, r) for r in regimes}
    default = choose_default(tuning, finals)
    decided = default is not None  # a worker's `regimes` need not include the default
    if decided:
        order = [default] * (default in regimes) + [r for r in regimes if r != default]
    else:
        gain = {r: -math.inf if s is None else s["val_delta"] for r, s in settings.items()}
        order = sorted(regimes, key=lambda r: -gain[r])
        for regime in order:
            yield from (Job("final", regime, "ce", s) for s in FINAL_SEEDS)
    for regime in order:
        if decided:
            yield from (Job("final", regime, "ce", s) for s in FINAL_SEEDS)
        setting = settings[regime]
        if setting is None:
            continue
        a, w = setting["alpha"], setting["warmup"]
        yield from (Job("final", regime, "contextrast", s, a, w) for s in FINAL_SEEDS)
        if regime != default:
            continue
        yield from (Job("final", regime, "ccl", s, a, w) for s in FINAL_SEEDS)
        steps = ce_time_steps(finals, regime)
        if steps is not None:
            yield from (Job("final", regime, "ce_time", s, steps=steps) for s in FINAL_SEEDS)
    for regime in order:
        setting = settings[regime]
        if regime == default or setting is None:
            continue
        a, w = setting["alpha"], setting["warmup"]
        for v in POST_HOC.get(regime, ()):
            yield from (Job("final", regime, v, s, a, w) for s in FINAL_SEEDS)


# --------------------------------------------------------------------------- running


@contextlib.contextmanager
def claim(folder: Path) -> Iterator[bool]:
    """Try to own a run folder (a non-blocking lock held while the run trains); yields whether
    this process got it. A crashed worker's claim ends with its process."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "claim.lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def recorder(job: Job, cfg: TrainConfig) -> AnchorRecorder | None:
    """Seed-0 final ce and contextrast runs record their anchors after every evaluation (eval
    mode, no RNG: the weights are unchanged), so whichever regime Rule 2 picks, its reference
    runs are the study's own (`python -m ctx.experiments reference --regime chosen`)."""
    if (job.phase, job.seed) == ("final", 0) and job.variant in ("ce", "contextrast"):
        return AnchorRecorder(cfg, Path(cfg.out) / "anchors.pt")
    return None


def run_job(job: Job, runs_dir: Path, **run) -> dict:
    """Train (or resume) one job and return its results row (test metrics for final jobs only)."""
    cfg = job.config(runs_dir, **run)
    result = train_or_load(cfg, on_epoch_end=recorder(job, cfg))
    last = result.history[-1]
    device = next(result.model.parameters()).device
    row = {
        "phase": job.phase,
        "regime": job.regime,
        "variant": job.variant,
        "seed": job.seed,
        "alpha": job.alpha,
        "warmup": job.warmup,
        "steps": last["step"],
        "val_miou": last["val"]["miou"],
        "val_boundary_miou": last["val"]["boundary_miou"],
        "train_seconds": last["train_seconds"],
        "train_cpu_seconds": last["train_cpu_seconds"],
        "threads": torch.get_num_threads(),
        "device": device_name(device),
        "val_curve": [
            [h["step"], h["train_cpu_seconds"], h["val"]["miou"]] for h in result.history
        ],
        "config": {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(dataclasses.replace(cfg, out=portable(cfg.out))).items()
        },
    }
    if job.phase == "final":
        from ctx.experiments.error_kinds import measure  # that module reads this one's plan

        scenes = cfg.digit_scenes("test", TEST_SCENES)  # made once for both measurements
        test = evaluate(result.model, scenes, device, NUM_CLASSES)
        row.update({k: test[k] for k in ("miou", "boundary_miou", "pixel_acc", "per_class_iou")})
        # measured now, so `error-kinds` needs no run folder (a session's folders may be gone)
        kinds = measure(result.model, scenes)
        row["error_kinds"] = {k: v for k, v in kinds.items() if k != "miou"}
    return row


def load_results(path: Path) -> dict:
    """A study results file ({"runs": [...]} when it does not exist yet)."""
    if not path.exists():
        return {"runs": []}
    return read_results(path, {"runs": [dict]}, "python -m ctx.experiments regimes")


def study(
    regimes: list[str],
    results_dir: Path,
    runs_dir: Path,
    command: str,
    max_jobs: int | None = None,
    variants: list[str] | None = None,
    **run,
) -> None:
    """Run jobs of the plan until none is left that this worker can take (see module doc);
    `variants` restricts the worker to those variants' jobs (None: all)."""
    tuning_path = results_dir / "regimes" / "tuning.json"
    final_path = results_dir / "regimes.json"
    done_jobs = 0
    while max_jobs is None or done_jobs < max_jobs:
        tuning, finals = load_results(tuning_path)["runs"], load_results(final_path)["runs"]
        done = {_row_key(r) for r in tuning + finals}
        busy = False  # a job another worker holds (its result may unblock later jobs)
        for job in plan(tuning, finals, regimes):
            if job.key in done or (variants is not None and job.variant not in variants):
                continue
            with claim(runs_dir / job.name) as mine:
                if not mine:
                    busy = True
                    continue
                path = tuning_path if job.phase == "tune" else final_path
                if job.key in {_row_key(r) for r in load_results(path)["runs"]}:
                    break  # another worker finished it since we looked
                tic = time.perf_counter()
                print(f"[study] {job.name} ...", flush=True)
                row = run_job(job, runs_dir, **run)
                with locked(path):
                    data = load_results(path)
                    if _row_key(row) not in {_row_key(r) for r in data["runs"]}:
                        data["runs"].append(row)
                    data["command"] = command
                    write_json(data, path)
                what, score = ("test", row["miou"]) if "miou" in row else ("val", row["val_miou"])
                print(
                    f"[study] {job.name}: {what} mIoU {score:.2f} % "
                    f"({time.perf_counter() - tic:.0f} s)",
                    flush=True,
                )
                done_jobs += 1
            break
        else:
            if not busy:
                break
            time.sleep(30)  # wait for the other workers' runs to unblock the next jobs


# --------------------------------------------------------------------------- report


def post_hoc_controls(default: str | None) -> list[tuple[str, str]]:
    """(regime, control) of every POST_HOC control; none in the `default` regime, which trains
    the protocol's own controls."""
    return [(r, c) for r, controls in POST_HOC.items() if r != default for c in controls]


def final_counts(finals: list[dict], regime: str, variants: tuple[str, ...]) -> dict[str, int]:
    """How many final runs of each of `variants` in `regime` are in."""
    return {v: sum((r["regime"], r["variant"]) == (regime, v) for r in finals) for v in variants}


def paired(finals: list[dict], regime: str, variant: str, base: str = "ce") -> dict | None:
    """Per-seed differences variant - base in a regime: mean, std, n, 95 % t-interval."""
    a = _by_seed([r for r in finals if r["regime"] == regime], variant=variant)
    b = _by_seed([r for r in finals if r["regime"] == regime], variant=base)
    diffs = paired_diffs({s: r["miou"] for s, r in a.items()}, {s: r["miou"] for s, r in b.items()})
    if not diffs:
        return None
    mean, sd = mean_std(diffs)
    lo, hi = t_interval(diffs)
    base_mean = statistics.mean(b[s]["miou"] for s in sorted(a) if s in b)
    return {
        "n": len(diffs),
        "mean": mean,
        "sd": sd,
        "lo": lo,
        "hi": hi,
        "diffs": diffs,
        "base_miou": base_mean,
        "error_cut": mean / (100 - base_mean) if base_mean < 100 else math.nan,
    }
