"""Wall-clock timing of a callable, shared by every measurement (latency, training throughput)."""

from __future__ import annotations

import statistics
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


def time_pairs(a: Callable[[], Any], b: Callable[[], Any], seconds: float, block_seconds: float = 0.02,
               warmup: int = 3) -> list[tuple[float, float]]:
    """Median wall times (s) of ``a`` and ``b`` in short alternating blocks, one pair per two blocks
    (``a`` then ``b``, then ``b`` then ``a``, ...), for ``seconds`` in all.

    Why: on a shared machine a neighbour's load comes and goes within a second, so two medians taken
    0.4 s apart can differ by 2x; a pair's two blocks lie ``block_seconds`` apart and mostly see the
    same load, and the alternating order cancels a steady trend. Compare within pairs.
    """
    for _ in range(warmup):
        a()
        b()

    def block(fn: Callable[[], Any]) -> float:
        return statistics.median(time_fn(fn, warmup=0, iters=1, min_seconds=block_seconds))

    pairs: list[tuple[float, float]] = []
    start = time.perf_counter()
    while len(pairs) < 2 or time.perf_counter() - start < seconds:
        if len(pairs) % 2:
            tb = block(b)
            pairs.append((block(a), tb))
        else:
            ta = block(a)
            pairs.append((ta, block(b)))
    return pairs
