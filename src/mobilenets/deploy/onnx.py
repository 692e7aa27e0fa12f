"""ONNX export (opset 18, the dynamo exporter), checked in ONNX Runtime against PyTorch."""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from ..tasks import kind_of
from ..utils.fsutil import atomic_path
from .artifact import ExportResult, check_input, export_metadata, inference_module, outputs_difference
from .sessions import OnnxSession

ONNX_OPSET = 18


def export_onnx(model: nn.Module, path: str | Path, input_size: int | None = None, opset: int = ONNX_OPSET,
                check: bool = True, argmax: bool = False) -> ExportResult:
    """ONNX with BN folded, a dynamic batch dimension (a Faster R-CNN's: 1), and our metadata (classes,
    preprocessing); ``argmax``: a segmenter outputs its class map instead of logits."""
    import onnx  # heavy: imported on first use

    if opset < 17:
        raise ValueError(f"opset {opset} is too old; use >= 17")
    module, outputs = inference_module(model, input_size, argmax)
    x = check_input(model, input_size, batch=1)
    path = Path(path)
    # the exporter prints progress lines (and, for graphs with data-dependent shapes, the graph) on
    # stdout and stderr; keep them for our own output
    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        tmp = Path(d) / "model.onnx"
        if kind_of(model).onnx_exporter == "torchscript":
            # torchvision's two stages (its NMS, RoIAlign, box selection) do not go through torch.export;
            # the TorchScript-based exporter, which torchvision's detection models support, traces them
            # for one image: the graph's batch is 1 and OnnxSession runs a batch image by image
            torch.onnx.export(module, (x,), str(tmp), dynamo=False, opset_version=opset, input_names=["input"],
                              output_names=outputs)
        else:
            torch.onnx.export(module, (x,), str(tmp), dynamo=True, opset_version=opset, input_names=["input"],
                              output_names=outputs, dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
                              verbose=False, report=False)
        proto = onnx.load(str(tmp))
    for k, v in export_metadata(model).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    proto.producer_name = "mobilenets"
    with atomic_path(path) as tmp_out:
        onnx.save(proto, str(tmp_out))
    res = ExportResult(str(path), "onnx")
    if check:
        res.max_abs_diff, res.tolerance = _check_onnx(model, path, input_size, argmax), 1e-4
    return res


def _check_onnx(model: nn.Module, path: Path, input_size: int | None, argmax: bool = False) -> float:
    x = check_input(model, input_size, batch=3)  # a batch size other than the export's
    module, _ = inference_module(model, input_size, argmax)
    with torch.inference_mode():
        ref = module(x)
    ref = tuple(r.numpy() for r in ref) if isinstance(ref, tuple) else ref.numpy()
    return outputs_difference(ref, OnnxSession(path).run(x.numpy()))
