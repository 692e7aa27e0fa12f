"""Training-step throughput of 1.0-MobileNetV2-224, batch 32, side by side with torchvision.

    python benchmarks/train_throughput.py [--rounds 3] [--batch-size 32]

Candidates: torchvision's mobilenet_v2 in a plain training loop as its reference recipe runs by
default (NCHW, fp32, SGD momentum), the best configuration a peer offers (the same loop with
channels-last, and bf16 autocast where the CPU computes bf16 natively), and ours - the exact step
`mobilenets train` runs (TrainStep: channels-last, `--amp auto`, SGD + Nesterov, weight-decay groups,
label smoothing), measured by
`mobilenets.training.train_throughput` (what `mobilenets bench --train` prints). Interleaved rounds;
median images/s per candidate, ratios of medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine

from mobilenets.models import parse_name
from mobilenets.training import train_throughput
from mobilenets.utils.device import cpu_features, cpu_threads
from mobilenets.utils.timing import time_fn


def torchvision_loop(batch: int, channels_last: bool, bf16: bool) -> float:
    import torchvision

    model = torchvision.models.mobilenet_v2().train()
    opt = torch.optim.SGD(model.parameters(), lr=0.045, momentum=0.9, weight_decay=4e-5)
    x, y = torch.randn(batch, 3, 224, 224), torch.randint(0, 1000, (batch,))  # as a data loader yields it
    if channels_last:
        model = model.to(memory_format=torch.channels_last)

    def step() -> None:
        xb = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(xb), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return batch / statistics.median(time_fn(step, warmup=2, iters=5, min_seconds=3.0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(cpu_threads())
    cfg = parse_name("1.0-MobileNetV2-224")
    b = args.batch_size
    bf16 = cpu_features().native_bf16  # emulated bf16 is many times slower than fp32: no one would pick it
    best_peer = f"torchvision channels_last + {'bf16' if bf16 else 'fp32'} (best peer)"
    cands = {
        "torchvision reference (NCHW, fp32)": lambda: torchvision_loop(b, False, False),
        best_peer: lambda: torchvision_loop(b, True, bf16),
        "ours: mobilenets train step (--amp auto)": lambda: train_throughput(cfg, b, 224, "auto")[0],
    }
    if bf16:  # without native bf16, auto already is fp32
        cands["ours: mobilenets train step (--amp off)"] = lambda: train_throughput(cfg, b, 224, "off")[0]
    runs: dict[str, list[float]] = {k: [] for k in cands}
    for _ in range(args.rounds):
        for name, fn in cands.items():
            time.sleep(0.5)
            runs[name].append(fn())
    med = {k: round(statistics.median(v), 2) for k, v in runs.items()}
    ours = med["ours: mobilenets train step (--amp auto)"]
    print(json.dumps({
        "benchmark": "train_throughput", "model": "1.0-MobileNetV2-224", "batch_size": b, "machine": machine(),
        "precision_auto": train_throughput(cfg, 2, 64, "auto", steps=1, warmup=1)[1],
        "img_per_s": med, "runs": runs,
        "ratios": {
            "ours / best peer": round(ours / med[best_peer], 2),
            "ours / torchvision reference": round(ours / med["torchvision reference (NCHW, fp32)"], 2),
        },
    }, indent=1))


if __name__ == "__main__":
    main()
