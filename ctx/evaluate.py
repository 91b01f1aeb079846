"""Evaluate a trained run on a split, so anyone can check a shipped or reported number.

    python -m ctx.evaluate data/reference/contextrast --split test
    python -m ctx.evaluate runs/ce/checkpoint.pt --split val --device cpu

RUN_OR_CHECKPOINT is a run folder (holding checkpoint.pt, or model.pt for a shipped reference
run) or a checkpoint file. The scenes are the run's own (its regime's scene settings and data
seed; test = the 500 frozen test scenes). Prints the metrics, then one JSON line:
{"miou": ..., "boundary_miou": ..., "pixel_acc": ..., "split": ..., "scenes": ...}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ctx.engine.checkpoint import CHECKPOINT, load_model
from ctx.engine.config import config_from_dict
from ctx.engine.device import resolve_device
from ctx.engine.step import evaluate
from ctx.validation import OneLineParser

SPLITS = ("train", "val", "test")


def checkpoint_path(path: str | Path) -> Path:
    """The checkpoint file a run folder or file argument names."""
    path = Path(path)
    if path.is_dir():
        for name in (CHECKPOINT, "model.pt"):
            if (path / name).exists():
                return path / name
        raise FileNotFoundError(f"{path} holds no {CHECKPOINT} or model.pt: point to a run folder")
    if not path.exists():
        raise FileNotFoundError(f"no run or checkpoint at {path}")
    return path


def evaluate_run(
    path: str | Path, split: str = "test", scenes: int | None = None, device: str = "auto"
) -> dict:
    """Metrics (percent) of the run at `path` on `split` of its own scenes."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if scenes is not None and scenes < 1:
        raise ValueError(f"--scenes must be >= 1, got {scenes}")
    dev = resolve_device(device)
    model, ckpt = load_model(checkpoint_path(path), dev)
    cfg = config_from_dict(ckpt["config"])
    if cfg.dataset != "digits":
        from ctx.engine.loop import make_datasets

        if split != "val":
            raise ValueError(
                f"{cfg.dataset} runs are evaluated on --split val (its labelled split)"
            )
        data = make_datasets(cfg)[1]
    else:
        data = cfg.digit_scenes(split, scenes)
        data.augment = False
    metrics = evaluate(model, data, dev, ckpt["num_classes"])
    return {**metrics, "split": split, "scenes": len(data)}


def main(argv: list[str] | None = None) -> None:
    p = OneLineParser(
        prog="python -m ctx.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", help="run folder or checkpoint file")
    p.add_argument(
        "--split", choices=SPLITS, default="test", help="scenes to score (default: test)"
    )
    p.add_argument(
        "--scenes",
        type=int,
        default=None,
        help="number of scenes (default: the run's val count, 500 for test)",
    )
    p.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda or mps")
    args = p.parse_args(argv)
    try:
        m = evaluate_run(args.run, args.split, args.scenes, args.device)
    except (ValueError, FileNotFoundError, PermissionError) as e:
        sys.exit(f"error: {e}")
    print(f"{args.run} on {m['scenes']} {m['split']} scenes:")
    print(
        f"  mIoU {m['miou']:.2f} %  boundary mIoU {m['boundary_miou']:.2f} %  "
        f"pixel accuracy {m['pixel_acc']:.2f} %"
    )
    print(json.dumps({k: m[k] for k in ("miou", "boundary_miou", "pixel_acc", "split", "scenes")}))


if __name__ == "__main__":
    main()
