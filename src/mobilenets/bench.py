"""Latency and throughput on this machine, with the cost model alongside (achieved GFLOP/s and the
fraction of this machine's measured fp32 GEMM peak)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .cost import profile
from .device import cpu_features, cpu_threads
from .runtime import open_session
from .spec import check_input_size


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


def time_fn(fn: Callable[[], Any], warmup: int = 10, iters: int = 50, min_seconds: float = 1.0) -> list[float]:
    """Wall times (s) of ``fn`` after warm-up: at least ``iters`` runs and ``min_seconds`` in all."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < iters or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def _resolve(model_or_weights: str | Path | torch.nn.Module) -> Any:
    """A model object: weights (file or published id) are loaded; a model name builds random weights."""
    from .registry import create_model

    if isinstance(model_or_weights, torch.nn.Module):
        return model_or_weights
    src = str(model_or_weights)
    if src.endswith(".onnx"):
        return src
    from .weights.hub import PUBLISHED

    if Path(src.split("+")[0]).exists() or src in PUBLISHED:
        from .weights import load_model

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
    train: bool = False,
    train_amp: str = "auto",
    device: str = "cpu",
) -> BenchResult:
    """Median/p90 latency of one batch through ``runtime``; with ``train=True`` also the training
    step's images/s, measured with the exact step ``mobilenets train`` runs."""
    if batch_size < 1:
        raise ValueError(f"invalid batch size {batch_size}; it must be >= 1")
    if input_size is not None:
        check_input_size(input_size)
    threads = threads or cpu_threads()
    obj = _resolve(model_or_weights)
    session = open_session(obj, runtime, device=device, threads=threads)
    cfg = session.config if session.config is not None else getattr(obj, "config", None)
    if cfg is None:
        name = session.meta.get("model")
        if not name:
            raise ValueError("this ONNX file records no model name; bench the weights instead")
        from .registry import parse_name

        cfg = parse_name(name)
    size = cfg.resolution if input_size is None else check_input_size(input_size)
    x = np.random.default_rng(0).standard_normal((batch_size, cfg.in_chans, size, size)).astype(np.float32)
    xt = torch.from_numpy(x)
    times = time_fn(lambda: session.run(xt if runtime == "torch" else x), warmup, iters)
    med, p90 = statistics.median(times), float(np.percentile(times, 90))
    madds = profile(cfg, input_size=size).madds
    peak = gemm_peak_gflops(threads)
    gflops = 2 * madds * batch_size / med / 1e9
    cpu = cpu_features()
    res = BenchResult(cfg.name, runtime, batch_size, size, threads, med * 1e3, p90 * 1e3, batch_size / med, madds,
                      gflops, peak, gflops / peak, cpu.name, cpu.summary)
    if train:
        res.train_img_per_s, res.train_precision = train_throughput(cfg, batch_size, size, train_amp, device)
    return res


def train_throughput(cfg: Any, batch_size: int, input_size: int, amp: str = "auto", device: str = "cpu",
                     steps: int = 8, warmup: int = 3) -> tuple[float, str]:
    """Images/s of the training step that ``mobilenets train`` runs (same TrainStep, same options)."""
    from .device import pick_device, pick_precision
    from .model import MobileNet
    from .training import TrainConfig, build_train_step

    dev = pick_device(device)
    precision = pick_precision(amp, dev)
    model = MobileNet(cfg).to(dev).to(memory_format=torch.channels_last).train()
    tcfg = TrainConfig(model=cfg.name, data="fake", epochs=1, batch_size=batch_size, amp=amp).resolved()
    step = build_train_step(model, tcfg, steps_per_epoch=steps + warmup, device=dev, precision=precision)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, cfg.in_chans, input_size, input_size, generator=g).to(dev)
    y = torch.randint(0, max(cfg.num_classes, 1), (batch_size,), generator=g).to(dev)

    def one() -> None:
        loss, _ = step(x, y)
        loss.item()  # wait for the device

    times = time_fn(one, warmup, steps, min_seconds=2.0)
    return batch_size / statistics.median(times), precision.name
