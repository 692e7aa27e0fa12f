"""int8 vs fp32 quality on real labelled photos, with Google's V1 0.25-224 float weights.

    python benchmarks/int8_quality.py [--refdata ../shared/refdata] [--crops 30] [--no-bias-correction]

Calibration uses photos that are not evaluated (owl, sparrow, multi_objects: 8 crops each);
evaluation uses the labelled photos (cheeseburger, military uniform, macaw, African elephant,
cheetah, Egyptian cat, hotdog): the whole photo plus random crops (scale 0.5-1) of each, with the
photo's label. Prints JSON: fp32 and int8 top-1, their agreement, and latencies - for our ONNX
Runtime int8 and our TFLite int8 (in LiteRT), and, as the reference, Google's own uint8
quantization-aware V1 0.25-224 against Google's float file (both in LiteRT).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine

import mobilenets
from mobilenets.deploy.onnx import export_onnx
from mobilenets.deploy.quantize import export_onnx_int8
from mobilenets.deploy.sessions import LitertSession, OnnxSession
from mobilenets.deploy.tflite import export_tflite
from mobilenets.utils.timing import time_fn

CALIBRATION = ["owl.jpg", "sparrow.png", "multi_objects.jpg"]
LABELLED = {"burger.jpg": 934, "grace_hopper.jpg": 653, "parrot.jpg": 89, "elephant.jpg": 387, "cheetah.jpg": 294,
            "cat.bmp": 286, "hot_dog.jpg": 935}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--refdata", default=str(Path(__file__).resolve().parents[2] / "shared" / "refdata"))
    ap.add_argument("--crops", type=int, default=30)
    ap.add_argument("--no-bias-correction", action="store_true")
    args = ap.parse_args()
    ref = Path(args.refdata)
    model = mobilenets.load_model(ref / "models" / "mobilenet_v1_0.25_224.tflite")
    norm = [v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5] * 3, [0.5] * 3)]
    whole = v2.Compose([v2.ToImage(), v2.Resize((224, 224), antialias=True), *norm])
    crop = v2.Compose([v2.ToImage(), v2.RandomResizedCrop(224, scale=(0.5, 1.0), antialias=True), *norm])
    torch.manual_seed(0)
    xs, ys = [], []
    for name, label in LABELLED.items():
        img = Image.open(ref / "images" / name).convert("RGB")
        xs += [whole(img)] + [crop(img) for _ in range(args.crops)]
        ys += [label] * (args.crops + 1)
    x, y = torch.stack(xs).numpy(), np.array(ys)
    with tempfile.TemporaryDirectory() as d:
        cal = Path(d) / "cal"
        cal.mkdir()
        for name in CALIBRATION:
            shutil.copy(ref / "images" / name, cal / name)
        export_onnx(model, Path(d) / "fp32.onnx", check=False)
        res = export_onnx_int8(model, Path(d) / "int8.onnx", calibrate=cal, held_out=0.0,
                               bias_correction=not args.no_bias_correction)
        s32, s8 = OnnxSession(Path(d) / "fp32.onnx"), OnnxSession(Path(d) / "int8.onnx")
        p32, p8 = s32.run(x).argmax(1), s8.run(x).argmax(1)
        tfl = export_tflite(model, Path(d) / "int8.tflite", int8=True, calibrate=cal, held_out=0.0,
                            bias_correction=not args.no_bias_correction)
        pt8 = LitertSession(tfl.path).run(x).argmax(1)
        g32 = LitertSession(ref / "models" / "mobilenet_v1_0.25_224.tflite").run(x).argmax(1)
        g8 = LitertSession(ref / "models" / "mobilenet_v1_0.25_224_quant.tflite").run(x).argmax(1)
        one = x[:1]
        lat32 = statistics.median(time_fn(lambda: s32.run(one), 10, 200)) * 1e3
        lat8 = statistics.median(time_fn(lambda: s8.run(one), 10, 200)) * 1e3
    whole = [i * (args.crops + 1) for i in range(len(LABELLED))]  # each photo's uncropped view
    print(json.dumps({
        "benchmark": "int8_quality", "model": "mobilenet_v1_0.25_224.tflite (float) -> ours -> ONNX Runtime",
        "machine": machine(), "calibration": res.calibration, "bias_correction": not args.no_bias_correction,
        "eval_images": len(y), "eval_photos": list(LABELLED),
        "fp32_top1": round(float((p32 == y).mean()) * 100, 2), "int8_top1": round(float((p8 == y).mean()) * 100, 2),
        "agreement": round(float((p32 == p8).mean()) * 100, 2),
        "whole_photos_fp32_correct": int(sum(p32[w] == y[w] for w in whole)),
        "whole_photos_int8_correct": int(sum(p8[w] == y[w] for w in whole)),
        "latency_ms_fp32": round(lat32, 3), "latency_ms_int8": round(lat8, 3),
        "ours_tflite_int8_top1": round(float((pt8 == y).mean()) * 100, 2),
        "ours_tflite_int8_agreement": round(float((p32 == pt8).mean()) * 100, 2),
        "google_float_top1_litert": round(float((g32 == y).mean()) * 100, 2),
        "google_qat_uint8_top1_litert": round(float((g8 == y).mean()) * 100, 2),
        "google_qat_vs_float_agreement": round(float((g32 == g8).mean()) * 100, 2),
    }, indent=1))


if __name__ == "__main__":
    main()
