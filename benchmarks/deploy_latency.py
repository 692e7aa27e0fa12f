"""Batch-1 inference latency, side by side in one run, against the anchors.

    python benchmarks/deploy_latency.py [--rounds 5] [--iters 30]

Candidates (1.0-MobileNetV2-224 and 1.0-MobileNet-224, random weights, fp32 unless int8):
torchvision mobilenet_v2 eager, timm mobilenetv1_100 / mobilenetv2_100 eager, ONNX Runtime on
torchvision's own ONNX export, and ours: torch runtime (BN folded, channels-last,
inference_mode), ONNX Runtime fp32 (our export) and ONNX Runtime int8 (our QDQ export, synthetic
calibration: the speed does not depend on it). Candidates are measured in interleaved rounds, in a shuffled order, so
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
from _common import machine  # noqa: E402

import mobilenets  # noqa: E402
from mobilenets.deploy.bench import gemm_peak_gflops
from mobilenets.deploy.onnx import export_onnx
from mobilenets.deploy.quantize import export_onnx_int8  # noqa: E402
from mobilenets.deploy.runtimes import OnnxSession, TorchSession  # noqa: E402
from mobilenets.utils.device import cpu_threads  # noqa: E402
from mobilenets.utils.timing import time_fn  # noqa: E402


def candidates(tmp: Path) -> dict[str, tuple[str, object]]:
    import timm
    import torchvision

    x = torch.randn(1, 3, 224, 224)
    out: dict[str, tuple[str, object]] = {}
    tv = torchvision.models.mobilenet_v2().eval()
    out["torchvision mobilenet_v2 eager"] = ("1.0-MobileNetV2-224", lambda: tv(x))
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(tv, (x,), str(tmp / "tv.onnx"), opset_version=18)
    tv_ort = OnnxSession(tmp / "tv.onnx")
    xn = x.numpy()
    out["ONNX Runtime on torchvision's export"] = ("1.0-MobileNetV2-224", lambda: tv_ort.run(xn))
    for name, arch in (("mobilenetv2_100", "1.0-MobileNetV2-224"), ("mobilenetv1_100", "1.0-MobileNet-224")):
        tm = timm.create_model(name).eval()
        out[f"timm {name} eager"] = (arch, lambda tm=tm: tm(x))
    for arch in ("1.0-MobileNetV2-224", "1.0-MobileNet-224"):
        model = mobilenets.create_model(arch).eval()
        ts = TorchSession(model)
        out[f"ours {arch} torch"] = (arch, lambda ts=ts: ts.run(x))
        export_onnx(model, tmp / f"{arch}.onnx", check=False)
        s32 = OnnxSession(tmp / f"{arch}.onnx")
        out[f"ours {arch} onnxruntime fp32"] = (arch, lambda s=s32: s.run(xn))
        export_onnx_int8(model, tmp / f"{arch}.int8.onnx", bias_correction=False)
        s8 = OnnxSession(tmp / f"{arch}.int8.onnx")
        out[f"ours {arch} onnxruntime int8"] = (arch, lambda s=s8: s.run(xn))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(cpu_threads())
    with tempfile.TemporaryDirectory() as d, torch.inference_mode():
        cands = candidates(Path(d))
        per_round: dict[str, list[float]] = {k: [] for k in cands}
        rng = random.Random(0)
        for _ in range(args.rounds):
            order = list(cands.items())
            rng.shuffle(order)  # no candidate always follows the same neighbour
            for name, (_, fn) in order:
                time.sleep(0.5)  # let the previous runtime's spinning worker threads go idle
                per_round[name].append(statistics.median(time_fn(fn, warmup=5, iters=args.iters, min_seconds=0.3)))
    peak = gemm_peak_gflops(cpu_threads())
    results = {}
    for name, (arch, _) in cands.items():
        med = statistics.median(per_round[name])
        madds = mobilenets.profile(arch).madds
        results[name] = {"model": arch, "latency_ms": round(med * 1e3, 3), "img_per_s": round(1 / med, 1),
                         "gflops": round(2 * madds / med / 1e9, 1), "peak_fraction": round(2 * madds / med / 1e9 / peak, 3),
                         "ideal_ms_at_peak": round(2 * madds / (peak * 1e9) * 1e3, 3)}

    def ratio(a: str, b: str) -> float:
        return round(statistics.median(x / y for x, y in zip(per_round[a], per_round[b])), 2)

    v2, v1 = "ours 1.0-MobileNetV2-224", "ours 1.0-MobileNet-224"
    ratios = {
        "v2: torchvision eager / ours onnxruntime fp32": ratio("torchvision mobilenet_v2 eager", f"{v2} onnxruntime fp32"),
        "v2: torchvision eager / ours torch": ratio("torchvision mobilenet_v2 eager", f"{v2} torch"),
        "v2: ORT on torchvision export / ours onnxruntime fp32": ratio("ONNX Runtime on torchvision's export",
                                                                       f"{v2} onnxruntime fp32"),
        "v2: ours fp32 / ours int8 (onnxruntime)": ratio(f"{v2} onnxruntime fp32", f"{v2} onnxruntime int8"),
        "v1: timm eager / ours onnxruntime fp32": ratio("timm mobilenetv1_100 eager", f"{v1} onnxruntime fp32"),
        "v1: timm eager / ours torch": ratio("timm mobilenetv1_100 eager", f"{v1} torch"),
        "v1: ours fp32 / ours int8 (onnxruntime)": ratio(f"{v1} onnxruntime fp32", f"{v1} onnxruntime int8"),
    }
    print(json.dumps({"benchmark": "deploy_latency", "batch_size": 1, "machine": machine(),
                      "gemm_peak_gflops": round(peak, 1), "results": results, "ratios": ratios}, indent=1))


if __name__ == "__main__":
    main()
