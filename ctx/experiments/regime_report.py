"""results/regimes.md and results/regimes.png from the regime study's results files.

Every regime is reported, whatever it shows: those whose runs are not all in yet are listed with
what is missing. Numbers are read from the files, never typed in.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from ctx.experiments.regime_study import (
    ALPHAS,
    FINAL_SEEDS,
    POST_HOC,
    TUNE_SEEDS,
    WARMUPS,
    _row_key,
    choose_default,
    chosen_setting,
    eligible,
    final_counts,
    load_results,
    paired,
    rule_2,
    tune_jobs,
    tuning_complete,
)
from ctx.experiments.regimes import REGIMES
from ctx.experiments.stats import paired_diffs
from ctx.experiments.variants import DESCRIPTIONS
from ctx.io import locked, write_json, write_text


def write_report(results_dir: Path, command: str) -> dict:
    """Record the protocol's decisions in results/regimes.json (default regime, chosen PA
    settings, the regimes' definitions) and write results/regimes.md and regimes.png."""
    tuning = load_results(results_dir / "regimes" / "tuning.json")["runs"]
    final_path = results_dir / "regimes.json"
    with locked(final_path):
        data = load_results(final_path)
        data["command"] = data.get("command", command)
        data["default_regime"] = choose_default(tuning, data["runs"])
        data["chosen"] = {r: chosen_setting(tuning, r) for r in REGIMES}
        data["regimes"] = {
            r.name: {"why": r.why, "overrides": r.overrides} for r in REGIMES.values()
        }
        data["variants"] = DESCRIPTIONS
        write_json(data, final_path)
    write(data, tuning, results_dir)
    return data


def _f(x: float, fmt: str = ".2f") -> str:
    return "–" if x is None or x != x else f"{x:{fmt}}"


def _mean_cell(rows: list[dict], key: str, expected: int, **match) -> str:
    """Mean of `key` over the rows matching `match`; "(n)" appended when n != expected > 0."""
    vals = [r[key] for r in rows if all(r.get(k) == v for k, v in match.items())]
    if not vals:
        return "–"
    n = len(vals)
    return f"{sum(vals) / n:.2f}" + ("" if expected in (0, n) else f" ({n})")


def _interval(p: dict | None) -> str:
    if p is None:
        return "–"
    ci = "" if p["n"] < 2 else f" [{p['lo']:+.2f}, {p['hi']:+.2f}]"
    return f"{p['mean']:+.2f}{ci} (n={p['n']})"


def tuning_table(tuning: list[dict], finals: list[dict]) -> list[str]:
    """Validation mIoU per regime: CE and each (alpha, warm-up), mean over the tuning seeds."""
    head = [f"α={a:g}, w={w:g}" for a in ALPHAS for w in WARMUPS]
    lines = [
        "| regime | CE | " + " | ".join(head) + " | chosen | Δ val (chosen − CE) | "
        "eligible as default? |",
        "|---|---|" + "---|" * len(head) + "---|---|---|",
    ]
    for name in REGIMES:
        rs = [r for r in tuning if r["regime"] == name]
        gpu = REGIMES[name].gpu
        if not rs:
            why = " (GPU-sized)" if gpu else ""
            last = "no: GPU-sized, ≥ 3× a default CE run" if gpu else ""
            lines.append(f"| {name} | not run yet{why} |" + " |" * (len(head) + 2) + f" {last} |")
            continue

        cells = [_mean_cell(rs, "val_miou", len(TUNE_SEEDS), variant="ce")]
        cells += [
            _mean_cell(rs, "val_miou", len(TUNE_SEEDS), variant="contextrast", alpha=a, warmup=w)
            for a in ALPHAS
            for w in WARMUPS
        ]
        c = chosen_setting(tuning, name)
        chosen = "–" if c is None else f"α={c['alpha']:g}, w={c['warmup']:g}"
        delta = "–" if c is None else f"{c['val_delta']:+.2f}"
        if gpu:
            lines.append(
                f"| {name} | " + " | ".join(cells) + f" | {chosen} | {delta} | no: GPU-sized |"
            )
            continue
        e = eligible(tuning, finals, name)
        verdict = ("yes" if e["eligible"] else "no") if e["decided"] else "not yet"
        gate = f"{verdict} (cost ×{_f(e['cost_ratio'])}, CE val {_f(e['ce_val_miou'], '.1f')} %)"
        if not tuning_complete(tuning, name):
            gate += ", tuning incomplete"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {chosen} | {delta} | {gate} |")
    return lines


def final_table(finals: list[dict]) -> list[str]:
    """Test mIoU per regime: CE, Contextrast, their paired difference with a 95 % interval."""
    lines = [
        "| regime | seeds | CE test mIoU | Contextrast test mIoU | Δ paired [95 % CI] | "
        "share of CE's error cut | Δ boundary mIoU |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in REGIMES:
        rs = [r for r in finals if r["regime"] == name]
        p = paired(finals, name, "contextrast")
        ce, cx, interval, cut = _test_cells(finals, name, 0)
        lines.append(
            f"| {name} | {0 if p is None else p['n']}/{len(FINAL_SEEDS)} | {ce} | {cx} | "
            f"{interval} | {cut} | {_boundary_delta(rs)} |"
        )
    return lines


def _test_cells(finals: list[dict], regime: str, expected: int) -> tuple[str, str, str, str]:
    """A regime's test cells: CE's and Contextrast's mean test mIoU (`_mean_cell`, `expected`
    seeds), their paired difference with its interval, and the share of CE's error it cuts."""
    rs = [r for r in finals if r["regime"] == regime]
    p = paired(finals, regime, "contextrast")
    return (
        _mean_cell(rs, "miou", expected, variant="ce"),
        _mean_cell(rs, "miou", expected, variant="contextrast"),
        _interval(p),
        "–" if p is None else f"{100 * p['error_cut']:+.1f} %",
    )


def _boundary_delta(rs: list[dict]) -> str:
    ce = {r["seed"]: r["boundary_miou"] for r in rs if r["variant"] == "ce"}
    cx = {r["seed"]: r["boundary_miou"] for r in rs if r["variant"] == "contextrast"}
    d = paired_diffs(cx, ce)
    return "–" if not d else f"{statistics.mean(d):+.2f}"


def default_table(
    finals: list[dict],
    regime: str,
    variants: tuple[str, ...] = ("ce", "contextrast", "ccl", "ce_time"),
) -> list[str]:
    """`variants` of `regime` (all of the default regime's) against CE, paired by seed. Cost is
    the runs' mean training CPU minutes (one thread each): wall minutes count whatever else
    shared the cores, and the time a worker was paused."""
    lines = [
        "| variant | seeds | test mIoU | Δ vs ce [95 % CI] | steps | train CPU min |",
        "|---|---|---|---|---|---|",
    ]
    rs = [r for r in finals if r["regime"] == regime]
    for v in variants:
        vr = [r for r in rs if r["variant"] == v]
        if not vr:
            lines.append(f"| `{v}` | 0 | not run yet | | | |")
            continue
        m = sum(r["miou"] for r in vr) / len(vr)
        p = None if v == "ce" else paired(finals, regime, v)
        steps = sum(r["steps"] for r in vr) / len(vr)
        minutes = sum(r["train_cpu_seconds"] for r in vr) / len(vr) / 60
        lines.append(
            f"| `{v}` | {len(vr)} | {m:.2f} | {_interval(p)} | {steps:.0f} | {minutes:.1f} |"
        )
    return lines


TARGET_DELTA, MOONSHOT_CUT = 1.0, 0.17  # PROTOCOL.md's targets (issue 12)


def target_reading(finals: list[dict], regime: str) -> str:
    """The protocol's target in the default `regime`, read from its test runs: Contextrast − CE
    ≥ TARGET_DELTA paired over all final seeds with the 95 % interval above 0; the moonshot:
    a cut of ≥ MOONSHOT_CUT of CE's remaining error, with Contextrast's mean test mIoU above
    `ccl`'s and `ce_time`'s (each comparison also given paired by seed, with its 95 % interval).
    Undecided parts say what they wait for."""
    n_all = len(FINAL_SEEDS)
    p = paired(finals, regime, "contextrast")
    target = f"Target (Δ ≥ +{TARGET_DELTA:.1f} with its 95 % interval above 0"
    if p is None:
        return f"{target}): no pairs yet."
    so_far = f"Δ = {_interval(p)}"
    if p["n"] < n_all:
        return (
            f"{target}, {n_all} seeds): not decided yet, {p['n']} of {n_all} pairs in ({so_far})."
        )
    met = p["mean"] >= TARGET_DELTA and p["lo"] > 0
    text = f"{target}): **{'met' if met else 'missed'}**, {so_far}."
    cut = p["error_cut"]
    text += (
        f" Moonshot: Contextrast cuts {100 * cut:.1f} % of CE's remaining error "
        f"({'≥' if cut >= MOONSHOT_CUT else '<'} {100 * MOONSHOT_CUT:g} %)"
    )
    cx = [r["miou"] for r in finals if (r["regime"], r["variant"]) == (regime, "contextrast")]
    rivals = []
    for v in ("ccl", "ce_time"):
        vr = [r["miou"] for r in finals if (r["regime"], r["variant"]) == (regime, v)]
        if len(vr) < n_all:
            rivals.append(f"`{v}` waits for its runs ({len(vr)} of {n_all})")
        else:
            ahead = statistics.mean(cx) > statistics.mean(vr)
            vs = _interval(paired(finals, regime, "contextrast", base=v))
            rivals.append(
                f"{'ahead of' if ahead else 'not ahead of'} `{v}` ({statistics.mean(vr):.2f}; "
                f"Contextrast − `{v}` = {vs})"
            )
    return text + "; " + ", ".join(rivals) + "."


def post_hoc_reading(finals: list[dict], regime: str, variant: str) -> str:
    """Contextrast − `variant` in `regime`, paired by seed with its 95 % interval, once all
    final seeds of both are in; else how many are."""
    n = final_counts(finals, regime, ("contextrast", variant))
    if min(n.values()) < len(FINAL_SEEDS):
        return (
            f"Contextrast − `{variant}` waits for its runs: {n['contextrast']} of "
            f"{len(FINAL_SEEDS)} Contextrast and {n[variant]} of {len(FINAL_SEEDS)} `{variant}`."
        )
    p = paired(finals, regime, "contextrast", base=variant)
    return f"Contextrast − `{variant}`, paired by seed: {_interval(p)}."


def post_hoc_section(finals: list[dict], default: str | None) -> list[str]:
    """regimes.md's section on the POST_HOC controls (none in the default regime, whose
    controls the protocol has)."""
    lines = []
    for regime, extra in POST_HOC.items():
        if regime == default:
            continue
        lines += [
            "",
            f"### Post-hoc control in {regime} (added after the protocol, before any of "
            f"{regime}'s test runs: PROTOCOL.md, 2026-12-02)",
            "",
            *default_table(finals, regime, ("ce", "contextrast", *extra)),
            "",
            *(post_hoc_reading(finals, regime, v) for v in extra),
        ]
    return lines


def write(data: dict, tuning: list[dict], results_dir: Path) -> None:
    finals = data["runs"]
    default = data.get("default_regime")
    parts = [
        "# Where Contextrast helps: the regime study",
        "",
        "Protocol (written before any test run): [regimes/PROTOCOL.md](regimes/PROTOCOL.md). "
        f"Reproduce everything: `{data.get('command', '')}` (resumable; start one per core).",
        "",
    ]
    # written by `diagnose`, `mechanisms`, `error-kinds`
    for section in ("diagnosis.md", "mechanisms.md", "error_kinds.md"):
        if (path := results_dir / "regimes" / section).exists():
            parts += [path.read_text().strip(), ""]
    parts += ["## Regimes", ""]
    parts += [f"- **{r.name}**: {r.why}" for r in REGIMES.values()]
    parts += [
        "",
        "## Phase 1: the PA setting per regime (validation mIoU %, mean of seeds "
        f"{', '.join(map(str, TUNE_SEEDS))}; w = CE-only fraction of the steps)",
        "",
    ]
    parts += tuning_table(tuning, finals)
    parts += ["", "## Phase 2: CE vs Contextrast on the frozen test scenes", ""]
    parts += final_table(finals)
    waiting = "not decided yet (" + rule_2_waits_for(tuning, finals) + ")"
    parts += ["", f"Default regime by the protocol's rule: **{default or waiting}**."]
    if default:
        parts += ["", f"### All variants in the default regime ({default})", ""]
        parts += default_table(finals, default)
        parts += ["", target_reading(finals, default)]
    parts += post_hoc_section(finals, default)
    (results_dir / "regimes.md").write_text("\n".join(parts) + "\n")
    plot(finals, results_dir / "regimes.png")
    readme = results_dir.parent / "README.md"
    if readme.exists():
        update_readme(readme, readme_block(tuning, finals, default, waiting))


README_MARKERS = ("<!-- regimes:begin -->", "<!-- regimes:end -->")


def readme_block(tuning: list[dict], finals: list[dict], default: str | None, waiting: str) -> str:
    """The README's map of the study: per regime the Rule-1 setting with its validation gain,
    and the test comparison; Rule 2's choice; the default regime's variants once chosen."""
    lines = [
        "| regime | PA setting (Rule 1) | Δ val, tuning runs | CE test mIoU | "
        "Contextrast test mIoU | Δ test, paired [95 % CI] | share of CE's error cut |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, regime in REGIMES.items():
        c = chosen_setting(tuning, name)
        if c is not None:
            setting = f"α = {c['alpha']:g}, w = {c['warmup']:g}"
        else:
            done = {_row_key(r) for r in tuning} & {j.key for j in tune_jobs(name)}
            setting = f"tuning: {len(done)} of {len(tune_jobs(name))} runs"
            if regime.gpu:
                setting = ("GPU-sized, " + setting) if done else "GPU-sized, not run yet"
        delta = "–" if c is None else f"{c['val_delta']:+.2f}"
        # a mean over fewer than all final seeds shows its count: "62.70 (2)"
        cells = _test_cells(finals, name, len(FINAL_SEEDS))
        lines.append(f"| {name} | {setting} | {delta} | " + " | ".join(cells) + " |")
    lines += ["", f"Default regime by the protocol's Rule 2: **{default or waiting}**."]
    if default:
        lines += ["", *default_table(finals, default), "", target_reading(finals, default)]
    return "\n".join(lines)


def update_readme(path: Path, block: str) -> bool:
    """Replace the text between README_MARKERS in `path` with `block` (written atomically);
    False, and nothing written, when the file has no such pair."""
    text = path.read_text()
    begin, end = README_MARKERS
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i:
        return False
    new = f"{text[: i + len(begin)]}\n{block}\n{text[j:]}"
    if new != text:
        write_text(new, path)
    return True


def rule_2_waits_for(tuning: list[dict], finals: list[dict]) -> str:
    """What an undecided Rule 2 waits for (`rule_2`): phase 1, or the quality gate (five final
    CE runs) of the regime it reads next."""
    waits = rule_2(tuning, finals)[1]
    if waits is None:
        return "nothing: it has chosen"
    if waits == "phase 1":
        return "phase 1 incomplete"
    n = sum((r["regime"], r["variant"]) == (waits, "ce") for r in finals)
    return f"the quality gate of `{waits}`: {n} of its {len(FINAL_SEEDS)} final CE runs are in"


def plot(finals: list[dict], path: Path) -> None:
    """Δ test mIoU (Contextrast − CE, paired by seed) per regime: seeds as dots, the mean with
    its 95 % t-interval as a bar; regimes without pairs yet are labelled as such."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    names = list(REGIMES)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.axhline(0, color="0.3", lw=0.8)
    for i, name in enumerate(names):
        p = paired(finals, name, "contextrast")
        if p is None:
            ax.text(i, 0, "not run\nyet", ha="center", va="bottom", fontsize=8, color="0.4")
            continue
        ax.scatter([i] * p["n"], p["diffs"], s=18, color="0.55", zorder=2, label=None)
        if p["n"] > 1 and not math.isnan(p["lo"]):
            ax.errorbar(
                i,
                p["mean"],
                yerr=[[p["mean"] - p["lo"]], [p["hi"] - p["mean"]]],
                fmt="o",
                color="C3",
                capsize=4,
                zorder=3,
            )
        else:
            ax.scatter([i], [p["mean"]], color="C3", zorder=3)
    ax.set_xticks(range(len(names)), names)
    ax.set_xlim(-0.5, len(names) - 0.5)
    ax.set_ylabel("Δ test mIoU (points)\nContextrast − CE, same seed")
    ax.set_title("Where Contextrast helps: mean and 95 % interval (red), seeds (grey)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
