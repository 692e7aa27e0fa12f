"""Which of our architectures a TFLite file holds: the classifier, SSD / SSDLite or DeepLabv3 whose
layers have exactly the file's shapes (family and width searched; a detector's post-processing
from its op's options)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..models import ModelConfig, parse_name
from ..models.registry import published_widths
from ..models.spec import ALPHAS, Layer
from ..models.tf_compat import tf_overrides
from ..tasks import DetectorConfig, SegmenterConfig, TaskConfig, kind_of
from ..tasks.detection.anchors import AnchorConfig
from ..tasks.detection.spec import HEADS
from .native import WeightsError
from .tflite_file import TFLiteConv, TFLiteModel


def torch_weight(conv: TFLiteConv) -> torch.Tensor:
    w = torch.from_numpy(conv.weight)
    if conv.op == "DEPTHWISE_CONV_2D":  # [1, kh, kw, C] -> [C, 1, kh, kw]
        return w.permute(3, 0, 1, 2).contiguous()
    if conv.op == "CONV_2D":  # [out, kh, kw, in] -> [out, in, kh, kw]
        return w.permute(0, 3, 1, 2).contiguous()
    return w  # FULLY_CONNECTED: [out, in]


def layers(cfg: TaskConfig) -> list[Layer]:
    """Our layers in the order of a TFLite file's convolution ops."""
    return kind_of(cfg).layers(cfg)


def _shape(layer: Layer) -> tuple[int, ...]:
    if layer.kind == "fc":
        return (layer.out_ch, layer.in_ch)
    return (layer.out_ch, layer.in_ch // layer.groups, layer.kernel, layer.kernel)


def matches(convs: list[TFLiteConv], cfg: TaskConfig) -> bool:
    want = [_shape(layer) for layer in layers(cfg)]
    got = [tuple(torch_weight(c).shape) for c in convs]
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
        found = next((c for c in _segmenter_candidates(tfl) if matches(tfl.convs, c)), None)
        if found is None:
            raise WeightsError(f"the TFLite segmenter's layers ({len(tfl.convs)} convs) match no DeepLabv3 on a "
                               f"MobileNet V1/V2 width in {ALPHAS}")
        return found
    if tfl.postprocess is not None:
        for det in _detector_candidates(tfl):
            if matches(tfl.convs, det):
                return det
        raise WeightsError(f"the TFLite detector's layers ({len(tfl.convs)} convs) match no SSD/SSDLite on a "
                           f"MobileNet V1/V2 width in {ALPHAS}")
    last = torch_weight(tfl.convs[-1])
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
            if matches(tfl.convs, cfg.replace(num_classes=num_classes)):
                return cfg.replace(num_classes=num_classes)
    shapes = [tuple(torch_weight(c).shape) for c in tfl.convs[:3]]
    raise WeightsError(f"the TFLite model's layers ({len(tfl.convs)} convs, first {shapes}) match no MobileNet V1/V2 "
                       f"width in {ALPHAS}; pass the model name (--model) if it is another width")


def tflite_name_hint(path: Path) -> str | None:
    m = re.search(r"mobilenet_v([12])_(\d*\.?\d+)_(\d+)", path.name)
    return f"mobilenet_v{m[1]}_{m[2]}_{m[3]}" if m else None
