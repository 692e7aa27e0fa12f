"""Inference latency and throughput on this machine, with the cost model alongside (achieved
GFLOP/s and the fraction of this machine's measured fp32 GEMM peak), and latencies cached per
machine. The training step's speed is :func:`mobilenets.train.train_throughput`;
:func:`mobilenets.tradeoffs.bench` reports both."""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..analysis import profile
from ..models import check_input_size
from ..tasks import create_model, parse_model_name
from ..utils.device import cpu_features, cpu_name, cpu_threads
from ..utils.fsutil import atomic_write_text
from ..utils.timing import time_fn
from ..weights import load_model
from ..weights.published import PUBLISHED, cache_dir
from .session import open_session


@dataclass
class BenchResult:
    model: str
    runtime: str
    batch_size: int
    input_size: int
    threads: int
    latency_ms: float  # median per batch
    p90_ms: float
    img_per_s: float
    madds: int  # per image
    gflops: float  # achieved: 2 x MAdds x images / s
    peak_gflops: float  # measured fp32 GEMM peak of this machine (same threads)
    peak_fraction: float
    cpu: str = ""
    cpu_features: str = ""  # int8 and bf16 speed depend on them (VNNI, AVX512-BF16, AMX)
    train_img_per_s: float | None = None
    train_precision: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


@lru_cache(maxsize=4)
def gemm_peak_gflops(threads: int, n: int = 1024, seconds: float = 0.5) -> float:
    """fp32 GEMM throughput of this machine at ``threads`` (the best of several timed matmuls)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        for _ in range(3):
            a @ b
        best, end = 0.0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            a @ b
            best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
        return best
    finally:
        torch.set_num_threads(old)


def resolve_model(model_or_weights: str | Path | torch.nn.Module) -> torch.nn.Module | str:
    """A model object: weights (file or published id) are loaded; a model name builds random weights;
    an exported ``.onnx`` file stays a path."""
    if isinstance(model_or_weights, torch.nn.Module):
        return model_or_weights
    src = str(model_or_weights)
    if src.endswith(".onnx"):
        return src
    if Path(src.split("+")[0]).exists() or src in PUBLISHED:
        return load_model(src)
    return create_model(src)


def bench(
    model_or_weights: str | Path | torch.nn.Module,
    *,
    runtime: str = "torch",
    batch_size: int = 1,
    input_size: int | None = None,
    threads: int | None = None,
    warmup: int = 10,
    iters: int = 50,
    device: str = "cpu",
) -> BenchResult:
    """Median/p90 latency of one batch through ``runtime`` (a model name gets random weights)."""
    if batch_size < 1:
        raise ValueError(f"invalid batch size {batch_size}; it must be >= 1")
    if input_size is not None:
        check_input_size(input_size)
    threads = threads or cpu_threads()
    obj = resolve_model(model_or_weights)
    session = open_session(obj, runtime, device=device, threads=threads)
    cfg = session.config if session.config is not None else getattr(obj, "config", None)
    if cfg is None:
        name = session.meta.get("model")
        if not name:
            raise ValueError("this ONNX file records no model name; bench the weights instead")
        cfg = parse_model_name(name)
    size = cfg.resolution if input_size is None else check_input_size(input_size)
    x = np.random.default_rng(0).standard_normal((batch_size, cfg.in_chans, size, size)).astype(np.float32)
    xt = torch.from_numpy(x)
    times = time_fn(lambda: session.run(xt if runtime == "torch" else x), warmup, iters)
    med, p90 = statistics.median(times), float(np.percentile(times, 90))
    madds = profile(cfg, input_size=size).madds
    peak = gemm_peak_gflops(threads)
    gflops = 2 * madds * batch_size / med / 1e9
    cpu = cpu_features()
    return BenchResult(cfg.name, runtime, batch_size, size, threads, med * 1e3, p90 * 1e3, batch_size / med, madds,
                       gflops, peak, gflops / peak, cpu.name, cpu.summary)


def machine_key(runtime: str, batch_size: int, threads: int) -> str:
    """What a latency depends on besides the model: CPU, threads, library versions, runtime, batch."""
    parts = [cpu_name(), str(threads), torch.__version__, runtime, str(batch_size)]
    if runtime == "onnxruntime":
        import onnxruntime

        parts.append(onnxruntime.__version__)
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def measure_latencies(models: Sequence[str], runtime: str = "torch", batch_size: int = 1, remeasure: bool = False,
                      cache: Path | None = None, progress: Callable[[str], None] | None = None) -> dict[str, float]:
    """Median batch latency (ms) of each model on this machine, cached in a JSON file."""
    threads = cpu_threads()
    cache = cache or cache_dir() / "latency.json"
    key = machine_key(runtime, batch_size, threads)
    data: dict[str, dict[str, float]] = json.loads(cache.read_text()) if cache.is_file() else {}
    known = {} if remeasure else dict(data.get(key, {}))
    out = {}
    for m in models:
        if m not in known:
            if progress:
                progress(m)
            known[m] = round(bench(m, runtime=runtime, batch_size=batch_size, threads=threads).latency_ms, 4)
            data[key] = known
            cache.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(cache, json.dumps(data, indent=1))
        out[m] = known[m]
    return out
