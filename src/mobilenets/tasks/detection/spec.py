"""Detectors as data: an SSD or SSDLite head on a MobileNet backbone, expanded into layer records.

The backbone is the classifier's spec; the feature maps, the extra layers and the predictors are
layer records too, so the module builder and the cost model read one description:

* **SSD on V1** (TF Object Detection API ``ssd_mobilenet_v1``): maps at ``Conv2d_11_pointwise``
  (``blocks.10``, stride 16) and ``Conv2d_13_pointwise`` (``blocks.12``, stride 32).
* **SSDLite on V2** (V2 paper section 6.2): the first map is the expansion output of the first
  160-channel block (``blocks.13.expand``, TF's ``layer_15/expansion_output``, stride 16); the
  others sit on the 1280-channel last layer (``head``, stride 32).
* An ``output_stride`` of 8 or 16 (name suffix ``-os8``, ``-os16``; DeepLab's atrous backbone)
  puts both backbone maps at that stride: finer grids for small objects, at the backbone's cost.
* ``min_level`` 3 (name suffix ``-p3``; the TF OD API's ``min_level``, FPN's P3) adds a third
  backbone map before the others, at stride 8 (V1: ``blocks.4``, ``Conv2d_5_pointwise``; V2:
  ``blocks.6.expand``, TF's ``layer_7/expansion_output``): a grid for small objects (faces,
  cells), with smaller anchors (:data:`P3_ANCHORS`). Six layers deep, that map knows edges more
  than objects, so FPN's top-down path gives it the stride-16 map's meaning: ``fuse`` (a 1x1 conv
  + BN to its channels, the BN's scale started at 0 so the sum starts as the plain map) upsampled
  2x (nearest) and added.
* ``min_level`` 2 (name suffix ``-p2``) adds a stride-4 map before the stride-8 one (V1: ``blocks.2``,
  ``Conv2d_3_pointwise``; V2: ``blocks.3.expand``, TF's ``layer_4/expansion_output``), for objects of
  a few pixels, with boxes of 0.025 and 0.04 of the image (:data:`P2_ANCHORS`); the top-down path goes
  on from the stride-8 map (after its own sum) to it through ``fuse_p2``. On the facemask photos (a
  quarter of the faces under 15 px at 320) it finds more of the small faces: 0.508 / 0.523 / 0.518
  mAP@0.5 with seeds 0 / 1 / 2 against -p3's 0.519 / 0.504 / 0.452 (``with_mask`` 0.79-0.81 against
  0.74), for 10% more multiply-adds but about 1.3x -p3's time on a CPU: its predictors' depthwise
  convolutions run on 80x80 cells at 320 px.
* Four extra layers of depths 512/256/256/128 x alpha (at least ``min_depth``): a 1x1 conv to
  half the depth, then a 3x3 stride-2 conv (SSDLite: 3x3 depthwise + 1x1), each with BN + ReLU6.
* Predictors per map: box encodings (4 per anchor) and class logits (``num_classes + 1`` per
  anchor, index 0 = background), 1x1 convs with a bias (SSDLite: 3x3 depthwise + BN + ReLU6,
  then the 1x1).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from ...models import ModelConfig
from ...models.spec import Arch, Block, Layer, build_arch, conv_out_size, format_alpha, layer_shapes
from ..backbone import BackboneProperties, backbone_from_name, split_options
from .anchors import AnchorConfig

HEADS = ("ssd", "ssdlite")
NMS_MODES = ("per_class", "class_agnostic")
EXTRA_DEPTHS = (512, 256, 256, 128)
#: Where each family's feature maps come from, and their output strides.
TAPS = {"v1": (("blocks.10", 16), ("blocks.12", 32)), "v2": (("blocks.13.expand", 16), ("head", 32))}
#: The stride-8 map that ``min_level`` 3 adds, and the stride-4 one that ``min_level`` 2 adds before it.
P3_TAPS = {"v1": ("blocks.4", 8), "v2": ("blocks.6.expand", 8)}
P2_TAPS = {"v1": ("blocks.2", 4), "v2": ("blocks.3.expand", 4)}
MIN_LEVELS = (2, 3, 4)
MATCHERS = ("atss", "argmax")  # how training picks each anchor's box: see detection.loss
CLS_LOSSES = ("focal", "hard_negatives")  # training's classification loss: see detection.loss
BOX_LOSSES = ("giou", "smooth_l1")  # training's localization loss: see detection.loss
#: A ``-p3`` detector's default anchors: the stride-8 map's boxes at 0.05 (square) and 0.1 of the
#: image, where TF's lowest map has 0.1 and 0.2.
P3_ANCHORS = AnchorConfig(lowest_scale=0.05, min_scale=0.1)
#: A ``-p2`` detector's: -p3's, with a square box of 0.025 and a tall one of 0.04 on the stride-4 map.
P2_ANCHORS = dataclasses.replace(P3_ANCHORS, finest=((0.025, 1.0), (0.04, 0.5)))
DEFAULT_RESOLUTION = 300

_NAME = re.compile(r"^(?:(?P<alpha>\d*\.?\d+)-)?(?P<head>ssd|ssdlite)-(?P<net>mobilenet(?:v2)?)(?:-(?P<res>\d+))?"
                   r"(?:-os(?P<os>\d+))?(?:-p(?P<level>[23]))?$")


@dataclass(frozen=True)
class DetectorConfig(BackboneProperties):
    """Everything that determines a detector's modules, anchors and post-processing."""

    backbone: ModelConfig
    head: str = "ssd"
    num_classes: int = 90  # object classes; the class predictor has one more output (background, index 0)
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    box_scales: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)  # TF's y, x, h, w scales
    score_threshold: float = 1e-8
    iou_threshold: float = 0.5  # NMS (RetinaNet's, Detectron's; TF's SSDs: 0.6, which a Google file's options keep)
    max_detections: int = 100
    nms: str = "per_class"  # or "class_agnostic": TFLite's fast NMS over each anchor's best class
    min_depth: int = 16
    predictor_kernel: int = 1  # SSD's box/class predictors: 1x1 (TF's MobileNet SSDs) or 3x3 (the original SSD)
    min_level: int = 4  # 4: the first map at stride 16 (TF's SSDs); 3: a stride-8 map before it; 2: and stride 4
    matcher: str = "atss"  # training's anchor matching: ATSS's adaptive IoU threshold, or TF's argmax at 0.5
    cls_loss: str = "focal"  # training's classification loss: focal over every anchor, or SSD's hard negatives
    box_loss: str = "giou"  # training's localization loss: GIoU of the decoded boxes, or TF's smooth L1 of the codes

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"invalid detector head {self.head!r}; valid: {', '.join(HEADS)}")
        if self.nms not in NMS_MODES:
            raise ValueError(f"invalid nms {self.nms!r}; valid: {', '.join(NMS_MODES)}")
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise ValueError(f"invalid num_classes {self.num_classes!r}; a detector needs at least one class")
        if not 0 <= self.score_threshold < 1 or not 0 < self.iou_threshold <= 1 or self.max_detections < 1:
            raise ValueError("invalid post-processing: score threshold in [0, 1), IoU threshold in (0, 1], "
                             "max detections >= 1")
        if self.predictor_kernel not in (1, 3):
            raise ValueError(f"invalid predictor_kernel {self.predictor_kernel!r}; valid: 1, 3")
        if self.matcher not in MATCHERS:
            raise ValueError(f"invalid matcher {self.matcher!r}; valid: {', '.join(MATCHERS)}")
        if self.cls_loss not in CLS_LOSSES:
            raise ValueError(f"invalid cls_loss {self.cls_loss!r}; valid: {', '.join(CLS_LOSSES)}")
        if self.box_loss not in BOX_LOSSES:
            raise ValueError(f"invalid box_loss {self.box_loss!r}; valid: {', '.join(BOX_LOSSES)}")
        if self.min_level not in MIN_LEVELS:
            raise ValueError(f"invalid min_level {self.min_level!r}; valid: 2 (stride-4 and stride-8 maps), "
                             "3 (a stride-8 map), 4")
        if self.min_level < 4 and self.backbone.output_stride < 16:
            raise ValueError(f"min_level {self.min_level} adds a stride-8 map; an output stride of 8 has every map "
                             "there already: use -os8 or -p2/-p3, not both")
        if self.backbone.num_classes != 0 or self.backbone.variant != "standard":
            raise ValueError("a detector's backbone is a standard MobileNet without classifier")

    @property
    def name(self) -> str:
        """``0.75-SSD-MobileNet-300``, ``1.0-SSDLite-MobileNetV2-320-p3``, ``0.5-SSDLite-MobileNetV2-96-os8``."""
        head = "SSDLite" if self.head == "ssdlite" else "SSD"
        os_ = "" if self.backbone.output_stride == 32 else f"-os{self.backbone.output_stride}"
        level = f"-p{self.min_level}" if self.min_level < 4 else ""
        return f"{format_alpha(self.backbone.alpha)}-{head}-{self.net_name}-{self.resolution}{os_}{level}"


def is_detector_name(name: str) -> bool:
    return bool(_NAME.match(name.strip().lower()))


def parse_detector_name(name: str, **overrides: object) -> DetectorConfig:
    """``<alpha>-SSD-MobileNet-<res>``, ``<alpha>-SSDLite-MobileNetV2-<res>``, each with an optional
    ``-os8`` / ``-os16`` and ``-p3`` or ``-p2`` (alpha 1.0, 300 px, output stride 32 and min level 4 by
    default). ``-p3`` / ``-p2`` also set :data:`P3_ANCHORS` / :data:`P2_ANCHORS` unless ``anchors`` is given."""
    m = _NAME.match(name.strip().lower())
    if not m:
        raise ValueError(f"unknown detector name {name!r}; names look like 0.75-SSD-MobileNet-300, "
                         "1.0-SSDLite-MobileNetV2-320, 1.0-SSDLite-MobileNetV2-320-p3 (or -p2) or "
                         "0.5-SSDLite-MobileNetV2-96-os8")
    backbone = backbone_from_name(m["alpha"], m["net"], int(m["res"]) if m["res"] else DEFAULT_RESOLUTION)
    b_over, head = split_options(overrides, DetectorConfig, {"head", "min_level"}, "detector")
    if m["os"]:
        b_over = {"output_stride": int(m["os"]), **b_over}
    if m["level"]:
        level = int(m["level"])
        head = {"min_level": level, "anchors": P3_ANCHORS if level == 3 else P2_ANCHORS, **head}
    return DetectorConfig(backbone.replace(**b_over), m["head"], **head)


@dataclass(frozen=True)
class FeatureMap:
    """One map the predictors read: where it comes from, its channels and output stride."""

    source: str
    channels: int
    stride: int


@dataclass(frozen=True)
class DetectorArch:
    """A detector expanded into layer records (names are module paths in :class:`SSD`)."""

    config: DetectorConfig
    backbone: Arch  # without classifier; layer names without the "backbone." prefix
    maps: tuple[FeatureMap, ...]
    extras: tuple[Block, ...]
    fuse: tuple[Layer, ...]  # the top-down 1x1s, in order: stride 16 -> 8 (``fuse``), then 8 -> 4 (``fuse_p2``)
    box_heads: tuple[tuple[Layer, ...], ...]  # per map
    class_heads: tuple[tuple[Layer, ...], ...]
    boxes_per_location: tuple[int, ...]

    def layers(self) -> list[Layer]:
        """Every layer in execution order, named by module path."""
        out = [dataclasses.replace(layer, name=f"backbone.{layer.name}") for layer in self.backbone.layers()]
        out.extend(self.fuse)
        for b in self.extras:
            out.extend(b.layers)
        for box, cls in zip(self.box_heads, self.class_heads):
            out.extend(box + cls)
        return out

    @property
    def backbone_maps(self) -> tuple[FeatureMap, ...]:
        """The maps taken from the backbone (two, three or four with ``min_level`` 4, 3 or 2), in execution order."""
        return self.maps[:len(self.maps) - len(self.extras)]

    def grid_sizes(self, input_size: tuple[int, int]) -> list[tuple[int, int]]:
        """Each feature map's rows and columns at an input size (TF "SAME": ceil(size / stride))."""
        h, w = input_size
        sizes = [(conv_out_size(h, m.stride), conv_out_size(w, m.stride)) for m in self.backbone_maps]
        for _ in self.extras:
            gh, gw = sizes[-1]
            sizes.append((conv_out_size(gh, 2), conv_out_size(gw, 2)))
        return sizes


def _backbone_maps(arch: Arch, min_level: int) -> list[FeatureMap]:
    by_name = {layer.name: layer for layer in arch.layers()}
    maps = []
    family = arch.config.family
    taps = ((P2_TAPS[family],) if min_level <= 2 else ()) + ((P3_TAPS[family],) if min_level <= 3 else ()) + \
        TAPS[family]
    for source, stride in taps:
        if source.startswith("blocks.") and source.count(".") == 1:
            channels = arch.blocks[int(source.split(".")[1])].out_ch
        else:
            channels = by_name[source].out_ch
        maps.append(FeatureMap(source, channels, min(stride, arch.config.output_stride)))
    return maps


def _separable(prefix: str, cin: int, cout: int, stride: int, linear: bool) -> tuple[Layer, ...]:
    """SSDLite's replacement of a 3x3 conv: 3x3 depthwise + BN + ReLU6, then a 1x1."""
    return (Layer(f"{prefix}.depthwise", "depthwise", cin, cin, 3, stride),
            Layer(f"{prefix}.pointwise", "pointwise", cin, cout, act=not linear, bn=not linear, bias=linear))


def build_detector_arch(cfg: DetectorConfig) -> DetectorArch:
    backbone = build_arch(cfg.backbone)
    maps = _backbone_maps(backbone, cfg.min_level)
    alpha, lite = cfg.backbone.alpha, cfg.head == "ssdlite"

    def depth(d: int) -> int:  # TF OD API: max(int(d * depth_multiplier), min_depth)
        return max(int(d * alpha), cfg.min_depth)

    extras = []
    c = maps[-1].channels
    for i, d in enumerate(EXTRA_DEPTHS):
        p = f"extras.{i}"
        reduce = Layer(f"{p}.reduce", "pointwise", c, depth(d // 2))
        conv = _separable(p, reduce.out_ch, depth(d), 2, linear=False) if lite else \
            (Layer(f"{p}.conv", "conv", reduce.out_ch, depth(d), 3, 2),)
        extras.append(Block(i, "extra", c, depth(d), 2, (reduce, *conv)))
        c = depth(d)
        maps.append(FeatureMap(p, c, maps[-1].stride * 2))
    fine = 4 - cfg.min_level  # the maps finer than stride 16, coarsest first in the top-down path
    fuse = tuple(Layer("fuse" if k == 0 else "fuse_p2", "pointwise", maps[fine - k].channels,
                       maps[fine - k - 1].channels, act=False) for k in range(fine))
    per_loc = cfg.anchors.boxes_per_location(len(maps))
    conv_kind = "pointwise" if cfg.predictor_kernel == 1 else "conv"
    box_heads: list[tuple[Layer, ...]] = []
    class_heads: list[tuple[Layer, ...]] = []
    for j, (m, k) in enumerate(zip(maps, per_loc)):
        for heads, role, n in ((box_heads, "box", 4), (class_heads, "cls", cfg.num_classes + 1)):
            p = f"heads.{j}.{role}"
            heads.append(_separable(p, m.channels, k * n, 1, linear=True) if lite else
                         (Layer(p, conv_kind, m.channels, k * n, cfg.predictor_kernel, act=False, bn=False,
                                bias=True),))
    return DetectorArch(cfg, backbone, tuple(maps), tuple(extras), fuse, tuple(box_heads), tuple(class_heads),
                        tuple(per_loc))


def num_anchors(arch: DetectorArch, input_size: tuple[int, int]) -> int:
    return sum(gh * gw * k for (gh, gw), k in zip(arch.grid_sizes(input_size), arch.boxes_per_location))


def detector_layer_shapes(arch: DetectorArch,
                          input_size: tuple[int, int]) -> list[tuple[Layer, tuple[int, int], tuple[int, int]]]:
    """Each layer with its input and output size: the backbone in order, the extras in a chain from
    the last backbone map, each predictor at its map's size."""
    out = [(dataclasses.replace(layer, name=f"backbone.{layer.name}"), i, o)
           for layer, i, o in layer_shapes(arch.backbone, input_size)]
    grids = arch.grid_sizes(input_size)
    out.extend((layer, grids[len(arch.fuse) - k], grids[len(arch.fuse) - k]) for k, layer in enumerate(arch.fuse))
    for b, hw in zip(arch.extras, grids[len(arch.backbone_maps) - 1:]):
        for layer in b.layers:
            nxt = (conv_out_size(hw[0], layer.stride), conv_out_size(hw[1], layer.stride))
            out.append((layer, hw, nxt))
            hw = nxt
    for hw, box, cls in zip(grids, arch.box_heads, arch.class_heads):
        out.extend((layer, hw, hw) for layer in box + cls)
    return out
