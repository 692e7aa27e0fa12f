"""COCO mean average precision with ``pycocotools``, the reference implementation.

Ground truth and detections are both in pixels of the original images; crowd (COCO) and difficult
(VOC) boxes are marked ``iscrowd`` so that detections on them neither count nor hurt.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ...utils.textfmt import render_table, unreadable_note
from ..confusion import precision_recall
from .boxes import Detections

STAT_NAMES = ("map", "map50", "map75", "map_small", "map_medium", "map_large")
#: The detections a confusion matrix counts: scores from this (what ``examples.png`` draws), matched at this IoU.
CONFUSION_SCORE = 0.3
CONFUSION_IOU = 0.5


@dataclass
class DetectionEvalResult:
    map: float  # AP @ IoU 0.50:0.95, as a fraction
    map50: float
    map75: float
    map_small: float
    map_medium: float
    map_large: float
    count: int  # images
    classes: list[str]
    per_class: dict[str, float] = field(default_factory=dict)  # AP @ 0.50:0.95 per class
    loss: float = float("nan")
    skipped: list[str] = field(default_factory=list)
    per_class_ap50: dict[str, float] = field(default_factory=dict)
    pr_curves: dict[str, list[float]] = field(default_factory=dict)  # precision at recall 0, 0.01 .. 1, IoU 0.5
    examples: list[Any] = field(default_factory=list)  # a few held-out images with detections, for people
    box_confusion: torch.Tensor | None = None  # [C + 1, C + 1]: see :func:`box_confusion`

    @property
    def precision_recall(self) -> dict[str, dict[str, float]]:
        """Per class, from :attr:`box_confusion`: precision and recall (percent) of the detections
        scoring >= :data:`CONFUSION_SCORE`, and the number of held-out boxes."""
        return {} if self.box_confusion is None else precision_recall(self.box_confusion, self.classes)

    @property
    def primary(self) -> float:
        return self.map

    def describe(self) -> str:
        """Per-class AP, and precision and recall at a score of :data:`CONFUSION_SCORE`, as a table, then
        COCO's totals (what ``mobilenets eval`` prints)."""
        pr = self.precision_recall
        rows = [[c, f"{100 * a:.2f}", f"{100 * self.per_class_ap50[c]:.2f}",
                 *((f"{pr[c]['precision']:.2f}", f"{pr[c]['recall']:.2f}", pr[c]["support"]) if c in pr else ())]
                for c, a in self.per_class.items()]
        head = ["class", "AP %", "AP@0.5 %", *((f"P@{CONFUSION_SCORE:g} %", f"R@{CONFUSION_SCORE:g} %", "boxes")
                                               if pr else ())]
        pct = {k: f"{100 * getattr(self, k):.2f}" for k in STAT_NAMES}
        return (f"{render_table(head, rows)}\n\nmAP {pct['map']}  mAP@0.5 {pct['map50']}  "
                f"mAP@0.75 {pct['map75']}  small {pct['map_small']}  medium {pct['map_medium']}  large "
                f"{pct['map_large']}  (COCO, pycocotools) on {self.count} images{unreadable_note(self.skipped)}")

    def to_dict(self) -> dict[str, Any]:
        d = {k: round(getattr(self, k), 6) for k in STAT_NAMES}
        confusion = {} if self.box_confusion is None else {
            "precision_recall": self.precision_recall, "confusion": self.box_confusion.tolist(),
            "confusion_labels": self.confusion_labels, "confusion_score": CONFUSION_SCORE}
        return {**d, "loss": round(self.loss, 6), "count": self.count, "per_class": self.per_class,
                "per_class_ap50": self.per_class_ap50, "pr_curves": self.pr_curves, **confusion,
                "skipped": self.skipped}

    @property
    def confusion_labels(self) -> list[str]:
        """The rows and columns of :attr:`box_confusion`: the classes, then "background"."""
        return [*self.classes, "background"]


def box_confusion(gt: list[dict[str, Any]], dt: list[dict[str, Any]], num_classes: int,
                  score: float = CONFUSION_SCORE, iou: float = CONFUSION_IOU) -> torch.Tensor:
    """Counts ``[C + 1, C + 1]`` (rows: truth, columns: prediction, index C: background) from COCO-style
    ``gt`` and ``dt`` (``bbox`` x, y, w, h; ``category_id`` 1..C): in each image the boxes and the
    detections scoring >= ``score`` are matched one to one at IoU >= ``iou``, the largest IoU first and
    whatever the classes, so a box found with the wrong class lands off the diagonal, a missed box in
    the background column and a detection of nothing in the background row. Crowd (difficult) boxes,
    and the detections that only they explain, are not counted. Why: mAP says how well; this says what
    is mistaken for what (a mask worn badly for a mask, or for nothing)."""
    from torchvision.ops import box_iou

    m = torch.zeros(num_classes + 1, num_classes + 1, dtype=torch.long)
    images: dict[int, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    for g in gt:
        images.setdefault(g["image_id"], ([], []))[0].append(g)
    for d in dt:
        if d["score"] >= score:
            images.setdefault(d["image_id"], ([], []))[1].append(d)

    def xyxy(items: list[dict[str, Any]]) -> torch.Tensor:
        b = torch.tensor([i["bbox"] for i in items], dtype=torch.float64).reshape(-1, 4)
        return torch.cat([b[:, :2], b[:, :2] + b[:, 2:]], 1)

    for boxes, dets in images.values():
        real = [g for g in boxes if not g["iscrowd"]]
        crowd = [g for g in boxes if g["iscrowd"]]
        overlap = box_iou(xyxy(real), xyxy(dets))
        found: set[int] = set()
        used: set[int] = set()
        while overlap.numel() and float(overlap.max()) >= iou:
            gi, di = divmod(int(overlap.argmax()), overlap.shape[1])
            m[real[gi]["category_id"] - 1, dets[di]["category_id"] - 1] += 1
            found.add(gi)
            used.add(di)
            overlap[gi, :], overlap[:, di] = -1.0, -1.0
        for gi, g in enumerate(real):
            if gi not in found:
                m[g["category_id"] - 1, num_classes] += 1
        on_crowd = (box_iou(xyxy(crowd), xyxy(dets)) >= iou).any(0).tolist() if crowd else [False] * len(dets)
        for di, d in enumerate(dets):
            if di not in used and not on_crowd[di]:
                m[num_classes, d["category_id"] - 1] += 1
    return m


class CocoMeter:
    """Collects ground truth and detections image by image, then runs COCOeval once."""

    def __init__(self, classes: list[str]) -> None:
        self.classes = classes
        self.images: list[dict[str, Any]] = []
        self.gt: list[dict[str, Any]] = []
        self.dt: list[dict[str, Any]] = []

    def update(self, detections: Detections, boxes_px: torch.Tensor, target: dict[str, Any]) -> None:
        """One image: its detections (``boxes_px`` = the detection boxes in the image's pixels) and
        its target (``orig_boxes``, ``orig_labels``, ``orig_ignore``, ``orig_size``)."""
        image_id = len(self.images) + 1
        h, w = target["orig_size"]
        self.images.append({"id": image_id, "height": int(h), "width": int(w)})
        for box, label, ignore in zip(target["orig_boxes"].tolist(), target["orig_labels"].tolist(),
                                      target["orig_ignore"].tolist()):
            bw, bh = box[2] - box[0], box[3] - box[1]
            self.gt.append({"id": len(self.gt) + 1, "image_id": image_id, "category_id": int(label),
                            "bbox": [box[0], box[1], bw, bh], "area": bw * bh, "iscrowd": int(ignore)})
        for box, score, label in zip(boxes_px.tolist(), detections.scores.tolist(), detections.labels.tolist()):
            self.dt.append({"image_id": image_id, "category_id": int(label), "score": float(score),
                            "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})

    def merge(self, others: list[CocoMeter]) -> None:
        """Add other ranks' images (ids renumbered)."""
        for o in others:
            offset, gt_offset = len(self.images), len(self.gt)
            self.images += [{**im, "id": im["id"] + offset} for im in o.images]
            self.gt += [{**g, "id": g["id"] + gt_offset, "image_id": g["image_id"] + offset} for g in o.gt]
            self.dt += [{**d, "image_id": d["image_id"] + offset} for d in o.dt]

    def result(self, loss: float = float("nan"), skipped: list[str] | None = None) -> DetectionEvalResult:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        if not self.images:
            raise ValueError("no readable evaluation images")
        cats = [{"id": i + 1, "name": c} for i, c in enumerate(self.classes)]
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            gt = COCO()
            gt.dataset = {"images": self.images, "annotations": self.gt, "categories": cats}
            gt.createIndex()
            if not self.dt:
                stats = np.zeros(12)
                precision = np.zeros((10, 101, len(self.classes)))
            else:
                ev = COCOeval(gt, gt.loadRes(self.dt), "bbox")
                ev.evaluate()
                ev.accumulate()
                ev.summarize()
                stats = np.maximum(ev.stats, 0.0)  # -1 means "no such boxes": report 0
                precision = ev.eval["precision"][:, :, :, 0, -1]  # IoUs x recalls x classes, all areas, 100 dets
        per_class, ap50, curves = {}, {}, {}
        for k, c in enumerate(self.classes):
            p = precision[:, :, k]
            per_class[c] = round(float(p[p > -1].mean()) if (p > -1).any() else 0.0, 6)
            ap50[c] = round(float(p[0][p[0] > -1].mean()) if (p[0] > -1).any() else 0.0, 6)
            curves[c] = [round(float(v), 4) for v in np.maximum(p[0], 0.0)]
        m, m50, m75, small, medium, large = (float(s) for s in stats[:6])
        return DetectionEvalResult(m, m50, m75, small, medium, large, count=len(self.images), classes=self.classes,
                                   per_class=per_class, loss=loss, skipped=skipped or [], per_class_ap50=ap50,
                                   pr_curves=curves, box_confusion=box_confusion(self.gt, self.dt, len(self.classes)))
