"""A TFLite flatbuffer as our converters read it: the convolution ops in execution order with their
weights, biases and quantization grids, a detector's post-processing options and anchors, a
segmenter's output stride, and the JSON record our own exports carry (:func:`tflite_metadata`).

The file is read with Google's own runtime (``ai-edge-litert``); weights and biases are dequantized
with their scales and zero points, per tensor or per channel. A detector's post-processing options
(box coder scales, NMS, thresholds) are read from the custom op's flexbuffer options, with the
flatbuffer schema that ships with ai-edge-litert.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .native import WeightsError

CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
POSTPROCESS_OP = "TFLite_Detection_PostProcess"
TFLITE_META_NAME = "mobilenets"  # our exports' metadata buffer (a JSON record: model, config, classes, preprocessing)


@dataclass
class TFLiteConv:
    op: str
    weight: np.ndarray  # dequantized float32, TFLite layout
    bias: np.ndarray | None
    name: str
    output_grid: list[float] | None = None  # its output's quantization (see _grid)
    dilation: int = 1
    input_grid: list[float] | None = None  # a quantized file's input grid and weight scales: what the
    weight_scales: list[float] = field(default_factory=list)  # integer kernels multiply (see integer_kernels)


@dataclass
class TFLiteModel:
    convs: list[TFLiteConv]
    input_size: int
    input_dtype: str
    input_quant: tuple[float, int]
    quantized: bool
    postprocess: dict[str, Any] | None = None  # a detector's TFLite_Detection_PostProcess options
    anchors: np.ndarray | None = None  # and its constant anchors (cy, cx, h, w), dequantized
    anchor_step: float = 0.0  # their uint8 quantization scale (0: stored as floats)
    add_grids: list[list[float]] = field(default_factory=list)  # the residual ADDs' outputs, in order
    pool_grid: list[float] | None = None  # the global average pool's output
    # a detector's box encodings, class logits (each concatenated over the maps) and sigmoid scores
    output_grids: dict[str, list[float]] = field(default_factory=dict)
    segmenter: bool = False  # DeepLab: image pooling + per-pixel logits (and usually an ARG_MAX output)
    align_corners: bool = True  # the last bilinear resize's (a segmenter's upsampling to the input)
    requantize_grids: list[list[list[float]]] = field(default_factory=list)  # QUANTIZE ops between two grids

    @property
    def output_stride(self) -> int:
        """DeepLab's backbone output stride: 32 over the largest depthwise dilation."""
        return 32 // max(c.dilation for c in self.convs if c.op == "DEPTHWISE_CONV_2D")


def _interpreter(path: Path) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError as e:  # pragma: no cover - a dependency of the package
        raise WeightsError("reading TFLite files needs the ai-edge-litert package (pip install ai-edge-litert)") from e
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            it = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True,
                             experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            it.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise WeightsError(f"{path}: not a readable TFLite model ({e})") from None
    return it


def _dequantize(t: dict[str, Any], raw: np.ndarray) -> np.ndarray:
    q = t["quantization_parameters"]
    scales, zps = q["scales"], q["zero_points"]
    if raw.dtype in (np.float32, np.float64) or len(scales) == 0:
        return raw.astype(np.float32)
    shape = [1] * raw.ndim
    if len(scales) > 1:
        shape[q["quantized_dimension"]] = len(scales)
    return ((raw.astype(np.float64) - zps.reshape(shape)) * scales.reshape(shape)).astype(np.float32)


def _grid(t: dict[str, Any]) -> list[float] | None:
    """A quantized tensor's grid ``[scale, zero_point, qmin, qmax]`` (None for a float tensor)."""
    scale, zero_point = t["quantization"]
    dtype = np.dtype(t["dtype"])
    if not scale or dtype.kind not in "iu":
        return None
    info = np.iinfo(dtype)
    return [float(scale), int(zero_point), int(info.min), int(info.max)]


@dataclass
class OpOptions:
    """What the interpreter does not report: the ops' options, read from the flatbuffer."""

    dilations: list[int]  # of every conv op, in execution order
    align_corners: list[bool]  # of every bilinear resize, in execution order
    custom: dict[str, dict[str, Any]]  # each custom op's flexbuffer options, by op name


def op_options(path: Path) -> OpOptions:
    """One pass over the file's ops, with the flatbuffer schema that ships with ai-edge-litert."""
    import flatbuffers.flexbuffers as flexbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(path.read_bytes(), 0)
    codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
    ops = schema.BuiltinOperator
    options = {ops.CONV_2D: schema.Conv2DOptions, ops.DEPTHWISE_CONV_2D: schema.DepthwiseConv2DOptions,
               ops.RESIZE_BILINEAR: schema.ResizeBilinearOptions}
    out = OpOptions([], [], {})
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            code = codes[op.OpcodeIndex()]
            if code.CustomCode() and op.CustomOptionsLength():
                out.custom[code.CustomCode().decode()] = flexbuffers.Loads(bytes(op.CustomOptionsAsNumpy()))
            kind = options.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))
            if kind is None or g > 0:  # the interpreter's ops (and our convs) are the main graph's
                continue
            table = op.BuiltinOptions()
            opts = kind()
            opts.Init(table.Bytes, table.Pos)
            if kind is schema.ResizeBilinearOptions:
                out.align_corners.append(bool(opts.AlignCorners()))
            else:
                out.dilations.append(int(opts.DilationHFactor()))
    return out


def tflite_metadata(source: str | Path | bytes) -> dict[str, Any]:
    """Our metadata record in a ``.tflite`` (file or bytes), or ``{}`` for a file we did not write."""
    from ai_edge_litert import schema_py_generated as schema

    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    try:
        model = schema.Model.GetRootAsModel(data, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name() == TFLITE_META_NAME.encode():
                record = json.loads(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
                return record if isinstance(record, dict) else {}
    except (IndexError, ValueError, AttributeError) as e:
        raise WeightsError(f"{source if not isinstance(source, bytes) else 'TFLite model'}: malformed metadata "
                           f"({e})") from None
    return {}


def _segmenter_order(convs: list[TFLiteConv]) -> list[TFLiteConv]:
    """TF's DeepLab runs ``aspp0`` before ``image_pooling``; our records list the image pooling first
    (the order of the concatenation)."""
    pool = next((i for i, c in enumerate(convs) if c.name.startswith("image_pooling")), None)
    first = next((i for i, c in enumerate(convs) if c.name.startswith("aspp")), None)
    if pool is None or first is None or pool < first:
        return convs
    return convs[:first] + [convs[pool]] + convs[first:pool] + convs[pool + 1:]


def read_tflite(path: str | Path) -> TFLiteModel:
    """The conv/FC layers of a TFLite model in execution order, with float weights (and, for a
    detector, its post-processing options and anchors)."""
    path = Path(path)
    it = _interpreter(path)
    details = {t["index"]: t for t in it.get_tensor_details()}
    convs: list[TFLiteConv] = []
    quantized = False
    anchors, anchor_step = None, 0.0
    adds: list[list[float]] = []
    requantize: list[list[list[float]]] = []
    outputs: dict[str, list[float] | None] = {}
    pool, segmenter = None, False
    for op in it._get_ops_details():
        out = _grid(details[op["outputs"][0]])
        inp_grid = _grid(details[op["inputs"][0]]) if len(op["inputs"]) and op["inputs"][0] >= 0 else None
        if op["op_name"] == POSTPROCESS_OP:
            a_t = details[op["inputs"][2]]
            anchors = _dequantize(a_t, it.get_tensor(a_t["index"]))
            anchor_step = float(a_t["quantization"][0])
            outputs.update(codes=inp_grid, scores=_grid(details[op["inputs"][1]]))
        elif op["op_name"] == "LOGISTIC":
            outputs["logits"] = inp_grid
        elif op["op_name"] == "ADD" and out is not None:
            adds.append(out)
        elif op["op_name"] in ("AVERAGE_POOL_2D", "MEAN"):
            pool = out
        elif op["op_name"] == "ARG_MAX":
            segmenter = True
        elif op["op_name"] == "QUANTIZE" and out is not None and inp_grid is not None:
            requantize.append([inp_grid, out])
        if op["op_name"] not in CONV_OPS:
            continue
        w_t = details[op["inputs"][1]]
        raw = it.get_tensor(w_t["index"])
        quantized |= raw.dtype not in (np.float32, np.float64)
        bias = None
        if len(op["inputs"]) > 2 and op["inputs"][2] >= 0:
            b_t = details[op["inputs"][2]]
            bias = _dequantize(b_t, it.get_tensor(b_t["index"]))
        w_scales = [float(v) for v in w_t["quantization_parameters"]["scales"]]
        convs.append(TFLiteConv(op["op_name"], _dequantize(w_t, raw), bias, w_t["name"], out, 1, inp_grid, w_scales))
    if not convs:
        raise WeightsError(f"{path}: no convolution in this TFLite model")
    options = op_options(path)
    for conv, dilation in zip([c for c in convs if c.op != "FULLY_CONNECTED"], options.dilations):
        conv.dilation = dilation
    segmenter |= any(c.name.startswith("image_pooling") for c in convs)
    inp = it.get_input_details()[0]
    post = options.custom.get(POSTPROCESS_OP) if anchors is not None else None
    return TFLiteModel(_segmenter_order(convs) if segmenter else convs, int(inp["shape"][1]),
                       np.dtype(inp["dtype"]).name, (float(inp["quantization"][0]), int(inp["quantization"][1])),
                       quantized, post, anchors, anchor_step, adds, None if segmenter else pool,
                       {k: v for k, v in outputs.items() if v is not None}, segmenter,
                       options.align_corners[-1] if options.align_corners else True, requantize)
