"""Inference latency and throughput on this machine, with the cost model alongside (achieved
GFLOP/s and the fraction of an upper bound of this machine's fp32 throughput), and latencies cached
per machine. The training step's speed is :func:`mobilenets.training.train_throughput`;
:func:`mobilenets.tradeoffs.bench` reports both."""

from __future__ import annotations

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
from ..tasks import kind_of, parse_model_name
from ..utils.device import CpuFeatures, cpu_features, cpu_max_mhz, cpu_threads
from ..utils.timing import time_fn
from ..weights import load_model
from ..weights.published import PUBLISHED
from .measurements import Measurements
from .runtime_choice import FILE_RUNTIMES, candidate_runtimes, choose_runtime, machine_key, open_session


@dataclass
class BenchResult:
    model: str
    runtime: str
    batch_size: int
    input_size: int
    threads: int
    latency_ms: float  # median per batch, through the session, on its bound input (Session.bind)
    p90_ms: float
    img_per_s: float
    madds: int  # per image
    gflops: float  # achieved: 2 x MAdds x images / s
    peak_gflops: float  # upper bound of this machine's fp32 throughput (same threads): see peak_gflops
    peak_fraction: float
    cpu: str = ""
    cpu_features: str = ""  # int8 and bf16 speed depend on them (VNNI, AVX512-BF16, AMX)
    train_img_per_s: float | None = None
    train_precision: str | None = None
    raw_latency_ms: float | None = None  # the runtime's own call (e.g. LiteRT's invoke) on the same input
    runtime_timings_ms: dict[str, float] | None = None  # --runtime auto: each runtime, measured alone
    runtime_spread: dict[str, float] | None = None  # --runtime auto: (max - min) / median of its rounds
    runtime_measured_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def fma_peak_gflops(threads: int, features: CpuFeatures, mhz: float | None) -> float | None:
    """fp32 FLOP/s no code can exceed: cores x 2 FMA units x SIMD lanes (8 with AVX2, 16 with
    AVX-512, 4 with NEON) x 2 FLOPs x the highest reported clock (None if the clock is unknown)."""
    if not mhz:
        return None
    lanes = 16 if features.avx512 else 8 if features.avx2 else 4
    return threads * 2 * lanes * 2 * mhz / 1e3


@lru_cache(maxsize=4)
def gemm_peak_gflops(threads: int, seconds: float = 0.3) -> float:
    """The best fp32 GEMM throughput of this machine at ``threads``, over a few square and
    MobileNet-like (1x1 conv) shapes."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        best = 0.0
        for m, k, n in ((1024, 1024, 1024), (2048, 2048, 2048), (3136, 256, 256), (12544, 96, 96)):
            a, b = torch.randn(m, k), torch.randn(k, n)
            for _ in range(2):
                a @ b
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                t = time.perf_counter()
                a @ b
                best = max(best, 2 * m * k * n / (time.perf_counter() - t) / 1e9)
        return best
    finally:
        torch.set_num_threads(old)


def peak_gflops(threads: int) -> float:
    """An upper bound of this machine's fp32 throughput: the FMA bound, or the best GEMM if higher
    (a clock that boosts beyond what the CPU reports)."""
    fma = fma_peak_gflops(threads, cpu_features(), cpu_max_mhz())
    return max(fma or 0.0, gemm_peak_gflops(threads))


def peak_fraction(gflops: float, peak: float) -> float:
    """Achieved over peak, never above 1: a bound that a model exceeds was not a bound."""
    return min(1.0, gflops / peak)


def resolve_model(model_or_weights: str | Path | torch.nn.Module) -> torch.nn.Module | str:
    """A model object: weights (file or published id) are loaded; a model name builds random weights;
    an exported ``.onnx``, ``.tflite`` or ``.pte`` file stays a path (its session reads it)."""
    if isinstance(model_or_weights, torch.nn.Module):
        return model_or_weights
    src = str(model_or_weights)
    if src.endswith(tuple(FILE_RUNTIMES)):
        return src
    if Path(src.split("+")[0]).exists() or src in PUBLISHED:
        return load_model(src)
    return kind_of(src).create(src)


def bench_inference(
    model_or_weights: str | Path | torch.nn.Module,
    *,
    runtime: str = "torch",
    batch_size: int = 1,
    input_size: int | None = None,
    threads: int | None = None,
    warmup: int = 10,
    iters: int = 50,
    device: str = "cpu",
    remeasure: bool = False,
) -> BenchResult:
    """Median/p90 latency of one batch through ``runtime`` (a model name gets random weights), with the
    runtime's own call on the same input beside it (sessions and raw calls alternate in rounds);
    with ``auto``, the runtime measured fastest for the model (its table is in the result;
    ``remeasure`` refreshes it)."""
    if batch_size < 1:
        raise ValueError(f"invalid batch size {batch_size}; it must be >= 1")
    if input_size is not None:
        check_input_size(input_size)
    threads = threads or cpu_threads()
    obj = resolve_model(model_or_weights)
    choice = None
    if runtime == "auto" and (isinstance(obj, torch.nn.Module) or len(candidate_runtimes(obj)) > 1):
        choice = choose_runtime(obj, batch_size, threads=threads, device=device, remeasure=remeasure)
        runtime = choice.runtime
    session = open_session(obj, runtime, device=device, threads=threads, batch_size=batch_size)
    cfg = session.config if session.config is not None else getattr(obj, "config", None)
    if cfg is None:
        name = session.meta.get("model")
        if not name:
            raise ValueError("this ONNX file records no model name; bench the weights instead")
        cfg = parse_model_name(name)
    trained = session.meta.get("preprocessing", {}).get("input_size", cfg.resolution)  # what an export was made for
    size = trained if input_size is None else check_input_size(input_size)
    x = np.random.default_rng(0).standard_normal((batch_size, cfg.in_chans, size, size)).astype(np.float32)
    raw = session.raw(x) if batch_size == 1 else None  # raw calls run one image
    bound = session.bind(x)  # the runtime's own input array, in its layout and dtype
    times, raw_times = [], []
    for _ in range(3):  # alternating blocks: noise hits both alike
        times += time_fn(lambda: session.run(bound, session.layout), warmup, max(1, iters // 3), 0.35)
        if raw is not None:
            raw_times += time_fn(raw, warmup, max(1, iters // 3), 0.35)
    med, p90 = statistics.median(times), float(np.percentile(times, 90))
    madds = profile(cfg, input_size=size).madds
    peak = peak_gflops(threads)
    gflops = 2 * madds * batch_size / med / 1e9
    cpu = cpu_features()
    return BenchResult(cfg.name, session.name, batch_size, size, threads, med * 1e3, p90 * 1e3, batch_size / med,
                       madds, gflops, peak, peak_fraction(gflops, peak), cpu.name, cpu.summary,
                       raw_latency_ms=statistics.median(raw_times) * 1e3 if raw_times else None,
                       runtime_timings_ms=choice.timings_ms if choice else None,
                       runtime_spread=choice.spread if choice else None,
                       runtime_measured_at=choice.measured_at if choice else None)


def measure_latencies(models: Sequence[str], runtime: str = "torch", batch_size: int = 1, remeasure: bool = False,
                      cache: Path | None = None, progress: Callable[[str], None] | None = None) -> dict[str, float]:
    """Median batch latency (ms) of each model on this machine, cached (:class:`Measurements`)."""
    threads = cpu_threads()
    store = Measurements(cache)
    key = machine_key(runtime, batch_size, threads)
    known: dict[str, float] = {} if remeasure else store.read("latency", key)
    out = {}
    for m in models:
        if m not in known:
            if progress:
                progress(m)
            known[m] = round(bench_inference(m, runtime=runtime, batch_size=batch_size, threads=threads).latency_ms, 4)
            store.write("latency", key, known)
        out[m] = known[m]
    return out
