"""What Contextrast costs on a GPU, and proof that its training step never waits for the device.

    python scripts/gpu_check.py                  # on a CUDA GPU: about 1-3 minutes
    python scripts/gpu_check.py --dry-run        # tiny sizes, any device (CPU: < 30 s), for CI

For each case — the tutorial model (plain encoder, 64 px, batch 16) and a paper-like one (the
ResNet-18-shaped encoder, 512-px crops, batch 8) — and each precision (fp32, bf16 autocast), it
trains CE and Contextrast side by side from the same initial weights for a fixed number of steps,
with the training loop's step (`ctx.engine.step.train_step`: reseeded loss, autocast, the loss on
float logits and embeddings, AdamW, OneCycle) and the loss as training builds it (`check_inputs=False`). It reports
steps/s, the time ratio, the peak memory ratio (`torch.cuda.max_memory_allocated` over one step)
and the inference ratio (deployed network vs the same network without heads). Then it runs one
Contextrast step (forward, loss, backward, optimizer) under
`torch.cuda.set_sync_debug_mode("error")`, which raises on any host-device synchronisation, to show
the step is sync-free on real hardware. The training loop's own bookkeeping (it reads the
losses back every few steps, by design) is left out of the step and of that check.
Last line: JSON {"device", "cases": {...}, "sync_free", ...}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn as nn

from ctx.data import NUM_CLASSES, SceneConfig, generate_scenes
from ctx.engine.step import backward, train_step
from ctx.losses import ContextrastLoss, CrossEntropyLoss
from ctx.model import ModelConfig, SegmentationNet, build_model
from ctx.validation import OneLineParser

# name -> (model config, crop size, batch, timed steps per round)
CASES = {
    "tutorial": (ModelConfig(), 64, 16, 40),
    "paper": (ModelConfig(arch="resnet", widths=(64, 128, 256, 512)), 512, 8, 15),
}
DRY_CASES = {
    "tutorial": (ModelConfig(widths=(8, 8, 16, 16), embed_dim=8), 32, 4, 2),
    "paper": (ModelConfig(arch="resnet", widths=(8, 8, 16, 16), blocks=(1, 1, 1, 1)), 64, 2, 2),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Trainer:
    """One model, its optimizer and loss, stepping with training's `train_step`; the sync check
    runs its two halves (`backward`, then the optimizer and schedule) one at a time."""

    def __init__(self, cfg: ModelConfig, loss: str, device: torch.device, bf16: bool):
        torch.manual_seed(0)
        self.model = build_model(cfg, NUM_CLASSES).to(device).train()
        self.contrast = loss == "contextrast"
        self.fn = (
            ContextrastLoss(NUM_CLASSES, seed=0, check_inputs=False)
            if self.contrast
            else CrossEntropyLoss(NUM_CLASSES)
        )
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3, weight_decay=1e-4)
        self.sched = torch.optim.lr_scheduler.OneCycleLR(self.opt, 1e-3, total_steps=10**6)
        self.device, self.bf16, self.step_id = device, bf16, 0

    def _kw(self) -> dict:
        return {"contrast": self.contrast, "bf16": self.bf16, "seed": self.step_id}

    def forward_backward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return backward(self.model, self.fn, images, labels, self.opt, **self._kw())[0]

    def update(self) -> None:
        self.opt.step()
        self.sched.step()
        self.step_id += 1

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        train_step(self.model, self.fn, images, labels, self.opt, self.sched, **self._kw())
        self.step_id += 1


def sync_check(trainer: Trainer, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """Run one step under set_sync_debug_mode("error"); which phase synchronised, if any."""
    if trainer.device.type != "cuda":
        return {"checked": False, "why": "not a CUDA device"}
    result = {"checked": True, "forward_backward": "ok", "optimizer": "ok"}
    _sync(trainer.device)
    for phase, fn in (
        ("forward_backward", lambda: trainer.forward_backward(images, labels)),
        ("optimizer", trainer.update),
    ):
        torch.cuda.set_sync_debug_mode("error")
        try:
            fn()
        except RuntimeError as e:
            result[phase] = f"synchronised: {str(e).splitlines()[0][:200]}"
        finally:
            torch.cuda.set_sync_debug_mode("default")
        _sync(trainer.device)
    result["sync_free"] = result["forward_backward"] == "ok" and result["optimizer"] == "ok"
    return result


def peak_memory(trainer: Trainer, images, labels) -> float | None:
    """Peak allocated bytes over one step (CUDA only; None elsewhere)."""
    if trainer.device.type != "cuda":
        return None
    _sync(trainer.device)
    torch.cuda.reset_peak_memory_stats(trainer.device)
    trainer(images, labels)
    _sync(trainer.device)
    return float(torch.cuda.max_memory_allocated(trainer.device))


def inference_ratio(model: SegmentationNet, images, device, repeats: int) -> float:
    model.eval()
    plain = SegmentationNet(model.encoder, NUM_CLASSES)  # same encoder, no heads
    plain.decoder, plain.heads = model.decoder, nn.ModuleList()
    plain.eval()
    times = {"deployed": [], "plain": []}
    with torch.no_grad():
        for net in (model, plain):
            net(images)
        for r in range(repeats):
            for name, net in (("deployed", model), ("plain", plain))[:: 1 if r % 2 else -1]:
                _sync(device)
                t = time.perf_counter()
                net(images)
                _sync(device)
                times[name].append(time.perf_counter() - t)
    model.train()
    return statistics.median(times["deployed"]) / statistics.median(times["plain"])


def run_case(name, spec, device, bf16: bool, rounds: int, warmup: int) -> dict:
    cfg, size, batch, steps = spec
    images, labels = generate_scenes("train", batch, SceneConfig(image_size=size), seed=0)
    images, labels = images.float().div(255).to(device), labels.to(device)
    trainers = {k: Trainer(cfg, k, device, bf16) for k in ("ce", "contextrast")}
    for tr in trainers.values():
        for _ in range(warmup):
            tr(images, labels)
    per_step = {k: [] for k in trainers}
    for r in range(rounds):  # interleaved rounds, so clock changes hit both alike
        for k in list(trainers) if r % 2 == 0 else list(trainers)[::-1]:
            _sync(device)
            t = time.perf_counter()
            for _ in range(steps):
                trainers[k](images, labels)
            _sync(device)
            per_step[k].append((time.perf_counter() - t) / steps)
    mem = {k: peak_memory(tr, images, labels) for k, tr in trainers.items()}
    ce, cx = statistics.median(per_step["ce"]), statistics.median(per_step["contextrast"])
    mib = {k: None if v is None else round(v / 2**20, 1) for k, v in mem.items()}
    row = {
        "case": name,
        "precision": "bf16" if bf16 else "fp32",
        "image_size": size,
        "batch": batch,
        "ce_steps_per_s": round(1 / ce, 2),
        "contextrast_steps_per_s": round(1 / cx, 2),
        "step_time_ratio": round(cx / ce, 3),
        "ce_peak_mib": mib["ce"],
        "contextrast_peak_mib": mib["contextrast"],
        "peak_memory_ratio": mem["ce"] and round(mem["contextrast"] / mem["ce"], 3),
        "inference_time_ratio": round(
            inference_ratio(trainers["contextrast"].model, images, device, 2 * rounds + 1), 3
        ),
        "sync": sync_check(trainers["contextrast"], images, labels),
    }
    return row


def main(argv: list[str] | None = None) -> dict:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dry-run", action="store_true", help="tiny models and crops, 2 steps")
    p.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds (5)")
    p.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    p.add_argument("--no-bf16", action="store_true", help="fp32 only")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    cases = DRY_CASES if args.dry_run else CASES
    rounds = args.rounds or (1 if args.dry_run else 5)
    warmup = 1 if args.dry_run else 5
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name(device)
    else:
        torch.set_num_threads(max(1, torch.get_num_threads()))
        name = f"cpu ({torch.get_num_threads()} threads)"
    print(f"{name}, torch {torch.__version__}{', dry run' if args.dry_run else ''}", flush=True)
    rows = []
    for case in args.cases:
        for bf16 in (False,) if args.no_bf16 else (False, True):
            t = time.perf_counter()
            row = run_case(case, cases[case], device, bf16, rounds, warmup)
            rows.append(row)
            print(
                f"{case:9s} {row['precision']} {row['image_size']:4d} px x{row['batch']:3d}: "
                f"CE {row['ce_steps_per_s']:7.2f} steps/s  Contextrast "
                f"{row['contextrast_steps_per_s']:7.2f} steps/s  time x{row['step_time_ratio']:.2f}"
                f"  peak memory x{row['peak_memory_ratio']} ({row['ce_peak_mib']} -> "
                f"{row['contextrast_peak_mib']} MiB)  inference "
                f"x{row['inference_time_ratio']:.2f}  sync-free: "
                f"{row['sync'].get('sync_free', 'not checked')}  ({time.perf_counter() - t:.0f} s)",
                flush=True,
            )
    checked = [r["sync"]["sync_free"] for r in rows if r["sync"]["checked"]]
    summary = {
        "device": name,
        "torch": torch.__version__,
        "dry_run": args.dry_run,
        "sync_free": all(checked) if checked else None,
        "cases": rows,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
