"""Did the regimes change what the mechanisms act on? The diagnosis's error and BANE numbers,
per regime, from the runs the gallery ships (data/regimes/: seed-0 CE and Contextrast).

The regimes were designed to move the default's bottlenecks (results/regimes/diagnosis.md):
`crowded` puts digits against digits, so errors can lie between two classes; `scarce` leaves CE
fewer labels, so there are more errors to pick negatives from. This measures, for each shipped
run on the split its phase may be scored on (test for final runs, validation for tuning runs):
its errors (rim share; what was taken for what: a digit for another digit, a digit for
background, background for a digit; the share inside digits misread as a whole) and, per
stage, what BANE has to work with (`diagnosis.bane_inputs`).

    python -m ctx.experiments mechanisms     # writes results/regimes/mechanisms.{json,md}
"""

from __future__ import annotations

from pathlib import Path

import torch

from ctx.data import NUM_CLASSES
from ctx.experiments.diagnosis import (
    RIM,
    bane_inputs,
    error_split,
    fill_reading,
    ranking_where,
    run_outputs,
)
from ctx.experiments.error_kinds import (
    KINDS,
    cut_in_recognition,
    edge_moves,
    error_counts,
    error_kinds,
)
from ctx.experiments.gallery import load_gallery_model, read_manifest
from ctx.io import read_results, write_json, write_text
from ctx.metrics import ConfusionMatrix
from ctx.resources import portable

SPLIT_NAMES = {"test": "test", "val": "validation"}


def measure(model: torch.nn.Module, cfg, split: str, scenes: int = 500) -> dict:
    """One run's numbers on the first `scenes` scenes of its regime's `split` ("val"/"test")."""
    data = cfg.digit_scenes(split, scenes)
    out = run_outputs(model, data.images, features=False)  # sizes and predictions only
    sizes = [tuple(e.shape[-2:]) for e in out["embeddings"]]
    cm = ConfusionMatrix(NUM_CLASSES)
    cm.update(out["pred"], data.labels)
    errors = error_split(out["pred"], data.labels)
    errors.update(error_kinds(out["pred"], data.labels))
    return {
        "miou": cm.summary()["miou"],
        "errors": errors,
        "bane": bane_inputs(out["pred"], data.labels, sizes, cfg.k, cfg.max_negatives),
    }


def regime_mechanisms(gallery: Path, scenes: int = 500) -> dict:
    """{regime: {"phase", "split", "scenes", "runs": {variant: measure(...)}}} for every regime
    the gallery manifest at `gallery` ships."""
    out: dict = {}
    for entry in read_manifest(gallery)["runs"]:
        model, cfg = load_gallery_model(gallery, entry)
        regime = out.setdefault(
            entry["regime"],
            {"phase": entry["phase"], "split": entry["split"], "scenes": scenes, "runs": {}},
        )
        regime["runs"][entry["variant"]] = measure(model, cfg, entry["split"], scenes)
    return out


def _stages(values: list[float], fmt: str = ".0f") -> str:
    return "/".join(f"{v:{fmt}}" for v in values)


def rows(d: dict) -> list[dict]:
    """A row per regime and run: the numbers of `regime_mechanisms`, per-stage ones joined as
    "stage 1/2/3/4" (the table of results/regimes.md and of notebook 07)."""
    out = []
    for regime, r in d.items():
        for variant, m in r["runs"].items():
            e, b = m["errors"], m["bane"]
            out.append(
                {
                    "regime": regime,
                    "run": variant,
                    "split": SPLIT_NAMES[r["split"]],
                    "mIoU %": f"{m['miou']:.2f}",
                    "error px/image": f"{e['errors_per_image']:.0f}",
                    "on rims %": f"{e['rim_share_of_errors']:.0f}",
                    "digit for digit %": f"{e['digit_confusion_share']:.0f}",
                    "in misread digits %": f"{e['misread_digit_share']:.0f}",
                    "errors D>1 %": _stages([s["errors_far_pct"] for s in b], ".1f"),
                    "BANE picks D>1 %": _stages([s["picks_far_pct"] for s in b], ".1f"),
                    "fill (random) %": _stages([s["fill_pct"] for s in b]),
                    "background negatives %": _stages([s["negatives_background_pct"] for s in b]),
                }
            )
    return out


def reading(d: dict) -> list[str]:
    """Per regime, one sentence built from its Contextrast run's numbers: the errors, at which
    stages BANE's distance ranking acts (`diagnosis.bane_summary`), and from which stage `fill`
    supplies most negatives at random."""
    lines = []
    for regime, r in d.items():
        if "contextrast" not in r["runs"]:
            continue
        m = r["runs"]["contextrast"]
        far = _stages([s["errors_far_pct"] for s in m["bane"]])
        ranking = (
            f"BANE's distance ranking acts {ranking_where(m['bane'])} ({far} % of the errors at "
            f"stages 1-{len(m['bane'])} lie deeper than the rim)"
        )
        lines.append(
            f"{regime} ({SPLIT_NAMES[r['split']]}): {m['errors']['errors_per_image']:.0f} "
            f"error px per image, {m['errors']['rim_share_of_errors']:.0f} % on the rims, "
            f"{m['errors']['digit_confusion_share']:.0f} % a digit taken for another, "
            f"{m['errors']['misread_digit_share']:.0f} % inside digits misread as a whole; "
            f"{ranking}; {fill_reading(m['bane'])}."
        )
    return lines


def _signed(x: float) -> str:
    return f"{round(x) + 0:+d}"  # + 0: no "-0"


def _pairs(d: dict) -> dict[str, tuple[dict, dict]]:
    """{regime: (CE's errors, Contextrast's errors)} of the regimes that ship both runs."""
    return {
        regime: (r["runs"]["ce"]["errors"], r["runs"]["contextrast"]["errors"])
        for regime, r in d.items()
        if {"ce", "contextrast"} <= set(r["runs"])
    }


def error_deltas(d: dict) -> dict[str, dict[str, float]]:
    """{regime: {kind: Contextrast's minus CE's error px per image}} (kinds: KINDS) for the
    regimes that ship both runs."""
    deltas = {}
    for regime, (ce, cx) in _pairs(d).items():
        a, b = error_counts(ce), error_counts(cx)
        deltas[regime] = {k: b[k] - a[k] for k in KINDS}
    return deltas


def error_changes(d: dict) -> list[str]:
    """Per regime with both runs: Contextrast's error px per image against CE's, by kind."""
    lines = []
    pairs = _pairs(d)
    for regime, delta in error_deltas(d).items():
        ce, cx = pairs[regime]
        *kinds, misread = (f"{words} {_signed(delta[k])}" for k, words in KINDS.items())
        lines.append(
            f"{regime} ({SPLIT_NAMES[d[regime]['split']]}): {ce['errors_per_image']:.0f} → "
            f"{cx['errors_per_image']:.0f} error px per image "
            f"({_signed(cx['errors_per_image'] - ce['errors_per_image'])}): {', '.join(kinds)} "
            f"({misread})."
        )
    return lines


def gains_by_recognition(deltas: dict[str, dict[str, float]]) -> bool:
    """In every regime of `error_deltas`, Contextrast's run makes fewer digit-for-digit errors
    than CE's, by more than either digit/background kind moves (`cut_in_recognition`; False
    without any regime)."""
    return bool(deltas) and all(cut_in_recognition(v) for v in deltas.values())


def changes_reading(d: dict) -> str | None:
    """One sentence on `error_changes`: whether Contextrast's runs gain by recognition
    (`gains_by_recognition`), with the numbers either way (None: no regime ships both runs)."""
    deltas = error_deltas(d)
    if not deltas:
        return None
    names = "/".join(deltas)
    listed = "/".join(_signed(v["digit_confusion_share"]) for v in deltas.values())
    edges = [edge_moves(v) for v in deltas.values()]
    if gains_by_recognition(deltas):
        return (
            f"In every regime Contextrast's run takes fewer digits for other digits "
            f"({listed} px per image, {names}), and in each its errors between a digit and the "
            f"background move less (by at most {'/'.join(f'{e:.0f}' for e in edges)} px per "
            "image): where it gains, it gains by reading digits right, not at their edges (one "
            "seed pair per regime)."
        )
    return (
        f"Digit-for-digit errors change by {listed} px per image ({names}); those between a "
        f"digit and the background by up to {max(edges):.0f} (one seed pair per regime)."
    )


def markdown(d: dict) -> str:
    """The section of results/regimes.md."""
    title = "## What the mechanisms act on in each regime"
    if not d:
        return f"{title}\n\nNo regime's runs are shipped yet (`python -m ctx.experiments gallery`)."
    scenes = {r["scenes"] for r in d.values()}
    table = rows(d)
    shares = [m["errors"]["digit_rim_share"] for r in d.values() for m in r["runs"].values()]
    rim = f"{min(shares):.0f}" + (
        "" if round(min(shares)) == round(max(shares)) else f"–{max(shares):.0f}"
    )
    return "\n".join(
        [
            title,
            "",
            "The diagnosis's numbers for the seed-0 CE and Contextrast runs each regime ships in "
            "`data/regimes/` (final runs on the test scenes, tuning runs on the validation "
            f"scenes; {'/'.join(map(str, sorted(scenes)))} scenes; rim: within {RIM:g} px of a "
            "class edge; D = distance to the edge of the error region; stages in batches of 16 "
            "as in training). Reproduce: `python -m ctx.experiments mechanisms`.",
            "",
            "| " + " | ".join(table[0]) + " |",
            "|---" * len(table[0]) + "|",
            *("| " + " | ".join(row.values()) + " |" for row in table),
            "",
            "Per-stage columns read stage 1/2/3/4. X for Y: a pixel of X taken for Y; a misread "
            "digit: a digit region of the ground truth more than half of which "
            f"is taken for other digits. Strokes are a few pixels wide: {rim} % of the digit "
            "pixels lie on the rim, so 'on the rims' counts most of a misread digit too. "
            "Contextrast's runs, in words:",
            "",
            *(f"- {sentence}" for sentence in reading(d)),
            "",
            "Where Contextrast's errors differ from CE's (error px per image, the same pair):",
            "",
            *(f"- {sentence}" for sentence in error_changes(d)),
            *(["", text] if (text := changes_reading(d)) else []),
        ]
    )


def main(gallery: Path, out_dir: Path, threads: int | None = None, scenes: int = 500) -> dict:
    """Measure every regime the gallery ships; write out_dir/mechanisms.json and .md."""
    if threads:
        torch.set_num_threads(threads)
    d = regime_mechanisms(gallery, scenes)
    write_json({"gallery": portable(gallery), "regimes": d}, out_dir / "mechanisms.json")
    write_text(markdown(d) + "\n", out_dir / "mechanisms.md")
    return d


def rewrite(out_dir: Path) -> dict:
    """mechanisms.md again from out_dir/mechanisms.json (`mechanisms --report-only`), measuring
    nothing."""
    path = out_dir / "mechanisms.json"
    if not path.exists():
        raise FileNotFoundError(f"no {path}: run `python -m ctx.experiments mechanisms` first")
    d = read(path)["regimes"]
    write_text(markdown(d) + "\n", out_dir / "mechanisms.md")
    return d


def read(path: Path) -> dict:
    """A mechanisms.json, refused in one line if it is not what `main` writes."""
    return read_results(path, {"regimes": dict}, "python -m ctx.experiments mechanisms")
