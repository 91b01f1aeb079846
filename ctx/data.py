"""Digit scenes: RGB images composed of real handwritten MNIST digits, one label per pixel.

Labels: 0 = background, 1..10 = the digits 0..9 (`CLASS_NAMES`). Scenes are made
deterministically from `(seed, split, index)`; the train, validation and test splits draw from
disjoint digit images (350/75/75 per class of the 5,000-digit sample in `data/mnist_5k.npz`).
Taught in notebooks 00 and 01.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ctx.labels import check_int
from ctx.resources import data_dir
from ctx.validation import Rule, plain_numbers, validate

DATA_DIR = data_dir()  # data/ of the checkout, or the installed package's copy
MNIST_FILE = DATA_DIR / "mnist_5k.npz"
NUM_CLASSES = 11
CLASS_NAMES = ("background", *(str(d) for d in range(10)))
SPLITS = {"train": (0, 350), "val": (350, 425), "test": (425, 500)}
# Frozen sizes of the evaluation splits, so numbers compare across runs.
DEFAULT_NUM_SCENES = {"train": 3000, "val": 500, "test": 500}


@dataclass(frozen=True)
class SceneConfig:
    """How digit scenes are composed. Sizes are fractions of the image side, so a scene at
    128 px looks like the same scene at 64 px. Defaults give digits of 15-45 px at 64 px (3x)."""

    image_size: int = 64
    min_digits: int = 2
    max_digits: int = 5
    min_scale: float = 0.234  # digit box side / image side: 15 px at 64 px
    max_scale: float = 0.703  # 45 px at 64 px
    max_overlap: float = 0.1  # fraction of a digit's strokes that may cover earlier strokes
    thicken: int = 3  # max-filter size applied to strokes (1 = off)
    noise: float = 0.05  # max std of per-pixel background noise
    texture: float = 0.06  # amplitude of low-frequency background texture
    gradient: float = 0.1  # max amplitude of the background colour gradient
    min_contrast: float = 0.5  # min RGB distance between stroke and background colour
    touching: float = 0.0  # chance a digit is placed against an earlier one (classes meet)
    distractors: int = 0  # max digit fragments drawn per scene and labelled background

    def __post_init__(self) -> None:
        """Refuse a setting that cannot make scenes, naming it (before any scene is drawn); numpy
        and torch numbers count as the Python numbers they hold."""
        plain_numbers(self)
        validate(self, SCENE_RULES, (_check_scene,), lambda field: f"SceneConfig.{field}")


# One rule per SceneConfig field; TrainConfig's scene fields reuse them (ctx.engine.config).
SCENE_RULES: dict[str, Rule] = {
    "image_size": Rule("side of the square scenes, px (8 is the least a scene can be drawn at)", ge=8),
    "min_digits": Rule("fewest digits per scene", ge=0),
    "max_digits": Rule("most digits per scene", ge=0),
    "min_scale": Rule("smallest digit box side, as a fraction of the image side", gt=0, le=1),
    "max_scale": Rule("largest digit box side, as a fraction of the image side", gt=0, le=1),
    "max_overlap": Rule("fraction of a digit's strokes that may cover others", ge=0, le=1),
    "thicken": Rule("max-filter size applied to strokes (1 = off)", ge=1),
    "noise": Rule("max std of per-pixel background noise", ge=0),
    "texture": Rule("amplitude of low-frequency background texture", ge=0),
    "gradient": Rule("max amplitude of the background colour gradient", ge=0),
    "min_contrast": Rule("min RGB distance between stroke and background colour", ge=0),
    "touching": Rule("chance a digit is placed against an earlier one", ge=0, le=1),
    "distractors": Rule("most digit fragments per scene, labelled background", ge=0),
}  # fmt: skip


def _check_scene(c: SceneConfig, name) -> str | None:
    if c.max_digits < c.min_digits:
        return (
            f"{name('max_digits')} ({c.max_digits}) is below {name('min_digits')} "
            f"({c.min_digits}): raise max_digits or lower min_digits"
        )
    if c.max_scale < c.min_scale:
        return (
            f"{name('max_scale')} ({c.max_scale}) is below {name('min_scale')} "
            f"({c.min_scale}): raise max_scale or lower min_scale"
        )
    return None


def load_mnist(path: Path = MNIST_FILE) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 [5000,28,28], digits uint8 [5000]) from the shipped sample."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: it ships with the repository (git checkout -- data/) and "
            f"the package (reinstall it), or regenerate it with `python scripts/extract_mnist.py`"
        )
    with np.load(path) as f:
        return f["images"], f["labels"]


def split_indices(digits: np.ndarray, split: str) -> np.ndarray:
    """Indices of the digit images a split may use: disjoint per class, fixed forever."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    lo, hi = SPLITS[split]
    rng = np.random.default_rng(20240417)  # fixed: the split never changes with the run's seed
    out = []
    for d in range(10):
        idx = np.flatnonzero(digits == d)
        out.append(rng.permutation(idx)[lo:hi])
    return np.sort(np.concatenate(out))


def _background(rng: np.random.Generator, cfg: SceneConfig) -> tuple[np.ndarray, np.ndarray]:
    """A textured, noisy background [S,S,3] and its mean colour [3]."""
    s = cfg.image_size
    base = rng.uniform(0.0, 1.0, 3)
    yy, xx = np.mgrid[0:s, 0:s] / max(s - 1, 1) - 0.5
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * xx + np.sin(angle) * yy
    grad = ramp[..., None] * rng.uniform(-cfg.gradient, cfg.gradient, 3) * 2
    coarse = rng.normal(0, 1, (8, 8, 3))
    texture = ndimage.zoom(coarse, (s / 8, s / 8, 1), order=1)[:s, :s] * cfg.texture
    noise = rng.normal(0, rng.uniform(0, cfg.noise), (s, s, 3))
    return base + grad + texture + noise, base


def _stroke_colour(rng: np.random.Generator, bg: np.ndarray, cfg: SceneConfig) -> np.ndarray:
    for _ in range(50):
        c = rng.uniform(0.0, 1.0, 3)
        if np.linalg.norm(c - bg) >= cfg.min_contrast:
            return c
    return 1.0 - np.round(bg)  # the far corner of the colour cube is always far enough


def _strokes(image: np.ndarray, size: int, cfg: SceneConfig) -> np.ndarray:
    """A 28x28 uint8 digit scaled to `size` px and thickened: stroke opacity float [h,w]."""
    alpha = ndimage.zoom(image.astype(np.float32) / 255.0, size / 28, order=1)
    if cfg.thicken > 1:
        alpha = ndimage.maximum_filter(alpha, size=cfg.thicken)
    return np.clip(alpha, 0.0, 1.0)


def _paint(img: np.ndarray, y: int, x: int, alpha: np.ndarray, colour: np.ndarray) -> None:
    region = img[y : y + alpha.shape[0], x : x + alpha.shape[1]]
    region[:] = region * (1 - alpha[..., None]) + colour * alpha[..., None]


def _draw_distractors(
    rng: np.random.Generator, img: np.ndarray, bg: np.ndarray, images: np.ndarray, cfg: SceneConfig
) -> None:
    """Up to `cfg.distractors` fragments of random digits (one half of the digit's box), painted
    like strokes but left labelled background: a stroke is a digit only as part of a digit."""
    s = cfg.image_size
    lo, hi = round(cfg.min_scale * s), round(cfg.max_scale * s)
    for _ in range(rng.integers(0, cfg.distractors + 1)):
        alpha = _strokes(images[rng.integers(len(images))], int(rng.integers(lo, hi + 1)), cfg)
        h, w = alpha.shape
        side = rng.integers(4)  # keep the top, bottom, left or right half
        alpha = [alpha[: h // 2], alpha[h // 2 :], alpha[:, : w // 2], alpha[:, w // 2 :]][side]
        h, w = alpha.shape
        y, x = rng.integers(0, s - h + 1), rng.integers(0, s - w + 1)
        _paint(img, y, x, alpha, _stroke_colour(rng, bg, cfg))


def _place_near(rng: np.random.Generator, labels: np.ndarray, h: int, w: int) -> tuple[int, int]:
    """A box position whose centre lies within half a box of a random digit pixel."""
    ys, xs = np.nonzero(labels)
    k = rng.integers(len(ys))
    s = labels.shape[0]
    cy = ys[k] + rng.integers(-(h // 2), h // 2 + 1)
    cx = xs[k] + rng.integers(-(w // 2), w // 2 + 1)
    return int(np.clip(cy - h // 2, 0, s - h)), int(np.clip(cx - w // 2, 0, s - w))


def make_scene(
    rng: np.random.Generator, images: np.ndarray, digits: np.ndarray, cfg: SceneConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Compose one scene: (image float32 [3,S,S] in [0,1], labels uint8 [S,S]).

    Distractors (if any) are painted first, then the digits; with `touching`, a digit is placed
    against an earlier digit with that probability. With both off, the scene is the one earlier
    versions made from the same generator (they draw no extra random numbers)."""
    s = cfg.image_size
    img, bg = _background(rng, cfg)
    labels = np.zeros((s, s), np.uint8)
    lo, hi = round(cfg.min_scale * s), round(cfg.max_scale * s)
    if cfg.distractors:
        _draw_distractors(rng, img, bg, images, cfg)
    for _ in range(rng.integers(cfg.min_digits, cfg.max_digits + 1)):
        j = rng.integers(len(images))
        size = int(rng.integers(lo, hi + 1))
        alpha = _strokes(images[j], size, cfg)
        mask = alpha > 0.5
        h, w = alpha.shape
        near = cfg.touching > 0 and labels.any() and rng.random() < cfg.touching
        for attempt in range(40 if near else 20):  # a place covering little of the old strokes
            close = near and attempt < 20  # then 20 tries anywhere, as without `touching`
            if close:
                y, x = _place_near(rng, labels, h, w)
            else:
                y, x = rng.integers(0, s - h + 1), rng.integers(0, s - w + 1)
            old = labels[y : y + h, x : x + w] > 0
            if (old & mask).sum() > cfg.max_overlap * max(mask.sum(), 1):
                continue
            if close and not (old & ndimage.binary_dilation(mask)).any():
                continue  # near, but not touching
            break
        else:
            continue
        _paint(img, y, x, alpha, _stroke_colour(rng, bg, cfg))
        labels[y : y + h, x : x + w][mask] = digits[j] + 1
    img = np.clip(img, 0.0, 1.0).astype(np.float32).transpose(2, 0, 1)
    return img, labels


def pool_indices(digits: np.ndarray, split: str, digits_per_class: int | None = None) -> np.ndarray:
    """The digit images a split's scenes draw from: `split_indices`, or only the first
    `digits_per_class` of them per class (scarce labels: fewer distinct handwritings to learn)."""
    idx = split_indices(digits, split)
    if digits_per_class is None:
        return idx
    lo, hi = SPLITS[split]
    if not 1 <= digits_per_class <= hi - lo:
        raise ValueError(
            f"digits_per_class must be in [1, {hi - lo}] for the {split} split, got {digits_per_class}"
        )
    keep = [np.flatnonzero(digits[idx] == d)[:digits_per_class] for d in range(10)]
    return idx[np.sort(np.concatenate(keep))]


def generate_scenes(
    split: str,
    num_scenes: int,
    cfg: SceneConfig = SceneConfig(),
    seed: int = 0,
    progress: bool = False,
    digits_per_class: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scenes of a split: (images uint8 [N,3,S,S], labels int64 [N,S,S]). Deterministic in
    (split, seed, cfg, digits_per_class); scene i does not depend on how many scenes are asked
    for. `digits_per_class` limits the digit images drawn from (see `pool_indices`)."""
    check_int("num_scenes", num_scenes, ge=0)
    if not isinstance(cfg, SceneConfig):
        raise ValueError(f"cfg must be a ctx.data.SceneConfig, got {type(cfg).__name__}")
    images, digits = load_mnist()
    idx = pool_indices(digits, split, digits_per_class)
    pool_images, pool_digits = images[idx], digits[idx]
    split_id = zlib.crc32(split.encode())
    out_img = np.empty((num_scenes, 3, cfg.image_size, cfg.image_size), np.uint8)
    out_lab = np.empty((num_scenes, cfg.image_size, cfg.image_size), np.uint8)
    for i in tqdm(range(num_scenes), desc=f"{split} scenes", disable=not progress, leave=False):
        rng = np.random.default_rng([seed, split_id, i])
        img, lab = make_scene(rng, pool_images, pool_digits, cfg)
        out_img[i] = np.round(img * 255).astype(np.uint8)
        out_lab[i] = lab
    return torch.from_numpy(out_img), torch.from_numpy(out_lab).long()


def augment(
    image: torch.Tensor, labels: torch.Tensor, generator: torch.Generator, max_shift: int = 4
) -> tuple[torch.Tensor, torch.Tensor]:
    """Light training augmentation of one scene: a random shift (background label fills the
    gap), a random permutation of the colour channels and a brightness/contrast jitter.
    No flips: mirrored digits are not digits. image float [3,H,W], labels int64 [H,W]."""
    dy, dx = (torch.randint(-max_shift, max_shift + 1, (2,), generator=generator)).tolist()
    fill = image[:, :1, :1].expand_as(image)  # the top-left colour stands in for background
    image = torch.roll(image, (dy, dx), dims=(1, 2))
    labels = torch.roll(labels, (dy, dx), dims=(0, 1))
    edge = torch.zeros_like(labels, dtype=torch.bool)
    if dy > 0:
        edge[:dy] = True
    elif dy < 0:
        edge[dy:] = True
    if dx > 0:
        edge[:, :dx] = True
    elif dx < 0:
        edge[:, dx:] = True
    image = torch.where(edge, fill, image)
    labels = labels.masked_fill(edge, 0)
    image = image[torch.randperm(3, generator=generator)]
    gain, bias = (torch.rand(2, generator=generator) - 0.5) * torch.tensor([0.3, 0.2])
    image = ((image - 0.5) * (1 + gain) + 0.5 + bias).clamp(0, 1)
    return image, labels


class DigitScenes(Dataset):
    """Digit scenes of one split as a Dataset of (image float [3,S,S], labels int64 [S,S]).

    Scenes are generated once at construction and held in memory as uint8. With
    `augment=True` each item is lightly augmented by a generator seeded from
    (seed, epoch, index); call `set_epoch` every epoch for fresh, reproducible augmentation.
    """

    def __init__(
        self,
        split: str = "train",
        num_scenes: int | None = None,
        cfg: SceneConfig = SceneConfig(),
        seed: int = 0,
        augment: bool = False,
        progress: bool = False,
        digits_per_class: int | None = None,
    ) -> None:
        self.split, self.cfg, self.seed, self.augment = split, cfg, seed, augment
        self.digits_per_class = digits_per_class
        self.num_scenes = DEFAULT_NUM_SCENES[split] if num_scenes is None else num_scenes
        self.images, self.labels = generate_scenes(
            split, self.num_scenes, cfg, seed, progress, digits_per_class
        )
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_scenes

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[i].float() / 255.0
        labels = self.labels[i]
        if self.augment:
            g = torch.Generator().manual_seed(hash((self.seed, self.epoch, int(i))) & 0x7FFFFFFF)
            image, labels = augment(image, labels, g)
        return image, labels

    def describe(self) -> dict:
        """A JSON-able description (split, count, seed, scene settings) for results files."""
        return {
            "split": self.split,
            "num_scenes": self.num_scenes,
            "seed": self.seed,
            "digits_per_class": self.digits_per_class,
            **asdict(self.cfg),
        }
