"""Mobile DeepLabv3: the spec (output stride, Table 7), Google's Coral segmenters ported exactly
(parity with LiteRT, Coral's check), the data layouts, training, eval, predict and export."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import SEG_FAST, make_voc_segmentation_folder, shapes_with_masks
from litert_reference import run_litert_outputs
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

import mobilenets
from mobilenets.tasks.segmentation.metrics import ConfusionMeter
from mobilenets.tasks.segmentation.spec import parse_segmenter_name

# file: (width, LiteRT's Coral IoU on bird_segmentation)
SEGMENTERS = {"deeplabv3_mnv2_pascal_quant.tflite": (1.0, 0.958),
              "deeplabv3_mnv2_dm05_pascal_quant.tflite": (0.5, 0.924)}
PHOTOS = ("bird_segmentation.bmp", "burger.jpg", "cat.bmp", "cheetah.jpg", "elephant.jpg", "grace_hopper.bmp",
          "grace_hopper.jpg", "hot_dog.jpg", "multi_objects.jpg", "owl.jpg", "parrot.jpg", "sparrow.png")


# ------------------------------------------------------------------------------ spec and costs


def test_output_stride_turns_strides_into_dilation() -> None:
    """TF-slim's rule: once the output stride is reached, strides become 1 and multiply the dilation of
    the layers after them (the converted layer itself keeps the old rate)."""
    arch = mobilenets.create_model("1.0-MobileNetV2-224-os16", num_classes=0).arch
    dw = [(b.stride, b.layers[-2].dilation) for b in arch.blocks]
    assert dw[13] == (1, 1) and all(d == (1, 2) for d in dw[14:]) and dw[6] == (2, 1)
    arch8 = mobilenets.create_model("1.0-MobileNetV2-224-os8", num_classes=0).arch
    assert [b.layers[-2].dilation for b in arch8.blocks][6:] == [1] + [2] * 7 + [4] * 3
    assert arch8.features[-1].reduction == 8
    x = torch.randn(1, 3, 129, 129)
    for os_ in (8, 16, 32):
        m = mobilenets.create_model(f"0.35-MobileNet-129-os{os_}", num_classes=0, features_only=True).eval()
        assert m(x)[-1].shape[-1] == -(-129 // os_)
    with pytest.raises(ValueError, match="valid: 8, 16, 32"):
        mobilenets.create_model("1.0-MobileNetV2-224-os4")


@pytest.mark.parametrize(("name", "params"), [
    ("1.0-DeepLabV3-MobileNetV2-512", 2_113_557),  # Table 7: 2.11M
    ("1.0-DeepLabV3-MobileNetV2-512-aspp", 4_523_541),  # 4.52M
    ("1.0-DeepLabV3-MobileNet-512-aspp", 11_145_301),  # 11.15M
])
def test_table7_params_and_flop_counter(name: str, params: int) -> None:
    p = mobilenets.profile(name)
    assert p.trainable_params == params and set(p.by_part) == {"backbone", "aspp", "project", "classifier"}
    model = mobilenets.create_model(name.replace("-512", "-97")).eval()
    assert sum(t.numel() for t in model.parameters()) == params
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model.forward_logits(torch.randn(1, 3, 97, 97))
    pooling = model.arch.feature_channels * 7 * 7  # the image pooling's mean: adds, not multiply-adds
    assert fc.get_total_flops() == 2 * mobilenets.profile(model, input_size=97).madds or \
        abs(fc.get_total_flops() - 2 * mobilenets.profile(model, input_size=97).madds) <= 2 * pooling


def test_table7_madds_and_names() -> None:
    """The paper's on-device row (2.75B) is 2.741B at Google's 513 px. Its ASPP rows are reproduced when
    atrous convs are counted as TF computes them: on the space_to_batch grid (36x36 for a 33x33 map at
    rates 6/12/18; 72x72 for 65x65 at 12/24/36): 5.82B (paper 5.8B), 387.5B (387B) instead of 5.36B, 327.9B."""
    from mobilenets.analysis.paper_tables import paper_tables
    from mobilenets.models.tf_compat import space_to_batch_positions

    assert [space_to_batch_positions(33, 3, r) for r in (1, 2, 6, 12, 18)] == [33, 34, 36, 36, 36]
    assert [space_to_batch_positions(65, 3, r) for r in (12, 24, 36)] == [72, 72, 72]
    assert mobilenets.profile("1.0-DeepLabV3-MobileNetV2-513").madds / 1e9 == pytest.approx(2.741, abs=1e-3)
    aspp = {a: mobilenets.profile("1.0-DeepLabV3-MobileNetV2-513-aspp", atrous=a).madds for a in
            ("exact", "tf_space_to_batch")}
    assert aspp["tf_space_to_batch"] - aspp["exact"] == 3 * 320 * 256 * 9 * (36 * 36 - 33 * 33) + 3 * 960 * 9 * (
        34 * 34 - 33 * 33)  # the three atrous branches, and blocks 14-16's rate-2 depthwise convs
    table = next(t for t in paper_tables("v2") if t.id == "v2-table7")
    rows = {r.label: r for r in table.rows}
    assert rows["MNet V2*, OS 16"].cells["Params (M)"].match
    assert rows["MNet V2*, OS 16, ASPP"].match and rows["MNet V2*, OS 8, ASPP, MF"].match
    assert rows["MNet V2*, OS 8, MF"].cells["MAdds (B)"].computed == pytest.approx(152.5, abs=0.05)  # paper 152.6
    assert all(r.note for r in table.rows if not r.match)
    with pytest.raises(ValueError, match="valid: exact, tf_space_to_batch"):
        mobilenets.profile("1.0-DeepLabV3-MobileNetV2-513", atrous="tf")
    cfg = parse_segmenter_name("0.5-DeepLabV3-MobileNetV2-96-os8-aspp")
    assert cfg.name == "0.5-DeepLabV3-MobileNetV2-96-os8-aspp" and cfg.atrous_rates == (12, 24, 36)
    assert parse_segmenter_name("DeepLabV3-MobileNetV2").name == "1.0-DeepLabV3-MobileNetV2-513"
    with pytest.raises(ValueError, match="unknown segmenter option"):
        parse_segmenter_name("1.0-DeepLabV3-MobileNetV2-96", rates=3)


def test_state_dict_keys_are_readable() -> None:
    keys = set(mobilenets.create_model("0.5-DeepLabV3-MobileNetV2-96-aspp").state_dict())
    assert {"backbone.stem.conv.weight", "backbone.blocks.16.project.conv.weight", "aspp.pool.conv.weight",
            "aspp.conv.conv.weight", "aspp.atrous.2.bn.running_var", "project.conv.weight",
            "classifier.conv.bias"} <= keys
    assert not any(k.startswith("backbone.head") for k in keys)


def test_weights_round_trip_and_model_hint(tmp_path: Path) -> None:
    from mobilenets.weights import WeightsError

    model = mobilenets.create_model("0.25-DeepLabV3-MobileNetV2-64-os8", num_classes=5)
    mobilenets.save_weights(model, tmp_path / "s.safetensors")
    back = mobilenets.load_model(tmp_path / "s.safetensors", "0.25-DeepLabV3-MobileNetV2-128-os8")
    assert back.config.resolution == 128 and back.config.output_stride == 8 and back.num_classes == 5
    for (k, v), w in zip(model.state_dict().items(), back.state_dict().values()):
        assert torch.equal(v, w), k
    with pytest.raises(WeightsError, match="not 0.25-DeepLabV3-MobileNetV2-64-aspp"):
        mobilenets.load_model(tmp_path / "s.safetensors", "0.25-DeepLabV3-MobileNetV2-64-aspp")


# ------------------------------------------------------------------------------ Google's segmenters


@pytest.fixture(scope="module")
def google_segmenters(refdata: Path) -> dict[str, torch.nn.Module]:
    return {f: mobilenets.load_model(refdata / "models" / f) for f in SEGMENTERS}


def _input(path: Path, lanczos: bool = False) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB").resize((513, 513), Image.LANCZOS if lanczos else
                                                              Image.BILINEAR))


def _ours(model: torch.nn.Module, u8: np.ndarray) -> np.ndarray:
    x = torch.from_numpy((u8.astype(np.float32) - 128) / 128).permute(2, 0, 1)[None]  # the file's uint8 input
    with torch.no_grad():
        return model(x)[0].argmax(0).numpy()


def test_google_segmenters_load_as_our_models(google_segmenters: dict[str, torch.nn.Module]) -> None:
    for f, (alpha, _) in SEGMENTERS.items():
        m = google_segmenters[f]
        assert m.config.name == f"{alpha}-DeepLabV3-MobileNetV2-513" and m.config.output_stride == 16
        assert not m.config.aspp and m.num_classes == 21 and m.weights_meta["classes"][3] == "bird"
        assert m.config.align_corners  # read from the file's RESIZE_BILINEAR options
    # TF DeepLab rounds the narrow model's channels to multiples of 1: 0.5 x 24 = 12
    assert google_segmenters["deeplabv3_mnv2_dm05_pascal_quant.tflite"].config.backbone.width_divisor == 1


@pytest.mark.slow  # ~33 s: two files x every photo; test_coral_segment_check covers both files by default
def test_parity_with_litert_on_every_photo(refdata: Path) -> None:
    """Per-pixel class agreement with LiteRT on every photo, the file emulated (uint8 grids; convs,
    residual adds and the image-pooling branch's requantization as XNNPACK's integer kernels compute
    them, so the logits are bit-identical): >= 0.99 (measured >= 0.995; the rest is the upsampling of
    the uint8 logits, which we compute in float). The issue asks >= 0.98."""
    for f in SEGMENTERS:
        path = refdata / "models" / f
        model = mobilenets.load_model(path, emulate_quantization=True)
        for name in PHOTOS:
            u8 = _input(refdata / "images" / name)
            ref = torch.from_numpy(run_litert_outputs(path, u8)[0]).long()
            x = torch.from_numpy((u8.astype(np.float32) - 128) / 128).permute(2, 0, 1)[None]
            with torch.no_grad():
                agree = float((model(x)[0].argmax(0) == ref).float().mean())
            assert agree >= 0.99, (f, name, agree)


def test_coral_segment_check(google_segmenters: dict[str, torch.nn.Module], refdata: Path) -> None:
    """pycoral tests/segment_test.py: LANCZOS resize, array_iou with the mask > 0.90 for both widths
    (LiteRT: 0.958 and 0.924)."""
    mask = np.asarray(Image.open(refdata / "images" / "bird_segmentation_mask.bmp"))
    u8 = _input(refdata / "images" / "bird_segmentation.bmp", lanczos=True)
    for f, (_, litert) in SEGMENTERS.items():
        ours = _ours(google_segmenters[f], u8)
        equal = float((ours == mask).sum())
        iou = equal / (2 * mask.size - equal)
        assert iou > 0.90 and iou == pytest.approx(litert, abs=0.02), (f, iou)


def test_predict_json_and_pictures(refdata: Path, tmp_path: Path) -> None:
    path = refdata / "models" / "deeplabv3_mnv2_dm05_pascal_quant.tflite"
    r = subprocess.run([sys.executable, "-m", "mobilenets", "predict", "--weights", str(path),
                        str(refdata / "images" / "grace_hopper.jpg"), str(tmp_path / "missing.jpg"), "--json",
                        "--save-vis", str(tmp_path / "vis")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    (pred,) = out["predictions"]
    assert "missing.jpg" in out["errors"][0]
    assert pred["classes"][0]["label"] == "person" and pred["classes"][0]["fraction"] > 0.5
    assert sum(c["fraction"] for c in pred["classes"]) == pytest.approx(1.0, abs=1e-4)
    mask = np.asarray(Image.open(tmp_path / "vis" / "grace_hopper_mask.png"))
    photo = Image.open(refdata / "images" / "grace_hopper.jpg")
    assert mask.shape == (photo.height, photo.width) and set(np.unique(mask)) <= set(range(21))
    assert float((mask == 15).mean()) == pytest.approx(pred["classes"][0]["fraction"], abs=1e-4)
    overlay = Image.open(tmp_path / "vis" / "grace_hopper_overlay.png")
    assert overlay.size == photo.size


@pytest.mark.slow  # ~50 s: two exports of a 513 px-trained model, each checked in ONNX Runtime
def test_onnx_export_with_and_without_argmax(google_segmenters: dict[str, torch.nn.Module], refdata: Path,
                                             tmp_path: Path) -> None:
    from mobilenets.deploy.runtime_choice import OnnxSession

    model = google_segmenters["deeplabv3_mnv2_dm05_pascal_quant.tflite"]
    logits = mobilenets.export(model, tmp_path / "seg.onnx", input_size=129)
    classes = mobilenets.export(model, tmp_path / "seg_argmax.onnx", input_size=129, argmax=True)
    assert logits.ok and classes.ok and classes.max_abs_diff == 0
    u8 = np.asarray(Image.open(refdata / "images" / "cat.bmp").convert("RGB").resize((129, 129)))
    x = ((u8.astype(np.float32) - 128) / 128).transpose(2, 0, 1)[None]
    out = OnnxSession(tmp_path / "seg_argmax.onnx").run(x)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).argmax(1).numpy()
    assert out.shape == (1, 129, 129) and float((out == ref).mean()) > 0.999


@pytest.mark.slow  # a subprocess with a training step (~15 s): the default suite stays under 10 minutes
def test_bench_measures_a_segmenter() -> None:
    name = "0.25-DeepLabV3-MobileNetV2-64"
    r = subprocess.run([sys.executable, "-m", "mobilenets", "bench", name, "--train", "--batch-size", "4",
                        "--warmup", "1", "--iters", "3", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["latency_ms"] > 0 and out["train_img_per_s"] > 0 and out["madds"] == mobilenets.profile(name).madds


# ------------------------------------------------------------------------------ data, training, eval


def test_confusion_meter() -> None:
    meter = ConfusionMeter(["bg", "a", "b"])
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 0]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 1, 0]])
    meter.update(pred, target)
    r = meter.result()
    # bg: tp 2, fp 1, fn 1 -> 0.5; a: tp 2, fp 1 -> 2/3; b: tp 1, fn 1 -> 0.5; the ignored pixel counts nowhere
    assert r.per_class == pytest.approx({"bg": 0.5, "a": 2 / 3, "b": 0.5})
    assert r.miou == pytest.approx((0.5 + 2 / 3 + 0.5) / 3) and r.pixel_acc == pytest.approx(5 / 7)
    with pytest.raises(ValueError, match="mask values must be 0..2"):
        meter.update(pred, target + 3)


def test_digit_masks_follow_the_digits() -> None:
    """The embedded masks mark one to three 5-7x digits (glyphs of 40-56 px) on the bright pixels only."""
    from mobilenets.data.segmentation import digit_mask_splits

    seg = digit_mask_splits()
    for i in range(20):
        img, mask = seg.val[i]
        labels = set(mask.unique().tolist()) - {0, 255}
        assert 1 <= len(labels) <= 3 and labels <= set(range(1, 11))
        for label in labels:
            rows = (mask == label).any(1).nonzero()
            assert int(rows[-1] - rows[0]) + 1 >= 30, (i, label)  # a 5-7x digit, not a 2x one
        assert not ((mask != 0) & (mask != 255) & (img.float().mean(0) < 70)).any()  # dark pixels are no digit
    assert seg.classes == ["background", *map(str, range(10))]


def test_digit_masks_can_be_drawn_at_output_stride_8() -> None:
    """Why the digits are resized bilinearly: the held-out ground truth averaged onto a 1/8 logit grid
    and upsampled back (all a DeepLabv3 at OS 8 can draw) keeps mIoU >= 0.95; digits scaled as 8x8
    blocks lose their square corners there (0.83)."""
    from mobilenets.data.segmentation import digit_mask_splits

    seg = digit_mask_splits()
    masks = torch.stack([seg.val[i][1] for i in range(100)]).long()
    valid = masks != 255
    onehot = F.one_hot(torch.where(valid, masks, 0), 11).permute(0, 3, 1, 2).float() * valid[:, None]
    grid = F.adaptive_avg_pool2d(onehot, masks.shape[-1] // 8)
    drawn = F.interpolate(grid, size=masks.shape[-2:], mode="bilinear").argmax(1)
    meter = ConfusionMeter(seg.classes, 255)
    meter.update(drawn, masks)
    assert meter.result().miou >= 0.95


@pytest.mark.slow  # ~25 s: two epochs, eval in-process and by the CLI
def test_train_and_evaluate_on_a_voc_folder(tmp_path: Path) -> None:
    data = make_voc_segmentation_folder(tmp_path / "voc")
    res = mobilenets.train(mobilenets.TrainConfig(task="segmentation", data=str(data), epochs=2,
                                                  out=str(tmp_path / "run"), **SEG_FAST))
    assert res.task == "segmentation" and 0 <= res.miou <= 1 and 0 <= res.pixel_acc <= 1
    assert [h["epoch"] for h in res.history] == [1, 2] and {"val_miou", "val_pixel_acc"} <= set(res.history[0])
    model = mobilenets.load_model(res.weights)
    assert model.weights_meta["classes"][:3] == ["background", "aeroplane", "bicycle"] and model.num_classes == 21
    ev = mobilenets.evaluate(res.weights, progress=False)
    assert ev.count == 6 and ev.miou == pytest.approx(res.miou, abs=1e-9)
    r = subprocess.run([sys.executable, "-m", "mobilenets", "eval", "--weights", res.weights, "--json", "--out",
                        str(tmp_path / "ev")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert {"miou", "pixel_acc", "per_class"} <= set(out) and out["miou"] == pytest.approx(res.miou, abs=1e-6)


def test_mask_folder_layout_and_errors(tmp_path: Path) -> None:
    from mobilenets.data import resolve_data
    from mobilenets.data.segmentation import mask_folder_splits

    rng = np.random.default_rng(0)
    root = tmp_path / "shapes"
    for split, n in (("train", 6), ("val", 3)):
        for d in ("images", "masks"):
            (root / split / d).mkdir(parents=True)
        for i in range(n):
            img, mask = shapes_with_masks(rng, (64, 48))
            img.save(root / split / "images" / f"{i}.png")
            Image.fromarray(mask).save(root / split / "masks" / f"{i}.png")
    (root / "train" / "images" / "broken.png").write_bytes(b"not an image")
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(root / "train" / "masks" / "broken.png")
    spec = resolve_data(root, task="segmentation")
    assert spec.kind == "masks"
    splits = mask_folder_splits(root)
    assert splits.classes == ["background", "class_1", "class_2"] and len(splits.val) == 3
    assert [(k, Path(f).name) for k, f, _ in splits.issues.items] == [("unreadable image: left out", "broken.png")]
    (root / "classes.txt").write_text("background\nred\nblue\n")
    res = mobilenets.train(mobilenets.TrainConfig(data=str(root), task="segmentation", epochs=1,
                                                  out=str(tmp_path / "run"), **SEG_FAST))
    assert mobilenets.load_model(res.weights).weights_meta["classes"] == ["background", "red", "blue"]
    assert "broken.png" in (tmp_path / "run" / "data_issues.txt").read_text()  # reported, not fatal
    (root / "val" / "images" / "orphan.png").write_bytes((root / "val" / "images" / "0.png").read_bytes())
    orphans = [f for k, f, _ in mask_folder_splits(root).issues.items if k == "image without a mask: left out"]
    assert [Path(f).name for f in orphans] == ["orphan.png"]
    with pytest.raises(ValueError, match="not a segmentation dataset"):
        resolve_data(tmp_path, task="segmentation")
    with pytest.raises(ValueError, match="is not a segmentation model"):
        mobilenets.TrainConfig(task="segmentation", model="0.5-SSD-MobileNet-96").resolved()


@pytest.mark.slow  # ~12 s
def test_default_segmentation_training_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``train --task segmentation`` with nothing else: the embedded digit masks (fewer canvases here)."""
    from mobilenets.data import segmentation

    cfg = mobilenets.TrainConfig(task="segmentation", progress=False).resolved()
    assert "DeepLabV3" in cfg.model
    masks = segmentation.digit_mask_splits
    monkeypatch.setattr(segmentation, "digit_mask_splits",
                        lambda val_split, seed: masks(val_split, seed, train_count=64))
    res = mobilenets.train(mobilenets.TrainConfig(task="segmentation", epochs=1, out=str(tmp_path / "run"),
                                                  progress=False))
    assert res.model == cfg.model and 0 <= res.history[0]["val_pixel_acc"] <= 100
    assert mobilenets.load_model(res.weights).weights_meta["classes"] == ["background", *map(str, range(10))]


def test_emulated_logits_are_bit_identical_to_litert(refdata: Path) -> None:
    """With the integer kernels emulated, the narrow DeepLab's last backbone layer (17 blocks, 7
    residual adds) and its logits (after the head's image pooling, requantization and concatenation)
    equal LiteRT's uint8 tensors on a photo, every element."""
    from ai_edge_litert.interpreter import Interpreter

    from mobilenets.weights.tflite_config import layers as _layers
    from mobilenets.weights.tflite_file import read_tflite

    path = refdata / "models" / "deeplabv3_mnv2_dm05_pascal_quant.tflite"
    model = mobilenets.load_model(path, emulate_quantization=True)
    names = [layer.name for layer in _layers(model.config)]
    convs = read_tflite(path).convs
    it = Interpreter(str(path), experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    u8 = _input(refdata / "images" / "burger.jpg")
    it.set_tensor(it.get_input_details()[0]["index"], u8[None])
    it.invoke()
    tensors = {t["index"]: t["name"] for t in it.get_tensor_details()}
    out = {}
    for layer in ("backbone.blocks.16.project", "classifier"):
        model.get_submodule(layer).register_forward_hook(lambda m, i, o, layer=layer: out.update({layer: o}))
    with torch.no_grad():
        model(torch.from_numpy((u8.astype(np.float32) - 128) / 128).permute(2, 0, 1)[None])
    for layer, y in out.items():
        conv = convs[names.index(layer)]
        op = next(o for o in it._get_ops_details() if conv.name in [tensors.get(i) for i in o["inputs"][1:2]])
        ref = torch.from_numpy(it.get_tensor(op["outputs"][0])[0].astype(np.int64)).permute(2, 0, 1)
        scale, zero_point = conv.output_grid[:2]
        assert torch.equal(torch.round(y[0] / scale).long() + int(zero_point), ref), layer


def test_segmenter_starts_from_a_classifier(tmp_path: Path) -> None:
    """``--init`` with a classifier's weights: they become the backbone (DeepLab starts from ImageNet);
    ``--freeze-backbone`` keeps them and their BN statistics while the head trains."""
    from mobilenets.weights import save_weights

    classifier = mobilenets.create_model("0.25-MobileNet-64", num_classes=5)
    save_weights(classifier, tmp_path / "cls.safetensors")
    data = make_voc_segmentation_folder(tmp_path / "voc")
    res = mobilenets.train(mobilenets.TrainConfig(task="segmentation", data=str(data), epochs=1,
                                                  out=str(tmp_path / "run"), init=str(tmp_path / "cls.safetensors"),
                                                  freeze_backbone=True, workers=0, **SEG_FAST))
    after = mobilenets.load_model(res.weights).state_dict()
    for key, value in classifier.state_dict().items():
        if not key.startswith("classifier."):
            assert torch.equal(after[f"backbone.{key}"], value), key
    fresh = mobilenets.create_model("0.25-DeepLabV3-MobileNet-64").state_dict()
    assert not torch.equal(after["project.conv.weight"], fresh["project.conv.weight"])


@pytest.mark.parametrize("classes", [2, 21])
def test_a_new_segmenter_starts_at_a_loss_of_ln_c(refdata: Path, classes: int) -> None:
    """The logits layer starts near zero (TF DeepLab's N(0, 0.01)), so the first loss on real photos is
    ln C whatever C: He-normal on a fan-out of C classes gave 2-class logits of std ~10, a first loss
    of 6, and on raccoon photos 67% mIoU after 30 epochs where this start reaches 81%."""
    model = mobilenets.create_model("1.0-DeepLabV3-MobileNetV2-257", num_classes=classes).train()
    x = torch.stack([torch.from_numpy((_input(refdata / "images" / p).astype(np.float32) - 128) / 128)
                     for p in PHOTOS[:4]]).permute(0, 3, 1, 2)
    with torch.no_grad():
        logits = model(x)
    labels = torch.randint(0, classes, logits[:, 0].shape, generator=torch.Generator().manual_seed(0))
    assert logits.std() < 0.5
    assert F.cross_entropy(logits, labels).item() == pytest.approx(np.log(classes), abs=0.1)
