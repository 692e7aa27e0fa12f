"""Pascal VOC detection data as people have it: VOC's own layout (``Annotations/``, ``JPEGImages/``,
``ImageSets/Main/``), or loose XML files in a folder of their own or next to the images (labelImg,
CVAT, Roboflow), split by the folders' names (``train/``, ``valid/``) or by ``--val-split``.

The image of an annotation is found as VOC's devkit and torchvision's ``VOCDetection`` find it,
from its id (``JPEGImages/<id>.jpg``, or the XML file's stem), and only then from its
``<filename>`` or ``<path>``: labeling services rewrite ``<filename>`` (``000001_jpg.rf.29da...jpg``
for ``000001.jpg``). "Difficult" objects are left out of training and ignored by the evaluation, as
in VOC's protocol. VOC coordinates are 1-based pixel indices of the first and last pixel.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .annotations import (
    AnnotatedImages,
    DataIssues,
    DetectionSplits,
    ImageIndex,
    box_target,
    check_boxes,
    image_dirs,
    pick_splits,
    probe_images,
    random_split,
    split_role,
)

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")


@dataclass
class VocObject:
    name: str
    box: list[float]  # x1, y1, x2, y2 as written (1-based, inclusive)
    difficult: bool


@dataclass
class VocRecord:
    """One XML file, read: its image's names and its objects."""

    xml: Path
    filename: str = ""
    path_name: str = ""  # the basename of <path>
    objects: list[VocObject] = field(default_factory=list)
    size: tuple[int, int] | None = None  # (height, width) from <size>, None when absent or 0


def is_voc_folder(root: Path) -> bool:
    return root.is_dir() and bool(xml_folders(root))


def xml_folders(root: Path) -> list[Path]:
    """Folders (``root`` and the level below) with VOC ``<annotation>`` XML files."""
    out, level = [], [root]
    for _ in range(2):
        nxt = []
        for d in level:
            xmls = sorted(d.glob("*.xml"))
            if xmls and _is_voc_xml(xmls[0]):
                out.append(d)
            nxt += sorted(e for e in d.iterdir() if e.is_dir() and not e.name.startswith("."))
        level = nxt
    return out


def _is_voc_xml(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return b"<annotation" in f.read(4096)
    except OSError:
        return False


def read_voc_xml(path: Path, issues: DataIssues) -> VocRecord | None:
    """One annotation file; malformed files and objects are recorded and left out."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        issues.add("malformed XML: its image left out", path, str(e), image_left_out=True)
        return None
    rec = VocRecord(path, (root.findtext("filename") or "").strip(),
                    Path((root.findtext("path") or "").strip().replace("\\", "/")).name)
    w, h = _number(root.findtext("size/width")), _number(root.findtext("size/height"))
    if w and h and w > 0 and h > 0:
        rec.size = (int(h), int(w))
    elif root.find("size") is not None:
        issues.add("size tag of 0 or missing: the image's own size is used", path, f"width {w}, height {h}")
    for o in root.iter("object"):
        name = (o.findtext("name") or "").strip()
        coords = [_number(o.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
        if not name or any(c is None for c in coords):
            issues.add("object without a name or a complete bndbox: left out", path, name or "(no name)")
            continue
        rec.objects.append(VocObject(name, [float(c) for c in coords if c is not None],
                                     (o.findtext("difficult") or "0").strip() == "1"))
    return rec


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def voc_samples(records: list[tuple[VocRecord, Path | None]], classes: list[str],
                issues: DataIssues) -> list[tuple[Path, dict[str, Any]]]:
    """(record, image path) pairs with checked targets; objects of other classes are recorded."""
    index = {c: i + 1 for i, c in enumerate(classes)}
    infos = probe_images([p for _, p in records if p is not None], issues)
    samples = []
    for n, (rec, image) in enumerate(records):
        if image is None:
            issues.add("image file not found: left out", rec.xml,
                       f"looked for {rec.xml.stem}.* and {rec.filename or '(no <filename>)'}", image_left_out=True)
            continue
        info = infos[image]
        if info.size is None:
            continue
        if rec.size is not None and rec.size != info.size:
            issues.add("image size in the annotations differs from the file: the file's is used", rec.xml,
                       f"<size> {rec.size[1]}x{rec.size[0]}, {image.name} {info.size[1]}x{info.size[0]}")
        objs = []
        for o in rec.objects:
            if o.name in index:
                objs.append(o)
            else:
                issues.add("object of a class the training data does not have: left out", rec.xml, o.name)
        xyxy = np.array([[o.box[0] - 1, o.box[1] - 1, o.box[2], o.box[3]] for o in objs]).reshape(-1, 4)
        boxes, keep = check_boxes(xyxy, info.size, rec.xml, issues)
        kept = [objs[k] for k in keep]
        samples.append((image, box_target(boxes, [index[o.name] for o in kept], n, [o.difficult for o in kept],
                                                  info.size)))
    return samples


def _classes(records: list[VocRecord]) -> list[str]:
    names = {o.name for r in records for o in r.objects}
    # a subset of the VOC names keeps VOC's order (the full dataset gives VOC's 20 classes)
    return [c for c in VOC_CLASSES if c in names] if names <= set(VOC_CLASSES) else sorted(names)


def _read(xmls: list[Path], images: ImageIndex, issues: DataIssues,
          ids: list[str] | None = None) -> list[tuple[VocRecord, Path | None]]:
    """Each XML with its image: by id (``ids``, else the XML's stem) first, then ``<filename>``, ``<path>``."""
    out = []
    for i, xml in enumerate(xmls):
        rec = read_voc_xml(xml, issues)
        if rec is not None:
            out.append((rec, images.find(ids[i] if ids else xml.stem, rec.filename, rec.path_name, near=xml.parent)))
    return out


def _standard_splits(root: Path, issues: DataIssues) -> DetectionSplits | None:
    """VOC's layout with ``ImageSets/Main`` (train/val, or trainval/test); None without image sets."""
    sets = root / "ImageSets" / "Main"
    pair = next(((a, b) for a, b in (("train", "val"), ("trainval", "test"), ("train", "test"))
                 if (sets / f"{a}.txt").is_file() and (sets / f"{b}.txt").is_file()), None)
    if pair is None:
        return None
    images = ImageIndex([root / "JPEGImages"])
    parts = []
    for name in pair:
        ids = [s.split()[0] for s in (sets / f"{name}.txt").read_text().splitlines() if s.strip()]
        xmls = [root / "Annotations" / f"{i}.xml" for i in ids]
        for x in xmls:
            if not x.is_file():
                issues.add("annotation file named in the image set not found: its image left out", x,
                           f"listed in ImageSets/Main/{name}.txt", image_left_out=True)
        present = [(x, i) for x, i in zip(xmls, ids) if x.is_file()]
        parts.append(_read([x for x, _ in present], images, issues, [i for _, i in present]))
    classes = _classes([r for r, _ in parts[0]])
    return DetectionSplits(AnnotatedImages(voc_samples(parts[0], classes, issues), classes),
                           AnnotatedImages(voc_samples(parts[1], classes, issues), classes), classes, issues)


def voc_splits(root: Path, val_split: float = 0.2, seed: int = 0) -> DetectionSplits:
    """Train and held-out sets of a VOC-style folder (see the module docstring)."""
    issues = DataIssues()
    standard = _standard_splits(root, issues)
    if standard is not None:
        return standard
    folders = xml_folders(root)
    if not folders:
        raise ValueError(f"{root}: no Pascal VOC XML files found")
    images = ImageIndex([*folders, *image_dirs(root)])
    roles = {f: split_role(f, root) for f in folders}
    if len(folders) > 1 and any(r == "train" for r in roles.values()):
        train_dir, val_dir = pick_splits(roles, "annotation folder")
        parts = [sorted(train_dir.glob("*.xml")), sorted(val_dir.glob("*.xml")) if val_dir else []]
    else:
        parts = [sorted(x for f in folders for x in f.glob("*.xml")), []]
    train = _read(parts[0], images, issues)
    val = _read(parts[1], images, issues)
    if not parts[1]:
        tr, va = random_split(len(train), val_split, seed)
        train, val = [train[i] for i in tr], [train[i] for i in va]
    classes = _classes([r for r, _ in train])
    return DetectionSplits(AnnotatedImages(voc_samples(train, classes, issues), classes),
                           AnnotatedImages(voc_samples(val, classes, issues), classes), classes, issues)
