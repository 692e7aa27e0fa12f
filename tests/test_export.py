"""Deployment: ONNX/TorchScript/torch.export exactness, dynamic batch, metadata, int8, runtimes, bench."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import randomize_bn

from mobilenets import create_model, predict, save_weights
from mobilenets.deploy.bias_correction import fake_quant_act, fake_quant_weight
from mobilenets.deploy.export import export
from mobilenets.deploy.quantize import export_onnx_int8
from mobilenets.deploy.runtime_choice import open_session
from mobilenets.deploy.sessions import OnnxSession, TorchSession
from mobilenets.models import fold_batchnorm
from mobilenets.tradeoffs import bench
from mobilenets.weights import load_model


@pytest.fixture(scope="module")
def v2_model() -> torch.nn.Module:
    m = randomize_bn(create_model("0.5-MobileNetV2-96", num_classes=10)).eval()
    m.weights_meta = {"classes": [f"c{i}" for i in range(10)]}
    return m


def test_fold_batchnorm_is_exact(v2_model: torch.nn.Module) -> None:
    folded = fold_batchnorm(v2_model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), v2_model(x), atol=1e-5, rtol=1e-4)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in v2_model.modules())  # the original is untouched


@pytest.mark.parametrize("padding", ["symmetric", "tf_same"])
def test_onnx_export_exact_dynamic_batch_metadata(tmp_path: Path, padding: str) -> None:
    m = randomize_bn(create_model("0.25-MobileNet-128", padding=padding, num_classes=5)).eval()
    m.weights_meta = {"classes": list("abcde")}
    res = export(m, tmp_path / "m.onnx", "onnx")
    assert res.ok and res.max_abs_diff <= 1e-4
    import onnx

    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert proto.opset_import[0].version >= 17
    assert not any(n.op_type == "BatchNormalization" for n in proto.graph.node)  # folded
    s = OnnxSession(tmp_path / "m.onnx")
    assert s.meta["classes"] == list("abcde") and s.meta["model"] == "0.25-MobileNet-128"
    assert s.meta["preprocessing"]["input_size"] == 128
    for batch in (1, 4):
        x = torch.randn(batch, 3, 128, 128)
        with torch.no_grad():
            assert np.abs(s.run(x.numpy()) - m(x).numpy()).max() <= 1e-4


@pytest.mark.parametrize("fmt", ["torchscript", "pt2"])
def test_torchscript_and_pt2(tmp_path: Path, v2_model: torch.nn.Module, fmt: str) -> None:
    res = export(v2_model, tmp_path / f"m.{fmt}", fmt)
    assert res.ok and res.max_abs_diff <= 1e-4
    x = torch.randn(3, 3, 96, 96)
    loaded = torch.jit.load(str(tmp_path / f"m.{fmt}")) if fmt == "torchscript" else \
        torch.export.load(str(tmp_path / f"m.{fmt}")).module()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), v2_model(x), atol=1e-4, rtol=1e-4)


def test_each_task_exports_to_its_formats(tmp_path: Path) -> None:
    """A segmenter's pt2 holds its upsampling (checked with the logits' tolerance); what a model cannot
    export to is refused before anything is written, with the formats it takes."""
    seg = create_model("0.25-DeepLabV3-MobileNetV2-64")
    res = export(seg, tmp_path / "seg.pt2", "pt2")
    assert res.ok and res.max_abs_diff <= res.tolerance
    assert torch.export.load(str(tmp_path / "seg.pt2")).module()(torch.randn(2, 3, 64, 64)).shape == (2, 21, 64, 64)
    ssd = create_model("0.25-SSDLite-MobileNetV2-96", num_classes=3)
    for model, fmt in ((ssd, "pt2"), (ssd, "torchscript"), (seg, "torchscript")):
        with pytest.raises(ValueError, match=f"exports to onnx, onnx-int8, tflite, tflite-int8, pte.*not {fmt}"):
            export(model, tmp_path / f"x.{fmt}", fmt)
    assert not list(tmp_path.glob("x.*"))


def test_fake_quant_rules() -> None:
    w = torch.tensor([[[[1.0]], [[-0.5]]], [[[0.01]], [[0.02]]]])
    q = fake_quant_weight(w)
    assert q[0, 0].item() == 1.0 and q[1, 1].item() == pytest.approx(0.02)  # per output channel
    x = torch.tensor([0.0, 3.0, 6.0, 7.0])
    assert fake_quant_act(x, 0.0, 6.0).tolist() == pytest.approx([0.0, 3.0, 6.0, 6.0], abs=0.012)


def test_int8_on_real_photos(refdata: Path, tmp_path: Path) -> None:
    """Google's V1 0.25-224 float weights, calibrated on photos that are then not evaluated."""
    model = load_model(refdata / "models" / "mobilenet_v1_0.25_224.tflite")
    cal = tmp_path / "cal"
    cal.mkdir()
    for name in ("owl.jpg", "sparrow.png", "multi_objects.jpg", "hot_dog.jpg"):
        shutil.copy(refdata / "images" / name, cal / name)
    res = export(model, tmp_path / "int8.onnx", "onnx-int8", calibrate=cal)
    assert res.agreement is not None and "SYNTHETIC" not in res.calibration
    import onnx

    ops = {n.op_type for n in onnx.load(str(tmp_path / "int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    photos = {"burger.jpg": "cheeseburger", "parrot.jpg": "macaw", "elephant.jpg": "African elephant",
              "cheetah.jpg": "cheetah", "cat.bmp": "Egyptian cat"}
    fp32 = predict(model, [refdata / "images" / p for p in photos], top_k=1, runtime="onnxruntime")
    int8 = predict(tmp_path / "int8.onnx", [refdata / "images" / p for p in photos], top_k=1, runtime="onnxruntime")
    top32 = {Path(p.path).name: p.top[0][0] for p in fp32.predictions}
    top8 = {Path(p.path).name: p.top[0][0] for p in int8.predictions}
    assert top32 == photos and top8 == top32


def test_int8_synthetic_calibration_is_labelled(tmp_path: Path) -> None:
    m = create_model("0.25-MobileNet-64", num_classes=3).eval()
    res = export_onnx_int8(m, tmp_path / "s.onnx", bias_correction=False)
    assert "SYNTHETIC" in res.calibration and res.agreement is not None
    assert OnnxSession(tmp_path / "s.onnx").run(np.zeros((2, 3, 64, 64), np.float32)).shape == (2, 3)


def test_int8_calibrates_on_at_most_calibration_samples_images(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Ranges are min and max, so more images only widen them: past the cap, a seeded random subset;
    the held-out quarter (for the agreement) is capped too (a large split would not fit in memory)."""
    from PIL import Image

    from mobilenets.deploy import quantize

    for i in range(40):
        Image.new("RGB", (40, 30), (6 * i, 100, 200 - 4 * i)).save(tmp_path / f"{i:02d}.png")
    m = create_model("0.25-MobileNet-32", num_classes=3).eval()
    monkeypatch.setattr(quantize, "CALIBRATION_SAMPLES", 5)
    cal, hold, label = quantize.calibration_sets(m, tmp_path, 32, held_out=0.25, per_image=1)
    assert (len(cal), len(hold)) == (5, 5) and label.startswith("5 of 35 images from")
    again = quantize.calibration_sets(m, tmp_path, 32, held_out=0.25, per_image=1)[0]
    assert all((a == b).all() for a, b in zip(cal, again))  # seeded
    monkeypatch.setattr(quantize, "CALIBRATION_SAMPLES", 200)
    cal, hold, label = quantize.calibration_sets(m, tmp_path, 32, held_out=0.25, per_image=1)
    assert (len(cal), len(hold)) == (30, 10) and label.startswith("30 images from")


def test_runtimes_agree(tmp_path: Path, v2_model: torch.nn.Module) -> None:
    save_weights(v2_model, tmp_path / "w.safetensors", classes=[f"c{i}" for i in range(10)])
    x = np.random.default_rng(0).standard_normal((2, 3, 96, 96)).astype(np.float32)
    t = open_session(tmp_path / "w.safetensors", "torch")
    o = open_session(tmp_path / "w.safetensors", "onnxruntime")
    assert isinstance(t, TorchSession) and isinstance(o, OnnxSession)
    assert np.abs(t.run(x) - o.run(x)).max() <= 1e-4
    with pytest.raises(ValueError, match="onnxruntime"):
        open_session(tmp_path / "x.onnx", "torch")
    with pytest.raises(ValueError, match="torch, onnxruntime"):
        open_session(tmp_path / "w.safetensors", "tvm")


def test_bench_reports_latency_and_compute() -> None:
    r = bench("0.25-MobileNet-64", batch_size=2, warmup=2, iters=5, train=True, train_amp="off")
    d = r.to_dict()
    assert {"latency_ms", "img_per_s", "train_img_per_s", "gflops", "peak_fraction", "madds"} <= set(d)
    assert r.latency_ms > 0 and r.img_per_s == pytest.approx(2 / (r.latency_ms / 1e3), rel=1e-6)
    assert r.madds == 3_540_480 or r.madds > 0
    assert r.train_img_per_s > 0 and r.train_precision == "fp32"
    assert d["cpu"] and "cpu_features" in d  # what the numbers were measured on
    assert 0 < r.peak_fraction <= 1


@pytest.mark.slow  # ~25 s: two CLI processes; the ONNX export and bench tests above cover the same code in-process
def test_cli_export_and_bench(tmp_path: Path, v2_model: torch.nn.Module) -> None:
    save_weights(v2_model, tmp_path / "w.safetensors", classes=[f"c{i}" for i in range(10)])
    r = subprocess.run([sys.executable, "-m", "mobilenets", "export", "--weights", str(tmp_path / "w.safetensors"),
                        "--format", "onnx", "--out", str(tmp_path / "w.onnx"), "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.splitlines()[-1])
    assert out["ok"] and out["max_abs_diff"] <= 1e-4
    r = subprocess.run([sys.executable, "-m", "mobilenets", "bench", str(tmp_path / "w.onnx"), "--runtime",
                        "onnxruntime", "--iters", "5", "--warmup", "1", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    b = json.loads(r.stdout.splitlines()[-1])
    assert b["model"] == "0.5-MobileNetV2-96" and b["latency_ms"] > 0 and b["runtime"] == "onnxruntime"
