"""Our models loaded from Google's TFLite files vs Google's runtime (ai-edge-litert) on the real photos.

    python benchmarks/tflite_parity.py [--refdata ../shared/refdata]

Prints JSON: per model, the max abs difference of the class probabilities and the top-1
agreement over the photos (whole image resized bilinear to the input size, [-1, 1] / uint8 input).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))  # Google's runtime as the tests' reference
from _common import machine
from litert_reference import run_litert

import mobilenets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--refdata", default=str(Path(__file__).resolve().parents[2] / "shared" / "refdata"))
    args = ap.parse_args()
    ref = Path(args.refdata)
    photos = sorted(p for p in (ref / "images").iterdir() if p.suffix in (".jpg", ".png", ".bmp"))
    rows = []
    for path in sorted((ref / "models").glob("*.tflite")):
        if "embedding_extractor" in path.name or "head_layers" in path.name:
            continue
        model = mobilenets.load_model(path)
        size = model.weights_meta["preprocessing"]["input_size"]
        quant = model.weights_meta["source"]["quantized"]
        diffs, agree, names = [], 0, []
        for photo in photos:
            u8 = np.asarray(Image.open(photo).convert("RGB").resize((size, size), Image.BILINEAR))
            f32 = (u8.astype(np.float32) - 127.5) / 127.5
            lite = run_litert(path, u8 if quant else f32)
            with torch.no_grad():
                ours = model(torch.from_numpy(f32).permute(2, 0, 1)[None]).softmax(1)[0].numpy()
            diffs.append(float(np.abs(lite - ours).max()))
            agree += int(lite.argmax() == ours.argmax())
            names.append(f"{photo.name}: {model.weights_meta['classes'][ours.argmax()]}")
        rows.append({"file": path.name, "model": model.config.name, "quantized": quant, "photos": len(photos),
                     "top1_agreement": agree, "max_abs_prob_diff": max(diffs), "ours_top1": names})
    print(json.dumps({"benchmark": "tflite_parity", "machine": machine(), "results": rows}, indent=1))


if __name__ == "__main__":
    main()
