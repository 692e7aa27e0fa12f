"""TorchScript and torch.export (.pt2) exports, BN folded, checked against the PyTorch model."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ..models import MobileNet, fold_batchnorm
from ..utils.fsutil import atomic_path
from .artifact import META_KEY, ExportResult, check_input, export_metadata


def export_torchscript(model: MobileNet, path: str | Path, input_size: int | None = None) -> ExportResult:
    folded = fold_batchnorm(model)
    x = check_input(model, input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(folded)
    with atomic_path(path) as tmp:
        torch.jit.save(scripted, str(tmp), _extra_files={"mobilenets.json": export_metadata(model)[META_KEY]})
    loaded = torch.jit.load(str(path))
    with torch.inference_mode():
        diff = float((loaded(x) - model.eval()(x)).abs().max())
    return ExportResult(str(path), "torchscript", diff, 1e-4)


def export_pt2(model: MobileNet, path: str | Path, input_size: int | None = None) -> ExportResult:
    folded = fold_batchnorm(model)
    x = check_input(model, input_size)
    ep = torch.export.export(folded, (x,), dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}})
    with atomic_path(path) as tmp:
        torch.export.save(ep, str(tmp), extra_files={"mobilenets.json": export_metadata(model)[META_KEY]})
    loaded = torch.export.load(str(path)).module()
    with torch.inference_mode():
        diff = float((loaded(x) - model.eval()(x)).abs().max())
    return ExportResult(str(path), "pt2", diff, 1e-4)
