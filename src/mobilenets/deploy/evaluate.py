"""Held-out accuracy of exported files: the same labeled images through several sessions (the float
model and its int8 export, say), scored as training scores them - top-1, COCO mAP@0.5 and mAP, mIoU.

An int8 export that agrees with its float model says nothing about a float model that learned nothing;
with labels, the report gives both numbers (:func:`labeled_comparison`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import DataSpec, Transformed, collate, load_splits, make_loader, resolve_data
from ..data.detection import load_detection_splits
from ..data.loaders import TransformedPairs, collate_targets, image_paths
from ..data.segmentation import load_segmentation_splits
from ..data.transforms import DetectionTransform, SegmentationTransform
from ..models import Preprocess
from ..tasks import preprocess_of, task_of
from ..tasks.classification import ClassificationMeter
from ..tasks.detection.boxes import Detections
from ..tasks.detection.metrics import CocoMeter
from ..tasks.segmentation.metrics import ConfusionMeter
from ..weights.labels import voc_segmentation_classes

Run = Callable[[np.ndarray], Any]
METRIC = {"classification": "top1", "detection": "map50", "segmentation": "miou"}


@dataclass
class LabeledScores:
    """Each session's score on the same held-out images (``metric``: top1 in %, map50 / miou as fractions)."""

    metric: str
    scores: dict[str, float]
    images: int
    data: str

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, **{k: round(v, 6) for k, v in self.scores.items()}, "images": self.images,
                "data": self.data}

    def describe(self) -> str:
        pct = 1.0 if self.metric == "top1" else 100.0
        parts = ", ".join(f"{k} {v * pct:.2f}" for k, v in self.scores.items())
        name = {"top1": "top-1 %", "map50": "mAP@0.5 %", "miou": "mIoU %"}[self.metric]
        return f"held-out {name}: {parts} on {self.images} labeled images ({self.data})"


def labeled_data(model: nn.Module, data: str | Path | None = None) -> DataSpec | None:
    """The labeled held-out data for ``model``: ``data`` if given, else the split recorded in its
    weights when that data is still there; None when there is none."""
    recorded = (getattr(model, "weights_meta", {}) or {}).get("dataset") or {}
    task = task_of(model)
    if data is not None:
        return resolve_data(data, recorded.get("val_split", 0.2), recorded.get("seed", 0), task)
    if not recorded:
        return None
    spec = DataSpec.from_dict(recorded)
    if spec.root is not None and not Path(spec.root).exists():
        return None
    return spec


def _splits(model: nn.Module, spec: DataSpec) -> Any:
    task = task_of(model)
    if task == "detection":
        return load_detection_splits(spec)
    if task == "segmentation":
        return load_segmentation_splits(spec, list(voc_segmentation_classes()))
    return load_splits(spec)


def training_images(model: nn.Module, spec: DataSpec) -> list[Path]:
    """The image files of the training split (empty for data held in memory): an int8 export's
    calibration when none is given."""
    return image_paths(_splits(model, spec).train)


def _val_loader(model: nn.Module, spec: DataSpec, pre: Preprocess, batch_size: int) -> tuple[Any, list[str]]:
    task = task_of(model)
    splits = _splits(model, spec)
    if task == "detection":
        ds = TransformedPairs(splits.val, DetectionTransform(pre, False))
    elif task == "segmentation":
        ds = TransformedPairs(splits.val, SegmentationTransform(pre, False))
    else:
        ds = Transformed(splits.val, pre.eval_transform())
    return (make_loader(ds, batch_size, collate_fn=collate if task == "classification" else collate_targets),
            list(splits.classes))


def score_sessions(model: nn.Module, spec: DataSpec, runs: dict[str, Run], batch_size: int = 16,
                   input_size: int | None = None) -> LabeledScores:
    """Every session of ``runs`` on the held-out split of ``spec``, with the task's metric (images
    preprocessed as ``model``'s weights say, at ``input_size`` when given)."""
    task = task_of(model)
    pre = preprocess_of(model)
    pre = pre if input_size is None else pre.replace(input_size=input_size)
    loader, classes = _val_loader(model, spec, pre, batch_size)
    meters: dict[str, Any] = {}
    images = 0
    for x, y, _bad in loader:
        if not len(y):
            continue
        images += len(y)
        for name, run in runs.items():
            out = run(x.numpy())
            if task == "classification":
                meter = meters.setdefault(name, ClassificationMeter(classes, torch.device("cpu")))
                meter.update(torch.from_numpy(np.asarray(out)), y)
            elif task == "detection":
                meter = meters.setdefault(name, CocoMeter(classes))
                for b, s, lab, n, t in zip(*out, y):
                    det = Detections(*(torch.from_numpy(np.asarray(v[: int(n)])) for v in (b, s, lab)))
                    meter.update(det, pre.boxes_to_image(det.boxes.float(), t["orig_size"]), t)
            else:
                meter = meters.setdefault(name, ConfusionMeter(classes))
                for o, t in zip(torch.from_numpy(np.asarray(out)), y):
                    full = F.interpolate(o[None].float(), size=t["orig_size"], mode="bilinear",
                                         align_corners=getattr(model.config, "align_corners", True))[0]
                    meter.update(full.argmax(0), t["orig_mask"].long())
    if not images:
        raise ValueError("no readable held-out images to score the export on")
    metric = METRIC[task]
    scores = {}
    for name, meter in meters.items():
        res = meter.result([]) if task == "classification" else meter.result()
        scores[name] = float(getattr(res, metric))
    where = spec.root or spec.kind
    return LabeledScores(metric, scores, images, f"{where}, held-out split")


def evaluate_in_runtime(weights: str | Path | nn.Module, runtime: str, data: str | Path | None = None,
                        batch_size: int = 16) -> LabeledScores:
    """The task's metric of ``weights`` run through ``runtime`` (our export, made once and cached; ``auto``:
    the fastest) on the held-out split of ``data`` - by default the one the weights record."""
    from ..weights import load_model
    from .session import open_session

    model = weights if isinstance(weights, nn.Module) else load_model(weights)
    spec = labeled_data(model, data)
    if spec is None:
        raise ValueError("these weights record no data that is still there: give --data")
    session = open_session(model, runtime, batch_size=batch_size)
    return score_sessions(model, spec, {session.name: session.run}, batch_size)
