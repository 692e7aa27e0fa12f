"""Mobile DeepLabv3 as the registry sees it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from ...models.spec import Layer
from ..labels import voc_segmentation_classes
from ..registry import EXPORT_FORMATS, ModelKind, Shapes
from .model import DeepLabV3, SegmentationPipeline
from .spec import SegmenterConfig, build_segmenter_arch, is_segmenter_name, parse_segmenter_name, segmenter_layer_shapes


class DeepLabKind(ModelKind):
    name = "deeplabv3"
    task = "segmentation"
    config_type = SegmenterConfig
    model_type = DeepLabV3
    formats = (*EXPORT_FORMATS[:5], "pt2")
    formats_note = "its pipeline does not script"
    agreement_of = "pixel class"
    output_names = ("logits",)
    argmax_output = True
    label_sets: ClassVar[dict[int, Callable[[], Sequence[str]]]] = {21: voc_segmentation_classes}

    def matches(self, name: str) -> bool:
        return is_segmenter_name(name)

    def parse(self, name: str, **overrides: Any) -> SegmenterConfig:
        return parse_segmenter_name(name, **overrides)

    def head_key(self, cfg: SegmenterConfig) -> tuple[object, ...]:
        return ("aspp" if cfg.aspp else "no-aspp",)

    def layers(self, cfg: SegmenterConfig) -> list[Layer]:
        return build_segmenter_arch(cfg).layers()

    def layer_shapes(self, cfg: SegmenterConfig, input_size: tuple[int, int]) -> Shapes:
        return segmenter_layer_shapes(build_segmenter_arch(cfg), input_size)

    def output_layer(self, cfg: SegmenterConfig) -> str:
        """TFLite upsamples the uint8 logits: the classifier's grid is the output's."""
        return "classifier"

    def _pipeline(self, folded: nn.Module, input_size: int | tuple[int, int] | None, nms: bool,
                  argmax: bool) -> tuple[nn.Module, list[str]]:
        """The logits upsampled to the input size, or (``argmax``) the class of every pixel."""
        assert isinstance(folded, DeepLabV3)
        return SegmentationPipeline(folded, argmax).eval(), ["classes" if argmax else "logits"]

    def example_targets(self, cfg: SegmenterConfig, batch: int, size: int,
                        generator: torch.Generator) -> list[dict[str, Any]]:
        masks = torch.randint(0, cfg.num_classes, (batch, size, size), generator=generator)
        return [{"mask": m} for m in masks]
