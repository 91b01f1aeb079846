"""The reference runs the notebooks explore: where they live, how they are exported from a
study's seed-0 runs, and how a notebook loads one. Notebooks import this module, never the
experiment runner (`ctx.experiments`).

    python -m ctx.experiments reference --regime chosen   # data/reference/: the regime study's
                                                          # seed-0 CE and Contextrast runs
    load_reference("ce")                  # the shipped CE run: a ReferenceRun
    tutorial_config(loss="ce")            # what the notebooks train: the reference runs' regime
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ctx.data import NUM_CLASSES
from ctx.engine.checkpoint import load_model
from ctx.engine.config import TrainConfig, config_from_dict
from ctx.engine.loop import RunResult
from ctx.experiments.regimes import regime_config
from ctx.io import read_results, save_checkpoint, write_json
from ctx.labels import resize_labels
from ctx.negatives import boundary_negatives
from ctx.resources import data_dir, portable, project_root

ROOT = project_root()  # the checkout (runs/, results/); the current folder for an installed ctx
ATLAS_SCENES = 16  # validation scenes whose embeddings ship for the notebooks


@dataclass
class ReferenceRun(RunResult):
    """A shipped reference run: a `RunResult` (model in eval mode, history, its `TrainConfig`,
    checkpoint file `model.pt`, num_classes) with two data bundles for the notebooks. E epochs,
    S stages, C classes, D embedding dimensions; N = ATLAS_SCENES probe scenes of size H×W,
    h×w a stage's resolution.

    anchors: {"step": list of E steps (after each epoch), "anchors": float [E,S,C,D] (the raw,
    unfused, L2-normalised anchors of every stage on the fixed snapshot scenes), "present":
    bool [E,S,C] (which classes those scenes hold; absent classes' anchors are 0)}.
    probe: {"images": uint8 [N,3,H,W], "labels", "pred": int64 [N,H,W], "k": BANE's K,
    "stages": one dict per stage {"embeddings": float [N,D,h,w], "labels", "pred": int64
    [N,h,w] (nearest-resized), "bane": bool [N,C,h,w] (BANE's picks per class)}}.
    """

    anchors: dict
    probe: dict


def probe_scenes(cfg: TrainConfig, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `n` validation scenes: (images float [n,3,S,S], labels int64 [n,S,S])."""
    ds = cfg.digit_scenes("val", n)
    return ds.images.float() / 255.0, ds.labels


@torch.no_grad()
def export_reference(
    sources: dict[str, Path],
    out_dir: Path,
    command: str,
    about: dict | None = None,
    test_scenes: int | None = None,
) -> dict:
    """Copy the runs `sources` ({"ce": run folder, "contextrast": run folder}) into out_dir with
    what the notebooks need: model.pt (weights, config, history), anchors.pt (per-epoch per-stage
    anchors on the probe set, from the run's AnchorRecorder) and probe.pt (ATLAS_SCENES val
    scenes: per-stage embeddings, predictions, BANE picks). Then writes manifest.json: the
    `command`, `about` (e.g. the regime and PA setting) and per run its source, config, steps,
    training time and test metrics measured from the shipped model.pt (what `python -m
    ctx.evaluate data/reference/<variant> --split test` prints). Returns the manifest."""
    from ctx.evaluate import evaluate_run  # ctx.evaluate reads checkpoints through the engine

    runs = {}
    for variant, src in sources.items():
        model, ckpt = load_model(src, "cpu")
        dst = out_dir / variant
        keep = {
            k: ckpt[k] for k in ("model", "config", "history", "step", "max_steps", "num_classes")
        }
        keep["config"] = {**keep["config"], "out": portable(keep["config"]["out"])}
        save_checkpoint(keep, dst / "model.pt")
        save_checkpoint(torch.load(src / "anchors.pt", weights_only=True), dst / "anchors.pt")
        cfg = config_from_dict(ckpt["config"])
        save_checkpoint(_probe(model, cfg), dst / "probe.pt")
        test = evaluate_run(dst, "test", test_scenes, device="cpu")
        last = ckpt["history"][-1]
        runs[variant] = {
            "source": portable(src),
            "config": keep["config"],
            "steps": last["step"],
            "train_seconds": last.get("train_seconds"),
            "train_cpu_seconds": last.get("train_cpu_seconds"),
            "val_miou": last["val"]["miou"],
            "test": {k: test[k] for k in ("miou", "boundary_miou", "pixel_acc", "scenes")},
            "check": f"python -m ctx.evaluate {portable(dst)} --split test",
        }
    manifest = {
        "command": command,
        **(about or {}),
        "runs": runs,
        "files": sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*.pt")),
    }
    write_json(manifest, out_dir / "manifest.json")
    return manifest


def _probe(model, cfg: TrainConfig) -> dict:
    """The probe bundle of `model` (see ReferenceRun.probe)."""
    images, labels = probe_scenes(cfg, ATLAS_SCENES)
    logits, embs = model(images, return_embeddings=True)
    pred = logits.argmax(1)
    g = torch.Generator().manual_seed(0)
    stages = []
    for e in embs:
        y = resize_labels(labels, e.shape[-2:])
        p = resize_labels(pred, e.shape[-2:])
        stages.append(
            {
                "embeddings": e.half(),
                "labels": y,
                "pred": p,
                "bane": boundary_negatives(p, y, NUM_CLASSES, cfg.k, generator=g),
            }
        )
    return {
        "images": (images * 255).round().to(torch.uint8),
        "labels": labels,
        "pred": pred,
        "stages": stages,
        "k": cfg.k,
    }


def reference_dir() -> Path:
    """Where the reference artifacts live: $CTX_REFERENCE_DIR, else data/reference/."""
    return Path(os.environ.get("CTX_REFERENCE_DIR", data_dir() / "reference"))


def reference_manifest() -> dict:
    """The shipped reference runs' manifest.json (in `reference_dir()`), {} if there is none."""
    path = reference_dir() / "manifest.json"
    # an object; each key is optional (manifests exported before the study have no regime)
    remake = "python -m ctx.experiments reference --regime chosen"
    return read_results(path, dict, remake) if path.exists() else {}


def tutorial_config(**changes) -> TrainConfig:
    """The TrainConfig the notebooks train, so that their runs and the shipped reference runs
    share one setting: the digit scenes, steps and data of the reference runs' regime
    (`regime` in the manifest, the regime study's choice; "default" for runs exported before the
    study), full size. With loss="contextrast", also the reference Contextrast run's PA setting
    (the manifest's `setting`: alpha, and the CE-only warm-up as a fraction of `max_steps`;
    METHOD.md's defaults when it records none). `changes` (sizes, loss, device, out, ...) are
    applied last, so an explicit alpha or warmup_steps wins."""
    manifest = reference_manifest()
    regime, setting, pa = manifest.get("regime", "default"), manifest.get("setting"), {}
    if changes.get("loss") == "contextrast" and setting:
        steps = changes.get("max_steps", regime_config(regime).max_steps)
        pa = {"alpha": setting["alpha"], "warmup_steps": round(setting["warmup"] * steps)}
    return regime_config(regime, **{**pa, **changes})


def load_reference(variant: str, device: str | torch.device = "cpu") -> ReferenceRun:
    """A shipped reference run ("ce" or "contextrast"), its model on `device` (see
    `ReferenceRun` for the anchors and probe bundles). Read-only: nothing here is ever written
    by a notebook."""
    folder = reference_dir() / variant
    if not (folder / "model.pt").exists():
        raise FileNotFoundError(
            f"no reference run at {folder}: it ships in data/reference/ (git checkout -- data/), "
            f"or regenerate it with `python -m ctx.experiments reference --regime chosen` (trains "
            f"the regime study's two seed-0 runs of the regime it chose)"
        )
    model, ckpt = load_model(folder / "model.pt", device)
    snaps = torch.load(folder / "anchors.pt", weights_only=True)
    anchors = {
        "step": snaps["step"],
        "anchors": torch.stack(snaps["anchors"]).float(),
        "present": torch.stack(snaps["present"]),
    }
    probe = torch.load(folder / "probe.pt", weights_only=True)
    for st in probe["stages"]:
        st["embeddings"] = st["embeddings"].float()
    return ReferenceRun(
        model,
        ckpt["history"],
        config_from_dict(ckpt["config"]),
        folder / "model.pt",
        ckpt["num_classes"],
        anchors,
        probe,
    )
