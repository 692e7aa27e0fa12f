"""TorchScript and torch.export (.pt2) exports of the same inference module as the other formats (BN
folded; a segmenter's upsampled logits), checked against PyTorch."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from ..utils.fsutil import atomic_path
from .artifact import (
    META_KEY,
    ExportResult,
    check_input,
    export_metadata,
    float_tolerance,
    inference_module,
    outputs_difference,
)
from .sessions import finish


def export_torchscript(model: nn.Module, path: str | Path, input_size: int | None = None) -> ExportResult:
    module, _ = inference_module(model, input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(module)
    with atomic_path(path) as tmp:
        torch.jit.save(scripted, str(tmp), _extra_files={"mobilenets.json": export_metadata(model)[META_KEY]})
    return ExportResult(str(path), "torchscript", *_check(model, module, torch.jit.load(str(path)), input_size))


def export_pt2(model: nn.Module, path: str | Path, input_size: int | None = None) -> ExportResult:
    module, _ = inference_module(model, input_size)
    x = check_input(model, input_size)
    ep = torch.export.export(module, (x,), dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}})
    with atomic_path(path) as tmp:
        torch.export.save(ep, str(tmp), extra_files={"mobilenets.json": export_metadata(model)[META_KEY]})
    return ExportResult(str(path), "pt2", *_check(model, module, torch.export.load(str(path)).module(), input_size))


def _check(model: nn.Module, module: torch.nn.Module, loaded: torch.nn.Module,
           input_size: int | None) -> tuple[float, float]:
    """The reloaded export against the PyTorch module on a seeded batch of 3 (another size than the
    export's: the batch is dynamic): the difference and its tolerance."""
    x = check_input(model, input_size, batch=3)
    with torch.inference_mode():
        ref, out = finish(None, module(x)), finish(None, loaded(x))
    return outputs_difference(ref, out), float_tolerance(ref)
