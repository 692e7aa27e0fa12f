"""Measured peak activation memory and latency of the V2 paper's t-way split executor.

    python benchmarks/memory_split.py [--rounds 5]

1.0-MobileNetV2-224, batch 1, fp32, CPU. Peak = bytes of live tensors created during one forward
(mobilenets.analysis.memory.PeakMemory, a TorchDispatchMode tracker; input and weights excluded).
Candidates: our plain eager model, torchvision's mobilenet_v2 eager, and the executor at
t in {1, 2, 4, 8, n}; each with the analytic bound of its schedule. Latency: interleaved rounds,
median over rounds.
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

import mobilenets
from mobilenets.analysis.memory import analyze, measure_peak
from mobilenets.models import memory_efficient
from mobilenets.utils.device import cpu_threads
from mobilenets.utils.timing import time_fn


def main() -> None:
    import torchvision

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(cpu_threads())
    model = mobilenets.create_model("1.0-MobileNetV2-224").eval()
    x = torch.randn(1, 3, 224, 224)
    analysis = analyze(model, dtype="fp32")
    n = max(analysis.split_peak_values)
    cands = {"ours plain eager": (model, analysis.plain_peak_values * 4),
             "torchvision mobilenet_v2 eager": (torchvision.models.mobilenet_v2().eval(), None)}
    for t in (1, 2, 4, 8, n):
        cands[f"executor t={t}"] = (memory_efficient(model, split=t), analysis.split_peak_values[t] * 4)
    with torch.inference_mode():
        ref = model(x)
        rows = {}
        for name, (m, bound) in cands.items():
            diff = float((m(x) - ref).abs().max()) if name.startswith(("ours", "executor")) else None
            rows[name] = {"peak_bytes": measure_peak(m, x), "analytic_bytes": bound, "max_abs_diff": diff, "lat": []}
        for _ in range(args.rounds):
            for name, (m, _) in cands.items():
                time.sleep(0.2)
                rows[name]["lat"].append(statistics.median(time_fn(lambda m=m: m(x), 2, 5 if "t=" + str(n) in name
                                                                   else 20, 0.3)))
    plain = rows["ours plain eager"]
    for r in rows.values():
        lat = r.pop("lat")
        r["latency_ms"] = round(statistics.median(lat) * 1e3, 2)
        r["memory_reduction_vs_plain"] = round(plain["peak_bytes"] / r["peak_bytes"], 2)
        r["memory_reduction_vs_torchvision"] = round(rows["torchvision mobilenet_v2 eager"]["peak_bytes"] /
                                                     r["peak_bytes"], 2)
        if r["analytic_bytes"]:
            r["measured_over_analytic"] = round(r["peak_bytes"] / r["analytic_bytes"], 3)
    for r in rows.values():
        r["latency_vs_plain"] = round(r["latency_ms"] / plain["latency_ms"], 2)
    print(json.dumps({"benchmark": "memory_split", "model": "1.0-MobileNetV2-224", "batch_size": 1, "dtype": "fp32",
                      "machine": machine(), "results": rows}, indent=1))


if __name__ == "__main__":
    main()
