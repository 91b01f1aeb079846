"""Regimes: named digit-scene settings that change what Contextrast's mechanisms have to act on.

Each regime is a set of `TrainConfig` overrides on top of the CPU default, with the reason it
exists. The regime study (`python -m ctx.experiments regimes`, protocol in
results/regimes/PROTOCOL.md) tunes the PA term per regime on the validation scenes, then compares
CE with Contextrast on the frozen test scenes.

    from ctx.experiments.regimes import regime_config
    cfg = regime_config("crowded", loss="contextrast", alpha=0.05)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ctx.engine.config import TrainConfig


@dataclass(frozen=True)
class Regime:
    """A named setting: `overrides` of TrainConfig fields, `tune_steps` for the short validation
    runs that choose the PA setting, `why` (what it gives the method to act on and the hypothesis
    it tests, written before any of its runs; the results say what happened), and `gpu`: a
    regime whose full CE run costs >= 3x the default's by construction (more pixels or more
    steps of the same model): meant for a GPU, it trains on the CPU when none is lent (hours of
    both cores; PROTOCOL.md), and is never the tutorials' default (Rule 2 leaves it out)."""

    name: str
    why: str
    overrides: dict = field(default_factory=dict)
    tune_steps: int = 2000
    gpu: bool = False

    def config(self, **changes) -> TrainConfig:
        """TrainConfig of this regime, with further `changes` (e.g. loss, alpha, seed)."""
        return dataclasses.replace(TrainConfig(), **{**self.overrides, **changes})


_CROWDED = {"min_digits": 4, "max_digits": 8, "max_overlap": 0.3, "touching": 0.7, "distractors": 3}
_SCARCE = {"train_scenes": 500, "train_digits_per_class": 35, "eval_every": 10}

REGIMES: dict[str, Regime] = {
    r.name: r
    for r in (
        Regime(
            "default",
            "The CPU tutorial setting until now: 64-px scenes of 2-5 digits that rarely touch, "
            "3,000 training scenes from 350 digits per class, 6,000 steps.",
        ),
        Regime(
            "scarce",
            "Scarce labels: 500 training scenes from 35 digits per class (a tenth). Pixel "
            "contrastive losses report their largest gains when labels are few. The hypothesis: "
            "CE overfits so few scenes, and a regulariser that shapes the embedding has room to "
            "act.",
            _SCARCE,
        ),
        Regime(
            "crowded",
            "Crowded scenes: 4-8 digits, 70 % placed against an earlier digit, up to 30 % of "
            "strokes overlapping, and up to 3 digit fragments labelled background. Class meets "
            "class (about 8x the digit-digit label edges of the default's validation scenes). "
            "The hypothesis: BANE's errors then lie between classes, and a fragment is a digit "
            "only in context.",
            _CROWDED,
        ),
        Regime(
            "crowded_scarce",
            "Crowded scenes with scarce labels: both kinds of difficulty at once.",
            {**_CROWDED, **_SCARCE},
        ),
        Regime(
            "res128",
            "128-px scenes (digits scale with the image): the coarsest stage is 8x8 instead of "
            "4x4. The hypothesis: coarse stages keep structure and BANE's distances spread "
            "beyond 1. 4x the pixels of a default run.",
            {"image_size": 128},
            gpu=True,
        ),
        Regime(
            "long",
            "A schedule 3x longer (18,000 steps): contrastive terms are reported to need long "
            "training (the paper trains 40k-80k iterations).",
            {"max_steps": 18000},
            tune_steps=6000,
            gpu=True,
        ),
    )
}


def regime_config(name: str, **changes) -> TrainConfig:
    """TrainConfig of the regime `name` (see REGIMES) with further field `changes`."""
    if name not in REGIMES:
        raise ValueError(f"unknown regime {name!r}: choose one of {', '.join(REGIMES)}")
    return REGIMES[name].config(**changes)
