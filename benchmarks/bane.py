"""Benchmark BANE on the CPU: the torch distance transform against scipy, and the whole selection.

    python benchmarks/bane.py [--quick] [--threads N] [--repeats R]

Error maps are shaped like real ones: Voronoi label regions, a prediction whose region borders
are shifted (bands of wrong pixels along the boundaries) plus a few wrongly predicted disks
(blobs), for 16 images x 11 classes at the sizes the loss uses on the default model (stages of
32, 16, 8 and 4 px), the 64 px notebook case and 128 px (not with --quick). A second scene,
"early", predicts one class everywhere (whole regions wrong, as at the start of training).
`distance_transform` (the sparse CPU algorithm) is timed against scipy's per-map loop, with the
dense algorithm BANE runs on a GPU (`dense_distance_transform`, here on the CPU) beside them.

Timings are medians over interleaved repeats (torch, scipy, torch, ...). torch runs on
`--threads` threads (default 1, since scipy's EDT is single-threaded and CI machines are shared);
`--clock cpu` times this process's CPU time, which other jobs on a shared machine inflate less.
The last line printed is JSON with the medians and the scipy/torch ratios.

Sections are plain functions returning rows, so new ones (e.g. BANE as a share of a training
step) can be added to `SECTIONS` without touching the others.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from scipy import ndimage

from ctx.negatives import (
    boundary_negatives,
    dense_distance_transform,
    distance_transform,
    error_maps,
)
from ctx.validation import OneLineParser

NUM_CLASSES = 11
BATCH = 16
SIZES = (64, 128)
EDT_SIZES = (4, 8, 16, 32, 64, 128)  # the loss's stage sizes, the notebook's 64 px, and 128
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


# ------------------------------------------------------------------------------- scenes


def make_scene(
    batch: int, size: int, num_classes: int = NUM_CLASSES, seed: int = 0, early: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(pred, labels), int64 [B,H,W]: Voronoi regions; pred shifts their borders, adds blobs.

    early=True predicts class 0 everywhere instead (every other class's region is all wrong).
    """
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    pixels = torch.stack([yy, xx], -1).float()  # [H,W,2]
    labels = torch.empty(batch, size, size, dtype=torch.long)
    pred = torch.empty_like(labels)
    for b in range(batch):
        seeds = torch.rand(8, 2, generator=g) * size
        classes = torch.randint(0, num_classes, (8,), generator=g)
        labels[b] = classes[torch.cdist(pixels.view(-1, 2), seeds).argmin(-1)].view(size, size)
        moved = seeds + torch.randn(8, 2, generator=g) * size * 0.03  # borders move: bands
        p = classes[torch.cdist(pixels.view(-1, 2), moved).argmin(-1)].view(size, size)
        for _ in range(3):  # wrongly predicted blobs
            centre = torch.rand(2, generator=g) * size
            radius = float(torch.rand(1, generator=g)) * size * 0.12 + 2
            disk = ((pixels - centre) ** 2).sum(-1) < radius**2
            p[disk] = int(torch.randint(0, num_classes, (1,), generator=g))
        pred[b] = p
    if early:
        pred = torch.zeros_like(labels)
    return pred, labels


# ------------------------------------------------------------------------------ timing


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 2):
    """Median seconds of each callable, timed in turn within every repeat (order alternates)."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else reversed(names):
            start = clock()
            fns[name]()
            times[name].append(clock() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def scipy_per_map(mask: np.ndarray) -> np.ndarray:
    """The baseline: a Python loop calling scipy's EDT on every 2-D map."""
    flat = mask.reshape(-1, *mask.shape[-2:])
    return np.stack([ndimage.distance_transform_edt(m) for m in flat]).reshape(mask.shape)


# ----------------------------------------------------------------------------- sections


def section_distance_transform(args: argparse.Namespace) -> list[dict]:
    """torch `distance_transform` on the whole [16,11,H,W] batch vs scipy per map."""
    rows = []
    sizes = EDT_SIZES[:-1] if args.quick else EDT_SIZES
    for early in (False, True):
        for size in sizes:
            pred, labels = make_scene(BATCH, size, early=early)
            errors = error_maps(pred, labels, NUM_CLASSES).contiguous()
            as_numpy = errors.numpy()
            got = distance_transform(errors).double().numpy()
            ref = scipy_per_map(as_numpy)
            full = as_numpy.reshape(-1, size * size).all(-1)  # scipy has no +inf convention
            ok = np.allclose(got.reshape(len(full), -1)[~full], ref.reshape(len(full), -1)[~full])
            ok &= torch.equal(dense_distance_transform(errors), distance_transform(errors))
            med = interleaved(
                {"torch": lambda e=errors: distance_transform(e),
                 "scipy": lambda m=as_numpy: scipy_per_map(m),
                 "dense": lambda e=errors: dense_distance_transform(e)},
                args.repeats,
            )  # fmt: skip
            rows.append(
                {
                    "scene": "early" if early else "bands+blobs",
                    "size": size,
                    "error_px_%": 100.0 * float(errors.sum()) / labels.numel(),
                    "max_dist": float(ref.max()),
                    "torch_ms": 1e3 * med["torch"],
                    "scipy_ms": 1e3 * med["scipy"],
                    "ratio": med["scipy"] / med["torch"],
                    "dense_ms": 1e3 * med["dense"],
                    "dense_ratio": med["scipy"] / med["dense"],
                    "agree": bool(ok),
                }
            )
    return rows


def section_boundary_negatives(args: argparse.Namespace) -> list[dict]:
    """The whole BANE selection (error maps, distances, ranking), k=0.5."""
    rows = []
    for size in SIZES:
        pred, labels = make_scene(BATCH, size)
        gen = torch.Generator().manual_seed(0)
        med = interleaved(
            {
                "bane": lambda p=pred, y=labels, g=gen: boundary_negatives(
                    p, y, NUM_CLASSES, 0.5, 255, g
                )
            },
            args.repeats,
        )
        rows.append({"scene": "bands+blobs", "size": size, "bane_ms": 1e3 * med["bane"]})
    return rows


def section_training_share(args: argparse.Namespace) -> list[dict]:
    """BANE inside a real Contextrast training step: the default model on a batch of 16 digit
    scenes; BANE = the loss's miner (per-stage predictions and selections), timed alone."""
    from ctx.data import generate_scenes
    from ctx.engine.step import train_step
    from ctx.labels import resize_labels
    from ctx.losses import ContextrastLoss
    from ctx.model import ModelConfig, build_model
    from ctx.negatives import BoundaryMiner

    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    model = build_model(ModelConfig(), NUM_CLASSES).to(device)
    images, labels = generate_scenes("train", BATCH, seed=0)
    images, labels = images.float().div(255).to(device), labels.to(device)
    loss_fn = ContextrastLoss(NUM_CLASSES)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        train_step(model, loss_fn, images, labels, opt, contrast=True)
        sync()

    with torch.no_grad():
        logits, embs = model(images, return_embeddings=True)
    sizes = [tuple(e.shape[-2:]) for e in embs]
    gen = torch.Generator(device=device).manual_seed(0)

    miner = BoundaryMiner(NUM_CLASSES, k=0.5)

    def bane() -> None:
        for size in sizes:
            miner(logits, resize_labels(labels, size), gen)
        sync()

    med = interleaved({"step": step, "bane": bane}, args.repeats)
    return [
        {
            "device": device.type,
            "step_ms": 1e3 * med["step"],
            "bane_ms": 1e3 * med["bane"],
            "bane_share_%": 100 * med["bane"] / med["step"],
        }
    ]


SECTIONS: dict[str, Callable[[argparse.Namespace], list[dict]]] = {
    "distance_transform": section_distance_transform,
    "boundary_negatives": section_boundary_negatives,
    "training_share": section_training_share,
}


# ------------------------------------------------------------------------------- output


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n== {title}")
    if not rows:
        return
    keys = list(rows[0])
    cells = [[_fmt(row[k]) for k in keys] for row in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    print("  ".join(k.rjust(w) for k, w in zip(keys, widths, strict=True)))
    for c in cells:
        print("  ".join(v.rjust(w) for v, w in zip(c, widths, strict=True)))


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def main(argv: list[str] | None = None) -> dict:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 repeats instead of 15")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="device for the training-step section")
    parser.add_argument("--sections", nargs="*", default=list(SECTIONS), choices=list(SECTIONS))
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall")
    args = parser.parse_args(argv)
    global clock
    clock = CLOCKS[args.clock]
    if args.repeats is None:
        args.repeats = 5 if args.quick else 15
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s); {BATCH} images x {NUM_CLASSES} "
        f"classes; median of {args.repeats} interleaved repeats, {args.clock} clock"
    )
    results = {}
    for name in args.sections:
        rows = SECTIONS[name](args)
        print_table(name, rows)
        results[name] = rows
    summary = {
        "threads": args.threads,
        "repeats": args.repeats,
        "clock": args.clock,
        "results": {
            name: [
                {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in rows
            ]
            for name, rows in results.items()
        },
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
