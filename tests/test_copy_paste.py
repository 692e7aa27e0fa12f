"""Copy-paste augmentation (``mobilenets.data.copy_paste``) on VOC folders the tests make: lossless PNG
photos of solid squares, so a pasted box's pixels say which object it came from."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mobilenets
from mobilenets.data.annotations import AnnotatedImages
from mobilenets.data.copy_paste import MIN_SIDE, CopyPaste
from mobilenets.data.datasets import resolve_data
from mobilenets.data.detection import load_detection_splits
from mobilenets.data.images import load_image

COLOURS = {"common": (220, 40, 40), "rare": (40, 40, 220), "tiny": (40, 220, 40)}


def _folder(root: Path, n: int = 12) -> Path:
    """``n`` photos of 120x100 px with a 20 px "common" square; the first also holds a 16 px "rare" one and
    a "tiny" one smaller than :data:`MIN_SIDE`."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    for k in range(n):
        arr = np.full((100, 120, 3), 128, np.uint8)
        objects = [("common", [10 + k, 10, 30 + k, 30])]
        if k == 0:
            objects += [("rare", [60, 50, 76, 66]), ("tiny", [90, 80, 90 + MIN_SIDE - 2, 80 + MIN_SIDE - 2])]
        for name, (x1, y1, x2, y2) in objects:
            arr[y1:y2, x1:x2] = COLOURS[name]
        arr[0, :] = rng.integers(0, 255, (120, 3))  # not a blank image
        Image.fromarray(arr).save(root / "images" / f"{k}.png")
        ann = ET.Element("annotation")
        ET.SubElement(ann, "filename").text = f"{k}.png"
        for name, box in objects:
            obj = ET.SubElement(ann, "object")
            ET.SubElement(obj, "name").text = name
            bb = ET.SubElement(obj, "bndbox")
            for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), (box[0] + 1, box[1] + 1, box[2], box[3])):
                ET.SubElement(bb, tag).text = str(v)  # VOC's 1-based corners
        ET.ElementTree(ann).write(root / "annotations" / f"{k}.xml")
    return root


def _train(root: Path) -> AnnotatedImages:
    """Every image of the folder (its split's two parts together)."""
    splits = load_detection_splits(resolve_data(root, task="detection"))
    return AnnotatedImages(splits.train.samples + splits.val.samples, splits.train.classes)


def test_pastes_each_class_equally_often_where_no_box_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every class is pasted about equally often though "rare" is one box in 13; a pasted box holds the
    object's own pixels, overlaps no other box and is not ignored; objects under MIN_SIDE are never cut;
    each object's image is decoded once (the cut-outs are kept)."""
    import mobilenets.data.copy_paste as cp

    base = _train(_folder(tmp_path / "voc"))
    classes = base.classes
    ds = CopyPaste(base, p=1.0, scale=(1.0, 1.0))
    decoded: list[Path] = []

    def counted(path: Path) -> Image.Image:
        decoded.append(path)
        return load_image(path)
    monkeypatch.setattr(cp, "load_image", counted)
    assert sorted(classes[c - 1] for c in ds.classes) == ["common", "rare"]  # "tiny" is too small to cut
    torch.manual_seed(0)
    pasted: Counter[str] = Counter()
    for i in range(len(ds)):
        for _ in range(4):
            img, t = ds[i]
            _, own = base[i]
            n = len(own["boxes"])
            assert torch.equal(t["boxes"][:n], own["boxes"]) and torch.equal(t["labels"][:n], own["labels"])
            assert len(t["boxes"]) == len(t["labels"]) == len(t["ignore"]) and not t["ignore"][n:].any()
            assert len(t["boxes"]) - n <= 3
            arr = np.asarray(img)
            for j in range(n, len(t["boxes"])):
                box = t["boxes"][j].tolist()
                others = [b for k, b in enumerate(t["boxes"].tolist()) if k != j]
                assert not any(min(box[2], b[2]) > max(box[0], b[0]) and min(box[3], b[3]) > max(box[1], b[1])
                               for b in others)
                name = classes[int(t["labels"][j]) - 1]
                x1, y1, x2, y2 = (int(v) for v in box)
                assert (arr[y1:y2, x1:x2] == COLOURS[name]).all(), name
                pasted[name] += 1
    total = sum(pasted.values())
    assert total > len(ds) * 4  # 1-3 per image, where there is room
    assert len(decoded) <= sum(len(v) for v in ds.bank.values()) == len(ds) + 1  # once per object
    assert 0.35 < pasted["rare"] / total < 0.65, pasted


def test_no_paste_at_zero_and_clear_errors(tmp_path: Path) -> None:
    base = _train(_folder(tmp_path / "voc"))
    ds = CopyPaste(base, p=0.0)
    img, t = ds[0]
    own_img, own = base[0]
    assert torch.equal(t["boxes"], own["boxes"]) and np.array_equal(np.asarray(img), np.asarray(own_img))
    with pytest.raises(ValueError, match="annotated image files .*list"):
        CopyPaste([], p=0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="probability"):
        CopyPaste(base, p=1.5)


def test_the_detection_recipe_pastes_and_a_flag_wins(tmp_path: Path) -> None:
    """Fine-tuning a detector on image files: copy-paste at 0.5 (the recipe's), 0 turns it off; the
    embedded canvases have no files to cut from: off there, and an error when asked for."""
    root = _folder(tmp_path / "voc")
    start = mobilenets.save_weights(mobilenets.create_model("0.25-MobileNetV2-96", num_classes=10),
                                    tmp_path / "start.safetensors")
    recipe = mobilenets.TrainConfig(data=str(root), model="0.25-SSDLite-MobileNetV2-96", init=str(start))
    assert recipe.resolved().copy_paste == 0.5
    assert mobilenets.TrainConfig(data=str(root), model="0.25-SSDLite-MobileNetV2-96").resolved().copy_paste == 0
    assert mobilenets.TrainConfig(data=str(root), model="0.25-SSDLite-MobileNetV2-96", init=str(start),
                                  copy_paste=0.0).resolved().copy_paste == 0
    digits = mobilenets.TrainConfig(model="0.25-SSDLite-MobileNetV2-96", init=str(start))
    assert digits.resolved().copy_paste == 0
    with pytest.raises(ValueError, match="copy-paste cuts objects out of image files"):
        mobilenets.TrainConfig(model="0.25-SSDLite-MobileNetV2-96", copy_paste=0.5).resolved()
    with pytest.raises(ValueError, match="copy_paste"):
        mobilenets.TrainConfig(data=str(root), model="0.25-SSDLite-MobileNetV2-96", copy_paste=1.5).resolved()
