"""What an export produces: the module it holds (a detector with its post-processing), the result
record with its check, and the metadata record that lets ``predict`` run an exported file with
nothing else (model name, task, classes, preprocessing)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..models import fold_batchnorm
from ..tasks import config_of, config_to_dict, kind_of, preprocess_of, task_of, weights_meta_of

META_KEY = "mobilenets"


@dataclass
class ExportResult:
    path: str
    format: str
    max_abs_diff: float | None = None  # exported vs PyTorch on a check batch
    tolerance: float | None = None
    agreement: float | None = None  # int8: agreement with fp32 on held-out images (details["agreement_of"])
    calibration: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    labeled: Any = None  # int8: fp32 and int8 scores on labeled held-out images (deploy.evaluate.LabeledScores)

    @property
    def ok(self) -> bool:
        return self.max_abs_diff is None or self.tolerance is None or self.max_abs_diff <= self.tolerance

    def summary(self) -> str:
        s = f"wrote {self.path} ({self.format})"
        if self.max_abs_diff is not None:
            s += f"; check vs PyTorch: max abs diff {self.max_abs_diff:.2e} ({'ok' if self.ok else 'FAILED'}, " \
                 f"tolerance {self.tolerance:g})"
        if self.agreement is not None:
            s += f"; int8/fp32 {self.details.get('agreement_of', 'top-1')} agreement {100 * self.agreement:.1f}% " \
                 f"on {self.details.get('held_out', 0)} images held out of calibration"
        if self.calibration:
            s += f"; calibration: {self.calibration}"
        if self.labeled is not None:
            s += f"\n{self.labeled.describe()}"
        elif self.agreement is not None:
            s += "\n(no labeled data to score int8 on: pass --eval-data, or export weights that record their dataset)"
        return s


def export_size(model: nn.Module, input_size: int | None = None) -> int:
    """The input size of an export or a measurement: ``input_size``, else the one the weights were trained
    at (their preprocessing's; the name's resolution when they record none). A model trained with
    ``--input-size 384`` under a ``-320`` name had been converted at 320 px and calibrated at 384."""
    return preprocess_of(model).input_size if input_size is None else input_size


def inference_module(model: nn.Module, input_size: int | None = None, argmax: bool = False,
                     nms: bool = True) -> tuple[nn.Module, list[str]]:
    """What an export holds, BN folded, and its output names: a classifier's logits, a detector
    with its box decoding and NMS (:class:`DetectionPipeline`) at one input size - without ``nms``,
    every anchor's box and scores; a Faster R-CNN with its second stage and NMS at any input size - or a
    segmenter's upsampled logits (with ``argmax``: its class map)."""
    return kind_of(model).pipeline(fold_batchnorm(model).eval(), input_size, nms=nms, argmax=argmax)


def outputs_difference(ref: Any, out: Any, min_score: float = 0.05) -> float:
    """Largest difference between two runs of an export: logits elementwise; detections by matching
    every reference detection scoring >= ``min_score`` (same label, box and score), inf if one is
    missing (random-weight detectors score near 0.01, so their check is only this rule's)."""
    if not isinstance(ref, tuple):
        return float(np.abs(np.asarray(out) - np.asarray(ref)).max())
    worst = 0.0
    for rb, rs, rl, rn, ob, os_, ol, on in zip(*ref, *out):
        for i in np.nonzero(rs[: int(rn)] >= min_score)[0]:
            same = np.nonzero((ol[: int(on)] == rl[i]) & (np.abs(os_[: int(on)] - rs[i]) < 0.01))[0]
            if not len(same):
                return float("inf")
            diffs = [max(float(np.abs(ob[j] - rb[i]).max()), float(abs(os_[j] - rs[i]))) for j in same]
            worst = max(worst, min(diffs))
    return worst


def float_tolerance(ref: Any) -> float:
    """How far a float export may be from PyTorch: 1e-4, or 4e-6 of the outputs' scale where that is
    larger (a random segmenter's logits reach ~50; float32 rounding grows with them); detections
    (a tuple) are matched by :func:`outputs_difference`, 1e-4."""
    return 1e-4 if isinstance(ref, tuple) else max(1e-4, 4e-6 * float(np.abs(ref).max()))


def export_metadata(model: nn.Module) -> dict[str, str]:
    """What a runtime needs besides the graph (model name and config, classes, preprocessing), as one
    JSON record."""
    m, cfg = weights_meta_of(model), config_of(model)
    return {META_KEY: json.dumps({"model": cfg.name, "task": task_of(model), "classes": m.get("classes"),
                                  "preprocessing": preprocess_of(model).to_dict(),
                                  "num_classes": cfg.num_classes, "config": config_to_dict(cfg)})}


def check_input(model: nn.Module, input_size: int | None, batch: int = 2) -> torch.Tensor:
    """A seeded random batch to run through an export and the PyTorch model."""
    size = export_size(model, input_size)
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, config_of(model).in_chans, size, size, generator=g)
