"""Copy-paste augmentation for detection (Ghiasi et al. 2021, "Simple Copy-Paste is a Strong Data
Augmentation Method for Instance Segmentation", with boxes for masks; Dwibedi et al. 2017, "Cut, Paste
and Learn").

A training image gets, with probability ``p``, one to ``max_boxes`` objects cut from the training
images (their box, with what it holds) and pasted at about their own size where they overlap no box.
The class of each pasted object is drawn uniformly, then one of its boxes: a class with 3% of the
boxes is pasted as often as the others, so a rare class is seen in many more places and contexts than
its own photos give. Boxes whose sides are under ``min_side`` pixels are not cut (too few pixels to
show their class). On the facemask photos (``mask_weared_incorrect``: 103 of 3106 training boxes),
held-out mAP@0.5 with seeds 0 / 1 / 2: 0.570 / 0.545 / 0.571 against 0.553 / 0.558 / 0.543 without, the
rare class 0.26 / 0.18 / 0.25 against 0.18 / 0.20 / 0.17 (README "Real data").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from .images import UnreadableImage, load_image

#: Boxes with a side under this many pixels are not cut out.
MIN_SIDE = 12
#: Attempts at a free place for each pasted box.
PLACEMENT_TRIES = 10
#: Cut-out objects kept decoded, per data-loader worker, up to this many pixels (48 MB of RGB): a paste
#: then costs no decode of its whole source photo. Facemask's 2585 objects fit.
CACHE_PIXELS = 16_000_000


class CopyPaste(Dataset):
    """``base`` (an annotated detection dataset: ``samples`` of ``(path, target)``, items ``(PIL image,
    target)`` with ``boxes`` in the image's pixels, ``labels`` and ``ignore``) with objects of its own
    pasted in. Random draws use torch's generator (seeded per data-loader worker)."""

    def __init__(self, base: Dataset, p: float, max_boxes: int = 3, min_side: float = MIN_SIDE,
                 scale: tuple[float, float] = (0.8, 1.25)) -> None:
        samples = getattr(base, "samples", None)
        if samples is None:
            raise ValueError("copy-paste needs annotated image files (COCO, VOC or YOLO data), not "
                             f"{type(base).__name__}")
        if not 0 <= p <= 1 or max_boxes < 1:
            raise ValueError(f"invalid copy-paste: probability {p!r} must be in [0, 1], max_boxes {max_boxes!r} >= 1")
        self.base, self.p, self.max_boxes, self.scale = base, p, max_boxes, scale
        self.bank: dict[int, list[tuple[Any, list[float]]]] = {}  # class -> (image file, box) to cut out
        for path, t in samples:
            for box, label, ignore in zip(t["boxes"].tolist(), t["labels"].tolist(), t["ignore"].tolist()):
                if not ignore and min(box[2] - box[0], box[3] - box[1]) >= min_side:
                    self.bank.setdefault(int(label), []).append((path, box))
        self.classes = sorted(self.bank)
        self._cache: dict[tuple[int, int], Image.Image] = {}
        self._cached_pixels = 0

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[Image.Image, dict[str, Any]]:
        img, target = self.base[i]
        if not self.classes or float(torch.rand(())) >= self.p:
            return img, target
        img = img.copy()
        boxes, labels = target["boxes"].tolist(), target["labels"].tolist()
        for _ in range(int(torch.randint(1, self.max_boxes + 1, ()))):
            label = self.classes[int(torch.randint(len(self.classes), ()))]
            piece = self._cut(label, int(torch.randint(len(self.bank[label]), ())))
            if piece is None or piece.width >= img.width or piece.height >= img.height:
                continue
            for _try in range(PLACEMENT_TRIES):
                x = int(torch.randint(img.width - piece.width + 1, ()))
                y = int(torch.randint(img.height - piece.height + 1, ()))
                placed = [x, y, x + piece.width, y + piece.height]
                if not any(_overlap(placed, b) for b in boxes):
                    img.paste(piece, (x, y))
                    boxes.append([float(v) for v in placed])
                    labels.append(label)
                    break
        added = len(boxes) - len(target["boxes"])
        return img, {**target, "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                     "labels": torch.tensor(labels, dtype=target["labels"].dtype),
                     "ignore": torch.cat([target["ignore"], torch.zeros(added, dtype=torch.bool)])}

    def _cut(self, label: int, k: int) -> Image.Image | None:
        """Object ``k`` of class ``label``: its box's pixels, resized by a random factor in ``scale`` and
        flipped half the time; None for an image that cannot be read now (the data check reported it)."""
        piece = self._cache.get((label, k))
        if piece is None:
            path, box = self.bank[label][k]
            try:
                src = load_image(path)
            except UnreadableImage:
                return None
            x1, y1, x2, y2 = (round(v) for v in box)
            piece = src.crop((x1, y1, x2, y2))
            if self._cached_pixels + piece.width * piece.height <= CACHE_PIXELS:
                self._cache[(label, k)] = piece
                self._cached_pixels += piece.width * piece.height
        lo, hi = self.scale
        f = lo + (hi - lo) * float(torch.rand(()))
        size = (max(1, round(piece.width * f)), max(1, round(piece.height * f)))
        piece = piece.resize(size, Image.Resampling.BILINEAR)
        return piece.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if float(torch.rand(())) < 0.5 else piece


def _overlap(a: Sequence[float], b: Sequence[float]) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])
