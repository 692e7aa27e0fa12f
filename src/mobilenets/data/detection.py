"""Detection data: COCO, Pascal VOC and YOLO datasets, and an embedded default made of real digits.

A sample is ``(image, target)``: the image as a PIL image or uint8 tensor, the target a dict with
``boxes`` (``[k, 4]`` float, ``x1, y1, x2, y2`` in pixels of the original image), ``labels``
(``[k]``, 1..C; 0 is the background) and ``image_id``. Class names are listed without the
background: label ``k`` is ``classes[k - 1]``.

* **digits** (no download): scikit-learn's real 8x8 handwritten digits, resized bilinearly 5-7x
  (40-56 px glyphs on 96 px canvases) and pasted at random positions on noisy canvases, two or three
  attempted per canvas, with tight boxes; train and held-out canvases use disjoint digit images (a
  stratified split), deterministic by seed. The training canvases are drawn anew every epoch
  (``set_epoch``): fresh compositions of the same digit images, an augmentation that costs nothing;
  the held-out canvases are fixed. The segmentation default draws the same canvases. Why this size:
  measured with SSDLite at output stride 8 (1000 steps of 16), 2-5x digits (10-40 px, one to four)
  reach held-out mAP@0.5 0.85, 5-7x digits 1.00; at output stride 32 neither learns the digit
  classes in minutes (mAP@0.5 0.12-0.33).
* **COCO** JSON (:mod:`~mobilenets.data.coco`), **Pascal VOC** XML (:mod:`~mobilenets.data.voc`) and
  **YOLO** txt (:mod:`~mobilenets.data.yolo`) in the layouts labeling tools write, each checked, with
  every problem recorded by file (:class:`~mobilenets.data.annotations.DataIssues`).
"""

from __future__ import annotations

from collections.abc import Sized
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch.utils.data import Dataset

from .annotations import DetectionSplits, box_target
from .coco import coco_files, coco_splits
from .voc import is_voc_folder, voc_splits
from .yolo import data_yaml, is_yolo_folder, yolo_splits

DIGIT_CANVAS = 96  # px; the embedded data's image size
DIGIT_SCALES = (5, 7)  # each 8x8 digit is resized by an integer factor in this range (inclusive)
DIGITS_PER_CANVAS = (2, 3)  # attempted; a digit that finds no free place after 20 tries is left out


# ------------------------------------------------------------------------------ embedded digits


class DigitCanvases(Dataset):
    """Real handwritten digits on canvases, with boxes (see the module docstring); canvas ``i`` of
    epoch ``e`` depends only on (seed, e, i) - with ``fresh=False`` only on (seed, i)."""

    def __init__(self, digits: np.ndarray, labels: np.ndarray, count: int, seed: int, fresh: bool = False,
                 size: int = DIGIT_CANVAS, scales: tuple[int, int] = DIGIT_SCALES,
                 per_canvas: tuple[int, int] = DIGITS_PER_CANVAS) -> None:
        self.digits, self.labels, self.count = digits, labels, count
        self.seed, self.fresh, self.size = seed, fresh, size
        self.scales, self.per_canvas = scales, per_canvas
        self.epoch = 0
        self.classes = [str(d) for d in range(10)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, Any]]:
        rng = np.random.default_rng((self.seed, self.epoch if self.fresh else 0, i))
        img, boxes, labs, _ = canvas(rng, self.digits, self.labels, self.size, self.scales, self.per_canvas)
        return torch.from_numpy(img).permute(2, 0, 1).contiguous(), box_target(boxes, labs, i)


def canvas(rng: np.random.Generator, digits: np.ndarray, labels: np.ndarray, size: int, scales: tuple[int, int],
           per_canvas: tuple[int, int]) -> tuple[np.ndarray, list[list[float]], list[int], np.ndarray]:
    """One canvas: noise background, resized digits that overlap each other by less than 10%;
    with the boxes, their labels (1..10) and a class mask (0 background, 1..10 where a digit covers
    at least half the pixel, 255 = ignore on the faint edge in between)."""
    bg = rng.uniform(0, 60)
    img = np.clip(bg + rng.normal(0, 12, (size, size, 3)), 0, 255)
    mask = np.zeros((size, size), dtype=np.uint8)
    boxes: list[list[float]] = []
    labs: list[int] = []
    for _ in range(int(rng.integers(per_canvas[0], per_canvas[1] + 1))):
        k = int(rng.integers(len(digits)))
        scale = int(rng.integers(scales[0], scales[1] + 1))
        glyph = _glyph(digits[k], scale)
        h, w = glyph.shape
        for _attempt in range(20):
            y, x = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
            box = [float(x), float(y), float(x + w), float(y + h)]
            if all(_overlap(box, b) < 0.1 for b in boxes):
                break
        else:
            continue
        color = rng.uniform(150, 255, 3)
        alpha = (glyph / 16.0)[..., None]
        img[y: y + h, x: x + w] = img[y: y + h, x: x + w] * (1 - alpha) + color * alpha
        region = mask[y: y + h, x: x + w]
        region[glyph > 2] = 255
        region[alpha[..., 0] >= 0.5] = int(labels[k]) + 1
        boxes.append(box)
        labs.append(int(labels[k]) + 1)
    return img.round().astype(np.uint8), boxes, labs, mask


def _glyph(digit: np.ndarray, scale: int) -> np.ndarray:
    """An 8x8 digit (values 0..16) resized bilinearly by ``scale`` and cropped to its ink: smooth
    strokes, as a camera would see the digit, rather than 8x8 blocks whose square corners no
    segmentation model at output stride 8 can draw."""
    padded = torch.nn.functional.pad(torch.from_numpy(digit).float()[None, None], (1, 1, 1, 1))
    glyph = torch.nn.functional.interpolate(padded, scale_factor=scale, mode="bilinear")[0, 0].numpy()
    ys, xs = np.nonzero(glyph > 2)
    return glyph[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]


def _overlap(a: list[float], b: list[float]) -> float:
    """Intersection over the smaller box's area."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / max(small, 1e-9)


def digit_split(val_split: float, seed: int, train_count: int) -> tuple[tuple[np.ndarray, np.ndarray],
                                                                       tuple[np.ndarray, np.ndarray], int]:
    """scikit-learn's digits split into disjoint train and held-out images (stratified, seeded), and
    the number of held-out canvases that keeps the split's ratio."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    tr, va = train_test_split(np.arange(len(d.target)), test_size=val_split, random_state=seed, stratify=d.target)
    val_count = max(1, int(round(train_count * val_split / (1 - val_split))))
    return (d.images[tr], d.target[tr]), (d.images[va], d.target[va]), val_count


def digit_canvases(val_split: float = 0.2, seed: int = 0, train_count: int = 1200) -> DetectionSplits:
    """Train and held-out canvases from disjoint digit images (stratified, seeded)."""
    (tr_x, tr_y), (va_x, va_y), val_count = digit_split(val_split, seed, train_count)
    train = DigitCanvases(tr_x, tr_y, train_count, seed * 2 + 1, fresh=True)
    val = DigitCanvases(va_x, va_y, val_count, seed * 2 + 2)
    return DetectionSplits(train, val, train.classes)


# ------------------------------------------------------------------------------ dispatch


def detection_kind(root: Path) -> str | None:
    """"coco", "voc" or "yolo" for a detection dataset's folder (or its annotation JSON / data.yaml)."""
    if data_yaml(root) is not None:
        return "yolo"
    if coco_files(root):
        return "coco"
    if is_voc_folder(root):
        return "voc"
    if is_yolo_folder(root):
        return "yolo"
    return None


def load_detection_splits(spec: Any) -> DetectionSplits:
    """The train and held-out detection datasets a :class:`~mobilenets.data.DataSpec` names."""
    if spec.kind == "digits":
        return digit_canvases(spec.val_split, spec.seed)
    readers = {"coco": coco_splits, "voc": voc_splits, "yolo": yolo_splits}
    if spec.kind not in readers:
        raise ValueError(f"{spec.kind!r} data holds no boxes; detection takes COCO, VOC or YOLO data, or 'digits'")
    splits = readers[spec.kind](Path(spec.root), spec.val_split, spec.seed)
    if not len(cast(Sized, splits.train)):
        raise ValueError(f"{spec.root}: none of the training images could be used\n{splits.issues.summary()}")
    return splits
