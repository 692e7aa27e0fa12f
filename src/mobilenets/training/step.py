"""The training step: forward, loss, backward, optimizer, schedule and EMA, shared by the training
loop and by ``mobilenets bench --train`` (:mod:`mobilenets.training.throughput`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..utils.device import Precision
from .config import ResolvedConfig
from .finetune import new_layers
from .optim import lr_lambda, make_optimizer, param_groups

#: ``criterion(forward, inputs, targets)``: runs the model (``forward``: it, or its DDP wrapper) and
#: returns the loss and a count of hits. The criterion calls the model because not every model's
#: forward is ``model(x)``: a Faster R-CNN computes its losses itself, from ``model(x, targets)``.
Criterion = Callable[[Callable[..., Any], torch.Tensor, Any], tuple[torch.Tensor, torch.Tensor]]  # (forward, x, y)


def cross_entropy(label_smoothing: float = 0.0) -> Criterion:
    """Classification: (loss, number of correct top-1 predictions)."""
    def loss(forward: Callable[..., Any], x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = forward(x)
        return F.cross_entropy(logits, y, label_smoothing=label_smoothing), (logits.detach().argmax(1) == y).sum()
    return loss


class TrainStep:
    """One optimization step.

    ``criterion(forward, inputs, targets)`` gives the loss and a count of hits (correct top-1
    predictions for classification); both come back as device tensors, so that the loop never
    waits for the device unless it wants to print.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                 precision: Precision, criterion: Criterion, channels_last: bool = True,
                 ema: AveragedModel | None = None, compiled: Callable[..., Any] | None = None) -> None:
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.forward = compiled if compiled is not None else model
        self.precision, self.channels_last, self.ema = precision, channels_last, ema
        self.criterion = criterion
        self.scaler = torch.amp.GradScaler(precision.device_type) if precision.needs_scaler else None

    def __call__(self, x: torch.Tensor, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.precision.autocast():
            loss, hits = self.criterion(self.forward, x, y)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return loss.detach(), hits


def build_train_step(model: nn.Module, cfg: ResolvedConfig, steps_per_epoch: int, device: torch.device,
                     precision: Precision, criterion: Criterion, forward: nn.Module | None = None) -> TrainStep:
    """Optimizer, schedule, EMA and (optionally) torch.compile for ``model``.

    ``forward`` is what the step calls (e.g. the DDP wrapper of ``model``); parameters, EMA and
    weight-decay groups come from the plain ``model`` so that their names are ours.
    """
    new = new_layers(model) if cfg.init and cfg.head_lr_mult != 1 else []
    groups = param_groups(model, cfg.weight_decay, cfg.decay_depthwise, new, cfg.lr * cfg.head_lr_mult)
    opt = make_optimizer(cfg.optimizer, groups, cfg.lr, momentum=cfg.momentum, rms_decay=cfg.rms_decay,
                         eps=cfg.opt_eps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lr_lambda(cfg.schedule, steps_per_epoch, cfg.epochs, cfg.warmup_epochs, cfg.lr_decay, cfg.lr_decay_epochs))
    ema = None
    if cfg.ema_decay > 0:
        ema = AveragedModel(model, device=device, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    fwd = forward if forward is not None else model
    compiled = torch.compile(fwd) if cfg.compile else fwd
    return TrainStep(model, opt, sched, precision, criterion, cfg.channels_last, ema, compiled)
