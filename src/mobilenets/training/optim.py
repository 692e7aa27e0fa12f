"""Optimizers, weight-decay groups and learning-rate schedules of the training recipes."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.optim import Optimizer


class RMSpropTF(Optimizer):
    """RMSProp as TensorFlow computes it (the optimizer both MobileNet papers trained with).

    It differs from ``torch.optim.RMSprop`` in three ways that matter at the papers' settings:
    the mean square starts at 1 (not 0), epsilon is added inside the square root, and the
    learning rate is applied inside the momentum buffer (so lr decay does not rescale momentum
    already accumulated). ``alpha`` is TF's ``decay`` (0.9 in the papers).
    """

    def __init__(self, params: Iterable, lr: float, alpha: float = 0.9, eps: float = 1.0,
                 momentum: float = 0.9, weight_decay: float = 0.0) -> None:
        if lr <= 0 or not 0 <= alpha < 1 or eps <= 0 or not 0 <= momentum < 1 or weight_decay < 0:
            raise ValueError("invalid RMSpropTF hyperparameters")
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if group["weight_decay"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if not state:
                    state["square_avg"] = torch.ones_like(p)
                    state["momentum_buffer"] = torch.zeros_like(p)
                sq = state["square_avg"]
                sq.mul_(group["alpha"]).addcmul_(grad, grad, value=1 - group["alpha"])
                step = grad / (sq + group["eps"]).sqrt_()
                buf = state["momentum_buffer"]
                buf.mul_(group["momentum"]).add_(step, alpha=group["lr"])
                p.sub_(buf)
        return loss


def is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels


def param_groups(model: nn.Module, weight_decay: float, decay_depthwise: bool = False,
                 new: Iterable[nn.Parameter] = (), new_lr: float | None = None) -> list[dict]:
    """Weight decay on conv and FC weights only: not on BN, biases or (by default) depthwise filters.

    Both papers: "very little or no weight decay on the depthwise filters since there are so
    few parameters in them"; TF-slim regularizes neither BN nor biases. With ``new_lr``, the ``new``
    parameters (the layers a fine-tune's init does not hold) get groups of their own at that lr, last.
    """
    new_ids = {id(p) for p in new} if new_lr is not None else set()
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {(n, d): [] for n in (False, True) for d in (True, False)}
    for m in model.modules():
        for name, p in m.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            decay = (name == "weight" and isinstance(m, (nn.Conv2d, nn.Linear))
                     and (decay_depthwise or not is_depthwise(m)))
            groups[id(p) in new_ids, decay].append(p)
    return [{"params": ps, "weight_decay": weight_decay if decay else 0.0, **({"lr": new_lr} if is_new else {})}
            for (is_new, decay), ps in groups.items() if ps]


def make_optimizer(name: str, groups: list[dict], lr: float, momentum: float = 0.9, rms_decay: float = 0.9,
                   eps: float = 1.0) -> Optimizer:
    if name == "rmsprop_tf":
        return RMSpropTF(groups, lr=lr, alpha=rms_decay, eps=eps, momentum=momentum)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; valid: rmsprop_tf, sgd, adamw")


def lr_lambda(schedule: str, steps_per_epoch: int, epochs: int, warmup_epochs: float = 0.0,
              decay_rate: float = 0.98, decay_epochs: float = 1.0) -> Callable[[int], float]:
    """Multiplier of the base lr at optimizer step ``step`` (a pure function: exact on resume).

    ``exponential``: ``decay_rate ** floor(epoch / decay_epochs)`` (the papers: x0.98 per epoch);
    ``cosine``: half-cosine from 1 to 0 over the run. Both after an optional linear warmup.
    """
    total = max(epochs * steps_per_epoch, 1)
    warm = int(round(warmup_epochs * steps_per_epoch))
    if schedule not in ("exponential", "cosine", "constant"):
        raise ValueError(f"unknown schedule {schedule!r}; valid: exponential, cosine, constant")

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if schedule == "cosine":
            t = (step - warm) / max(total - warm, 1)
            return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
        if schedule == "exponential":
            return decay_rate ** math.floor(step / steps_per_epoch / decay_epochs)
        return 1.0

    return f
