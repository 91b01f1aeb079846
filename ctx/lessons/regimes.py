"""Notebook 07: where contrast helps, read from the regime study (results/regimes*, protocol in
results/regimes/PROTOCOL.md). The diagnosis of the default scenes (`diagnosis_rows`,
`bane_rows`, `plot_diagnosis`, `diagnosis_reading`); the map of Contextrast's gain over CE per
regime with paired 95 % intervals (`gain_map`, `plot_gain_map`, `map_reading`) — from the
test runs where phase 2 has all its seeds, else from phase 1's validation runs, labelled so; the
default regime's controls, `ccl` and `ce_time` (`control_rows`, `plot_controls`,
`control_reading`); what each mechanism needs to act on (`fusion_coverage`, `mechanism_rows`)
and what BANE finds in each regime (`load_mechanisms`, `bane_across_regimes`);
a slide summary printed from the numbers (`slide_summary`); and `RegimeCompare`, CE's and
Contextrast's predictions of a regime's scenes side by side, from the runs shipped in
data/regimes/ (`ctx.experiments.gallery`).

Every sentence these functions return is built from the numbers it states, so it cannot
disagree with them; a difference whose interval includes zero is called noise (`verdict`).
"""

from __future__ import annotations

import math
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure

from ctx.analysis import predict, scene_scores
from ctx.data import NUM_CLASSES
from ctx.experiments import diagnosis, error_kinds, mechanisms
from ctx.experiments.diagnosis import (
    RANKS_ABOVE,
    bane_summary,
    ranking_reading,
    ranking_where,
)
from ctx.experiments.gallery import load_gallery_model, read_manifest
from ctx.experiments.regime_study import (
    FINAL_SEEDS,
    TUNE_SEEDS,
    chosen_setting,
    final_counts,
    load_results,
    paired,
    post_hoc_controls,
    tune_jobs,
)
from ctx.experiments.regimes import REGIMES
from ctx.labels import IGNORE_INDEX, resize_labels
from ctx.lessons.base import Explorer, dropdown, slider
from ctx.plotting import class_legend, error_handle, figure, label_to_rgb, mark_errors, to_image
from ctx.resources import data_dir, project_root

RUNS = ("ce", "contextrast")
NAMES = {"ce": "CE", "contextrast": "Contextrast"}
SOURCES = {
    "test": "test, final runs, {n} seeds",
    "validation": "validation, tuning runs, {n} seeds",
}


def results_dir() -> Path:
    """The checkout's results/ folder (the regime study's files)."""
    return project_root() / "results"


def gallery_dir() -> Path:
    """data/regimes/: the regimes' shipped seed-0 runs (`python -m ctx.experiments gallery`)."""
    return data_dir() / "regimes"


VERDICTS = {  # kind: (what the interval shows, what that makes the difference)
    "none": ("one seed, no interval", "no verdict"),
    "candidate": (
        "the interval lies above zero, but on the runs the setting was picked from",
        "a candidate, not yet a gain (the test runs decide)",
    ),
    "gain": ("the interval lies above zero", "a gain"),
    "loss": ("the interval lies below zero", "a loss"),
    "noise": ("the interval includes zero", "within noise"),
}


def interval_kind(lo: float, hi: float, selected: bool = False) -> str:
    """Which of VERDICTS a 95 % interval [lo, hi] of a difference is. `selected`: the
    difference is the best of a grid, measured on the same runs that picked it (phase 1's
    validation rows), so an interval above zero makes it a candidate, not a gain."""
    if math.isnan(lo) or math.isnan(hi):
        return "none"
    if lo > 0:
        return "candidate" if selected else "gain"
    return "loss" if hi < 0 else "noise"


def verdict(lo: float, hi: float, selected: bool = False, short: bool = False) -> str:
    """What a 95 % interval [lo, hi] of a difference says, as a sentence ("the interval lies
    above zero: a gain"), or only its conclusion with `short` ("a gain")."""
    shows, makes = VERDICTS[interval_kind(lo, hi, selected)]
    return makes if short else f"{shows}: {makes}"


def _f(xs, fmt: str = ".0f") -> str:
    return "/".join(f"{x:{fmt}}" for x in xs)


# --------------------------------------------------------------------------- diagnosis


def load_diagnosis(folder: Path | None = None) -> dict:
    """results/regimes/diagnosis.json (`python -m ctx.experiments diagnose`)."""
    return diagnosis.read((folder or results_dir()) / "regimes" / "diagnosis.json")


def diagnosis_rows(diag: dict) -> list[dict]:
    """One row per quantity of the diagnosis, one column per run (ce, contextrast)."""
    runs = {v: diag["runs"][v] for v in RUNS}
    rows = [
        ("test mIoU (%)", lambda r: r["test"]["miou"]),
        ("train mIoU, un-augmented (%)", lambda r: r["train_miou"]),
        ("train − test gap (points)", lambda r: r["train_test_gap"]),
        ("error rate within 2 px of an edge (%)", lambda r: r["errors"]["rim_error_rate"]),
        ("error rate further inside (%)", lambda r: r["errors"]["interior_error_rate"]),
        ("share of errors on the rim (%)", lambda r: r["errors"]["rim_share_of_errors"]),
        ("error pixels per test image", lambda r: r["errors"]["errors_per_image"]),
    ]
    for key, what in (("separation_features", "encoder features"), ("separation_heads", "heads")):
        for i in range(len(runs["ce"][key])):
            rows.append((f"stage {i + 1} separation, {what} (%)", lambda r, k=key, i=i: r[k][i]))
    return [{"quantity": q} | {NAMES[v]: get(r) for v, r in runs.items()} for q, get in rows]


def bane_rows(diag: dict, run: str = "contextrast") -> list[dict]:
    """What BANE has to act on at each stage of `run` (D = distance to the error region's edge)."""
    return [
        {
            "stage": f"{i + 1} ({s['size'][0]}×{s['size'][1]})",
            "error px/image": s["errors_per_image"],
            "errors D>1 %": s["errors_far_pct"],
            "picks D>1 %": s["picks_far_pct"],
            "filled at random %": s["fill_pct"],
            "background among negatives %": s["negatives_background_pct"],
        }
        for i, s in enumerate(diag["runs"][run]["bane"])
    ]


def plot_diagnosis(diag: dict) -> Figure:
    """Left: nearest-anchor separation per stage (encoder features; Contextrast's heads dashed).
    Right: what BANE acts on per stage in the Contextrast run (percent)."""
    fig, axes = figure(10, 3.4, 1, 2)
    ax1, ax2 = axes[0]
    stages = np.arange(1, len(diag["runs"]["ce"]["separation_features"]) + 1)
    for v, c in zip(RUNS, ("C0", "C3"), strict=True):
        ax1.plot(stages, diag["runs"][v]["separation_features"], "o-", color=c, label=NAMES[v])
    heads = diag["runs"]["contextrast"]["separation_heads"]
    ax1.plot(stages, heads, "s--", color="C3", alpha=0.5, label="Contextrast, its heads")
    ax1.set(xlabel="stage", ylabel="% of pixels nearest their class anchor", ylim=(0, 100))
    ax1.set_title("class separation of the features")
    bane = diag["runs"]["contextrast"]["bane"]
    series = {
        "errors with D > 1": "errors_far_pct",
        "BANE picks with D > 1": "picks_far_pct",
        "negatives filled at random": "fill_pct",
        "background among negatives": "negatives_background_pct",
    }
    for (label, key), m in zip(series.items(), "o^sD", strict=True):
        ax2.plot(stages, [s[key] for s in bane], m + "-", label=label)
    ax2.set(xlabel="stage", ylabel="%", ylim=(-3, 103))
    ax2.set_title("what BANE has to act on (Contextrast run)")
    for ax in (ax1, ax2):
        ax.set_xticks(stages)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return fig


def diagnosis_reading(diag: dict) -> list[str]:
    """The diagnosis in sentences, each built from the numbers it states."""
    ce, cx = diag["runs"]["ce"], diag["runs"]["contextrast"]
    rim = [r["errors"]["rim_share_of_errors"] for r in (ce, cx)]
    moved = (
        "does not move errors off the rims"
        if abs(rim[1] - rim[0]) < 2
        else ("changes the rim share by more than 2 points")
    )
    fce, fcx = ce["separation_features"], cx["separation_features"]
    up = [i + 1 for i, (a, b) in enumerate(zip(fce, fcx, strict=True)) if b > a]
    bane = cx["bane"]
    return [
        f"Errors sit on the rims: {rim[0]:.0f} % of CE's test errors lie within 2 px of a class "
        f"edge (error rate {ce['errors']['rim_error_rate']:.1f} % there, "
        f"{ce['errors']['interior_error_rate']:.2f} % further inside); with the PA term "
        f"{rim[1]:.0f} %: the PA term {moved}.",
        f"Encoder features separate better with the PA term at stage(s) {_f(up, 'd')}: "
        f"{_f(fce)} % (CE) against {_f(fcx)} % (Contextrast, stages 1-4), while test mIoU is "
        f"{ce['test']['miou']:.2f} % against {cx['test']['miou']:.2f} % (one pair, seed 0: no "
        f"interval).",
        f"{ranking_reading(bane)}.",
        f"Little for BANE to act on past stage 1: {_f([s['errors_per_image'] for s in bane], '.1f')}"
        f" error pixels per image at stages 1-4, so `fill` tops up "
        f"{_f([s['fill_pct'] for s in bane])} % of each anchor's negatives at random, and "
        f"{_f([s['negatives_background_pct'] for s in bane])} % of the negatives are background.",
    ]


# --------------------------------------------------------------------------- the map


def _validation_gain(tuning: list[dict], regime: str) -> dict | None:
    """Rule 1's setting's validation difference to CE, paired by seed (`paired` on the tuning
    rows, validation mIoU in place of test mIoU); None while the regime's tuning runs."""
    c = chosen_setting(tuning, regime)
    if c is None:
        return None
    setting = ("contextrast", c["alpha"], c["warmup"])
    rows = [
        {**r, "miou": r["val_miou"]}
        for r in tuning
        if r["regime"] == regime
        and (r["variant"] == "ce" or (r["variant"], r.get("alpha"), r.get("warmup")) == setting)
    ]
    return {**paired(rows, regime, "contextrast"), "setting": c}


def gain_map(folder: Path | None = None) -> list[dict]:
    """Per regime (REGIMES order): Contextrast − CE (mIoU points, paired by seed) with its 95 %
    t-interval, from the test runs when all final seeds are in, else from the validation runs at
    Rule 1's setting; `source` None and `status` saying why when neither is there."""
    folder = folder or results_dir()
    tuning = load_results(folder / "regimes" / "tuning.json")["runs"]
    finals = load_results(folder / "regimes.json")["runs"]
    rows = []
    for regime in REGIMES:
        test = paired(finals, regime, "contextrast")
        row = {"regime": regime, "source": None, "finals": 0 if test is None else test["n"]}
        if test is not None and test["n"] == len(FINAL_SEEDS):
            row.update(test, source="test")
        elif (val := _validation_gain(tuning, regime)) is not None:
            row.update(val, source="validation")
        else:
            done = sum(r["regime"] == regime for r in tuning)
            gpu = " (a GPU regime)" if REGIMES[regime].gpu else ""
            row["status"] = f"tuning runs {done} of {len(tune_jobs(regime))}{gpu}: no numbers yet"
        if row["source"]:
            row["label"] = SOURCES[row["source"]].format(n=row["n"])
            row["status"] = f"{row['mean']:+.2f} [{row['lo']:+.2f}, {row['hi']:+.2f}]"
        rows.append(row)
    return rows


def plot_gain_map(rows: list[dict]) -> Figure:
    """Δ mIoU per regime: each seed's difference (grey), the mean and its 95 % interval; filled
    for test runs, open for validation runs; regimes without numbers are marked as such."""
    fig, axes = figure(8, 3.6)
    ax = axes[0, 0]
    ax.axhline(0, color="0.3", lw=0.8)
    shown = set()
    for i, r in enumerate(rows):
        if r["source"] is None:
            ax.text(i, 0, "no numbers\nyet", ha="center", va="bottom", fontsize=8, color="0.4")
            continue
        ax.scatter([i] * r["n"], r["diffs"], s=14, color="0.6", zorder=2)
        face = "C3" if r["source"] == "test" else "white"
        label = None if r["label"] in shown else r["label"]
        shown.add(r["label"])
        err = [[r["mean"] - r["lo"]], [r["hi"] - r["mean"]]] if r["n"] > 1 else None
        ax.errorbar(
            i, r["mean"], yerr=err, fmt="o", color="C3", mfc=face, capsize=4, zorder=3, label=label
        )
    ax.set_xticks(range(len(rows)), [r["regime"] for r in rows])
    ax.set_xlim(-0.5, len(rows) - 0.5)
    ax.set_ylabel("Δ mIoU (points)\nContextrast − CE, same seed")
    ax.set_title("Where Contextrast helps: mean and 95 % interval, seeds in grey")
    if shown:
        ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3, axis="y")
    return fig


def map_reading(rows: list[dict]) -> list[str]:
    """One sentence per regime: the source, the gain, its interval, and what it says."""
    out = []
    for r in rows:
        if r["source"] is None:
            out.append(f"{r['regime']}: {r['status']}.")
            continue
        extra = ""
        if r["source"] == "validation":
            s = r["setting"]
            extra = (
                f" at α = {s['alpha']:g}, warm-up {s['warmup']:g} (the best of the grid on "
                f"these same runs, so optimistic)"
            )
            if r["finals"]:
                extra += f"; {r['finals']} of {len(FINAL_SEEDS)} test pairs in so far"
        out.append(
            f"{r['regime']} ({r['label']}): {r['mean']:+.2f} points, 95 % interval "
            f"[{r['lo']:+.2f}, {r['hi']:+.2f}]{extra}: "
            f"{verdict(r['lo'], r['hi'], r['source'] == 'validation')}."
        )
    return out


# --------------------------------------------------------------------------- the controls

# The controls phase 2 runs in the default regime: what control − CE and Contextrast − control
# isolate.
CONTROLS = {
    "ccl": (
        "the PA term with random negatives, against CE",
        "what BANE's negatives add over random ones, with the same anchors, fusion, α and warm-up",
    ),
    "ce_time": (
        "what more CE steps buy: CE trained for Contextrast's CPU time",
        "what Contextrast adds over CE given the same CPU time",
    ),
}


def control_rows(folder: Path | None = None) -> tuple[str | None, list[dict]]:
    """(the default regime, rows) — per comparison in the default regime (Rule 2's choice): the
    paired test difference in mIoU points with its 95 % t-interval (`paired`: `n`, `mean`,
    `lo`, `hi`, `diffs`), for Contextrast − CE and, per control of CONTROLS whose final seeds
    are all in, control − CE and Contextrast − control (`variant` − `base`); `what` says what
    each one isolates.
    No rows until the default is chosen and Contextrast's pairs are all in."""
    data = load_results((folder or results_dir()) / "regimes.json")
    regime, finals = data.get("default_regime"), data["runs"]
    if regime is None:
        return None, []
    full = len(FINAL_SEEDS)
    rows = []

    def add(variant: str, base: str, what: str) -> None:
        p = paired(finals, regime, variant, base=base)
        if p is not None and p["n"] == full:
            rows.append(
                {
                    "comparison": f"{NAMES.get(variant, variant)} − {NAMES.get(base, base)}",
                    "variant": variant,
                    "base": base,
                    "what": what,
                    **p,
                }
            )

    add("contextrast", "ce", "the method's gain over CE")
    if not rows:
        return regime, []
    for control, (against_ce, against_control) in CONTROLS.items():
        add(control, "ce", against_ce)
        add("contextrast", control, against_control)
    return regime, rows


def plot_controls(regime: str, rows: list[dict]) -> Figure:
    """The comparisons of `control_rows`, one line each: every seed's difference (grey), the
    mean and its 95 % interval."""
    fig, axes = figure(8, 0.6 + 0.55 * max(len(rows), 1))
    ax = axes[0, 0]
    ax.axvline(0, color="0.3", lw=0.8)
    for i, r in enumerate(rows):
        y = len(rows) - 1 - i
        ax.scatter(r["diffs"], [y] * r["n"], s=14, color="0.6", zorder=2)
        err = [[r["mean"] - r["lo"]], [r["hi"] - r["mean"]]]
        ax.errorbar(r["mean"], y, xerr=err, fmt="o", color="C3", capsize=4, zorder=3)
    ax.set_yticks(range(len(rows)), [r["comparison"] for r in reversed(rows)])
    ax.set_xlabel("Δ test mIoU (points), same seed")
    ax.set_title(
        f"{regime}: the method against its controls, mean and 95 % interval, seeds in grey"
    )
    ax.grid(alpha=0.3, axis="x")
    return fig


def control_reading(regime: str | None, rows: list[dict]) -> list[str]:
    """One sentence per comparison of `control_rows`: what it isolates, the difference, its
    interval and what the interval says."""
    if regime is None:
        return ["The default regime is not chosen yet: no controls to read."]
    if not rows:
        return [f"{regime}: Contextrast's test pairs are not all in yet: no controls to read."]
    return [
        f"{r['comparison']} ({r['what']}): {r['mean']:+.2f} points, 95 % interval "
        f"[{r['lo']:+.2f}, {r['hi']:+.2f}] over {r['n']} seeds: {verdict(r['lo'], r['hi'])}."
        for r in rows
    ]


def post_hoc_reading(folder: Path | None = None) -> list[str]:
    """One sentence per post-hoc control (regime_study.POST_HOC; none in the default regime,
    which has the protocol's own): Contextrast − control in its regime, paired by seed, with
    what its interval says once all final seeds of both are in, else how many are."""
    data = load_results((folder or results_dir()) / "regimes.json")
    finals, out = data["runs"], []
    for regime, c in post_hoc_controls(data.get("default_regime")):
        n = final_counts(finals, regime, ("contextrast", c))
        head = f"{regime}, post hoc: Contextrast − {c} ({CONTROLS[c][1]})"
        p = paired(finals, regime, "contextrast", base=c)
        if min(n.values()) < len(FINAL_SEEDS) or p is None:
            out.append(
                f"{head}: waits for its runs, {n['contextrast']} of {len(FINAL_SEEDS)} "
                f"Contextrast and {n[c]} of {len(FINAL_SEEDS)} {c}."
            )
            continue
        out.append(
            f"{head}: {p['mean']:+.2f} points, 95 % interval [{p['lo']:+.2f}, "
            f"{p['hi']:+.2f}] over {p['n']} seeds: {verdict(p['lo'], p['hi'])}."
        )
    return out


# --------------------------------------------------------------------------- the mechanisms


def scene_labels(regime: str, split: str, n: int) -> torch.Tensor:
    """Labels [n,H,W] of the first `n` scenes of a regime's `split`."""
    return REGIMES[regime].config().digit_scenes(split, n).labels


def fusion_coverage(labels: torch.Tensor, sizes: list, batch: int = 16) -> list[float]:
    """Per stage but the last: % of the classes present in a batch's stage labels (nearest
    downsampling to `sizes[i]`) that are also present at the last stage, the ones whose anchor
    fusion changes (â = a otherwise). labels [N,H,W]; batches of `batch` scenes, as in training."""
    shares = []
    for size in sizes[:-1]:
        hit = total = 0
        for i in range(0, len(labels), batch):
            y = labels[i : i + batch]
            here = _present(resize_labels(y, tuple(size)))
            last = _present(resize_labels(y, tuple(sizes[-1])))
            hit += int((here & last).sum())
            total += int(here.sum())
        shares.append(100.0 * hit / max(total, 1))
    return shares


def _present(y: torch.Tensor) -> torch.Tensor:
    valid = y[y != IGNORE_INDEX]
    return torch.bincount(valid.flatten(), minlength=NUM_CLASSES)[:NUM_CLASSES] > 0


def mechanism_rows(diag: dict, coverage: list[float]) -> list[dict]:
    """Per mechanism: what it needs to have something to act on, what the default scenes give it
    (diagnosis numbers; `coverage` from `fusion_coverage`), and whether it acts there."""
    ce, cx = diag["runs"]["ce"], diag["runs"]["contextrast"]
    fce, fcx, heads = ce["separation_features"], cx["separation_features"], cx["separation_heads"]
    up = [i + 1 for i, (a, b) in enumerate(zip(fce, fcx, strict=True)) if b - a > 2]
    rim = cx["errors"]["rim_share_of_errors"]
    far = [s["errors_far_pct"] for s in cx["bane"]]
    picks = [s["picks_far_pct"] for s in cx["bane"]]
    fill = [s["fill_pct"] for s in cx["bane"]]
    bane = bane_summary(cx["bane"])
    return [
        {
            "mechanism": "multi-stage anchors",
            "needs": "coarse features whose classes are not yet apart, and errors that hinge "
            "on them (a digit read as another)",
            "default scenes": f"encoder separation CE {_f(fce)} %, Contextrast {_f(fcx)} %; "
            f"{rim:.0f} % of errors on rims",
            "acts?": f"yes at stage(s) {_f(up, 'd')} (> 2 points)" if up else "no",
        },
        {
            "mechanism": "fusion",
            "needs": "a class at a low stage and at the last, and last-stage anchors that "
            "separate better",
            "default scenes": f"{_f(coverage)} % of stage 1-{len(coverage)} classes also at the "
            f"last; heads separate {heads[0]:.0f} % (stage 1) vs {heads[-1]:.0f} % (last)",
            "acts?": "yes" if min(coverage) > 50 and heads[-1] > heads[0] else "little",
        },
        {
            "mechanism": "BANE",
            "needs": "error regions thicker than 1 px (distances to rank) and enough errors "
            "to fill the negatives",
            "default scenes": f"errors with D > 1: {_f(far, '.1f')} %, picks with D > 1: "
            f"{_f(picks, '.1f')} %; negatives filled at random: {_f(fill)} %",
            "acts?": (
                f"ranks {ranking_where(cx['bane'])}"
                if bane["ranks_at"]
                else f"no ranking (errors with D > 1 ≤ {RANKS_ABOVE:g} %)"
            )
            + (
                ""
                if bane["random_from"] is None
                else f"; random negatives from stage {bane['random_from']} on"
            ),
        },
    ]


def load_mechanisms(folder: Path | None = None) -> dict:
    """{regime: ...} of results/regimes/mechanisms.json (`python -m ctx.experiments
    mechanisms`: the diagnosis's error and BANE numbers for each regime's shipped runs)."""
    return mechanisms.read((folder or results_dir()) / "regimes" / "mechanisms.json")["regimes"]


def load_error_kinds(folder: Path | None = None) -> dict:
    """{regime: paired stats} of results/regimes/error_kinds.json (`python -m ctx.experiments
    error-kinds`: Contextrast − CE per kind of error over each regime's five test pairs)."""
    return error_kinds.read((folder or results_dir()) / "regimes" / "error_kinds.json")["paired"]


def bane_across_regimes(mech: dict) -> str:
    """One sentence: at which stages BANE's distance ranking acts in each shipped regime (its
    Contextrast run: more than RANKS_ABOVE % of the errors deeper than the rim)."""
    bane = {
        r: m["runs"]["contextrast"]["bane"] for r, m in mech.items() if "contextrast" in m["runs"]
    }
    if not bane:
        return "BANE across regimes: no shipped Contextrast run is measured yet."
    where = "; ".join(
        f"{regime} {ranking_where(b)} ({_f([s['errors_far_pct'] for s in b])} %)"
        for regime, b in bane.items()
    )
    return (
        f"BANE across regimes: its distance ranking acts where more than {RANKS_ABOVE:g} % of "
        f"the errors lie deeper than the rim (D > 1; stages 1-4 in brackets): {where}."
    )


def slide_summary(
    rows: list[dict],
    diag: dict,
    controls: tuple[str | None, list[dict]] = (None, []),
    mech: dict | None = None,
    kinds: dict | None = None,
) -> list[str]:
    """Bullets for a lecture slide, each read from the map (`gain_map`), the default regime's
    controls (`control_rows`, when given), the diagnosis and, when given, what BANE acts on in
    each regime (`load_mechanisms`), and which errors it removes over the test pairs
    (`load_error_kinds`; without it, the seed-0 pairs of `mech`)."""
    test = [r for r in rows if r["source"] == "test"]
    val = [r for r in rows if r["source"] == "validation"]
    out = []
    if test:
        out += [
            f"Test split ({r['label'].removeprefix('test, ')}): {r['regime']} {r['status']}: "
            f"{verdict(r['lo'], r['hi'])}."
            for r in test
        ]
    else:
        out.append(f"Test split ({len(FINAL_SEEDS)} seeds, paired): no regime measured yet.")
    if val:
        noise = all(interval_kind(r["lo"], r["hi"]) == "noise" for r in val)
        out.append(
            f"Validation only ({len(TUNE_SEEDS)} seeds, tuning runs, the best of the grid, so "
            f"optimistic): "
            + "; ".join(f"{r['regime']} {r['status']}" for r in val)
            + (
                ": every interval includes zero."
                if noise
                else ": intervals of the best of a grid on its own runs; the test runs decide."
            )
        )
    regime, against = (
        controls[0],
        [r for r in controls[1] if (r["variant"], r["base"]) != ("contextrast", "ce")],
    )
    if against:
        out.append(
            f"Controls in {regime} (test, paired): "
            + "; ".join(
                f"{r['comparison']} {r['mean']:+.2f} [{r['lo']:+.2f}, {r['hi']:+.2f}]: "
                f"{verdict(r['lo'], r['hi'], short=True)}"
                for r in against
            )
            + "."
        )
    ce, cx = diag["runs"]["ce"], diag["runs"]["contextrast"]
    out.append(
        f"Default scenes: {ce['errors']['rim_share_of_errors']:.0f} % of CE's errors are rim "
        f"pixels; BANE's distance ranking acts {ranking_where(cx['bane'])} "
        f"({_f([s['errors_far_pct'] for s in cx['bane']])} % of the errors deeper than the rim at "
        f"stages 1-4); stage-4 encoder separation "
        f"{ce['separation_features'][-1]:.0f} → {cx['separation_features'][-1]:.0f} % with test "
        f"mIoU {ce['test']['miou']:.1f} → {cx['test']['miou']:.1f} % (one pair, seed 0; the map "
        f"above pairs five)."
    )
    if mech:
        out.append(bane_across_regimes(mech))
    if kinds:
        out.append(f"Error kinds ({len(FINAL_SEEDS)} seeds, paired): {error_kinds.summary(kinds)}")
    elif mech and (seed_0 := mechanisms.changes_reading(mech)):
        out.append(f"Error kinds (seed 0): {seed_0}")
    gains = [f"{r['regime']} ({r['mean']:+.2f})" for r in test if r["lo"] > 0]
    claim = (
        f"Claim: Contextrast beats CE on the test scenes of {', '.join(gains)}."
        if gains
        else "Claim: no regime shows a test-split gain yet."
    )
    separates = cx["separation_features"][-1] > ce["separation_features"][-1] + 2
    verb = "separates" if separates else "does not separate"
    claim += f" On the default scenes the PA term {verb} the deep features;"
    if kinds and error_kinds.recognition(kinds):
        claim += f" over {len(FINAL_SEEDS)} seeds its gain is fewer digits taken for other digits ({', '.join(kinds)});"
    elif not kinds and mech and mechanisms.gains_by_recognition(mechanisms.error_deltas(mech)):
        claim += " in every shipped regime its run takes fewer digits for other digits;"
    claim += f" BANE's distance ranking acts {ranking_where(cx['bane'])}."
    out.append(claim)
    return out


def regime_rows() -> list[dict]:
    """The study's regimes and why each exists (ctx.experiments.regimes.REGIMES)."""
    return [{"regime": r.name, "why": r.why} for r in REGIMES.values()]


def shipped_runs(folder: Path | None = None) -> tuple[list[dict], dict]:
    """(a table row per shipped run of data/regimes/manifest.json, {regime: why not shipped}).
    `source`: the study's own run, or retrained from its recorded config (= study: the same
    validation mIoU as the study's row, to the last digit)."""
    m = read_manifest(Path(folder or gallery_dir()))
    rows = [
        {
            "regime": e["regime"],
            "run": e["variant"],
            "phase": e["phase"],
            "setting": "–"
            if not e["setting"]
            else "α={alpha:g}, w={warmup:g}".format(**e["setting"]),
            "steps": e["steps"],
            "split": e["split"],
            "mIoU %": e["miou"],
            "source": "retrained" + ("; = study" if e.get("remade_same_as_study") else "; ≠ study")
            if e.get("remade")
            else "study run",
            "check": e["check"],
        }
        for e in m["runs"]
    ]
    return rows, m["skipped"]


# --------------------------------------------------------------------------- the widget


class RegimeCompare(Explorer):
    """Pick a regime and a scene: the scene, its labels, and the predictions of the regime's
    shipped CE and Contextrast runs (seed 0; data/regimes/), wrong pixels outlined and hatched.

    The scenes are the first `scenes` of the split the run's phase may be scored on (validation
    for tuning runs, test for final runs). Controls: `regime`, `index`, `errors`. `result`:
    {"regime", "index", "split", "scores": {name: scene_scores}, "wrong": {name: pixels},
    "text"}."""

    def __init__(self, folder: Path | None = None, scenes: int = 8, regime: str | None = None):
        self.folder = Path(folder or gallery_dir())
        manifest = read_manifest(self.folder)
        self.entries = {(e["regime"], e["variant"]): e for e in manifest["runs"]}
        regimes = [r for r in dict.fromkeys(e["regime"] for e in manifest["runs"])]
        if not regimes:
            raise ValueError(f"{self.folder} ships no runs: run python -m ctx.experiments gallery")
        self.scenes, self._cache = scenes, {}
        controls = {
            "regime": dropdown(regimes, regime or regimes[0], "regime"),
            "index": slider(widgets.IntSlider, "scene", min=0, max=scenes - 1, value=0),
            "errors": widgets.Checkbox(value=True, description="mark wrong pixels"),
        }
        super().__init__(self.draw, controls)

    def data(self, regime: str) -> dict:
        """The regime's scenes and both runs' predictions of them (computed once)."""
        if regime not in self._cache:
            models = {v: load_gallery_model(self.folder, self.entries[(regime, v)]) for v in RUNS}
            split = self.entries[(regime, "ce")]["split"]
            ds = models["ce"][1].digit_scenes(split, self.scenes)
            self._cache[regime] = {
                "split": split,
                "images": ds.images,
                "labels": ds.labels,
                "preds": {v: predict(m, ds.images) for v, (m, _) in models.items()},
            }
        return self._cache[regime]

    def draw(self, regime: str, index: int, errors: bool) -> tuple[dict, Figure]:
        d = self.data(regime)
        labels = d["labels"][index]
        fig, (axes,) = figure(12, 3.4, 1, 4)
        axes[0].imshow(to_image(d["images"][index]))
        axes[0].set_title(f"{regime}: {d['split']} scene {index}")
        axes[1].imshow(label_to_rgb(labels))
        axes[1].set_title("labels")
        scores, wrong, lines = {}, {}, []
        for ax, v in zip(axes[2:], RUNS, strict=True):
            pred, e = d["preds"][v][index], self.entries[(regime, v)]
            miss = (pred != labels) & (labels != IGNORE_INDEX)
            scores[v], wrong[v] = scene_scores(pred, labels, NUM_CLASSES), int(miss.sum())
            ax.imshow(label_to_rgb(pred))
            if errors:
                mark_errors(ax, pred, labels)
            ax.set_title(f"{NAMES[v]}: mIoU {scores[v]['miou']:.1f} %\n{wrong[v]} wrong pixels")
            lines.append(
                f"{NAMES[v]} ({e['phase']} run, {e['steps']} steps): {e['miou']:.2f} % mIoU on "
                f"all {e['scenes']} {e['split']} scenes"
            )
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
        class_legend(axes[-1], extra=[error_handle()] if errors else [])
        text = f"{regime}, shipped seed-0 runs: " + "; ".join(lines) + "."
        result = {
            "regime": regime,
            "index": index,
            "split": d["split"],
            "scores": scores,
            "wrong": wrong,
            "text": text,
        }
        return result, fig
