"""What detectors and segmenters share: a MobileNet backbone named inside their own names
(``<alpha>-<Head>-MobileNet[V2]-<res>``), options split between that backbone and the head, and
where a classifier's tensors go in the model (fine-tuning from classification weights)."""

from __future__ import annotations

import dataclasses
from typing import Any, Self

from torch import nn

from ..models import ModelConfig, parse_name
from ..models.mobilenet import WeightsRecord

#: Backbone options a headed model's name or overrides may set (its classifier stays off).
BACKBONE_OPTIONS = frozenset(f.name for f in dataclasses.fields(ModelConfig)) - {"num_classes", "alpha", "resolution"}


class BackboneProperties:
    """Properties of a frozen config dataclass with a ``backbone: ModelConfig`` field."""

    backbone: ModelConfig

    @property
    def resolution(self) -> int:
        return self.backbone.resolution

    @property
    def in_chans(self) -> int:
        return self.backbone.in_chans

    @property
    def net_name(self) -> str:
        """The backbone as it appears in the model's name."""
        return "MobileNetV2" if self.backbone.family == "v2" else "MobileNet"

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


class HasBackbone(WeightsRecord):
    """A task model built around a MobileNet: where each tensor of a classifier goes (``--init``)
    and which modules hold them (``--freeze-backbone``). By default all of it is ``backbone``."""

    backbone: nn.Module

    def backbone_modules(self) -> tuple[nn.Module, ...]:
        return (self.backbone,)

    def backbone_key(self, classifier_key: str) -> str:
        return f"backbone.{classifier_key}"


def backbone_from_name(alpha: str | None, net: str, resolution: int) -> ModelConfig:
    """The classifier-free backbone of a name's parts (``net``: "mobilenet" or "mobilenetv2")."""
    family = "MobileNetV2" if net == "mobilenetv2" else "MobileNet"
    return parse_name(f"{alpha or '1.0'}-{family}-{resolution}").replace(num_classes=0, dropout=0.0)


def split_options(overrides: dict[str, Any], config: type, fixed: set[str], what: str
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``overrides`` as (backbone options, head options); a key neither takes is an error that lists
    the valid ones. ``fixed``: the config's fields the name sets."""
    backbone = {k: v for k, v in overrides.items() if k in BACKBONE_OPTIONS}
    head = {k: v for k, v in overrides.items() if k not in BACKBONE_OPTIONS}
    known = {f.name for f in dataclasses.fields(config)} - fixed - {"backbone"}
    bad = sorted(set(head) - known)
    if bad:
        raise ValueError(f"unknown {what} option(s) {bad}; valid: {', '.join(sorted(known | BACKBONE_OPTIONS))}")
    return backbone, head
