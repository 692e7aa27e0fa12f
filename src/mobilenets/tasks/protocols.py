"""The interfaces a checker can see: what every task model provides, and what every detector adds."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from torch import nn

from ..models.mobilenet import WeightsRecord

if TYPE_CHECKING:
    from . import TaskConfig
    from .detection.boxes import Detections


@runtime_checkable
class TaskModel(Protocol):
    """A model of any kind (MobileNet, SSD, Faster R-CNN, DeepLabV3): an ``nn.Module`` with the
    config it was built from."""

    config: Any

    @property
    def num_classes(self) -> int: ...

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...

    def eval(self) -> Any: ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]: ...


@runtime_checkable
class Detector(TaskModel, Protocol):
    """What SSD / SSDLite and Faster R-CNN share (torchvision's detectors share one interface too)."""

    def loss(self, x: torch.Tensor, targets: list[dict[str, Any]],
             forward: Callable[..., Any] | None = None) -> torch.Tensor: ...

    def loss_and_detections(self, x: torch.Tensor, targets: list[dict[str, Any]]
                            ) -> tuple[torch.Tensor, list[Detections]]: ...

    def detect(self, x: torch.Tensor) -> list[Detections]: ...


def weights_meta_of(model: nn.Module) -> dict[str, Any]:
    """What a model's weights file recorded (:class:`~mobilenets.models.mobilenet.WeightsRecord`);
    empty for a module of another library."""
    m = getattr(model, "module", model)  # DDP
    return m.weights_meta if isinstance(m, WeightsRecord) else {}


def config_of(model: nn.Module) -> TaskConfig:
    """The config a model (or a DDP-wrapped one) was built from."""
    m = getattr(model, "module", model)  # DDP
    if not isinstance(m, TaskModel):
        raise TypeError(f"not a mobilenets model (no config): {type(m).__name__}")
    return m.config
