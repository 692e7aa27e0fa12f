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

from ..data import DataSpec, Transformed, collate, load_task_splits, make_loader, resolve_data
from ..data.loaders import TransformedPairs, collate_targets, image_paths
from ..data.transforms import DetectionTransform, SegmentationTransform
from ..models import Preprocess
from ..tasks import config_of, preprocess_of, task_of, weights_meta_of
from ..tasks.classification import ClassificationMeter
from ..tasks.detection.boxes import Detections
from ..tasks.detection.metrics import CocoMeter
from ..tasks.segmentation.metrics import ConfusionMeter

Run = Callable[..., Any]  # a session's run: a batch in, its outputs out


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
    recorded = weights_meta_of(model).get("dataset") or {}
    task = task_of(model)
    if data is not None:
        return resolve_data(data, recorded.get("val_split", 0.2), recorded.get("seed", 0), task)
    if not recorded:
        return None
    spec = DataSpec.from_dict(recorded)
    if spec.root is not None and not Path(spec.root).exists():
        return None
    return spec


def training_images(model: nn.Module, spec: DataSpec) -> list[Path]:
    """The image files of the training split (empty for data held in memory): an int8 export's
    calibration when none is given."""
    return image_paths(load_task_splits(spec).train)


class _Scorer:
    """How one task's held-out images are read and its outputs scored: one object per task, so that
    :func:`score_sessions` does not ask which task it holds."""

    metric = "top1"  # top1 in %, map50 / miou as fractions

    def dataset(self, split: Any, preprocess: Preprocess) -> Any:
        return Transformed(split, preprocess.eval_transform())

    collate: Callable[[list[Any]], Any] = staticmethod(collate)

    def meter(self, classes: list[str]) -> Any:
        return ClassificationMeter(classes, torch.device("cpu"))

    def update(self, meter: Any, out: Any, y: Any, preprocess: Preprocess, model: nn.Module) -> None:
        meter.update(torch.from_numpy(np.asarray(out)), y)

    def result(self, meter: Any) -> float:
        return float(getattr(meter.result([]), self.metric))


class _DetectionScorer(_Scorer):
    metric = "map50"
    collate = staticmethod(collate_targets)

    def dataset(self, split: Any, preprocess: Preprocess) -> Any:
        return TransformedPairs(split, DetectionTransform(preprocess, False))

    def meter(self, classes: list[str]) -> Any:
        return CocoMeter(classes)

    def update(self, meter: Any, out: Any, y: Any, preprocess: Preprocess, model: nn.Module) -> None:
        for b, s, lab, n, t in zip(*out, y):
            det = Detections(*(torch.from_numpy(np.asarray(v[: int(n)])) for v in (b, s, lab)))
            meter.update(det, preprocess.boxes_to_image(det.boxes.float(), t["orig_size"]), t)

    def result(self, meter: Any) -> float:
        return float(getattr(meter.result(), self.metric))


class _SegmentationScorer(_DetectionScorer):
    metric = "miou"

    def dataset(self, split: Any, preprocess: Preprocess) -> Any:
        return TransformedPairs(split, SegmentationTransform(preprocess, False))

    def meter(self, classes: list[str]) -> Any:
        return ConfusionMeter(classes)

    def update(self, meter: Any, out: Any, y: Any, preprocess: Preprocess, model: nn.Module) -> None:
        for o, t in zip(torch.from_numpy(np.asarray(out)), y):
            full = F.interpolate(o[None].float(), size=t["orig_size"], mode="bilinear",
                                 align_corners=getattr(config_of(model), "align_corners", True))[0]
            meter.update(full.argmax(0), t["orig_mask"].long())


SCORERS: dict[str, _Scorer] = {"classification": _Scorer(), "detection": _DetectionScorer(),
                               "segmentation": _SegmentationScorer()}


def score_sessions(model: nn.Module, spec: DataSpec, runs: dict[str, Run], batch_size: int = 16,
                   input_size: int | None = None) -> LabeledScores:
    """Every session of ``runs`` on the held-out split of ``spec``, with the task's metric (images
    preprocessed as ``model``'s weights say, at ``input_size`` when given)."""
    scorer = SCORERS[task_of(model)]
    pre = preprocess_of(model)
    pre = pre if input_size is None else pre.replace(input_size=input_size)
    splits = load_task_splits(spec)
    loader = make_loader(scorer.dataset(splits.val, pre), batch_size, collate_fn=scorer.collate)
    meters = {name: scorer.meter(list(splits.classes)) for name in runs}
    images = 0
    for x, y, _bad in loader:
        if not len(y):
            continue
        images += len(y)
        for name, run in runs.items():
            scorer.update(meters[name], run(x.numpy()), y, pre, model)
    if not images:
        raise ValueError("no readable held-out images to score the export on")
    scores = {name: scorer.result(meter) for name, meter in meters.items()}
    return LabeledScores(scorer.metric, scores, images, f"{spec.root or spec.kind}, held-out split")


def evaluate_in_runtime(weights: str | Path | nn.Module, runtime: str, data: str | Path | None = None,
                        batch_size: int = 16) -> LabeledScores:
    """The task's metric of ``weights`` run through ``runtime`` (our export, made once and cached; ``auto``:
    the fastest) on the held-out split of ``data`` - by default the one the weights record. An exported
    ``.onnx``, ``.tflite`` or ``.pte`` (an int8 file to ship, say) runs as it is; it records no data."""
    from ..tasks import build_model
    from ..weights import load_model
    from .runtime_choice import FILE_RUNTIMES, GRAPH_SUFFIXES, open_session

    model: nn.Module
    suffix = "" if isinstance(weights, nn.Module) else Path(weights).suffix
    if runtime == "torch" and suffix in GRAPH_SUFFIXES:  # a graph torch cannot run: its fastest runtime
        runtime = "auto"
    exported = suffix in FILE_RUNTIMES and runtime != "torch"
    if exported:
        session = open_session(weights, runtime, batch_size=batch_size)  # the file itself, int8 or not
        if session.config is None:
            raise ValueError(f"{weights} records no model configuration: export it with `mobilenets export`")
        built = build_model(session.config)  # never run: what scoring reads (task, preprocessing, classes)
        built.weights_meta = session.meta
        model = built
    else:
        model = weights if isinstance(weights, nn.Module) else load_model(weights)
    spec = labeled_data(model, data)
    if spec is None:
        raise ValueError(f"{weights} is an exported graph, which records no data: give --data" if exported else
                         "these weights record no data that is still there: give --data")
    if not exported:  # our export of the weights, once the data is known to be there
        session = open_session(model, runtime, batch_size=batch_size)
    return score_sessions(model, spec, {session.name: session.run}, batch_size)
