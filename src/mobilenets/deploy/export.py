"""Export for deployment: ONNX (fp32, int8 QDQ), TFLite (float, int8), ExecuTorch (.pte, XNNPACK), TorchScript
and torch.export (.pt2).

Every export is checked against the PyTorch model right after it is written, and the check's
result is returned (and printed by the CLI).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import nn

from ..models import check_input_size
from ..tasks import EXPORT_FORMATS, config_of, kind_of
from .artifact import ExportResult
from .evaluate import labeled_data, score_sessions, training_images
from .onnx import export_onnx
from .quantize import export_onnx_int8
from .runtime_choice import FILE_RUNTIMES, open_session
from .torch_formats import export_pt2, export_torchscript

FORMATS = EXPORT_FORMATS


def formats_for(model: nn.Module) -> tuple[tuple[str, ...], str]:
    """The formats a model exports to, and why not the others."""
    kind = kind_of(model)
    return kind.formats, kind.formats_note


def export(model: nn.Module, path: str | Path, format: str = "onnx", *, calibrate: str | Path | None = None,
           input_size: int | None = None, argmax: bool = False, progress: bool = False,
           eval_data: str | Path | None = None) -> ExportResult:
    """Export ``model`` to ``path`` in ``format`` (:data:`FORMATS`) and check it; ``argmax``
    (segmenters, float ONNX, TFLite and ExecuTorch): the graph ends with the class of every pixel; ``progress``:
    a progress bar over an int8 export's steps. An int8 export is calibrated on ``calibrate`` images, else on
    the training split of the data its weights record (``eval_data``'s, when given), and scored against
    the float model on that data's labeled held-out images (``res.labeled``)."""
    spec = labeled_data(model, eval_data) if format.endswith("-int8") else None
    images: str | Path | Sequence[Path] | None = calibrate
    if calibrate is None and spec is not None:
        images = training_images(model, spec) or None
    res = _export(model, path, format, images, input_size, argmax, progress)
    if format.endswith("-int8") and spec is not None:
        runtime = FILE_RUNTIMES[Path(res.path).suffix][0]  # scoring needs no choice of the fastest
        runs = {"fp32": open_session(model, "torch").run, "int8": open_session(res.path, runtime).run}
        res.labeled = score_sessions(model, spec, runs, input_size=input_size)
    return res


def _export(model: nn.Module, path: str | Path, format: str, calibrate: str | Path | Sequence[Path] | None,
            input_size: int | None, argmax: bool, progress: bool) -> ExportResult:
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; valid: {', '.join(FORMATS)}")
    if input_size is not None:
        check_input_size(input_size)
    if argmax and format not in ("onnx", "tflite", "pte"):
        raise ValueError("--argmax applies to the onnx, tflite and pte formats")
    valid, why = formats_for(model)
    if format not in valid:
        raise ValueError(f"{config_of(model).name} exports to {', '.join(valid)}, not {format}: {why}")
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
