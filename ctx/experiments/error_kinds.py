"""What the wrong pixels are: a digit taken for another digit, a digit taken for background,
background taken for a digit, and which of them lie inside digits misread as a whole. And, over
the regime study's five test pairs per regime, how Contextrast's errors of each kind differ from
CE's, paired by seed with a 95 % interval.

    python -m ctx.experiments error-kinds --runs-dir runs/regimes   # -> results/regimes/error_kinds.*

Strokes are a few pixels wide, so most digit pixels lie within 2 px of a class edge, and the
diagnosis's rim/interior split cannot tell a misread digit from a frayed edge: this split can.
The study measures each final run's kinds as it finishes and keeps them in its row of
results/regimes.json; rows from before it did need the study's own final run folders (only
seed 0 ships, in data/regimes/), or `--remake-dir` to retrain them, and each such run's test
mIoU is checked against its row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from ctx.analysis import predict
from ctx.bane_sets import edge_distance
from ctx.data import NUM_CLASSES
from ctx.engine.checkpoint import load_model
from ctx.experiments.diagnosis import RIM
from ctx.experiments.gallery import source_checkpoint
from ctx.experiments.regime_study import FINAL_SEEDS, TEST_SCENES, Job, load_results
from ctx.experiments.regimes import REGIMES
from ctx.experiments.stats import mean_std, t_interval
from ctx.io import read_results, write_json, write_text
from ctx.labels import IGNORE_INDEX
from ctx.metrics import ConfusionMatrix

BACKGROUND = 0
MIOU_CHECK = 0.005  # points: a run folder must reproduce its results row's test mIoU


@torch.no_grad()
def misread_digits(pred: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Pixels of the *misread digits* of labels [B,H,W], bool [B,H,W]: the 8-connected regions
    of one digit class (touching digits of one class make one region) of which more than half
    is predicted as other digits: a digit recognised as another as a whole, not an edge lost to
    the background or to a neighbour."""
    y, p = labels.cpu().numpy(), pred.cpu().numpy()
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True  # 8-connected within an image, never across the batch
    out = np.zeros(y.shape, dtype=bool)
    for c in range(1, NUM_CLASSES):
        regions, n = ndimage.label(y == c, structure)
        if n == 0:
            continue
        size = np.bincount(regions.ravel(), minlength=n + 1)
        other = np.bincount(
            regions.ravel(), weights=((p != c) & (p != BACKGROUND)).ravel(), minlength=n + 1
        )
        misread = 2 * other > size
        misread[0] = False  # region 0 is everything that is not class c
        out |= misread[regions]
    return torch.from_numpy(out).to(labels.device)


@torch.no_grad()
def error_kinds(pred: torch.Tensor, labels: torch.Tensor, rim: float = RIM) -> dict:
    """What the wrong pixels of pred [B,H,W] against labels [B,H,W] (ignore excluded) are, in %
    of them: a digit taken for another digit (`digit_confusion_share`), a digit taken for
    background, background taken for a digit (the three sum to 100), and those inside misread
    digits (`misread_digits`). Also `digit_rim_share`: % of the digit pixels within `rim` px of
    a class edge; strokes are a few pixels wide, so a misread digit is mostly rim pixels and
    the rim split alone cannot tell a misread digit from a frayed edge."""
    valid = labels != IGNORE_INDEX
    wrong = (pred != labels) & valid
    digit = valid & (labels != BACKGROUND)
    n_wrong = max(int(wrong.sum()), 1)

    def share(mask: torch.Tensor) -> float:
        return 100 * float(mask.sum()) / n_wrong

    return {
        "digit_confusion_share": share(wrong & digit & (pred != BACKGROUND)),
        "digit_as_background_share": share(wrong & digit & (pred == BACKGROUND)),
        "background_as_digit_share": share(wrong & (labels == BACKGROUND)),
        "misread_digit_share": share(wrong & misread_digits(pred, labels)),
        "digit_rim_share": 100
        * float((digit & (edge_distance(labels) <= rim)).sum())
        / max(int(digit.sum()), 1),
    }


KINDS = {  # error_kinds share -> words; the first three are disjoint, the last overlaps them
    "digit_confusion_share": "digit for digit",
    "digit_as_background_share": "digit for background",
    "background_as_digit_share": "background for digit",
    "misread_digit_share": "inside misread digits",
}


EDGE_KINDS = ("digit_as_background_share", "background_as_digit_share")


def error_counts(errors: dict) -> dict[str, float]:
    """Error px per image of each kind in KINDS (its share x the errors per image)."""
    return {k: errors[k] / 100 * errors["errors_per_image"] for k in KINDS}


def edge_moves(change: dict[str, float]) -> float:
    """The larger absolute change of the two digit/background kinds (`change`: kind -> px per
    image, Contextrast − CE)."""
    return max(abs(change[q]) for q in EDGE_KINDS)


def cut_in_recognition(change: dict[str, float]) -> bool:
    """Contextrast − CE per kind (kind -> px per image): fewer digit-for-digit errors, by more
    than either digit/background kind moves."""
    digit = change["digit_confusion_share"]
    return digit < 0 and edge_moves(change) < -digit


# --------------------------------------------------------------------------- over the test pairs


def final_pairs(finals: list[dict], regime: str) -> list[tuple[dict, dict]]:
    """(CE row, Contextrast row) of `regime`'s final runs, paired by seed, in seed order."""
    rows = {
        v: {r["seed"]: r for r in finals if (r["regime"], r["variant"]) == (regime, v)}
        for v in ("ce", "contextrast")
    }
    return [
        (rows["ce"][s], rows["contextrast"][s])
        for s in sorted(rows["ce"])
        if s in rows["contextrast"]
    ]


@torch.no_grad()
def measure(model: torch.nn.Module, scenes) -> dict:
    """`model`'s test mIoU on `scenes` (digit scenes: images, labels [N,H,W]), its wrong pixels
    per image (`errors_per_image`) and their `error_kinds`."""
    pred = predict(model, scenes.images)
    cm = ConfusionMatrix(NUM_CLASSES)
    cm.update(pred, scenes.labels)
    wrong = (pred != scenes.labels) & (scenes.labels != IGNORE_INDEX)
    return {
        "miou": cm.summary()["miou"],
        "errors_per_image": int(wrong.sum()) / len(pred),
        **error_kinds(pred, scenes.labels),
    }


def measure_run(row: dict, runs_dir: Path, remake_dir: Path | None, scenes) -> dict:
    """A final run's test mIoU and `error_kinds` on `scenes` (its regime's test scenes), with its
    errors per image. A row the study measured when the run finished (its `error_kinds`) needs
    no checkpoint; otherwise the checkpoint comes from the study's folder, else from `remake_dir`
    (retrained there from the row's config: `gallery.source_checkpoint`); ValueError unless it
    reproduces the row's test mIoU."""
    head = {"variant": row["variant"], "seed": row["seed"]}
    if "error_kinds" in row:
        return {
            **head,
            "remade": False,
            "at_finish": True,
            "miou": row["miou"],
            **row["error_kinds"],
        }
    job = Job(
        "final", row["regime"], row["variant"], row["seed"], row.get("alpha"), row.get("warmup")
    )
    src = source_checkpoint(job, row, runs_dir, remake_dir)
    model, _ = load_model(src["path"])
    m = measure(model, scenes)
    if abs(m["miou"] - row["miou"]) > MIOU_CHECK:
        raise ValueError(
            f"{src['path']} scores {m['miou']:.2f} % test mIoU, its row in results/regimes.json "
            f"{row['miou']:.2f} %: not the run that row records"
        )
    return {**head, "remade": src["remade"], "at_finish": False, **m}


def complete(finals: list[dict]) -> list[str]:
    """The regimes whose five test pairs are all in `finals`, in the study's order."""
    return [r for r in REGIMES if len(final_pairs(finals, r)) == len(FINAL_SEEDS)]


def measure_finals(
    finals: list[dict], runs_dir: Path, remake_dir: Path | None, regimes: list[str]
) -> dict:
    """{regime: [measure_run of its CE and Contextrast final runs, by seed]} for `regimes`
    (each must have its five test pairs in `finals`)."""
    out = {}
    for regime in regimes:
        pairs = final_pairs(finals, regime)
        if len(pairs) < len(FINAL_SEEDS):
            raise ValueError(f"{regime} has {len(pairs)} of {len(FINAL_SEEDS)} test pairs so far")
        scenes = REGIMES[regime].config().digit_scenes("test", TEST_SCENES)
        out[regime] = [measure_run(r, runs_dir, remake_dir, scenes) for p in pairs for r in p]
    return out


WORDS = {"errors": "all errors", **KINDS}  # the quantities of `paired_kinds`


def paired_kinds(runs: list[dict]) -> dict:
    """Contextrast minus CE per seed, in error px per image, for each quantity of WORDS (all
    errors, then the kinds): the CE and Contextrast means, the mean difference and its 95 %
    t-interval; `n` pairs."""
    px = {
        (r["variant"], r["seed"]): {"errors": r["errors_per_image"], **error_counts(r)}
        for r in runs
    }
    seeds = sorted(s for v, s in px if v == "ce" and ("contextrast", s) in px)
    out: dict = {"n": len(seeds)}
    for q in WORDS:
        ce = [px["ce", s][q] for s in seeds]
        cx = [px["contextrast", s][q] for s in seeds]
        diffs = [b - a for a, b in zip(ce, cx, strict=True)]
        lo, hi = t_interval(diffs)
        out[q] = {
            "ce": mean_std(ce)[0],
            "contextrast": mean_std(cx)[0],
            "mean": mean_std(diffs)[0],
            "lo": lo,
            "hi": hi,
        }
    return out


PHRASES = {  # KINDS in a sentence
    "digit_confusion_share": "digits taken for other digits",
    "digit_as_background_share": "digit pixels taken for background",
    "background_as_digit_share": "background taken for digits",
    "misread_digit_share": "errors inside misread digits",
}


def _f(x: float) -> str:
    return f"{round(x, 1) + 0.0:+.1f}"  # + 0.0: no "-0.0"


def _cell(p: dict) -> str:
    return f"{_f(p['mean'])} [{_f(p['lo'])}, {_f(p['hi'])}]"


def _join(words: list[str], last: str = "and") -> str:
    return (
        f" {last} ".join(words) if len(words) < 3 else f"{', '.join(words[:-1])} {last} {words[-1]}"
    )


def _clear(p: dict) -> bool:
    """The interval excludes zero."""
    return not p["lo"] <= 0 <= p["hi"]


def reading(stats: dict[str, dict]) -> list[str]:
    """Per regime, in words: which kinds Contextrast's runs make fewer of (interval below zero),
    more of (above), and which show no clear change (interval across zero)."""
    lines = []
    for regime, s in stats.items():
        fewer = [PHRASES[q] for q in KINDS if s[q]["hi"] < 0]
        more = [PHRASES[q] for q in KINDS if s[q]["lo"] > 0]
        same = [PHRASES[q] for q in KINDS if not _clear(s[q])]
        parts = [f"fewer {_join(fewer)}"] if fewer else []
        parts += [f"more {_join(more)}"] if more else []
        parts += [f"no clear change in {_join(same, 'or')}"] if same else []
        lines.append(
            f"{regime} ({s['n']} pairs): {s['errors']['ce']:.0f} → "
            f"{s['errors']['contextrast']:.0f} error px per image ({_cell(s['errors'])}): "
            + "; ".join(parts)
            + "."
        )
    return lines


def _means(s: dict) -> dict[str, float]:
    """The mean difference of each kind of `paired_kinds` stats."""
    return {q: s[q]["mean"] for q in KINDS}


def recognition(stats: dict[str, dict]) -> bool:
    """Is the cut in recognition? In every regime digit-for-digit errors fall (interval below
    zero), by more than either digit/background kind moves (`cut_in_recognition` of the means;
    False without any regime)."""
    return bool(stats) and all(
        s["digit_confusion_share"]["hi"] < 0 and cut_in_recognition(_means(s))
        for s in stats.values()
    )


def summary(stats: dict[str, dict]) -> str | None:
    """One sentence over the regimes: whether the cut is in recognition (`recognition`), with
    the numbers either way, naming the digit/background changes whose interval excludes zero
    (None without any regime)."""
    if not stats:
        return None
    digit = {r: s["digit_confusion_share"]["mean"] for r, s in stats.items()}
    names, cuts = "/".join(stats), "/".join(_f(v) for v in digit.values())
    moves = "/".join(f"{edge_moves(_means(s)):.1f}" for s in stats.values())
    clear = [
        f"{regime}: "
        + ", ".join(f"{PHRASES[q]} {_f(s[q]['mean'])}" for q in EDGE_KINDS if _clear(s[q]))
        for regime, s in stats.items()
        if any(_clear(s[q]) for q in EDGE_KINDS)
    ]
    clearly = f" (clear of zero in {'; '.join(clear)})" if clear else ""
    if not recognition(stats):
        return (
            f"Digit-for-digit errors change by {cuts} px per image ({names}); the errors between "
            f"a digit and the background on average by up to {moves}{clearly}."
        )
    share = ""
    if all(s["errors"]["mean"] < 0 for s in stats.values()):
        pct = "/".join(f"{100 * digit[r] / s['errors']['mean']:.0f}" for r, s in stats.items())
        share = f"; {pct} % of the whole cut in errors"
    return (
        f"In every measured regime ({names}) Contextrast's runs take fewer digits for other "
        f"digits ({cuts} px per image, each interval below zero{share}), while the errors "
        f"between a digit and the background move on average by at most {moves} px per image"
        f"{clearly}: "
        "Contextrast's gain over CE is in recognising digits, not in drawing their edges."
    )


def rows(stats: dict[str, dict]) -> list[dict]:
    """A table row per regime: its pairs and Contextrast − CE per quantity of WORDS, as
    "mean [lo, hi]" (error px per test image)."""
    return [
        {"regime": regime, "pairs": s["n"], **{f"Δ {w}": _cell(s[q]) for q, w in WORDS.items()}}
        for regime, s in stats.items()
    ]


def provenance(runs: dict[str, list[dict]]) -> str:
    """Whence the measured runs (`measure_finals`' output) came, in a sentence."""
    every = [r for rs in runs.values() for r in rs]
    k = sum(r.get("at_finish", False) for r in every)
    n = sum(r["remade"] for r in every)
    if k == len(every):
        return "Measured by the study on each final run as it finished (its row's `error_kinds`)."
    finish = f"{k} of them as each finished (its row's `error_kinds`), the others " if k else ""
    remade = f"{n} of them retrained from their recorded configs (`--remake-dir`), " if n else ""
    return (
        f"Measured on the study's final runs, {finish}from their checkpoints, {remade}each "
        f"reproducing its row's test mIoU to {MIOU_CHECK} points."
    )


def markdown(
    stats: dict[str, dict], runs: dict[str, list[dict]], command: str, missing: list[str] = ()
) -> str:
    """The error-kinds section of results/regimes.md."""
    title = "## Which errors the PA term removes, over the five test pairs"
    if not stats:
        return f"{title}\n\nNo regime has its five test pairs measured yet."
    head = list(rows(stats)[0])
    lines = [
        title,
        "",
        "Contextrast − CE in error pixels per test image (500 scenes), paired by seed, mean "
        "[95 % t-interval]. A pixel of a digit taken for another digit is *digit for digit*; "
        "*inside misread digits* counts the errors (of either digit kind) inside ground-truth "
        "digit regions more than half of which is taken for other digits. "
        f"{provenance(runs)} Reproduce: `{command}`.",
        "",
        "| " + " | ".join(head) + " |",
        "|---" * len(head) + "|",
        *("| " + " | ".join(str(v) for v in row.values()) + " |" for row in rows(stats)),
    ]
    if missing:
        lines += [
            "",
            f"Not measured yet, though their five test pairs are in: {', '.join(missing)} "
            f"(`python -m ctx.experiments error-kinds --regimes {' '.join(missing)}`; "
            "`--remake-dir DIR` retrains the runs measured neither as they finished nor in "
            "their folders).",
        ]
    return "\n".join([*lines, "", *(f"- {line}" for line in reading(stats)), "", summary(stats)])


def main(
    results_dir: Path,
    runs_dir: Path,
    command: str,
    remake_dir: Path | None = None,
    regimes: list[str] | None = None,
    threads: int | None = None,
) -> dict:
    """Measure `regimes` (default: every regime with its five test pairs) and write
    results/regimes/error_kinds.{json,md}; regimes measured before and not named are kept."""
    if threads:
        torch.set_num_threads(threads)
    finals = load_results(results_dir / "regimes.json")["runs"]
    path = results_dir / "regimes" / "error_kinds.json"
    runs = read(path)["regimes"] if path.exists() and regimes else {}
    runs.update(measure_finals(finals, runs_dir, remake_dir, regimes or complete(finals)))
    runs = {r: runs[r] for r in REGIMES if r in runs}
    stats = {regime: paired_kinds(r) for regime, r in runs.items()}
    write_json({"command": command, "regimes": runs, "paired": stats}, path)
    missing = [r for r in complete(finals) if r not in runs]
    write_text(markdown(stats, runs, command, missing) + "\n", path.with_suffix(".md"))
    return stats


def read(path: Path) -> dict:
    """results/regimes/error_kinds.json, refused in one line if it is not what `main` writes."""
    shape = {"regimes": dict, "paired": dict, "command": str}
    return read_results(path, shape, "python -m ctx.experiments error-kinds")


def rewrite(results_dir: Path) -> dict:
    """error_kinds.md again from results/regimes/error_kinds.json (`error-kinds --report-only`),
    measuring nothing; the regimes whose five test pairs are in since are named as missing."""
    path = results_dir / "regimes" / "error_kinds.json"
    if not path.exists():
        raise FileNotFoundError(f"no {path}: run `python -m ctx.experiments error-kinds` first")
    saved = read(path)
    finals = load_results(results_dir / "regimes.json")["runs"]
    missing = [r for r in complete(finals) if r not in saved["regimes"]]
    text = markdown(saved["paired"], saved["regimes"], saved["command"], missing)
    write_text(text + "\n", path.with_suffix(".md"))
    return saved["paired"]
