"""The command line of the studies: `python -m ctx.experiments TASK [options]`.

    python -m ctx.experiments ablation                # full: 5 variants x 3 seeds, resumable
    python -m ctx.experiments ablation --quick --results-dir /tmp/q   # smoke test (CI)
    python -m ctx.experiments tune --steps 2000       # PA settings on the validation scenes
    python -m ctx.experiments reference               # data/reference/ from the seed-0 runs
    python -m ctx.experiments reference --regime chosen   # ... from the regime study's choice
    python -m ctx.experiments report                  # results/ablation.md and .png again
    python -m ctx.experiments regimes --threads 1     # the regime study (regime_study)
    python -m ctx.experiments regimes --status        # ... how far it is (regime_progress)
    python -m ctx.experiments diagnose                # what the PA term changes (diagnosis)
    python -m ctx.experiments gallery                 # data/regimes/ from the study's runs (gallery)
    python -m ctx.experiments mechanisms              # what BANE acts on per regime (mechanisms)
    python -m ctx.experiments error-kinds --runs-dir runs/regimes  # which errors the PA term removes

The ablation trains each variant x seed into runs/ablation/<variant>_seed<k>/ (a killed run
resumes), evaluates it on the frozen test scenes and appends it to results/ablation.json; its
seed-0 ce and contextrast runs become the reference runs the notebooks read (ctx.reference).
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

from ctx.engine.config import RULES, SEED_LIMIT, TrainConfig, validate_config
from ctx.engine.device import resolve_device
from ctx.engine.interrupt import Interrupted
from ctx.experiments import (
    diagnosis,
    error_kinds,
    gallery,
    mechanisms,
    regime_progress,
    regime_reference,
    regime_report,
    regime_study,
)
from ctx.experiments.ablation import DEFAULT_RUNS, DEFAULT_SEEDS, QUICK, ablation
from ctx.experiments.ablation_report import REMAKE, SHAPE, report
from ctx.experiments.regimes import REGIMES
from ctx.experiments.tuning import parse_grid, tune
from ctx.experiments.variants import ALL_VARIANTS, DESCRIPTIONS
from ctx.io import read_results
from ctx.reference import ROOT, export_reference
from ctx.resources import data_dir
from ctx.validation import OneLineParser

TASKS = [
    "ablation",
    "tune",
    "reference",
    "report",
    "regimes",
    "diagnose",
    "gallery",
    "mechanisms",
    "error-kinds",
]


# The options each task reads (argparse dests). One parser serves every task, so an option given
# to a task that does not read it is refused: silently ignored, `regimes --seeds 9` would train
# every seed of the study.
_RUN = ("steps", "warmup_steps", "alpha", "device", "threads", "quick")
TASK_OPTIONS = {
    "ablation": {"variants", "seeds", "results_dir", "runs_dir", *_RUN},
    "tune": {"grid", "results_dir", "runs_dir", *_RUN},
    "reference": {"regime", "results_dir", "runs_dir", "reference_dir", "device", "threads", "quick"},
    "report": {"results_dir"},
    "regimes": {"regimes", "variants", "max_jobs", "results_dir", "runs_dir", "device", "threads", "report_only", "status"},
    "diagnose": {"results_dir", "threads", "report_only"},
    "gallery": {"regimes", "results_dir", "runs_dir", "out", "remake_dir", "threads"},
    "mechanisms": {"out", "results_dir", "threads", "report_only"},
    "error-kinds": {"regimes", "results_dir", "runs_dir", "remake_dir", "threads", "report_only"},
}  # fmt: skip


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _options_epilog() -> str:
    """The --help lines listing the options of each task."""
    lines = [f"  {t:<12}{' '.join(sorted(map(_flag, o)))}" for t, o in TASK_OPTIONS.items()]
    return "options each task reads (others are refused):\n" + "\n".join(lines)


def _given(p: argparse.ArgumentParser, argv: list[str], args: argparse.Namespace) -> set[str]:
    """The options argv sets (dests), however spelt (--flag=v, an abbreviation): argv parsed again
    into a namespace whose every dest is preset, so that argparse fills in no default."""
    unset = object()
    ns = argparse.Namespace(**dict.fromkeys(vars(args), unset))
    p.parse_args(argv, namespace=ns)
    return {k for k, v in vars(ns).items() if v is not unset and k != "task"}


def unread_option(task: str, given: set[str]) -> str | None:
    """Why an option in `given` does nothing for `task` (None: each is read)."""
    extra = sorted(given - TASK_OPTIONS[task])
    if not extra:
        return None
    reads = " ".join(sorted(map(_flag, TASK_OPTIONS[task])))
    return f"{_flag(extra[0])} does nothing for `{task}` (it reads {reads}): drop it"


def _without_options(argv: list[str], names=("--variants", "--seeds")) -> list[str]:
    """argv minus the given options and their values (the ablation records those per file)."""
    out, skip = [], False
    for a in argv:
        if a.startswith("--"):
            skip = a.split("=")[0] in names
        if not skip:
            out.append(a)
    return out


def main(argv: list[str] | None = None) -> None:
    p = OneLineParser(
        prog="python -m ctx.experiments",
        description=__doc__,
        epilog=_options_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("task", choices=TASKS)
    p.add_argument(
        "--grid",
        nargs="+",
        default=["alpha=0.1,0.02", "warmup_steps=0,1000"],
        help="tune: FIELD=V1,V2 ... (TrainConfig fields, numbers)",
    )
    p.add_argument("--variants", nargs="+", default=ALL_VARIANTS, choices=list(DESCRIPTIONS))
    p.add_argument("--seeds", nargs="+", type=int, default=DEFAULT_SEEDS)
    p.add_argument("--steps", type=int, default=TrainConfig.max_steps)
    p.add_argument("--warmup-steps", type=int, default=0, help="CE-only steps before the PA term")
    p.add_argument("--alpha", type=float, default=TrainConfig.alpha, help="weight of the PA term")
    p.add_argument("--results-dir", type=Path, default=ROOT / "results")
    p.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS)
    p.add_argument("--reference-dir", type=Path, default=data_dir() / "reference")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--quick", action="store_true", help="tiny runs: a smoke test of the whole pipeline"
    )
    p.add_argument(
        "--regimes",
        nargs="+",
        default=list(REGIMES),
        choices=list(REGIMES),
        help="regimes: the regimes this worker takes jobs of (default: all, cheap first); "
        "gallery, error-kinds: the regimes to update",
    )
    p.add_argument("--max-jobs", type=int, default=None, help="regimes: stop after N runs")
    p.add_argument(
        "--regime",
        default=None,
        help="reference: train and export this regime's seed-0 ce and contextrast runs at its "
        "chosen PA setting ('chosen': the study's default regime); default: export the "
        "ablation's seed-0 runs from --runs-dir",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="regimes, diagnose, mechanisms, error-kinds: rewrite the report from the results "
        "files, train and measure nothing",
    )
    p.add_argument(
        "--status",
        action="store_true",
        help="regimes: print the runs done, started and left per regime and phase, and the CPU "
        "hours left; train and write nothing",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=data_dir() / "regimes",
        help="gallery: its folder; mechanisms: the gallery it reads",
    )
    p.add_argument(
        "--remake-dir",
        type=Path,
        help="gallery, error-kinds: retrain runs gone from --runs-dir here (or read them, once "
        "retrained)",
    )
    argv = list(argv if argv is not None else sys.argv[1:])
    args = p.parse_args(argv)
    if problem := unread_option(args.task, _given(p, argv, args)):
        sys.exit(f"error: {problem}")
    command = "python -m ctx.experiments " + shlex.join(argv)
    base = TrainConfig(
        max_steps=args.steps,
        warmup_steps=args.warmup_steps,
        alpha=args.alpha,
        device=args.device,
        threads=args.threads,
        progress=sys.stderr.isatty(),
    )
    test_scenes = None
    if args.quick:
        base = dataclasses.replace(base, **QUICK)
        test_scenes = 16
    try:
        if args.max_jobs is not None and args.max_jobs < 1:
            raise ValueError(f"--max-jobs must be >= 1, got {args.max_jobs}")
        if any(not 0 <= s < SEED_LIMIT for s in args.seeds):
            raise ValueError(
                f"--seeds must be integers >= 0 and < {SEED_LIMIT}, got {args.seeds} ("
                f"{RULES['seed'].fix})"
            )
        flag = {"max_steps": "--steps"}  # the other fields keep their ctx.train flag names
        validate_config(base, lambda f: flag.get(f, "--" + f.replace("_", "-")))
        resolve_device(args.device)
        if not args.status:  # read-only
            args.results_dir.mkdir(parents=True, exist_ok=True)
        _run(args, argv, base, command, test_scenes)
    except Interrupted as e:  # the run saved its last step: the same command resumes
        sys.exit(f"{e}")
    except KeyboardInterrupt:
        sys.exit("interrupted: finished runs are in the results files; run again to resume")
    except (ValueError, OSError, FloatingPointError) as e:
        sys.exit(f"error: {e}")


def regime_command(args: argparse.Namespace) -> str:
    """The command recorded in results/regimes.json: the one that reproduces the study."""
    return "python -m ctx.experiments regimes" + (
        f" --threads {args.threads}" if args.threads else ""
    )


def _run(
    args: argparse.Namespace,
    argv: list[str],
    base: TrainConfig,
    command: str,
    test_scenes: int | None,
) -> None:
    """Carry out the task `args.task` (see the module doc)."""
    if args.task == "ablation":
        prefix = "python -m ctx.experiments " + shlex.join(_without_options(argv))
        ablation(
            args.variants, args.seeds, base, args.results_dir, args.runs_dir, prefix, test_scenes
        )
    elif args.task == "tune":
        tune(parse_grid(args.grid), base, args.results_dir, args.runs_dir, command)
    elif args.task == "regimes" and args.status:
        runs = ROOT / "runs" / "regimes" if args.runs_dir == DEFAULT_RUNS else args.runs_dir
        print(regime_progress.status(args.results_dir, runs, args.regimes))
    elif args.task == "regimes":
        if not args.report_only:
            regime_study.study(
                args.regimes,
                args.results_dir,
                ROOT / "runs" / "regimes" if args.runs_dir == DEFAULT_RUNS else args.runs_dir,
                regime_command(args),
                args.max_jobs,
                None if args.variants == ALL_VARIANTS else args.variants,
                device=args.device,
                threads=args.threads,
                progress=sys.stderr.isatty(),
            )
        regime_report.write_report(args.results_dir, regime_command(args))
    elif args.task == "diagnose" and args.report_only:
        diagnosis.rewrite(args.results_dir / "regimes")
        regime_report.write_report(args.results_dir, regime_command(args))
    elif args.task == "diagnose":
        diagnosis.main(args.results_dir / "regimes", ROOT / "runs" / "diagnose", args.threads)
    elif args.task == "mechanisms" and args.report_only:
        mechanisms.rewrite(args.results_dir / "regimes")
        regime_report.write_report(args.results_dir, regime_command(args))
    elif args.task == "mechanisms":
        mechanisms.main(args.out, args.results_dir / "regimes", args.threads)
        regime_report.write_report(args.results_dir, regime_command(args))
    elif args.task == "error-kinds" and args.report_only:
        error_kinds.rewrite(args.results_dir)
        regime_report.write_report(args.results_dir, regime_command(args))
    elif args.task == "error-kinds":
        runs = ROOT / "runs" / "regimes" if args.runs_dir == DEFAULT_RUNS else args.runs_dir
        only = None if args.regimes == list(REGIMES) else args.regimes
        error_kinds.main(args.results_dir, runs, command, args.remake_dir, only, args.threads)
        regime_report.write_report(args.results_dir, regime_command(args))
    elif args.task == "gallery":
        runs = ROOT / "runs" / "regimes" if args.runs_dir == DEFAULT_RUNS else args.runs_dir
        only = None if args.regimes == list(REGIMES) else args.regimes
        gallery.export_gallery(
            args.results_dir, runs, args.out, command, args.remake_dir, only, args.threads
        )
    elif args.task == "report":
        path = args.results_dir / "ablation.json"
        if not path.is_file():
            raise ValueError(f"no {path}: run `python -m ctx.experiments ablation` first")
        report(read_results(path, SHAPE, REMAKE), args.results_dir)
    elif args.regime is not None:
        regime_reference.build_reference(
            regime_reference.resolve_regime(args.regime, args.results_dir),
            args.results_dir,
            ROOT / "runs" / "reference" if args.runs_dir == DEFAULT_RUNS else args.runs_dir,
            args.reference_dir,
            command,
            test_scenes,
            device=args.device,
            threads=args.threads,
            progress=sys.stderr.isatty(),
        )
    else:
        sources = {v: args.runs_dir / f"{v}_seed0" for v in ("ce", "contextrast")}
        export_reference(sources, args.reference_dir, command, {"seed": 0}, test_scenes)
