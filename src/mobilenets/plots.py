"""PNG plots for people: training curves and confusion matrices (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .fsutil import atomic_path


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Loss and accuracy per epoch (train and validation) from ``metrics.jsonl`` rows."""
    plt = _pyplot()
    ep = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(ep, [h["train_loss"] for h in history], label="train")
    ax1.plot(ep, [h["val_loss"] for h in history], label="validation")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy loss")
    ax1.legend()
    ax2.plot(ep, [h["train_acc"] for h in history], label="train top-1")
    ax2.plot(ep, [h["val_top1"] for h in history], label="validation top-1")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy (%)")
    ax2.legend()
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)


def plot_confusion(confusion: torch.Tensor, classes: Sequence[str], path: str | Path) -> Path:
    """Row-normalized confusion matrix (rows: true class, columns: predicted)."""
    plt = _pyplot()
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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)


def plot_tradeoffs(rows: Sequence[dict[str, Any]], out_dir: str | Path, title: str = "") -> list[Path]:
    """Accuracy vs MAdds (log), vs params, vs measured latency - the V1 paper's Figures 4 and 5 -
    with the Pareto front of each highlighted. Returns the PNG paths."""
    from .choose import pareto_front

    plt = _pyplot()
    out_dir = Path(out_dir)
    paths = []
    for key, label, log, fname in (("madds", "Mult-Adds (millions, log scale)", True, "accuracy_vs_madds.png"),
                                   ("params", "parameters (millions)", False, "accuracy_vs_params.png"),
                                   ("latency_ms", "measured latency (ms)", False, "accuracy_vs_latency.png")):
        scale = 1e6 if key in ("madds", "params") else 1.0
        xs = [r[key] / scale for r in rows]
        ys = [r["top1"] for r in rows]
        front = sorted(pareto_front(list(zip(xs, ys))), key=lambda i: xs[i])
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        ax.scatter(xs, ys, color="tab:gray", label="models")
        ax.plot([xs[i] for i in front], [ys[i] for i in front], "-o", color="tab:red", label="Pareto front")
        for x, y, r in zip(xs, ys, rows):
            ax.annotate(r["model"].replace("MobileNet", "MN"), (x, y), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("top-1 accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
        ax.set_title(title)
        fig.tight_layout()
        path = out_dir / fname
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths
