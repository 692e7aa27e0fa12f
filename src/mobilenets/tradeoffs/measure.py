"""One measurement of a model on this machine: inference latency (through any runtime) and, on
request, the training step's images/s - what ``mobilenets bench`` prints."""

from __future__ import annotations

from pathlib import Path

import torch

from ..deploy.bench import BenchResult, bench_inference
from ..tasks import parse_model_name
from ..training import train_throughput


def bench(model_or_weights: str | Path | torch.nn.Module, *, runtime: str = "torch", batch_size: int = 1,
          input_size: int | None = None, threads: int | None = None, warmup: int = 10, iters: int = 50,
          train: bool = False, train_amp: str = "auto", device: str = "cpu", remeasure: bool = False) -> BenchResult:
    """Median/p90 latency of one batch through ``runtime``; with ``train=True`` also the training
    step's images/s, measured with the exact step ``mobilenets train`` runs."""
    res = bench_inference(model_or_weights, runtime=runtime, batch_size=batch_size, input_size=input_size,
                          threads=threads, warmup=warmup, iters=iters, device=device, remeasure=remeasure)
    if train:
        cfg = getattr(model_or_weights, "config", None) or parse_model_name(res.model)
        res.train_img_per_s, res.train_precision = train_throughput(cfg, batch_size, res.input_size, train_amp, device)
    return res
