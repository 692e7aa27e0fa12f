"""A dense task's job as a user runs it: `mobilenets train --task detection|segmentation` on the
embedded digit canvases; prints the best epoch's held-out numbers (COCO mAP@0.5 and mAP@[.5:.95],
or mIoU and pixel accuracy) and the wall time, against the issue's goal.

    python benchmarks/train_task.py [--task detection|segmentation] [--repeats N] [--epochs E]
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
    ap.add_argument("--task", default="detection", choices=["detection", "segmentation"])
    ap.add_argument("--repeats", type=int, default=1, help="independent runs (different seeds)")
    ap.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    args = ap.parse_args()
    runs = []
    for seed in range(args.repeats):
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            r = mobilenets.train(mobilenets.TrainConfig(task=args.task, out=f"{d}/run", seed=seed,
                                                        epochs=args.epochs, progress=False))
            best = ({"best_map50": round(r.map50, 4), "best_map": round(r.map, 4)} if args.task == "detection" else
                    {"best_miou": round(r.miou, 4), "best_pixel_acc": round(r.pixel_acc, 4)})
            runs.append({"seed": seed, **best, "best_epoch": r.best_epoch,
                         "epochs": r.epochs, "wall_s": round(time.perf_counter() - t, 1),
                         "train_img_per_s": round(sum(h["img_per_s"] for h in r.history) / len(r.history))})
    goal = "map50 >= 0.90 in <= 300 s" if args.task == "detection" else "miou >= 0.80 in <= 300 s"
    print(json.dumps({"benchmark": f"train_{args.task}", "model": r.model, "goal": goal,
                      "machine": machine(), "runs": runs}))


if __name__ == "__main__":
    main()
