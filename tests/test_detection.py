"""Detection: SSD / SSDLite specs and costs, TF's anchors, Google's COCO detector against LiteRT and
Coral's test, the loss, training and evaluation on COCO- and VOC-format folders, predict and export."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DET_FAST, make_coco_folder, shapes_image
from litert_reference import run_litert_outputs
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode
from torchvision.ops import box_iou

import mobilenets
from mobilenets.tasks.detection.anchors import AnchorConfig, generate_anchors
from mobilenets.tasks.detection.boxes import anchors_xyxy, decode, encode
from mobilenets.tasks.detection.loss import match_anchors, ssd_loss
from mobilenets.tasks.detection.model import SSD, DetectionPipeline
from mobilenets.tasks.detection.spec import parse_detector_name
from mobilenets.weights.tflite_file import read_tflite

DETECTOR = "coco_ssd_mobilenet_v1_1.0_quant_2018_06_29.tflite"
PHOTOS = ("burger.jpg", "cat.bmp", "cheetah.jpg", "elephant.jpg", "grace_hopper.bmp", "grace_hopper.jpg",
          "hot_dog.jpg", "multi_objects.jpg", "owl.jpg", "parrot.jpg", "sparrow.png")


@pytest.fixture(scope="module")
def google_ssd(refdata: Path) -> SSD:
    return mobilenets.load_model(refdata / "models" / DETECTOR)


# ------------------------------------------------------------------------------ specs and costs


@pytest.mark.parametrize(("name", "classes", "madds", "params"), [
    ("1.0-SSD-MobileNet-300", 90, 1_237_129_408, 6_794_495),  # V1 Table 13: 1.2B, 6.8M
    ("1.0-SSDLite-MobileNetV2-320", 80, 788_914_000, 4_286_000),  # V2 Table 6: 0.8B, 4.3M
    ("1.0-SSDLite-MobileNet-320", 80, 1_309_000_000, 5_063_000),  # V2 Table 6: 1.3B, 5.1M
])
def test_detector_cost_reproduces_the_papers(name: str, classes: int, madds: int, params: int) -> None:
    p = mobilenets.profile(name, num_classes=classes)
    assert p.madds == pytest.approx(madds, rel=1e-3) and p.params == pytest.approx(params, rel=1e-3)
    assert set(p.by_part) == {"backbone", "extras", "heads"}
    assert sum(m for m, _ in p.by_part.values()) == p.madds


@pytest.mark.parametrize("name", ["0.5-SSD-MobileNet-128", "0.35-SSDLite-MobileNetV2-96", "1.0-SSD-MobileNetV2-160",
                                  "0.5-SSDLite-MobileNetV2-96-os8", "0.5-SSD-MobileNet-128-os16",
                                  "0.5-SSDLite-MobileNetV2-96-p3", "0.5-SSD-MobileNet-128-os16-p3",
                                  "0.5-SSDLite-MobileNetV2-96-p2", "0.5-SSD-MobileNet-128-p2"])
def test_flop_counter_matches_detector_cost_model(name: str) -> None:
    model = mobilenets.create_model(name, num_classes=7).eval()
    res = model.config.resolution
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.randn(1, 3, res, res))
    p = mobilenets.profile(model)
    assert fc.get_total_flops() == 2 * p.madds
    assert sum(t.numel() for t in model.parameters()) == p.trainable_params


def test_detector_spec_follows_the_papers() -> None:
    v1 = SSD(parse_detector_name("0.75-SSD-MobileNet-300"))
    assert [(m.source, m.channels, m.stride) for m in v1.arch.maps] == [
        ("blocks.10", 384, 16), ("blocks.12", 768, 32), ("extras.0", 384, 64), ("extras.1", 192, 128),
        ("extras.2", 192, 256), ("extras.3", 96, 512)]
    assert v1.arch.grid_sizes((300, 300)) == [(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    assert len(v1.anchors((300, 300))) == 1917
    lite = SSD(parse_detector_name("1.0-SSDLite-MobileNetV2-320"))
    assert [(m.source, m.channels) for m in lite.arch.maps[:2]] == [("blocks.13.expand", 576), ("head", 1280)]
    keys = lite.state_dict()
    assert {"heads.0.box.depthwise.conv.weight", "heads.0.box.pointwise.conv.bias", "extras.0.reduce.conv.weight",
            "extras.0.depthwise.bn.running_var", "backbone.blocks.13.expand.conv.weight"} <= set(keys)
    with torch.no_grad():
        codes, logits = lite(torch.randn(2, 3, 320, 320))
    assert codes.shape == (2, 2034, 4) and logits.shape == (2, 2034, 91)
    assert mobilenets.parse_name("1.0-MobileNet-224").name == "1.0-MobileNet-224"  # classifier names unchanged
    atrous = SSD(parse_detector_name("0.5-SSDLite-MobileNetV2-96-os8"))  # both backbone maps at stride 8
    assert atrous.config.name == "0.5-SSDLite-MobileNetV2-96-os8" and atrous.config.backbone.output_stride == 8
    assert [m.stride for m in atrous.arch.maps] == [8, 8, 16, 32, 64, 128]
    assert atrous.arch.grid_sizes((96, 96)) == [(12, 12), (12, 12), (6, 6), (3, 3), (2, 2), (1, 1)]
    assert [f.shape[-2:] for f in atrous.eval().feature_maps(torch.randn(1, 3, 96, 96))] == [
        (12, 12), (12, 12), (6, 6), (3, 3), (2, 2), (1, 1)]
    assert parse_detector_name("0.5-SSD-MobileNet-128-os16").name == "0.5-SSD-MobileNet-128-os16"
    with pytest.raises(ValueError, match="output_stride"):
        parse_detector_name("0.5-SSD-MobileNet-128-os4")


def test_p3_adds_a_stride_8_map_with_small_anchors() -> None:
    """``-p3``: a third backbone map at stride 8 before TF's two (V2: the expansion output of the first
    stride-16 block, TF's ``layer_7/expansion_output``; V1: ``Conv2d_5_pointwise``), smaller anchors,
    and the extras still chained from the last backbone map."""
    from mobilenets.tasks import config_from_dict, config_to_dict, parse_model_name
    from mobilenets.tasks.detection.spec import P3_ANCHORS

    lite = SSD(parse_detector_name("1.0-SSDLite-MobileNetV2-320-p3", num_classes=3)).eval()
    assert lite.config.name == "1.0-SSDLite-MobileNetV2-320-p3" and lite.config.min_level == 3
    assert lite.config.anchors == P3_ANCHORS
    assert [(m.source, m.channels, m.stride) for m in lite.arch.maps[:4]] == [
        ("blocks.6.expand", 192, 8), ("blocks.13.expand", 576, 16), ("head", 1280, 32), ("extras.0", 512, 64)]
    grids = [(40, 40), (20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    assert lite.arch.grid_sizes((320, 320)) == grids
    with torch.no_grad():
        maps = lite.feature_maps(torch.randn(1, 3, 320, 320))
        codes, logits = lite(torch.randn(1, 3, 320, 320))
    assert [tuple(f.shape[-2:]) for f in maps] == grids
    # FPN's top-down path: a 1x1 from the stride-16 map, started at zero (the plain stride-8 map)
    assert {"fuse.conv.weight", "fuse.bn.weight"} <= set(lite.state_dict())
    assert lite.fuse is not None and lite.fuse.conv.weight.shape == (192, 576, 1, 1)
    with torch.no_grad():
        x = torch.randn(1, 3, 320, 320)
        plain = lite.feature_maps(x)[0]
        lite.fuse.bn.weight.fill_(1.0)
        assert torch.allclose(plain, lite.backbone.blocks[6].forward_expanded(
            lite.backbone.blocks[:6](lite.backbone.stem(x)))[1])
        assert not torch.allclose(lite.feature_maps(x)[0], plain)
    anchors = 40 * 40 * 3 + 6 * (20 * 20 + 10 * 10 + 5 * 5 + 3 * 3 + 2 * 2 + 1)  # only the lowest map is reduced
    assert codes.shape == (1, anchors, 4) and logits.shape == (1, anchors, 4)
    assert lite.config.anchors.box_specs(7)[0] == [(0.05, 1.0), (0.1, 2.0), (0.1, 0.5)]
    v1 = SSD(parse_detector_name("0.5-SSD-MobileNet-160-p3"))
    assert [(m.source, m.stride) for m in v1.arch.backbone_maps] == [
        ("blocks.4", 8), ("blocks.10", 16), ("blocks.12", 32)]
    # the config round-trips through its record (saved weights keep it), and options keep their meaning
    cfg = parse_model_name("0.5-SSD-MobileNet-160-os16-p3")
    assert cfg.name == "0.5-SSD-MobileNet-160-os16-p3" and config_from_dict(config_to_dict(cfg)) == cfg
    assert parse_detector_name("1.0-SSDLite-MobileNetV2-320-p3", anchors=AnchorConfig()).anchors == AnchorConfig()
    with pytest.raises(ValueError, match="-os8 or -p2/-p3"):
        parse_detector_name("0.5-SSD-MobileNet-128-os8-p3")
    with pytest.raises(ValueError, match="min_level"):
        parse_detector_name("0.5-SSD-MobileNet-128", min_level=5)
    with pytest.raises(ValueError, match="SSD-MobileNet-300"):
        mobilenets.create_model("1.0-SSDX-MobileNet-300")


def test_p2_adds_a_stride_4_map_that_the_top_down_path_reaches_through_the_stride_8_one() -> None:
    """``-p2``: a stride-4 map before -p3's (V2: ``blocks.3.expand``, V1: ``blocks.2``) with its own
    small boxes; ``fuse`` still brings stride 16 to stride 8, then ``fuse_p2`` brings that sum to stride 4,
    each started at zero. The finest boxes survive the config's record (saved weights rebuild it)."""
    from mobilenets.tasks import config_from_dict, config_to_dict, parse_model_name
    from mobilenets.tasks.detection.spec import P2_ANCHORS, P3_ANCHORS

    lite = SSD(parse_detector_name("1.0-SSDLite-MobileNetV2-320-p2", num_classes=3)).eval()
    assert lite.config.name == "1.0-SSDLite-MobileNetV2-320-p2" and lite.config.min_level == 2
    assert [(m.source, m.channels, m.stride) for m in lite.arch.backbone_maps] == [
        ("blocks.3.expand", 144, 4), ("blocks.6.expand", 192, 8), ("blocks.13.expand", 576, 16), ("head", 1280, 32)]
    grids = [(80, 80), (40, 40), (20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    assert lite.arch.grid_sizes((320, 320)) == grids
    assert lite.fuse is not None and lite.fuse.conv.weight.shape == (192, 576, 1, 1)
    assert lite.fuse_p2 is not None and lite.fuse_p2.conv.weight.shape == (144, 192, 1, 1)
    assert {"fuse.conv.weight", "fuse_p2.conv.weight", "fuse_p2.bn.weight"} <= set(lite.state_dict())
    x = torch.randn(1, 3, 320, 320)
    with torch.no_grad():
        maps = lite.feature_maps(x)
        b = lite.backbone
        p2 = b.blocks[3].forward_expanded(b.blocks[:3](b.stem(x)))[1]
        assert [tuple(f.shape[-2:]) for f in maps] == grids and torch.allclose(maps[0], p2)  # sums start at zero
        lite.fuse.bn.weight.fill_(1.0)  # the stride-8 map changes, and the stride-4 one only through fuse_p2
        assert not torch.allclose(lite.feature_maps(x)[1], maps[1]) and torch.allclose(lite.feature_maps(x)[0], p2)
        lite.fuse_p2.bn.weight.fill_(1.0)
        assert not torch.allclose(lite.feature_maps(x)[0], p2)
        codes, _ = lite(x)
    specs = lite.config.anchors.box_specs(8)
    assert specs[0] == [(0.025, 1.0), (0.04, 0.5)] and specs[1:] == P3_ANCHORS.box_specs(7)
    assert codes.shape[1] == 80 * 80 * 2 + 40 * 40 * 3 + 6 * (20 * 20 + 10 * 10 + 5 * 5 + 3 * 3 + 2 * 2 + 1)
    assert [(m.source, m.stride) for m in SSD(parse_detector_name("0.5-SSD-MobileNet-160-p2")).arch.backbone_maps] == [
        ("blocks.2", 4), ("blocks.4", 8), ("blocks.10", 16), ("blocks.12", 32)]
    cfg = parse_model_name("1.0-SSDLite-MobileNetV2-320-p2")
    assert cfg.anchors == P2_ANCHORS and config_from_dict(json.loads(json.dumps(config_to_dict(cfg)))) == cfg
    with pytest.raises(ValueError, match="-os8 or -p2/-p3"):
        parse_detector_name("0.5-SSD-MobileNet-128-os8-p2")


def test_anchor_generator_layers() -> None:
    specs = AnchorConfig().box_specs(6)
    assert specs[0] == [(0.1, 1.0), (0.2, 2.0), (0.2, 0.5)]  # the reduced lowest layer
    assert [len(s) for s in specs] == [3, 6, 6, 6, 6, 6]
    assert specs[5][-1][0] == pytest.approx((0.95 * 1.0) ** 0.5)  # interpolated with the scale 1.0
    a = generate_anchors(AnchorConfig(), [(2, 3)])
    assert a.shape == (18, 4) and a[0, :2].tolist() == pytest.approx([0.25, 1 / 6])  # row, column, box order


def test_box_coding_round_trips() -> None:
    anchors = generate_anchors(AnchorConfig(), [(4, 4), (2, 2)])
    g = torch.Generator().manual_seed(0)
    boxes = torch.rand(len(anchors), 2, generator=g) * 0.5
    boxes = torch.cat([boxes, boxes + 0.1 + torch.rand(len(anchors), 2, generator=g) * 0.4], 1)
    scales = (10.0, 10.0, 5.0, 5.0)
    torch.testing.assert_close(decode(encode(boxes, anchors, scales), anchors, scales), boxes, atol=1e-5, rtol=1e-5)


def test_matching_and_hard_negatives() -> None:
    anchors = generate_anchors(AnchorConfig(), [(6, 6), (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)])
    gt = torch.tensor([[0.1, 0.1, 0.2, 0.3], [0.5, 0.5, 0.9, 0.95]])
    best_gt, pos = match_anchors(gt, anchors_xyxy(anchors))
    iou = box_iou(gt, anchors_xyxy(anchors))
    assert pos[iou.argmax(1)].all()  # every box claims its best anchor, whatever the IoU
    assert (pos == ((iou.max(0).values >= 0.5) | torch.isin(torch.arange(len(anchors)), iou.argmax(1)))).all()
    assert (best_gt[iou.argmax(1)] == torch.arange(2)).all()
    codes = torch.zeros(1, len(anchors), 4, requires_grad=True)
    logits = torch.zeros(1, len(anchors), 4, requires_grad=True)
    target = {"boxes": gt * 96, "labels": torch.tensor([1, 3]), "ignore": torch.tensor([False, False])}
    loss, stats = ssd_loss(codes, logits, [target], anchors, (96, 96), (10.0, 10.0, 5.0, 5.0))
    loss.backward()
    used = (logits.grad[0].abs().sum(1) > 0).sum()
    assert stats["positives"] == int(pos.sum()) and used == 4 * int(pos.sum())  # 3 negatives per positive


def test_atss_gives_a_small_box_the_anchors_that_fit_it_and_a_large_one_every_anchor_at_half_iou() -> None:
    xy = anchors_xyxy(mobilenets.create_model("1.0-SSDLite-MobileNetV2-320-p3", num_classes=3).anchors((320, 320)))
    small, large = [0.4, 0.4, 0.44, 0.45], [0.2, 0.25, 0.7, 0.8]  # a 13x16 px face at 320 px; a raccoon
    gt = torch.tensor([small, large])
    iou = box_iou(gt, xy)
    argmax_gt, argmax_pos = match_anchors(gt, xy, matcher="argmax")
    gt_index, pos = match_anchors(gt, xy, matcher="atss")
    assert int((argmax_pos & (argmax_gt == 0)).sum()) == 1  # argmax: the small box's best anchor only
    mine = pos & (gt_index == 0)
    assert int(mine.sum()) > 1 and mine[iou[0].argmax()]
    centres = (xy[:, :2] + xy[:, 2:]) / 2
    inside = ((centres > gt[0, :2]) & (centres < gt[0, 2:])).all(1)
    top = iou[0].topk(27).values
    limit = (top.mean() + top.std()).clamp(max=0.5)
    assert (inside[mine] | (iou[0, mine] >= 0.5)).all() and (iou[0, mine] >= limit).all()
    assert (pos[iou[1] >= 0.5]).all() and (gt_index[(iou[1] >= 0.5) & (iou[0] < 0.5)] == 1).all()  # TF's positives kept
    assert match_anchors(gt[:0], xy, matcher="atss")[1].sum() == 0


def test_focal_loss_weighs_every_anchor_and_leaves_the_background_output_alone() -> None:
    from torchvision.ops import sigmoid_focal_loss

    anchors = generate_anchors(AnchorConfig(), [(6, 6), (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)])
    gt = torch.tensor([[0.1, 0.1, 0.2, 0.3], [0.5, 0.5, 0.9, 0.95]])
    target = {"boxes": gt * 96, "labels": torch.tensor([1, 3]), "ignore": torch.tensor([False, True])}
    logits = torch.randn(1, len(anchors), 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    codes = torch.zeros(1, len(anchors), 4)
    loss, stats = ssd_loss(codes, logits, [target], anchors, (96, 96), (10.0, 10.0, 5.0, 5.0), cls_loss="focal")
    loss.backward()
    best_gt, pos = match_anchors(gt, anchors_xyxy(anchors))
    ignored = pos & (best_gt == 1)  # matched to the ignored box
    pos &= ~ignored
    onehot = torch.zeros(len(anchors), 3)
    onehot[pos, 0] = 1.0  # label 1 -> the first object class
    expected = sigmoid_focal_loss(logits[0, :, 1:].detach(), onehot, reduction="none")[~ignored].sum() / pos.sum()
    assert stats["positives"] == int(pos.sum()) and torch.isclose(stats["cls"], expected)
    grad = logits.grad[0]
    assert (grad[:, 0] == 0).all() and (grad[~ignored, 1:] != 0).all() and (grad[ignored] == 0).all()


def test_giou_loss_scores_the_decoded_boxes_of_the_positives() -> None:
    """``box_loss="giou"``: GIOU_WEIGHT x GIoU loss of each positive's decoded box, per positive; zero for
    the boxes themselves; only the positives' codes get a gradient. TF's smooth L1 is zero there too."""
    from torchvision.ops import generalized_box_iou_loss

    from mobilenets.tasks.detection.boxes import decode, encode
    from mobilenets.tasks.detection.loss import GIOU_WEIGHT

    anchors = generate_anchors(AnchorConfig(), [(6, 6), (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)])
    gt = torch.tensor([[0.1, 0.1, 0.2, 0.3], [0.5, 0.5, 0.9, 0.95]])
    target = {"boxes": gt * 96, "labels": torch.tensor([1, 3]), "ignore": torch.tensor([False, False])}
    scales = (10.0, 10.0, 5.0, 5.0)
    codes = (0.5 * torch.randn(1, len(anchors), 4, generator=torch.Generator().manual_seed(0))).requires_grad_()
    logits = torch.zeros(1, len(anchors), 4)
    _loss, stats = ssd_loss(codes, logits, [target], anchors, (96, 96), scales, cls_loss="focal", box_loss="giou")
    stats["loc"].backward()
    best_gt, pos = match_anchors(gt, anchors_xyxy(anchors))
    expected = generalized_box_iou_loss(decode(codes[0, pos].detach(), anchors[pos], scales), gt[best_gt[pos]])
    assert torch.isclose(stats["loc"], GIOU_WEIGHT * expected.sum() / pos.sum())
    assert (codes.grad[0, pos].abs().sum(1) > 0).all() and (codes.grad[0, ~pos] == 0).all()
    exact = encode(gt[best_gt], anchors, scales)[None]  # every anchor predicting its box exactly
    for box_loss in ("giou", "smooth_l1"):
        loc = ssd_loss(exact, logits, [target], anchors, (96, 96), scales, box_loss=box_loss)[1]["loc"]
        assert float(loc) < 1e-5


def test_detectors_train_with_atss_focal_and_giou_losses_and_record_them() -> None:
    from mobilenets.tasks import config_from_dict, config_to_dict

    cfg = parse_detector_name("1.0-SSDLite-MobileNetV2-320-p3")
    assert cfg.matcher == "atss" and cfg.cls_loss == "focal" and cfg.box_loss == "giou"
    assert cfg.iou_threshold == 0.5  # our NMS; a Google file keeps its own 0.6 (test_google_detector_loads...)
    tf = config_from_dict(config_to_dict(cfg.replace(matcher="argmax", cls_loss="hard_negatives",
                                                     box_loss="smooth_l1")))
    assert tf.matcher == "argmax" and tf.cls_loss == "hard_negatives" and tf.box_loss == "smooth_l1"
    record = config_to_dict(cfg)
    del record["box_loss"]  # the record of weights saved before the GIoU loss
    assert config_from_dict(record).box_loss == "giou"
    with pytest.raises(ValueError, match="valid: atss, argmax"):
        cfg.replace(matcher="hungarian")
    with pytest.raises(ValueError, match="valid: focal, hard_negatives"):
        cfg.replace(cls_loss="softmax")
    with pytest.raises(ValueError, match="valid: giou, smooth_l1"):
        cfg.replace(box_loss="l1")


# ------------------------------------------------------------------------------ Google's detector


def test_google_detector_loads_with_its_options(google_ssd: SSD, refdata: Path) -> None:
    c = google_ssd.config
    assert c.name == "0.75-SSD-MobileNet-300" and c.num_classes == 90  # the file's name says 1.0: it is 0.75
    assert c.nms == "class_agnostic" and c.max_detections == 10 and c.iou_threshold == pytest.approx(0.6)
    assert c.box_scales == (10.0, 10.0, 5.0, 5.0) and c.backbone.padding == "tf_same"
    file_anchors = read_tflite(refdata / "models" / DETECTOR).anchors
    step = 0.006453060545027256  # the anchors' uint8 quantization scale
    ours = google_ssd.anchors((300, 300)).double().numpy()
    assert np.abs(file_anchors - ours).max() <= step / 2 + 1e-6
    labels = (refdata / "labels" / "coco_ssd_labelmap.txt").read_text().splitlines()
    names = google_ssd.weights_meta["classes"]
    def norm(name: str) -> str:  # torchvision writes "tv" where Google's label map writes "T.V."
        return "".join(ch for ch in name.lower() if ch.isalnum())

    assert all(norm(names[i - 1]) == norm(labels[i]) for i in range(1, 91) if labels[i] != "???")


def _squash(path: Path, size: int = 300) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR))


@pytest.mark.parametrize("emulate", [True, False])
def test_parity_with_litert_on_every_photo(refdata: Path, emulate: bool) -> None:
    """Every LiteRT detection scoring >= 0.3 is ours too (same class, box IoU, score). With the file's
    uint8 activation grids emulated, all of them closely (measured: IoU >= 0.963, score within 0.024)
    and the top 10 scores agree; the plain float port finds them all but moves a few boxes (measured:
    58 of 62 within IoU 0.9 and score 0.05, the rest IoU >= 0.51, score within 0.2)."""
    path = refdata / "models" / DETECTOR
    ssd = mobilenets.load_model(path, emulate_quantization=emulate, max_detections=100)  # no cut-off at the tail
    pipeline = DetectionPipeline(ssd, (300, 300)).eval()
    close, checked = 0, 0
    for name in PHOTOS:
        u8 = _squash(refdata / "images" / name)
        boxes, classes, scores, n = run_litert_outputs(path, u8)
        x = torch.from_numpy((u8.astype(np.float32) - 128) / 128).permute(2, 0, 1)[None]  # the file's uint8 input
        with torch.no_grad():
            ob, os_, ol, on = pipeline(x)
        ours = ob[0, : int(on[0])]
        if emulate:
            np.testing.assert_allclose(os_[0, :10].numpy(), scores, atol=0.03)
        for i in range(int(n)):
            if scores[i] < 0.3:
                continue
            ref = torch.tensor(boxes[i])[[1, 0, 3, 2]][None]  # LiteRT: ymin, xmin, ymax, xmax
            same = ol[0, : int(on[0])] == int(classes[i]) + 1
            iou = box_iou(ref, ours)[0] * same
            j = int(iou.argmax())
            dscore = abs(float(os_[0, j]) - scores[i])
            assert (iou[j] >= 0.95 and dscore <= 0.03) if emulate else (iou[j] >= 0.5 and dscore <= 0.2), (
                name, i, float(iou[j]), dscore)
            close += bool(iou[j] >= 0.9 and dscore <= 0.05)
            checked += 1
    assert checked == 62 and close >= (62 if emulate else 56)


def test_coral_detect_check(google_ssd: SSD, refdata: Path) -> None:
    """pycoral tests/detect_test.py: aspect-preserving resize into 300x300 (padded bottom/right);
    the first detection on cat.bmp is a cat, score > 0.7, box IoU >= 0.8 with Coral's."""
    google_ssd.weights_meta["preprocessing"] = {**google_ssd.weights_meta["preprocessing"], "resize": "pad"}
    try:
        res = mobilenets.predict(google_ssd, [refdata / "images" / "cat.bmp"], score_threshold=0.0)
    finally:
        google_ssd.weights_meta["preprocessing"]["resize"] = "squash"
    first = res.predictions[0].detections[0]
    iou = float(box_iou(torch.tensor([first["box"]]), torch.tensor([[29.0, 39.0, 377.0, 347.0]]))[0, 0])
    assert first["label"] == "cat" and first["score"] > 0.7 and iou >= 0.8, (first, iou)


def test_predict_json_and_pictures(google_ssd: SSD, refdata: Path, tmp_path: Path) -> None:
    from mobilenets.cli import main

    path = refdata / "models" / DETECTOR
    r = subprocess.run([sys.executable, "-m", "mobilenets", "predict", "--weights", str(path),
                        str(refdata / "images" / "cat.bmp"), str(tmp_path / "missing.jpg"), "--json",
                        "--save-vis", str(tmp_path / "vis")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    (pred,) = out["predictions"]
    assert pred["path"].endswith("cat.bmp") and "missing.jpg" in out["errors"][0]
    first = pred["detections"][0]
    assert set(first) == {"label", "class_id", "score", "box"} and first["label"] == "cat"
    w, h = Image.open(refdata / "images" / "cat.bmp").size
    assert all(d["score"] >= 0.3 for d in pred["detections"])
    assert 0 <= first["box"][0] < first["box"][2] <= w + 2 and 0 <= first["box"][1] < first["box"][3] <= h + 2
    vis = Image.open(tmp_path / "vis" / "cat.png")
    assert vis.size == (w, h)
    assert main(["predict", "--weights", str(path), str(refdata / "images" / "cat.bmp"), "--score-threshold",
                 "0.9"]) == 0


def test_predict_emulating_integer_kernels_is_litert(refdata: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``predict --emulate-quantization`` runs the uint8 file as the device does: LiteRT's detections on
    the same photo (same preprocessing), each within IoU 0.95 and 0.03 in score."""
    from mobilenets.cli import main

    args = ["predict", "--weights", str(refdata / "models" / DETECTOR), str(refdata / "images" / "cat.bmp"), "--json"]
    found = {}
    for extra in (["--emulate-quantization"], ["--runtime", "litert"]):
        assert main(args + extra) == 0
        found[extra[0]] = json.loads(capsys.readouterr().out)["predictions"][0]["detections"]
    ours, litert = found["--emulate-quantization"], found["--runtime"]
    assert len(ours) == len(litert) >= 1
    for a, b in zip(ours, litert):
        iou = float(box_iou(torch.tensor([a["box"]]), torch.tensor([b["box"]]))[0, 0])
        assert a["label"] == b["label"] and abs(a["score"] - b["score"]) <= 0.03 and iou >= 0.95, (a, b)
    assert main(args + ["--emulate-quantization", "--runtime", "onnxruntime"]) != 0
    assert "runs in torch" in capsys.readouterr().err


@pytest.mark.slow  # ~20 s: a COCO SSD through the ONNX exporter; the TFLite and predict tests export detectors
def test_onnx_export_keeps_the_detections(google_ssd: SSD, refdata: Path, tmp_path: Path) -> None:
    """Box decoding and NMS inside the ONNX graph; ONNX Runtime gives PyTorch's detections on photos."""
    import onnx

    from mobilenets.deploy.export import export
    from mobilenets.deploy.sessions import OnnxSession

    res = export(google_ssd, tmp_path / "ssd.onnx", "onnx")
    assert res.ok
    graph = onnx.load(str(tmp_path / "ssd.onnx")).graph
    assert [o.name for o in graph.output] == ["boxes", "scores", "labels", "num_detections"]
    assert "NonMaxSuppression" in {n.op_type for n in graph.node}
    session = OnnxSession(tmp_path / "ssd.onnx")
    pipeline = DetectionPipeline(google_ssd, (300, 300)).eval()
    x = torch.stack([torch.from_numpy((_squash(refdata / "images" / n).astype(np.float32) - 127.5) / 127.5)
                     .permute(2, 0, 1) for n in ("cat.bmp", "grace_hopper.bmp", "parrot.jpg")])
    with torch.no_grad():
        ref = [t.numpy() for t in pipeline(x)]
    out = session.run(x.numpy())
    np.testing.assert_array_equal(out[3], ref[3])
    np.testing.assert_array_equal(out[2], ref[2])
    np.testing.assert_allclose(out[1], ref[1], atol=1e-4)
    np.testing.assert_allclose(out[0], ref[0], atol=1e-4)
    pred = mobilenets.predict(tmp_path / "ssd.onnx", [refdata / "images" / "cat.bmp"], runtime="onnxruntime")
    assert pred.predictions[0].detections[0]["label"] == "cat"


@pytest.mark.slow  # ~100 s: calibration and bias correction of a 300 px detector
def test_int8_onnx_detector_keeps_its_detections(google_ssd: SSD, refdata: Path, tmp_path: Path) -> None:
    """onnx-int8 of a detector: convolutions int8 (calibrated on photos), decoding and NMS fp32; the
    best detection survives on held-out crops, and the cat is still a cat."""
    import onnx

    from mobilenets.deploy.export import export

    res = export(google_ssd, tmp_path / "ssd8.onnx", "onnx-int8", calibrate=refdata / "images")
    ops = {n.op_type for n in onnx.load(str(tmp_path / "ssd8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "NonMaxSuppression"} <= ops
    assert res.details["agreement_of"] == "best detection" and res.agreement >= 0.6, res.summary()
    pred = mobilenets.predict(tmp_path / "ssd8.onnx", [refdata / "images" / "cat.bmp"], runtime="onnxruntime")
    first = pred.predictions[0].detections[0]
    assert first["label"] == "cat" and first["score"] > 0.6


def test_bench_measures_a_detector() -> None:
    r = subprocess.run([sys.executable, "-m", "mobilenets", "bench", "0.25-SSDLite-MobileNet-96", "--train",
                        "--batch-size", "4", "--warmup", "1", "--iters", "3", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["model"] == "0.25-SSDLite-MobileNet-96" and out["latency_ms"] > 0 and out["train_img_per_s"] > 0
    assert out["madds"] == mobilenets.profile("0.25-SSDLite-MobileNet-96").madds


# ------------------------------------------------------------------------------ data, training, evaluation


def make_voc_folder(root: Path) -> Path:
    rng = np.random.default_rng(1)
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True)
    ids = [f"2008_{i:06d}" for i in range(30)]
    for stem in ids:
        img, boxes, names = shapes_image(rng, (110, 90))
        img.save(root / "JPEGImages" / f"{stem}.jpg")
        ann = ET.Element("annotation")
        ET.SubElement(ann, "filename").text = f"{stem}.jpg"
        for b, name in zip(boxes, names):
            obj = ET.SubElement(ann, "object")
            ET.SubElement(obj, "name").text = "car" if name == "red" else "bus"
            ET.SubElement(obj, "difficult").text = "0"
            bb = ET.SubElement(obj, "bndbox")
            for k, v in zip(("xmin", "ymin", "xmax", "ymax"), (b[0] + 1, b[1] + 1, b[2], b[3])):
                ET.SubElement(bb, k).text = str(v)
        ET.ElementTree(ann).write(root / "Annotations" / f"{stem}.xml")
    (root / "ImageSets" / "Main" / "train.txt").write_text("\n".join(ids[:22]) + "\n")
    (root / "ImageSets" / "Main" / "val.txt").write_text("\n".join(ids[22:]) + "\n")
    return root


@pytest.mark.parametrize("layout", ["coco", "voc"])
def test_train_and_evaluate_on_a_folder(layout: str, tmp_path: Path) -> None:
    """Trained on a folder, the recorded mAP is what ``evaluate`` (fp32) gives, even when trained in
    bf16 (the COCO case; emulated with a warning on CPUs without native bf16)."""
    data = make_coco_folder(tmp_path / "coco") if layout == "coco" else make_voc_folder(tmp_path / "voc")
    amp = "bf16" if layout == "coco" else "off"
    res = mobilenets.train(mobilenets.TrainConfig(data=str(data), epochs=2, out=str(tmp_path / "run"), amp=amp,
                                                  **DET_FAST))
    assert res.task == "detection" and res.map is not None and 0 <= res.map50 <= 1
    assert [h["epoch"] for h in res.history] == [1, 2] and {"val_map", "val_map50", "val_loss"} <= set(res.history[0])
    model = mobilenets.load_model(res.weights)
    assert model.weights_meta["classes"] == (["red", "blue"] if layout == "coco" else ["bus", "car"])
    ev = mobilenets.evaluate(res.weights, progress=False)
    assert ev.count == 8 and ev.map50 == pytest.approx(res.map50, abs=1e-9)
    r = subprocess.run([sys.executable, "-m", "mobilenets", "eval", "--weights", res.weights, "--json", "--out",
                        str(tmp_path / "ev")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert {"map", "map50", "map75", "map_small", "map_medium", "map_large"} <= set(json.loads(r.stdout))
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert report["confusion_labels"][-1] == "background" and len(report["confusion"]) == 3
    assert sum(v["support"] for v in report["precision_recall"].values()) == sum(map(sum, report["confusion"][:2]))
    assert (tmp_path / "ev" / "confusion.png").stat().st_size > 1000


def test_box_confusion_counts_what_is_mistaken_for_what() -> None:
    """Boxes and detections matched one to one by IoU whatever the classes: a right class on the diagonal,
    a wrong one off it, a missed box in the background column, a detection of nothing in the background
    row; low scores and detections on crowd boxes are not counted."""
    from mobilenets.tasks.detection.metrics import CocoMeter, box_confusion

    def g(i: int, cat: int, box: list[float], crowd: int = 0) -> dict:
        return {"image_id": i, "category_id": cat, "bbox": box, "iscrowd": crowd}

    def d(i: int, cat: int, box: list[float], score: float) -> dict:
        return {"image_id": i, "category_id": cat, "bbox": box, "score": score}

    gt = [g(1, 1, [0, 0, 10, 10]), g(1, 2, [20, 0, 10, 10]), g(1, 2, [40, 0, 10, 10]), g(1, 1, [60, 0, 10, 10], 1),
          g(2, 1, [0, 0, 10, 10])]
    dt = [d(1, 1, [0, 0, 10, 10], 0.9),   # right
          d(1, 2, [1, 0, 10, 10], 0.8),   # a second detection of the same box: nothing there any more
          d(1, 1, [20, 0, 10, 10], 0.8),  # class 2 taken for class 1
          d(1, 2, [80, 0, 10, 10], 0.7),  # nothing there
          d(1, 1, [40, 0, 10, 10], 0.1),  # below the score: box 3 is missed
          d(1, 1, [60, 0, 10, 10], 0.9),  # on a crowd box: not counted
          d(2, 1, [0, 0, 10, 11], 0.5)]   # right (IoU 0.91)
    m = box_confusion(gt, dt, 2)
    assert m.tolist() == [[2, 0, 0], [1, 0, 1], [0, 2, 0]]
    meter = CocoMeter(["a", "b"])
    meter.images, meter.gt, meter.dt = [{"id": 1, "height": 20, "width": 100}, {"id": 2, "height": 20, "width": 20}], \
        [{**x, "id": k + 1, "area": 100.0} for k, x in enumerate(gt)], dt
    res = meter.result()
    assert torch.equal(res.box_confusion, m)
    assert res.precision_recall == {"a": {"precision": pytest.approx(200 / 3), "recall": 100.0, "support": 2},
                                    "b": {"precision": 0.0, "recall": 0.0, "support": 2}}
    assert "P@0.3 %" in res.describe() and res.to_dict()["confusion_labels"] == ["a", "b", "background"]


def test_detector_starts_from_a_classifier(tmp_path: Path) -> None:
    """``--init`` with a classifier's weights: they become the backbone; ``--freeze-backbone`` keeps them."""
    from mobilenets.weights import save_weights

    classifier = mobilenets.create_model("0.25-MobileNet-96", num_classes=5)
    save_weights(classifier, tmp_path / "cls.safetensors")
    data = make_coco_folder(tmp_path / "coco", {"train2017": 8, "val2017": 4})
    res = mobilenets.train(mobilenets.TrainConfig(data=str(data), epochs=1, out=str(tmp_path / "run"),
                                                  init=str(tmp_path / "cls.safetensors"), freeze_backbone=True,
                                                  **DET_FAST))
    after = mobilenets.load_model(res.weights).state_dict()
    for key, value in classifier.state_dict().items():
        if not key.startswith("classifier."):
            assert torch.equal(after[f"backbone.{key}"], value), key


def test_digit_canvases_box_the_digits() -> None:
    """The embedded detection data: up to three 5-7x digits per canvas, each box tight around bright
    ink and nothing bright outside the boxes; fixed held-out canvases, fresh training ones per epoch."""
    from mobilenets.data.detection import digit_canvases

    det = digit_canvases()
    for i in range(30):
        img, t = det.val[i]
        bright = img.float().mean(0) > 110
        assert 1 <= len(t["boxes"]) <= 3 and set(t["labels"].tolist()) <= set(range(1, 11))
        inside = torch.zeros_like(bright)
        for x1, y1, x2, y2 in t["boxes"].long().tolist():
            assert 0 <= x1 < x2 <= 96 and 0 <= y1 < y2 <= 96 and y2 - y1 >= 30, (i, t["boxes"])  # 5-7x, not 2x
            rows, cols = bright[y1:y2, x1:x2].any(1).nonzero(), bright[y1:y2, x1:x2].any(0).nonzero()
            assert rows.max() - rows.min() + 1 >= 0.75 * (y2 - y1), i  # tight: the bright ink spans the box
            assert cols.max() - cols.min() + 1 >= 0.4 * (x2 - x1), i  # (a "1" is narrow)
            inside[y1:y2, x1:x2] = True
        assert not (bright & ~inside).any(), i
    assert torch.equal(det.val[3][0], det.val[3][0]) and det.classes == list(map(str, range(10)))
    first = det.train[0][0]
    det.train.set_epoch(1)
    assert not torch.equal(first, det.train[0][0])


def test_default_detection_training_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``train --task detection`` with nothing else: the embedded digit canvases (fewer here)."""
    from mobilenets.data import detection

    cfg = mobilenets.TrainConfig(task="detection", progress=False).resolved()
    assert cfg.model == "0.5-SSDLite-MobileNetV2-96-os8" and cfg.zero_init_residual
    canvases = detection.digit_canvases
    monkeypatch.setattr(detection, "digit_canvases",
                        lambda val_split, seed: canvases(val_split, seed, train_count=64))
    res = mobilenets.train(mobilenets.TrainConfig(task="detection", epochs=1, out=str(tmp_path / "run"),
                                                  progress=False))
    assert res.model == cfg.model and 0 <= res.map50 <= 1 and {"val_map", "val_map50"} <= set(res.history[0])
    model = mobilenets.load_model(res.weights)
    assert model.config.name == cfg.model and model.weights_meta["classes"] == list(map(str, range(10)))


def test_detection_data_layouts_and_errors(tmp_path: Path) -> None:
    from mobilenets.data import resolve_data
    from mobilenets.data.detection import load_detection_splits

    coco = load_detection_splits(resolve_data(make_coco_folder(tmp_path / "c"), task="detection"))
    _img, t = coco.train[0]
    assert coco.classes == ["red", "blue"] and set(t["labels"].tolist()) <= {1, 2} and t["boxes"].shape[1] == 4
    voc = load_detection_splits(resolve_data(make_voc_folder(tmp_path / "v"), task="detection"))
    assert voc.classes == ["bus", "car"] and len(voc.train) == 22 and len(voc.val) == 8  # both VOC classes: VOC order
    with pytest.raises(ValueError, match="not a detection dataset"):
        resolve_data(tmp_path, task="detection")
    with pytest.raises(ValueError, match="not a detection model"):
        mobilenets.TrainConfig(task="detection", model="0.5-MobileNetV2-32").resolved()


def test_detection_flags_are_refused_for_other_tasks() -> None:
    """An augmentation that only a detector's training reads is an error elsewhere, not ignored; its "off"
    value (what a saved configuration of another task holds, read back on --resume) is not."""
    with pytest.raises(ValueError, match=r"classification model, and --copy-paste only applies to detection"):
        mobilenets.TrainConfig(copy_paste=0.5).resolved()
    with pytest.raises(ValueError, match=r"segmentation model, and --zoom-out, --fit-anchors only apply to detection"):
        mobilenets.TrainConfig(task="segmentation", zoom_out=2.0, fit_anchors=True).resolved()
    off = mobilenets.TrainConfig(copy_paste=0.0, zoom_out=1.0, ssd_augment=False, fit_anchors=False).resolved()
    assert off.task == "classification" and off.copy_paste == 0
    assert mobilenets.TrainConfig(task="detection", zoom_out=2.0).resolved().zoom_out == 2.0
