"""What an export produces: the result record with its check, and the metadata record that lets
``predict`` run an exported file with nothing else (model name, classes, preprocessing)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import torch

from ..models import MobileNet, Preprocess

META_KEY = "mobilenets"


@dataclass
class ExportResult:
    path: str
    format: str
    max_abs_diff: float | None = None  # exported vs PyTorch on a check batch
    tolerance: float | None = None
    agreement: float | None = None  # int8: top-1 agreement with fp32 on held-out images
    calibration: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.max_abs_diff is None or self.tolerance is None or self.max_abs_diff <= self.tolerance

    def summary(self) -> str:
        s = f"wrote {self.path} ({self.format})"
        if self.max_abs_diff is not None:
            s += f"; check vs PyTorch: max abs diff {self.max_abs_diff:.2e} ({'ok' if self.ok else 'FAILED'}, " \
                 f"tolerance {self.tolerance:g})"
        if self.agreement is not None:
            s += f"; int8/fp32 top-1 agreement {100 * self.agreement:.1f}% on {self.details.get('held_out', 0)} " \
                 f"held-out images"
        if self.calibration:
            s += f"; calibration: {self.calibration}"
        return s


def export_metadata(model: MobileNet) -> dict[str, str]:
    """What a runtime needs besides the graph (model name, classes, preprocessing), as one JSON record."""
    m = getattr(model, "weights_meta", {}) or {}
    return {META_KEY: json.dumps({"model": model.config.name, "classes": m.get("classes"),
                                  "preprocessing": Preprocess.of(model).to_dict(),
                                  "num_classes": model.config.num_classes})}


def check_input(model: MobileNet, input_size: int | None, batch: int = 2) -> torch.Tensor:
    """A seeded random batch to run through an export and the PyTorch model."""
    size = model.config.resolution if input_size is None else input_size
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, model.config.in_chans, size, size, generator=g)
