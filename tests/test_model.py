import pytest
import torch
import torch.nn as nn

from ctx.model import (
    ModelConfig,
    PlainEncoder,
    ResNetEncoder,
    SegmentationNet,
    SegOutput,
    build_model,
    deployed_parameters,
    l2_normalize,
)


def test_default_model_shapes_and_size():
    model = build_model(ModelConfig(), num_classes=11)
    x = torch.randn(2, 3, 64, 64)
    logits, embs = model(x, return_embeddings=True)
    assert logits.shape == (2, 11, 64, 64)
    assert [e.shape[-1] for e in embs] == [32, 16, 8, 4]  # strides 2/4/8/16
    assert all(e.shape[:2] == (2, 64) for e in embs)
    for e in embs:
        torch.testing.assert_close(e.norm(dim=1), torch.ones_like(e[:, 0]))
    assert 0.4e6 < deployed_parameters(model) < 0.6e6


def test_embedding_normalisation_is_a_parameter():
    """normalize_embeddings=False (METHOD.md's [choice] switched off): the same weights give the
    heads' raw outputs, whose per-pixel direction is the normalised embedding's; the lazy path
    follows the same choice."""
    torch.manual_seed(0)
    on = build_model(ModelConfig(widths=(8, 8, 16, 16), embed_dim=8), 3).eval()
    off = build_model(
        ModelConfig(widths=(8, 8, 16, 16), embed_dim=8, normalize_embeddings=False), 3
    )
    off.load_state_dict(on.state_dict())
    off.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        unit, raw = on(x, True).embeddings, off(x, True).embeddings
        lazy = off(x, "lazy").embeddings
    for u, r, z in zip(unit, raw, lazy, strict=True):
        norms = r.norm(dim=1)
        assert not torch.allclose(norms, torch.ones_like(norms))
        torch.testing.assert_close(r / norms.unsqueeze(1), u)
        torch.testing.assert_close(z.rows(), r.permute(0, 2, 3, 1).reshape(-1, r.shape[1]))


def test_segmentation_net_names_its_own_flag():
    with pytest.raises(ValueError, match="normalize_embeddings must be True or False"):
        SegmentationNet(PlainEncoder(3, (4, 4)), 3, 4, normalize_embeddings="no")


def test_deployed_model_never_runs_the_heads():
    model = build_model(ModelConfig(), num_classes=11).eval()
    calls = []
    for head in model.heads:
        head.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert calls == []
    assert isinstance(out, SegOutput) and out.embeddings == []  # one return type in every mode
    # same parameters and output as the network without any heads at all
    plain = SegmentationNet(model.encoder, 11)
    plain.decoder = model.decoder
    plain.heads = nn.ModuleList()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain.eval()(x))
    assert deployed_parameters(model) == sum(p.numel() for p in plain.parameters())


def test_resnet_encoder_strides():
    enc = ResNetEncoder(widths=(8, 16, 32, 64), blocks=(1, 1, 1, 1))
    feats = enc(torch.randn(1, 3, 128, 128))
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4]  # strides 4/8/16/32
    model = build_model(ModelConfig(arch="resnet", widths=(8, 16, 32, 64), blocks=(1, 1, 1, 1)), 5)
    assert model(torch.randn(1, 3, 64, 64)).logits.shape == (1, 5, 64, 64)


def test_replaceable_encoder():
    class Tiny(nn.Module):
        channels = (4, 8)

        def forward(self, x):
            return [torch.zeros(x.shape[0], 4, 8, 8), torch.zeros(x.shape[0], 8, 4, 4)]

    model = SegmentationNet(Tiny(), num_classes=3, embed_dim=5)
    logits, embs = model(torch.randn(2, 3, 16, 16), return_embeddings=True)
    assert logits.shape == (2, 3, 16, 16) and [e.shape[1] for e in embs] == [5, 5]


def test_bad_input():
    with pytest.raises(ValueError, match="unknown arch"):
        build_model(ModelConfig(arch="vit"), 3)
    with pytest.raises(ValueError, match=r"\[B,3,H,W\]"):
        build_model(ModelConfig(), 3)(torch.randn(3, 64, 64))
    with pytest.raises(ValueError, match="channels"):
        SegmentationNet(nn.Identity(), 3)
    assert PlainEncoder().channels == (16, 32, 64, 128)


@pytest.mark.parametrize(
    "cfg, num_classes, match",
    [
        (ModelConfig(widths=(0, 8, 8, 8)), 3, "widths must be a list of one or more ints >= 1"),
        (ModelConfig(widths=()), 3, "widths must be a list"),
        (ModelConfig(widths="abc"), 3, "widths must be a list"),
        (ModelConfig(embed_dim=-1), 3, "embed_dim must be an int >= 1"),
        (
            ModelConfig(arch="resnet", blocks=(2, 2)),
            3,
            r"blocks \(2, 2\) needs one count per stage",
        ),
        (ModelConfig(arch="resnet", blocks=(2, 0, 2, 2)), 3, "blocks must be a list"),
        (ModelConfig(), 0, "num_classes must be an int >= 1"),
        (ModelConfig(), 3.0, "num_classes must be an int >= 1"),
        (ModelConfig(normalize_embeddings="no"), 3, "normalize_embeddings must be True or False"),
        (ModelConfig(widths=(8, True, 8, 8)), 3, "widths must be a list"),
    ],
)
def test_build_model_names_a_bad_setting(cfg, num_classes, match):
    with pytest.raises(ValueError, match=match):
        build_model(cfg, num_classes)


def test_forward_names_wrong_images():
    model = build_model(ModelConfig(widths=(8, 8, 16, 16), embed_dim=8), 3, in_channels=1)
    assert model(torch.randn(1, 1, 32, 32)).logits.shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match=r"float tensor \[B,1,H,W\], got \(1, 3, 32, 32\)"):
        model(torch.randn(1, 3, 32, 32))  # RGB into a grey-level model
    with pytest.raises(ValueError, match="not raw uint8"):
        model(torch.zeros(1, 1, 32, 32, dtype=torch.uint8))


def test_l2_normalize_matches_f_normalize_values_and_gradients():
    x = torch.randn(50, 8, dtype=torch.float64, requires_grad=True)
    g = torch.randn(50, 8, dtype=torch.float64)
    ref = torch.nn.functional.normalize(x, dim=-1)
    (want,) = torch.autograd.grad(ref, x, g)
    out = l2_normalize(x)
    assert torch.allclose(out, ref)
    (got,) = torch.autograd.grad(out, x, g)
    assert torch.allclose(got, want)
    # a transposed (non-contiguous) incoming gradient, as a matmul backward can hand over
    (got_t,) = torch.autograd.grad(l2_normalize(x), x, g.T.contiguous().T)
    assert torch.allclose(got_t, want)
    assert torch.autograd.gradcheck(l2_normalize, (x,))
    assert torch.autograd.gradcheck(l2_normalize, (x.detach().view(5, 10, 8).requires_grad_(),))


def test_l2_normalize_zero_vector_stays_finite():
    x = torch.zeros(3, 4, requires_grad=True)
    out = l2_normalize(x)
    out.sum().backward()
    assert torch.equal(out, torch.zeros(3, 4)) and torch.isfinite(x.grad).all()
