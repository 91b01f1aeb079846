"""The opt-in cheaper step, `embed_pixels="sampled"` (issue 15 item 1): embeddings only of the
pixels the PA loss uses, anchors from the sampled positives; the default stays METHOD.md's."""

import pytest
import torch

from ctx.anchors import class_anchors, sampled_anchors
from ctx.data import NUM_CLASSES, SceneConfig, generate_scenes
from ctx.engine.config import TrainConfig, config_from_dict
from ctx.engine.step import backward, make_loss
from ctx.losses import ContextrastLoss
from ctx.model import ModelConfig, PixelEmbeddings, build_model
from ctx.train import parse_args


@pytest.fixture(scope="module")
def batch():
    images, labels = generate_scenes("train", 4, SceneConfig(image_size=32), seed=0)
    return images.float() / 255, labels


def _model(embed_dim: int = 8):
    torch.manual_seed(0)
    return build_model(ModelConfig(widths=(8, 8, 16, 16), embed_dim=embed_dim), NUM_CLASSES)


def _loss(pixels: str, **kw):
    return ContextrastLoss(NUM_CLASSES, seed=0, check_inputs=False, embed_pixels=pixels, **kw)


def test_sampled_is_the_exact_loss_when_no_cap_is_hit(batch):
    """Caps above every stage's pixel count: every pixel is used and the anchors are exact."""
    images, labels = batch
    model = _model()
    out = model(images, return_embeddings=True)
    caps = {"max_positives": 4096, "max_negatives": 4096}
    exact, _ = _loss("all", **caps)(out.logits, out.embeddings, labels)
    sampled, _ = _loss("sampled", **caps)(out.logits, out.embeddings, labels)
    assert torch.equal(exact, sampled)


def test_lazy_embeddings_equal_the_eager_ones_on_the_rows_they_embed(batch):
    """In eval mode (BatchNorm's running statistics) the heads on a subset of the pixels give
    those pixels' rows of the full maps, so the loss and its gradients match."""
    images, labels = batch
    model = _model().eval()
    caps = {"max_positives": 64, "max_negatives": 16}
    eager = model(images, return_embeddings=True)
    want, _ = _loss("sampled", **caps)(eager.logits, eager.embeddings, labels)
    (g_want,) = torch.autograd.grad(want, model.encoder.stages[0][0][0].weight)
    lazy = model(images, return_embeddings="lazy")
    assert all(isinstance(e, PixelEmbeddings) for e in lazy.embeddings)
    assert [e.shape for e in lazy.embeddings] == [e.shape for e in eager.embeddings]
    got, _ = _loss("sampled", **caps)(lazy.logits, [e.float() for e in lazy.embeddings], labels)
    (g_got,) = torch.autograd.grad(got, model.encoder.stages[0][0][0].weight)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(g_got, g_want)


def test_heads_run_only_on_the_used_pixels(batch, monkeypatch):
    images, labels = batch
    model = _model()
    seen = []
    head = model.heads[0]
    embed = head.embed_rows
    monkeypatch.setattr(head, "embed_rows", lambda rows: seen.append(len(rows)) or embed(rows))
    out = model(images, return_embeddings="lazy")
    _loss("sampled", max_positives=32, max_negatives=8)(out.logits, out.embeddings, labels)
    pixels = out.embeddings[0].shape.numel() // out.embeddings[0].shape[1]
    # at most 11 classes x (32 positives + 8 negatives), far below the stage's pixels
    assert len(seen) == 1 and 0 < seen[0] <= NUM_CLASSES * 40 < pixels


def test_sampled_anchors_are_the_mean_of_the_sampled_positives():
    torch.manual_seed(0)
    rows = torch.nn.functional.normalize(torch.randn(10, 4), dim=1)
    pos_idx = torch.tensor([[0, 3, 5], [1, 2, 9], [4, 0, 0]])
    pos_ok = torch.tensor([[True, True, False], [True, True, True], [False, False, False]])
    anchors, present = sampled_anchors(rows, pos_idx, pos_ok)
    want = torch.nn.functional.normalize(
        torch.stack([rows[[0, 3]].mean(0), rows[[1, 2, 9]].mean(0)]), dim=1
    )
    torch.testing.assert_close(anchors[:2], want)
    assert present.tolist() == [True, True, False] and not anchors[2].any()


def test_sampled_anchors_of_every_pixel_are_class_anchors():
    torch.manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(2, 4, 3, 3), dim=1)
    labels = torch.randint(0, 3, (2, 3, 3))
    labels[0, 0, 0] = 255
    own = labels.reshape(-1)[None] == torch.arange(3)[:, None]
    rows = emb.permute(0, 2, 3, 1).reshape(-1, 4)
    got = sampled_anchors(rows, None, own)
    want = class_anchors(emb, labels, 3)
    torch.testing.assert_close(got[0], want[0])
    assert torch.equal(got[1], want[1])


def test_the_option_is_opt_in_and_checked():
    assert ContextrastLoss(NUM_CLASSES).embed_pixels == "all"
    with pytest.raises(ValueError, match="embed_pixels"):
        ContextrastLoss(NUM_CLASSES, embed_pixels="some")
    model = _model()
    images, labels = torch.rand(2, 3, 32, 32), torch.zeros(2, 32, 32, dtype=torch.long)
    out = model(images, return_embeddings="lazy")
    with pytest.raises(ValueError, match="embed_pixels='sampled'"):
        ContextrastLoss(NUM_CLASSES)(out.logits, out.embeddings, labels)


def test_config_cli_and_training_step(batch):
    assert TrainConfig().embed_pixels == "all"
    old = config_from_dict({"loss": "contextrast"})  # a saved config from before the field
    assert old.embed_pixels == "all" and make_loss(old, NUM_CLASSES).embed_pixels == "all"
    cfg = parse_args(["--loss", "contextrast", "--embed-pixels", "sampled"])
    fn = make_loss(cfg, NUM_CLASSES)
    assert fn.embed_pixels == "sampled"
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images, labels = batch
    total, parts = backward(model, fn, images, labels, opt, contrast=True, seed=0)
    assert torch.isfinite(total) and parts["pa"] > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.heads.parameters())


def _script(name: str):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cheap_step_runs_pair_with_the_study_and_the_wording_follows_the_numbers(tmp_path):
    cheap = _script("cheap_step")
    cfg = cheap.config("sampled", 1, tmp_path, threads=1)
    base = cheap.BASE.config(tmp_path, threads=1, progress=False)
    changed = {
        k for k in vars(cfg) if getattr(cfg, k) != getattr(base, k) and k not in ("seed", "out")
    }
    assert changed == {"embed_pixels"} and cfg.seed == 1 and cfg.warmup_steps == 1000
    assert "no detectable effect" in cheap.verdict([0.3, -0.5])
    assert "a hint, not a finding" in cheap.verdict([1.2, 1.0])
    assert "no conclusion" in cheap.verdict([0.4])
    rows = [{"option": "sampled", "seed": 0, "val_miou": 61.0}]
    got = cheap.paired(rows, {0: {"val_miou": 60.0}, 1: {"val_miou": 50.0}})
    assert got == {"sampled": {"diffs": {0: 1.0}, "mean": 1.0}}
