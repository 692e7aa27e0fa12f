"""Training that stops learning says so: after each epoch, the signs that a run is learning nothing -
a training loss at chance level with held-out accuracy no better than the largest class, held-out
predictions that have collapsed to one class, a detector that finds no held-out object - turn into a
warning that names the likely causes."""

from __future__ import annotations

import math
from typing import Any

import torch

#: A training loss within this fraction of ln(C) is at chance level.
CHANCE_MARGIN = 0.03
MIN_STEPS = 100


def collapsed_to(confusion: torch.Tensor, classes: list[str]) -> str | None:
    """The one class every held-out prediction names, when the truth holds several; else None."""
    predicted = (confusion.sum(0) > 0).nonzero().flatten().tolist()
    present = int((confusion.sum(1) > 0).sum())
    return classes[predicted[0]] if len(predicted) == 1 and present > 1 else None


def stall_signs(classes: list[str], epoch: int, train_loss: float, ev: Any, steps: int = 0) -> list[str]:
    """What in this epoch's numbers says that the model learns nothing (empty when it learns), read from
    what the evaluation holds: a classifier's top-1, a confusion matrix (images or pixels), a
    detector's mAP@0.5. A first epoch of fewer than :data:`MIN_STEPS` steps says nothing yet: a new
    classifier names one class for a few steps."""
    if epoch < 2 and steps < MIN_STEPS:
        return []
    signs = []
    top1 = getattr(ev, "top1", None)
    chance = math.log(len(classes)) if top1 is not None and len(classes) > 1 else None
    if chance is not None and top1 is not None and train_loss >= chance * (1 - CHANCE_MARGIN) \
            and top1 <= _majority(ev) + 10:
        signs.append(f"the training loss {train_loss:.4f} is at chance level (ln {len(classes)} = {chance:.4f}) and "
                     f"held-out top-1 {top1:.1f}% is no better than always naming the largest class")
    confusion = getattr(ev, "confusion", None)
    if confusion is not None:
        one = collapsed_to(confusion, list(ev.classes))
        if one is not None:
            signs.append(f"every held-out {'image' if top1 is not None else 'pixel'} is predicted as {one!r}")
    if getattr(ev, "map50", 1.0) == 0:
        signs.append("no held-out object is found (mAP@0.5 0)")
    return signs


def _majority(ev: Any) -> float:
    """Held-out top-1 (%) of always naming the most frequent class."""
    totals = ev.confusion.sum(1)
    return 100.0 * float(totals.max()) / max(float(totals.sum()), 1.0)


def stall_warning(signs: list[str], epoch: int, lr: float, init: str | None, freeze_bn: bool) -> str:
    causes = [f"a learning rate too high for this model and data (now {lr:g}; try --lr {lr / 10:g})"]
    if init:
        causes.append("BatchNorm that does not match the init weights (--freeze-bn with weights of another input "
                      "range; a folded file's layers without statistics)" if freeze_bn else
                      "init weights whose input normalization differs from the data's (check the weights' "
                      "preprocessing)")
    causes += ["labels that do not match the images (check a few by eye; `mobilenets eval` saves examples)",
               "too few images of some classes for the model (--freeze-backbone learns from fewer)"]
    return (f"warning: the model is not learning after epoch {epoch}: " + "; ".join(signs) + ".\n  Likely causes: "
            + "; ".join(causes) + ".")
