"""TFLite export for phones and small boards: float through ``litert-torch``, full-integer int8 (per-channel
weights, per-tensor activations, int8 input and output) through Google's AI Edge Quantizer, checked in
LiteRT against PyTorch.

The file takes NHWC input (what TFLite apps feed) and carries our metadata record (model, config,
classes, preprocessing) as a TFLite metadata buffer, so ``predict`` and our loader need nothing else.
A detector's file ends with every anchor's decoded box and class scores; the NMS runs after the
graph (:func:`mobilenets.tasks.detection.model.select_for`), as TFLite's own post-processing op
would, but without a custom op that only some interpreters have.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..models import fold_batchnorm
from ..tasks import config_of
from ..utils.fsutil import atomic_path
from ..utils.quiet import quiet_native_output
from ..weights.tflite_file import TFLITE_META_NAME
from .artifact import META_KEY, ExportResult, export_metadata, export_size, inference_module
from .bias_correction import bias_correct
from .quantize import calibration_sets, held_out_agreement, int8_details, int8_progress
from .sessions import LitertSession, check_float_export

# AI Edge Quantizer's static int8 recipe: int8 per-tensor asymmetric activations, int8 per-channel
# symmetric weights, integer kernels (what XNNPACK runs as QS8)
INT8_OP_CONFIG: dict[str, Any] = {
    "activation_tensor_config": {"num_bits": 8, "symmetric": False, "granularity": "TENSORWISE", "dtype": "INT"},
    "weight_tensor_config": {"num_bits": 8, "symmetric": True, "granularity": "CHANNELWISE", "dtype": "INT"},
    "compute_precision": "INTEGER", "explicit_dequantize": False,
}
# What is quantized: the network. What stays float: a classifier's FULLY_CONNECTED (int8 logits tie
# over 1000 classes: measured on V1 0.25 with real photos, 36% of the outputs had a tied maximum and
# top-1 agreement fell from 81% to 52%), every op of a pipeline outside its network (a detector's box
# decoding, a segmenter's final upsampling of its logits) and the network's modules marked
# ``keep_float_in_int8`` (a detector's concatenation of its maps' outputs: each map's int8 range stays its
# own; one range for all was the coarsest map's, whose logits reach -140: facemask int8 mAP@0.5 3.1 points
# below fp32 with it, 1.2 without); see :func:`float_scope`.
INT8_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "PAD", "CONCATENATION", "MEAN", "RESHAPE", "TRANSPOSE",
            "RESIZE_NEAREST_NEIGHBOR")


def float_scope(module: nn.Module) -> str | None:
    """A regex of the op scopes that stay float: a pipeline's ops outside its network (its ``model``),
    and the network's modules marked ``keep_float_in_int8`` (a detector's concatenation of its maps'
    outputs); None when ``module`` is the network itself. litert-torch names each op by its module path,
    a child as ``<module>.<Class>_<attribute>``. Why: the box decoding's ADD and CONCATENATION in int8 put
    every box corner on one grid of 1/108 of the image (3 px at 320 px, much of a 15 px face); measured
    on the facemask photos, int8 mAP@0.5 2.04 points below fp32 with it, 0.25 without."""
    net = getattr(module, "model", None)
    if not isinstance(net, nn.Module):
        return None
    marked = [re.escape(f"{type(m).__module__}.{type(m).__name__}_{name.rsplit('.', 1)[-1]}")
              for name, m in net.named_modules() if getattr(m, "keep_float_in_int8", False)]
    outside = rf"^(?!.*{re.escape(f'{type(net).__module__}.{type(net).__name__}_model')})"
    return outside + "".join(f"|.*{m}" for m in marked)


def _convert_float(module: nn.Module, size: int, channels: int) -> bytes:
    """The float ``.tflite`` of a module that takes NCHW, converted to take NHWC."""
    with quiet_native_output():
        import litert_torch  # heavy (JAX, the MLIR converter), and it logs on import: imported on first use

        nhwc = litert_torch.to_channel_last_io(module, args=[0]).eval()
        edge = litert_torch.convert(nhwc, (torch.zeros(1, size, size, channels),))
        with tempfile.TemporaryDirectory() as d:
            edge.export(str(Path(d) / "model.tflite"))
            return (Path(d) / "model.tflite").read_bytes()


def _quantize_int8(flat: bytes, samples: list[np.ndarray], keep_float: str | None = None) -> bytes:
    """Static int8 (:data:`INT8_OPS`, but the ops whose scope matches ``keep_float``) of a float file,
    calibrated on NCHW samples (fed as NHWC).

    Each activation's range is its min and max over all the samples - the rule that ONNX Runtime's
    MinMax calibration and our bias-correction simulation use. AI Edge Quantizer's default, a moving
    average (0.95) of per-sample ranges, clips what it does not simulate: on V1 0.25 with real photos
    it cost 3 points of top-1 that the global range does not.
    """
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import calibrator, quantizer, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils

    signatures = Interpreter(model_content=flat).get_signature_list()
    key = next(iter(signatures))
    name = signatures[key]["inputs"][0]
    recipe = [{"regex": ".*", "operation": op, "algorithm_key": "min_max_uniform_quantize",
               "op_config": INT8_OP_CONFIG} for op in INT8_OPS]
    if keep_float is not None:  # the last matching entry decides
        recipe.append({"regex": keep_float, "operation": "*", "algorithm_key": "no_quantize"})
    with quiet_native_output():
        data = {key: [{name: s.transpose(1, 2, 0)[None].astype(np.float32)} for s in samples]}
        recipes = recipe_manager.RecipeManager()
        recipes.load_quantization_recipe(recipe)
        calib = calibrator.Calibrator(flat, num_threads=1, qsv_update_func=qsv_utils.min_max_update)
        calib.calibrate(data, recipes)
        q = quantizer.Quantizer(bytearray(flat), recipe)
        result = q.quantize(calib.get_model_qsvs(), enable_progress_report=False)
    return bytes(result.quantized_model)


def with_metadata(flat: bytes, record: str) -> bytes:
    """The file with our JSON record added as a TFLite metadata buffer (named ``mobilenets``)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flat))
    for b in model.buffers:  # data stored after the flatbuffer (AI Edge Quantizer's output) goes inline
        if b.offset > 1:
            b.data, b.offset, b.size = np.frombuffer(flat, np.uint8, b.size, b.offset), 0, 0
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(record.encode(), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = TFLITE_META_NAME, len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != TFLITE_META_NAME.encode()] + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def export_tflite(model: nn.Module, path: str | Path, *, int8: bool = False,
                  calibrate: str | Path | Sequence[Path] | None = None,
                  input_size: int | None = None, argmax: bool = False, bias_correction: bool = True,
                  held_out: float = 0.25, per_image: int | None = None, seed: int = 0,
                  progress: bool = False) -> ExportResult:
    """A ``.tflite`` (NHWC input, our metadata), checked in LiteRT: float against PyTorch (max abs
    difference), int8 by its agreement with the float model on held-out images.

    int8: calibrated on ``calibrate`` images (a share ``held_out`` kept to measure agreement) or,
    labelled as such, synthetic ones; the conv biases are first corrected for the mean shift of
    int8 quantization (:func:`bias_correct`).
    """
    size = export_size(model, input_size)
    channels = config_of(model).in_chans
    module, _ = inference_module(model, size, argmax, nms=False)
    if int8 and argmax:
        raise ValueError("--argmax applies to float exports (an int8 segmenter outputs int8 logits)")
    res = ExportResult(str(path), "tflite-int8" if int8 else "tflite")
    if not int8:
        flat = _convert_float(module, size, channels)
    else:
        bar = int8_progress(progress, 5)
        bar.set_postfix_str("reading calibration images")
        cal, hold, res.calibration = calibration_sets(model, calibrate, size, held_out, per_image, seed)
        to_quantize = module
        bar.update()
        bar.set_postfix_str("bias correction")
        if bias_correction:
            corrected = bias_correct(fold_batchnorm(model), torch.from_numpy(np.stack(cal)))
            to_quantize, _ = inference_module(corrected, size, nms=False)
        bar.update()
        bar.set_postfix_str("TFLite conversion")
        converted = _convert_float(to_quantize, size, channels)
        bar.update()
        bar.set_postfix_str("calibration and quantization")
        flat = _quantize_int8(converted, cal, float_scope(to_quantize))
        res.details = int8_details(model, cal, hold, bias_correction)
        bar.update()
    with atomic_path(Path(path)) as tmp:
        Path(tmp).write_bytes(with_metadata(flat, export_metadata(model)[META_KEY]))
    if int8:  # on the written file: its metadata tells the session a detector's NMS options
        bar.set_postfix_str("held-out agreement")
        if hold:
            res.agreement = held_out_agreement(model, size, hold, LitertSession(path).run)
        bar.update()
        bar.close()
    if not int8:
        res.max_abs_diff, res.tolerance = check_float_export(model, module, size, LitertSession(path).run)
    return res
