"""Real data as users bring it: the annotation layouts labeling tools write, every bad-annotation case
reported by file, small sets that do not crash; fine-tuning from folded (TFLite) weights; training
that learns nothing says so; int8 exports scored with labels; the report a run leaves."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from conftest import randomize_bn, shapes_image
from PIL import Image

import mobilenets
from mobilenets.data import resolve_data
from mobilenets.data.detection import load_detection_splits
from mobilenets.data.segmentation import load_segmentation_splits
from mobilenets.deploy.evaluate import evaluate_in_runtime
from mobilenets.weights import convert_weights

FAST_DET = dict(model="0.25-SSDLite-MobileNet-96", progress=False, batch_size=4, epochs=1)


def _kinds(splits: Any) -> dict[str, int]:
    return splits.issues.counts()


def _files_of(splits: Any, kind: str) -> list[str]:
    return [Path(f).name for k, f, _ in splits.issues.items if k.startswith(kind)]


def _load(root: Path, **kw: Any) -> Any:
    return load_detection_splits(resolve_data(root, task="detection", **kw))


def _voc_xml(path: Path, filename: str, objects: list[tuple[str, list[int]]], size: tuple[int, int] | None) -> None:
    ann = ET.Element("annotation")
    ET.SubElement(ann, "filename").text = filename
    if size is not None:
        s = ET.SubElement(ann, "size")
        ET.SubElement(s, "width").text, ET.SubElement(s, "height").text = str(size[0]), str(size[1])
    for name, b in objects:
        obj = ET.SubElement(ann, "object")
        ET.SubElement(obj, "name").text = name
        bb = ET.SubElement(obj, "bndbox")
        for k, v in zip(("xmin", "ymin", "xmax", "ymax"), (b[0] + 1, b[1] + 1, b[2], b[3])):
            ET.SubElement(bb, k).text = str(v)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(ann).write(path)


def _shapes(n: int, seed: int = 0) -> list[tuple[Image.Image, list[list[int]], list[str]]]:
    rng = np.random.default_rng(seed)
    return [shapes_image(rng, (int(rng.integers(80, 120)), int(rng.integers(80, 120)))) for _ in range(n)]


# ------------------------------------------------------------------------------ detection layouts


def test_voc_with_image_sets_finds_images_by_id(tmp_path: Path) -> None:
    """A labeling service's VOC export: ``<filename>`` rewritten (``000001_jpg.rf.<hash>.jpg``), the file is
    ``JPEGImages/000001.jpg``: found by its id, as VOC's devkit finds it."""
    root = tmp_path / "voc"
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    ids = [f"{i:06d}" for i in range(10)]
    for i, (img, boxes, names) in zip(ids, _shapes(10)):
        img.save(root / "JPEGImages" / f"{i}.jpg")
        _voc_xml(root / "Annotations" / f"{i}.xml", f"{i}_jpg.rf.29da{i}.jpg", list(zip(names, boxes)), img.size)
    (root / "ImageSets/Main/train.txt").write_text("\n".join(ids[:7]))
    (root / "ImageSets/Main/val.txt").write_text("\n".join(ids[7:]))
    splits = _load(root)
    assert (len(splits.train), len(splits.val)) == (7, 3) and not splits.issues
    assert splits.train.samples[0][0].name == "000000.jpg" and set(splits.classes) == {"red", "blue"}


def test_loose_voc_xml_split_by_val_split(tmp_path: Path) -> None:
    """XML files in ``annotations/`` beside ``images/``, no split (the raccoon layout); and a Roboflow export
    with ``train/`` and ``valid/`` holding images and XML side by side."""
    root = tmp_path / "loose"
    for k, (img, boxes, names) in enumerate(_shapes(20)):
        (root / "images").mkdir(parents=True, exist_ok=True)
        img.save(root / "images" / f"pic-{k}.jpg")
        _voc_xml(root / "annotations" / f"pic-{k}.xml", f"pic-{k}.jpg", list(zip(names, boxes)), img.size)
    splits = _load(root, val_split=0.25, seed=3)
    assert (len(splits.train), len(splits.val)) == (15, 5) and not splits.issues
    again = _load(root, val_split=0.25, seed=3)
    assert [p for p, _ in again.val.samples] == [p for p, _ in splits.val.samples]  # seeded
    rf = tmp_path / "roboflow"
    for split, n in (("train", 8), ("valid", 3)):
        for k, (img, boxes, names) in enumerate(_shapes(n, seed=len(split))):
            (rf / split).mkdir(parents=True, exist_ok=True)
            img.save(rf / split / f"{split}{k}_jpg.rf.abc.jpg")
            _voc_xml(rf / split / f"{split}{k}_jpg.rf.abc.xml", f"{split}{k}_jpg.rf.abc.jpg", list(zip(names, boxes)),
                     img.size)
    splits = _load(rf)
    assert (len(splits.train), len(splits.val)) == (8, 3)
    assert all(p.parent.name == "valid" for p, _ in splits.val.samples)


def _coco(images: list[dict], anns: list[dict], cats: list[dict]) -> str:
    return json.dumps({"info": {}, "images": images, "annotations": anns, "categories": cats})


def _coco_split(folder: Path, shapes: list, cat_ids: dict[str, int], start: int = 0) -> tuple[list, list]:
    images, anns = [], []
    folder.mkdir(parents=True, exist_ok=True)
    for k, (img, boxes, names) in enumerate(shapes):
        name = f"im{start + k}_png.rf.{k:04x}.jpg"
        img.save(folder / name)
        images.append({"id": k, "file_name": name, "width": img.width, "height": img.height})
        anns += [{"id": len(anns), "image_id": k, "category_id": cat_ids[n], "iscrowd": 0,
                  "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]} for b, n in zip(boxes, names)]
    return images, anns


def test_coco_with_any_file_names_and_ids_from_zero(tmp_path: Path) -> None:
    """``annotations/custom_train.json`` + ``custom_val.json`` (the facemask layout), category ids from 0;
    ``--data`` one JSON file (split by --val-split); Roboflow's ``train/_annotations.coco.json`` with its
    placeholder supercategory."""
    root = tmp_path / "custom"
    cats = [{"id": 0, "name": "red", "supercategory": "N/A"}, {"id": 1, "name": "blue", "supercategory": "N/A"}]
    (root / "annotations").mkdir(parents=True)
    for split, n in (("train", 12), ("val", 4)):
        images, anns = _coco_split(root / f"{split}2017", _shapes(n, seed=n), {"red": 0, "blue": 1}, 100 * n)
        (root / "annotations" / f"custom_{split}.json").write_text(_coco(images, anns, cats))
    splits = _load(root)
    assert (len(splits.train), len(splits.val)) == (12, 4) and splits.classes == ["red", "blue"] and not splits.issues
    labels = torch.cat([t["labels"] for _, t in splits.train.samples])
    assert set(labels.tolist()) == {1, 2}  # ids 0 and 1 -> labels 1 and 2 (0 is the background)
    one = _load(root / "annotations" / "custom_train.json", val_split=0.25)
    assert (len(one.train), len(one.val)) == (9, 3)
    rf = tmp_path / "rf"
    cats = [{"id": 0, "name": "shapes", "supercategory": "none"}, {"id": 1, "name": "red", "supercategory": "shapes"},
            {"id": 2, "name": "blue", "supercategory": "shapes"}]
    for split, n in (("train", 6), ("valid", 3)):
        images, anns = _coco_split(rf / split, _shapes(n, seed=n), {"red": 1, "blue": 2})
        (rf / split / "_annotations.coco.json").write_text(_coco(images, anns, cats))
    splits = _load(rf)
    assert splits.classes == ["red", "blue"] and (len(splits.train), len(splits.val)) == (6, 3)
    assert list(_kinds(splits)) == ["category with no boxes that is the others' supercategory: left out"]


def _yolo_rows(boxes: list[list[int]], names: list[str], size: tuple[int, int]) -> str:
    w, h = size
    return "".join(f"{int(n == 'blue')} {(b[0] + b[2]) / 2 / w} {(b[1] + b[3]) / 2 / h} {(b[2] - b[0]) / w} "
                   f"{(b[3] - b[1]) / h}\n" for b, n in zip(boxes, names))


def test_yolo_layouts(tmp_path: Path) -> None:
    """Ultralytics' ``images/{train,val}`` + ``labels/{train,val}`` + data.yaml (names as a mapping), Roboflow's
    ``{train,valid}/{images,labels}`` with its ``../train/images`` paths, and a bare ``images/`` + ``labels/``;
    a polygon row becomes its box; an image without a label file is a background image, counted."""
    root = tmp_path / "ultra"
    shapes = _shapes(10)
    for k, (img, boxes, names) in enumerate(shapes):
        split = "train" if k < 7 else "val"
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        img.save(root / "images" / split / f"{k}.jpg")
        if k != 3:
            (root / "labels" / split / f"{k}.txt").write_text(_yolo_rows(boxes, names, img.size))
    (root / "data.yaml").write_text(yaml.safe_dump({"path": ".", "train": "images/train", "val": "images/val",
                                                    "names": {0: "red", 1: "blue"}}))
    splits = _load(root)
    assert splits.classes == ["red", "blue"] and (len(splits.train), len(splits.val)) == (7, 3)
    img, boxes, names = shapes[0]
    got = splits.train.samples[0][1]["boxes"]
    assert torch.allclose(got, torch.tensor(boxes, dtype=torch.float32), atol=1e-3)
    assert _kinds(splits) == {"images without a label file: trained on as having no objects": 1}
    rf = tmp_path / "rf"
    for split, part in (("train", shapes[:7]), ("valid", shapes[7:])):
        for k, (img, boxes, names) in enumerate(part):
            for d in ("images", "labels"):
                (rf / split / d).mkdir(parents=True, exist_ok=True)
            img.save(rf / split / "images" / f"{k}.jpg")
            rows = _yolo_rows(boxes, names, img.size)
            if k == 0:  # a segment: class x1 y1 x2 y2 x3 y3
                b = boxes[0]
                w, h = img.size
                c = int(names[0] == "blue")
                polygon = f"{c} {b[0] / w} {b[1] / h} {b[2] / w} {b[1] / h} {b[2] / w} {b[3] / h}\n"
                rows = polygon + rows.split("\n", 1)[1]
            (rf / split / "labels" / f"{k}.txt").write_text(rows)
    (rf / "data.yaml").write_text(yaml.safe_dump({"train": "../train/images", "val": "../valid/images", "nc": 2,
                                                  "names": ["red", "blue"]}))
    splits = _load(rf)
    assert (len(splits.train), len(splits.val)) == (7, 3) and not splits.issues
    assert torch.allclose(splits.train.samples[0][1]["boxes"][0], torch.tensor(shapes[0][1][0], dtype=torch.float32),
                          atol=1e-3)
    bare = tmp_path / "bare"
    for k, (img, boxes, names) in enumerate(shapes):
        for d in ("images", "labels"):
            (bare / d).mkdir(parents=True, exist_ok=True)
        img.save(bare / "images" / f"{k}.png")
        (bare / "labels" / f"{k}.txt").write_text(_yolo_rows(boxes, names, img.size))
    (bare / "classes.txt").write_text("red\nblue\n")
    splits = _load(bare, val_split=0.3)
    assert splits.classes == ["red", "blue"] and (len(splits.train), len(splits.val)) == (7, 3)


# ------------------------------------------------------------------------------ bad annotations


def test_bad_coco_annotations_are_counted_by_file(tmp_path: Path) -> None:
    """Every bad case is recorded with its file, the rest trains; a syntax error names the file and place."""
    root = tmp_path / "bad"
    shapes = _shapes(8)
    images, anns = _coco_split(root / "images", shapes, {"red": 1, "blue": 2})
    w2 = images[2]["width"]
    anns += [
        {"id": 900, "image_id": 0, "category_id": 9, "bbox": [1, 1, 10, 10]},  # unknown category
        {"id": 901, "image_id": 0, "category_id": 1, "bbox": [5, 5, -4, 10]},  # negative width
        {"id": 902, "image_id": 1, "category_id": 1, "bbox": [5, 5, 0, 0]},  # zero area
        {"id": 903, "image_id": 2, "category_id": 1, "bbox": [w2 - 10, 5, 40, 10]},  # past the edge: clipped
        {"id": 904, "image_id": 2, "category_id": 1, "bbox": [w2 + 50, 5, 10, 10]},  # outside: left out
        {"id": 905, "image_id": 77, "category_id": 1, "bbox": [1, 1, 10, 10]},  # image id not in images
    ]
    images[3]["width"] = 0  # a size of 0: the file's own is used
    images.append({"id": 8, "file_name": "missing.jpg", "width": 10, "height": 10})
    (root / "images" / "fake.jpg").write_bytes(b"\x00not an image")
    images.append({"id": 9, "file_name": "fake.jpg", "width": 10, "height": 10})
    Image.open(root / "images" / images[4]["file_name"]).save(root / "images" / "really.jpg", format="PNG")
    images.append({"id": 10, "file_name": "really.jpg", "width": images[4]["width"], "height": images[4]["height"]})
    (root / "annotations.json").write_text(_coco(images, anns, [{"id": 1, "name": "red"}, {"id": 2, "name": "blue"}]))
    splits = _load(root / "annotations.json")
    kinds = _kinds(splits)
    assert kinds["annotation of an unknown category: left out"] == 1
    assert kinds["box of zero or negative size: left out"] == 2
    assert kinds["box past the image edge: clipped"] == 1
    assert kinds["box outside the image: left out"] == 1
    assert kinds["annotation of an image id that 'images' does not list: left out"] == 1
    assert kinds["image size in the annotations differs from the file: the file's is used"] == 1
    assert _files_of(splits, "image file not found") == ["missing.jpg"]
    assert _files_of(splits, "unreadable image") == ["fake.jpg"]
    assert _files_of(splits, "extension does not match") == ["really.jpg"]
    assert len(splits.train) + len(splits.val) == 9  # 8 photos + the PNG named .jpg
    clipped = next(t for p, t in splits.train.samples + splits.val.samples if p.name == images[2]["file_name"])
    assert float(clipped["boxes"][:, 2].max()) == w2
    (root / "annotations.json").write_text('{"images": [\n{"id": 1,}]}')
    with pytest.raises(ValueError, match=r"annotations.json: not valid JSON: .* line 2, column 10"):
        _load(root / "annotations.json")


def test_bad_voc_annotations_and_missing_images(tmp_path: Path) -> None:
    root = tmp_path / "voc"
    shapes = _shapes(8)
    for k, (img, boxes, names) in enumerate(shapes):
        (root / "images").mkdir(parents=True, exist_ok=True)
        if k != 5:
            img.save(root / "images" / f"{k}.jpg")
        objects = list(zip(names, boxes))
        if k == 1:
            objects.append(("green", [1, 1, 10, 10]))  # only in this file: a class of its own
        _voc_xml(root / "xml" / f"{k}.xml", f"{k}.jpg", objects, (0, 0) if k == 2 else img.size)
    (root / "xml" / "6.xml").write_text("<annotation><object><name>red</name></annotation>")
    splits = _load(root, val_split=0.25)
    kinds = _kinds(splits)
    assert _files_of(splits, "malformed XML") == ["6.xml"]
    assert _files_of(splits, "image file not found") == ["5.xml"]
    assert _files_of(splits, "size tag of 0") == ["2.xml"]
    assert "green" in splits.classes and sum(kinds.values()) == 3
    assert len(splits.train) + len(splits.val) == 6


def test_small_detection_sets_train(tmp_path: Path) -> None:
    """Five images at batch size 4: the last batch of one would meet BatchNorm on a 1x1 map; it trains."""
    root = tmp_path / "five"
    for k, (img, boxes, names) in enumerate(_shapes(7)):
        (root / "images").mkdir(parents=True, exist_ok=True)
        img.save(root / "images" / f"{k}.jpg")
        _voc_xml(root / "annotations" / f"{k}.xml", f"{k}.jpg", list(zip(names, boxes)), img.size)
    res = mobilenets.train(mobilenets.TrainConfig(data=str(root), val_split=0.25, out=str(tmp_path / "run"),
                                                  **FAST_DET))
    assert res.history[0]["step"] == 1 and res.map50 is not None  # 5 training images at batch 4: one step


def test_missing_and_unreadable_are_different_messages(tmp_path: Path) -> None:
    from mobilenets.data import UnreadableImage, load_image

    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    with pytest.raises(UnreadableImage, match="missing.jpg: file not found"):
        load_image(tmp_path / "missing.jpg")
    with pytest.raises(UnreadableImage, match="bad.jpg: not a readable image"):
        load_image(tmp_path / "bad.jpg")


# ------------------------------------------------------------------------------ segmentation layouts


def test_the_data_layout_names_the_task(tmp_path: Path) -> None:
    """``train --data D`` with no model or task trains what D's layout is for: boxes make a detector, masks
    a segmenter, class folders a classifier. Before, raccoon's ``images/`` + ``annotations/`` trained a
    one-class classifier to 100% top-1. A classifier named for boxes, two layouts at once, a single class
    folder and an empty one are errors that say what to do."""
    voc = tmp_path / "voc"
    for k, (img, boxes, names) in enumerate(_shapes(6)):
        (voc / "images").mkdir(parents=True, exist_ok=True)
        img.save(voc / "images" / f"pic-{k}.jpg")
        _voc_xml(voc / "annotations" / f"pic-{k}.xml", f"pic-{k}.jpg", list(zip(names, boxes)), img.size)
    seg = tmp_path / "seg"
    rng = np.random.default_rng(0)
    for k in range(6):
        for d in ("images", "masks"):
            (seg / d).mkdir(parents=True, exist_ok=True)
        _photo(rng, (50, 40)).save(seg / "images" / f"p{k}.jpg")
        Image.fromarray(np.where(np.arange(50)[None] < 25, 255, 0).repeat(40, 0).astype(np.uint8)).save(
            seg / "masks" / f"p{k}.png")
    cls = tmp_path / "cls"
    for c in ("cat", "dog"):
        for k in range(3):
            (cls / c).mkdir(parents=True, exist_ok=True)
            _photo(rng, (30, 30)).save(cls / c / f"{k}.jpg")
    one = tmp_path / "one" / "cat"
    one.mkdir(parents=True)
    _photo(rng, (30, 30)).save(one / "0.jpg")
    for data, task in ((voc, "detection"), (seg, "segmentation"), (cls, "classification")):
        assert mobilenets.TrainConfig(data=str(data)).resolved().task == task
    with pytest.raises(ValueError, match="is a detection dataset and 0.25-MobileNet-96 is not a detection model"):
        mobilenets.TrainConfig(data=str(voc), model="0.25-MobileNet-96").resolved()
    fast = dict(model="0.25-MobileNet-32", epochs=1, progress=False, out=str(tmp_path / "run"))
    with pytest.raises(ValueError, match="class folders without images: annotations"):  # --task: folders as classes
        mobilenets.train(mobilenets.TrainConfig(data=str(voc), task="classification", **fast))
    with pytest.raises(ValueError, match=r"one class folder \('cat'\); a classifier needs two or more"):
        mobilenets.train(mobilenets.TrainConfig(data=str(tmp_path / "one"), **fast))
    (seg / "Annotations").mkdir()
    (seg / "Annotations" / "p0.xml").write_text((voc / "annotations" / "pic-0.xml").read_text())
    with pytest.raises(ValueError, match="holds both box annotations and masks; pass --task detection or "
                                         "--task segmentation"):
        mobilenets.TrainConfig(data=str(seg)).resolved()
    (cls / "unsorted").mkdir()
    with pytest.raises(ValueError, match="class folders without images: unsorted"):
        mobilenets.train(mobilenets.TrainConfig(data=str(cls), **fast))


def test_the_init_weights_name_the_model(refdata: Path, tmp_path: Path) -> None:
    """``--init`` without ``--model``: a classifier fine-tunes the init's own architecture, a detector or
    segmenter the task's default head on the init's backbone, and a detector's init is its own model.
    Before, a V1 0.25 file met the V2 1.0 default and failed with "no tensor matches"."""
    models = refdata / "models"
    cls, voc = tmp_path / "cls", tmp_path / "voc"
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (cls / c).mkdir(parents=True)
        _photo(rng, (30, 30)).save(cls / c / "0.jpg")
    img, boxes, names = _shapes(1)[0]
    (voc / "images").mkdir(parents=True)
    img.save(voc / "images" / "a.jpg")
    _voc_xml(voc / "annotations" / "a.xml", "a.jpg", list(zip(names, boxes)), img.size)

    def model(data: Path, init: str, **kw: Any) -> str:
        return str(mobilenets.TrainConfig(data=str(data), init=str(models / init), **kw).resolved().model)

    assert model(cls, "mobilenet_v1_0.25_224.tflite") == "0.25-MobileNet-224"
    assert model(cls, "coco_ssd_mobilenet_v1_1.0_quant_2018_06_29.tflite") == "0.75-MobileNet-224"
    assert model(voc, "mobilenet_v1_0.25_224.tflite") == "0.25-SSDLite-MobileNet-300"
    assert model(voc, "coco_ssd_mobilenet_v1_1.0_quant_2018_06_29.tflite") == "0.75-SSD-MobileNet-300"
    assert model(cls, "mobilenet_v1_0.25_224.tflite", model="1.0-MobileNetV2-96") == "1.0-MobileNetV2-96"


def test_small_objects_name_the_p3_or_p2_detector(tmp_path: Path) -> None:
    """With no ``--model``, boxes too small for TF's SSD anchors (fewer than half overlap one at IoU 0.5)
    make the ``-p3`` model the default, or ``-p2`` (at 1.2 times the input size, unless one is named) when
    -p3's anchors still leave a quarter uncovered, and the note that the run prints says why; large boxes and
    a named model keep theirs. Before, facemask's faces trained TF's SSDLite unless the user knew better."""
    rng = np.random.default_rng(0)

    def folder(name: str, side: int) -> Path:
        root = tmp_path / name
        (root / "images").mkdir(parents=True)
        for k in range(6):
            _photo(rng, (200, 200)).save(root / "images" / f"{k}.jpg")
            corners = rng.integers(0, 200 - side, (3, 2)).tolist()
            _voc_xml(root / "annotations" / f"{k}.xml", f"{k}.jpg",
                     [("face", [x, y, x + side, y + side]) for x, y in corners], (200, 200))
        return root

    small, large, tiny = folder("small", 10), folder("large", 90), folder("tiny", 5)
    chosen = mobilenets.TrainConfig(data=str(small)).resolved()
    default = mobilenets.TrainConfig(data=str(large)).resolved()
    assert chosen.model == f"{default.model}-p3" and default.model_note == ""
    finest = mobilenets.TrainConfig(data=str(tiny)).resolved()
    assert default.model == "1.0-SSDLite-MobileNetV2-300"  # VOC's: -p2 takes 1.2 times its input, to 32 px
    assert finest.model == "1.0-SSDLite-MobileNetV2-352-p2"
    assert "whose stride-4 and stride-8 maps have smaller anchors, at 352 px rather than 300" in finest.model_note
    sized = mobilenets.TrainConfig(data=str(tiny), input_size=320).resolved()  # a named input size is kept
    assert sized.model == f"{default.model}-p2" and sized.input_size == 320 and "--input-size" not in sized.model_note
    assert f"model {chosen.model}: only 0% of the 15 training boxes overlap an anchor of {default.model}" in \
        chosen.model_note  # 15: one image of six is held out
    assert "model_note" not in chosen.to_dict()  # config.yaml names the model; resuming does not choose again
    named = mobilenets.TrainConfig(data=str(small), model="1.0-SSDLite-MobileNetV2-320").resolved()
    assert named.model == "1.0-SSDLite-MobileNetV2-320" and named.model_note == ""


def _photo(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def test_segmentation_folders_matched_by_stem(tmp_path: Path) -> None:
    """Any two folders matched by file stem, split by --val-split; binary 0/255 masks are background and
    foreground; a mask of another size is resized (nearest) and reported; orphans on either side are reported."""
    rng = np.random.default_rng(0)
    root = tmp_path / "seg"
    for k in range(10):
        (root / "img").mkdir(parents=True, exist_ok=True)
        (root / "gt").mkdir(parents=True, exist_ok=True)
        _photo(rng, (50, 40)).save(root / "img" / f"p{k}.jpg")
        m = np.zeros((40, 50), np.uint8)
        m[5:20, 5:25] = 255
        Image.fromarray(m if k != 3 else m[::2, ::2]).save(root / "gt" / f"p{k}_mask.png")
    _photo(rng, (50, 40)).save(root / "img" / "lonely.jpg")
    spec = resolve_data(root, task="segmentation", val_split=0.2)
    splits = load_segmentation_splits(spec, [])
    assert spec.kind == "masks" and splits.classes == ["background", "foreground"]
    assert (len(splits.train), len(splits.val)) == (8, 2)
    assert _files_of(splits, "mask of another size") == ["p3_mask.png"]
    assert _files_of(splits, "image without a mask") == ["lonely.jpg"]
    pair = next(i for i, (p, _) in enumerate(splits.train.pairs + splits.val.pairs) if p.stem == "p3")
    ds = splits.train if pair < len(splits.train) else splits.val
    _img, mask = ds[pair % len(splits.train) if ds is splits.train else pair - len(splits.train)]
    assert tuple(mask.shape) == (40, 50) and set(mask.unique().tolist()) == {0, 1}


def test_segmentation_palette_and_colour_masks(tmp_path: Path) -> None:
    """Palette masks hold class ids (255 = ignore); RGB colour masks get a class per colour, named by CVAT's
    labelmap.txt; photos and masks in train/ and val/ folders keep that split."""
    rng = np.random.default_rng(1)
    root = tmp_path / "pal"
    for split, n in (("train", 5), ("val", 2)):
        for k in range(n):
            (root / split / "JPEGImages").mkdir(parents=True, exist_ok=True)
            (root / split / "SegmentationClass").mkdir(parents=True, exist_ok=True)
            _photo(rng, (32, 32)).save(root / split / "JPEGImages" / f"{k}.jpg")
            m = np.zeros((32, 32), np.uint8)
            m[4:12, 4:12], m[20:28, 20:28], m[12, :] = 1, 3, 255
            p = Image.fromarray(m, "P")
            p.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [224, 224, 192] * 252)
            p.save(root / split / "SegmentationClass" / f"{k}.png")
    splits = load_segmentation_splits(resolve_data(root, task="segmentation"), [])
    assert (len(splits.train), len(splits.val)) == (5, 2) and splits.classes[:4] == ["background", "class_1",
                                                                                        "class_2", "class_3"]
    assert set(splits.train[0][1].unique().tolist()) == {0, 1, 3, 255}
    col = tmp_path / "cvat"
    (col / "images").mkdir(parents=True)
    (col / "masks").mkdir()
    for k in range(6):
        _photo(rng, (30, 20)).save(col / "images" / f"f{k}.jpg")
        m = np.zeros((20, 30, 3), np.uint8)
        m[2:8, 2:8], m[10:18, 10:20] = (250, 50, 83), (61, 245, 61)
        Image.fromarray(m).save(col / "masks" / f"f{k}.png")
    (col / "labelmap.txt").write_text("# label:color_rgb:parts:actions\nbackground:0,0,0::\ncar:250,50,83::\n"
                                      "tree:61,245,61::\n")
    splits = load_segmentation_splits(resolve_data(col, task="segmentation"), [])
    assert splits.classes == ["background", "car", "tree"]
    _, mask = splits.train[0]
    assert mask[3, 3] == 1 and mask[12, 12] == 2 and mask[0, 0] == 0


# ------------------------------------------------------------------------------ fine-tuning from folded weights


def test_unfolding_batchnorm_keeps_the_function_and_trains_as_it() -> None:
    """A folded model's BN (identity statistics + folded bias) given its inputs' statistics: eval mode is
    unchanged, and train mode (batch statistics) now computes about what the folded model computes."""
    from mobilenets.models.fold import fold_batchnorm
    from mobilenets.training.finetune import recalibrate_batchnorm

    torch.manual_seed(0)
    ref = mobilenets.create_model("0.25-MobileNet-64", num_classes=3).eval()
    for m in ref.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.uniform_(0.1, 4)
            m.running_mean.normal_(0, 0.5)
    folded = fold_batchnorm(ref)
    model = mobilenets.create_model("0.25-MobileNet-64", num_classes=3)
    state = {}
    for name, m in folded.named_modules():  # a TFLite file's form: folded conv, BN = x + bias
        if hasattr(m, "conv") and isinstance(getattr(ref.get_submodule(name), "bn", None), torch.nn.BatchNorm2d):
            n = m.conv.weight.shape[0]
            state.update({f"{name}.conv.weight": m.conv.weight, f"{name}.bn.bias": m.conv.bias,
                          f"{name}.bn.weight": torch.ones(n), f"{name}.bn.running_mean": torch.zeros(n),
                          f"{name}.bn.running_var": torch.full((n,), 1 - 1e-5)})
    state.update({k: v for k, v in folded.state_dict().items() if k.startswith("classifier")})
    model.load_state_dict(state, strict=False)
    model.eval()
    x = torch.randn(16, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        assert torch.allclose(before, ref(x), atol=1e-4)
        assert not torch.allclose(copy.deepcopy(model).train()(x), before, atol=0.1)  # batch statistics erase it
        names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert recalibrate_batchnorm(model, names, [x[:8], x[8:]]) == 16
        model.eval()
        assert torch.allclose(model(x), before, atol=1e-4)
        model.train()
        assert torch.allclose(model(x), before, atol=0.05 * float(before.abs().max()))


def test_frozen_stages_run_as_folded_convs() -> None:
    """``freeze``'s stages compute conv + inference BN as one folded conv: the same outputs and gradients
    as the two layers, and the BN statistics estimation still sees every BN's input."""
    from mobilenets.models.layers import ConvBNAct
    from mobilenets.training.finetune import early_stages, freeze, recalibrate_batchnorm, set_train_mode

    torch.manual_seed(0)
    model = randomize_bn(mobilenets.create_model("0.25-MobileNetV2-64", num_classes=3, padding="tf_same"))
    ref = copy.deepcopy(model)
    freeze(model, False, 2)
    set_train_mode(model, False, False, 2)
    set_train_mode(ref, False, False, 2)
    frozen = {id(u) for m in early_stages(model, 2) for u in m.modules() if isinstance(u, ConvBNAct)}
    flagged = {id(u) for u in model.modules() if isinstance(u, ConvBNAct) and u.fold_frozen_bn}
    assert flagged == frozen and len(frozen) == 9  # the stem, block 0 (depthwise, project), blocks 1-2 (three each)
    x = torch.randn(4, 3, 64, 64)
    torch.manual_seed(1)
    out = model(x)
    torch.manual_seed(1)  # the same dropout
    expected = ref(x)
    assert torch.allclose(out, expected, atol=1e-5)
    out.square().sum().backward()
    expected.square().sum().backward()
    w = model.blocks[5].project.conv.weight
    g = ref.blocks[5].project.conv.weight.grad
    assert w.grad is not None and g is not None and torch.allclose(w.grad, g, atol=1e-3 * float(g.abs().max()))
    stem_bn = model.stem.bn
    before = stem_bn.running_var.clone()
    assert recalibrate_batchnorm(model, ["stem.bn"], [x]) == 4
    assert not torch.equal(stem_bn.running_var, before) and model.stem.fold_frozen_bn
    model.stem.conv.weight.requires_grad_(True)  # trainable again: the two layers, so the gradient reaches it
    model(x).sum().backward()
    assert model.stem.conv.weight.grad is not None
    freeze(model, False, 1)  # fewer stages: blocks 1-2 unflagged
    assert not model.blocks[1].expand.fold_frozen_bn and model.blocks[0].project.fold_frozen_bn


def _two_colours(root: Path, n: int = 24) -> Path:
    """Photos of two kinds: mostly red or mostly blue noise."""
    rng = np.random.default_rng(0)
    for split, count in (("train", n), ("val", n // 2)):
        for cls, colour in (("red", (200, 40, 40)), ("blue", (40, 40, 200))):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for k in range(count // 2):
                arr = rng.integers(0, 90, (48, 48, 3)).astype(np.int64)
                arr[8:40, 8:40] += np.array(colour) // 2
                Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(root / split / cls / f"{k}.jpg")
    return root


@pytest.mark.parametrize("freeze_bn", [True, False])
def test_finetune_from_a_folded_tflite_file(freeze_bn: bool, refdata: Path, tmp_path: Path) -> None:
    """``--init`` Google's float V1 0.25 TFLite file with the fine-tuning recipe (in config.yaml): the model
    takes the file's conventions ([-1, 1] input, TF padding) and learns, with the backbone's BN in inference
    mode (the default) or, with --no-freeze-bn, trained after its folded layers got statistics."""
    data = _two_colours(tmp_path / "data")
    res = mobilenets.train(mobilenets.TrainConfig(data=str(data), model="0.25-MobileNet-64", epochs=2, progress=False,
                                                  init=str(refdata / "models" / "mobilenet_v1_0.25_224.tflite"),
                                                  out=str(tmp_path / "run"), batch_size=8, amp="off",
                                                  freeze_bn=None if freeze_bn else False))
    cfg = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert cfg["lr"] == 0.002 and cfg["freeze_bn"] == freeze_bn and cfg["batch_size"] == 8
    model = mobilenets.load_model(res.weights)
    assert model.config.padding == "tf_same" and model.config.mean == (0.5, 0.5, 0.5)
    var = model.blocks[3].pointwise.bn.running_var
    assert torch.allclose(var, torch.full_like(var, float(var[0]))) == freeze_bn  # statistics only when BN trains
    assert res.top1 >= 90 and all("warning" not in h for h in res.history)
    assert {"eval.json", "confusion.png", "examples.png"} <= {p.name for p in (tmp_path / "run").iterdir()}
    ev = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert set(ev["precision_recall"]) == {"blue", "red"} and ev["precision_recall"]["red"]["support"] == 6


def test_stall_is_diagnosed() -> None:
    from mobilenets.tasks.classification import ClassificationEvalResult
    from mobilenets.training.diagnose import stall_signs, stall_warning

    conf = torch.tensor([[5, 0], [7, 0]])
    ev = ClassificationEvalResult(41.7, 100, 0.69, 12, ["a", "b"], conf)
    assert stall_signs(["a", "b"], 1, math.log(2) + 1e-3, ev, steps=3) == []  # too early to tell
    signs = stall_signs(["a", "b"], 2, math.log(2) + 1e-3, ev)
    assert len(signs) == 2 and "chance level" in signs[0] and "'a'" in signs[1]
    lucky = ClassificationEvalResult(75, 100, 0.69, 12, ["a", "b"], torch.tensor([[5, 0], [3, 4]]))  # short epoch 1
    assert stall_signs(["a", "b"], 2, math.log(2) + 1e-3, lucky) == []
    assert "--lr 0.001" in stall_warning(signs, 1, 0.01, "w.tflite", False)
    learning = ClassificationEvalResult(80, 100, 0.4, 12, ["a", "b"], torch.tensor([[5, 0], [2, 5]]))
    assert stall_signs(["a", "b"], 2, 0.4, learning) == []


def test_a_run_that_learns_nothing_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Labels that say nothing about the images: the loss stays at ln 2, and the run says so."""
    for split, n in (("train", 16), ("val", 8)):
        for cls in ("a", "b"):
            (tmp_path / "d" / split / cls).mkdir(parents=True)
            for k in range(n // 2):
                Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(tmp_path / "d" / split / cls / f"{k}.png")
    res = mobilenets.train(mobilenets.TrainConfig(data=str(tmp_path / "d"), model="0.25-MobileNet-32", epochs=2,
                                                  lr=1e-6, progress=False, out=str(tmp_path / "run"), batch_size=8,
                                                  label_smoothing=0.0, amp="off"))
    assert "warning" not in res.history[0] and "chance level" in res.history[1]["warning"]  # epoch 1: too early
    assert "not learning after epoch 2" in capsys.readouterr().err


# ------------------------------------------------------------------------------ int8 with labels


@pytest.mark.parametrize("fmt", ["onnx-int8", "tflite-int8"])
def test_int8_export_is_scored_on_labeled_images(fmt: str, tmp_path: Path) -> None:
    """Trained at 40 px, not the name's 32: the export's graph and its calibration take the size the weights
    were trained at (the int8 exports had calibrated 40 px images into a 32 px graph, and failed)."""
    data = _two_colours(tmp_path / "data", n=16)
    res = mobilenets.train(mobilenets.TrainConfig(data=str(data), model="0.25-MobileNet-32", epochs=2, progress=False,
                                                  out=str(tmp_path / "run"), batch_size=8, amp="off", input_size=40))
    given = {"calibrate": data / "train"} if fmt == "onnx-int8" else {}  # tflite: the recorded training split
    out = mobilenets.export(mobilenets.load_model(res.weights), tmp_path / f"m.{fmt.split('-')[0]}", fmt, **given)
    assert ("training split" in out.calibration) == (not given) and "SYNTHETIC" not in out.calibration
    assert out.labeled is not None and out.labeled.images == 8 and out.labeled.metric == "top1"
    assert out.labeled.scores["fp32"] == pytest.approx(res.top1)
    assert 0 <= out.labeled.scores["int8"] <= 100 and "held-out top-1 %" in out.summary()
    # the int8 file itself, scored by eval (its runtime: a .tflite runs in LiteRT, an .onnx in ONNX Runtime)
    runtime = "onnxruntime" if fmt == "onnx-int8" else "litert"
    again = evaluate_in_runtime(out.path, runtime, data)
    assert again.images == 8 and again.scores[runtime] == pytest.approx(out.labeled.scores["int8"])
    with pytest.raises(ValueError, match="exported graph, which records no data: give --data"):
        evaluate_in_runtime(out.path, runtime)


@pytest.mark.slow  # ~60 s: two epochs of 1.0-MobileNetV2 at 128 px on 500 photos
def test_finetune_google_v2_on_real_photos(refdata: Path, tmp_path: Path) -> None:
    """The issue's case: Google's uint8 QAT V2 file fine-tuned on real photos (5 classes of clothing; the
    majority class is 30% of the held-out images) learns far above chance: it fell to the majority class
    before its BN layers got statistics."""
    data = refdata / "datasets" / "clothing"
    if not data.is_dir():
        pytest.skip(f"{data} not found")
    res = mobilenets.train(mobilenets.TrainConfig(data=str(data), model="1.0-MobileNetV2-128", epochs=2,
                                                  init=str(refdata / "models" / "mobilenet_v2_1.0_224_quant.tflite"),
                                                  out=str(tmp_path / "run"), progress=False, amp="off"))
    assert res.top1 >= 75, res.history
    assert all("warning" not in h for h in res.history)


@pytest.mark.parametrize("source", ["tflite-float", "tflite-uint8", "tflite-int8-ptq", "torchvision", "timm", "keras"])
def test_finetune_starts_from_every_weights_format(source: str, refdata: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Every format we read initializes a fine-tune with its conventions; folded files (TFLite) are told apart
    (their BN layers have no statistics)."""
    models = refdata / "models"
    files = {"tflite-float": models / "mobilenet_v1_0.25_224.tflite",
             "tflite-uint8": models / "mobilenet_v1_0.25_224_quant.tflite",
             "tflite-int8-ptq": models / "tf2_mobilenet_v2_1.0_224_ptq.tflite"}
    if source in files:
        init = files[source]
        name = "1.0-MobileNetV2-64" if "v2" in init.name else "0.25-MobileNet-64"
    else:
        name = "0.25-MobileNet-64" if source != "torchvision" else "1.0-MobileNetV2-64"
        trained = randomize_bn(mobilenets.create_model(name, num_classes=1000))  # trained statistics, as theirs
        src = mobilenets.save_weights(trained, tmp_path / "src.safetensors")
        suffix = ".weights.h5" if source == "keras" else ".pth"
        init = convert_weights(src, tmp_path / f"init{suffix}", target=source)
    data = _two_colours(tmp_path / "data", n=8)
    res = mobilenets.train(mobilenets.TrainConfig(data=str(data), model=name, epochs=1, progress=False,
                                                  init=str(init), out=str(tmp_path / "run"), batch_size=4, amp="off"))
    model = mobilenets.load_model(res.weights)
    tf = source.startswith("tflite") or source == "keras"
    assert (model.config.padding == "tf_same") == tf and (model.config.bn_eps == 1e-3) == tf
    assert (tuple(model.config.mean) == (0.5, 0.5, 0.5)) == tf
    printed = capsys.readouterr().out
    assert ("BatchNorm layers came folded" in printed) == source.startswith("tflite")


# ------------------------------------------------------------------------------ detector fine-tuning options


def test_fit_anchors_to_small_boxes() -> None:
    """Faces of 5% of the image match none of TF's anchors (0.1 and 0.2 of the image) at IoU 0.5; fitted
    anchors cover more of them. Boxes TF's anchors already cover keep TF's anchors."""
    from mobilenets.tasks import parse_model_name
    from mobilenets.tasks.detection.anchors import coverage, fit_anchors
    from mobilenets.tasks.detection.spec import build_detector_arch

    cfg = parse_model_name("1.0-SSDLite-MobileNetV2-320", num_classes=1)
    grids = build_detector_arch(cfg).grid_sizes((320, 320))
    g = torch.Generator().manual_seed(0)
    centre = torch.rand(500, 2, generator=g) * 0.8 + 0.1
    small = torch.cat([centre - 0.025, centre + 0.025], 1)
    fitted = fit_anchors(cfg.anchors, grids, small)
    assert fitted.lowest_scale < 0.1 and coverage(fitted, grids, small) > coverage(cfg.anchors, grids, small) + 0.2
    large = torch.cat([centre - 0.3, centre + 0.3], 1).clamp(0, 1)
    assert fit_anchors(cfg.anchors, grids, large).lowest_scale == 0.1


def test_small_boxes_get_advice() -> None:
    """Training names the fixes when most boxes overlap no anchor at IoU 0.5; a -p3 model's anchors fit
    faces of 5% of the image, and boxes that fit get no advice."""
    from mobilenets.tasks import kind_of, parse_model_name

    centre = torch.rand(300, 2, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    small, large = torch.cat([centre - 0.025, centre + 0.025], 1), torch.cat([centre - 0.2, centre + 0.2], 1)
    cfg = parse_model_name("1.0-SSDLite-MobileNetV2-320", num_classes=2)
    advice = kind_of(cfg).anchor_advice(cfg, small, 320)
    assert "of the 300 training boxes" in advice and "--fit-anchors" in advice
    assert "1.0-SSDLite-MobileNetV2-320-p3" in advice
    assert kind_of(cfg).anchor_advice(cfg, large.clamp(0, 1), 320) == ""
    p3 = parse_model_name("1.0-SSDLite-MobileNetV2-320-p3", num_classes=2)
    assert kind_of(p3).anchor_advice(p3, small, 320) == ""


def test_repeat_factor_sampling() -> None:
    """LVIS's rule: a class in a fraction f of the images repeats its images sqrt(t / f) times (at least
    once); every epoch has the same length and the same multiset, in a seeded order."""
    from collections import Counter

    from mobilenets.data import EpochSampler, repeat_factors
    from mobilenets.data.annotations import AnnotatedImages, box_target

    # class 1 in all 10 images, class 2 in 1 of them
    samples = [(Path(f"{i}.jpg"), box_target([[0, 0, 5, 5]] * (2 if i == 0 else 1), [1, 2] if i == 0 else [1], i))
               for i in range(10)]
    ds = AnnotatedImages(samples, ["common", "rare"])
    r = repeat_factors(ds, 0.4)
    assert r[0] == pytest.approx(2.0) and r[1:] == [1.0] * 9  # sqrt(0.4 / 0.1)
    assert repeat_factors(ds, 0.05) == [1.0] * 10
    assert repeat_factors(AnnotatedImages([(Path("a.jpg"), 0), (Path("b.jpg"), 1)], ["a", "b"]), 1.0) == \
        [pytest.approx(2 ** 0.5)] * 2
    sampler = EpochSampler(10, shuffle=True, seed=3, repeat_factors=r)
    epochs = []
    for e in range(3):
        sampler.set_epoch(e)
        epochs.append(list(sampler))
    assert len(sampler) == 11 and all(Counter(order) == Counter([0, *range(10)]) for order in epochs)
    assert epochs[0] != epochs[1]
    sampler.set_epoch(1, skip=4)
    assert list(sampler) == epochs[1][4:]
    half = EpochSampler(10, shuffle=True, seed=0, repeat_factors=[1.5] * 10)  # the fractions drawn once
    assert 10 < len(half) < 20 and len(half) == len(EpochSampler(10, shuffle=True, seed=0, repeat_factors=[1.5] * 10))
    with pytest.raises(ValueError, match="masks"):
        repeat_factors(AnnotatedImages([(Path("a.jpg"), Path("a.png"))], ["a"]), 0.5)
    with pytest.raises(ValueError, match="repeat_threshold"):
        mobilenets.TrainConfig(repeat_threshold=2.0).resolved()


def test_freeze_stages_and_fitted_anchors_in_a_run(tmp_path: Path) -> None:
    """``--freeze-stages 3`` keeps the stem and the stride 2-8 blocks as they started; ``--fit-anchors``
    stores the fitted anchors in the weights, which load as the trained model."""
    from mobilenets.training.finetune import early_stages

    root = tmp_path / "voc"
    for k, (img, boxes, names) in enumerate(_shapes(12)):
        (root / "images").mkdir(parents=True, exist_ok=True)
        img.save(root / "images" / f"{k}.jpg")
        _voc_xml(root / "annotations" / f"{k}.xml", f"{k}.jpg", list(zip(names, boxes)), img.size)
    start = mobilenets.save_weights(mobilenets.create_model("0.25-MobileNetV2-96", num_classes=10),
                                    tmp_path / "start.safetensors")
    recipe = mobilenets.TrainConfig(data=str(root), model="0.25-SSDLite-MobileNetV2-96", init=str(start))
    # fine-tuning a detector: 6800 images seen (at most 30 epochs), evaluated about 4 times; flags win
    assert (recipe.resolved().epochs, recipe.resolved().eval_every) == (30, 8)
    assert recipe.resolved().head_lr_mult == 6.0  # the new layers' lr: 6x; a flag wins
    assert dataclasses.replace(recipe, head_lr_mult=1.0).resolved().head_lr_mult == 1
    assert dataclasses.replace(recipe, epochs=6).resolved().eval_every == 2
    assert dataclasses.replace(recipe, eval_every=1).resolved().eval_every == 1
    res = mobilenets.train(mobilenets.TrainConfig(data=str(root), model="0.25-SSDLite-MobileNetV2-96", init=str(start),
                                                  freeze_stages=3, fit_anchors=True, epochs=1, progress=False,
                                                  batch_size=4, out=str(tmp_path / "run"), repeat_threshold=0.9,
                                                  amp="off"))
    trained = mobilenets.load_model(res.weights)
    before = mobilenets.load_model(start).state_dict()
    frozen = {n for m in early_stages(trained, 3) for n, _ in m.named_parameters()}
    assert frozen
    for name, value in trained.backbone.state_dict().items():
        if name.startswith(("stem.", "blocks.0.", "blocks.1.", "blocks.2.")) and "running" not in name:
            assert torch.equal(value, before[name]), name
    assert not torch.equal(trained.backbone.state_dict()["blocks.10.project.conv.weight"],
                           before["blocks.10.project.conv.weight"])
    from mobilenets.data.annotations import normalized_boxes
    from mobilenets.tasks.detection.anchors import fit_anchors
    from mobilenets.tasks.detection.spec import build_detector_arch

    splits = _load(root)
    default = mobilenets.tasks.parse_model_name("0.25-SSDLite-MobileNetV2-96", num_classes=2)
    grids = build_detector_arch(default).grid_sizes((96, 96))
    assert trained.config.anchors == fit_anchors(default.anchors, grids, normalized_boxes(splits.train))
    with pytest.raises(ValueError, match="freeze_stages"):
        mobilenets.TrainConfig(freeze_stages=6).resolved()
