"""Images/s of the training step that ``mobilenets train`` runs (what ``bench --train`` reports)."""

from __future__ import annotations

import statistics
from typing import Any

import torch

from ..tasks import TaskConfig, build_model, kind_of
from ..utils.device import pick_device, pick_precision
from ..utils.timing import time_fn
from .config import TrainConfig
from .fast_backward import use_fast_depthwise_backward
from .step import build_train_step
from .tasks import TASKS


def train_throughput(cfg: TaskConfig, batch_size: int, input_size: int, amp: str = "auto", device: str = "cpu",
                     steps: int = 8, warmup: int = 3) -> tuple[float, str]:
    """(images/s, precision name) of the same TrainStep, with the same options and loss, as training
    (a detector's targets: one box per image; a segmenter's: random class masks)."""
    dev = pick_device(device)
    precision = pick_precision(amp, dev)
    model = build_model(cfg).to(dev).to(memory_format=torch.channels_last).train()
    use_fast_depthwise_backward(model)  # as training does
    kind = kind_of(cfg)
    task = TASKS[kind.task]
    tcfg = TrainConfig(model=cfg.name, task=kind.task, data=task.synthetic_data, epochs=1, batch_size=batch_size,
                       amp=amp).resolved()
    step = build_train_step(model, tcfg, steps + warmup, dev, precision, task.criterion(model, tcfg))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, cfg.in_chans, input_size, input_size, generator=g).to(dev)
    y: Any = kind.example_targets(cfg, batch_size, input_size, g)
    if isinstance(y, torch.Tensor):
        y = y.to(dev)

    def one() -> None:
        loss, _ = step(x, y)
        loss.item()  # wait for the device

    times = time_fn(one, warmup, steps, min_seconds=2.0)
    return batch_size / statistics.median(times), precision.name
