"""The two detector kinds as the registry sees them: SSD / SSDLite and Faster R-CNN."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from ...models.spec import Layer
from ..labels import coco_classes
from ..registry import EXPORT_FORMATS, ModelKind, Outputs, Shapes, fields_of
from .anchors import AnchorConfig, coverage, fit_anchors
from .faster_rcnn import FasterRCNN, FasterRCNNPipeline
from .faster_rcnn_spec import (
    FasterRCNNConfig,
    build_faster_rcnn_arch,
    faster_rcnn_layer_shapes,
    is_faster_rcnn_name,
    parse_faster_rcnn_name,
)
from .model import SSD, DetectionPipeline, select_for
from .spec import DetectorConfig, build_detector_arch, detector_layer_shapes, is_detector_name, parse_detector_name

DETECTIONS = ("boxes", "scores", "labels", "num_detections")


class _Detector(ModelKind):
    """What both detectors share: COCO's names, one box per image as a synthetic target, and int8
    exports that quantize the convs only (the box decoding and NMS stay float)."""

    task = "detection"
    int8_ops = ("Conv",)
    agreement_of = "best detection"
    output_names = DETECTIONS
    label_sets: ClassVar[dict[int, Callable[[], Sequence[str]]]] = {90: coco_classes}

    def example_targets(self, cfg: Any, batch: int, size: int, generator: torch.Generator) -> list[dict[str, Any]]:
        box = torch.tensor([[0.2, 0.3, 0.6, 0.8]]) * size
        return [{"boxes": box, "labels": torch.tensor([1]), "ignore": torch.tensor([False])}] * batch


#: Below this share of training boxes with an anchor at IoU >= 0.5, training suggests better anchors
#: (measured on about ADVICE_SAMPLE of them: COCO has 860k).
ADVICE_COVERAGE = 0.5
ADVICE_SAMPLE = 10_000
#: When a -p3 model's anchors still leave more than 1 - P2_COVERAGE of the boxes uncovered, -p2 is chosen instead.
P2_COVERAGE = 0.75
#: The -p2 model chosen for the data takes an input this much larger (a multiple of 32) unless ``--input-size``
#: names one: objects that small gain from the pixels more than from anything else measured.
P2_INPUT_SCALE = 1.2


def _grids(cfg: DetectorConfig, input_size: int) -> list[tuple[int, int]]:
    return build_detector_arch(cfg).grid_sizes((input_size, input_size))


def _coverage(cfg: DetectorConfig, boxes: torch.Tensor, input_size: int) -> float:
    """:func:`coverage` of ``cfg``'s anchors, on an even sample of at most about :data:`ADVICE_SAMPLE` boxes."""
    return coverage(cfg.anchors, _grids(cfg, input_size), boxes[::max(1, len(boxes) // ADVICE_SAMPLE)])


def _can_add_p3(cfg: DetectorConfig) -> bool:
    """Whether a ``-p3`` (and ``-p2``) model of ``cfg`` exists: a first map at stride 16 and a backbone that
    has a stride-8 map."""
    return cfg.min_level > 3 and cfg.backbone.output_stride > 8


class SSDKind(_Detector):
    name = "ssd"
    config_type = DetectorConfig
    model_type = SSD
    formats = EXPORT_FORMATS[:5]
    formats_note = "the NMS has data-dependent shapes, which TorchScript and torch.export do not take"

    def matches(self, name: str) -> bool:
        return is_detector_name(name)

    def parse(self, name: str, **overrides: Any) -> DetectorConfig:
        return parse_detector_name(name, **overrides)

    def head_key(self, cfg: DetectorConfig) -> tuple[object, ...]:
        return (cfg.head,)

    def from_dict(self, d: dict[str, Any]) -> DetectorConfig:
        d = dict(d)
        anchors = AnchorConfig(**fields_of(AnchorConfig, d.pop("anchors")))
        cfg: DetectorConfig = super().from_dict(d)
        return cfg.replace(anchors=anchors)

    def layers(self, cfg: DetectorConfig) -> list[Layer]:
        return build_detector_arch(cfg).layers()

    def layer_shapes(self, cfg: DetectorConfig, input_size: tuple[int, int]) -> Shapes:
        return detector_layer_shapes(build_detector_arch(cfg), input_size)

    def _pipeline(self, folded: nn.Module, input_size: int | tuple[int, int] | None, nms: bool,
                  argmax: bool) -> tuple[nn.Module, list[str]]:
        """Box decoding and (with ``nms``) the NMS at one input size; without it, every anchor's box
        and scores (what our TFLite and ExecuTorch files hold: :meth:`finish` completes them)."""
        assert isinstance(folded, SSD)
        size = folded.config.resolution if input_size is None else input_size
        hw = (size, size) if isinstance(size, int) else size
        return DetectionPipeline(folded, hw, nms).eval(), list(DETECTIONS if nms else DETECTIONS[:2])

    def fit_anchors(self, cfg: DetectorConfig, boxes: torch.Tensor, input_size: int) -> tuple[DetectorConfig, str]:
        """The anchor scales fitted to the training boxes (:func:`fit_anchors`), and the share of boxes an
        anchor matches at IoU >= 0.5 before and after."""
        grids = _grids(cfg, input_size)
        fitted = fit_anchors(cfg.anchors, grids, boxes)
        before, after = coverage(cfg.anchors, grids, boxes), coverage(fitted, grids, boxes)
        return cfg.replace(anchors=fitted), (
            f"anchors fitted to {len(boxes)} training boxes: lowest box {fitted.lowest_scale:g}, min_scale "
            f"{fitted.min_scale:g}; boxes with an anchor at IoU >= 0.5: {100 * before:.1f}% -> {100 * after:.1f}%")

    def anchor_advice(self, cfg: DetectorConfig, boxes: torch.Tensor, input_size: int) -> str:
        """A hint when fewer than :data:`ADVICE_COVERAGE` of the boxes overlap an anchor at IoU >= 0.5 (small
        objects: SSD then trains on most of them through their forced best anchor only)."""
        cov = _coverage(cfg, boxes, input_size)
        if cov >= ADVICE_COVERAGE:
            return ""
        fixes = ["--fit-anchors fits the anchor scales to them"]
        if _can_add_p3(cfg):
            fixes.append(f"a -p3 model ({cfg.replace(min_level=3).name}) adds a stride-8 map with smaller anchors, "
                         "a -p2 model a stride-4 map too")
        return (f"only {100 * cov:.0f}% of the {len(boxes)} training boxes overlap an anchor at IoU >= 0.5 at "
                f"{input_size} px (small objects): " + "; ".join(fixes))

    def model_for_boxes(self, cfg: DetectorConfig, boxes: Callable[[], torch.Tensor],
                        input_size: int | None) -> tuple[DetectorConfig, str]:
        """The ``-p3`` model when fewer than :data:`ADVICE_COVERAGE` of the training boxes overlap an anchor
        at IoU >= 0.5 and its anchors cover more; the ``-p2`` model when even -p3's cover fewer than
        :data:`P2_COVERAGE` and -p2's more, at :data:`P2_INPUT_SCALE` times the resolution when
        ``input_size`` is None. Why: on the facemask photos (faces of 7% of the image) TF's SSDLite left 65%
        of the faces without an anchor; fine-tuned by the same recipe it reached 0.431 mAP@0.5, the -p3
        model (37% uncovered, 9% more multiply-adds) 0.519 / 0.504 / 0.452 with seeds 0 / 1 / 2, the -p2
        model (20% uncovered, 10% more again, about 1.3x -p3's CPU time) 0.544 / 0.536 / 0.532 at 320 px
        and 0.553 / 0.558 / 0.543 at 384 px (1.4-1.5x the time). A user should not need to know."""
        if not _can_add_p3(cfg):
            return cfg, ""
        b = boxes()
        size = input_size or cfg.resolution
        cov = _coverage(cfg, b, size)  # 1 without boxes
        if cov >= ADVICE_COVERAGE:
            return cfg, ""
        best, best_cov, what = cfg, cov, ""
        for level, grid in ((3, "stride-8 map has"), (2, "stride-4 and stride-8 maps have")):
            if best_cov >= P2_COVERAGE:  # -p3's anchors are enough: no -p2
                break
            fine = self.parse(cfg.replace(min_level=level).name, num_classes=cfg.num_classes)  # with its anchors
            fine_cov = _coverage(fine, b, size)
            if fine_cov > best_cov:
                best, best_cov, what = fine, fine_cov, grid
        if best is cfg:
            return cfg, ""
        what, also = f"{what} smaller anchors", "--model names another"
        if best.min_level == 2 and input_size is None:
            resolution = 32 * round(cfg.resolution * P2_INPUT_SCALE / 32)
            best = best.replace(backbone=best.backbone.replace(resolution=resolution))
            best_cov = _coverage(best, b, resolution)
            what += f", at {resolution} px rather than {cfg.resolution} for objects this small"
            also = "--model or --input-size names another"
        return best, (f"model {best.name}: only {100 * cov:.0f}% of the {len(b)} training boxes overlap an anchor of "
                      f"{cfg.name} at IoU >= 0.5 (small objects), {100 * best_cov:.0f}% one of {best.name}'s, whose "
                      f"{what} ({also})")

    def finish(self, cfg: DetectorConfig, outputs: Outputs) -> Outputs:
        boxes, scores = outputs
        return select_for(cfg, boxes, scores)


class FasterRCNNKind(_Detector):
    name = "faster_rcnn"
    config_type = FasterRCNNConfig
    model_type = FasterRCNN
    formats = ("onnx", "onnx-int8")
    formats_note = "torchvision's two stages (proposals, RoIAlign, NMS) trace for ONNX only"
    # torchvision's detection models trace with the TorchScript-based exporter, for one image at a time
    onnx_exporter = "torchscript"

    def matches(self, name: str) -> bool:
        return is_faster_rcnn_name(name)

    def parse(self, name: str, **overrides: Any) -> FasterRCNNConfig:
        return parse_faster_rcnn_name(name, **overrides)

    def to_dict(self, cfg: FasterRCNNConfig) -> dict[str, Any]:
        return {**super().to_dict(cfg), "framework": self.name}

    def from_dict(self, d: dict[str, Any]) -> FasterRCNNConfig:
        return super().from_dict({k: v for k, v in d.items() if k != "framework"})

    def layers(self, cfg: FasterRCNNConfig) -> list[Layer]:
        return build_faster_rcnn_arch(cfg).layers()

    def layer_shapes(self, cfg: FasterRCNNConfig, input_size: tuple[int, int]) -> Shapes:
        return faster_rcnn_layer_shapes(build_faster_rcnn_arch(cfg), input_size)

    def repeats(self, cfg: FasterRCNNConfig) -> dict[str, int]:
        return {layer.name: cfg.proposals for layer in build_faster_rcnn_arch(cfg).per_proposal()}

    def _pipeline(self, folded: nn.Module, input_size: int | tuple[int, int] | None, nms: bool,
                  argmax: bool) -> tuple[nn.Module, list[str]]:
        """Both stages and the NMS, at any input size."""
        if not nms:
            raise ValueError("a Faster R-CNN's detections come out of its second stage: it exports with its NMS")
        assert isinstance(folded, FasterRCNN)
        return FasterRCNNPipeline(folded).eval(), list(DETECTIONS)
