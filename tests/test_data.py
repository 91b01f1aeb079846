import numpy as np
import pytest
import torch

from ctx import data
from ctx.data import NUM_CLASSES, DigitScenes, SceneConfig, augment, generate_scenes, split_indices


def test_splits_are_disjoint_and_sized():
    _, digits = data.load_mnist()
    parts = {s: split_indices(digits, s) for s in ("train", "val", "test")}
    for s, n in (("train", 350), ("val", 75), ("test", 75)):
        assert np.bincount(digits[parts[s]], minlength=10).tolist() == [n] * 10
    assert not set(parts["train"]) & set(parts["val"])
    assert not set(parts["train"]) & set(parts["test"])
    assert not set(parts["val"]) & set(parts["test"])


def test_unknown_split():
    with pytest.raises(ValueError, match="split must be one of"):
        split_indices(np.zeros(10, int), "dev")


def test_scenes_are_deterministic_and_prefix_stable():
    a_img, a_lab = generate_scenes("val", 6, seed=3)
    b_img, b_lab = generate_scenes("val", 3, seed=3)
    assert torch.equal(a_img[:3], b_img) and torch.equal(a_lab[:3], b_lab)
    c_img, _ = generate_scenes("val", 3, seed=4)
    assert not torch.equal(c_img, b_img)


def test_scene_contents():
    img, lab = generate_scenes("train", 40, SceneConfig(image_size=64))
    assert img.shape == (40, 3, 64, 64) and img.dtype == torch.uint8
    assert lab.shape == (40, 64, 64) and lab.dtype == torch.int64
    assert lab.min() >= 0 and lab.max() < NUM_CLASSES
    counts = torch.bincount(lab.flatten(), minlength=NUM_CLASSES)
    assert (counts > 0).all(), "every digit class should appear in 40 scenes"
    per_scene = [len(torch.unique(lab_i)) - 1 for lab_i in lab]
    assert min(per_scene) >= 1 and max(per_scene) >= 3


def test_scale_range_spans_three_times():
    cfg = SceneConfig()
    assert cfg.max_scale / cfg.min_scale >= 3.0
    assert round(cfg.min_scale * 64) == 15 and round(cfg.max_scale * 64) == 45


def test_colour_does_not_reveal_class():
    """Per digit instance, the mean stroke colour of each class matches the overall mean within
    sampling error (4 standard errors): colour carries no class information."""
    img, lab = generate_scenes("train", 400)
    img = img.float().permute(0, 2, 3, 1) / 255
    colours = {c: [] for c in range(1, NUM_CLASSES)}
    for x, y in zip(img, lab, strict=True):
        for c in y.unique().tolist():
            if c:
                colours[c].append(x[y == c].mean(0))
    pooled = torch.stack([v for vs in colours.values() for v in vs])
    mean, std = pooled.mean(0), pooled.std(0)
    for c, vs in colours.items():
        err = 4 * std / len(vs) ** 0.5
        assert ((torch.stack(vs).mean(0) - mean).abs() < err).all(), f"class {c}"


def test_augment_keeps_image_and_labels_aligned():
    g = torch.Generator().manual_seed(0)
    image = torch.zeros(3, 16, 16)
    labels = torch.zeros(16, 16, dtype=torch.long)
    image[:, 6:10, 6:10] = 1.0
    labels[6:10, 6:10] = 4
    out_img, out_lab = augment(image, labels, g, max_shift=3)
    stroke = out_img.mean(0) > out_img.mean()
    assert torch.equal(stroke, out_lab == 4)
    assert (out_lab == 4).sum() == 16


def test_dataset_items_and_epoch_augmentation():
    ds = DigitScenes("train", 4, SceneConfig(image_size=32), augment=True)
    x, y = ds[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert y.shape == (32, 32) and y.dtype == torch.int64
    assert torch.equal(ds[0][0], x), "same epoch, same augmentation"
    ds.set_epoch(1)
    assert not torch.equal(ds[0][0], x)
    plain = DigitScenes("train", 4, SceneConfig(image_size=32))
    assert torch.equal(plain[0][0], plain.images[0].float() / 255)


def test_missing_data_file_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="extract_mnist.py"):
        data.load_mnist(tmp_path / "nope.npz")


def test_default_scenes_are_pinned():
    """The regime knobs (touching, distractors, digit pool) draw no random numbers when off: the
    default scenes are the ones every earlier result was measured on (hash taken before them)."""
    import hashlib

    img, lab = generate_scenes("train", 4)
    digest = hashlib.sha256(img.numpy().tobytes() + lab.numpy().tobytes()).hexdigest()
    assert digest == "0a350525ddfb33788b5d05e645f2bfc1067720b6f3fee769e6ecf7f33a9a8c18"


def _class_contacts(lab: torch.Tensor) -> int:
    """4-neighbour pixel pairs whose two pixels are different digit classes."""
    pairs = [(lab[:, 1:, :], lab[:, :-1, :]), (lab[:, :, 1:], lab[:, :, :-1])]
    return sum(int(((a > 0) & (b > 0) & (a != b)).sum()) for a, b in pairs)


def test_touching_makes_classes_meet():
    apart = generate_scenes("val", 60, SceneConfig(min_digits=3, max_digits=4))
    near = generate_scenes("val", 60, SceneConfig(min_digits=3, max_digits=4, touching=1.0))
    assert _class_contacts(near[1]) > 1.5 * _class_contacts(apart[1])  # measured: 2.1x


def test_distractors_are_strokes_labelled_background():
    cfg = SceneConfig(distractors=3, noise=0.0, texture=0.0, gradient=0.0)
    img, lab = generate_scenes("val", 30, cfg)
    plain_img, plain_lab = generate_scenes(
        "val", 30, SceneConfig(noise=0.0, texture=0.0, gradient=0.0)
    )

    # Without noise the background is one colour per scene: distractor strokes show as
    # background-labelled pixels far from it, which a plain scene never has.
    def off_background(img, lab):
        x = img.float()
        bg_colour = x[:, :, :1, :1]
        far = (x - bg_colour).abs().amax(1) > 60
        # a digit's own anti-aliased rim (opacity < 0.5) is coloured but labelled background
        near_digit = torch.nn.functional.max_pool2d((lab > 0).float()[:, None], 5, 1, 2)[:, 0] > 0
        return int((far & (lab == 0) & ~near_digit).sum())

    assert off_background(plain_img, plain_lab) == 0
    assert off_background(img, lab) > 100
    assert lab.max() < NUM_CLASSES


def test_digit_pool_limits_training_digits():
    _, digits = data.load_mnist()
    pool = data.pool_indices(digits, "train", 35)
    assert np.bincount(digits[pool], minlength=10).tolist() == [35] * 10
    assert set(pool) <= set(split_indices(digits, "train"))
    assert np.array_equal(data.pool_indices(digits, "train"), split_indices(digits, "train"))
    with pytest.raises(ValueError, match="digits_per_class must be in"):
        data.pool_indices(digits, "val", 76)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(image_size=4), "image_size must be an integer >= 8"),
        (dict(image_size=64.0), "image_size must be an integer"),
        (
            dict(min_digits=4, max_digits=3),
            r"max_digits \(3\) is below SceneConfig.min_digits \(4\)",
        ),
        (dict(min_scale=0.0), "min_scale must be a finite number > 0"),
        (
            dict(min_scale=0.5, max_scale=0.4),
            r"max_scale \(0.4\) is below SceneConfig.min_scale \(0.5\)",
        ),
        (dict(touching=1.5), "touching must be a finite number >= 0 and <= 1"),
        (dict(noise=-0.1), "noise must be a finite number >= 0"),
        (dict(texture=float("nan")), "texture must be a finite number >= 0"),
        (dict(thicken=0), "thicken must be an integer >= 1"),
        (dict(distractors=True), "distractors must be an integer"),
    ],
)
def test_scene_config_names_a_setting_that_cannot_make_scenes(kwargs, match):
    with pytest.raises(ValueError, match="SceneConfig." + match):
        SceneConfig(**kwargs)


def test_scene_config_takes_numpy_and_torch_numbers_as_python_ones():
    """A value from a numpy sweep or a 0-dim tensor counts as the number it holds (as before
    the rule table); a float for an integer field is still refused."""
    cfg = SceneConfig(
        image_size=np.int64(32), max_digits=np.int32(4), touching=np.float32(0.5),
        max_overlap=torch.tensor(0.2),
    )  # fmt: skip
    assert (cfg.image_size, cfg.max_digits) == (32, 4) and type(cfg.image_size) is int
    assert type(cfg.touching) is float and cfg.max_overlap == pytest.approx(0.2)
    assert generate_scenes("val", 2, cfg)[0].shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="image_size must be an integer"):
        SceneConfig(image_size=np.float64(32.0))


def test_train_config_checks_scene_fields_by_the_scene_rules():
    """TrainConfig's scene fields take their bounds and help from SceneConfig's table, so the
    two cannot drift apart; only `inert` (no effect on benchmark data) is TrainConfig's own."""
    from ctx.engine.config import RULES

    for field in ("min_digits", "max_digits", "max_overlap", "touching", "distractors"):
        ours, theirs = RULES[field], data.SCENE_RULES[field]
        assert (ours.help, ours.ge, ours.gt, ours.le, ours.lt) == (
            theirs.help, theirs.ge, theirs.gt, theirs.le, theirs.lt,
        )  # fmt: skip
        assert ours.inert is not None and theirs.inert is None
    assert set(data.SCENE_RULES) == set(SceneConfig.__dataclass_fields__)


def test_generate_scenes_refuses_bad_counts_before_drawing():
    assert generate_scenes("val", 0, SceneConfig(image_size=32))[0].shape == (0, 3, 32, 32)
    with pytest.raises(ValueError, match="num_scenes must be an int >= 0, got -1"):
        DigitScenes("val", -1)
    with pytest.raises(ValueError, match="cfg must be a ctx.data.SceneConfig"):
        generate_scenes("val", 2, {"image_size": 32})
