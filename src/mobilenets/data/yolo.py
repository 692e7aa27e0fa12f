"""YOLO-format detection data as Ultralytics and labeling services write it: images with one ``.txt``
per image (``class x_center y_center width height``, normalized to the image; a polygon's points
give its bounding box), found where Ultralytics finds them (``.../images/...`` -> ``.../labels/...``),
and class names from ``data.yaml`` (``names`` as a list or a mapping), ``classes.txt`` or
``obj.names``.

Layouts: ``data.yaml`` with ``train:`` / ``val:`` folders (relative to its ``path:`` or its own
folder; Roboflow's ``../train/images`` is resolved as Ultralytics resolves it), ``images/{train,val}``
+ ``labels/{train,val}``, ``{train,valid}/images`` + ``labels``, or one ``images/`` + ``labels/``
split by ``--val-split``. An image without a label file has no objects (YOLO's convention; counted).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .annotations import (
    AnnotatedImages,
    DataIssues,
    DetectionSplits,
    box_target,
    check_boxes,
    probe_images,
    random_split,
    split_role,
)
from .images import IMAGE_EXTENSIONS

_YAML_NAMES = ("data.yaml", "dataset.yaml", "data.yml")


def data_yaml(root: Path) -> Path | None:
    if root.is_file() and root.suffix.lower() in (".yaml", ".yml"):
        return root
    return next((root / n for n in _YAML_NAMES if (root / n).is_file()), None) if root.is_dir() else None


def is_yolo_folder(root: Path) -> bool:
    if data_yaml(root) is not None:
        return True
    return root.is_dir() and bool(_image_label_pairs(root))


def _image_label_pairs(root: Path) -> list[tuple[Path, Path]]:
    """``images`` folders under ``root`` (two levels) with a ``labels`` sibling holding ``.txt`` files."""
    out = []
    for images in [root / "images", *root.glob("*/images"), *root.glob("images/*")]:
        labels = label_folder(images)
        if images.is_dir() and labels.is_dir() and any(labels.glob("*.txt")):
            out.append((images, labels))
    return out


def label_folder(images: Path) -> Path:
    """Where Ultralytics looks for an image folder's labels: the last ``images`` part becomes ``labels``."""
    parts = list(images.parts)
    if "images" not in parts:
        return images
    k = len(parts) - 1 - parts[::-1].index("images")
    return Path(*parts[:k], "labels", *parts[k + 1:])


def _names(spec: dict[str, Any], root: Path, issues: DataIssues) -> list[str] | None:
    names = spec.get("names")
    if isinstance(names, dict):
        try:
            keys = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            raise ValueError(f"{root}: 'names' must map class indices to names, got keys {list(names)[:5]}") from None
        if keys != list(range(len(keys))):
            issues.add("class indices in 'names' are not 0..n-1: missing ones named class_<k>", root, str(keys))
        return [str(names.get(k, names.get(str(k), f"class_{k}"))) for k in range(max(keys) + 1)]
    if isinstance(names, list):
        return [str(n) for n in names]
    for f in ("classes.txt", "obj.names"):
        p = root / f
        if p.is_file():
            return [line.strip() for line in p.read_text().splitlines() if line.strip()]
    return None


def _resolve(entry: Any, base: Path) -> list[Path]:
    """A split entry of data.yaml: folders of images or ``.txt`` lists of image paths."""
    entries = entry if isinstance(entry, list) else [entry]
    out = []
    for e in entries:
        if not isinstance(e, str):
            continue
        p = (base / e).resolve()
        if not p.exists() and e.startswith("../"):  # Roboflow writes paths one level too high
            p = (base / e[3:]).resolve()
        out.append(p)
    return out


def _list_images(sources: list[Path], issues: DataIssues, what: Path) -> list[Path]:
    files: list[Path] = []
    for s in sources:
        if s.is_dir():
            files += sorted(f for f in s.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
        elif s.is_file() and s.suffix == ".txt":
            files += [(s.parent / line.strip()).resolve() for line in s.read_text().splitlines() if line.strip()]
        else:
            issues.add("image folder named in the dataset description not found", what, str(s))
    return files


def _label_file(image: Path) -> Path:
    return label_folder(image.parent) / f"{image.stem}.txt"


def yolo_samples(images: list[Path], classes: list[str] | None, issues: DataIssues
                 ) -> tuple[list[tuple[Path, dict[str, Any]]], int]:
    """Images with checked targets (labels are class index + 1); also the largest class index seen."""
    infos = probe_images(images, issues)
    samples, top, unlabeled = [], -1, 0
    for n, image in enumerate(images):
        info = infos[image]
        if info.size is None:
            continue
        label = _label_file(image)
        rows = _read_labels(label, issues) if label.is_file() else []
        unlabeled += not label.is_file()
        h, w = info.size
        keep_rows = []
        for cls, box in rows:
            if cls < 0 or (classes is not None and cls >= len(classes)):
                issues.add("box of an unknown class index: left out", label,
                           f"class {cls}; the dataset has {len(classes or [])} classes")
                continue
            keep_rows.append((cls, box))
        xyxy = np.array([[(x - bw / 2) * w, (y - bh / 2) * h, (x + bw / 2) * w, (y + bh / 2) * h]
                         for _, (x, y, bw, bh) in keep_rows]).reshape(-1, 4)
        boxes, keep = check_boxes(xyxy, info.size, label, issues)
        labels = [keep_rows[k][0] + 1 for k in keep]
        top = max([top, *(c - 1 for c in labels)])
        samples.append((image, box_target(boxes, labels, n, size=info.size)))
    if unlabeled:
        issues.add("images without a label file: trained on as having no objects", f"{unlabeled} image(s)",
                   "YOLO's convention for background images")
    return samples, top


def _read_labels(path: Path, issues: DataIssues) -> list[tuple[int, tuple[float, float, float, float]]]:
    """``class cx cy w h`` rows (a polygon ``class x1 y1 x2 y2 ...`` becomes its bounding box)."""
    rows = []
    for i, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            cls_f, values = float(fields[0]), [float(v) for v in fields[1:]]
        except ValueError:
            issues.add("malformed label line: left out", path, f"line {i}: {line[:60]!r}")
            continue
        if cls_f != int(cls_f) or len(values) < 4 or (len(values) > 4 and len(values) % 2):
            issues.add("malformed label line: left out", path, f"line {i}: {line[:60]!r}")
            continue
        if len(values) > 4:  # a segment: its points' bounding box
            xs, ys = values[0::2], values[1::2]
            values = [(min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys)]
        rows.append((int(cls_f), (values[0], values[1], values[2], values[3])))
    return rows


def yolo_splits(root: Path, val_split: float = 0.2, seed: int = 0) -> DetectionSplits:
    """Train and held-out sets of a YOLO dataset (see the module docstring)."""
    issues = DataIssues()
    spec_file = data_yaml(root)
    base = root if root.is_dir() else root.parent
    classes = None
    sources: dict[str, list[Path]] = {}
    if spec_file is not None:
        try:
            spec = yaml.safe_load(spec_file.read_text()) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{spec_file}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(spec, dict):
            raise ValueError(f"{spec_file}: expected a mapping with train, val and names")
        base = (spec_file.parent / spec["path"]).resolve() if isinstance(spec.get("path"), str) else spec_file.parent
        classes = _names(spec, spec_file, issues)
        for role in ("train", "val"):
            if spec.get(role):
                sources[role] = _resolve(spec[role], base)
    else:
        classes = _names({}, base, issues)
    if "train" not in sources:
        pairs = _image_label_pairs(base)
        roles = {images: split_role(images, base) for images, _ in pairs}
        sources = {"train": [i for i, r in roles.items() if r == "train"],
                   "val": [i for i, r in roles.items() if r == "val"] or [i for i, r in roles.items() if r == "test"]}
        if not sources["train"]:
            sources = {"train": [i for i, _ in pairs], "val": []}
    train, top = yolo_samples(_list_images(sources["train"], issues, spec_file or base), classes, issues)
    if not train:
        raise ValueError(f"{base}: no training images found (looked in {', '.join(map(str, sources['train']))})")
    if sources.get("val"):
        val, top_val = yolo_samples(_list_images(sources["val"], issues, spec_file or base), classes, issues)
        top = max(top, top_val)
    else:
        tr, va = random_split(len(train), val_split, seed)
        train, val = [train[i] for i in tr], [train[i] for i in va]
    if classes is None:
        classes = [f"class_{k}" for k in range(top + 1)] or ["class_0"]
        issues.add("no class names (data.yaml 'names', classes.txt): classes named class_<k>", base)
    return DetectionSplits(AnnotatedImages(train, classes), AnnotatedImages(val, classes), classes, issues)
