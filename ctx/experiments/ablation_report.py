"""results/ablation.md (mean ± std per variant, differences to ce paired by seed) and
results/ablation.png from an ablation results file."""

from __future__ import annotations

import statistics
from pathlib import Path

from ctx.experiments.stats import mean_std, paired_diffs, pm
from ctx.experiments.variants import DESCRIPTIONS


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
        "boundary mIoU (%) | steps | train min |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["paired"] is None:
            delta = "–"
        else:
            m, s, n = r["paired"]
            delta = pm(m, s, "+.2f") + (f" ({n} seeds)" if n != r["n"] else "")
        lines.append(
            f"| `{r['variant']}` | {DESCRIPTIONS[r['variant']]} | {r['n']} | {pm(*r['miou'])} "
            f"| {delta} | {pm(*r['boundary_miou'])} | {r['steps']:.0f} | {r['minutes']:.1f} |"
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
