"""The task registry: one ModelKind per kind of model, found from a name, a config or a model."""

from __future__ import annotations

import pytest
import torch

from mobilenets.tasks import (
    EXPORT_FORMATS,
    Detector,
    config_from_dict,
    config_to_dict,
    kind_of,
    kinds,
    parse_model_name,
    task_kind,
    task_names,
)
from mobilenets.tasks.classification import Classifier
from mobilenets.tasks.registry import register

pytestmark = pytest.mark.unit

NAMES = {"classifier": "0.5-MobileNetV2-96", "ssd": "0.25-SSDLite-MobileNetV2-96",
         "faster_rcnn": "0.25-FasterRCNN-MobileNet-128", "deeplabv3": "0.5-DeepLabV3-MobileNetV2-96"}


def test_every_kind_is_registered_once_with_its_task() -> None:
    assert [k.name for k in kinds()] == list(NAMES)
    assert task_names() == ("classification", "detection", "segmentation")
    assert task_kind("detection").name == "ssd"  # a detector record without "framework" is an SSD
    with pytest.raises(ValueError, match="valid: classification, detection, segmentation"):
        task_kind("pose")


@pytest.mark.parametrize("kind_name", list(NAMES))
def test_a_kind_is_found_from_name_config_and_model_and_round_trips(kind_name: str) -> None:
    name = NAMES[kind_name]
    cfg = parse_model_name(name, num_classes=3)
    model = kind_of(cfg).build(cfg)
    assert kind_of(name).name == kind_of(cfg).name == kind_of(model).name == kind_name
    assert config_from_dict(config_to_dict(cfg)) == cfg
    kind = kind_of(cfg)
    assert set(kind.formats) <= set(EXPORT_FORMATS) and kind.formats
    assert kind.default_classes(3) is None
    assert kind.arch_key(cfg) == kind.arch_key(kind.with_resolution(cfg, 160))  # any input size serves a file
    assert isinstance(model, Detector) == (kind.task == "detection")


def test_registering_twice_or_a_second_catch_all_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register(Classifier())

    class Other(Classifier):
        name = "other"

    with pytest.raises(ValueError, match="only one kind"):
        register(Other())


def test_every_detector_trains_and_evaluates_through_the_same_interface() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 128, 128)
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 70.0, 90.0]]), "labels": torch.tensor([1]),
                "ignore": torch.tensor([False])}] * 2
    for name in (NAMES["ssd"], NAMES["faster_rcnn"]):
        model = kind_of(name).create(name, num_classes=2).train()
        assert isinstance(model, Detector)
        loss = model.loss(x, targets)
        assert loss.dim() == 0 and torch.isfinite(loss) and loss.requires_grad
        model.eval()
        with torch.no_grad():
            held_out, detections = model.loss_and_detections(x, targets)
        assert torch.isfinite(held_out) and len(detections) == 2 == len(model.detect(x))


def test_every_layer_has_its_piece_of_every_task() -> None:
    """A new task adds its entry to each layer's per-task table; a missing one fails here, not in use."""
    from mobilenets.data.datasets import _RESOLVERS
    from mobilenets.deploy.evaluate import SCORERS
    from mobilenets.deploy.predict import PREDICTORS
    from mobilenets.training.config import TASK_PRESETS
    from mobilenets.training.tasks import TASKS

    for table in (_RESOLVERS, SCORERS, PREDICTORS, TASK_PRESETS, TASKS):
        assert set(table) == set(task_names())
