"""Activation memory: the V2 paper's analysis (section 5.1, Table 3), computed from the spec, and
:class:`PeakMemory`, which measures what a real forward pass keeps alive (every tensor an op
creates, tracked until it is freed). The t-way split executor that the analysis describes is
:func:`mobilenets.models.memory_efficient`.
"""

from __future__ import annotations

import gc
import math
import weakref
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from ..models import MobileNet, resolve_config
from ..models.spec import Arch, build_arch, check_input_size, conv_out_size

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

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
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
    with torch.inference_mode():
        gc.collect()
        with PeakMemory() as pm:
            out = model(x)
            del out
        return pm.peak
