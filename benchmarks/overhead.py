"""What Contextrast costs over CE, measured side by side in one run on the same model and batch.

    python benchmarks/overhead.py            # default CPU model, then a wider paper-like encoder
    python benchmarks/overhead.py --quick    # fewer repeats (< 3 min on a 2-core CPU)

Training step (forward, loss, backward, AdamW step) of CE-only vs Contextrast (fusion + BANE),
for the default model from the shipped trained reference weights (typical) and untrained (BANE's
worst case: nearly every pixel wrong), interleaved so machine noise hits both alike; peak memory of live tensors in a step plus
parameters, gradients and optimizer state (profiler allocation events on the CPU, torch's peak
allocation on CUDA); inference of the deployed network vs the same network built without
projection heads. Medians over repeats.
The opt-in cheaper steps (OPTIONS: same method, a documented [choice] each; results/cheap_step.md
has their effect on validation mIoU) are timed in the same interleaved loop on the default model
with the trained weights, each against the same CE step.
Last line: JSON {"step_time_ratio", "peak_memory_ratio", "inference_time_ratio", ...,
"<option>_step_time_ratio", "<option>_peak_memory_ratio"}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn as nn

from ctx.data import NUM_CLASSES, generate_scenes
from ctx.engine.step import train_step
from ctx.io import load_checkpoint
from ctx.losses import ContextrastLoss, CrossEntropyLoss
from ctx.model import ModelConfig, SegmentationNet, build_model
from ctx.validation import OneLineParser

MODELS = {
    "default": (ModelConfig(), 64, 16),
    "wide": (ModelConfig(arch="resnet", widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2)), 128, 8),
}
# The default model is measured twice: with the shipped trained reference weights (the typical
# step: predictions are mostly right, so BANE's error maps are small) and untrained (the worst
# case: one class predicted everywhere, nearly every pixel an error). The wide model has no
# trained weights here; its untrained step is the pessimistic figure.
REFERENCE = Path(__file__).resolve().parents[1] / "data" / "reference" / "contextrast" / "model.pt"
# Opt-in cheaper steps of the same method: (ContextrastLoss keywords, ModelConfig fields), each
# the TrainConfig setting of the same name (benchmarks/cheap_step.py trains them).
OPTIONS = {
    # --embed-pixels sampled: heads and anchors on the pixels the PA loss uses **[choice]**
    "sampled": ({"embed_pixels": "sampled"}, {}),
    # --embed-dim 16: a narrower embedding at every stage (fusion needs one D for all stages)
    "embed16": ({}, {"embed_dim": 16}),
    "sampled_embed16": ({"embed_pixels": "sampled"}, {"embed_dim": 16}),
}


def setup(name: str, device: torch.device, trained: bool = False, **model_kw):
    """(model, images [B,3,H,W] float, labels [B,H,W]) of a benchmark case; `model_kw` change
    the ModelConfig (the trained weights then load into the encoder and decoder only)."""
    cfg, size, batch = MODELS[name]
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(cfg, **model_kw), NUM_CLASSES)
    if trained:
        state = load_checkpoint(REFERENCE)["model"]
        if model_kw:
            state = {k: v for k, v in state.items() if not k.startswith("heads.")}
        model.load_state_dict(state, strict=not model_kw)
    images, labels = generate_scenes("train", batch, seed=0, cfg=_scene(size))
    return model.to(device), images.float().div(255).to(device), labels.to(device)


def _scene(size: int):
    from ctx.data import SceneConfig

    return SceneConfig(image_size=size)


def make_step(model: nn.Module, loss: str, loss_fn: nn.Module | None = None, **loss_kw):
    """A closure running one full training step, `ctx.engine.step.train_step` as training takes
    it (the loss reseeded every step and built without value checks, `check_inputs=False`;
    AdamW, OneCycle), minus its logging. `loss_kw` go to ContextrastLoss (opt-in variants);
    `loss_fn` replaces the loss (`loss` then only says whether embeddings are computed)."""
    contrast = loss != "ce"
    fn = loss_fn or (
        ContextrastLoss(NUM_CLASSES, check_inputs=False, **loss_kw)
        if contrast
        else CrossEntropyLoss(NUM_CLASSES)
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-4, total_steps=10**6)
    count = [0]

    def step(images, labels):
        train_step(model, fn, images, labels, opt, sched, contrast=contrast, seed=count[0])
        count[0] += 1

    return step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


def timed(fn, device, *args) -> float:
    _sync(device)
    t = clock()
    fn(*args)
    _sync(device)
    return clock() - t


def step_times(
    name: str, device: torch.device, repeats: int, trained: bool = False, options=()
) -> dict[str, list[float]]:
    """Step times of CE, Contextrast and the named OPTIONS, interleaved (the order reversed
    every other repeat)."""
    model, images, labels = setup(name, device, trained)
    steps = {k: make_step(model, k) for k in ("ce", "contextrast")}
    for opt in options:
        loss_kw, model_kw = OPTIONS[opt]
        net = setup(name, device, trained, **model_kw)[0] if model_kw else model
        steps[opt] = make_step(net, "contextrast", **loss_kw)
    for fn in steps.values():  # warm-up
        for _ in range(2):
            fn(images, labels)
    out = {k: [] for k in steps}
    for r in range(repeats):
        for k in list(steps) if r % 2 == 0 else list(steps)[::-1]:
            out[k].append(timed(steps[k], device, images, labels))
    return out


def inference_times(name: str, device: torch.device, repeats: int) -> dict[str, list[float]]:
    model, images, _ = setup(name, device)
    model.eval()
    plain = SegmentationNet(model.encoder, NUM_CLASSES)  # same encoder, no heads at all
    plain.decoder, plain.heads = model.decoder, nn.ModuleList()
    plain.eval()
    nets = {"deployed": model, "plain": plain}
    out = {k: [] for k in nets}
    with torch.no_grad():
        for net in nets.values():
            net(images)
        for r in range(repeats):
            for k in list(nets) if r % 2 == 0 else list(nets)[::-1]:
                out[k].append(timed(nets[k], device, images))
    return out


def peak_memory(
    name: str, loss: str, device: torch.device, trained: bool = False, option: str | None = None
) -> float:
    """Peak bytes of live tensors during one training step (after a first step created the
    optimizer state), plus parameters, gradients and AdamW state. On CUDA, torch's peak
    allocation; on the CPU, the running sum of the profiler's allocation events (exact and
    repeatable, unlike RSS, which follows the allocator's caching)."""
    loss_kw, model_kw = OPTIONS[option] if option else ({}, {})
    model, images, labels = setup(name, device, trained, **model_kw)
    step = make_step(model, loss, **loss_kw)
    step(images, labels)
    param_bytes = 4 * sum(p.numel() for p in model.parameters())
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        step(images, labels)
        return float(torch.cuda.max_memory_allocated())
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step(images, labels)
    events = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]"
    )
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return float(peak + 4 * param_bytes)  # params, grads, exp_avg, exp_avg_sq


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def option_rows(name, device, trained, st, mem_ce, options) -> dict[str, float]:
    """Print each option's step and memory beside Contextrast's; return its JSON keys."""
    ce, cx = median(st["ce"]), median(st["contextrast"])
    out = {}
    for opt in options:
        t, mem = median(st[opt]), peak_memory(name, "contextrast", device, trained, opt)
        print(
            f"  option {opt:16s} step {t * 1e3:8.1f} ms   ratio {t / ce:.2f} (Contextrast "
            f"{cx / ce:.2f})   peak memory ratio {mem / mem_ce:.2f}"
        )
        out[f"{opt}_step_time_ratio"] = round(t / ce, 3)
        out[f"{opt}_peak_memory_ratio"] = round(mem / mem_ce, 3)
    return out


def main() -> None:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--clock",
        choices=list(CLOCKS),
        default="wall",
        help="cpu: this process's CPU time, which other jobs on a shared machine inflate far "
        "less than wall time (use with --threads 1 on the CPU)",
    )
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    opts = {"nargs": "*", "choices": list(OPTIONS), "default": list(OPTIONS)}
    p.add_argument(
        "--options", help="cheaper steps to time (default: all; none: --options)", **opts
    )
    args = p.parse_args()
    global clock
    clock = CLOCKS[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    result = {}
    for name in args.models:
        trained = name == "default"
        repeats = {"default": 15 if args.quick else 40, "wide": 6 if args.quick else 16}[name]
        options = args.options if trained else []
        st = step_times(name, device, repeats, trained, options)
        inf = inference_times(name, device, repeats)
        mem = {k: peak_memory(name, k, device, trained) for k in ("ce", "contextrast")}
        ce, cx = median(st["ce"]), median(st["contextrast"])
        print(
            f"\n{name} model ({MODELS[name][0].arch}, {MODELS[name][1]} px, batch {MODELS[name][2]}, "
            f"{'trained reference weights' if trained else 'untrained'}), {repeats} interleaved "
            f"repeats, {torch.get_num_threads()} threads, {args.clock} clock:"
        )
        print(
            f"  training step   CE {ce * 1e3:8.1f} ms   Contextrast {cx * 1e3:8.1f} ms   ratio {cx / ce:.2f}"
        )
        prefix = "" if name == "default" else f"{name}_"
        if trained:  # the same model untrained: BANE's worst case
            su = step_times(name, device, repeats)
            ceu, cxu = median(su["ce"]), median(su["contextrast"])
            print(
                f"    untrained     CE {ceu * 1e3:8.1f} ms   Contextrast {cxu * 1e3:8.1f} ms   ratio {cxu / ceu:.2f}"
            )
            result["untrained_step_time_ratio"] = round(cxu / ceu, 3)
        print(
            f"  peak memory     CE {mem['ce'] / 2**20:8.1f} MiB  Contextrast {mem['contextrast'] / 2**20:8.1f} MiB"
            f"  ratio {mem['contextrast'] / mem['ce']:.2f}"
        )
        dep, pl = median(inf["deployed"]), median(inf["plain"])
        print(
            f"  inference       plain {pl * 1e3:6.1f} ms   deployed {dep * 1e3:6.1f} ms   ratio {dep / pl:.2f}"
        )
        result.update(option_rows(name, device, trained, st, mem["ce"], options))
        result.update(
            {
                f"{prefix}step_time_ratio": round(cx / ce, 3),
                f"{prefix}peak_memory_ratio": round(mem["contextrast"] / mem["ce"], 3),
                f"{prefix}inference_time_ratio": round(dep / pl, 3),
            }
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
