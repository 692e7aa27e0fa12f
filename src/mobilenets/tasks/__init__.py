"""What each task adds on top of the models, and the one place that tells tasks apart by name.

``classification`` is the papers' ImageNet task (the models themselves, plus metrics and top-k
predictions); ``detection`` holds SSD / SSDLite (spec, anchors, box coding, the module, loss,
COCO metrics) and Faster R-CNN (spec, the module on torchvision's); ``segmentation`` holds Mobile
DeepLabv3 (spec, module, confusion-matrix metrics).
Higher layers (cost model, weights, training, export, prediction) reach every task through
:func:`parse_model_name`, :func:`build_model` and :func:`task_of`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from ..models import MobileNet, ModelConfig, Preprocess, resolve_config
from ..models import create_model as models_create_model
from .detection.anchors import AnchorConfig
from .detection.faster_rcnn import FasterRCNN
from .detection.faster_rcnn_spec import FasterRCNNConfig, is_faster_rcnn_name, parse_faster_rcnn_name
from .detection.model import SSD
from .detection.spec import DetectorConfig, is_detector_name, parse_detector_name
from .segmentation.model import DeepLabV3
from .segmentation.spec import SegmenterConfig, is_segmenter_name, parse_segmenter_name

TaskConfig = ModelConfig | DetectorConfig | FasterRCNNConfig | SegmenterConfig
TASKS = ("classification", "detection", "segmentation")
DETECTOR_CONFIGS = (DetectorConfig, FasterRCNNConfig)
#: Configs of models with a MobileNet backbone inside (``config.backbone``) and a task head.
HEADED_CONFIGS = (DetectorConfig, FasterRCNNConfig, SegmenterConfig)


def task_of_name(name: str) -> str:
    """The task a model name belongs to."""
    if is_detector_name(name) or is_faster_rcnn_name(name):
        return "detection"
    return "segmentation" if is_segmenter_name(name) else "classification"


def parse_model_name(name: str | TaskConfig, **overrides: Any) -> TaskConfig:
    """Any model name - classifier (``0.75-MobileNet-128``), detector (``1.0-SSDLite-MobileNetV2-320``,
    ``1.0-FasterRCNN-MobileNet-600``) or segmenter (``1.0-DeepLabV3-MobileNetV2-513``) - to its config,
    with options applied."""
    if isinstance(name, HEADED_CONFIGS):
        return name.replace(**overrides) if overrides else name
    if isinstance(name, str) and is_detector_name(name):
        return parse_detector_name(name, **overrides)
    if isinstance(name, str) and is_faster_rcnn_name(name):
        return parse_faster_rcnn_name(name, **overrides)
    if isinstance(name, str) and is_segmenter_name(name):
        return parse_segmenter_name(name, **overrides)
    return resolve_config(name, **overrides)


def build_model(cfg: TaskConfig) -> nn.Module:
    if isinstance(cfg, DetectorConfig):
        return SSD(cfg)
    if isinstance(cfg, FasterRCNNConfig):
        return FasterRCNN(cfg)
    return DeepLabV3(cfg) if isinstance(cfg, SegmenterConfig) else MobileNet(cfg)


def create_model(name: str | TaskConfig, **options: Any) -> nn.Module:
    """Any model by name with random weights: a classifier (``features_only`` and ``out_indices``
    too), a detector or a segmenter."""
    if isinstance(name, HEADED_CONFIGS) or (isinstance(name, str) and task_of_name(name) != "classification"):
        return build_model(parse_model_name(name, **options))
    return models_create_model(name, **options)


def task_of(cfg: TaskConfig | nn.Module) -> str:
    cfg = getattr(cfg, "config", cfg)
    if isinstance(cfg, DETECTOR_CONFIGS):
        return "detection"
    return "segmentation" if isinstance(cfg, SegmenterConfig) else "classification"


def default_preprocess(cfg: TaskConfig) -> Preprocess:
    """The input a model expects when its weights record nothing else: classifiers resize the
    shorter side and center-crop (timm/torchvision); detectors and segmenters squash the whole image
    to the input size (TF's SSDs, Google's DeepLab files), since cropping would cut objects off."""
    if isinstance(cfg, HEADED_CONFIGS):
        return Preprocess(cfg.resolution, 1.0, cfg.backbone.mean, cfg.backbone.std, resize="squash")
    return Preprocess.for_config(cfg)


def preprocess_of(model: nn.Module) -> Preprocess:
    """What a loaded model's weights record (``weights_meta``), else its task's default."""
    meta = getattr(model, "weights_meta", None) or {}
    return Preprocess.from_dict(meta["preprocessing"]) if meta.get("preprocessing") else \
        default_preprocess(model.config)


def _plain(obj: Any) -> Any:
    return [_plain(v) for v in obj] if isinstance(obj, (tuple, list)) else obj


def config_to_dict(cfg: TaskConfig) -> dict[str, Any]:
    """A JSON-ready record of a config (stored in weights files and run folders)."""
    if not isinstance(cfg, HEADED_CONFIGS):
        return {k: _plain(v) for k, v in dataclasses.asdict(cfg).items()}
    d = {f.name: _plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    d.update(task=task_of(cfg), backbone=config_to_dict(cfg.backbone))
    if isinstance(cfg, DetectorConfig):
        d["anchors"] = dataclasses.asdict(cfg.anchors)
    if isinstance(cfg, FasterRCNNConfig):
        d["framework"] = "faster_rcnn"
    return d


def _fields(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys in metadata: {unknown}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def config_from_dict(d: dict[str, Any]) -> TaskConfig:
    d = dict(d)
    task = d.pop("task", "classification")
    if task == "classification":
        return ModelConfig(**_fields(ModelConfig, d))
    backbone = config_from_dict(d.pop("backbone"))
    if task == "detection" and d.pop("framework", "ssd") == "faster_rcnn":
        return FasterRCNNConfig(backbone, **_fields(FasterRCNNConfig, d))  # type: ignore[arg-type]
    if task == "detection":
        anchors = AnchorConfig(**_fields(AnchorConfig, d.pop("anchors")))
        return DetectorConfig(backbone, anchors=anchors, **_fields(DetectorConfig, d))  # type: ignore[arg-type]
    return SegmenterConfig(backbone, **_fields(SegmenterConfig, d))  # type: ignore[arg-type]
