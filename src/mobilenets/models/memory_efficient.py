"""The V2 paper's memory-efficient inference (section 5.1) as a module computing the same function.

An inverted residual block F(x) = [A o N o B] x only needs its narrow input and output in memory:
the wide expansion can be computed in t chunks of n/t channels (expand chunk -> ReLU6 ->
depthwise -> ReLU6 -> project chunk), summing the projections, so the expanded tensor never
exists whole. The first layers (stem + first block) are streamed in bands of rows, the paper's
"first-layer trick", so the 112x112x32 stem output never exists whole either.
``mobilenets.analysis.memory`` computes and measures what this saves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from .fold import fold_batchnorm
from .layers import ConvBNAct, InvertedResidual
from .mobilenet import MobileNet
from .spec import conv_out_size


def _pads(size: int, k: int, s: int, padding: str) -> tuple[int, int]:
    """(before, after) zero padding of one spatial dimension, as the model's conv pads it."""
    if padding == "tf_same" and s > 1:
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        return total // 2, total - total // 2
    return k // 2, k // 2


def _bias(conv: nn.Conv2d) -> torch.Tensor:
    """A folded conv's bias (folding gives every conv one)."""
    assert conv.bias is not None
    return conv.bias


def _act(x: torch.Tensor, kind: str) -> torch.Tensor:
    return x.clamp_(0, 6) if kind == "relu6" else x.clamp_(min=0)


@dataclass
class _Chunk:
    expand_w: torch.Tensor | None
    expand_b: torch.Tensor | None
    dw_w: torch.Tensor
    dw_b: torch.Tensor
    proj_w: torch.Tensor
    channels: slice


class MemoryEfficientMobileNet(nn.Module):
    """A MobileNetV2 run with t-way split bottlenecks and a banded first layer; same function.

    BatchNorm is folded first (so the projection's affine part is one bias added after the sum),
    and every chunk's weights are sliced once, here, not per forward.
    """

    def __init__(self, model: MobileNet, split: int = 4, band_rows: int = 8, stream_first: bool = True) -> None:
        super().__init__()
        if model.config.family != "v2" or model.features_only:
            raise ValueError("the t-way split applies to MobileNetV2 classifiers (bottleneck blocks)")
        if split < 1 or band_rows < 1:
            raise ValueError(f"split and band_rows must be >= 1, got {split} and {band_rows}")
        self.net = fold_batchnorm(model).eval()
        self.config = model.config
        self.split, self.band_rows, self.stream_first = split, band_rows, stream_first
        self.act = model.config.activation
        self.blocks = [cast(InvertedResidual, blk) for blk in self.net.blocks]  # V2: every block is one
        self.chunks = [self._chunks(blk) for blk in self.blocks]

    def _chunks(self, blk: InvertedResidual) -> list[_Chunk]:
        dw, pj = blk.depthwise.conv, blk.project.conv
        n = dw.in_channels
        step = math.ceil(n / min(self.split, n))
        out = []
        for a in range(0, n, step):
            c = slice(a, min(a + step, n))
            ex = blk.expand.conv if isinstance(blk.expand, ConvBNAct) else None
            out.append(_Chunk(
                ex.weight[c].contiguous() if ex is not None else None,
                _bias(ex)[c].contiguous() if ex is not None else None,
                dw.weight[c].contiguous(), _bias(dw)[c].contiguous(), pj.weight[:, c].contiguous(), c))
        return out

    def _spatial_conv(self, x: torch.Tensor, conv: nn.Conv2d, w: torch.Tensor, b: torch.Tensor,
                      groups: int) -> torch.Tensor:
        k, s = conv.kernel_size[0], conv.stride[0]
        (pt, pb), (pl, pr) = (_pads(x.shape[-2], k, s, self.config.padding),
                              _pads(x.shape[-1], k, s, self.config.padding))
        if pt == pb and pl == pr:  # let the conv pad: no padded copy of the input
            return F.conv2d(x, w, b, s, (pt, pl), 1, groups)
        return F.conv2d(F.pad(x, [pl, pr, pt, pb]), w, b, s, 0, 1, groups)

    def _block(self, i: int, x: torch.Tensor) -> torch.Tensor:
        blk = self.blocks[i]
        out: torch.Tensor | None = None
        for ch in self.chunks[i]:
            if ch.expand_w is not None:
                h = _act(F.conv2d(x, ch.expand_w, ch.expand_b), self.act)
            else:
                h = x[:, ch.channels]
            h = _act(self._spatial_conv(h, blk.depthwise.conv, ch.dw_w, ch.dw_b, ch.dw_w.shape[0]), self.act)
            p = F.conv2d(h, ch.proj_w)
            del h
            out = p if out is None else out.add_(p)
            del p
        assert out is not None
        out.add_(_bias(blk.project.conv)[:, None, None])
        if not isinstance(blk.project.act, nn.Identity):  # the non-linear bottleneck ablation
            out = _act(out, self.act)
        return out.add_(x) if blk.residual else out

    def _first_layers(self, x: torch.Tensor) -> torch.Tensor:
        """Stem + first block by bands of output rows: the stem output never exists whole."""
        stem, blk = self.net.stem, self.blocks[0]
        sc = stem.conv
        k, s = sc.kernel_size[0], sc.stride[0]
        H, W = x.shape[-2:]
        oh, ow = conv_out_size(H, s), conv_out_size(W, s)
        st, _ = _pads(H, k, s, self.config.padding)
        sl, sr = _pads(W, k, s, self.config.padding)
        dw = blk.depthwise.conv
        dpad = dw.kernel_size[0] // 2
        out = x.new_empty(x.shape[0], blk.project.conv.out_channels, oh, ow)
        for r0 in range(0, oh, self.band_rows):
            r1 = min(r0 + self.band_rows, oh)
            s0, s1 = max(r0 - dpad, 0), min(r1 + dpad, oh)  # stem rows the depthwise band needs
            lo, hi = s0 * s - st, (s1 - 1) * s - st + k  # input rows those stem rows need
            band = F.pad(x[:, :, max(lo, 0): min(hi, H)], [sl, sr, max(-lo, 0), max(hi - H, 0)])
            y = _act(F.conv2d(band, sc.weight, sc.bias, s), self.act)
            del band
            y = F.pad(y, [0, 0, dpad - (r0 - s0), dpad - (s1 - r1)])  # zero rows only at the image border
            if isinstance(blk.expand, ConvBNAct):
                y = _act(F.conv2d(y, blk.expand.conv.weight, blk.expand.conv.bias), self.act)
            y = _act(F.conv2d(y, dw.weight, dw.bias, 1, (0, dpad), 1, dw.groups), self.act)
            p = F.conv2d(y, blk.project.conv.weight, blk.project.conv.bias)
            del y
            if not isinstance(blk.project.act, nn.Identity):
                p = _act(p, self.act)
            out[:, :, r0:r1] = p
        return out

    def _head_pool(self, x: torch.Tensor) -> torch.Tensor:
        """Head 1x1 conv fused with global pooling, chunk by chunk: the head output never exists whole."""
        head = self.net.head
        if not isinstance(head, ConvBNAct):
            return x.mean((2, 3))
        n = head.conv.out_channels
        step = math.ceil(n / min(self.split, n))
        pooled = x.new_empty(x.shape[0], n)
        for a in range(0, n, step):
            c = slice(a, min(a + step, n))
            pooled[:, c] = _act(F.conv2d(x, head.conv.weight[c], _bias(head.conv)[c]), self.act).mean((2, 3))
        return pooled

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dw0 = self.blocks[0].depthwise.conv
        if self.stream_first and dw0.stride[0] == 1:
            y = self._first_layers(x)
        else:
            y = self._block(0, self.net.stem(x))
        for i in range(1, len(self.net.blocks)):
            y = self._block(i, y)
        return self.net.classifier(self._head_pool(y))


def memory_efficient(model: MobileNet, split: int = 4, band_rows: int = 8, stream_first: bool = True) -> nn.Module:
    """``model`` (a MobileNetV2) as a module computing the same function with low activation memory.

    ``split``: the t of the paper's t-way split (2-5 recommended by the paper; larger = less
    memory, more small matmuls). ``band_rows``: rows per band of the streamed first layers.
    """
    return MemoryEfficientMobileNet(model, split, band_rows, stream_first)
