"""A multi-stage segmentation network with one projection head per stage (METHOD.md, Notation).

`SegmentationNet(encoder, num_classes)` = a replaceable encoder returning a list of stage
features (local -> global context), a light U-Net/FPN-style decoder giving logits at input
resolution, and projection heads that run only when embeddings are asked for (training), so the
deployed network has the parameters and cost of a plain one. Taught in notebooks 00 and 01.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ctx.labels import check_flag, check_int, check_int_list, check_num_classes


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv (no bias) -> BatchNorm -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class PlainEncoder(nn.Module):
    """Stages of (stride-2 conv, conv): strides 2, 4, 8, ... Returns a list of [B,c_i,H/2^i,W/2^i]."""

    def __init__(self, in_channels: int = 3, widths: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        self.in_channels, self.channels = in_channels, tuple(widths)
        chans = (in_channels, *widths)
        self.stages = nn.ModuleList(
            nn.Sequential(
                conv_bn_relu(chans[i], chans[i + 1], 2), conv_bn_relu(chans[i + 1], chans[i + 1])
            )
            for i in range(len(widths))
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with a residual (1x1 projection when shapes change)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(c_in, c_out, stride)
        self.conv2 = nn.Sequential(
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)
        )
        self.skip = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.skip(x))


class ResNetEncoder(nn.Module):
    """A ResNet-style 4-stage encoder for GPUs (ResNet-18/34 layout, strides 4/8/16/32).

    `blocks=(2, 2, 2, 2)` with widths (64, 128, 256, 512) is ResNet-18's shape (11 M parameters);
    the stem is a stride-2 7x7 conv and a max-pool, as in ResNet.
    """

    def __init__(
        self,
        in_channels: int = 3,
        widths: tuple[int, ...] = (64, 128, 256, 512),
        blocks: tuple[int, ...] = (2, 2, 2, 2),
    ) -> None:
        super().__init__()
        self.in_channels, self.channels = in_channels, tuple(widths)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        chans = (widths[0], *widths)
        self.stages = nn.ModuleList(
            nn.Sequential(
                *(
                    BasicBlock(
                        chans[i] if j == 0 else widths[i], widths[i], 2 if (j == 0 and i > 0) else 1
                    )
                    for j in range(blocks[i])
                )
            )
            for i in range(len(widths))
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class _L2Normalize(torch.autograd.Function):
    """Unit-normalise the last dimension; a fused backward (2x faster than F.normalize's)."""

    # Few full-size temporaries: on a CPU each fresh [M,D] buffer costs memory traffic (and page
    # faults) that outweigh the arithmetic (stage 0 of the default model is M = 16,384 pixels).
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        r = torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min_(1e-12).reciprocal_()
        y = x * r
        ctx.save_for_backward(y, r)
        return y

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        y, r = ctx.saved_tensors
        g = g.contiguous()  # a transposed g makes every op below strided (several x slower)
        dot = torch.einsum("...d,...d->...", g, y).unsqueeze(-1)  # [...,1], no [...,D] product
        return torch.addcmul(g, y, dot, value=-1).mul_(r)


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """x [..., D] / ||x|| along the last dimension (eps 1e-12), with a fused backward."""
    return _L2Normalize.apply(x)


class ProjectionHead(nn.Module):
    """1x1 conv (c->c) -> ReLU -> BatchNorm -> 1x1 conv (c->d), then per-pixel L2 normalisation
    (**[choice]**, METHOD.md Notation, as all peers: `normalize=False` returns the raw outputs).

    The 1x1 convs run as linear maps over the pixels [B*h*w, c] (the same maths, about 1.4x
    faster on a CPU than NCHW 1x1 convs): f [B,c,h,w] -> embeddings [B,d,h,w] (a channels-last
    view: `emb.permute(0, 2, 3, 1)` is contiguous).
    """

    def __init__(self, c: int, d: int, normalize: bool = True) -> None:
        super().__init__()
        check_flag("normalize", normalize)
        self.net = nn.Sequential(
            nn.Linear(c, c), nn.ReLU(inplace=True), nn.BatchNorm1d(c), nn.Linear(c, d)
        )
        self.normalize = normalize

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        b, c, h, w = f.shape
        z = self.embed_rows(f.permute(0, 2, 3, 1).reshape(-1, c))
        return z.view(b, h, w, -1).permute(0, 3, 1, 2)

    def embed_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Features of N pixels [N,c] -> their embeddings [N,d]."""
        z = self.net(rows)
        return l2_normalize(z) if self.normalize else z


class PixelEmbeddings:
    """One stage's embeddings, computed only for the pixels a loss asks for (opt-in).

    `SegmentationNet(x, return_embeddings="lazy")` returns these instead of [B,D,h,w] tensors;
    `ContextrastLoss(embed_pixels="sampled")` calls `rows(idx)` with the pixels it uses, so the
    projection head runs on those alone. `shape` is the eager tensor's (B, D, h, w).
    **[choice]** The head's BatchNorm then normalises with the statistics of the rows it is
    given (the used pixels, not all of them); the heads are training-only, so inference is
    unchanged.
    """

    def __init__(self, head: ProjectionHead, feats: torch.Tensor, dtype=None) -> None:
        self.head, self.feats, self.dtype = head, feats, dtype
        b, _, h, w = feats.shape
        self.shape = torch.Size((b, head.net[-1].out_features, h, w))
        self.device = feats.device

    def rows(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings [N,D] of the pixels at flat (b, h, w) indices `idx` (None: every pixel)."""
        f = self.feats.permute(0, 2, 3, 1).reshape(-1, self.feats.shape[1])
        z = self.head.embed_rows(f if idx is None else f.index_select(0, idx))
        return z if self.dtype is None else z.to(self.dtype)

    def float(self) -> PixelEmbeddings:
        """The same embeddings, returned as float32 (what a tensor's `.float()` does)."""
        return PixelEmbeddings(self.head, self.feats, torch.float32)


class Decoder(nn.Module):
    """U-Net/FPN-style: from the deepest stage up, upsample, concatenate the skip, two convs."""

    def __init__(self, channels: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(
                conv_bn_relu(channels[i + 1] + channels[i], channels[i]),
                conv_bn_relu(channels[i], channels[i]),
            )
            for i in reversed(range(len(channels) - 1))
        )
        self.classifier = nn.Conv2d(channels[0], num_classes, 1)

    def forward(self, feats: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        x = feats[-1]
        for block, skip in zip(self.blocks, reversed(feats[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return F.interpolate(self.classifier(x), size=size, mode="bilinear", align_corners=False)


class SegOutput(NamedTuple):
    """What SegmentationNet returns in every mode: `logits` [B,C,H,W] and `embeddings`, one
    [B,D,h_i,w_i] per stage, L2-normalised per pixel unless the net was built with
    `normalize_embeddings=False` (empty unless asked for; `PixelEmbeddings` when asked for
    "lazy")."""

    logits: torch.Tensor
    embeddings: list[torch.Tensor] | list[PixelEmbeddings]


class SegmentationNet(nn.Module):
    """Encoder + decoder + per-stage projection heads.

    forward(x [B,3,H,W]) -> SegOutput(logits [B,C,H,W], embeddings []);
    forward(x, return_embeddings=True) also runs the heads: embeddings [emb_i [B,D,h_i,w_i]];
    return_embeddings="lazy" returns `PixelEmbeddings` that run them on the pixels a loss asks
    for. Without it the heads never run, so inference costs what a plain network costs.
    `normalize_embeddings` (**[choice]**, METHOD.md: True) L2-normalises each pixel's embedding.
    """

    def __init__(
        self,
        encoder: nn.Module,
        num_classes: int,
        embed_dim: int = 64,
        normalize_embeddings: bool = True,
    ) -> None:
        super().__init__()
        if not hasattr(encoder, "channels"):
            raise ValueError(
                "encoder must expose `channels`, the widths of the stage features it returns"
            )
        check_flag("normalize_embeddings", normalize_embeddings)
        self.encoder = encoder
        self.decoder = Decoder(tuple(encoder.channels), num_classes)
        self.heads = nn.ModuleList(
            ProjectionHead(c, embed_dim, normalize_embeddings) for c in encoder.channels
        )
        self.num_classes, self.embed_dim = num_classes, embed_dim

    def forward(self, x: torch.Tensor, return_embeddings: bool | str = False) -> SegOutput:
        c = getattr(self.encoder, "in_channels", None)
        if x.dim() != 4 or (c is not None and x.shape[1] != c) or not x.is_floating_point():
            raise ValueError(
                f"images must be a float tensor [B,{c or 'C'},H,W], got {tuple(x.shape)} {x.dtype}"
                f" (as the dataset gives them: scaled and normalised, not raw uint8)"
            )
        feats = self.encoder(x)
        logits = self.decoder(feats, x.shape[-2:])
        if not return_embeddings:
            return SegOutput(logits, [])
        if return_embeddings == "lazy":
            return SegOutput(
                logits, [PixelEmbeddings(h, f) for h, f in zip(self.heads, feats, strict=True)]
            )
        return SegOutput(logits, [head(f) for head, f in zip(self.heads, feats, strict=True)])

    def stage_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's raw stage features, for inspection."""
        return self.encoder(x)


@dataclass(frozen=True)
class ModelConfig:
    """Which network to build: `arch` "plain" (CPU default, ~0.5 M parameters) or "resnet"."""

    arch: str = "plain"
    widths: tuple[int, ...] = (16, 32, 64, 128)
    blocks: tuple[int, ...] = (2, 2, 2, 2)
    embed_dim: int = 64
    normalize_embeddings: bool = True  # [choice] METHOD.md: per-pixel L2 normalisation


def build_model(cfg: ModelConfig, num_classes: int, in_channels: int = 3) -> SegmentationNet:
    """Build the network a config names (ValueError naming a bad setting)."""
    check_num_classes(num_classes)
    check_int("in_channels", in_channels, ge=1)
    check_int("embed_dim", cfg.embed_dim, ge=1)
    for name in ("widths", "blocks") if cfg.arch == "resnet" else ("widths",):
        check_int_list(name, getattr(cfg, name))
    if cfg.arch == "resnet" and len(cfg.blocks) != len(cfg.widths):
        raise ValueError(
            f"blocks {tuple(cfg.blocks)} needs one count per stage of widths {tuple(cfg.widths)}"
        )
    if cfg.arch == "plain":
        encoder = PlainEncoder(in_channels, tuple(cfg.widths))
    elif cfg.arch == "resnet":
        encoder = ResNetEncoder(in_channels, tuple(cfg.widths), tuple(cfg.blocks))
    else:
        raise ValueError(f"unknown arch {cfg.arch!r}: use 'plain' or 'resnet'")
    return SegmentationNet(encoder, num_classes, cfg.embed_dim, cfg.normalize_embeddings)


def deployed_parameters(model: SegmentationNet) -> int:
    """Parameters used at inference (encoder + decoder; the projection heads are training-only)."""
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith("heads."))
