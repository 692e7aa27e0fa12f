"""The detection job as a user runs it: `mobilenets train --task detection` on the embedded digit
canvases; prints the held-out COCO mAP@0.5 and mAP@[.5:.95] of the best epoch and the wall time.

    python benchmarks/train_detection.py [--repeats N] [--epochs E]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine  # noqa: E402

import mobilenets  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=1, help="independent runs (different seeds)")
    ap.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    args = ap.parse_args()
    runs = []
    for seed in range(args.repeats):
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            r = mobilenets.train(mobilenets.TrainConfig(task="detection", out=f"{d}/run", seed=seed,
                                                        epochs=args.epochs, progress=False))
            runs.append({"seed": seed, "best_map50": round(r.map50, 4), "best_map": round(r.map, 4),
                         "final_map50": round(r.history[-1]["val_map50"] / 100, 4), "best_epoch": r.best_epoch,
                         "epochs": r.epochs, "wall_s": round(time.perf_counter() - t, 1),
                         "train_img_per_s": round(sum(h["img_per_s"] for h in r.history) / len(r.history))})
    print(json.dumps({"benchmark": "train_detection", "model": r.model, "goal": "map50 >= 0.90 in <= 300 s",
                      "machine": machine(), "runs": runs}))


if __name__ == "__main__":
    main()
