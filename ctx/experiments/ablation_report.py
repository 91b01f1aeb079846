"""results/ablation.md (mean ± std per variant, differences to ce paired by seed with their
95 % t-interval) and results/ablation.png from an ablation results file."""

from __future__ import annotations

import statistics
from pathlib import Path

from ctx.experiments.stats import mean_std, paired_diffs, pm, t_interval
from ctx.experiments.variants import DESCRIPTIONS
from ctx.io import NUMBER

# results/ablation.json as `report` reads it (ctx.io.read_results)
RUN = {"variant": str, "seed": int, "miou": NUMBER, "boundary_miou": NUMBER}
SHAPE = {
    "runs": [{**RUN, "steps": NUMBER, "train_seconds": NUMBER}],
    "dataset": {"test_scenes": int},
    "command": str,
}
REMAKE = "python -m ctx.experiments ablation"


def summarise(runs: list[dict]) -> list[dict]:
    """Per variant: n, (mean, std) over seeds of test mIoU and boundary mIoU, mean steps/time,
    `diffs`: the per-seed differences to `ce` over the seeds both ran, and `paired`: their
    (mean, std, n), None without such seeds. Pairing by seed removes the seed-to-seed spread
    both share (same initial weights and batches), which is larger than the effects here."""
    ce = {r["seed"]: r["miou"] for r in runs if r["variant"] == "ce"}
    rows = []
    for v in [v for v in DESCRIPTIONS if any(r["variant"] == v for r in runs)]:
        rs = [r for r in runs if r["variant"] == v]
        diffs = [] if v == "ce" else paired_diffs({r["seed"]: r["miou"] for r in rs}, ce)
        rows.append(
            {
                "variant": v,
                "n": len(rs),
                "miou": mean_std([r["miou"] for r in rs]),
                "boundary_miou": mean_std([r["boundary_miou"] for r in rs]),
                "diffs": diffs,
                "paired": (*mean_std(diffs), len(diffs)) if diffs else None,
                "steps": statistics.mean(r["steps"] for r in rs),
                "minutes": statistics.mean(r["train_seconds"] for r in rs) / 60,
            }
        )
    return rows


def report(results: dict, results_dir: Path) -> None:
    """Write ablation.md (mean ± std table) and ablation.png from a results dict."""
    rows = summarise(results["runs"])
    if not rows:
        return
    lines = [
        "| variant | what it is | seeds | test mIoU (%) | Δ vs ce, paired by seed | "
        "95 % interval of Δ | boundary mIoU (%) | steps | train min |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        delta, interval = "–", "–"
        if r["paired"] is not None:
            m, s, n = r["paired"]
            delta = pm(m, s, "+.2f") + (f" ({n} seeds)" if n != r["n"] else "")
            lo, hi = t_interval(r["diffs"])
            interval = "–" if lo != lo else f"[{lo:+.2f}, {hi:+.2f}]"
        lines.append(
            f"| `{r['variant']}` | {DESCRIPTIONS[r['variant']]} | {r['n']} | {pm(*r['miou'])} "
            f"| {delta} | {interval} | {pm(*r['boundary_miou'])} | {r['steps']:.0f} "
            f"| {r['minutes']:.1f} |"
        )
    text = (
        f"Test mIoU on the frozen digit-scene test split ({results['dataset']['test_scenes']} "
        "scenes), mean ± std over seeds; Δ = mean ± std over seeds of (variant − ce) with the "
        "same seed, and the two-sided 95 % t-interval of its mean (n − 1 degrees of freedom); "
        "train minutes on one CPU thread of a shared machine.\n"
        f"Reproduce: `{results['command']}`\n\n" + "\n".join(lines) + "\n"
    )
    (results_dir / "ablation.md").write_text(text)
    _plot(results, results_dir / "ablation.png")


def plot_ablation(results: dict, title: str, level: float = 0.95):
    """The ablation as dots with `level` t-intervals (no truncated bars): left, each variant's
    test mIoU (mean over seeds, interval, the seeds as small grey dots); right, its difference
    to ce paired by seed. Returns the matplotlib Figure."""
    import numpy as np

    from ctx.plotting import figure

    rows = summarise(results["runs"])
    fig, ((ax, ax_d),) = figure(10, 3.4, 1, 2)
    for i, r in enumerate(rows):
        seeds = [x["miou"] for x in results["runs"] if x["variant"] == r["variant"]]
        colour = "C3" if r["variant"] == "contextrast" else "C0"
        for a, values, mean in ((ax, seeds, r["miou"][0]), (ax_d, r["diffs"], None)):
            if not values:
                continue
            m = np.mean(values) if mean is None else mean
            lo, hi = t_interval(values, level)
            if lo == lo:
                a.errorbar(i, m, yerr=[[m - lo], [hi - m]], fmt="none", ecolor=colour, capsize=4)
            a.scatter([i] * len(values), values, color="0.6", s=10, zorder=2)
            a.scatter(i, m, color=colour, s=40, zorder=3)
    names = [r["variant"] for r in rows]
    ax_d.axhline(0, color="k", lw=0.8)
    for a in (ax, ax_d):
        a.set_xticks(range(len(rows)), names, rotation=20)
        a.grid(axis="y", alpha=0.3)
    ax.set_ylabel("test mIoU (%)")
    ax.set_title(f"test mIoU: mean (dot), {level:.0%} interval, seeds (grey)", fontsize=9)
    ax_d.set_ylabel("Δ test mIoU vs ce, same seed (points)")
    ax_d.set_title(f"paired by seed: mean, {level:.0%} interval, seeds", fontsize=9)
    fig.suptitle(title)
    return fig


def _plot(results: dict, path: Path) -> None:
    """results/ablation.png: `plot_ablation` saved."""
    import matplotlib.pyplot as plt

    fig = plot_ablation(results, "Ablation: test mIoU over seeds")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
