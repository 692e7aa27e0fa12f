"""What a session costs over its runtime's own call, and what ``--runtime auto`` delivers, at batch 1.

    python benchmarks/runtime_overhead.py [--rounds 5] [--seconds 0.4] [--refdata ../shared/refdata]

For 0.25-MobileNet-224 (Google's float weights, read from ``mobilenet_v1_0.25_224.tflite``) and
1.0-MobileNetV2-224 (Google's weights, from ``mobilenet_v2_1.0_224_quant.tflite``), every runtime and
precision we run - torch, ONNX Runtime, OpenVINO, LiteRT, ExecuTorch in fp32; ONNX Runtime and OpenVINO
on our ``onnx-int8``, LiteRT on our ``tflite-int8`` - plus the anchors a user could pick without us:
LiteRT on Google's files, ONNX Runtime on torchvision's own ONNX export of ``mobilenet_v2``.

Each candidate runs in a worker process of its own (``mobilenets.deploy.worker``); one worker is timed
at a time and answers only once its threads are idle, in rounds whose order rotates. In each round a
worker times the session (``session.run`` on the batch bound to its runtime, ``session.bind``) and
the runtime's own call (``session.raw``: ``interpreter.invoke()``, ``session.run()``, ...) in
alternating blocks of 20 ms (``time_pairs``) for twice ``--seconds``; the ratio and the difference are
taken within each pair of blocks, then the median over all pairs (on a shared host, medians taken
0.4 s apart differed by up to 2x, within a pair they see the same load). Goal: session <= 1.03x raw,
or <= 20 us more.

auto: ``choose_runtime`` with an empty cache (each runtime measured alone, its table printed), its
choice's session latency against the fastest raw latency of the fp32 candidates and anchors (goal:
>= 1.0x), and its table against each runtime's session latency measured here (goal: within 10%).
The CPU and its features are printed with the ratios.

Each latency is the median of the rounds' medians, and ``quiet_*`` the best round's: on a shared
2-vCPU host the second vCPU is taken away for seconds at a time (V1 0.25 in LiteRT at 2 threads went
0.54 -> 0.85 ms and back within 10 s, steady at 1.02 ms on one thread), so two candidates' medians
can come from different states of the machine; their best rounds come from the same, uncontended one.
``auto.quiet`` compares auto's delivery and table with those.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine

from mobilenets.deploy.quantize import export_onnx_int8
from mobilenets.deploy.runtime_choice import (
    Worker,
    cached_export,
    candidate_runtimes,
    choose_runtime,
    wait_idle,
)
from mobilenets.deploy.tflite import export_tflite
from mobilenets.utils.device import cpu_threads
from mobilenets.weights import load_model

MODELS = {"0.25-MobileNet-224": "mobilenet_v1_0.25_224.tflite",
          "1.0-MobileNetV2-224": "mobilenet_v2_1.0_224_quant.tflite"}
ANCHORS = {"0.25-MobileNet-224": {"litert on Google's float file": "mobilenet_v1_0.25_224.tflite",
                                  "litert on Google's uint8 file": "mobilenet_v1_0.25_224_quant.tflite"},
           "1.0-MobileNetV2-224": {"litert on Google's uint8 file": "mobilenet_v2_1.0_224_quant.tflite",
                                   "litert on Google's int8 file": "tf2_mobilenet_v2_1.0_224_ptq.tflite"}}


def torchvision_onnx(tmp: Path) -> Path:
    """torchvision's mobilenet_v2 exported by torch.onnx.export as a user would (random weights: the speed
    does not depend on them)."""
    import torch
    import torchvision

    path = tmp / "torchvision_mobilenet_v2.onnx"
    model = torchvision.models.mobilenet_v2().eval()
    torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), str(path), dynamo=False, opset_version=17)
    return path


def candidates(name: str, refdata: Path, tmp: Path) -> dict[str, tuple[str, Path]]:
    """label -> (runtime, the file its worker opens)."""
    model = load_model(refdata / "models" / MODELS[name])
    out = {f"{r} fp32": (r, cached_export(model, r)) for r in candidate_runtimes(model)}
    images = refdata / "images"
    q_onnx, q_tflite = tmp / f"{name}.int8.onnx", tmp / f"{name}.int8.tflite"
    export_onnx_int8(model, q_onnx, calibrate=images)
    export_tflite(model, q_tflite, int8=True, calibrate=images)
    out["onnxruntime int8"] = ("onnxruntime", q_onnx)
    if "openvino" in candidate_runtimes(q_onnx):
        out["openvino int8"] = ("openvino", q_onnx)
    out["litert int8"] = ("litert", q_tflite)
    for label, file in ANCHORS[name].items():
        if (refdata / "models" / file).is_file():
            out[label] = ("litert", refdata / "models" / file)
    if name == "1.0-MobileNetV2-224":
        out["onnxruntime on torchvision's export"] = ("onnxruntime", torchvision_onnx(tmp))
    return out


def measure(cands: dict[str, tuple[str, Path]], threads: int, rounds: int, seconds: float) -> dict[str, Any]:
    """Session and raw latency (ms) of each candidate, each alone, in rounds; within a round, in pairs of
    short blocks (``time_pairs``), the ratio and the difference taken within pairs, then their medians
    over every pair of every round."""
    workers = {label: Worker(runtime, path, threads) for label, (runtime, path) in cands.items()}
    try:
        for w in workers.values():
            w.ask(cmd="ready")
        wait_idle()
        per: dict[str, list[list[tuple[float, float]]]] = {k: [] for k in workers}
        order = list(workers)
        for i in range(rounds):
            for label in order[i % len(order):] + order[: i % len(order)]:
                reply = workers[label].ask(cmd="pairs", shape=[1, 3, 224, 224], seconds=2 * seconds)
                per[label].append([(s, r) for s, r in reply["pairs_ms"]])
    finally:
        for w in workers.values():
            w.close()
    out = {}
    for label, per_round in per.items():
        pairs = [p for r in per_round for p in r]
        ratio = statistics.median(s / r for s, r in pairs)
        extra = statistics.median(1e3 * (s - r) for s, r in pairs)
        session_rounds = [statistics.median(s for s, _ in r) for r in per_round]
        raw_rounds = [statistics.median(r for _, r in rp) for rp in per_round]
        out[label] = {"runtime": cands[label][0], "file": cands[label][1].name,
                      "session_ms": round(statistics.median(session_rounds), 4),
                      "raw_ms": round(statistics.median(raw_rounds), 4),
                      "quiet_session_ms": round(min(session_rounds), 4), "quiet_raw_ms": round(min(raw_rounds), 4),
                      "session_over_raw": round(ratio, 4), "extra_us": round(extra, 1),
                      "meets_goal": ratio <= 1.03 or extra <= 20, "pairs": len(pairs),
                      "session_rounds_ms": [round(v, 4) for v in session_rounds]}
    return out


def _against_alone(choice: Any, measured: dict[str, Any], stat: str) -> dict[str, Any]:
    """auto's delivered latency against the fastest raw fp32 candidate or anchor, and its table against
    each runtime's session latency measured here, on one statistic of the rounds (``stat``: "" for the
    median, "quiet_" for the best round)."""
    fp32 = {k: v for k, v in measured.items() if "int8" not in k and "uint8" not in k}
    fastest = min(fp32, key=lambda k: fp32[k][f"{stat}raw_ms"])
    delivered = measured[f"{choice.runtime} fp32"][f"{stat}session_ms"]
    table_vs_alone = {r: round(ms / measured[f"{r} fp32"][f"{stat}session_ms"], 4)
                      for r, ms in choice.timings_ms.items()}
    return {"delivered_ms": delivered, "fastest_raw": fastest, "fastest_raw_ms": fp32[fastest][f"{stat}raw_ms"],
            "speed_vs_fastest_raw": round(fp32[fastest][f"{stat}raw_ms"] / delivered, 4),
            "table_over_alone": table_vs_alone,
            "table_within_10pct": all(0.9 <= v <= 1.1 for v in table_vs_alone.values())}


def auto(name: str, refdata: Path, measured: dict[str, Any], threads: int) -> dict[str, Any]:
    """auto's choice from an empty cache, against the fastest raw fp32 candidate or anchor."""
    model = load_model(refdata / "models" / MODELS[name])
    with tempfile.TemporaryDirectory() as tmp:
        choice = choose_runtime(model, threads=threads, cache=Path(tmp) / "runtime.json")
    return {"choice": choice.runtime, "tied": choice.tied, "table_ms": choice.timings_ms, "spread": choice.spread,
            **_against_alone(choice, measured, ""), "quiet": _against_alone(choice, measured, "quiet_")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=0.4, help="timing per worker and kind in each round")
    ap.add_argument("--refdata", default=str(Path(__file__).resolve().parents[2] / "shared" / "refdata"))
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args()
    refdata = Path(args.refdata)
    threads = cpu_threads()
    os.environ.setdefault("MOBILENETS_CACHE", tempfile.mkdtemp(prefix="mobilenets-bench-"))  # fresh exports
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            measured = measure(candidates(name, refdata, Path(tmp)), threads, args.rounds, args.seconds)
            results[name] = {"candidates": measured, "auto": auto(name, refdata, measured, threads)}
            print(json.dumps({name: results[name]}), file=sys.stderr)
    print(json.dumps({"benchmark": "runtime_overhead", "threads": threads, "machine": machine(), "models": results}))


if __name__ == "__main__":
    main()
