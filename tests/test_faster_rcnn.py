"""Faster R-CNN on MobileNet (V1 Table 13's other framework), built on torchvision's FasterRCNN: the
spec and its cost against the paper, the module's keys and stages, training and evaluation on a
COCO folder, starting from a classifier, prediction and ONNX export."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_coco_folder
from torch.utils.flop_counter import FlopCounterMode

import mobilenets
from mobilenets.analysis.paper_tables import paper_tables
from mobilenets.tasks.detection.faster_rcnn import FasterRCNN
from mobilenets.tasks.detection.faster_rcnn_spec import build_faster_rcnn_arch, parse_faster_rcnn_name
from mobilenets.weights import save_weights

FAST = dict(model="0.25-FasterRCNN-MobileNet-96", progress=False, batch_size=8, amp="off", workers=0)


@pytest.mark.parametrize(("name", "madds", "params", "trainable"), [
    ("1.0-FasterRCNN-MobileNet-300", 25_223_422_912, 6_042_051, 6_063_939),  # paper: 25.2B, 6.1M
    ("1.0-FasterRCNN-MobileNet-600", 30_486_057_088, 6_042_051, 6_063_939),  # paper: 30.5B, 6.1M
])
def test_cost_reproduces_table13(name: str, madds: int, params: int, trainable: int) -> None:
    p = mobilenets.profile(name)
    assert (p.madds, p.params, p.trainable_params) == (madds, params, trainable)
    assert set(p.by_part) == {"backbone", "rpn", "roi_heads"} and sum(m for m, _ in p.by_part.values()) == p.madds
    second = [r for r in p.layers if r.name.startswith("roi_heads.")]
    assert second and all(r.runs == 300 for r in second) and all(r.runs == 1 for r in p.layers if r not in second)
    crop = next(r for r in p.layers if r.name == "roi_heads.box_head.blocks.11.depthwise")
    assert crop.input_shape == (512, 14, 14) and crop.output_shape == (512, 7, 7)
    table13 = next(t for t in paper_tables("v1") if t.id == "v1-table13")
    rows = {r.label: r for r in table13.rows}
    assert rows["Faster-RCNN 300 MobileNet"].match and rows["Faster-RCNN 600 MobileNet"].match


def test_spec_splits_the_backbone_at_stride_16() -> None:
    v1 = build_faster_rcnn_arch(parse_faster_rcnn_name("1.0-FasterRCNN-MobileNet-600"))
    assert v1.split == 11 and v1.rpn_channels == 512 and v1.box_features == 1024
    v2 = build_faster_rcnn_arch(parse_faster_rcnn_name("0.5-FasterRCNN-MobileNetV2-320"))
    assert v2.split == 13 and v2.rpn_channels == 48 and v2.box_head[-1].name == "roi_heads.box_head.head"
    assert parse_faster_rcnn_name("1.0-FasterRCNN-MobileNet").resolution == 600
    assert mobilenets.create_model("1.0-FasterRCNN-MobileNet-300").config.name == "1.0-FasterRCNN-MobileNet-300"
    with pytest.raises(ValueError, match="valid: .*anchor_sizes"):
        parse_faster_rcnn_name("1.0-FasterRCNN-MobileNet-300", anchor_size=3)


def test_keys_follow_the_classifier() -> None:
    """The first stage keeps the classifier's keys under ``backbone.``, the later blocks theirs under
    ``roi_heads.box_head.``; torchvision's anchor generator gives 12 anchors per stride-16 cell."""
    model = mobilenets.create_model("0.5-FasterRCNN-MobileNet-300", num_classes=5)
    keys = set(model.state_dict())
    classifier = mobilenets.create_model("0.5-MobileNet-224", num_classes=5).state_dict()
    mapped = {model.backbone_key(k) for k in classifier if not k.startswith("classifier.")}
    assert mapped <= keys and "backbone.blocks.10.pointwise.conv.weight" in mapped
    assert "roi_heads.box_head.blocks.11.depthwise.conv.weight" in mapped and "backbone.blocks.11" not in str(keys)
    assert {"rpn.head.shared.conv.weight", "rpn.head.objectness.conv.weight", "rpn.head.box.conv.weight",
            "roi_heads.box_predictor.cls_score.weight", "roi_heads.box_predictor.bbox_pred.weight"} <= keys
    assert model.roi_heads.box_predictor.cls_score.out_features == 6
    assert model.rpn.anchor_generator.num_anchors_per_location() == [12]


def test_flop_counter_matches_the_cost_model() -> None:
    """Conv and FC FLOPs of a real forward are 2x the cost model's MAdds with the proposals it made."""
    model = mobilenets.create_model("0.25-FasterRCNN-MobileNetV2-160", num_classes=3).eval()
    crops: list[int] = []
    model.roi_heads.box_head.register_forward_hook(lambda m, i, o: crops.append(i[0].shape[0]))
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.randn(1, 3, 160, 160))
    p = mobilenets.profile(model)
    per_image = sum(r.madds for r in p.layers if r.runs == 1)
    per_proposal = sum(r.madds // r.runs for r in p.layers if r.runs > 1)
    assert 0 < crops[0] <= 300
    assert fc.get_total_flops() == 2 * (per_image + crops[0] * per_proposal)
    assert sum(t.numel() for t in model.parameters()) == p.trainable_params


@pytest.mark.slow  # an end-to-end run (17 s): in the slow suite, which CI runs too
def test_trains_evaluates_and_predicts_on_a_coco_folder(tmp_path: Path) -> None:
    data = make_coco_folder(tmp_path / "coco")
    res = mobilenets.train(mobilenets.TrainConfig(data=str(data), epochs=2, out=str(tmp_path / "run"), **FAST))
    assert res.task == "detection" and res.history[1]["train_loss"] < res.history[0]["train_loss"]
    model = mobilenets.load_model(res.weights)
    assert isinstance(model, FasterRCNN) and model.weights_meta["classes"] == ["red", "blue"]
    ev = mobilenets.evaluate(res.weights, progress=False, workers=0)
    assert ev.count == 8 and ev.map50 == pytest.approx(res.map50, abs=1e-12)
    assert ev.loss == pytest.approx(res.history[res.best_epoch - 1]["val_loss"], rel=1e-6)  # sampled from a fixed seed
    photo = data / "val2017" / "0001.jpg"
    r = subprocess.run([sys.executable, "-m", "mobilenets", "predict", "--weights", res.weights, str(photo),
                        "--score-threshold", "0", "--json", "--save-vis", str(tmp_path / "vis")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    dets = json.loads(r.stdout)["predictions"][0]["detections"]
    assert dets and all(d["label"] in ("red", "blue") and len(d["box"]) == 4 for d in dets)
    assert (tmp_path / "vis" / "0001.png").is_file()


def test_starts_from_a_classifier(tmp_path: Path) -> None:
    """``--init`` with a classifier: blocks 0-10 fill the first stage, 11-12 the box head; with
    ``--freeze-backbone`` both stay as they were."""
    classifier = mobilenets.create_model("0.25-MobileNet-96", num_classes=4)
    save_weights(classifier, tmp_path / "cls.safetensors")
    data = make_coco_folder(tmp_path / "coco", {"train2017": 8, "val2017": 4})
    res = mobilenets.train(mobilenets.TrainConfig(data=str(data), epochs=1, out=str(tmp_path / "run"),
                                                  init=str(tmp_path / "cls.safetensors"), freeze_backbone=True,
                                                  **FAST))
    model = mobilenets.load_model(res.weights)
    after = model.state_dict()
    for key, value in classifier.state_dict().items():
        if not key.startswith("classifier."):
            assert torch.equal(after[model.backbone_key(key)], value), key
    assert not torch.equal(after["rpn.head.shared.conv.weight"],
                           mobilenets.create_model("0.25-FasterRCNN-MobileNet-96", num_classes=2)
                           .state_dict()["rpn.head.shared.conv.weight"])


def test_onnx_export_gives_the_pytorch_detections(tmp_path: Path, refdata: Path) -> None:
    """The export holds both stages and the NMS; traced for one image, ONNX Runtime runs a batch image
    by image and finds PyTorch's detections on real photos."""
    torch.manual_seed(0)  # not the weights the tests before left the generator at
    model = mobilenets.create_model("0.25-FasterRCNN-MobileNet-160", num_classes=3).eval()
    w = save_weights(model, tmp_path / "w.safetensors", classes=["a", "b", "c"])
    res = mobilenets.export(mobilenets.load_model(w), tmp_path / "m.onnx", format="onnx")
    assert res.ok and res.max_abs_diff < 1e-4  # checked on a batch of 3
    photos = [refdata / "images" / f for f in ("cat.bmp", "grace_hopper.bmp", "burger.jpg")]
    ours = mobilenets.predict(w, photos, runtime="torch", score_threshold=0.2, batch_size=3)
    onnx = mobilenets.predict(tmp_path / "m.onnx", photos, runtime="onnxruntime", score_threshold=0.2, batch_size=3)
    assert sum(len(p.detections) for p in ours.predictions) > 0
    for a, b in zip(ours.predictions, onnx.predictions):
        # an untrained model scores many boxes alike (about 1/4 each): equal scores may come in either order
        assert len(a.detections) == len(b.detections)
        left = list(b.detections)
        for da in a.detections:
            same = [db for db in left if db["class_id"] == da["class_id"] and abs(da["score"] - db["score"]) < 1e-4
                    and np.abs(np.subtract(da["box"], db["box"])).max() < 0.05]
            assert same, da
            left.remove(same[0])
    with pytest.raises(ValueError, match="exports to onnx, onnx-int8, not tflite: torchvision's two stages"):
        mobilenets.export(model, tmp_path / "m.tflite", format="tflite")
