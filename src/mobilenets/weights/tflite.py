"""Google's TFLite MobileNets (float, uint8 quantization-aware, int8 per-channel) as our models:
the classifiers, the SSD detectors with their ``TFLite_Detection_PostProcess`` op, and the DeepLabv3
segmenters (output stride from the dilations of the depthwise convs, head from the conv names).

The flatbuffer is read with Google's own runtime (``ai-edge-litert``): the convolution ops are
taken in execution order, and their weights and biases (dequantized with their scales and zero
points, per tensor or per channel) are matched one-to-one with the layers of our spec. TFLite
folds BatchNorm into the convs; we keep the BN modules as identity statistics that carry the
folded bias (mean 0, var 1 - eps, gamma 1, beta = bias), so the architecture stays one model.
A detector's post-processing options (box coder scales, NMS, thresholds) are read from the
custom op's flexbuffer options, with the flatbuffer schema that ships with ai-edge-litert.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..models import ModelConfig, parse_name
from ..models.registry import published_widths
from ..models.spec import ALPHAS, Layer, build_arch
from ..models.tf_compat import tf_overrides
from ..tasks import DetectorConfig, SegmenterConfig, TaskConfig, config_from_dict
from ..tasks.detection.anchors import AnchorConfig
from ..tasks.detection.spec import HEADS, build_detector_arch
from ..tasks.segmentation.spec import build_segmenter_arch
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
    pool, outputs, segmenter = None, {}, False
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


def _torch_weight(conv: TFLiteConv) -> torch.Tensor:
    w = torch.from_numpy(conv.weight)
    if conv.op == "DEPTHWISE_CONV_2D":  # [1, kh, kw, C] -> [C, 1, kh, kw]
        return w.permute(3, 0, 1, 2).contiguous()
    if conv.op == "CONV_2D":  # [out, kh, kw, in] -> [out, in, kh, kw]
        return w.permute(0, 3, 1, 2).contiguous()
    return w  # FULLY_CONNECTED: [out, in]


def _layers(cfg: TaskConfig) -> list[Layer]:
    if isinstance(cfg, DetectorConfig):
        return build_detector_arch(cfg).layers()
    return build_segmenter_arch(cfg).layers() if isinstance(cfg, SegmenterConfig) else build_arch(cfg).layers()


def _shape(layer: Layer) -> tuple[int, ...]:
    if layer.kind == "fc":
        return (layer.out_ch, layer.in_ch)
    return (layer.out_ch, layer.in_ch // layer.groups, layer.kernel, layer.kernel)


def _match(convs: list[TFLiteConv], cfg: TaskConfig) -> bool:
    want = [_shape(layer) for layer in _layers(cfg)]
    got = [tuple(_torch_weight(c).shape) for c in convs]
    got = [g[:2] if len(w) == 2 else g for g, w in zip(got, want)]
    return len(got) == len(want) and all(g == w for g, w in zip(got, want))


def _detector_candidates(tfl: TFLiteModel) -> list[DetectorConfig]:
    """Every published width and both heads, with the post-processing the file's op specifies."""
    pp = tfl.postprocess or {}
    options = dict(num_classes=int(pp.get("num_classes", 90)), iou_threshold=float(pp.get("nms_iou_threshold", 0.6)),
                   score_threshold=float(pp.get("nms_score_threshold", 1e-8)),
                   max_detections=int(pp.get("max_detections", 100)),
                   box_scales=tuple(float(pp.get(k, d)) for k, d in
                                    (("y_scale", 10.0), ("x_scale", 10.0), ("h_scale", 5.0), ("w_scale", 5.0))),
                   nms="per_class" if pp.get("use_regular_nms") else "class_agnostic",
                   anchors=AnchorConfig(step=tfl.anchor_step))
    out = []
    for c in published_widths():
        backbone = c.replace(resolution=max(tfl.input_size, 32), **{**tf_overrides(c.family), "num_classes": 0,
                                                                     "dropout": 0.0})
        out += [DetectorConfig(backbone, head, **options) for head in HEADS]  # type: ignore[arg-type]
    return out


def _segmenter_candidates(tfl: TFLiteModel) -> list[SegmenterConfig]:
    """Every published width, with and without ASPP, at the file's output stride and class count; V2
    widths below 1 also with TF DeepLab's channel rounding (to multiples of 1, not 8)."""
    num_classes = int(tfl.convs[-1].weight.shape[0])
    out = []
    for c in published_widths():
        backbone = c.replace(resolution=max(tfl.input_size, 32), output_stride=tfl.output_stride,
                             **{**tf_overrides(c.family), "num_classes": 0, "dropout": 0.0})
        divisors = (8, 1) if c.family == "v2" and c.alpha < 1 else (8,)
        out += [SegmenterConfig(backbone.replace(width_divisor=d), num_classes, aspp=aspp,
                                align_corners=tfl.align_corners) for d in divisors for aspp in (False, True)]
    return out


def infer_config(tfl: TFLiteModel, hint: str | None = None) -> TaskConfig:
    """The architecture whose layers have exactly the file's shapes (family and width searched)."""
    if tfl.segmenter:
        found = next((c for c in _segmenter_candidates(tfl) if _match(tfl.convs, c)), None)
        if found is None:
            raise WeightsError(f"the TFLite segmenter's layers ({len(tfl.convs)} convs) match no DeepLabv3 on a "
                               f"MobileNet V1/V2 width in {ALPHAS}")
        return found
    if tfl.postprocess is not None:
        for det in _detector_candidates(tfl):
            if _match(tfl.convs, det):
                return det
        raise WeightsError(f"the TFLite detector's layers ({len(tfl.convs)} convs) match no SSD/SSDLite on a "
                           f"MobileNet V1/V2 width in {ALPHAS}")
    last = _torch_weight(tfl.convs[-1])
    candidates: list[ModelConfig] = []
    if hint:
        try:
            candidates.append(parse_name(hint))
        except ValueError:
            pass
    candidates += published_widths()
    for c in candidates:
        cfg = c.replace(resolution=max(tfl.input_size, 32), **tf_overrides(c.family))
        for num_classes in (int(last.shape[0]), 0):  # with a classifier, or a body alone
            if _match(tfl.convs, cfg.replace(num_classes=num_classes)):
                return cfg.replace(num_classes=num_classes)
    shapes = [tuple(_torch_weight(c).shape) for c in tfl.convs[:3]]
    raise WeightsError(f"the TFLite model's layers ({len(tfl.convs)} convs, first {shapes}) match no MobileNet V1/V2 "
                       f"width in {ALPHAS}; pass the model name (--model) if it is another width")


def tflite_state_dict(tfl: TFLiteModel, cfg: TaskConfig) -> dict[str, torch.Tensor]:
    """Our state dict: BN as identity statistics carrying the folded biases; logit layers keep a bias."""
    if not _match(tfl.convs, cfg):
        raise WeightsError(f"the TFLite layers do not match {cfg.name}")
    eps = cfg.bn_eps if isinstance(cfg, ModelConfig) else cfg.backbone.bn_eps
    sd: dict[str, torch.Tensor] = {}
    for layer, conv in zip(_layers(cfg), tfl.convs):
        w = _torch_weight(conv)
        bias = torch.from_numpy(conv.bias) if conv.bias is not None else torch.zeros(w.shape[0])
        p = layer.name
        if layer.kind == "fc":
            sd[f"{p}.weight"], sd[f"{p}.bias"] = w.reshape(w.shape[0], -1), bias
            continue
        sd[f"{p}.conv.weight"] = w
        if not layer.bn:
            sd[f"{p}.conv.bias"] = bias
            continue
        sd[f"{p}.bn.weight"] = torch.ones(layer.out_ch)
        sd[f"{p}.bn.bias"] = bias
        sd[f"{p}.bn.running_mean"] = torch.zeros(layer.out_ch)
        sd[f"{p}.bn.running_var"] = torch.full((layer.out_ch,), 1.0 - eps)
        sd[f"{p}.bn.num_batches_tracked"] = torch.tensor(0)
    return sd


def activation_grids(tfl: TFLiteModel, cfg: TaskConfig) -> dict[str, list[list[float]]]:
    """The quantized file's output grids by our module names, for
    :func:`~mobilenets.models.fake_quant.emulate_activation_quantization`: every conv layer, the
    residual blocks (TFLite's ADD), the pool, and a detector's concatenated outputs and scores."""
    table = {layer.name: [c.output_grid] for layer, c in zip(_layers(cfg), tfl.convs) if c.output_grid}
    if not table:
        return {}
    residual = _residual_blocks(cfg)
    if len(residual) == len(tfl.add_grids):
        table.update({name: [grid] for name, grid in zip(residual, tfl.add_grids)})
    if tfl.pool_grid and isinstance(cfg, ModelConfig):
        table["pool"] = [tfl.pool_grid]
    if isinstance(cfg, SegmenterConfig) and "classifier" in table:
        table[""] = table["classifier"]  # TFLite upsamples the uint8 logits: ties go to ARG_MAX's first class
    g = tfl.output_grids
    if "codes" in g and "logits" in g:
        table[""] = [g["codes"], g["logits"]]  # SSD.forward returns both, concatenated like TFLite's CONCATENATION
    if "scores" in g:
        table["score"] = [g["scores"]]
    return table


def _residual_blocks(cfg: TaskConfig) -> list[str]:
    """Our names of the backbone's residual blocks (TFLite's ADDs, in order)."""
    if isinstance(cfg, ModelConfig):
        return [f"blocks.{b.index}" for b in build_arch(cfg).blocks if b.residual]
    arch = build_detector_arch(cfg).backbone if isinstance(cfg, DetectorConfig) else build_segmenter_arch(cfg).backbone
    return [f"backbone.blocks.{b.index}" for b in arch.blocks if b.residual]


def integer_kernels(tfl: TFLiteModel, cfg: TaskConfig) -> dict[str, dict[str, list[Any]]]:
    """What :func:`~mobilenets.models.fake_quant.emulate_integer_kernels` needs to compute a uint8
    file's convs and residual adds bit for bit: each conv's input grid, weight scales and output grid,
    each add's two input grids and output grid, and DeepLab's image-pooling branch moved to the
    concatenation's grid (its QUANTIZE, identified by its input grid) ({} for a float file)."""
    convs = {layer.name: [c.input_grid, c.weight_scales, c.output_grid] for layer, c in zip(_layers(cfg), tfl.convs)
             if layer.kind != "fc" and c.input_grid and c.output_grid and c.weight_scales}
    if not convs:
        return {}
    adds = {}
    residual = _residual_blocks(cfg)
    if len(residual) == len(tfl.add_grids):
        for name, grid in zip(residual, tfl.add_grids):
            first = next(v for k, v in convs.items() if k.startswith(f"{name}."))  # its input is the block's
            adds[name] = [first[0], convs[f"{name}.project"][2], grid]
    pool = convs.get("aspp.pool") if isinstance(cfg, SegmenterConfig) else None
    to_concat = next((r for r in tfl.requantize_grids if pool and r[0] == pool[2]), None)
    return {"convs": convs, "adds": adds, "converts": {"aspp.pool": to_concat} if to_concat else {}}


def run_litert_outputs(path: str | Path, x: np.ndarray) -> list[np.ndarray]:
    """Google's runtime on one NHWC input (float, or uint8 for quantized files): every output of the
    file, dequantized, batch dimension dropped - the reference our models are checked against."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x[None])
    it.invoke()
    outs = []
    for o in it.get_output_details():
        out = it.get_tensor(o["index"])[0].astype(np.float32)
        scale, zp = o["quantization"]
        outs.append((out - zp) * scale if scale else out)
    return outs


def run_litert(path: str | Path, x: np.ndarray) -> np.ndarray:
    """The first output of :func:`run_litert_outputs` (a classifier's class probabilities)."""
    return run_litert_outputs(path, x)[0]


def tflite_name_hint(path: Path) -> str | None:
    m = re.search(r"mobilenet_v([12])_(\d*\.?\d+)_(\d+)", path.name)
    return f"mobilenet_v{m[1]}_{m[2]}_{m[3]}" if m else None


def _input_mapping(tfl: TFLiteModel, cfg: ModelConfig) -> tuple[list[float], list[float]]:
    """Mean and std (of [0, 1] pixels) that reproduce the file's input: a uint8 input means
    ``(pixel - zero_point) * scale`` - for scale 1/128 and zero point 128, mean = std = 128/255, not
    quite the float models' (pixel - 127.5) / 127.5."""
    scale, zero_point = tfl.input_quant
    if tfl.input_dtype != "uint8" or not scale:
        return list(cfg.mean), list(cfg.std)
    std = 1.0 / (255.0 * scale)
    return [zero_point / 255.0] * 3, [std] * 3


def load_tflite(paths: list[Path],
                model: str | None = None) -> tuple[TaskConfig, dict[str, torch.Tensor], dict[str, Any]]:
    """Config, state dict and metadata from one TFLite file, or a body file followed by a head file.
    A file we exported carries its config, classes and preprocessing (:func:`tflite_metadata`)."""
    parts = [read_tflite(p) for p in paths]
    ours = tflite_metadata(paths[0]) if len(paths) == 1 else {}
    tfl = TFLiteModel([c for p in parts for c in p.convs], parts[0].input_size, parts[0].input_dtype,
                      parts[0].input_quant, any(p.quantized for p in parts), parts[0].postprocess, parts[0].anchors,
                      parts[0].anchor_step, [g for p in parts for g in p.add_grids],
                      next((p.pool_grid for p in parts if p.pool_grid), None), parts[0].output_grids,
                      parts[0].segmenter, parts[0].align_corners, [r for p in parts for r in p.requantize_grids])
    cfg = config_from_dict(ours["config"]) if "config" in ours else \
        infer_config(tfl, model or tflite_name_hint(paths[0]))
    mean, std = _input_mapping(tfl, cfg if isinstance(cfg, ModelConfig) else cfg.backbone)
    grids = activation_grids(tfl, cfg) if not ours else {}
    kernels = integer_kernels(tfl, cfg) if grids else {}
    meta = {
        "source": {"format": "tflite", "files": [str(p) for p in paths], "quantized": tfl.quantized,
                   "input_dtype": tfl.input_dtype, "input_quantization": list(tfl.input_quant),
                   **({"postprocess": tfl.postprocess} if tfl.postprocess is not None else {}),
                   **({"activation_quantization": grids, "integer_kernels": kernels} if grids else {})},
        # Google's models resize the whole image to the input size (no crop), bilinear, [-1, 1]
        "preprocessing": {"input_size": tfl.input_size, "crop_pct": 1.0, "mean": mean, "std": std,
                          "interpolation": "bilinear", "resize": "squash"},
    }
    if ours:
        meta.update(preprocessing=ours["preprocessing"], classes=ours.get("classes"))
    return cfg, tflite_state_dict(tfl, cfg), meta
