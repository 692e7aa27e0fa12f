"""Segmentation data: Pascal VOC folders, image + mask folders, and an embedded default of real digits.

A sample is ``(image, mask)``: the image as a PIL image or uint8 tensor, the mask a uint8 tensor
``[H, W]`` of class ids (0 = background) with 255 = ignore. Class names include the background.

* **digits** (no download): the detection canvases (:mod:`mobilenets.data.detection`) with a class
  per pixel - 0 background, 1..10 the digits "0".."9" where the glyph covers at least half the
  pixel, 255 on the faint edge in between; train canvases drawn anew every epoch, held-out fixed.
  Their digits (resized 5-7x) suit a DeepLabv3 head, which predicts at 1/8 of the input (1/16 at
  its default output stride) and cannot draw smaller strokes with its bilinear upsampling.
  Measured on the held-out masks: the ground truth averaged to the logit grid and upsampled back
  scores mIoU 0.33 at 1/16 and 0.81 at 1/8 on 2-5x digits; 0.66 at 1/16 and 0.97 at 1/8 on 5-7x
  (0.83 at 1/8 when the digits were scaled as 8x8 blocks instead of resized bilinearly).
* **VOC** (``JPEGImages/``, ``SegmentationClass/*.png`` palette masks, ``ImageSets/Segmentation/
  {train,val}.txt``): VOC's 21 classes, 255 = ignore (object boundaries).
* **mask folder** (``{train,val}/images/*`` and ``{train,val}/masks/<same stem>.png``): masks hold
  class ids; ``classes.txt`` (one name per line, background first) names them, else they are
  ``background, class_1, ...`` up to the largest id found.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .detection import DIGIT_CANVAS, DIGIT_SCALES, DIGITS_PER_CANVAS, canvas, digit_split
from .images import IMAGE_EXTENSIONS, UnreadableImage, load_image

IGNORE_INDEX = 255


@dataclass
class SegmentationSplits:
    train: Dataset
    val: Dataset
    classes: list[str]


def is_voc_segmentation_folder(root: Path) -> bool:
    return (root / "SegmentationClass").is_dir() and (root / "JPEGImages").is_dir()


def is_mask_folder(root: Path) -> bool:
    return (root / "train" / "masks").is_dir() and (root / "val" / "masks").is_dir()


def load_mask(path: Path) -> torch.Tensor:
    """A mask file's class ids (a palette PNG's indices, or a grayscale image's values)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L"):
                raise UnreadableImage(path, f"a mask must be a palette or grayscale image, not {im.mode}")
            return torch.from_numpy(np.array(im, dtype=np.uint8))
    except (OSError, ValueError) as e:
        if isinstance(e, UnreadableImage):
            raise
        raise UnreadableImage(path, str(e)) from None


class DigitMasks(Dataset):
    """Digit canvases with class masks; canvas ``i`` of epoch ``e`` depends only on (seed, e, i)
    (with ``fresh=False`` only on (seed, i))."""

    def __init__(self, digits: np.ndarray, labels: np.ndarray, count: int, seed: int, fresh: bool = False,
                 size: int = DIGIT_CANVAS) -> None:
        self.digits, self.labels, self.count = digits, labels, count
        self.seed, self.fresh, self.size = seed, fresh, size
        self.epoch = 0
        self.classes = ["background", *(str(d) for d in range(10))]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.epoch if self.fresh else 0, i))
        img, _, _, mask = canvas(rng, self.digits, self.labels, self.size, DIGIT_SCALES, DIGITS_PER_CANVAS)
        return torch.from_numpy(img).permute(2, 0, 1).contiguous(), torch.from_numpy(mask)


def digit_mask_splits(val_split: float = 0.2, seed: int = 0, train_count: int = 1200) -> SegmentationSplits:
    """Train and held-out canvases from disjoint digit images (stratified, seeded)."""
    (tr_x, tr_y), (va_x, va_y), val_count = digit_split(val_split, seed, train_count)
    train = DigitMasks(tr_x, tr_y, train_count, seed * 2 + 1, fresh=True)
    return SegmentationSplits(train, DigitMasks(va_x, va_y, val_count, seed * 2 + 2), train.classes)


class MaskedImages(Dataset):
    """Image files with mask files, decoded when read (an unreadable one raises :class:`UnreadableImage`)."""

    def __init__(self, pairs: list[tuple[Path, Path]], classes: list[str]) -> None:
        self.pairs, self.classes = pairs, classes

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[Any, torch.Tensor]:
        image, mask = self.pairs[i]
        return load_image(image), load_mask(mask)


def voc_segmentation_splits(root: Path, classes: list[str]) -> SegmentationSplits:
    """``ImageSets/Segmentation/train.txt`` and ``val.txt``."""
    sets = root / "ImageSets" / "Segmentation"
    missing = [n for n in ("train", "val") if not (sets / f"{n}.txt").is_file()]
    if missing:
        raise ValueError(f"{sets}: need train.txt and val.txt (missing: {', '.join(missing)})")

    def pairs(name: str) -> list[tuple[Path, Path]]:
        ids = [s.split()[0] for s in (sets / f"{name}.txt").read_text().splitlines() if s.strip()]
        return [(root / "JPEGImages" / f"{i}.jpg", root / "SegmentationClass" / f"{i}.png") for i in ids]
    return SegmentationSplits(MaskedImages(pairs("train"), classes), MaskedImages(pairs("val"), classes), classes)


def mask_folder_splits(root: Path) -> SegmentationSplits:
    """``{train,val}/images`` with ``{train,val}/masks`` of the same stems."""
    split_pairs: dict[str, list[tuple[Path, Path]]] = {}
    for split in ("train", "val"):
        masks = {p.stem: p for p in (root / split / "masks").iterdir() if p.suffix.lower() == ".png"}
        images = sorted(p for p in (root / split / "images").iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        unmatched = [p.name for p in images if p.stem not in masks]
        if unmatched:
            raise ValueError(f"{root / split}: no mask for {', '.join(unmatched[:5])}"
                             f"{' ...' if len(unmatched) > 5 else ''} (masks/<stem>.png)")
        split_pairs[split] = [(p, masks[p.stem]) for p in images]
    names = root / "classes.txt"
    if names.is_file():
        classes = [line.strip() for line in names.read_text().splitlines() if line.strip()]
    else:
        top = max((int(v) for _, m in split_pairs["train"] for v in load_mask(m).unique().tolist()
                   if v != IGNORE_INDEX), default=1)
        classes = ["background", *(f"class_{k}" for k in range(1, top + 1))]
    return SegmentationSplits(MaskedImages(split_pairs["train"], classes), MaskedImages(split_pairs["val"], classes),
                              classes)


def load_segmentation_splits(spec: Any, voc_classes: list[str]) -> SegmentationSplits:
    """The train and held-out segmentation datasets a :class:`~mobilenets.data.DataSpec` names."""
    if spec.kind == "digits":
        return digit_mask_splits(spec.val_split, spec.seed)
    if spec.kind == "voc_seg":
        return voc_segmentation_splits(Path(spec.root), voc_classes)
    if spec.kind == "masks":
        return mask_folder_splits(Path(spec.root))
    raise ValueError(f"{spec.kind!r} data holds no masks; segmentation takes a VOC folder, an image + mask "
                     "folder, or 'digits'")
