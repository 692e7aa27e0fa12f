"""COCO-format detection data as people have it: ``instances_*.json`` (COCO itself), any other name
(``custom_train.json``, Roboflow's ``train/_annotations.coco.json``), one JSON per split or a single
JSON split by ``--val-split``, and category ids from 0 or from 1.

Categories in id order become labels 1..C (0 is the background). The held-out file's categories are
matched to the training file's by name. Roboflow's exports add a category named after the dataset,
the others' supercategory, which has no boxes: it is left out (and reported). Crowd boxes are left out
of training and ignored by the evaluation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .annotations import (
    AnnotatedImages,
    DataIssues,
    DetectionSplits,
    box_target,
    check_boxes,
    image_dirs,
    pick_splits,
    probe_images,
    random_split,
    split_role,
)

_HEAD_BYTES = 1 << 16


def coco_files(root: Path) -> list[Path]:
    """The COCO-format JSON files of ``root`` (a JSON file itself, or in ``annotations/``, the folder, or
    its subfolders)."""
    if root.is_file():
        return [root] if root.suffix.lower() == ".json" else []
    found = [*sorted((root / "annotations").glob("*.json")), *sorted(root.glob("*.json")),
             *sorted(root.glob("*/*.json"))]
    return [p for p in dict.fromkeys(found) if _looks_like_coco(p)]


def _looks_like_coco(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(_HEAD_BYTES)
    except OSError:
        return False
    return any(k in head for k in (b'"images"', b'"annotations"', b'"categories"'))


def read_json(path: Path) -> dict[str, Any]:
    """A JSON file's object, or a one-line error naming the file and the place it breaks."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a UTF-8 text file ({e.reason})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{path}: not a COCO annotation file (expected an object with an 'images' list, "
                         "'annotations' and 'categories')")
    return data


def _categories(data: dict[str, Any], path: Path, issues: DataIssues) -> list[dict[str, Any]]:
    """The training file's categories in id order, without a Roboflow-style placeholder."""
    cats = [c for c in data.get("categories", []) if isinstance(c, dict) and "id" in c and "name" in c]
    used = {a.get("category_id") for a in data.get("annotations", []) if isinstance(a, dict)}
    parents = {c.get("supercategory") for c in cats}
    kept = []
    for c in sorted(cats, key=lambda c: c["id"]):
        if c["id"] not in used and c["name"] in parents and len(cats) > 1:
            issues.add("category with no boxes that is the others' supercategory: left out", path,
                       f"id {c['id']} {c['name']!r}")
            continue
        kept.append(c)
    if not kept:
        raise ValueError(f"{path}: no categories; a COCO file lists them in 'categories' (id and name)")
    return kept


def _image_folder(data: dict[str, Any], path: Path, root: Path) -> Path:
    """The folder the file's ``file_name``s are relative to: the one where most of them exist; among
    equals, the one named for the same split (``val2017/`` for ``instances_val2017.json``: COCO-style
    exports reuse file names across splits), then the nearest."""
    names = [im["file_name"] for im in data["images"][:200] if isinstance(im, dict) and "file_name" in im]
    near = [root] if root.is_dir() else [path.parent, path.parent.parent]
    found = (d for n in near for d in image_dirs(n))
    candidates = list(dict.fromkeys([path.parent, path.parent.parent, *near, *found]))
    base = near[0] if root.is_dir() else path.parent.parent
    role = split_role(path, base)
    ranked = [(sum((d / n).is_file() for n in names), role is not None and split_role(d, base) == role, -i)
              for i, d in enumerate(candidates)]
    return candidates[-max(ranked)[2]]


def coco_samples(data: dict[str, Any], path: Path, root: Path, label_of_id: dict[Any, int],
                 issues: DataIssues) -> list[tuple[Path, dict[str, Any]]]:
    """One annotation file's images with their checked targets (see the module docstring)."""
    folder = _image_folder(data, path, root)
    images: dict[Any, dict[str, Any]] = {}
    for im in data["images"]:
        if not isinstance(im, dict) or "id" not in im or not isinstance(im.get("file_name"), str):
            issues.add("image entry without an id or file_name: left out", path, str(im)[:80], image_left_out=True)
        elif im["id"] in images:
            issues.add("image id listed twice: the second left out", path, f"id {im['id']}")
        else:
            images[im["id"]] = im
    by_image: dict[Any, list[dict[str, Any]]] = {i: [] for i in images}
    for a in data.get("annotations", []):
        if not isinstance(a, dict) or a.get("image_id") not in images:
            issues.add("annotation of an image id that 'images' does not list: left out", path,
                       f"image_id {a.get('image_id') if isinstance(a, dict) else a!r}")
        elif a.get("category_id") not in label_of_id:
            issues.add("annotation of an unknown category: left out", path,
                       f"category_id {a.get('category_id')!r} ({images[a['image_id']]['file_name']})")
        elif not _is_box(a.get("bbox")):
            issues.add("annotation without a valid bbox [x, y, width, height]: left out", path,
                       f"{images[a['image_id']]['file_name']}: {a.get('bbox')!r}")
        else:
            by_image[a["image_id"]].append(a)
    files = {i: folder / im["file_name"] for i, im in images.items()}
    infos = probe_images(list(files.values()), issues)
    samples = []
    for n, (i, im) in enumerate(images.items()):
        info = infos[files[i]]
        if info.size is None:
            continue
        _check_size(im, info.size, files[i], issues)
        anns = by_image[i]
        xyxy = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                         for a in anns], dtype=np.float64).reshape(-1, 4)
        boxes, keep = check_boxes(xyxy, info.size, files[i], issues)
        kept = [anns[k] for k in keep]
        samples.append((files[i], box_target(boxes, [label_of_id[a["category_id"]] for a in kept], n,
                                             [bool(a.get("iscrowd", 0)) for a in kept], info.size)))
    return samples


def _is_box(b: Any) -> bool:
    return isinstance(b, (list, tuple)) and len(b) == 4 and all(isinstance(v, (int, float)) for v in b)


def _check_size(im: dict[str, Any], size: tuple[int, int], file: Path, issues: DataIssues) -> None:
    said = (im.get("height"), im.get("width"))
    if said != size and said != (None, None):
        issues.add("image size in the annotations differs from the file: the file's is used", file,
                   f"annotations {said[1]}x{said[0]}, file {size[1]}x{size[0]}")


def coco_splits(root: Path, val_split: float, seed: int) -> DetectionSplits:
    """Train and held-out sets of a COCO-format folder (or a single JSON file, split by ``val_split``)."""
    files = coco_files(root)
    if not files:
        raise ValueError(f"{root}: no COCO annotation file (.json with 'images', 'annotations', 'categories')")
    base = root if root.is_dir() else root.parent
    train_file, val_file = pick_splits({f: split_role(f, base) for f in files}, "annotation file")
    issues = DataIssues()
    train_data = read_json(train_file)
    cats = _categories(train_data, train_file, issues)
    classes = [str(c["name"]) for c in cats]
    label_of = {c["id"]: i + 1 for i, c in enumerate(cats)}
    train = coco_samples(train_data, train_file, root, label_of, issues)
    if val_file is None:
        tr, va = random_split(len(train), val_split, seed)
        return DetectionSplits(AnnotatedImages([train[i] for i in tr], classes),
                               AnnotatedImages([train[i] for i in va], classes), classes, issues)
    val_data = read_json(val_file)
    by_name = {name: i + 1 for i, name in enumerate(classes)}
    val_label_of = {c["id"]: by_name[c["name"]] for c in val_data.get("categories", [])
                    if isinstance(c, dict) and c.get("name") in by_name}
    val = coco_samples(val_data, val_file, root, val_label_of, issues)
    return DetectionSplits(AnnotatedImages(train, classes), AnnotatedImages(val, classes), classes, issues)
