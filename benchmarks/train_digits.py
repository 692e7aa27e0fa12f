"""The main job as a user runs it: `mobilenets train` with no arguments; prints accuracy and wall time.

    python benchmarks/train_digits.py [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine

import mobilenets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=1, help="independent runs (different seeds)")
    args = ap.parse_args()
    runs = []
    for seed in range(args.repeats):
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            r = mobilenets.train(mobilenets.TrainConfig(out=f"{d}/run", seed=seed, progress=False))
            runs.append({"seed": seed, "best_top1": round(r.top1, 2), "final_top1": round(r.history[-1]["val_top1"], 2),
                         "best_epoch": r.best_epoch, "epochs": r.epochs, "wall_s": round(time.perf_counter() - t, 1),
                         "train_img_per_s": round(sum(h["img_per_s"] for h in r.history) / len(r.history))})
    print(json.dumps({"benchmark": "train_digits", "model": r.model, "machine": machine(), "runs": runs}))


if __name__ == "__main__":
    main()
