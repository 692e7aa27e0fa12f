"""Export for deployment: ONNX (fp32, int8 QDQ), TFLite (float, int8), ExecuTorch (.pte, XNNPACK), TorchScript
and torch.export (.pt2).

Every export is checked against the PyTorch model right after it is written, and the check's
result is returned (and printed by the CLI).
"""

from __future__ import annotations

from pathlib import Path

from ..models import MobileNet, check_input_size
from ..tasks.detection.faster_rcnn import FasterRCNN
from .artifact import ExportResult
from .onnx import export_onnx
from .quantize import export_onnx_int8
from .torch_formats import export_pt2, export_torchscript

FORMATS = ("onnx", "onnx-int8", "tflite", "tflite-int8", "pte", "torchscript", "pt2")
FASTER_RCNN_FORMATS = ("onnx", "onnx-int8")


def export(model: MobileNet, path: str | Path, format: str = "onnx", *, calibrate: str | Path | None = None,
           input_size: int | None = None, argmax: bool = False, progress: bool = False) -> ExportResult:
    """Export ``model`` to ``path`` in ``format`` (:data:`FORMATS`) and check it; ``argmax``
    (segmenters, float ONNX, TFLite and ExecuTorch): the graph ends with the class of every pixel; ``progress``:
    a progress bar over an int8 export's steps."""
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; valid: {', '.join(FORMATS)}")
    if input_size is not None:
        check_input_size(input_size)
    if argmax and format not in ("onnx", "tflite", "pte"):
        raise ValueError("--argmax applies to the onnx, tflite and pte formats")
    if isinstance(model, FasterRCNN) and format not in FASTER_RCNN_FORMATS:
        raise ValueError(f"a Faster R-CNN exports to {' and '.join(FASTER_RCNN_FORMATS)}, not {format}: torchvision's "
                         "two stages (proposals, RoIAlign, NMS) trace for ONNX only")
    if format == "onnx":
        return export_onnx(model, path, input_size, argmax=argmax)
    if format == "onnx-int8":
        return export_onnx_int8(model, path, calibrate, input_size, progress=progress)
    if format in ("tflite", "tflite-int8"):
        from .tflite import export_tflite  # litert-torch is heavy: only when a TFLite file is asked for

        return export_tflite(model, path, int8=format == "tflite-int8", calibrate=calibrate, input_size=input_size,
                             argmax=argmax, progress=progress)
    if format == "pte":
        from .pte import export_pte  # ExecuTorch is an optional extra, and heavy

        return export_pte(model, path, input_size, argmax)
    if format == "torchscript":
        return export_torchscript(model, path, input_size)
    return export_pt2(model, path, input_size)
