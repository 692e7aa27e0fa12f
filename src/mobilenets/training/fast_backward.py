"""Training a strided depthwise conv in bf16 on a CPU without the slow transposed-conv kernel.

oneDNN's bf16 channels-last kernel for a strided depthwise conv's input gradient is far slower than
the forward conv on AVX512-BF16 CPUs without AMX. Training swaps those layers for
:class:`FastBackwardConv2d` (:func:`use_fast_depthwise_backward`), whose backward runs the fast
stride-1 forward kernel instead; the models themselves stay plain ``nn.Conv2d`` for eval and export.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models.layers import Conv2dSame
from ..utils import device


class _StridedDepthwiseConv(torch.autograd.Function):
    """Depthwise conv whose input gradient is a stride-1 conv over the zero-upsampled gradient.

    The input gradient of a strided depthwise conv is a transposed conv; oneDNN's bf16 channels-last
    kernel for it runs 15-60x slower than the forward conv on AVX512-BF16 CPUs without AMX (140 ms
    vs 5 ms for 96 channels at 112x112, batch 32): a quarter of a V2 training step. Scattering the gradient into
    a zero tensor of the input's size and running the fast stride-1 forward kernel with the flipped
    filter gives the same numbers (fp32 accumulation, one rounding) several times faster.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int],
                padding: tuple[int, int]) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv2d(x, weight, None, stride, padding, 1, x.shape[1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        gw = None
        if ctx.needs_input_grad[1]:
            gw = torch.ops.aten.convolution_backward(grad, x, weight, None, ctx.stride, ctx.padding, (1, 1), False,
                                                     (0, 0), x.shape[1], (False, True, False))[1]
        gx = _upsampled_input_grad(grad, weight, x.shape, ctx.stride, ctx.padding) if ctx.needs_input_grad[0] else None
        return gx, gw, None, None


def _upsampled_input_grad(grad: torch.Tensor, weight: torch.Tensor, in_shape: torch.Size,
                          stride: tuple[int, int], padding: tuple[int, int]) -> torch.Tensor:
    n, c, ho, wo = grad.shape
    (kh, kw), (sh, sw), (ph, pw) = weight.shape[-2:], stride, padding
    top, left = kh - 1 - ph, kw - 1 - pw  # the transposed conv's padding
    rows = in_shape[2] + kh - 1  # so that a valid stride-1 conv returns the input's size
    cols = in_shape[3] + kw - 1
    up = grad.new_zeros(n, rows, cols, c).permute(0, 3, 1, 2)  # channels-last, like the kernels want
    up[:, :, top:top + (ho - 1) * sh + 1:sh, left:left + (wo - 1) * sw + 1:sw] = grad
    return F.conv2d(up, weight.flip(-1, -2), None, 1, 0, 1, c)


class FastBackwardConv2d(nn.Conv2d):
    """A strided depthwise ``nn.Conv2d`` whose bf16 training on CPU takes ``_StridedDepthwiseConv``
    (swapped in by :func:`use_fast_depthwise_backward`); same parameters and keys, and the plain
    path in eval mode, in fp32 and where bf16 is emulated."""

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self._fast_backward_applies(x, weight, bias):
            return self._fast_backward_conv(x, weight)
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def _fast_backward_applies(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
        """Training a strided depthwise layer in bf16 on a CPU that computes bf16 natively.

        fp32 keeps the native kernel, which is fine; so does emulated bf16 (AVX2, AVX-512 without
        BF16), where every kernel is slow and the native one is no worse. So do maps smaller than
        the kernel (an SSD's last extra layers): the native kernel is fast there, and oneDNN's bf16
        weight gradient of a 1x1 input came out NaN in some runs (torch 2.14.1, AVX512-BF16).
        """
        if not (self.training and bias is None and x.device.type == "cpu"
                and torch.is_grad_enabled() and isinstance(self.padding, tuple)
                and x.shape[-2] >= self.kernel_size[0] and x.shape[-1] >= self.kernel_size[1]
                and not torch.compiler.is_compiling()):
            return False
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else weight.dtype
        return dtype == torch.bfloat16 and device.cpu_features().native_bf16

    def _fast_backward_conv(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        dtype = torch.bfloat16  # cast as autocast would for a conv
        with torch.autocast("cpu", enabled=False):
            return _StridedDepthwiseConv.apply(x.to(dtype), weight.to(dtype), self.stride, self.padding)


class FastBackwardConv2dSame(Conv2dSame, FastBackwardConv2d):
    """:class:`FastBackwardConv2d` with TF "SAME" padding (its ``_conv_forward`` pads, then this convolves)."""


def is_strided_depthwise(conv: nn.Conv2d) -> bool:
    return conv.groups == conv.in_channels == conv.out_channels and conv.stride != (1, 1) and conv.dilation == (1, 1)


def use_fast_depthwise_backward(model: nn.Module) -> int:
    """Swap every strided depthwise conv of ``model`` for its fast-backward twin, sharing its
    parameters (so an optimizer or DDP built before or after sees the same tensors). Returns how many."""
    swaps = [(parent, name, conv) for parent in model.modules() for name, conv in parent.named_children()
             if isinstance(conv, nn.Conv2d) and is_strided_depthwise(conv) and not isinstance(conv, FastBackwardConv2d)]
    for parent, name, conv in swaps:
        cls = FastBackwardConv2dSame if isinstance(conv, Conv2dSame) else FastBackwardConv2d
        c: Any = conv  # nn.Conv2d's attributes are typed wider than its constructor's arguments
        twin = cls(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding, c.dilation, c.groups,
                   c.bias is not None, c.padding_mode, device="meta")
        twin.weight, twin.bias = conv.weight, conv.bias
        twin.train(conv.training)
        setattr(parent, name, twin)
    return len(swaps)
