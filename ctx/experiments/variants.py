"""The variants the studies compare (ablation, regime study) and the frozen test evaluation
they share. A variant is a set of TrainConfig overrides."""

from __future__ import annotations

from ctx.data import NUM_CLASSES
from ctx.engine.config import TrainConfig
from ctx.engine.step import evaluate

# In run order: the two reference variants first, so data/reference/ can be made early.
VARIANTS: dict[str, dict] = {
    "ce": {"loss": "ce"},
    "contextrast": {"loss": "contextrast", "negatives": "bane", "fusion": True},
    "ccl": {"loss": "contextrast", "negatives": "random", "fusion": True},
    "bane": {"loss": "contextrast", "negatives": "bane", "fusion": False},
    "single_stage": {"loss": "contextrast", "negatives": "bane", "stages": (3,)},
}
DESCRIPTIONS = {
    "ce": "cross-entropy only",
    "ccl": "PA loss, fused anchors, random negatives",
    "bane": "PA loss, BANE negatives, no fusion",
    "contextrast": "PA loss, fused anchors, BANE negatives (the method)",
    "single_stage": "PA loss on the last stage only, BANE negatives",
    "ce_time": "cross-entropy only, trained as long (in wall time) as contextrast",
}
ALL_VARIANTS = [*VARIANTS, "ce_time"]  # what `ablation` runs by default, in run order


def evaluate_on_test(model, cfg: TrainConfig, num_scenes: int | None = None) -> dict:
    """Metrics (percent) of `model` on the frozen test scenes."""
    test = cfg.digit_scenes("test", num_scenes)
    device = next(model.parameters()).device
    return evaluate(model, test, device, NUM_CLASSES)
