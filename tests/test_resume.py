"""Training numerics and exact resume: a run of `train` equals a plain loop written from the
algorithm, bit for bit; a run interrupted anywhere (Ctrl-C inside the forward pass or inside
`opt.step()`, or an exception mid-step) and resumed ends bit-identical to an uninterrupted one:
weights, batch-norm buffers, optimiser and scheduler state, history."""

import dataclasses
import signal
import threading
from itertools import islice

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from ctx.data import DigitScenes
from ctx.engine import loop
from ctx.engine.interrupt import Interrupted
from ctx.engine.loop import make_datasets, train
from ctx.engine.step import evaluate, make_loss
from ctx.model import build_model

needs_main_thread = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="signal handlers only run in the main thread",
)


def _config(tiny_train_config, tmp_path, name, **kw):
    # 32 scenes / batch 8 = 4 steps per epoch; evaluations at steps 4, 8 and 10
    kw = {"loss": "contextrast", "max_steps": 10, "threads": 1, **kw}
    return dataclasses.replace(tiny_train_config, out=str(tmp_path / name), **kw)


def _checkpoint(cfg):
    return torch.load(f"{cfg.out}/checkpoint.pt", weights_only=True)


def _without_time(history):
    clocks = ("train_seconds", "train_cpu_seconds")
    return [{k: v for k, v in e.items() if k not in clocks} for e in history]


def _assert_identical(a, b):
    assert a["step"] == b["step"]
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:  # weights and BN buffers (running stats, num_batches_tracked)
        assert torch.equal(a["model"][k], b["model"][k]), k
    oa, ob = a["optimizer"], b["optimizer"]
    assert oa["param_groups"] == ob["param_groups"]
    assert oa["state"].keys() == ob["state"].keys()
    for i in oa["state"]:
        for name, v in oa["state"][i].items():
            assert torch.equal(v, ob["state"][i][name]), (i, name)
    assert a["scheduler"] == b["scheduler"]
    assert _without_time(a["history"]) == _without_time(b["history"])


def _plain_loop(cfg):
    """The training loop as the algorithm reads (one process): per-step float() of the losses,
    evaluation at each epoch's end. `train` must give exactly these numbers."""
    torch.manual_seed(cfg.seed)
    train_set, val_set, num_classes = make_datasets(cfg)
    sampler = DistributedSampler(train_set, 1, 0, shuffle=True, seed=cfg.seed, drop_last=True)
    loader = DataLoader(train_set, batch_size=cfg.batch_size, sampler=sampler, drop_last=True)
    per_epoch = len(loader)
    model = build_model(cfg.model_config(), num_classes)
    loss_fn, ce_fn = (
        make_loss(cfg, num_classes),
        make_loss(dataclasses.replace(cfg, loss="ce"), num_classes),
    )
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.max_steps, pct_start=cfg.pct_start
    )
    model.train()
    step, history, sums, count = 0, [], {}, 0
    while step < cfg.max_steps:
        epoch = step // per_epoch
        sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)
        for images, labels in islice(loader, 0, per_epoch):
            contrast = cfg.loss != "ce" and step >= cfg.warmup_steps
            fn = loss_fn if contrast else ce_fn
            if hasattr(fn, "reseed"):
                fn.reseed(cfg.seed * 1_000_003 + step)
            out = model(images, return_embeddings=contrast)
            total, parts = fn(out.logits, out.embeddings, labels)
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            sched.step()
            step += 1
            for key in ("ce", "pa"):
                sums[key] = sums.get(key, 0.0) + float(parts[key])
            sums["loss"] = sums.get("loss", 0.0) + float(total.detach())
            count += 1
            if step >= cfg.max_steps:
                break
        val = evaluate(model, val_set, torch.device("cpu"), num_classes)
        history.append(
            {
                "epoch": step / per_epoch,
                "step": step,
                "lr": sched.get_last_lr()[0],
                "train": {k: v / count for k, v in sums.items()},
                "val": {k: val[k] for k in ("miou", "boundary_miou", "pixel_acc")},
                "val_per_class_iou": val["per_class_iou"],
            }
        )
        sums, count = {}, 0
    return model, opt, history


@pytest.mark.parametrize("loss", ["ce", "contextrast"])
def test_train_gives_the_numbers_of_a_plain_loop(tiny_train_config, tmp_path, loss):
    cfg = _config(tiny_train_config, tmp_path, "run", loss=loss)
    result = train(cfg)
    model, opt, history = _plain_loop(cfg)
    assert _without_time(result.history) == history
    for k, v in model.state_dict().items():
        assert torch.equal(v, result.model.state_dict()[k]), k
    saved = _checkpoint(cfg)["optimizer"]["state"]
    for i, state in opt.state_dict()["state"].items():
        for name, v in state.items():
            assert torch.equal(v, saved[i][name]), (i, name)


class _Interrupter:
    """Interrupts training once, at `step` (1-based), in the way `how` names."""

    def __init__(self, how: str, step: int):
        self.how, self.step, self.done, self.fired = how, step, 0, False
        self.handles = []

    def __enter__(self):
        from torch.nn.modules.module import register_module_forward_hook
        from torch.optim.optimizer import (
            register_optimizer_step_post_hook,
            register_optimizer_step_pre_hook,
        )

        self.handles = [
            register_optimizer_step_post_hook(self._after_step),
            register_optimizer_step_pre_hook(self._in_step),
            register_module_forward_hook(self._in_forward),
        ]
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()

    def _due(self) -> bool:
        return not self.fired and self.done == self.step - 1

    def _after_step(self, opt, args, kwargs):
        self.done += 1

    def _in_step(self, opt, args, kwargs):  # inside opt.step(), before the update
        if self.how == "sigint_in_step" and self._due():
            self.fired = True
            signal.raise_signal(signal.SIGINT)

    def _in_forward(self, module, args, output):  # after a BN layer's forward: buffers moved
        if not (isinstance(module, torch.nn.BatchNorm2d) and module.training and self._due()):
            return
        if self.how == "sigint_in_forward":
            self.fired = True
            signal.raise_signal(signal.SIGINT)
        elif self.how == "raise_in_forward":
            self.fired = True
            raise KeyboardInterrupt


@needs_main_thread
@pytest.mark.parametrize(
    "how, step, saved_at",
    [
        ("sigint_in_forward", 7, 7),  # mid-epoch: the step finishes, then it is saved
        ("sigint_in_step", 6, 6),
        ("sigint_in_forward", 4, 4),  # the epoch's last step: evaluated, then saved
        ("raise_in_forward", 7, 4),  # no signal: the step is discarded, step 4's save is kept
    ],
)
def test_interrupted_run_resumes_bit_identical(tiny_train_config, tmp_path, how, step, saved_at):
    full = _config(tiny_train_config, tmp_path, "full")
    train(full)
    part = _config(tiny_train_config, tmp_path, "part")
    handler = signal.getsignal(signal.SIGINT)
    with _Interrupter(how, step) as interrupter, pytest.raises(Interrupted) as stopped:
        train(part)
    assert interrupter.fired
    assert _checkpoint(part)["step"] == saved_at
    assert ("discarded" in str(stopped.value)) == (how == "raise_in_forward")
    assert signal.getsignal(signal.SIGINT) is handler  # restored
    train(part)
    _assert_identical(_checkpoint(full), _checkpoint(part))


def _interrupt_while_loading(monkeypatch, cfg, steps_done):
    """Raise KeyboardInterrupt while the batch after `steps_done` steps is loaded."""
    get_item, calls = DigitScenes.__getitem__, []

    def interrupting(self, i):
        calls.extend([i] if self.augment else [])
        if len(calls) == steps_done * cfg.batch_size + 1:
            raise KeyboardInterrupt
        return get_item(self, i)

    monkeypatch.setattr(DigitScenes, "__getitem__", interrupting)
    with pytest.raises(Interrupted, match=f"at step {steps_done} of {cfg.max_steps}"):
        train(cfg)
    monkeypatch.setattr(DigitScenes, "__getitem__", get_item)


def test_partial_epoch_keeps_its_time_and_losses(tiny_train_config, tmp_path, monkeypatch):
    cfg = _config(tiny_train_config, tmp_path, "run", loss="ce")
    _interrupt_while_loading(monkeypatch, cfg, 2)  # 2 steps done, none evaluated
    saved = _checkpoint(cfg)
    assert saved["step"] == 2 and saved["history"] == []
    assert saved["train_seconds"] > 0
    assert saved["running"]["count"] == 2 and saved["running"]["sums"]["ce"] > 0


def test_resuming_on_other_threads_warns(tiny_train_config, tmp_path, monkeypatch):
    cfg = _config(tiny_train_config, tmp_path, "run", loss="ce")
    _interrupt_while_loading(monkeypatch, cfg, 6)
    saved = _checkpoint(cfg)
    torch.save({**saved, "threads": 99}, f"{cfg.out}/checkpoint.pt")  # as if run on 99 threads
    with pytest.warns(RuntimeWarning, match=r"trained on 99 CPU thread\(s\) and resumes on 1"):
        train(cfg)


def test_non_finite_loss_names_its_step(tiny_train_config, tmp_path, monkeypatch):
    cfg = _config(tiny_train_config, tmp_path, "run", loss="ce", max_steps=6)
    forward, calls = loop.make_loss, []

    def make_loss(c, n):
        fn = forward(c, n)

        def poisoned(logits, embeddings, labels):
            calls.append(1)
            total, parts = fn(logits, embeddings, labels)
            return (total * float("nan") if len(calls) == 3 else total), parts

        return poisoned

    monkeypatch.setattr(loop, "make_loss", make_loss)
    with pytest.raises(FloatingPointError, match="non-finite loss nan at step 3"):
        train(cfg)


def test_the_loop_reads_losses_back_every_flush_not_every_step(
    tiny_train_config, tmp_path, monkeypatch
):
    """Device-to-host syncs of the loop itself (counted on the CPU): one read-back per
    FLUSH_EVERY steps, none per step. The loss and the optimiser are made sync-free here (plain
    CE; fused AdamW, whose step counters stay tensors) so that only the loop is counted."""
    import functools

    import torch.nn.functional as F
    from sync_helpers import HostSyncCounter

    def make_plain_ce(cfg, num_classes):
        def loss(logits, embeddings, labels):
            ce = F.cross_entropy(logits, labels, ignore_index=255)
            return ce, {"ce": ce.detach(), "pa": ce.new_zeros(())}

        return loss

    monkeypatch.setattr(loop, "make_loss", make_plain_ce)
    monkeypatch.setattr(torch.optim, "AdamW", functools.partial(torch.optim.AdamW, fused=True))
    counts = {}
    for steps in (40, 80):  # 4 steps per epoch; one evaluation, at the end
        cfg = _config(tiny_train_config, tmp_path, f"run{steps}", max_steps=steps, eval_every=1000)
        with HostSyncCounter() as counter:
            train(cfg)
        counts[steps] = counter.counts
    extra_epochs = 40 // 4

    def more(name):
        return counts[80][name] - counts[40][name]

    assert more("_local_scalar_dense") <= extra_epochs  # the DataLoader's seed, once an epoch
    assert more("Tensor.cpu") <= 40 // loop.FLUSH_EVERY + extra_epochs
