"""A detector fine-tuning step with frozen early stages, their BN folded into the convs or not.

    python benchmarks/finetune_step.py [--model 1.0-SSDLite-MobileNetV2-320-p3] [--sizes 320,416]
                                       [--rounds 4] [--batch-size 16]

The step is fine-tuning's: stem and stride 2-8 stages frozen (``--freeze-stages 3``), their BN in
inference mode, the rest in training mode, AdamW, channels-last, fp32. "folded" runs each frozen
conv + BN as one conv (``ConvBNAct.fold_frozen_bn``, what ``train`` does); "unfolded" runs them as
two layers. Interleaved rounds of 3 steps each; median seconds per step and the ratio of medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine

from mobilenets.models.layers import ConvBNAct
from mobilenets.tasks import build_model, parse_model_name
from mobilenets.training.finetune import freeze, set_train_mode
from mobilenets.utils.device import cpu_threads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="1.0-SSDLite-MobileNetV2-320-p3")
    ap.add_argument("--sizes", default="320,416")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(cpu_threads())
    model = build_model(parse_model_name(args.model, num_classes=3)).to(memory_format=torch.channels_last)
    freeze(model, False, 3)
    set_train_mode(model, False, False, 3)
    units = [u for u in model.modules() if isinstance(u, ConvBNAct) and u.fold_frozen_bn]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 1e-3)
    box = {"boxes": torch.tensor([[10.0, 10.0, 40.0, 50.0], [100, 100, 130, 140]]), "labels": torch.tensor([1, 2]),
           "ignore": torch.zeros(2, dtype=torch.bool)}
    out: dict[str, dict[str, object]] = {}
    for size in (int(s) for s in args.sizes.split(",")):
        x = torch.randn(args.batch_size, 3, size, size).contiguous(memory_format=torch.channels_last)
        runs: dict[str, list[float]] = {"folded": [], "unfolded": []}
        for _ in range(args.rounds):
            for name in runs:
                for u in units:
                    u.fold_frozen_bn = name == "folded"
                for i in range(3):
                    t = time.perf_counter()
                    opt.zero_grad()
                    model.loss(x, [box] * args.batch_size).backward()
                    opt.step()
                    if i:  # the first step after a switch warms the other path up
                        runs[name].append(time.perf_counter() - t)
        med = {k: round(statistics.median(v), 3) for k, v in runs.items()}
        out[str(size)] = {"s_per_step": med, "speedup folded / unfolded": round(med["unfolded"] / med["folded"], 2)}
    print(json.dumps({"benchmark": "finetune_step", "model": args.model, "batch_size": args.batch_size,
                      "frozen_stages": 3, "folded_units": len(units), "machine": machine(), "sizes": out}, indent=1))


if __name__ == "__main__":
    main()
