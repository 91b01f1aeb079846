"""Did the regimes change what the mechanisms act on? The diagnosis's error and BANE numbers,
per regime, from the runs the gallery ships (data/regimes/: seed-0 CE and Contextrast).

The regimes were designed to move the default's bottlenecks (results/regimes/diagnosis.md):
`crowded` puts digits against digits, so errors can lie between two classes; `scarce` leaves CE
fewer labels, so there are more errors to pick negatives from. This measures, for each shipped
run on the split its phase may be scored on (test for final runs, validation for tuning runs):
its errors (rim share; share of errors where a digit is taken for another digit) and, per
stage, what BANE has to work with (`diagnosis.bane_inputs`).

    python -m ctx.experiments mechanisms     # writes results/regimes/mechanisms.{json,md}
"""

from __future__ import annotations

from pathlib import Path

import torch

from ctx.data import NUM_CLASSES
from ctx.experiments.diagnosis import RIM, bane_inputs, bane_summary, error_split, run_outputs
from ctx.experiments.gallery import load_gallery_model, read_manifest
from ctx.io import write_json, write_text
from ctx.labels import IGNORE_INDEX
from ctx.metrics import ConfusionMatrix
from ctx.resources import portable

BACKGROUND = 0
SPLIT_NAMES = {"test": "test", "val": "validation"}


@torch.no_grad()
def digit_confusion_share(pred: torch.Tensor, labels: torch.Tensor) -> float:
    """% of the wrong pixels of pred [B,H,W] against labels [B,H,W] (ignore excluded) where a
    digit is predicted as another digit: the errors where class meets class, not background."""
    wrong = (pred != labels) & (labels != IGNORE_INDEX)
    digits = wrong & (labels != BACKGROUND) & (pred != BACKGROUND)
    return 100 * float(digits.sum()) / max(int(wrong.sum()), 1)


def measure(model: torch.nn.Module, cfg, split: str, scenes: int = 500) -> dict:
    """One run's numbers on the first `scenes` scenes of its regime's `split` ("val"/"test")."""
    data = cfg.digit_scenes(split, scenes)
    out = run_outputs(model, data.images, features=False)  # sizes and predictions only
    sizes = [tuple(e.shape[-2:]) for e in out["embeddings"]]
    cm = ConfusionMatrix(NUM_CLASSES)
    cm.update(out["pred"], data.labels)
    errors = error_split(out["pred"], data.labels)
    errors["digit_confusion_share"] = digit_confusion_share(out["pred"], data.labels)
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
                    "BANE picks D>1 %": _stages([s["picks_far_pct"] for s in b], ".1f"),
                    "fill (random) %": _stages([s["fill_pct"] for s in b]),
                    "background negatives %": _stages([s["negatives_background_pct"] for s in b]),
                }
            )
    return out


def reading(d: dict) -> list[str]:
    """Per regime, one sentence built from its Contextrast run's numbers: the errors, whether
    BANE's distance ranking has anything to rank, and from which stage `fill` supplies most
    negatives at random."""
    lines = []
    for regime, r in d.items():
        if "contextrast" not in r["runs"]:
            continue
        m = r["runs"]["contextrast"]
        b = bane_summary(m["bane"])
        ranking = (
            f"BANE's picks with D > 1 reach {b['picks_far']:.1f} %: its distance ranking acts"
            if b["ranks"]
            else f"BANE's picks with D > 1 are at most {b['picks_far']:.1f} %, so its distance "
            f"ranking has nothing to rank"
        )
        negatives = (
            f"`fill` supplies most negatives at random from stage {b['random_from']} on"
            if b["random_from"]
            else "BANE's own picks fill the negatives at every stage"
        )
        lines.append(
            f"{regime} ({SPLIT_NAMES[r['split']]}): {m['errors']['errors_per_image']:.0f} "
            f"error px per image, {m['errors']['rim_share_of_errors']:.0f} % on the rims, "
            f"{m['errors']['digit_confusion_share']:.0f} % a digit taken for another; "
            f"{ranking}; {negatives}."
        )
    return lines


def markdown(d: dict) -> str:
    """The section of results/regimes.md."""
    title = "## What the mechanisms act on in each regime"
    if not d:
        return f"{title}\n\nNo regime's runs are shipped yet (`python -m ctx.experiments gallery`)."
    scenes = {r["scenes"] for r in d.values()}
    table = rows(d)
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
            "Per-stage columns read stage 1/2/3/4. Contextrast's runs, in words:",
            "",
            *(f"- {sentence}" for sentence in reading(d)),
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
