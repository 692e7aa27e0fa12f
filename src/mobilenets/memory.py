"""Activation memory: the V2 paper's analysis (section 5.1, Table 3) and its memory-efficient executor.

An inverted residual block F(x) = [A o N o B] x only needs its narrow input and output in memory:
the wide expansion can be computed in t chunks of n/t channels (expand chunk -> ReLU6 ->
depthwise -> ReLU6 -> project chunk), summing the projections, so the expanded tensor never
exists whole. :func:`memory_efficient` builds a module that runs a MobileNetV2 that way, and also
streams the first layers (stem + first block) in bands of rows, the paper's "first-layer trick",
so the 112x112x32 stem output never exists whole either.

The analysis is computed from the spec (no forward pass); :class:`PeakMemory` measures what a
real forward keeps alive (every tensor an op creates, tracked until it is freed).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from .layers import ConvBNAct, InvertedResidual
from .model import MobileNet
from .spec import Arch, build_arch, check_input_size, conv_out_size

DTYPE_BYTES = {"fp16": 2, "fp32": 4}

# V2 paper Table 3 (arXiv v4), 16-bit activations: (max channels, memory in Kb) per spatial size.
PAPER_TABLE3 = {
    "v1": {112: (64, 1600), 56: (128, 800), 28: (256, 400), 14: (512, 200), 7: (1024, 199), 1: (1024, 2)},
    "v2": {112: (16, 400), 56: (32, 200), 28: (64, 100), 14: (160, 62), 7: (320, 32), 1: (1280, 2)},
}
PAPER_MAX_KB = {"v1": 1600, "v2": 400}


@dataclass
class ResolutionRow:
    size: int
    channels: int  # the widest tensor that must be materialized at this size
    tensor: str  # which one
    bytes: int
    paper_channels: int | None = None
    paper_kb: int | None = None
    note: str = ""


@dataclass
class MemoryAnalysis:
    model: str
    input_size: int
    dtype: str
    rows: list[ResolutionRow]
    max_bytes: int  # Table 3's max row: the largest single tensor that must be materialized
    plain_peak_values: int  # layer-by-layer execution: max over ops of live values
    split_peak_values: dict[int, int] = field(default_factory=dict)  # paper schedule, per t
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        bpe = DTYPE_BYTES[self.dtype]
        return {
            "model": self.model, "input_size": self.input_size, "dtype": self.dtype,
            f"max_bytes_{self.dtype}": self.max_bytes, "max_bytes_fp16": self.max_bytes // bpe * 2,
            "rows": [asdict(r) for r in self.rows],
            "plain_peak_bytes": self.plain_peak_values * bpe,
            "split_peak_bytes": {str(t): v * bpe for t, v in self.split_peak_values.items()},
            "notes": self.notes,
        }


def _tensors(arch: Arch, size: int, first_layer_trick: bool) -> list[tuple[str, int, int]]:
    """(name, channels, spatial) of every tensor that must exist whole, per the model family.

    V1: every layer output. V2: the bottleneck tensors (block inputs/outputs) only; the stem output
    too unless the first-layer trick streams it; the head conv feeds the pooling chunk by chunk.
    """
    out = []
    hw = conv_out_size(size, arch.stem.stride)
    if arch.config.family == "v1":
        out.append(("stem", arch.stem.out_ch, hw))
        for b in arch.blocks:
            for layer in b.layers:
                hw = conv_out_size(hw, layer.stride)
                out.append((layer.name, layer.out_ch, hw))
        out.append(("pool", arch.num_features, 1))
        return out
    if not first_layer_trick:
        out.append(("stem", arch.stem.out_ch, hw))
    for b in arch.blocks:
        hw = conv_out_size(hw, b.stride)
        out.append((f"blocks.{b.index}", b.out_ch, hw))
    out.append(("pool", arch.num_features, 1))
    return out


def plain_peak(arch: Arch, size: int) -> int:
    """Peak live values of plain layer-by-layer execution (eager PyTorch keeps a block's input alive)."""
    hw = size
    peak = 0
    x_in = arch.config.in_chans * size * size
    for layer in [arch.stem] + [lay for b in arch.blocks for lay in b.layers] + ([arch.head] if arch.head else []):
        ohw = conv_out_size(hw, layer.stride)
        peak = max(peak, x_in + layer.out_ch * ohw * ohw)
        x_in = layer.out_ch * ohw * ohw
        hw = ohw
    # within a bottleneck: block input + expanded + depthwise output are alive at the depthwise conv
    hw = conv_out_size(size, arch.stem.stride)
    for b in arch.blocks:
        ohw = conv_out_size(hw, b.stride)
        if b.kind == "bottleneck":
            peak = max(peak, b.in_ch * hw * hw + b.hidden * hw * hw + b.hidden * ohw * ohw)
        hw = ohw
    return peak


def split_peak(arch: Arch, size: int, t: int, first_layer_trick: bool = True, band_rows: int = 8) -> int:
    """Peak live values under the paper's schedule: |s^2 k| + |s'^2 k'| + (n/t)(s^2 + s'^2) per block."""
    hw = conv_out_size(size, arch.stem.stride)
    peak = 0
    blocks = list(arch.blocks)
    if first_layer_trick and blocks:
        b0 = blocks.pop(0)
        band = (band_rows + 2) * hw * (arch.stem.out_ch + b0.hidden)
        peak = arch.config.in_chans * size * size + b0.out_ch * hw * hw + band
    else:
        peak = arch.config.in_chans * size * size + arch.stem.out_ch * hw * hw
    for b in blocks:
        ohw = conv_out_size(hw, b.stride)
        chunk = math.ceil(b.hidden / min(t, b.hidden))
        peak = max(peak, b.in_ch * hw * hw + b.out_ch * ohw * ohw + chunk * (hw * hw + ohw * ohw))
        hw = ohw
    if arch.head is not None:
        chunk = math.ceil(arch.head.out_ch / min(t, arch.head.out_ch))
        peak = max(peak, arch.head.in_ch * hw * hw + chunk * hw * hw + arch.head.out_ch)
    return peak


def analyze(name_or_model: str | MobileNet, input_size: int | None = None, dtype: str = "fp16",
            splits: tuple[int, ...] = (1, 2, 4, 8)) -> MemoryAnalysis:
    """The V2 paper's Table 3 for a model, and the peaks of plain vs split execution."""
    from .registry import resolve_config

    if dtype not in DTYPE_BYTES:
        raise ValueError(f"invalid dtype {dtype!r}; valid: {', '.join(DTYPE_BYTES)}")
    cfg = name_or_model.config if isinstance(name_or_model, nn.Module) else resolve_config(name_or_model)
    arch = build_arch(cfg)
    size = cfg.resolution if input_size is None else check_input_size(input_size)
    bpe = DTYPE_BYTES[dtype]
    v2 = cfg.family == "v2"
    tensors = _tensors(arch, size, first_layer_trick=v2)
    by_size: dict[int, tuple[str, int]] = {}
    for name, ch, hw in tensors:
        if hw not in by_size or ch > by_size[hw][1]:
            by_size[hw] = (name, ch)
    paper = PAPER_TABLE3[cfg.family] if (cfg.alpha, size, cfg.variant) == (1.0, 224, "standard") else {}
    rows = []
    for hw in sorted(by_size, reverse=True):
        name, ch = by_size[hw]
        pch, pkb = paper.get(hw, (None, None))
        note = ""
        if pch is not None and pch != ch:
            note = (f"the paper lists {pch}: the output width of the block that downsamples from {hw}x{hw}, "
                    f"as if it were materialized before its stride")
        elif v2 and hw == 7 and pkb is not None and pkb != round(ch * hw * hw * 2 / 1000):
            note = "paper rounds 31.4K up"
        if not v2 and hw == 7 and pkb == 199:
            note = f"the paper's 199K is twice one {ch}x7x7 tensor (100.4K): input and output of a layer"
        rows.append(ResolutionRow(hw, ch, name, ch * hw * hw * bpe, pch, pkb, note))
    max_bytes = max(r.bytes for r in rows)
    res = MemoryAnalysis(cfg.name, size, dtype, rows, max_bytes, plain_peak(arch, size))
    if v2:
        n_max = max(b.hidden for b in arch.blocks)
        res.split_peak_values = {t: split_peak(arch, size, t) for t in sorted(set(splits) | {n_max})}
        res.notes.append("V2: only bottleneck tensors are materialized; the stem output (32 channels at the first "
                         "resolution) is streamed with the first layers by row bands (the paper's first-layer trick). "
                         "The CVPR version's Table 3 writes 1/O(1) for the 112x112 row because of that trick and its "
                         "max row (200K) is then the 56x56 row; the arXiv version (400K) counts the 16-channel "
                         "112x112 bottleneck.")
    else:
        res.notes.append("V1 has no bottleneck: every layer output must exist whole, so the first pointwise output "
                         "(64 channels at 112x112) is the maximum. The CVPR version's 800K max assumes the first-layer "
                         "trick for V1 too.")
    return res


# ------------------------------------------------------------------------------ executor


def _pads(size: int, k: int, s: int, padding: str) -> tuple[int, int]:
    """(before, after) zero padding of one spatial dimension, as the model's conv pads it."""
    if padding == "tf_same" and s > 1:
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        return total // 2, total - total // 2
    return k // 2, k // 2


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
        from .export import fold_batchnorm

        if model.config.family != "v2" or model.features_only:
            raise ValueError("the t-way split applies to MobileNetV2 classifiers (bottleneck blocks)")
        if split < 1 or band_rows < 1:
            raise ValueError(f"split and band_rows must be >= 1, got {split} and {band_rows}")
        self.net = fold_batchnorm(model).eval()
        self.config = model.config
        self.split, self.band_rows, self.stream_first = split, band_rows, stream_first
        self.act = model.config.activation
        self.chunks = [self._chunks(blk) for blk in self.net.blocks]

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
                ex.bias[c].contiguous() if ex is not None else None,
                dw.weight[c].contiguous(), dw.bias[c].contiguous(), pj.weight[:, c].contiguous(), c))
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
        blk = self.net.blocks[i]
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
        out.add_(blk.project.conv.bias[:, None, None])
        if not isinstance(blk.project.act, nn.Identity):  # the non-linear bottleneck ablation
            out = _act(out, self.act)
        return out.add_(x) if blk.residual else out

    def _first_layers(self, x: torch.Tensor) -> torch.Tensor:
        """Stem + first block by bands of output rows: the stem output never exists whole."""
        stem, blk = self.net.stem, self.net.blocks[0]
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
            pooled[:, c] = _act(F.conv2d(x, head.conv.weight[c], head.conv.bias[c]), self.act).mean((2, 3))
        return pooled

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dw0 = self.net.blocks[0].depthwise.conv
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


# ------------------------------------------------------------------------------ measurement


class PeakMemory(TorchDispatchMode):
    """Peak bytes of live tensors created by ops inside the context (inputs and weights excluded).

    Every op output's storage is counted from its creation until the last tensor using it is
    garbage-collected; in-place results and views share their storage and are counted once.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._refs: dict[int, int] = {}
        self._sizes: dict[int, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        for t in _flat_tensors(out):
            try:
                st = t.untyped_storage()
            except (RuntimeError, NotImplementedError):
                continue
            key = st.data_ptr()
            if key == 0:
                continue
            if key not in self._refs:
                if any(key == _storage_key(a) for a in _flat_tensors(args)) and key not in self._sizes:
                    continue  # an in-place op on an input we do not track
                self._refs[key] = 0
                self._sizes[key] = st.nbytes()
                self.live += st.nbytes()
                self.peak = max(self.peak, self.live)
            self._refs[key] += 1
            weakref.finalize(t, self._release, key)
        return out

    def _release(self, key: int) -> None:
        self._refs[key] -= 1
        if self._refs[key] == 0:
            del self._refs[key]
            self.live -= self._sizes.pop(key)


def _storage_key(t: object) -> int | None:
    if isinstance(t, torch.Tensor):
        try:
            return t.untyped_storage().data_ptr()
        except (RuntimeError, NotImplementedError):
            return None
    return None


def _flat_tensors(obj: object) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _flat_tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _flat_tensors(o)]
    return []


def measure_peak(model: nn.Module, x: torch.Tensor) -> int:
    """Peak live activation bytes of one forward pass (see :class:`PeakMemory`)."""
    import gc

    with torch.inference_mode():
        gc.collect()
        with PeakMemory() as pm:
            out = model(x)
            del out
        return pm.peak
