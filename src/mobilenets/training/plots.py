"""PNG plots of a training run for people: loss and accuracy curves, confusion matrices."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..utils.plotting import pyplot, save_figure


def plot_curves(history: Sequence[dict[str, Any]], path: str | Path, metric: str = "val_top1",
                metric_label: str = "top-1 (%)", title: str = "") -> Path:
    """Loss and the task's metric per epoch (train and validation) from ``metrics.jsonl`` rows
    (validation at the epochs that were evaluated)."""
    plt = pyplot()
    ep = [h["epoch"] for h in history]
    evaluated = [h for h in history if metric in h]
    val_ep = [h["epoch"] for h in evaluated]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(ep, [h["train_loss"] for h in history], label="train")
    ax1.plot(val_ep, [h["val_loss"] for h in evaluated], marker=".", label="validation")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend()
    if "train_acc" in history[0] and metric == "val_top1":
        ax2.plot(ep, [h["train_acc"] for h in history], label="train")
    ax2.plot(val_ep, [h[metric] for h in evaluated], marker=".", label="validation")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel(metric_label)
    ax2.legend()
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_confusion(confusion: torch.Tensor, classes: Sequence[str], path: str | Path) -> Path:
    """Row-normalized confusion matrix (rows: true class, columns: predicted)."""
    plt = pyplot()
    n = len(classes)
    norm = confusion.float() / confusion.sum(1, keepdim=True).clamp_min(1)
    size = min(max(4.0, n * 0.45), 20.0)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    if n <= 40:
        ax.set_xticks(range(n), classes, rotation=90)
        ax.set_yticks(range(n), classes)
        if n <= 15:
            for i in range(n):
                for j in range(n):
                    if confusion[i, j]:
                        ax.text(j, i, int(confusion[i, j]), ha="center", va="center",
                                color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return save_figure(fig, path)
