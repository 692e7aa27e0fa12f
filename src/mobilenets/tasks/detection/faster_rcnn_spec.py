"""Faster R-CNN on a MobileNet as data: the V1 paper's other detection framework (Table 13), as the
TF Object Detection API's MobileNet feature extractor (Huang et al. 2017) splits the backbone.

* **First stage, on the image**: the backbone up to its last stride-16 block (V1: ``blocks.10``,
  TF's ``Conv2d_11_pointwise``; V2: ``blocks.12``, the last 96-channel block), then the region
  proposal network: a 3x3 conv of ``rpn_depth`` channels (TF: 512) + ReLU6 shared by two 1x1
  convs, one objectness logit and four box deltas per anchor. Anchors at stride 16: TF's grid,
  base 256 px x scales 0.25-2 (64-512 px) x aspect ratios 1:2, 1:1, 2:1 (12 per location).
* **Second stage, per proposal** (``proposals`` of them: the paper's 300): a ``crop_size`` x
  ``crop_size`` (14) RoIAlign crop of the stride-16 map goes through the rest of the backbone (V1:
  ``blocks.11`` and ``blocks.12``, TF's ``Conv2d_12`` / ``Conv2d_13``, 7x7 out; V2: ``blocks.13-16``
  and the 1280-channel ``head``), global average pooling, then two FC layers: class logits
  (``num_classes + 1``, index 0 = background) and one box per class (torchvision's predictor).

Module paths, and so state-dict keys: ``backbone.{stem,blocks.<i>}`` (the first stage's part of
the classifier, the classifier's own keys), ``rpn.head.{shared,objectness,box}``,
``roi_heads.box_head.blocks.<i>`` (the classifier's later blocks, same index) and
``roi_heads.box_predictor.{cls_score,bbox_pred}``.

The cost model counts each second-stage layer once per proposal: at 300 and 600 px, with 300
proposals and COCO's 90 classes, this gives the paper's 25.2B and 30.5B multiply-adds. TF keeps
the second stage at 1024 channels whatever the width multiplier; here it is the backbone's own
later blocks (so ``--init`` from any classifier fills it), which differs below alpha 1.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from ...models import ModelConfig
from ...models.spec import Arch, Layer, build_arch, conv_out_size, format_alpha, layer_shapes
from ..backbone import BackboneProperties, backbone_from_name, split_options

DEFAULT_RESOLUTION = 600  # TF's Faster R-CNN configs resize the shorter side to 600 px
RPN_STRIDE = 16

_NAME = re.compile(r"^(?:(?P<alpha>\d*\.?\d+)-)?faster-?rcnn-(?P<net>mobilenet(?:v2)?)(?:-(?P<res>\d+))?$")


@dataclass(frozen=True)
class FasterRCNNConfig(BackboneProperties):
    """Everything that determines a Faster R-CNN's modules, anchors, proposals and post-processing."""

    backbone: ModelConfig
    num_classes: int = 90  # object classes; the class logits have one more (background, index 0)
    anchor_sizes: tuple[int, ...] = (64, 128, 256, 512)  # px: TF's base 256 x scales 0.25, 0.5, 1, 2
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)  # height / width (torchvision's AnchorGenerator)
    rpn_depth: int = 512  # TF's first_stage_box_predictor_depth
    proposals: int = 300  # kept after the RPN's NMS, in training and at test time (the paper's 300)
    box_batch_size: int = 64  # proposals per image sampled for the second stage's loss (TF's second_stage_batch_size)
    crop_size: int = 14  # TF's initial_crop_size; no max pooling after it (the paper's MAdds)
    score_threshold: float = 1e-8
    iou_threshold: float = 0.6  # the second stage's per-class NMS (TF's Faster R-CNN configs)
    max_detections: int = 100

    def __post_init__(self) -> None:
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise ValueError(f"invalid num_classes {self.num_classes!r}; a detector needs at least one class")
        if not self.anchor_sizes or min(self.anchor_sizes) < 1 or not self.aspect_ratios \
                or min(self.aspect_ratios) <= 0:
            raise ValueError("invalid anchors: anchor_sizes are positive pixel sizes, aspect_ratios positive")
        if self.rpn_depth < 1 or self.proposals < 1 or self.crop_size < 2 or self.box_batch_size < 1:
            raise ValueError("invalid Faster R-CNN: rpn_depth, proposals and box_batch_size >= 1, crop_size >= 2")
        if not 0 <= self.score_threshold < 1 or not 0 < self.iou_threshold <= 1 or self.max_detections < 1:
            raise ValueError("invalid post-processing: score threshold in [0, 1), IoU threshold in (0, 1], "
                             "max detections >= 1")
        if self.backbone.num_classes != 0 or self.backbone.variant != "standard" \
                or self.backbone.output_stride != 32:
            raise ValueError("a Faster R-CNN's backbone is a standard MobileNet without classifier, output stride 32")

    @property
    def name(self) -> str:
        """``1.0-FasterRCNN-MobileNet-600``."""
        return f"{format_alpha(self.backbone.alpha)}-FasterRCNN-{self.net_name}-{self.resolution}"

    @property
    def anchors_per_location(self) -> int:
        return len(self.anchor_sizes) * len(self.aspect_ratios)


def is_faster_rcnn_name(name: str) -> bool:
    return bool(_NAME.match(name.strip().lower()))


def parse_faster_rcnn_name(name: str, **overrides: object) -> FasterRCNNConfig:
    """``<alpha>-FasterRCNN-MobileNet[V2]-<res>`` (alpha 1.0, 600 px by default)."""
    m = _NAME.match(name.strip().lower())
    if not m:
        raise ValueError(f"unknown Faster R-CNN name {name!r}; names look like 1.0-FasterRCNN-MobileNet-600")
    backbone = backbone_from_name(m["alpha"], m["net"], int(m["res"]) if m["res"] else DEFAULT_RESOLUTION)
    b_over, head = split_options(overrides, FasterRCNNConfig, set(), "Faster R-CNN")
    return FasterRCNNConfig(backbone.replace(**b_over), **head)


@dataclass(frozen=True)
class FasterRCNNArch:
    """A Faster R-CNN expanded into layer records (names are module paths in the model)."""

    config: FasterRCNNConfig
    backbone: Arch  # the whole classifier-free backbone; layer names without a prefix
    split: int  # blocks [0, split) run on the image, the rest on each proposal's crop
    rpn: tuple[Layer, Layer, Layer]  # shared 3x3 conv, objectness, box deltas
    box_head: tuple[Layer, ...]  # the backbone's later layers, named roi_heads.box_head.*
    predictor: tuple[Layer, Layer]  # class logits, per-class boxes

    @property
    def rpn_channels(self) -> int:
        """Channels of the stride-16 map the RPN and the crops read."""
        return self.backbone.blocks[self.split - 1].out_ch

    @property
    def box_features(self) -> int:
        return self.box_head[-1].out_ch

    def trunk_layers(self) -> list[Layer]:
        """The first stage's backbone layers, named ``backbone.*``."""
        kept = [self.backbone.stem, *(layer for b in self.backbone.blocks[: self.split] for layer in b.layers)]
        return [dataclasses.replace(layer, name=f"backbone.{layer.name}") for layer in kept]

    def per_proposal(self) -> tuple[Layer, ...]:
        return self.box_head + self.predictor

    def layers(self) -> list[Layer]:
        return [*self.trunk_layers(), *self.rpn, *self.box_head, *self.predictor]


def build_faster_rcnn_arch(cfg: FasterRCNNConfig) -> FasterRCNNArch:
    backbone = build_arch(cfg.backbone)
    at_16 = [f for f in backbone.features if f.reduction == RPN_STRIDE]
    split = int(at_16[0].module.split(".")[1]) + 1
    c = backbone.blocks[split - 1].out_ch
    a = cfg.anchors_per_location
    rpn = (Layer("rpn.head.shared", "conv", c, cfg.rpn_depth, 3, bn=False, bias=True),
           Layer("rpn.head.objectness", "pointwise", cfg.rpn_depth, a, act=False, bn=False, bias=True),
           Layer("rpn.head.box", "pointwise", cfg.rpn_depth, 4 * a, act=False, bn=False, bias=True))
    later = [layer for b in backbone.blocks[split:] for layer in b.layers]
    if backbone.head is not None:
        later.append(backbone.head)
    box_head = tuple(dataclasses.replace(layer, name=f"roi_heads.box_head.{layer.name}") for layer in later)
    n = cfg.num_classes + 1
    feat = box_head[-1].out_ch
    predictor = (Layer("roi_heads.box_predictor.cls_score", "fc", feat, n, act=False, bn=False, bias=True),
                 Layer("roi_heads.box_predictor.bbox_pred", "fc", feat, 4 * n, act=False, bn=False, bias=True))
    return FasterRCNNArch(cfg, backbone, split, rpn, box_head, predictor)


def faster_rcnn_layer_shapes(arch: FasterRCNNArch, input_size: tuple[int, int]
                             ) -> list[tuple[Layer, tuple[int, int], tuple[int, int]]]:
    """Each layer with its input and output size: the trunk on the image, the RPN on its map, the
    box head on one crop, the predictor on the pooled vector (per proposal: see ``per_proposal``)."""
    trunk_names = {layer.name for layer in arch.trunk_layers()}
    out = [(dataclasses.replace(layer, name=f"backbone.{layer.name}"), i, o)
           for layer, i, o in layer_shapes(arch.backbone, input_size)
           if f"backbone.{layer.name}" in trunk_names]
    grid = out[-1][2]
    out += [(layer, grid, grid) for layer in arch.rpn]
    hw = (arch.config.crop_size, arch.config.crop_size)
    for layer in arch.box_head:
        nxt = (conv_out_size(hw[0], layer.stride), conv_out_size(hw[1], layer.stride))
        out.append((layer, hw, nxt))
        hw = nxt
    out += [(layer, (1, 1), (1, 1)) for layer in arch.predictor]
    return out
