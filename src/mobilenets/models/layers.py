"""Small building blocks with readable state-dict keys (``conv``, ``bn``; ``depthwise``, ...)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..utils import device
from .spec import Block, Layer, ModelConfig


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


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` that trains strided depthwise layers faster on CPU (``_StridedDepthwiseConv``).

    Same parameters and keys; eval, export and scripting take the plain path.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.strided_depthwise = (self.groups == self.in_channels == self.out_channels
                                  and self.stride != (1, 1) and self.dilation == (1, 1))

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if not torch.jit.is_scripting():  # noqa: SIM102  (TorchScript compiles only the other branch)
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
        if not (self.strided_depthwise and self.training and bias is None and x.device.type == "cpu"
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


class Conv2dSame(Conv2d):
    """Conv2d with TensorFlow "SAME" padding: the odd extra pixel goes bottom/right.

    Only needed to run weights trained in TF; the padding depends on the input size, so it is
    applied in ``forward``. The weight keys are those of ``nn.Conv2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        (sh, sw), (dh, dw) = self.stride, self.dilation
        kh, kw = (self.kernel_size[0] - 1) * dh + 1, (self.kernel_size[1] - 1) * dw + 1  # the dilated extent
        ph = max((-(-ih // sh) - 1) * sh + kh - ih, 0)
        pw = max((-(-iw // sw) - 1) * sw + kw - iw, 0)
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return self._conv_forward(x, self.weight, self.bias)


def make_activation(name: str) -> nn.Module:
    return {"relu6": nn.ReLU6, "relu": nn.ReLU}[name](inplace=True)


class ConvBNAct(nn.Module):
    """Conv -> BatchNorm -> optional activation, as the layer record says; keys ``conv.*`` and ``bn.*``
    (logit layers have a conv bias and no BN)."""

    def __init__(self, layer: Layer, cfg: ModelConfig) -> None:
        super().__init__()
        k, s, d = layer.kernel, layer.stride, layer.dilation
        if cfg.padding == "tf_same" and s > 1:
            self.conv: Conv2d = Conv2dSame(layer.in_ch, layer.out_ch, k, s, 0, d, groups=layer.groups,
                                           bias=layer.bias)
        else:  # for stride 1 and odd k, TF SAME equals symmetric padding
            self.conv = Conv2d(layer.in_ch, layer.out_ch, k, s, d * (k // 2), d, groups=layer.groups, bias=layer.bias)
        self.bn = nn.BatchNorm2d(layer.out_ch, eps=cfg.bn_eps, momentum=cfg.bn_momentum) if layer.bn else nn.Identity()
        self.act = make_activation(cfg.activation) if layer.act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class SeparableBlock(nn.Module):
    """V1 depthwise separable convolution: 3x3 depthwise, then 1x1 pointwise, each BN + act."""

    def __init__(self, block: Block, cfg: ModelConfig) -> None:
        super().__init__()
        dw, pw = block.layers
        self.depthwise = ConvBNAct(dw, cfg)
        self.pointwise = ConvBNAct(pw, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class InvertedResidual(nn.Module):
    """V2 bottleneck: 1x1 expand + ReLU6, 3x3 depthwise + ReLU6, linear 1x1 project, shortcut."""

    def __init__(self, block: Block, cfg: ModelConfig) -> None:
        super().__init__()
        layers = {layer.name.rsplit(".", 1)[1]: layer for layer in block.layers}
        self.expand = ConvBNAct(layers["expand"], cfg) if "expand" in layers else nn.Identity()
        self.depthwise = ConvBNAct(layers["depthwise"], cfg)
        self.project = ConvBNAct(layers["project"], cfg)
        self.residual = block.residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_expanded(x)[0]

    def forward_expanded(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The block's output and its expansion (the map SSDLite reads at ``layer_15/expansion_output``)."""
        e = self.expand(x)
        y = self.project(self.depthwise(e))
        return (x + y if self.residual else y), e


class LayerStack(nn.Module):
    """Layers applied in order, each a :class:`ConvBNAct` named by the last part of its record's name
    (``extras.0.reduce`` -> ``reduce``); for the detection and segmentation heads."""

    def __init__(self, layers: tuple[Layer, ...], cfg: ModelConfig) -> None:
        super().__init__()
        for layer in layers:
            self.add_module(layer.name.rsplit(".", 1)[1], ConvBNAct(layer, cfg))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in self.children():
            x = m(x)
        return x


def build_block(block: Block, cfg: ModelConfig) -> nn.Module:
    if block.kind == "separable":
        return SeparableBlock(block, cfg)
    if block.kind == "bottleneck":
        return InvertedResidual(block, cfg)
    return ConvBNAct(block.layers[0], cfg)


def zero_init_residual(module: nn.Module) -> int:
    """Zero the BN scale of every residual block's linear projection, so each block starts as the
    identity and a deep V2 first trains like its shallow non-residual path (Goyal et al. 2017;
    torchvision's ``zero_init_residual``, timm's ``zero_init_last``). On the embedded digit canvases
    a 0.5-MobileNetV2-96 classifier is at 90% held-out after 300 steps this way, 60% without.
    Returns the number of blocks changed (0 for V1, which has none)."""
    bns = [m.project.bn for m in module.modules()
           if isinstance(m, InvertedResidual) and m.residual and isinstance(m.project.bn, nn.BatchNorm2d)]
    for bn in bns:
        nn.init.zeros_(bn.weight)
    return len(bns)


def init_weights(module: nn.Module) -> None:
    """He-normal on fan-out with the fan-out divided by groups (so depthwise filters are not tiny).

    This is timm's / TF's choice; torchvision does not divide by groups, which leaves the
    depthwise filters with a standard deviation about sqrt(C) times too small.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
