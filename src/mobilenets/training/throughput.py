"""Images/s of the training step that ``mobilenets train`` runs (what ``bench --train`` reports)."""

from __future__ import annotations

import statistics
from typing import Any

import torch

from ..tasks import TaskConfig, build_model, task_of
from ..utils.device import pick_device, pick_precision
from ..utils.timing import time_fn
from .config import TrainConfig
from .step import build_train_step
from .tasks import TASKS


def train_throughput(cfg: TaskConfig, batch_size: int, input_size: int, amp: str = "auto", device: str = "cpu",
                     steps: int = 8, warmup: int = 3) -> tuple[float, str]:
    """(images/s, precision name) of the same TrainStep, with the same options and loss, as training
    (a detector's targets: one box per image; a segmenter's: random class masks)."""
    dev = pick_device(device)
    precision = pick_precision(amp, dev)
    model = build_model(cfg).to(dev).to(memory_format=torch.channels_last).train()
    task = task_of(cfg)
    tcfg = TrainConfig(model=cfg.name, task=task, data="fake" if task == "classification" else "digits", epochs=1,
                       batch_size=batch_size, amp=amp).resolved()
    step = build_train_step(model, tcfg, steps + warmup, dev, precision, TASKS[task].criterion(model, tcfg))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, cfg.in_chans, input_size, input_size, generator=g).to(dev)
    y: Any = torch.randint(0, max(cfg.num_classes, 1), (batch_size,), generator=g).to(dev)
    if task == "detection":
        box = torch.tensor([[0.2, 0.3, 0.6, 0.8]]) * input_size
        y = [{"boxes": box, "labels": torch.tensor([1]), "ignore": torch.tensor([False])}] * batch_size
    elif task == "segmentation":
        masks = torch.randint(0, cfg.num_classes, (batch_size, input_size, input_size), generator=g)
        y = [{"mask": m} for m in masks]

    def one() -> None:
        loss, _ = step(x, y)
        loss.item()  # wait for the device

    times = time_fn(one, warmup, steps, min_seconds=2.0)
    return batch_size / statistics.median(times), precision.name
