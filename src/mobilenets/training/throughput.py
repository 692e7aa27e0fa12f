"""Images/s of the training step that ``mobilenets train`` runs (what ``bench --train`` reports)."""

from __future__ import annotations

import statistics

import torch

from ..models import MobileNet, ModelConfig
from ..utils.device import pick_device, pick_precision
from ..utils.timing import time_fn
from .config import TrainConfig
from .step import build_train_step, cross_entropy


def train_throughput(cfg: ModelConfig, batch_size: int, input_size: int, amp: str = "auto", device: str = "cpu",
                     steps: int = 8, warmup: int = 3) -> tuple[float, str]:
    """(images/s, precision name) of the same TrainStep, with the same options, as training."""
    dev = pick_device(device)
    precision = pick_precision(amp, dev)
    model = MobileNet(cfg).to(dev).to(memory_format=torch.channels_last).train()
    tcfg = TrainConfig(model=cfg.name, data="fake", epochs=1, batch_size=batch_size, amp=amp).resolved()
    step = build_train_step(model, tcfg, steps + warmup, dev, precision, cross_entropy(tcfg.label_smoothing))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, cfg.in_chans, input_size, input_size, generator=g).to(dev)
    y = torch.randint(0, max(cfg.num_classes, 1), (batch_size,), generator=g).to(dev)

    def one() -> None:
        loss, _ = step(x, y)
        loss.item()  # wait for the device

    times = time_fn(one, warmup, steps, min_seconds=2.0)
    return batch_size / statistics.median(times), precision.name
