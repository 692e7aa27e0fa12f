"""Wall-clock timing of a callable, shared by every measurement (latency, training throughput)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


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
