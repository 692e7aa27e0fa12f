"""Batch-1 inference latency, side by side in one run, against the anchors.

    python benchmarks/deploy_latency.py [--rounds 5] [--iters 30] [--refdata ../shared/refdata]

Candidates (1.0-MobileNetV2-224 and 1.0-MobileNet-224, random weights, fp32 unless int8):
torchvision mobilenet_v2 eager, timm mobilenetv1_100 / mobilenetv2_100 eager, ONNX Runtime on
torchvision's own ONNX export, and ours: torch runtime (BN folded, channels-last,
inference_mode), ONNX Runtime fp32 (our export) and ONNX Runtime int8 (our QDQ export, synthetic
calibration: the speed does not depend on it), LiteRT fp32 and int8 (our TFLite exports), ExecuTorch
fp32 (our .pte, XNNPACK delegate) and ``--runtime auto`` (the runtime `choose_runtime` measures
fastest). Against Google's own files in LiteRT: the float V1 0.25-224 (ours runs the same weights,
read from that file) and the int8 V2 1.0-224. Candidates are measured in interleaved rounds, in a shuffled order, so
that machine noise hits them alike (with a pause between candidates, so that one runtime's
spinning worker threads do not slow the next); ratios are taken within each round, then the
median.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine

import mobilenets
from mobilenets.deploy.bench import peak_gflops
from mobilenets.deploy.onnx import export_onnx
from mobilenets.deploy.pte import export_pte
from mobilenets.deploy.quantize import export_onnx_int8
from mobilenets.deploy.runtime_choice import choose_runtime, open_session
from mobilenets.deploy.sessions import ExecutorchSession, LitertSession, OnnxSession, TorchSession
from mobilenets.deploy.tflite import export_tflite
from mobilenets.utils.device import cpu_threads
from mobilenets.utils.timing import time_fn

AUTO: dict[str, dict[str, float]] = {}  # what --runtime auto measured for each of our models


def candidates(tmp: Path, refdata: Path) -> dict[str, tuple[str, object]]:
    import timm
    import torchvision

    x = torch.randn(1, 3, 224, 224)
    xn = x.numpy()
    out: dict[str, tuple[str, object]] = {}
    tv = torchvision.models.mobilenet_v2().eval()
    out["torchvision mobilenet_v2 eager"] = ("1.0-MobileNetV2-224", lambda: tv(x))
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(tv, (x,), str(tmp / "tv.onnx"), opset_version=18)
    tv_ort = OnnxSession(tmp / "tv.onnx")
    out["ONNX Runtime on torchvision's export"] = ("1.0-MobileNetV2-224", lambda: tv_ort.run(xn))
    for name, arch in (("mobilenetv2_100", "1.0-MobileNetV2-224"), ("mobilenetv1_100", "1.0-MobileNet-224")):
        tm = timm.create_model(name).eval()
        out[f"timm {name} eager"] = (arch, lambda tm=tm: tm(x))
    google = {"google V1 0.25 float": refdata / "models" / "mobilenet_v1_0.25_224.tflite",
              "google V2 1.0 int8": refdata / "models" / "tf2_mobilenet_v2_1.0_224_ptq.tflite"}
    for label, path in google.items():
        s = LitertSession(path)
        out[f"LiteRT on {label}"] = (s.config.name, lambda s=s: s.run(xn))
    models = {"1.0-MobileNetV2-224": mobilenets.create_model("1.0-MobileNetV2-224"),
              "1.0-MobileNet-224": mobilenets.create_model("1.0-MobileNet-224"),
              "0.25-MobileNet-224": mobilenets.load_model(google["google V1 0.25 float"])}
    for arch, model in models.items():
        model.eval()
        ts = TorchSession(model)
        out[f"ours {arch} torch"] = (arch, lambda ts=ts: ts.run(x))
        export_onnx(model, tmp / f"{arch}.onnx", check=False)
        s32 = OnnxSession(tmp / f"{arch}.onnx")
        out[f"ours {arch} onnxruntime fp32"] = (arch, lambda s=s32: s.run(xn))
        export_tflite(model, tmp / f"{arch}.tflite")
        l32 = LitertSession(tmp / f"{arch}.tflite")
        out[f"ours {arch} litert fp32"] = (arch, lambda s=l32: s.run(xn))
        export_pte(model, tmp / f"{arch}.pte")
        e32 = ExecutorchSession(tmp / f"{arch}.pte")
        out[f"ours {arch} executorch fp32"] = (arch, lambda s=e32: s.run(x))
        AUTO[f"ours {arch} auto fp32"] = choose_runtime(model, remeasure=True).timings_ms  # not a cached choice
        auto = open_session(model, "auto")
        out[f"ours {arch} auto fp32"] = (arch, lambda s=auto: s.run(xn if s.name != "torch" else x))
        if arch == "1.0-MobileNetV2-224":
            export_onnx_int8(model, tmp / f"{arch}.int8.onnx", bias_correction=False)
            s8 = OnnxSession(tmp / f"{arch}.int8.onnx")
            out[f"ours {arch} onnxruntime int8"] = (arch, lambda s=s8: s.run(xn))
            export_tflite(model, tmp / f"{arch}.int8.tflite", int8=True, bias_correction=False)
            l8 = LitertSession(tmp / f"{arch}.int8.tflite")
            out[f"ours {arch} litert int8"] = (arch, lambda s=l8: s.run(xn))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--refdata", default=str(Path(__file__).resolve().parents[2] / "shared" / "refdata"))
    args = ap.parse_args()
    torch.set_num_threads(cpu_threads())
    with tempfile.TemporaryDirectory() as d, torch.inference_mode():
        cands = candidates(Path(d), Path(args.refdata))
        auto = {k.split()[1]: AUTO[k] for k in AUTO}
        per_round: dict[str, list[float]] = {k: [] for k in cands}
        rng = random.Random(0)
        for _ in range(args.rounds):
            order = list(cands.items())
            rng.shuffle(order)  # no candidate always follows the same neighbour
            for name, (_, fn) in order:
                time.sleep(0.5)  # let the previous runtime's spinning worker threads go idle
                per_round[name].append(statistics.median(time_fn(fn, warmup=5, iters=args.iters, min_seconds=0.3)))
    peak = peak_gflops(cpu_threads())
    results = {}
    for name, (arch, _) in cands.items():
        med = statistics.median(per_round[name])
        madds = mobilenets.profile(arch).madds
        results[name] = {"model": arch, "latency_ms": round(med * 1e3, 3), "img_per_s": round(1 / med, 1),
                         "gflops": round(2 * madds / med / 1e9, 1),
                         "peak_fraction": round(2 * madds / med / 1e9 / peak, 3),
                         "ideal_ms_at_peak": round(2 * madds / (peak * 1e9) * 1e3, 3)}

    def ratio(a: str, b: str) -> float:
        return round(statistics.median(x / y for x, y in zip(per_round[a], per_round[b])), 2)

    v2, v1, q = "ours 1.0-MobileNetV2-224", "ours 1.0-MobileNet-224", "ours 0.25-MobileNet-224"
    ratios = {
        "goal v2: ORT on torchvision export / ours auto fp32": ratio("ONNX Runtime on torchvision's export",
                                                                   f"{v2} auto fp32"),
        "goal v1 0.25: LiteRT on Google's float / ours auto fp32": ratio("LiteRT on google V1 0.25 float",
                                                                       f"{q} auto fp32"),
        "goal int8: LiteRT on Google's int8 V2 / ours litert int8": ratio("LiteRT on google V2 1.0 int8",
                                                                        f"{v2} litert int8"),
        "goal int8: LiteRT on Google's int8 V2 / ours onnxruntime int8": ratio("LiteRT on google V2 1.0 int8",
                                                                             f"{v2} onnxruntime int8"),
        "v2: ours litert fp32 / ours litert int8": ratio(f"{v2} litert fp32", f"{v2} litert int8"),
        "v2: ours onnxruntime fp32 / ours executorch fp32": ratio(f"{v2} onnxruntime fp32", f"{v2} executorch fp32"),
        "v1 0.25: LiteRT on Google's float / ours executorch fp32": ratio("LiteRT on google V1 0.25 float",
                                                                          f"{q} executorch fp32"),
        "v2: torchvision eager / ours onnxruntime fp32": ratio("torchvision mobilenet_v2 eager",
                                                               f"{v2} onnxruntime fp32"),
        "v2: torchvision eager / ours torch": ratio("torchvision mobilenet_v2 eager", f"{v2} torch"),
        "v2: ORT on torchvision export / ours onnxruntime fp32": ratio("ONNX Runtime on torchvision's export",
                                                                       f"{v2} onnxruntime fp32"),
        "v2: ours fp32 / ours int8 (onnxruntime)": ratio(f"{v2} onnxruntime fp32", f"{v2} onnxruntime int8"),
        "v1: timm eager / ours onnxruntime fp32": ratio("timm mobilenetv1_100 eager", f"{v1} onnxruntime fp32"),
        "v1: timm eager / ours torch": ratio("timm mobilenetv1_100 eager", f"{v1} torch"),
    }
    print(json.dumps({"benchmark": "deploy_latency", "batch_size": 1, "machine": machine(),
                      "peak_gflops": round(peak, 1), "auto_measured_ms": auto, "results": results, "ratios": ratios},
                     indent=1))


if __name__ == "__main__":
    main()
