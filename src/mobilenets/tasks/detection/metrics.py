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
from .boxes import Detections

STAT_NAMES = ("map", "map50", "map75", "map_small", "map_medium", "map_large")


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

    @property
    def primary(self) -> float:
        return self.map

    def describe(self) -> str:
        """Per-class AP as a table, then COCO's totals (what ``mobilenets eval`` prints)."""
        rows = [[c, f"{100 * a:.2f}", f"{100 * self.per_class_ap50[c]:.2f}"] for c, a in self.per_class.items()]
        pct = {k: f"{100 * getattr(self, k):.2f}" for k in STAT_NAMES}
        return (f"{render_table(['class', 'AP %', 'AP@0.5 %'], rows)}\n\nmAP {pct['map']}  mAP@0.5 {pct['map50']}  "
                f"mAP@0.75 {pct['map75']}  small {pct['map_small']}  medium {pct['map_medium']}  large "
                f"{pct['map_large']}  (COCO, pycocotools) on {self.count} images{unreadable_note(self.skipped)}")

    def to_dict(self) -> dict[str, Any]:
        d = {k: round(getattr(self, k), 6) for k in STAT_NAMES}
        return {**d, "loss": round(self.loss, 6), "count": self.count, "per_class": self.per_class,
                "per_class_ap50": self.per_class_ap50, "pr_curves": self.pr_curves, "skipped": self.skipped}


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
                                   pr_curves=curves)
