"""Experiments: the ablation (variants x seeds, resumable, appending to results/ablation.json)
and the reference artifacts the notebooks explore (data/reference/).

    python -m ctx.experiments ablation                # full: 5 variants x 3 seeds, resumable
    python -m ctx.experiments ablation --quick --results-dir /tmp/q   # smoke test (CI)
    python -m ctx.experiments reference               # data/reference/ from the seed-0 runs
    python -m ctx.experiments report                  # results/ablation.md and .png again
    python -m ctx.experiments regimes --threads 1     # the regime study (ctx.regime_study)
    python -m ctx.experiments diagnose                # what the PA term changes (ctx.diagnosis)

Each run trains with `ctx.train.train` into runs/ablation/<variant>_seed<k>/ (so a killed run
resumes), is evaluated on the frozen test scenes, and is appended atomically to the results file.
At every epoch the run also snapshots its per-stage class anchors on a fixed probe set of
validation scenes (for notebook 05).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import shlex
import statistics
import sys
from pathlib import Path

import torch

from ctx import regime_report, regime_study
from ctx.anchors import class_anchors
from ctx.io import locked, read_json, save_checkpoint, write_json
from ctx.labels import resize_labels
from ctx.reference import ROOT, export_reference, probe_scenes
from ctx.regimes import REGIMES
from ctx.resources import data_dir
from ctx.train import (
    Interrupted,
    TrainConfig,
    resolve_device,
    train,
    validate_config,
)
from ctx.variants import ALL_VARIANTS, DESCRIPTIONS, VARIANTS, evaluate_on_test

DEFAULT_SEEDS = [0, 1, 2]
DEFAULT_RUNS = ROOT / "runs" / "ablation"
PROBE_SCENES = 64  # validation scenes whose anchors are snapshotted each epoch
QUICK = {
    "image_size": 32,
    "train_scenes": 64,
    "val_scenes": 16,
    "max_steps": 8,
    "batch_size": 8,
    "widths": (8, 8, 16, 16),
    "embed_dim": 8,
}


@torch.no_grad()
def stage_anchors(
    model, images: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-stage anchors of `model` (eval mode) on a probe set: ([S,C,D], present [S,C])."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    _, embs = model(images.to(device), return_embeddings=True)
    model.train(was)
    out = [
        class_anchors(
            e, resize_labels(labels.to(device), e.shape[-2:]), model.num_classes, distributed=False
        )
        for e in embs
    ]
    return torch.stack([a for a, _ in out]).cpu(), torch.stack([p for _, p in out]).cpu()


class AnchorRecorder:
    """on_epoch_end hook: appends the probe set's per-stage anchors after every evaluation."""

    def __init__(self, cfg: TrainConfig, path: Path) -> None:
        self.images, self.labels = probe_scenes(cfg, PROBE_SCENES)
        self.path = path
        self.snapshots = (
            torch.load(path, weights_only=True)
            if path.exists()
            else {"step": [], "anchors": [], "present": []}
        )

    def __call__(self, model, entry: dict) -> None:
        if entry["step"] in self.snapshots["step"]:
            return
        anchors, present = stage_anchors(model, self.images, self.labels)
        self.snapshots["step"].append(entry["step"])
        self.snapshots["anchors"].append(anchors.half())
        self.snapshots["present"].append(present)
        save_checkpoint(self.snapshots, self.path)


def run_config(
    variant: str, seed: int, base: TrainConfig, runs_dir: Path, steps: int | None = None
) -> TrainConfig:
    """The TrainConfig of one ablation run."""
    spec = VARIANTS["ce"] if variant == "ce_time" else VARIANTS[variant]
    return dataclasses.replace(
        base,
        **spec,
        seed=seed,
        max_steps=steps or base.max_steps,
        out=str(runs_dir / f"{variant}_seed{seed}"),
    )


def run_one(
    variant: str,
    seed: int,
    base: TrainConfig,
    runs_dir: Path,
    test_scenes: int | None,
    steps: int | None = None,
) -> dict:
    """Train (or resume) one run, evaluate it on the test scenes, return its results row."""
    cfg = run_config(variant, seed, base, runs_dir, steps)
    recorder = AnchorRecorder(cfg, Path(cfg.out) / "anchors.pt")
    result = train(cfg, on_epoch_end=recorder)
    metrics = evaluate_on_test(result.model, cfg, test_scenes)
    last = result.history[-1]
    return {
        "variant": variant,
        "seed": seed,
        "steps": last["step"],
        "miou": metrics["miou"],
        "boundary_miou": metrics["boundary_miou"],
        "pixel_acc": metrics["pixel_acc"],
        "per_class_iou": metrics["per_class_iou"],
        "val_miou": last["val"]["miou"],
        "train_seconds": last["train_seconds"],
    }


def ce_time_steps(runs: list[dict], steps: int) -> int | None:
    """Steps that give CE the wall time contextrast took, once both exist.

    Per variant the *fastest* seconds per step over its seeds: other jobs on a shared machine
    only ever add time (two contextrast seeds that ran beside a profiler took 1.2x as long as
    the others), so the minimum is the cleanest estimate of what each step costs."""
    t = {
        v: [r["train_seconds"] / r["steps"] for r in runs if r["variant"] == v]
        for v in ("ce", "contextrast")
    }
    if not t["ce"] or not t["contextrast"]:
        return None
    return round(steps * min(t["contextrast"]) / min(t["ce"]))


def file_command(prefix: str, runs: list[dict]) -> str:
    """The command that reproduces a results file holding `runs`: `prefix` (the settings) plus
    the variants and seeds actually in the file, so runs made by several workers (each with its
    own --variants/--seeds) are described by one command."""
    variants = [v for v in ALL_VARIANTS if any(r["variant"] == v for r in runs)]
    seeds = sorted({r["seed"] for r in runs})
    parts = [prefix]
    if variants != ALL_VARIANTS:
        parts.append("--variants " + " ".join(variants))
    if seeds != DEFAULT_SEEDS:
        parts.append("--seeds " + " ".join(map(str, seeds)))
    return " ".join(parts)


def ablation(
    variants: list[str],
    seeds: list[int],
    base: TrainConfig,
    results_dir: Path,
    runs_dir: Path,
    command: str,
    test_scenes: int | None = None,
) -> dict:
    """Run every missing (variant, seed), appending each to results_dir/ablation.json.

    `command` is the invocation without --variants/--seeds. Several processes may share one
    results file (e.g. one per core, each with its own --seeds): the file is re-read and
    rewritten under a lock around each run, and a run another process already finished is skipped.
    """
    path = results_dir / "ablation.json"
    config = {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in dataclasses.asdict(base).items()
        if k not in {"out", "device", "progress", "threads", "num_workers", "seed"}
    }
    header = {
        "config": config,
        "variants": DESCRIPTIONS,
        "dataset": {
            "name": "digit scenes",
            "image_size": base.image_size,
            "train_scenes": base.train_scenes,
            "val_scenes": base.val_scenes,
            "test_scenes": test_scenes or 500,
            "digits_per_class": {"train": 350, "val": 75, "test": 75},
        },
    }

    def load() -> dict:
        results = read_json(path) if path.exists() else {"runs": []}
        if results["runs"] and results.get("config") != config:
            raise ValueError(
                f"{path} holds runs made with other settings; use another --results-dir "
                f"or move that file away"
            )
        return results

    def save(new_runs: list[dict]) -> dict:
        """Append `new_runs` to the file as it is now (other workers may have added theirs)."""
        with locked(path):
            results = load()
            results["runs"].extend(new_runs)
            results.update(header, command=file_command(command, results["runs"]))
            write_json(results, path)
        return results

    load()  # refuse other settings before training anything
    for seed in seeds:
        for variant in variants:
            with locked(path):
                results = load()
            if any((r["variant"], r["seed"]) == (variant, seed) for r in results["runs"]):
                continue
            steps = None
            if variant == "ce_time":
                steps = ce_time_steps(results["runs"], base.max_steps)
                if steps is None:
                    print(
                        "ce_time needs finished ce and contextrast runs first; skipped",
                        file=sys.stderr,
                    )
                    continue
            row = run_one(variant, seed, base, runs_dir, test_scenes, steps)
            save([row])
            print(f"{variant} seed {seed}: test mIoU {row['miou']:.2f} %", flush=True)
    results = save([])
    report(results, results_dir)
    return results


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else float("nan")


def summarise(runs: list[dict]) -> list[dict]:
    """Per variant: n, (mean, std) over seeds of test mIoU and boundary mIoU, mean steps/time,
    `diffs`: the per-seed differences to `ce` over the seeds both ran, and `paired`: their
    (mean, std, n), None without such seeds. Pairing by seed removes the seed-to-seed spread
    both share (same initial weights and batches), which is larger than the effects here."""
    ce = {r["seed"]: r["miou"] for r in runs if r["variant"] == "ce"}
    rows = []
    for v in [v for v in DESCRIPTIONS if any(r["variant"] == v for r in runs)]:
        rs = [r for r in runs if r["variant"] == v]
        diffs = [] if v == "ce" else [r["miou"] - ce[r["seed"]] for r in rs if r["seed"] in ce]
        rows.append(
            {
                "variant": v,
                "n": len(rs),
                "miou": _mean_std([r["miou"] for r in rs]),
                "boundary_miou": _mean_std([r["boundary_miou"] for r in rs]),
                "diffs": diffs,
                "paired": (*_mean_std(diffs), len(diffs)) if diffs else None,
                "steps": statistics.mean(r["steps"] for r in rs),
                "minutes": statistics.mean(r["train_seconds"] for r in rs) / 60,
            }
        )
    return rows


def _pm(mean: float, std: float, fmt: str = ".2f") -> str:
    return f"{mean:{fmt}}" + ("" if std != std else f" ± {std:.2f}")


def report(results: dict, results_dir: Path) -> None:
    """Write ablation.md (mean ± std table) and ablation.png from a results dict."""
    rows = summarise(results["runs"])
    if not rows:
        return
    lines = [
        "| variant | what it is | seeds | test mIoU (%) | Δ vs ce, paired by seed | "
        "boundary mIoU (%) | steps | train min |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["paired"] is None:
            delta = "–"
        else:
            m, s, n = r["paired"]
            delta = _pm(m, s, "+.2f") + (f" ({n} seeds)" if n != r["n"] else "")
        lines.append(
            f"| `{r['variant']}` | {DESCRIPTIONS[r['variant']]} | {r['n']} | {_pm(*r['miou'])} "
            f"| {delta} | {_pm(*r['boundary_miou'])} | {r['steps']:.0f} | {r['minutes']:.1f} |"
        )
    text = (
        f"Test mIoU on the frozen digit-scene test split ({results['dataset']['test_scenes']} "
        "scenes), mean ± std over seeds; Δ = mean ± std over seeds of (variant − ce) with the "
        "same seed; train minutes on one CPU thread of a shared machine.\n"
        f"Reproduce: `{results['command']}`\n\n" + "\n".join(lines) + "\n"
    )
    (results_dir / "ablation.md").write_text(text)
    _plot(results["runs"], rows, results_dir / "ablation.png")


def _plot(runs: list[dict], rows: list[dict], path: Path) -> None:
    """Left: test mIoU per variant (bars: mean, dots: seeds). Right: per-seed difference to ce."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (ax, ax_d) = plt.subplots(1, 2, figsize=(10, 3.4))
    names = [r["variant"] for r in rows]
    for i, r in enumerate(rows):
        color = "C3" if r["variant"] == "contextrast" else "C0"
        rs = [x for x in runs if x["variant"] == r["variant"]]
        ax.bar(i, r["miou"][0], color=color, alpha=0.6)
        ax.scatter([i] * len(rs), [x["miou"] for x in rs], color="k", s=12, zorder=3)
        if r["paired"] is not None:
            ax_d.bar(i, r["paired"][0], color=color, alpha=0.6)
            ax_d.scatter([i] * len(r["diffs"]), r["diffs"], color="k", s=12, zorder=3)
    ax.set_xticks(range(len(rows)), names, rotation=20)
    lo = min(x["miou"] for x in runs)
    ax.set_ylim(max(0, lo - 5), min(100, max(x["miou"] for x in runs) + 3))
    ax.set_ylabel("test mIoU (%)")
    ax.set_title("Test mIoU (bars: mean, dots: seeds)")
    ax_d.axhline(0, color="k", lw=0.8)
    ax_d.set_xticks(range(len(rows)), names, rotation=20)
    ax_d.set_ylabel("Δ test mIoU vs ce, same seed")
    ax_d.set_title("Paired by seed (bars: mean, dots: seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def tune(
    grid: dict[str, list], base: TrainConfig, results_dir: Path, runs_dir: Path, command: str
) -> dict:
    """Contextrast on a grid of settings (and CE once), scored on the VALIDATION scenes only;
    appends each run to results_dir/tuning.json. Choose settings here, report on test."""
    path = results_dir / "tuning.json"
    results = read_json(path) if path.exists() else {"command": command, "runs": []}
    done = [(r["variant"], r["overrides"]) for r in results["runs"]]
    combos = [("ce", {})] + [
        ("contextrast", dict(zip(grid, values, strict=True)))
        for values in itertools.product(*grid.values())
    ]
    for variant, overrides in combos:
        if (variant, overrides) in done:
            continue
        name = "_".join(f"{k}{v}" for k, v in overrides.items()) or "default"
        cfg = dataclasses.replace(
            base,
            **VARIANTS[variant],
            **overrides,
            out=str(runs_dir / f"tune_{variant}_{name}_steps{base.max_steps}"),
        )
        last = train(cfg).history[-1]
        results["runs"].append(
            {
                "variant": variant,
                "overrides": overrides,
                "steps": last["step"],
                "val_miou": last["val"]["miou"],
                "val_boundary_miou": last["val"]["boundary_miou"],
                "train_seconds": last["train_seconds"],
            }
        )
        write_json(results, path)
        print(f"tune {variant} {overrides}: val mIoU {last['val']['miou']:.2f} %", flush=True)
    return results


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
    p = argparse.ArgumentParser(
        prog="python -m ctx.experiments",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "task", choices=["ablation", "tune", "reference", "report", "regimes", "diagnose"]
    )
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
        help="regimes: the regimes this worker takes jobs of (default: all, cheap first)",
    )
    p.add_argument("--max-jobs", type=int, default=None, help="regimes: stop after N runs")
    p.add_argument(
        "--report-only", action="store_true", help="regimes: rewrite the report, train nothing"
    )
    args = p.parse_args(argv)
    argv = list(argv if argv is not None else sys.argv[1:])
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
        if any(s < 0 for s in args.seeds):
            raise ValueError(f"--seeds must be integers >= 0, got {args.seeds}")
        flag = {"max_steps": "--steps"}  # the other fields keep their ctx.train flag names
        validate_config(base, lambda f: flag.get(f, "--" + f.replace("_", "-")))
        resolve_device(args.device)
        args.results_dir.mkdir(parents=True, exist_ok=True)
        _run(args, argv, base, command, test_scenes)
    except Interrupted as e:  # the run saved its last step: the same command resumes
        sys.exit(f"{e}")
    except KeyboardInterrupt:
        sys.exit("interrupted: finished runs are in the results files; run again to resume")
    except (ValueError, OSError, FloatingPointError) as e:
        sys.exit(f"error: {e}")


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
        grid = {
            k: [float(x) if "." in x else int(x) for x in v.split(",")]
            for k, v in (g.split("=", 1) for g in args.grid)
        }
        tune(grid, base, args.results_dir, args.runs_dir, command)
    elif args.task == "regimes":
        regimes_command = "python -m ctx.experiments regimes" + (
            f" --threads {args.threads}" if args.threads else ""
        )
        if not args.report_only:
            regime_study.study(
                args.regimes,
                args.results_dir,
                ROOT / "runs" / "regimes" if args.runs_dir == DEFAULT_RUNS else args.runs_dir,
                regimes_command,
                args.max_jobs,
                None if args.variants == ALL_VARIANTS else args.variants,
                device=args.device,
                threads=args.threads,
                progress=sys.stderr.isatty(),
            )
        regime_report.write_report(args.results_dir, regimes_command)
    elif args.task == "diagnose":
        from ctx import diagnosis

        diagnosis.main(args.results_dir / "regimes", ROOT / "runs" / "diagnose", args.threads)
    elif args.task == "report":
        report(read_json(args.results_dir / "ablation.json"), args.results_dir)
    else:
        export_reference(args.runs_dir, args.reference_dir, command)


if __name__ == "__main__":
    main()
