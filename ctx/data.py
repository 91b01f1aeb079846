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

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
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


def load_mnist(path: Path = MNIST_FILE) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 [5000,28,28], digits uint8 [5000]) from the shipped sample."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: it ships with the repository (git checkout -- data/), "
            f"or regenerate it with `python scripts/extract_mnist.py`"
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


def make_scene(
    rng: np.random.Generator, images: np.ndarray, digits: np.ndarray, cfg: SceneConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Compose one scene: (image float32 [3,S,S] in [0,1], labels uint8 [S,S])."""
    s = cfg.image_size
    img, bg = _background(rng, cfg)
    labels = np.zeros((s, s), np.uint8)
    lo, hi = round(cfg.min_scale * s), round(cfg.max_scale * s)
    for _ in range(rng.integers(cfg.min_digits, cfg.max_digits + 1)):
        j = rng.integers(len(images))
        size = int(rng.integers(lo, hi + 1))
        alpha = ndimage.zoom(images[j].astype(np.float32) / 255.0, size / 28, order=1)
        if cfg.thicken > 1:
            alpha = ndimage.maximum_filter(alpha, size=cfg.thicken)
        alpha = np.clip(alpha, 0.0, 1.0)
        mask = alpha > 0.5
        h, w = alpha.shape
        for _ in range(20):  # find a place where the new strokes cover little of the old
            y, x = rng.integers(0, s - h + 1), rng.integers(0, s - w + 1)
            covered = (labels[y : y + h, x : x + w] > 0) & mask
            if covered.sum() <= cfg.max_overlap * max(mask.sum(), 1):
                break
        else:
            continue
        colour = _stroke_colour(rng, bg, cfg)
        region = img[y : y + h, x : x + w]
        region[:] = region * (1 - alpha[..., None]) + colour * alpha[..., None]
        labels[y : y + h, x : x + w][mask] = digits[j] + 1
    img = np.clip(img, 0.0, 1.0).astype(np.float32).transpose(2, 0, 1)
    return img, labels


def generate_scenes(
    split: str,
    num_scenes: int,
    cfg: SceneConfig = SceneConfig(),
    seed: int = 0,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scenes of a split: (images uint8 [N,3,S,S], labels int64 [N,S,S]). Deterministic in
    (split, seed, cfg); scene i does not depend on how many scenes are asked for."""
    images, digits = load_mnist()
    idx = split_indices(digits, split)
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
    ) -> None:
        self.split, self.cfg, self.seed, self.augment = split, cfg, seed, augment
        self.num_scenes = DEFAULT_NUM_SCENES[split] if num_scenes is None else num_scenes
        self.images, self.labels = generate_scenes(split, self.num_scenes, cfg, seed, progress)
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
            **asdict(self.cfg),
        }
