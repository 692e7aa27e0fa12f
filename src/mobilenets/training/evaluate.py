"""Evaluation of a model or weights file on a dataset: top-1/top-5, per-class accuracy, confusion."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data import DataSpec, default_workers, load_splits, make_loader, resolve_data, with_transform
from ..models import Preprocess
from ..tasks.classification import ClassificationMeter, EvalResult
from ..utils.device import Precision, pick_device, pick_precision
from ..weights import load_model
from .plots import plot_confusion


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
    meter = ClassificationMeter(classes, device)
    skipped: list[str] = []
    for x, y, bad in tqdm(loader, desc=desc, disable=not progress, leave=False, unit="batch"):
        skipped += bad
        if not len(y):
            continue
        x = x.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with precision.autocast():
            logits = model(x)
        meter.update(logits, y.to(device, non_blocking=True))
    return meter.result(skipped)


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
    pre = Preprocess.of(model)
    dev = pick_device(device)
    model.to(dev).to(memory_format=torch.channels_last)
    loader = make_loader(with_transform(splits.val, pre.eval_transform()), batch_size,
                         workers=default_workers(spec) if workers is None else workers, device=dev)
    res = run_eval(model, loader, list(classes), dev, pick_precision(amp, dev), progress=progress)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "eval.json").write_text(json.dumps(res.to_dict(), indent=1))
        plot_confusion(res.confusion, res.classes, out / "confusion.png")
    return res
