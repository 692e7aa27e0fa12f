"""TFLite export (float and int8) checked in LiteRT, the litert runtime on our files and Google's,
the auto runtime's choice on a faked timing table, and the fp32 peak as an upper bound."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import randomize_bn, weights_through_a_cached_export

from mobilenets import create_model, predict
from mobilenets.deploy.bench import fma_peak_gflops, peak_fraction
from mobilenets.deploy.export import export
from mobilenets.deploy.runtime_choice import NOISE, choose_runtime, open_session
from mobilenets.deploy.sessions import LitertSession, TorchSession
from mobilenets.utils.device import CpuFeatures
from mobilenets.weights import load_model
from mobilenets.weights.tflite_file import tflite_metadata


def _ops(path: Path) -> dict[str, set[str]]:
    """Each op type of a file with the dtypes of its outputs."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    dtypes = {t["index"]: np.dtype(t["dtype"]).name for t in it.get_tensor_details()}
    out: dict[str, set[str]] = {}
    for op in it._get_ops_details():
        out.setdefault(op["op_name"], set()).add(dtypes[op["outputs"][0]])
    return out


def _downstream_dtypes(path: Path, op_name: str) -> set[str]:
    """The dtypes of every tensor computed from the outputs of the first ``op_name`` op."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    dtypes = {t["index"]: np.dtype(t["dtype"]).name for t in it.get_tensor_details()}
    ops = it._get_ops_details()
    reached = set(next(op for op in ops if op["op_name"] == op_name)["outputs"])
    for op in ops:  # in execution order: a consumer comes after its producers
        if reached & set(op["inputs"]):
            reached |= set(op["outputs"])
    return {dtypes[i] for i in reached}


@pytest.fixture(scope="module")
def classifier() -> torch.nn.Module:
    torch.manual_seed(0)
    return randomize_bn(create_model("0.5-MobileNetV2-64", num_classes=10)).eval()


def test_float_tflite_matches_pytorch_carries_metadata_and_loads_back(classifier: torch.nn.Module,
                                                                      tmp_path: Path) -> None:
    classifier.weights_meta = {"classes": [f"c{i}" for i in range(10)]}
    res = export(classifier, tmp_path / "m.tflite", "tflite")
    assert res.ok and res.max_abs_diff <= 1e-4 and res.tolerance == 1e-4
    meta = tflite_metadata(tmp_path / "m.tflite")
    assert meta["model"] == "0.5-MobileNetV2-64" and meta["classes"][3] == "c3" and meta["config"]["num_classes"] == 10
    ops = _ops(tmp_path / "m.tflite")
    assert "TRANSPOSE" not in ops  # NHWC input: no layout change inside the graph
    session = LitertSession(tmp_path / "m.tflite")
    assert session.config.name == "0.5-MobileNetV2-64" and session.meta["classes"][0] == "c0"
    x = torch.randn(3, 3, 64, 64)  # another batch size than the file's
    with torch.inference_mode():
        ref = classifier(x).numpy()
    assert np.abs(session.run(x.numpy()) - ref).max() <= 1e-4
    back = load_model(tmp_path / "m.tflite")  # our loader reads our own file: same model
    assert back.config == classifier.config and back.weights_meta["classes"][9] == "c9"
    with torch.inference_mode():
        assert float((back(x) - classifier(x)).abs().max()) <= 1e-4


def test_int8_tflite_is_integer_calibrated_and_agrees(classifier: torch.nn.Module, tmp_path: Path) -> None:
    res = export(classifier, tmp_path / "q.tflite", "tflite-int8")
    assert res.format == "tflite-int8" and "SYNTHETIC" in res.calibration
    assert res.details["calibration_images"] == 64 and res.details["held_out"] == 32
    assert res.agreement is not None and res.agreement >= 0.5
    ops = _ops(tmp_path / "q.tflite")
    assert ops["CONV_2D"] == {"int8"} and ops["DEPTHWISE_CONV_2D"] == {"int8"} and ops["ADD"] == {"int8"}
    assert ops["FULLY_CONNECTED"] == {"float32"}  # int8 logits would tie (see INT8_OPS)
    out = LitertSession(tmp_path / "q.tflite").run(np.random.default_rng(0).standard_normal((2, 3, 64, 64),
                                                                                           dtype=np.float32))
    assert out.shape == (2, 10) and out.dtype == np.float32


def test_detector_tflite_runs_nms_after_the_graph(tmp_path: Path) -> None:
    torch.manual_seed(0)
    det = create_model("0.25-SSDLite-MobileNetV2-96", num_classes=3).eval()
    res = export(det, tmp_path / "d.tflite", "tflite")
    assert res.ok, res.summary()
    session = LitertSession(tmp_path / "d.tflite")
    x = torch.randn(2, 3, 96, 96)
    ours, ref = session.run(x.numpy()), TorchSession(det).run(x)
    assert len(ours) == 4 and ours[0].shape == ref[0].shape and (ours[3] == ref[3]).all()
    n = int(ref[3][0])
    np.testing.assert_allclose(ours[1][0, :n], ref[1][0, :n], atol=1e-4)
    # the graph takes no batch of 2 (XNNPACK cannot reshape it): bind keeps the batch, run and raw (what
    # auto and bench time) take it one image at a time; before, bind failed and took auto down with it
    bound = session.bind(x.numpy())
    assert bound.shape == (2, 96, 96, 3) and session.run(bound, "NHWC")[3].tolist() == ours[3].tolist()
    assert all(len(out) == 2 for out in session.raw(x.numpy())())


def test_int8_ranges_are_the_calibration_sets_min_and_max(tmp_path: Path) -> None:
    """One outlier image among many sets the input's range (AI Edge Quantizer's default moving average
    would shrink it to ~the typical image's, clipping what the bias correction simulated)."""
    from ai_edge_litert.interpreter import Interpreter

    from mobilenets.deploy.tflite import _convert_float, _quantize_int8

    conv = torch.nn.Conv2d(3, 4, 3, padding=1).eval()
    rng = np.random.default_rng(0)
    samples = [rng.uniform(-1, 1, (3, 8, 8)).astype(np.float32) for _ in range(20)]
    samples[3][0, 0, 0] = 8.0  # the outlier, early: a moving average would forget it
    q = Interpreter(model_content=_quantize_int8(_convert_float(conv, 8, 3), samples))
    q.allocate_tensors()
    first = next(op for op in q._get_ops_details() if op["op_name"] == "CONV_2D")["inputs"][0]
    scale, zero_point = q._get_tensor_details(first, 0)["quantization"]
    lo, hi = (-128 - zero_point) * scale, (127 - zero_point) * scale
    assert lo == pytest.approx(min(float(s.min()) for s in samples), abs=scale)
    assert hi == pytest.approx(8.0, abs=scale)


@pytest.mark.slow
def test_int8_detector_tflite_quantizes_the_network_and_decodes_in_float(tmp_path: Path) -> None:
    torch.manual_seed(0)
    det = randomize_bn(create_model("0.25-SSDLite-MobileNetV2-96", num_classes=3)).eval()
    res = export(det, tmp_path / "d8.tflite", "tflite-int8")
    assert res.format == "tflite-int8" and res.agreement is not None and 0.0 <= res.agreement <= 1.0
    ops = _ops(tmp_path / "d8.tflite")
    assert ops["CONV_2D"] == {"int8"} and ops["DEPTHWISE_CONV_2D"] == {"int8"}
    assert ops["EXP"] == {"float32"}
    # the box decoding is float from the network's outputs on: no op after the first EXP makes an int8
    # tensor (int8 ADD and CONCATENATION put the boxes on a grid of 1/108 of the image; see float_scope)
    assert _downstream_dtypes(tmp_path / "d8.tflite", "EXP") == {"float32"}
    # each map's outputs keep their own int8 range: their concatenation is float too (one range for
    # all was the coarsest map's; see float_scope)
    assert ops["CONCATENATION"] == {"float32"}
    session = LitertSession(tmp_path / "d8.tflite")
    assert tflite_metadata(tmp_path / "d8.tflite")["config"]["num_classes"] == 3
    boxes, scores, labels, n = session.run(np.random.default_rng(0).standard_normal((2, 3, 96, 96), dtype=np.float32))
    assert boxes.shape[:2] == scores.shape == labels.shape and n.shape == (2,)
    assert ((scores >= 0) & (scores <= 1)).all()


@pytest.mark.slow
def test_segmenter_tflite_matches_pytorch(tmp_path: Path) -> None:
    seg = create_model("0.25-DeepLabV3-MobileNetV2-96-aspp").eval()
    res = export(seg, tmp_path / "s.tflite", "tflite")
    assert res.ok, res.summary()
    assert LitertSession(tmp_path / "s.tflite").run(np.zeros((1, 3, 96, 96), np.float32)).shape == (1, 21, 96, 96)


def test_litert_runs_googles_files_like_our_torch_models(refdata: Path) -> None:
    photo = refdata / "images" / "grace_hopper.jpg"
    v1 = refdata / "models" / "mobilenet_v1_0.25_224.tflite"
    a, b = (predict(v1, [photo], runtime=r, top_k=3).predictions[0].top for r in ("litert", "torch"))
    assert [c for c, _ in a] == [c for c, _ in b] and a[0][0] == "suit"
    assert a[0][1] == pytest.approx(b[0][1], abs=1e-3)  # the file's softmax becomes logits: the same probabilities
    ssd = refdata / "models" / "coco_ssd_mobilenet_v1_1.0_quant_2018_06_29.tflite"
    cat = refdata / "images" / "cat.bmp"
    d1, d2 = (predict(ssd, [cat], runtime=r).predictions[0].detections for r in ("litert", "torch"))
    assert d1[0]["label"] == d2[0]["label"] == "cat"
    assert np.abs(np.array(d1[0]["box"]) - np.array(d2[0]["box"])).max() < 3  # pixels


def test_auto_picks_the_fastest_measured_once_and_cached(tmp_path: Path) -> None:
    model = create_model("0.25-MobileNet-32")
    calls: list[int] = []

    def fake(m: torch.nn.Module, **kw: object) -> dict[str, float]:
        calls.append(1)
        return {"torch": 3.0, "onnxruntime": 1.5, "litert": 1.2}

    cache = tmp_path / "runtime.json"
    first = choose_runtime(model, cache=cache, measure=fake)
    assert first.runtime == "litert" and not first.cached and first.timings_ms["torch"] == 3.0
    again = choose_runtime(model, cache=cache, measure=fake)
    assert again.runtime == "litert" and again.cached and len(calls) == 1
    assert choose_runtime(model, batch_size=8, cache=cache, measure=fake).cached is False  # another batch size
    choose_runtime(model, cache=cache, remeasure=True, measure=lambda m, **kw: {"torch": 0.5, "litert": 1.0})
    assert json.loads(cache.read_text()) and choose_runtime(model, cache=cache, measure=fake).runtime == "torch"


def test_auto_session_opens_the_cached_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOBILENETS_CACHE", str(tmp_path))
    model = create_model("0.25-MobileNet-32")
    choose_runtime(model, measure=lambda m, **kw: {"torch": 0.1, "onnxruntime": 0.2})
    assert isinstance(open_session(model, "auto"), TorchSession)
    with pytest.raises(ValueError, match="valid: auto, torch, onnxruntime, openvino, litert, executorch"):
        open_session(model, "tvm")


@pytest.mark.slow  # three exports and a measurement of each, in a real process (~50 s); the choice is tested above
def test_bench_auto_reports_every_runtime(tmp_path: Path) -> None:
    env = {"MOBILENETS_CACHE": str(tmp_path), "MOBILENETS_RUNTIME": "auto"}
    import os

    r = subprocess.run([sys.executable, "-m", "mobilenets", "bench", "0.25-MobileNet-32", "--iters", "5", "--json"],
                       capture_output=True, text=True, env={**os.environ, **env})
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert set(d["runtime_timings_ms"]) == {"torch", "onnxruntime", "openvino", "litert", "executorch"}
    best = min(d["runtime_timings_ms"], key=d["runtime_timings_ms"].get)  # or one within the noise of it
    noise = max(NOISE, d["runtime_spread"][best])
    assert d["runtime_timings_ms"][d["runtime"]] <= d["runtime_timings_ms"][best] * (1 + noise)
    assert d["raw_latency_ms"] > 0 and d["runtime_measured_at"]
    assert 0 < d["peak_fraction"] <= 1


@pytest.mark.parametrize("flags, lanes", [({"avx2", "fma"}, 8), ({"avx2", "avx512f"}, 16), (set(), 4)])
def test_fp32_peak_is_an_upper_bound(flags: set[str], lanes: int) -> None:
    cpu = CpuFeatures("fake", "x86_64", frozenset(flags))
    assert fma_peak_gflops(2, cpu, 2500.0) == pytest.approx(2 * 2 * lanes * 2 * 2.5)
    assert fma_peak_gflops(2, cpu, None) is None
    assert peak_fraction(80.0, 160.0) == 0.5 and peak_fraction(200.0, 160.0) == 1.0


@pytest.mark.slow
def test_trained_model_ships_to_tflite_with_the_same_predictions(tmp_path: Path) -> None:
    def run(*args: str) -> str:
        r = subprocess.run([sys.executable, "-m", "mobilenets", *args], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout

    summary = json.loads(run("train", "--data", "fake", "--epochs", "1", "--out", str(tmp_path / "run"), "--json",
                             "--no-progress").splitlines()[-1])
    run("export", "--weights", summary["weights"], "--format", "tflite", "--out", str(tmp_path / "m.tflite"))
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(images / f"{i}.png")
    a = json.loads(run("predict", "--weights", summary["weights"], "--runtime", "torch", str(images), "--json"))
    b = json.loads(run("predict", "--weights", str(tmp_path / "m.tflite"), str(images), "--json"))
    top1 = [[p["predictions"][0]["class"] for p in r["predictions"]] for r in (a, b)]
    assert top1[0] == top1[1] and len(top1[0]) == 4


def test_saved_weights_go_to_litert_through_a_cached_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights_through_a_cached_export(tmp_path, monkeypatch, "litert", "tflite")
