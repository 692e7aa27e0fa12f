"""Evaluation: top-1/top-5, per-class accuracy and a confusion matrix."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .data import DataSpec, Preprocess, default_workers, load_splits, make_loader, resolve_data, with_transform
from .device import Precision, pick_device, pick_precision


@dataclass
class EvalResult:
    top1: float  # percent
    top5: float
    loss: float
    count: int
    classes: list[str]
    confusion: torch.Tensor  # [true, predicted] counts
    skipped: list[str] = field(default_factory=list)  # unreadable files

    @property
    def per_class(self) -> dict[str, float]:
        totals = self.confusion.sum(1).clamp_min(1)
        acc = self.confusion.diag() / totals * 100
        return {c: round(float(a), 4) for c, a in zip(self.classes, acc)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "top1": round(self.top1, 4),
            "top5": round(self.top5, 4),
            "loss": round(self.loss, 6),
            "count": self.count,
            "per_class": self.per_class,
            "confusion": self.confusion.tolist(),
            "skipped": self.skipped,
        }


@torch.inference_mode()
def run_eval(
    model: nn.Module,
    loader: DataLoader,
    classes: list[str],
    device: torch.device,
    precision: Precision | None = None,
    channels_last: bool = True,
    progress: bool = False,
    desc: str = "eval",
) -> EvalResult:
    """Evaluate ``model`` on a loader yielding ``(images, labels, unreadable)`` batches."""
    model.eval()
    precision = precision or Precision(None, device.type)
    n_cls = len(classes)
    conf = torch.zeros(n_cls, n_cls, dtype=torch.long, device=device)
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    top5_sum = torch.zeros((), device=device, dtype=torch.long)
    count = 0
    skipped: list[str] = []
    k = min(5, n_cls)
    for x, y, bad in tqdm(loader, desc=desc, disable=not progress, leave=False, unit="batch"):
        skipped += bad
        if not len(y):
            continue
        x = x.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = y.to(device, non_blocking=True)
        with precision.autocast():
            logits = model(x)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        pred = logits.topk(k, dim=1).indices
        conf += torch.bincount(y * n_cls + pred[:, 0], minlength=n_cls * n_cls).view(n_cls, n_cls)
        top5_sum += (pred == y[:, None]).any(1).sum()
        count += len(y)
    if count == 0:
        raise ValueError("no readable evaluation images")
    conf_cpu = conf.cpu()
    return EvalResult(
        top1=float(conf_cpu.diag().sum()) / count * 100,
        top5=float(top5_sum) / count * 100,
        loss=float(loss_sum) / count,
        count=count,
        classes=classes,
        confusion=conf_cpu,
        skipped=skipped,
    )


def evaluate(
    weights: str | Path | nn.Module,
    data: str | Path | None = None,
    *,
    batch_size: int = 64,
    device: str = "auto",
    amp: str = "off",
    workers: int | None = None,
    out: str | Path | None = None,
    progress: bool = True,
) -> EvalResult:
    """Evaluate a weights file (or a loaded model) on ``data``.

    Without ``data``, it uses the held-out split recorded in the weights' metadata (for the
    default training run: the same digits split, so the number equals the training's report).
    With ``out``, writes ``eval.json`` and ``confusion.png`` there.
    """
    from .weights import load_model

    model = load_model(weights) if not isinstance(weights, nn.Module) else weights
    meta = getattr(model, "weights_meta", {}) or {}
    if data is None:
        if not meta.get("dataset"):
            raise ValueError("these weights record no dataset; pass --data")
        spec = DataSpec.from_dict(meta["dataset"])
    else:
        spec = resolve_data(data, seed=(meta.get("dataset") or {}).get("seed", 0),
                            val_split=(meta.get("dataset") or {}).get("val_split", 0.2))
    splits = load_splits(spec)
    classes = meta.get("classes") or splits.classes
    if list(splits.classes) != list(classes):
        raise ValueError(f"the data's classes {splits.classes[:10]} differ from the model's {classes[:10]}")
    pre = Preprocess.from_dict(meta["preprocessing"]) if meta.get("preprocessing") else Preprocess.for_config(model.config)
    dev = pick_device(device)
    model.to(dev).to(memory_format=torch.channels_last)
    loader = make_loader(with_transform(splits.val, pre.eval_transform()), batch_size,
                         workers=default_workers(spec) if workers is None else workers, device=dev)
    res = run_eval(model, loader, list(classes), dev, pick_precision(amp, dev), progress=progress)
    if out is not None:
        from .plots import plot_confusion

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "eval.json").write_text(json.dumps(res.to_dict(), indent=1))
        plot_confusion(res.confusion, res.classes, out / "confusion.png")
    return res
