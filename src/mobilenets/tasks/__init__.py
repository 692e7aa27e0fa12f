"""What each task adds on top of the models, and the registry through which every higher layer
reaches it.

``classification`` is the papers' ImageNet task (the models themselves, plus metrics and top-k
predictions); ``detection`` holds SSD / SSDLite (spec, anchors, box coding, the module, loss,
COCO metrics) and Faster R-CNN (spec, the module on torchvision's); ``segmentation`` holds Mobile
DeepLabv3 (spec, module, confusion-matrix metrics). Each kind of model registers one
:class:`~mobilenets.tasks.registry.ModelKind` below; higher layers ask it (:func:`kind_of`) instead
of testing a model's type.
"""

from __future__ import annotations

from typing import Any, cast

from torch import nn

from ..models import MobileNet, ModelConfig, Preprocess
from .classification import Classifier
from .detection.faster_rcnn import FasterRCNN
from .detection.faster_rcnn_spec import FasterRCNNConfig
from .detection.kinds import FasterRCNNKind, SSDKind
from .detection.model import SSD
from .detection.spec import DetectorConfig
from .protocols import Detector, TaskModel, config_of, weights_meta_of
from .registry import EXPORT_FORMATS, ModelKind, kind_of, kinds, register, task_kind, task_names
from .segmentation.kind import DeepLabKind
from .segmentation.model import DeepLabV3
from .segmentation.spec import SegmenterConfig

for _kind in (Classifier(), SSDKind(), FasterRCNNKind(), DeepLabKind()):
    register(_kind)

TaskConfig = ModelConfig | DetectorConfig | FasterRCNNConfig | SegmenterConfig
#: The modules the registered kinds build
TaskModule = MobileNet | SSD | FasterRCNN | DeepLabV3

__all__ = [
    "EXPORT_FORMATS",
    "Detector",
    "ModelKind",
    "TaskConfig",
    "TaskModel",
    "TaskModule",
    "build_model",
    "config_from_dict",
    "config_of",
    "config_to_dict",
    "default_preprocess",
    "kind_of",
    "kinds",
    "parse_model_name",
    "preprocess_of",
    "task_kind",
    "task_names",
    "task_of",
    "weights_meta_of",
]


def parse_model_name(name: str | TaskConfig, **overrides: Any) -> TaskConfig:
    """Any model name - classifier (``0.75-MobileNet-128``), detector (``1.0-SSDLite-MobileNetV2-320``,
    ``1.0-FasterRCNN-MobileNet-600``) or segmenter (``1.0-DeepLabV3-MobileNetV2-513``) - to its config,
    with options applied."""
    return kind_of(name).resolve(name, **overrides)


def build_model(cfg: TaskConfig) -> TaskModule:
    return cast(TaskModule, kind_of(cfg).build(cfg))


def task_of(obj: str | TaskConfig | nn.Module) -> str:
    """The task of a model name, a config or a model."""
    return kind_of(obj).task


def default_preprocess(cfg: TaskConfig) -> Preprocess:
    """The input a model expects when its weights record nothing else (see
    :meth:`ModelKind.default_preprocess`)."""
    return kind_of(cfg).default_preprocess(cfg)


def preprocess_of(model: nn.Module) -> Preprocess:
    """What a loaded model's weights record (``weights_meta``), else its kind's default."""
    meta = weights_meta_of(model)
    return Preprocess.from_dict(meta["preprocessing"]) if meta.get("preprocessing") else \
        default_preprocess(model.config)  # type: ignore[arg-type]


def config_to_dict(cfg: TaskConfig) -> dict[str, Any]:
    """A JSON-ready record of a config (stored in weights files and run folders)."""
    return kind_of(cfg).to_dict(cfg)


def config_from_dict(d: dict[str, Any]) -> TaskConfig:
    """A config from its record (:func:`config_to_dict`; a detector without ``framework`` is an SSD)."""
    kind = next((k for k in kinds() if k.name == d.get("framework")), None)
    return (kind or task_kind(d.get("task", "classification"))).from_dict(d)
