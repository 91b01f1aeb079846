"""Label maps: input checks shared by every loss, miner and metric (label maps, class counts,
scalar settings, flags, generators), and resizing labels and predictions to a stage."""

from __future__ import annotations

import math
import numbers

import torch

IGNORE_INDEX = 255


def check_labels(
    labels: torch.Tensor,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    name: str = "labels",
    *,
    values: bool = True,
    classes_from: str = "num_classes",
) -> None:
    """Raise ValueError unless `labels` is an integer [B,H,W] map with values in [0, C) or ignore.
    `classes_from` names where C came from, for the message (e.g. "anchors' rows").

    `values=False` checks the type, dtype and shape only: reading the values makes the host wait
    for the device (one sync), which a training step may not want to pay every step.
    """
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(
            f"{name} must be an integer tensor (int64 class ids), got {labels.dtype}; "
            f"convert with {name}.long() after checking the values are whole class ids"
        )
    if labels.dim() != 3:
        raise ValueError(f"{name} must have shape [B,H,W], got {tuple(labels.shape)}")
    check_num_classes(num_classes)
    check_ignore_index(ignore_index)
    if labels.numel() == 0 or not values or not readable(labels):
        return
    valid = labels != ignore_index
    bad = valid & ((labels < 0) | (labels >= num_classes))
    if bool(bad.any()):
        values = torch.unique(labels[bad])[:5].tolist()
        raise ValueError(
            f"{name} hold values {values} outside [0, {num_classes}) that are not the ignore value "
            f"{ignore_index}; map them to a class id or to {ignore_index} (or pass the right "
            f"{classes_from} / ignore_index)"
        )


def check_num_classes(num_classes: int) -> None:
    """Raise ValueError unless `num_classes` is an integer >= 1 (a bool or a float is refused)."""
    check_int("num_classes", num_classes, ge=1)


def check_ignore_index(ignore_index: int) -> None:
    """Raise ValueError unless `ignore_index` is an integer (a float or None is refused)."""
    if not _is_integer(ignore_index):
        raise ValueError(f"ignore_index must be an int (e.g. 255), got {ignore_index!r}")


def check_int(name: str, value: int, ge: int | None = None) -> None:
    """Raise ValueError unless `value` is an integer (not a bool or a float) >= `ge` if given."""
    if not _is_integer(value) or (ge is not None and value < ge):
        raise ValueError(
            f"{name} must be an int" + (f" >= {ge}" if ge is not None else "") + f", got {value!r}"
        )


TORCH_SEED_LIMIT = 2**63  # torch.Generator.manual_seed takes a 64-bit integer; beyond, it overflows


def check_seed(seed: int) -> None:
    """Raise ValueError unless `seed` is an int in [0, 2**63) (a bool or a float is refused)."""
    if not _is_integer(seed) or not 0 <= seed < TORCH_SEED_LIMIT:
        raise ValueError(f"seed must be an int in [0, 2**63), got {seed!r}")


def check_int_list(name: str, value: object, ge: int = 1) -> None:
    """Raise ValueError unless `value` is a non-empty tuple or list of ints >= `ge`."""
    if (
        not isinstance(value, tuple | list)
        or not value
        or any(not _is_integer(v) or v < ge for v in value)
    ):
        raise ValueError(f"{name} must be a list of one or more ints >= {ge}, got {value!r}")


def _is_integer(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_scalar(
    name: str,
    value: float,
    *,
    gt: float | None = None,
    ge: float | None = None,
    le: float | None = None,
    hint: str = "",
) -> None:
    """Raise ValueError unless `value` is a finite real number (not a bool or a string; a 0-dim
    real tensor counts) with `value > gt`, `>= ge`, `<= le` where given; `hint` ends the message."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if isinstance(value, torch.Tensor):
        ok = value.dim() == 0 and not (value.is_complex() or value.dtype == torch.bool)
        ok = ok and value.device.type != "meta"  # a meta tensor holds no value
    if ok:
        v = float(value)
        ok = (
            math.isfinite(v)
            and (gt is None or v > gt)
            and (ge is None or v >= ge)
            and (le is None or v <= le)
        )
    if not ok:
        bounds = [f"{op} {b:g}" for op, b in ((">", gt), (">=", ge), ("<=", le)) if b is not None]
        need = "a finite number" + (" " + " and ".join(bounds) if bounds else "")
        raise ValueError(f"{name} must be {need}, got {value!r}" + (f" {hint}" if hint else ""))


def check_flag(name: str, value: bool) -> None:
    """Raise ValueError unless `value` is a bool: a string such as "no" would read as True."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def check_generator(generator: torch.Generator | None, device: torch.device) -> None:
    """Raise ValueError unless `generator` is None or a torch.Generator on `device`'s type."""
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise ValueError(
            f"generator must be None or a torch.Generator, got {type(generator).__name__}; "
            f"create one with torch.Generator(device=...).manual_seed(seed)"
        )
    if generator.device.type != torch.device(device).type:
        raise ValueError(
            f"generator lives on {generator.device} but the labels on {device}; "
            f"create it with torch.Generator(device=labels.device)"
        )


def check_embeddings(
    emb: torch.Tensor, labels: torch.Tensor, name: str = "emb", *, values: bool = True
) -> None:
    """Raise ValueError unless `emb` is a floating [B,D,H,W] map on the labels' device with the
    labels' [B,H,W] size and, when `values`, only finite values (one host sync; a single NaN
    pixel would otherwise turn every class anchor into NaN through the one-hot matmul)."""
    if not isinstance(emb, torch.Tensor) or emb.dim() != 4 or not emb.is_floating_point():
        desc = f"{tuple(emb.shape)} {emb.dtype}" if isinstance(emb, torch.Tensor) else type(emb)
        raise ValueError(f"{name} must be a floating tensor [B,D,H,W], got {desc}")
    b, d, h, w = emb.shape
    if d == 0:
        raise ValueError(f"{name} {tuple(emb.shape)} has no channels: D must be >= 1")
    if tuple(labels.shape) != (b, h, w):
        raise ValueError(
            f"labels {tuple(labels.shape)} do not match {name} {tuple(emb.shape)}: labels must be "
            f"[B,H,W] at the embedding's resolution; downsample them with "
            f"ctx.labels.resize_labels(labels, {name}.shape[-2:]) first"
        )
    if labels.device != emb.device:
        raise ValueError(f"labels are on {labels.device} but {name} on {emb.device}")
    if values:
        check_finite(emb, name)


def readable(x: torch.Tensor) -> bool:
    """Whether a value check can read `x`: a meta tensor (shapes only, for tracing) has no
    values, so the checks that read values pass it by."""
    return x.device.type != "meta"


def check_finite(x: torch.Tensor, name: str) -> None:
    """Raise ValueError naming `name` if the tensor holds a NaN or an infinity (one host sync)."""
    if not readable(x):
        return
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        n_bad = int((~finite).sum())
        raise ValueError(
            f"{name} contains {n_bad} NaN or inf value(s) of {x.numel()}; find where they "
            f"first appear (e.g. torch.autograd.set_detect_anomaly) rather than masking them"
        )


def nearest_indices(n_in: int, n_out: int, device: torch.device | None = None) -> torch.Tensor:
    """Source indices of F.interpolate(mode="nearest") along one axis: floor(i * n_in / n_out)."""
    # Built on `device` directly: a host-to-device copy would make the host wait on a GPU.
    scale = torch.full((), n_in / n_out, dtype=torch.float32, device=device)
    idx = torch.arange(n_out, dtype=torch.float32, device=device) * scale
    return idx.floor_().long().clamp_(max=n_in - 1)


def resize_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of a map [..., H, W] to [..., h, w] (METHOD.md: `Y_i`): the
    pixels F.interpolate(mode="nearest") would pick, gathered without a float round trip."""
    h_in, w_in = labels.shape[-2:]
    if (h_in, w_in) == tuple(size):
        return labels
    if 0 in (h_in, w_in, *size):
        raise ValueError(
            f"cannot resize a {h_in}x{w_in} label map to {size[0]}x{size[1]}: both need at least "
            f"1x1 pixels"
        )
    if h_in % size[0] == 0 and w_in % size[1] == 0:  # integer factor: nearest picks every s-th
        return labels[..., :: h_in // size[0], :: w_in // size[1]].contiguous()
    iy = nearest_indices(h_in, size[0], labels.device)
    ix = nearest_indices(w_in, size[1], labels.device)
    return labels[..., iy[:, None], ix[None, :]]


def stage_prediction(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """argmax of logits [B,C,H,W] resized by nearest to `size` -> [B,h,w] int64.

    Equal to resize_labels(logits.argmax(1), size): nearest picks the same source pixels from the
    logits as from the argmax map, so only the kept pixels are reduced (4x fewer at stride 2).
    """
    return resize_labels(logits, size).max(1).indices


def check_pred(
    pred: torch.Tensor, labels: torch.Tensor, num_classes: int, ignore_index: int | None = None
) -> None:
    """Raise ValueError unless `pred` is integer class ids [B,H,W] in [0, C), on labels' device
    with labels' shape. With `ignore_index`, values where labels are ignore are not checked
    (they are never read)."""
    if not isinstance(pred, torch.Tensor):
        raise ValueError(f"pred must be a torch.Tensor, got {type(pred).__name__}")
    if pred.is_floating_point() or pred.is_complex() or pred.dtype == torch.bool:
        raise ValueError(
            f"pred must be integer class ids, got {pred.dtype}; pass logits.argmax(1), "
            f"not the logits or probabilities"
        )
    if pred.shape != labels.shape:
        raise ValueError(
            f"pred {tuple(pred.shape)} and labels {tuple(labels.shape)} differ in shape: they "
            f"must have the same [B,H,W] shape; resize one to the other (nearest) first"
        )
    if pred.device != labels.device:
        raise ValueError(f"pred is on {pred.device} but labels on {labels.device}; move one")
    out = (pred < 0) | (pred >= num_classes)
    if ignore_index is not None:
        out &= labels != ignore_index
    if pred.numel() and readable(pred) and bool(out.any()):
        bad = torch.unique(pred[out])[:5].tolist()
        raise ValueError(
            f"pred holds values {bad} outside [0, {num_classes})"
            + ("" if ignore_index is None else " at labelled pixels")
            + f"; pred must be an argmax over num_classes={num_classes} logits (check num_classes)"
        )
