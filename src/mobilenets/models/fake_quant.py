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
from typing import NamedTuple, cast

import numpy as np
import torch
from torch import nn
from torch.func import functional_call
from torch.utils.hooks import RemovableHandle

from .layers import ConvBNAct


class ActivationQuant(NamedTuple):
    """One tensor's quantization grid: ``real = (q - zero_point) * scale`` with ``qmin <= q <= qmax``."""

    scale: float
    zero_point: int
    qmin: int
    qmax: int

    @classmethod
    def of(cls, grid: Sequence[float]) -> ActivationQuant:
        """From a stored ``[scale, zero_point, qmin, qmax]``."""
        return cls(float(grid[0]), *map(int, grid[1:]))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.fake_quantize_per_tensor_affine(x.float(), self.scale, self.zero_point, self.qmin, self.qmax)
        return y.to(x.dtype)

    def integers(self, x: torch.Tensor) -> torch.Tensor:
        """The stored integers of ``x``, a tensor already on this grid."""
        return torch.round(x.double() / self.scale).long() + self.zero_point

    def real(self, q: torch.Tensor) -> torch.Tensor:
        """Stored integers (clamped to the range) back to the values they stand for."""
        return (q.clamp(self.qmin, self.qmax) - self.zero_point) * self.scale


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

    return [modules[name].register_forward_hook(hook([ActivationQuant.of(g) for g in grids]))
            for name, grids in table.items()]


# ----------------------------------------------------------------------------- integer kernels, exactly
# Rounding each output to its grid leaves the float conv's own rounding: a value within 1e-6 of a
# rounding boundary lands on the other side, and deep networks amplify those flips (Google's DeepLab
# logits: only 29-45% bit-identical to LiteRT's). XNNPACK, which LiteRT runs on x86 CPUs, computes a
# uint8 conv as an exact int32 sum then ``rint(float32(acc) * float32(s_in * s_w / s_out))``, and a
# residual add in 20-bit fixed point; the hooks below redo exactly that from the layer's input.


def _integer_conv_hook(input_grid: Sequence[float], weight_scales: Sequence[float], output_grid: Sequence[float]
                       ) -> Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], torch.Tensor]:
    s_in = float(input_grid[0])
    out = ActivationQuant.of(output_grid)
    ws = torch.tensor(list(weight_scales), dtype=torch.float64)
    scale = torch.from_numpy(np.float32(s_in) * np.asarray(weight_scales, dtype=np.float32) / np.float32(out.scale))

    def conv_exactly(module: nn.Module, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> torch.Tensor:
        m = cast(ConvBNAct, module)
        conv = m.conv
        shape = (-1,) + (1,) * (conv.weight.dim() - 1)
        q = torch.round(inputs[0].double() / s_in)  # the input's integers, less its zero point
        w = torch.round(conv.weight.double() / ws.reshape(shape))
        bias = conv.bias if conv.bias is not None else cast(nn.BatchNorm2d, m.bn).bias  # ported files: BN's shift
        b = torch.round(bias.double() / (s_in * ws))
        params = {"weight": w} if conv.bias is None else {"weight": w, "bias": torch.zeros_like(b)}
        acc = functional_call(conv, params, (q,)) + b[:, None, None]  # float64 sums of integers: exact
        y = out.real(torch.round(acc.float() * scale[:, None, None]) + out.zero_point)
        return out(m.act(y)).to(inputs[0].dtype)  # a fused ReLU/ReLU6 clamps on the grid

    return conv_exactly


def _integer_add_hook(a_grid: Sequence[float], b_grid: Sequence[float], output_grid: Sequence[float]
                      ) -> Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], torch.Tensor]:
    """A residual block's ``x + f(x)``: XNNPACK's uint8 add (multipliers with 20 significant bits)."""
    a, b, out = ActivationQuant.of(a_grid), ActivationQuant.of(b_grid), ActivationQuant.of(output_grid)
    a_ratio, b_ratio = np.float32(a.scale) / np.float32(out.scale), np.float32(b.scale) / np.float32(out.scale)
    shift = 20 - (int(np.float32(max(a_ratio, b_ratio)).view(np.uint32) >> 23) - 127)
    am, bm = (int(np.rint(r * np.float32(2.0 ** shift))) for r in (a_ratio, b_ratio))
    bias = (1 << (shift - 1)) - am * a.zero_point - bm * b.zero_point

    def add_exactly(_m: nn.Module, inputs: tuple[torch.Tensor, ...], y: torch.Tensor) -> torch.Tensor:
        x = inputs[0]
        qb = b.integers(y - x)  # the residual branch, on its own grid
        return out.real(((bias + a.integers(x) * am + qb * bm) >> shift) + out.zero_point).to(x.dtype)

    return add_exactly


def _integer_convert_hook(input_grid: Sequence[float], output_grid: Sequence[float]
                          ) -> Callable[[nn.Module, object, torch.Tensor], torch.Tensor]:
    """A module's output moved to another grid (a QUANTIZE between two uint8 grids, as before a
    concatenation): XNNPACK's convert, a multiplier of 8 fractional bits."""
    inp, out = ActivationQuant.of(input_grid), ActivationQuant.of(output_grid)
    m = int(np.rint(np.float32(256.0) * (np.float32(inp.scale) / np.float32(out.scale))))
    bias = (out.zero_point << 8) - m * inp.zero_point + 0x80

    def convert_exactly(_m: nn.Module, _inputs: object, y: torch.Tensor) -> torch.Tensor:
        return out.real((bias + inp.integers(y) * m) >> 8).to(y.dtype)

    return convert_exactly


def emulate_integer_kernels(model: nn.Module, kernels: Mapping[str, Mapping[str, Sequence[Sequence[float]]]]
                            ) -> list[RemovableHandle]:
    """Compute the named convs (``kernels["convs"][name] = [input_grid, weight_scales, output_grid]``)
    and residual adds (``kernels["adds"][name] = [a_grid, b_grid, output_grid]``) as a uint8 file's
    integer kernels do, bit for bit, then move the outputs in ``kernels["converts"][name] = [grid,
    new_grid]`` to their new grid; returns the hooks' handles."""
    modules = dict(model.named_modules())
    handles = [modules[name].register_forward_hook(_integer_conv_hook(*spec))
               for name, spec in kernels.get("convs", {}).items() if name in modules]
    handles += [modules[name].register_forward_hook(_integer_add_hook(*spec))
                for name, spec in kernels.get("adds", {}).items() if name in modules]
    handles += [modules[name].register_forward_hook(_integer_convert_hook(*spec))
                for name, spec in kernels.get("converts", {}).items() if name in modules]
    return handles
