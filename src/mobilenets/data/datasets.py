"""Datasets: the embedded digits, ImageFolder, CIFAR, synthetic data and tar shards, with seeded
stratified splits. Samples are (PIL image or uint8 tensor, label) before any transform."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from ..tasks import task_names
from ..tasks.labels import voc_segmentation_classes
from .detection import detection_kind, load_detection_splits
from .images import IMAGE_EXTENSIONS, load_image
from .segmentation import is_mask_folder, is_voc_segmentation_folder, load_segmentation_splits
from .shards import INDEX, ShardStream, is_shard_folder

DATA_KINDS = ("digits", "folder", "cifar10", "cifar100", "fake", "shards", "coco", "voc", "yolo")
VAL_FOLDER_NAMES = ("val", "validation", "valid", "test")


@dataclass(frozen=True)
class DataSpec:
    """Where the data comes from and how it is split; recorded in the weights' metadata."""

    kind: str = "digits"
    root: str | None = None
    val_split: float = 0.2  # used when there is no separate validation set
    seed: int = 0
    fake_size: int = 256
    fake_classes: int = 10
    task: str = "classification"  # the embedded digits are a classification, detection or segmentation dataset

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def resolve_data(data: str | os.PathLike[str] | None, val_split: float = 0.2, seed: int = 0,
                 task: str = "classification") -> DataSpec:
    """``None``/"digits" -> the embedded digits (images, or canvases with boxes or masks);
    "fake" -> synthetic; else a folder: ImageFolder, CIFAR or tar shards for classification,
    COCO-format or Pascal VOC for detection, Pascal VOC or images + masks for segmentation."""
    if not 0 < val_split < 1:
        raise ValueError(f"invalid val_split {val_split}; it must be in (0, 1)")
    if task not in task_names():
        raise ValueError(f"invalid task {task!r}; valid: {', '.join(task_names())}")
    if data is None or str(data) == "digits":
        return DataSpec("digits", None, val_split, seed, task=task)
    resolver = _RESOLVERS[task]
    if str(data) == "fake" and resolver.fake:
        return DataSpec("fake", None, val_split, seed)
    root = Path(data).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"data folder not found: {root} (use {resolver.layouts})")
    if resolver.folder_only and not root.is_dir():
        raise ValueError(f"--data must be a folder, got the file {root}")
    kind = resolver.kind(root)
    if kind is None:
        raise ValueError(f"{root}: {resolver.unknown}")
    base = root.parent if kind in ("cifar10", "cifar100") and root.name in _CIFAR_FOLDERS.values() else root
    return DataSpec(kind, str(base.resolve()), val_split, seed, task=task)


_CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def _classification_kind(root: Path) -> str:
    if is_shard_folder(root):
        return "shards"
    for kind, sub in _CIFAR_FOLDERS.items():
        if root.name == sub or (root / sub).is_dir():
            return kind
    return "folder"


def _segmentation_kind(root: Path) -> str | None:
    if is_voc_segmentation_folder(root):
        return "voc_seg"
    return "masks" if is_mask_folder(root) else None


@dataclass(frozen=True)
class _Resolver:
    """How a task's ``--data`` folder is recognized: its layouts, named in errors."""

    kind: Callable[[Path], str | None]
    layouts: str
    unknown: str  # the error when no layout matches
    load: Callable[[DataSpec], Any]  # the training and held-out splits
    folder_only: bool = True
    fake: bool = False  # "fake" is synthetic data of this task
    fallback: bool = False  # any folder of folders: the task of data no other layout claims


class _Folder(Dataset):
    """ImageFolder-style listing with a fixed class list; images decode lazily via load_image."""

    def __init__(self, root: Path, classes: Sequence[str]) -> None:
        from torchvision.datasets.folder import make_dataset

        self.root = root
        self.classes = list(classes)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples = make_dataset(str(root), self.class_to_idx, extensions=IMAGE_EXTENSIONS, allow_empty=True)
        self.targets = [t for _, t in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        path, target = self.samples[i]
        return load_image(path), target


def _class_dirs(root: Path) -> list[str]:
    return sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


class _Digits(Dataset):
    """scikit-learn's 1,797 real 8x8 handwritten digits as uint8 RGB images (values 0..16 -> 0..255)."""

    def __init__(self) -> None:
        from sklearn.datasets import load_digits

        d = load_digits()
        img = torch.from_numpy(d.images).float().mul(255.0 / 16.0).round().to(torch.uint8)
        self.images = img.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
        self.targets = [int(t) for t in d.target]
        self.classes = [str(i) for i in range(10)]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], self.targets[i]


@dataclass
class Splits:
    train: Dataset
    val: Dataset
    classes: list[str]


def _split(ds: Dataset, targets: Sequence[int], spec: DataSpec) -> tuple[Subset, Subset]:
    """Seeded, stratified split (the same indices every time for the same seed)."""
    from sklearn.model_selection import train_test_split

    idx = list(range(len(targets)))
    if len(idx) < 2:
        raise ValueError(f"{len(idx)} image(s): too few to hold some out for validation (--val-split)")
    counts = torch.bincount(torch.tensor(list(targets))) if targets else torch.zeros(0)
    stratify = targets if len(counts) and int(counts[counts > 0].min()) >= 2 else None
    tr, va = train_test_split(idx, test_size=spec.val_split, random_state=spec.seed, stratify=stratify)
    return Subset(ds, sorted(tr)), Subset(ds, sorted(va))


def load_splits(spec: DataSpec) -> Splits:
    """The train and validation datasets of ``spec``, yielding (image, label) before transforms."""
    if spec.kind == "digits":
        ds = _Digits()
        tr, va = _split(ds, ds.targets, spec)
        return Splits(tr, va, ds.classes)
    if spec.kind == "fake":
        from torchvision.datasets import FakeData

        train = FakeData(spec.fake_size, (3, 48, 48), spec.fake_classes, random_offset=spec.seed)
        val = FakeData(max(spec.fake_size // 4, 8), (3, 48, 48), spec.fake_classes, random_offset=spec.seed + 10**6)
        return Splits(train, val, [f"class_{i}" for i in range(spec.fake_classes)])
    if spec.kind in ("cifar10", "cifar100"):
        from torchvision import datasets

        cls = datasets.CIFAR10 if spec.kind == "cifar10" else datasets.CIFAR100
        try:
            train = cls(spec.root, train=True, download=False)
            val = cls(spec.root, train=False, download=False)
        except RuntimeError as e:
            raise ValueError(f"{spec.root}: CIFAR files missing or corrupt ({e})") from None
        return Splits(train, val, list(train.classes))
    if spec.kind == "shards":
        root = Path(spec.root or ".")
        classes = json.loads((root / INDEX).read_text())["classes"]
        return Splits(ShardStream(root, "train", True, spec.seed, cycle=True), ShardStream(root, "val", False), classes)
    if spec.kind != "folder":
        raise ValueError(f"unknown data kind {spec.kind!r}; valid: {', '.join(DATA_KINDS)}")
    root = Path(spec.root or ".")
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root}")
    val_dir = next((root / n for n in VAL_FOLDER_NAMES if (root / n).is_dir()), None)
    base = root / "train" if (root / "train").is_dir() else root
    classes = _class_dirs(base)
    if not classes:
        raise ValueError(f"{base}: no class folders found; expected {root}/<class>/<image> or train/ and val/")
    held_out: Dataset | None = None
    if base != root and val_dir is not None:
        extra = sorted(set(_class_dirs(val_dir)) - set(classes))
        if extra:
            raise ValueError(f"{val_dir} has classes that {base} lacks: {extra}")
        held_out = _Folder(val_dir, classes)
    listed = _Folder(base, classes)
    if len(listed) == 0:
        raise ValueError(f"{root}: no images found (extensions: {', '.join(IMAGE_EXTENSIONS)})")
    if len(classes) == 1:
        raise ValueError(f"{base}: one class folder ({classes[0]!r}); a classifier needs two or more, one folder of "
                         "images per class (boxes or masks: --task detection or segmentation)")
    seen = set(listed.targets)
    empty = [c for i, c in enumerate(classes) if i not in seen]
    if empty:
        raise ValueError(f"{base}: class folders without images: {', '.join(empty)} (a class needs training "
                         f"images; extensions: {', '.join(IMAGE_EXTENSIONS)})")
    train, val = (listed, held_out) if held_out is not None else _split(listed, listed.targets, spec)
    return Splits(train, val, classes)


def _segmentation_splits(spec: DataSpec) -> Any:
    return load_segmentation_splits(spec, list(voc_segmentation_classes()))  # a VOC folder's class names


_RESOLVERS = {
    "classification": _Resolver(_classification_kind, "an ImageFolder layout, a CIFAR folder, 'digits' or 'fake'",
                                "not a classification dataset", load_splits, fake=True, fallback=True),
    "detection": _Resolver(detection_kind, "a COCO, Pascal VOC or YOLO dataset folder, or 'digits'",
                           "not a detection dataset; expected COCO JSON (annotations/*.json, or the JSON file "
                           "itself), Pascal VOC XML (Annotations/ + JPEGImages/, or XML files beside the images) or "
                           "YOLO txt (data.yaml, or images/ + labels/)", load_detection_splits, folder_only=False),
    "segmentation": _Resolver(_segmentation_kind, "a folder of images with a folder of masks (Pascal VOC, images/ + "
                              "masks/), or 'digits'", "not a segmentation dataset; expected an images folder and a "
                              "masks folder whose files match by name (e.g. images/ + masks/, JPEGImages/ + "
                              "SegmentationClass/)", _segmentation_splits),
}


def data_task(data: str | os.PathLike[str] | None) -> str | None:
    """The task a ``--data`` folder's layout is for: "detection" (COCO, VOC or YOLO annotations),
    "segmentation" (masks) or None (class folders, or nothing recognizable: classification's reading
    says what is wrong). Why: ``train --data raccoon/`` with no model named had trained a classifier
    on the folder names (``images``: one class, 100% top-1)."""
    if data is None or str(data) in ("digits", "fake"):
        return None
    root = Path(data).expanduser()
    if not root.exists():
        return None
    found = [task for task, r in _RESOLVERS.items() if not r.fallback and r.kind(root) is not None]
    if len(found) > 1:
        raise ValueError(f"{root} holds both box annotations and masks; pass --task "
                         + " or --task ".join(found))
    return found[0] if found else None


def load_task_splits(spec: DataSpec) -> Any:
    """The training and held-out splits of ``spec`` for its task."""
    return _RESOLVERS[spec.task].load(spec)
