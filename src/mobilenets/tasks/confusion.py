"""Per-class numbers read from a confusion matrix, shared by the tasks that count one (a classifier's
images, a detector's matched boxes)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def precision_recall(confusion: torch.Tensor, classes: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per class of ``classes`` (the first rows and columns of ``[true, predicted]`` counts; a detector's
    last row and column, the background, count as mistakes only): precision and recall in percent, and
    the number of true items."""
    c = confusion.double()
    n = len(classes)
    tp, predicted, true = c.diag()[:n], c.sum(0)[:n], c.sum(1)[:n]
    prec = torch.where(predicted > 0, tp / predicted.clamp_min(1), torch.zeros_like(tp)) * 100
    rec = torch.where(true > 0, tp / true.clamp_min(1), torch.zeros_like(tp)) * 100
    return {name: {"precision": round(float(p), 4), "recall": round(float(r), 4), "support": int(s)}
            for name, p, r, s in zip(classes, prec, rec, true)}
