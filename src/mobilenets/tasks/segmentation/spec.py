"""Segmenters as data: Mobile DeepLabv3 (V2 paper section 6.3, Table 7) on a MobileNet backbone.

The backbone is the classifier's spec with an ``output_stride`` of 8, 16 or 32 (below 32 the last
strides become dilation, :func:`mobilenets.models.spec.build_arch`). The head reads the backbone's
last block - V2's 320-channel map, the paper's "MNet V2*" (the 1280-channel layer is dropped), or
V1's 1024-channel one - and is written as layer records like the backbone, so the module builder
and the cost model read one description:

* ``aspp.pool``: image pooling (global average, 1x1 conv + BN + ReLU, broadcast back);
* ``aspp.conv``: 1x1 conv + BN + ReLU;
* ``aspp.atrous.<i>`` (with ASPP only): 3x3 convs + BN + ReLU at rates 6/12/18 at output stride
  16, doubled at 8 (halved at 32);
* ``project``: 1x1 conv + BN + ReLU over the concatenated branches (image pooling first, as in
  TF's DeepLab), then dropout;
* ``classifier``: 1x1 conv with a bias to the class logits, upsampled bilinearly to the input
  size (TF DeepLab's ``align_corners=True`` by default; an option, read from a TFLite file).

Names: ``<alpha>-DeepLabV3-MobileNetV2-<res>`` (``-MobileNet-`` for V1), 513 px and output stride
16 by default, without ASPP (Google's published models and the paper's on-device row); the
suffixes ``-os8`` / ``-os32`` and ``-aspp`` select the other rows of Table 7.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from ...models import ModelConfig
from ...models.spec import Arch, Layer, build_arch, format_alpha, layer_shapes
from ..backbone import BackboneProperties, backbone_from_name, split_options

DEFAULT_RESOLUTION = 513
DEFAULT_OUTPUT_STRIDE = 16
BASE_RATES = (6, 12, 18)  # ASPP's rates at output stride 16

_NAME = re.compile(r"^(?:(?P<alpha>\d*\.?\d+)-)?deeplabv3-(?P<net>mobilenet(?:v2)?)(?:-(?P<res>\d+))?"
                   r"(?P<suffix>(?:-(?:os\d+|aspp))*)$")


@dataclass(frozen=True)
class SegmenterConfig(BackboneProperties):
    """Everything that determines a segmenter's modules."""

    backbone: ModelConfig
    num_classes: int = 21  # with the background (PASCAL VOC: 20 classes + background)
    aspp: bool = False  # the three atrous 3x3 branches (Table 7's "ASPP" column)
    head_channels: int = 256
    dropout: float = 0.1  # before the logits, while training (TF DeepLab: keep_prob 0.9)
    ignore_index: int = 255  # the label of pixels that count neither in the loss nor in the metrics
    align_corners: bool = True  # the final bilinear upsampling's convention (TF DeepLab's: True)

    def __post_init__(self) -> None:
        if not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise ValueError(f"invalid num_classes {self.num_classes!r}; a segmenter needs at least 2 "
                             "(the background and one class)")
        if self.backbone.num_classes != 0 or self.backbone.variant != "standard":
            raise ValueError("a segmenter's backbone is a standard MobileNet without classifier")
        if not 0 <= self.dropout < 1 or self.head_channels < 1:
            raise ValueError("invalid head: dropout in [0, 1), head_channels >= 1")

    @property
    def output_stride(self) -> int:
        return self.backbone.output_stride

    @property
    def atrous_rates(self) -> tuple[int, ...]:
        return tuple(max(1, r * DEFAULT_OUTPUT_STRIDE // self.output_stride) for r in BASE_RATES)

    @property
    def name(self) -> str:
        """``1.0-DeepLabV3-MobileNetV2-513``, ``0.5-DeepLabV3-MobileNet-512-os8-aspp``."""
        suffix = "" if self.output_stride == DEFAULT_OUTPUT_STRIDE else f"-os{self.output_stride}"
        return f"{format_alpha(self.backbone.alpha)}-DeepLabV3-{self.net_name}-{self.resolution}{suffix}" + \
            ("-aspp" if self.aspp else "")


def is_segmenter_name(name: str) -> bool:
    return bool(_NAME.match(name.strip().lower()))


def parse_segmenter_name(name: str, **overrides: object) -> SegmenterConfig:
    """``<alpha>-DeepLabV3-MobileNetV2-<res>[-os8|-os16|-os32][-aspp]`` (1.0, 513 px, OS 16 by default)."""
    m = _NAME.match(name.strip().lower())
    if not m:
        raise ValueError(f"unknown segmenter name {name!r}; names look like 1.0-DeepLabV3-MobileNetV2-513 or "
                         "0.5-DeepLabV3-MobileNetV2-512-os8-aspp")
    suffixes = [s for s in m["suffix"].split("-") if s]
    os_ = next((int(s[2:]) for s in suffixes if s.startswith("os")), DEFAULT_OUTPUT_STRIDE)
    backbone = backbone_from_name(m["alpha"], m["net"], int(m["res"]) if m["res"] else DEFAULT_RESOLUTION)
    b_over, head = split_options(overrides, SegmenterConfig, set(), "segmenter")
    return SegmenterConfig(backbone.replace(**{"output_stride": os_, **b_over}),
                           **{"aspp": "aspp" in suffixes, **head})


@dataclass(frozen=True)
class SegmenterArch:
    """A segmenter expanded into layer records (names are module paths in :class:`DeepLabV3`)."""

    config: SegmenterConfig
    backbone: Arch  # its head (V2's 1280-channel conv) is not used
    pool: Layer
    conv: Layer
    atrous: tuple[Layer, ...]
    project: Layer
    classifier: Layer

    @property
    def feature_channels(self) -> int:
        return self.backbone.blocks[-1].out_ch

    def backbone_layers(self) -> list[Layer]:
        return [self.backbone.stem] + [layer for b in self.backbone.blocks for layer in b.layers]

    def layers(self) -> list[Layer]:
        """Every layer in execution order, named by module path."""
        out = [dataclasses.replace(layer, name=f"backbone.{layer.name}") for layer in self.backbone_layers()]
        return out + [self.pool, self.conv, *self.atrous, self.project, self.classifier]


def build_segmenter_arch(cfg: SegmenterConfig) -> SegmenterArch:
    backbone = build_arch(cfg.backbone)
    c, d = backbone.blocks[-1].out_ch, cfg.head_channels
    atrous = tuple(Layer(f"aspp.atrous.{i}", "conv", c, d, 3, dilation=r)
                   for i, r in enumerate(cfg.atrous_rates)) if cfg.aspp else ()
    branches = 2 + len(atrous)
    return SegmenterArch(cfg, backbone, Layer("aspp.pool", "pointwise", c, d), Layer("aspp.conv", "pointwise", c, d),
                         atrous, Layer("project", "pointwise", branches * d, d),
                         Layer("classifier", "pointwise", d, cfg.num_classes, act=False, bn=False, bias=True))


def segmenter_layer_shapes(arch: SegmenterArch,
                           input_size: tuple[int, int]) -> list[tuple[Layer, tuple[int, int], tuple[int, int]]]:
    """Each layer with its input and output size: the backbone in order, the image-pooling conv at
    1x1, the other head layers at the backbone's output size (the final upsampling has no MACs)."""
    shapes = layer_shapes(arch.backbone, input_size)
    keep = {layer.name for layer in arch.backbone_layers()}
    out = [(dataclasses.replace(layer, name=f"backbone.{layer.name}"), i, o) for layer, i, o in shapes
           if layer.name in keep]
    hw = out[-1][2]
    out.append((arch.pool, (1, 1), (1, 1)))
    out += [(layer, hw, hw) for layer in (arch.conv, *arch.atrous, arch.project, arch.classifier)]
    return out
