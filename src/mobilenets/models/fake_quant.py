"""Emulating a quantized file's activations in a float model.

A uint8/int8 TFLite model rounds every op's output to its own grid (scale, zero point). Our float
port of such a file computes the same convolutions without that rounding, so boxes and scores
drift slightly from what the device outputs. Rounding the same module outputs with the file's
grids (``torch.fake_quantize_per_tensor_affine``, via forward hooks) reproduces the device: this
is how a user checks what a quantized model will output before shipping it, and how the tests
hold our detector to Google's runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle


class ActivationQuant(NamedTuple):
    """One tensor's quantization grid: ``real = (q - zero_point) * scale`` with ``qmin <= q <= qmax``."""

    scale: float
    zero_point: int
    qmin: int
    qmax: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.fake_quantize_per_tensor_affine(x.float(), self.scale, self.zero_point, self.qmin, self.qmax)
        return y.to(x.dtype)


def emulate_activation_quantization(model: nn.Module, table: Mapping[str, Sequence[Sequence[float]]]
                                    ) -> list[RemovableHandle]:
    """Round the outputs of the named modules to their grids (one grid per output: a module that
    returns a tuple of tensors has one per element); returns the hooks' handles (``.remove()`` undoes it)."""
    modules = dict(model.named_modules())
    missing = sorted(set(table) - set(modules))
    if missing:
        raise ValueError(f"no module named {missing[:3]} in {type(model).__name__} (the grids are for another "
                         f"architecture)")

    Output = torch.Tensor | tuple[torch.Tensor, ...]

    def hook(grids: list[ActivationQuant]) -> Callable[[nn.Module, object, Output], Output]:
        def round_outputs(_module: nn.Module, _inputs: object, out: Output) -> Output:
            if isinstance(out, torch.Tensor):
                return grids[0](out)
            return tuple(g(t) for g, t in zip(grids, out, strict=True))
        return round_outputs

    return [modules[name].register_forward_hook(hook([ActivationQuant(float(g[0]), *map(int, g[1:]))
                                                      for g in grids]))
            for name, grids in table.items()]
