"""Evaluation of a weights file (or a model) on a dataset, for any task: top-1/top-5, per-class
accuracy and a confusion matrix for classifiers; COCO mAP (pycocotools) for detectors."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..data import DataSpec, default_workers, load_task_splits, make_loader, resolve_data
from ..tasks import preprocess_of, task_of, weights_meta_of
from ..tasks.classification import ClassificationEvalResult
from ..tasks.detection.metrics import DetectionEvalResult
from ..tasks.segmentation.metrics import SegmentationEvalResult
from ..utils.device import pick_device, pick_precision
from ..weights import load_model
from .distributed import DistContext
from .report import EXAMPLES, write_report
from .tasks import TASKS


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
    examples: int = 0,
) -> ClassificationEvalResult | DetectionEvalResult | SegmentationEvalResult:
    """Evaluate a weights file (or a loaded model) on ``data``.

    Without ``data``, it uses the held-out split recorded in the weights' metadata (for the
    default training run: the same digits split, so the number equals the training's report).
    ``examples`` held-out images are kept with their predictions (``res.examples``; with ``out``,
    :data:`~mobilenets.training.report.EXAMPLES`). With ``out``, writes there what a person looks at
    (:func:`~mobilenets.training.report.write_report`):
    ``eval.json`` (per-class precision/recall, AP or IoU), ``confusion.png``, a detector's
    ``pr_curves.png`` and ``examples.png`` (held-out images with prediction and truth).
    """
    model = load_model(weights) if not isinstance(weights, nn.Module) else weights
    meta = weights_meta_of(model)
    task = TASKS[task_of(model)]
    if data is None:
        if not meta.get("dataset"):
            raise ValueError("these weights record no dataset; pass --data")
        spec = DataSpec.from_dict(meta["dataset"])
    else:
        recorded = meta.get("dataset") or {}
        spec = resolve_data(data, seed=recorded.get("seed", 0), val_split=recorded.get("val_split", 0.2),
                            task=task.name)
    splits = load_task_splits(spec)
    classes = meta.get("classes") or splits.classes
    if list(splits.classes) != list(classes):
        raise ValueError(f"the data's classes {splits.classes[:10]} differ from the model's {classes[:10]}")
    pre = preprocess_of(model)
    dev = pick_device(device)
    model.to(dev).to(memory_format=torch.channels_last)
    loader = make_loader(task.val_dataset(splits.val, pre), batch_size, collate_fn=task.collate,
                         workers=default_workers(spec) if workers is None else workers, device=dev)
    res = task.evaluate(model, loader, list(classes), dev, pick_precision(amp, dev), True, pre,
                        DistContext(0, 1, 0, dev), progress, examples=EXAMPLES if out is not None else examples)
    if out is not None:
        write_report(res, out, list(classes))
    return res
