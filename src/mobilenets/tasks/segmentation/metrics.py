"""Segmentation metrics from one confusion matrix accumulated over a split: mean IoU (over the
classes present in the ground truth or the predictions), pixel accuracy and per-class IoU; pixels
labelled ``ignore_index`` count nowhere."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ...utils.textfmt import render_table, unreadable_note


@dataclass
class SegmentationEvalResult:
    miou: float  # fractions
    pixel_acc: float
    count: int  # images
    classes: list[str]
    per_class: dict[str, float] = field(default_factory=dict)  # IoU per class (NaN: absent everywhere)
    loss: float = float("nan")
    skipped: list[str] = field(default_factory=list)
    confusion: torch.Tensor | None = None  # pixels [true, predicted]
    examples: list[Any] = field(default_factory=list)  # a few held-out images with predicted masks, for people

    @property
    def primary(self) -> float:
        return self.miou

    def describe(self) -> str:
        """Per-class IoU as a table, then the totals (what ``mobilenets eval`` prints)."""
        table = render_table(["class", "IoU %"], [[c, f"{100 * v:.2f}"] for c, v in self.per_class.items()])
        return (f"{table}\n\nmIoU {100 * self.miou:.2f}  pixel accuracy {100 * self.pixel_acc:.2f}  on {self.count} "
                f"images{unreadable_note(self.skipped)}")

    def to_dict(self) -> dict[str, Any]:
        return {"miou": round(self.miou, 6), "pixel_acc": round(self.pixel_acc, 6), "loss": round(self.loss, 6),
                "count": self.count, "per_class": {k: round(v, 6) for k, v in self.per_class.items()},
                "skipped": self.skipped}


class ConfusionMeter:
    """``matrix[t, p]``: pixels of true class ``t`` predicted as ``p``."""

    def __init__(self, classes: list[str], ignore_index: int = 255) -> None:
        self.classes, self.ignore_index = classes, ignore_index
        n = len(classes)
        self.matrix = torch.zeros(n, n, dtype=torch.int64)
        self.images = 0

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """One or more images' predicted and true class maps (same shape)."""
        n = len(self.classes)
        keep = target != self.ignore_index
        t, p = target[keep].long().cpu(), pred[keep].long().cpu()
        if len(t) and (int(t.max()) >= n or int(t.min()) < 0):
            raise ValueError(f"mask values must be 0..{n - 1} or {self.ignore_index} (ignore), found {int(t.max())}")
        self.matrix += torch.bincount(t * n + p, minlength=n * n).reshape(n, n)
        self.images += 1 if pred.dim() == 2 else pred.shape[0]

    def merge(self, others: list[ConfusionMeter]) -> None:
        for o in others:
            self.matrix += o.matrix
            self.images += o.images

    def result(self, loss: float = float("nan"), skipped: list[str] | None = None) -> SegmentationEvalResult:
        if not self.images:
            raise ValueError("no readable evaluation images")
        m = self.matrix.double()
        tp, union = m.diag(), m.sum(0) + m.sum(1) - m.diag()
        iou = torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))
        present = union > 0
        miou = float(iou[present].mean()) if present.any() else 0.0
        acc = float(tp.sum() / m.sum()) if m.sum() > 0 else 0.0
        return SegmentationEvalResult(miou, acc, self.images, self.classes,
                                      {c: float(v) for c, v in zip(self.classes, iou.tolist())}, loss, skipped or [],
                                      self.matrix.clone())
