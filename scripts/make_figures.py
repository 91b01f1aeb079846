"""Figures for the README, from the shipped reference runs (data/reference/).

python scripts/make_figures.py     # writes docs/overview.png and docs/learning_curves.png
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ctx.plotting import class_legend, label_to_rgb, overlay, plot_history, to_image  # noqa: E402
from ctx.reference import ReferenceRun, load_reference  # noqa: E402
from ctx.validation import OneLineParser  # noqa: E402

DOCS = Path(__file__).resolve().parents[1] / "docs"
SCENES = (0, 1, 2, 3, 4, 5)


def overview(ce: ReferenceRun, cx: ReferenceRun) -> plt.Figure:
    probe = cx.probe
    rows = [
        ("scene", lambda i: to_image(probe["images"][i])),
        ("labels", lambda i: label_to_rgb(probe["labels"][i])),
        ("CE", lambda i: label_to_rgb(ce.probe["pred"][i])),
        ("Contextrast", lambda i: label_to_rgb(probe["pred"][i])),
    ]
    fig, axes = plt.subplots(len(rows) + 1, len(SCENES), figsize=(1.8 * len(SCENES) + 1.4, 9.4))
    for r, (name, draw) in enumerate(rows):
        for c, i in enumerate(SCENES):
            axes[r, c].imshow(draw(i), interpolation="nearest")
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(name)
    last = probe["stages"][-1]
    for c, i in enumerate(SCENES):
        overlay(axes[-1, c], probe["images"][i], last["bane"][i].any(0))
    axes[-1, 0].set_ylabel("BANE picks\n(last stage)")
    class_legend(axes[1, -1])
    fig.tight_layout()
    return fig


def main() -> None:
    ce, cx = load_reference("ce"), load_reference("contextrast")
    DOCS.mkdir(exist_ok=True)
    overview(ce, cx).savefig(DOCS / "overview.png", dpi=80)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), layout="tight")
    hist = {"ce": ce.history, "contextrast": cx.history}
    plot_history(hist, x="step", ax=axes[0])
    plot_history(hist, x="cpu_minutes", ax=axes[1])
    fig.savefig(DOCS / "learning_curves.png", dpi=90)
    for name, h in hist.items():
        marks = [h[i] for i in range(0, len(h), max(1, len(h) // 8))] + [h[-1]]
        print(
            name,
            " | ".join(
                f"{e['step']} steps {e['train_cpu_seconds'] / 60:.1f} CPU min {e['val']['miou']:.1f}%"
                for e in marks
            ),
        )


if __name__ == "__main__":
    OneLineParser(prog="python scripts/make_figures.py", description=__doc__).parse_args()
    main()
