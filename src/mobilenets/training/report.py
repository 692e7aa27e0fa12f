"""What a person looks at after a run, written next to the weights: the numbers (``eval.json``: per-class
precision and recall, AP or IoU), a confusion matrix (``confusion.png``; a detector's has a background
row and column), a detector's precision-recall curve per class (``pr_curves.png``) and a grid of held-out
images with prediction and truth (``examples.png``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..models import Preprocess
from ..utils.fsutil import atomic_write_text
from ..utils.plotting import pyplot, save_figure
from .plots import plot_confusion

EXAMPLES = 16  # held-out images in the grid
BOX_SCORE = 0.3  # the lowest detection score drawn


@dataclass
class Example:
    """One held-out image as the model saw it (uint8 ``[3, H, W]``), with what it predicted and the truth."""

    image: torch.Tensor
    title: str
    correct: bool | None = None  # colours the title; None for detections and masks
    pred_boxes: torch.Tensor | None = None  # [k, 4] pixels of ``image``
    pred_labels: list[str] = field(default_factory=list)
    true_boxes: torch.Tensor | None = None
    pred_mask: torch.Tensor | None = None  # [H, W] class ids
    true_mask: torch.Tensor | None = None


def to_uint8(x: torch.Tensor, preprocess: Preprocess) -> torch.Tensor:
    """A normalized input image back to uint8 RGB."""
    mean = torch.tensor(preprocess.mean).view(-1, 1, 1)
    std = torch.tensor(preprocess.std).view(-1, 1, 1)
    return (x.float().cpu() * std + mean).clamp(0, 1).mul(255).round().to(torch.uint8)


def _draw(ex: Example, names: Sequence[str]) -> torch.Tensor:
    from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

    img = ex.image
    if ex.true_mask is not None and ex.pred_mask is not None:
        n = max(int(ex.pred_mask.max()), int(ex.true_mask.masked_fill(ex.true_mask == 255, 0).max())) + 1
        colors = _palette(len(names) or n)
        masks = [ex.pred_mask == k for k in range(1, n)]  # class 0 (background) stays clear
        truth = [ex.true_mask == k for k in range(1, n)]
        left = draw_segmentation_masks(img, torch.stack(masks), 0.5, colors[1:n]) if masks else img
        right = draw_segmentation_masks(img, torch.stack(truth), 0.5, colors[1:n]) if truth else img
        return torch.cat([left, torch.full((3, img.shape[1], 4), 255, dtype=torch.uint8), right], dim=2)
    if ex.true_boxes is not None and len(ex.true_boxes):
        img = draw_bounding_boxes(img, ex.true_boxes, colors="lime", width=2)
    if ex.pred_boxes is not None and len(ex.pred_boxes):
        img = draw_bounding_boxes(img, ex.pred_boxes, ex.pred_labels, colors="red", width=1)
    return img


def _palette(n: int) -> list[tuple[int, int, int]]:
    plt = pyplot()
    cmap = plt.get_cmap("tab20")
    return [tuple(int(255 * v) for v in cmap(k % 20)[:3]) for k in range(max(n, 1))]  # type: ignore[misc]


def plot_examples(examples: Sequence[Example], path: str | Path, names: Sequence[str], legend: str) -> Path:
    """A grid of held-out images with their titles (green: right, red: wrong)."""
    plt = pyplot()
    cols = 4
    rows = max(1, -(-len(examples) // cols))
    wide = examples and examples[0].pred_mask is not None
    fig, axes = plt.subplots(rows, cols, figsize=(cols * (5.0 if wide else 2.8), rows * 2.9), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, ex in zip(axes.flat, examples):
        ax.imshow(_draw(ex, names).permute(1, 2, 0).numpy())
        color = "black" if ex.correct is None else ("green" if ex.correct else "red")
        ax.set_title(ex.title, fontsize=7, color=color)
    fig.suptitle(legend, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_pr_curves(curves: dict[str, list[float]], ap50: dict[str, float], path: str | Path) -> Path:
    """Precision against recall at IoU 0.5 for each class (COCOeval's 101 recall points)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    recall = [i / 100 for i in range(101)]
    for name, precision in curves.items():
        ax.plot(recall, precision, label=f"{name} (AP50 {100 * ap50.get(name, 0.0):.1f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("held-out precision-recall at IoU 0.5")
    fig.tight_layout()
    return save_figure(fig, path)


def write_report(res: Any, out: str | Path, classes: Sequence[str]) -> list[Path]:
    """``eval.json`` and the plots a result carries, in ``out``; returns the files written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "eval.json"]
    atomic_write_text(written[0], json.dumps(res.to_dict(), indent=1))
    confusion = getattr(res, "confusion", None)
    if confusion is not None:
        written.append(plot_confusion(confusion, res.classes, out / "confusion.png"))
    boxes = getattr(res, "box_confusion", None)  # a detector's: its classes and the background
    if boxes is not None:
        written.append(plot_confusion(boxes, res.confusion_labels, out / "confusion.png"))
    if getattr(res, "pr_curves", None):
        written.append(plot_pr_curves(res.pr_curves, res.per_class_ap50, out / "pr_curves.png"))
    examples = getattr(res, "examples", None)
    if examples:
        legend = {"boxes": "green: truth, red: predictions (score >= 0.3)",
                  "masks": "left: prediction, right: truth"}.get(_kind(examples[0]), "predicted (truth)")
        written.append(plot_examples(examples, out / "examples.png", classes, legend))
    return written


def _kind(ex: Example) -> str:
    return "masks" if ex.pred_mask is not None else "boxes" if ex.true_boxes is not None else "labels"
