"""The SSD / SSDLite module, built from :func:`build_detector_arch`.

State-dict keys: ``backbone.*`` (the classifier's own keys), ``fuse`` (``-p3`` and ``-p2``), ``fuse_p2``
(``-p2``),
``extras.<i>.{reduce,conv}`` (SSDLite: ``reduce``, ``depthwise``, ``pointwise``), ``heads.<j>.{box,cls}``
(SSDLite: ``.depthwise``, ``.pointwise``). ``forward`` returns the raw box encodings ``[N, A, 4]`` and class logits
``[N, A, num_classes + 1]`` (what the loss and the TFLite post-processing op read; concatenated over the
maps by ``outputs``, a module without parameters that int8 TFLite files keep float); ``detect``
adds decoding and NMS; :class:`DetectionPipeline` is both in one module, for export. ``loss``,
``loss_and_detections`` and ``detect`` are the interface every detector here shares
(:class:`~mobilenets.tasks.detection.faster_rcnn.FasterRCNN` too).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from ...models import MobileNet
from ...models.layers import ConvBNAct, InvertedResidual, LayerStack
from ...models.spec import Layer
from ..backbone import HasBackbone
from .anchors import generate_anchors
from .boxes import Detections, decode, select_detections, unpad
from .loss import ssd_loss
from .spec import DetectorArch, DetectorConfig, build_detector_arch


def _module(layers: tuple[Layer, ...], cfg: DetectorConfig) -> nn.Module:
    return ConvBNAct(layers[0], cfg.backbone) if len(layers) == 1 else LayerStack(layers, cfg.backbone)


class SSD(HasBackbone, nn.Module):
    """SSD or SSDLite on MobileNet V1/V2 (see :mod:`mobilenets.tasks.detection.spec`)."""

    backbone: MobileNet

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        self.config = config
        self.arch: DetectorArch = build_detector_arch(config)
        self.backbone = MobileNet(config.backbone)
        self.extras = nn.ModuleList(LayerStack(b.layers, config.backbone) for b in self.arch.extras)
        # the top-down path of -p3 (16 -> 8) and -p2 (and 8 -> 4), each sum started as "add nothing"
        fuse = [ConvBNAct(layer, config.backbone) for layer in self.arch.fuse]
        for f in fuse:
            nn.init.zeros_(cast(nn.BatchNorm2d, f.bn).weight)
        self.fuse: ConvBNAct | None = fuse[0] if fuse else None
        self.fuse_p2: ConvBNAct | None = fuse[1] if len(fuse) > 1 else None
        self.heads = nn.ModuleList(nn.ModuleDict({"box": _module(box, config), "cls": _module(cls, config)})
                                   for box, cls in zip(self.arch.box_heads, self.arch.class_heads))
        self.outputs = MapOutputs()
        self._anchor_cache: dict[tuple[int, int], torch.Tensor] = {}
        self.score = nn.Sigmoid()  # a module, so a quantized file's score grid can be emulated on its output
        for head in self._heads():  # sigmoid scores start near 0.01, not 0.5 (TF: class_prediction_bias_init -4.6)
            nn.init.constant_(_logit_bias(head["cls"]), -4.6)

    def _heads(self) -> list[nn.ModuleDict]:
        return [cast(nn.ModuleDict, h) for h in self.heads]

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The maps the predictors read: two to four from the backbone, then one per extra layer."""
        b = self.backbone
        taps = [m.source for m in self.arch.backbone_maps]
        maps: list[torch.Tensor] = []
        x = b.stem(x)
        for i, block in enumerate(b.blocks):
            if f"blocks.{i}.expand" in taps:
                assert isinstance(block, InvertedResidual)
                x, expanded = block.forward_expanded(x)
                maps.append(expanded)
            else:
                x = block(x)
            if f"blocks.{i}" in taps:
                maps.append(x)
        if "head" in taps:
            maps.append(b.head(x))
        if self.fuse is not None:  # FPN's top-down sums: stride 16 -> 8, then (-p2) the sum -> 4
            p3 = len(self.arch.fuse) - 1
            maps[p3] = _top_down(maps[p3], maps[p3 + 1], self.fuse)
        if self.fuse_p2 is not None:
            maps[0] = _top_down(maps[0], maps[1], self.fuse_p2)
        for extra in self.extras:
            maps.append(extra(maps[-1]))
        return maps

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codes, logits = [], []
        n = x.shape[0]
        for fmap, head in zip(self.feature_maps(x), self._heads()):
            # channels-last order (row, column, box) matches the anchors' order
            codes.append(head["box"](fmap).permute(0, 2, 3, 1).reshape(n, -1, 4))
            logits.append(head["cls"](fmap).permute(0, 2, 3, 1).reshape(n, -1, self.num_classes + 1))
        return self.outputs(codes, logits)

    def anchors(self, input_size: tuple[int, int], device: torch.device | None = None) -> torch.Tensor:
        """The anchors ``(cy, cx, h, w)`` for an input size (cached per size)."""
        if input_size not in self._anchor_cache:
            self._anchor_cache[input_size] = generate_anchors(self.config.anchors, self.arch.grid_sizes(input_size))
        a = self._anchor_cache[input_size]
        return a if device is None else a.to(device)

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Class scores ``[N, A, C]``: sigmoid, background dropped."""
        return self.score(logits.float())[..., 1:]

    def decode(self, codes: torch.Tensor, logits: torch.Tensor, anchors: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Boxes ``[N, A, 4]`` (normalized ``x1, y1, x2, y2``) and class scores ``[N, A, C]`` of every anchor."""
        return decode(codes.float(), anchors, self.config.box_scales), self.scores(logits)

    def postprocess(self, codes: torch.Tensor, logits: torch.Tensor, anchors: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decoding and NMS with the config's options (see :func:`select_detections`)."""
        return select_for(self.config, *self.decode(codes, logits, anchors))

    @torch.no_grad()
    def detect(self, x: torch.Tensor) -> list[Detections]:
        """Detections per image, boxes normalized to [0, 1] of the input."""
        codes, logits = self(x)
        return unpad(*self.postprocess(codes, logits, self.anchors(_size(x), x.device)))

    def loss(self, x: torch.Tensor, targets: list[dict[str, Any]],
             forward: Callable[..., Any] | None = None) -> torch.Tensor:
        """The training loss of a batch (targets' boxes in pixels of ``x``). ``forward``: this model
        as training wraps it (DDP, compiled), called on ``x``."""
        codes, logits = (forward or self)(x)
        return self._loss(codes, logits, x, targets)

    def loss_and_detections(self, x: torch.Tensor, targets: list[dict[str, Any]]
                            ) -> tuple[torch.Tensor, list[Detections]]:
        """A held-out batch's training loss and its detections, from one forward pass."""
        codes, logits = self(x)
        anchors = self.anchors(_size(x), x.device)
        return self._loss(codes, logits, x, targets), unpad(*self.postprocess(codes, logits, anchors))

    def _loss(self, codes: torch.Tensor, logits: torch.Tensor, x: torch.Tensor,
              targets: list[dict[str, Any]]) -> torch.Tensor:
        size = _size(x)
        return ssd_loss(codes, logits, targets, self.anchors(size, x.device), size, self.config.box_scales,
                        matcher=self.config.matcher, cls_loss=self.config.cls_loss, box_loss=self.config.box_loss)[0]

    def extra_repr(self) -> str:
        return f"name={self.config.name!r}"


def _size(x: torch.Tensor) -> tuple[int, int]:
    return int(x.shape[-2]), int(x.shape[-1])


class MapOutputs(nn.Module):
    """The maps' box encodings and logits, concatenated. A module of its own so that an int8 TFLite file
    keeps it float (``keep_float_in_int8``; :func:`mobilenets.deploy.tflite.float_scope`): each map's
    outputs keep their own int8 range, where one range for all of them is the coarsest map's (its
    anchors never hold a small object, and their logits reach -140)."""

    keep_float_in_int8 = True

    def forward(self, codes: list[torch.Tensor], logits: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.cat(codes, 1), torch.cat(logits, 1)


def _top_down(fine: torch.Tensor, coarse: torch.Tensor, fuse: nn.Module) -> torch.Tensor:
    """A finer map plus the coarser one's meaning: ``fuse`` (1x1 + BN) upsampled 2x (nearest) and added."""
    return fine + F.interpolate(fuse(coarse), size=fine.shape[-2:], mode="nearest")


def _logit_bias(head: nn.Module) -> torch.Tensor:
    """The bias of the conv that outputs a predictor's logits (the last one of the head)."""
    bias = [c for c in head.modules() if isinstance(c, nn.Conv2d)][-1].bias
    assert bias is not None  # logit layers keep a bias
    return bias


def select_for(config: DetectorConfig, boxes: torch.Tensor, scores: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """NMS with a detector config's thresholds (see :func:`select_detections`): what a runtime
    without NMS in its graph (our TFLite files) runs after the graph."""
    c = config
    return select_detections(boxes, scores, c.score_threshold, c.iou_threshold, c.max_detections, c.nms)


class DetectionPipeline(nn.Module):
    """A detector with its post-processing for one input size, as one module (for export and
    runtimes): ``x`` -> boxes ``[N, K, 4]`` (``x1, y1, x2, y2`` normalized to the input), scores
    ``[N, K]``, labels ``[N, K]`` (1..C) and the number of detections ``[N]``, padded to
    ``K = max_detections``; the NMS is torchvision's, which exports to ONNX's NonMaxSuppression.
    With ``nms=False`` it stops before the NMS: every anchor's box and class scores (what a TFLite
    file holds; :func:`select_for` finishes it)."""

    anchors: torch.Tensor

    def __init__(self, model: SSD, input_size: tuple[int, int], nms: bool = True) -> None:
        super().__init__()
        self.model, self.nms = model, nms
        self.register_buffer("anchors", model.anchors(input_size).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        codes, logits = self.model(x)
        if not self.nms:
            return self.model.decode(codes, logits, self.anchors)
        return self.model.postprocess(codes, logits, self.anchors)
