"""ctx.engine.step: the one training step (the loop and the benchmarks call it) and evaluate."""

import copy

import pytest
import torch

from ctx.data import NUM_CLASSES, SceneConfig, generate_scenes
from ctx.engine.step import backward, train_step
from ctx.losses import ContextrastLoss, CrossEntropyLoss
from ctx.model import ModelConfig, build_model


def _parts(loss: str):
    torch.manual_seed(0)
    model = build_model(ModelConfig(widths=(8, 8, 16, 16), embed_dim=8), NUM_CLASSES)
    fn = (
        ContextrastLoss(NUM_CLASSES, negatives="random", seed=0, check_inputs=False)
        if loss == "contextrast"
        else CrossEntropyLoss(NUM_CLASSES)
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps=10)
    images, labels = generate_scenes("train", 2, SceneConfig(image_size=32), seed=0)
    return model, fn, opt, sched, images.float() / 255, labels


@pytest.mark.parametrize("loss", ["ce", "contextrast"])
def test_train_step_is_backward_then_the_optimizer_and_schedule(loss):
    """(tests/test_resume.py checks the whole loop against one written out from the formulas.)"""
    model, fn, opt, sched, images, labels = _parts(loss)
    ref_model, ref_fn = copy.deepcopy(model), copy.deepcopy(fn)
    ref_opt = torch.optim.AdamW(ref_model.parameters(), lr=1e-3)
    ref_sched = torch.optim.lr_scheduler.OneCycleLR(ref_opt, 1e-3, total_steps=10)
    contrast = loss == "contextrast"
    for step in range(2):
        losses = train_step(model, fn, images, labels, opt, sched, contrast=contrast, seed=step)
        total, parts = backward(
            ref_model, ref_fn, images, labels, ref_opt, contrast=contrast, seed=step
        )
        ref_opt.step()
        ref_sched.step()
        expected = torch.stack([total.detach(), parts["ce"], parts["pa"]])
        assert torch.equal(losses, expected) and not losses.requires_grad
        assert (losses[2] > 0) == contrast
    for k, v in model.state_dict().items():
        assert torch.equal(v, ref_model.state_dict()[k]), k
    assert sched.get_last_lr() == ref_sched.get_last_lr()


def test_backward_leaves_gradients_and_the_weights():
    model, fn, opt, _, images, labels = _parts("contextrast")
    before = {k: v.clone() for k, v in model.named_parameters()}
    total, parts = backward(model, fn, images, labels, opt, contrast=True, seed=0)
    assert total.requires_grad and parts["pa"] > 0
    assert all(p.grad is not None for p in model.heads.parameters())  # the heads ran
    for k, v in model.named_parameters():  # no optimizer step (BatchNorm statistics do move)
        assert torch.equal(v, before[k]), k
    backward(model, CrossEntropyLoss(NUM_CLASSES), images, labels, opt, contrast=False)
    assert all(p.grad is None for p in model.heads.parameters())  # CE: no heads, fresh grads


def test_make_loss_passes_every_method_choice_from_the_config():
    """Each loss field of a TrainConfig reaches the loss; BANE's reading only where BANE runs
    (elsewhere it is inert, and the CLI warns), and the embedding choice reaches the model."""
    from ctx.engine.config import TrainConfig
    from ctx.engine.step import make_loss
    from ctx.negatives import BoundaryMiner, no_hard_pixels

    cfg = TrainConfig(loss="contextrast", hard_for="predicted", k=0.3, fill=False, tau=0.2)
    fn = make_loss(cfg, NUM_CLASSES)
    assert isinstance(fn.miner, BoundaryMiner)
    assert (fn.miner.hard_for, fn.miner.k, fn.fill, fn.tau) == ("predicted", 0.3, False, 0.2)
    random = make_loss(
        TrainConfig(loss="contextrast", negatives="random", hard_for="predicted"), 11
    )
    assert random.miner is no_hard_pixels and random.hard_for == "others"
    assert TrainConfig(normalize_embeddings=False).model_config().normalize_embeddings is False
    model = build_model(TrainConfig(normalize_embeddings=False).model_config(), NUM_CLASSES)
    assert not any(head.normalize for head in model.heads)
