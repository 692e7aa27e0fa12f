"""The papers' architecture tables as data, and their expansion into concrete layers.

Everything else (the PyTorch builder, the cost model, the memory analysis, feature_info and
the weight converters) reads the records produced here, so the architecture is written down
exactly once.

* ``V1_TABLE`` mirrors Table 1 of Howard et al. 2017 (one row per conv / depthwise-separable
  pair; the "5x" row keeps its repeat count).  The paper prints the last depthwise conv as
  stride 2 on a 7x7 input; that is a misprint (the reference code uses stride 1), so the
  table here says 1.
* ``V2_TABLE`` mirrors Table 2 of Sandler et al. 2018 (``t, c, n, s`` rows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Family = Literal["v1", "v2"]
FAMILIES: tuple[Family, ...] = ("v1", "v2")

#: The published grids: widths of the V1 paper (Figures 4-5) and of the TF-slim V2 README (with
#: 1.3 and 1.4), and the input resolutions Google trained each width at.
ALPHAS: dict[str, tuple[float, ...]] = {"v1": (1.0, 0.75, 0.5, 0.25), "v2": (1.4, 1.3, 1.0, 0.75, 0.5, 0.35)}
RESOLUTIONS: dict[str, tuple[int, ...]] = {"v1": (224, 192, 160, 128), "v2": (224, 192, 160, 128, 96)}

#: Ablation variants per family (V1 paper Tables 4-5, V2 paper section 6.4).
VARIANTS: dict[str, tuple[str, ...]] = {
    "v1": ("standard", "conv", "shallow"),
    "v2": ("standard", "nonlinear", "no_shortcut"),
}
ACTIVATIONS = ("relu6", "relu")
OUTPUT_STRIDES = (8, 16, 32)  # DeepLab's: below 32 the last strides become dilation
PADDINGS = ("symmetric", "tf_same")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MIN_INPUT_SIZE = 32  # the smallest input every verb accepts: 32 px leave 1x1 after five stride-2 layers


@dataclass(frozen=True)
class Row:
    """One line of a paper table.

    ``op`` is the paper's operator: ``conv2d`` (full 3x3 conv), ``separable`` (3x3 depthwise +
    1x1 pointwise, V1), ``bottleneck`` (inverted residual, V2) or ``conv2d_1x1`` (V2's last conv).
    ``width`` says how the width multiplier applies: ``"all"`` or ``"grow_only"`` (V2's last
    layer: scaled only when alpha > 1).
    """

    op: str
    t: float | None
    c: int
    n: int
    s: int
    kernel: int = 3
    width: str = "all"


# MobileNet V1, paper Table 1 (body). Each ``separable`` row is "Conv dw / s ; Conv 1x1 / s1".
V1_TABLE: tuple[Row, ...] = (
    #   op            t     c     n  s
    Row("conv2d",     None, 32,   1, 2),
    Row("separable",  None, 64,   1, 1),
    Row("separable",  None, 128,  1, 2),
    Row("separable",  None, 128,  1, 1),
    Row("separable",  None, 256,  1, 2),
    Row("separable",  None, 256,  1, 1),
    Row("separable",  None, 512,  1, 2),
    Row("separable",  None, 512,  5, 1),
    Row("separable",  None, 1024, 1, 2),
    Row("separable",  None, 1024, 1, 1),  # printed "s2" in the paper: a misprint
)

# MobileNetV2, paper Table 2.
V2_TABLE: tuple[Row, ...] = (
    #   op            t     c     n  s
    Row("conv2d",     None, 32,   1, 2),
    Row("bottleneck", 1,    16,   1, 1),
    Row("bottleneck", 6,    24,   2, 2),
    Row("bottleneck", 6,    32,   3, 2),
    Row("bottleneck", 6,    64,   4, 2),
    Row("bottleneck", 6,    96,   3, 1),
    Row("bottleneck", 6,    160,  3, 2),
    Row("bottleneck", 6,    320,  1, 1),
    Row("conv2d_1x1", None, 1280, 1, 1, kernel=1, width="grow_only"),
)

TABLES: dict[str, tuple[Row, ...]] = {"v1": V1_TABLE, "v2": V2_TABLE}


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round to the nearest multiple of ``divisor`` without losing more than 10% (TF-slim rule)."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def format_alpha(alpha: float) -> str:
    """Width multiplier as printed in model names: 1.0, 0.75, 0.5, 1.4."""
    a = f"{alpha:g}"
    return a if "." in a else a + ".0"


def v1_width(c: int, alpha: float) -> int:
    """V1 width rule of the reference code: ``max(int(c * alpha), 8)``."""
    return max(int(c * alpha), 8)


def v2_width(c: int, alpha: float, divisor: int = 8) -> int:
    """V2 width rule: ``make_divisible(c * alpha, divisor)``, at least 8 (TF-slim's ``min_depth``)."""
    return make_divisible(c * alpha, divisor, min_value=8)


def check_input_size(size: object) -> int:
    """The one input-size rule of every API and verb: an integer >= ``MIN_INPUT_SIZE``."""
    if isinstance(size, bool) or not isinstance(size, int) or size < MIN_INPUT_SIZE:
        raise ValueError(f"invalid input size {size!r}; it must be an integer >= {MIN_INPUT_SIZE}")
    return size


def conv_out_size(size: int, stride: int) -> int:
    """Output size of a 'same' conv (TF SAME, or PyTorch padding=k//2 with odd k)."""
    return math.ceil(size / stride)


@dataclass(frozen=True)
class ModelConfig:
    """Everything that determines a MobileNet's modules and its default preprocessing."""

    family: Family = "v2"
    alpha: float = 1.0
    resolution: int = 224
    variant: str = "standard"
    expansion: float | None = None  # V2: replace t=6 rows by this t (the t=1 row is kept)
    num_classes: int = 1000
    dropout: float | None = None  # None: the family default (see DEFAULT_DROPOUT)
    in_chans: int = 3
    activation: str = "relu6"
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1  # PyTorch convention: weight of the new batch statistic
    padding: str = "symmetric"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    output_stride: int = 32  # 8 or 16: atrous convolution instead of the last strides (DeepLab)
    width_divisor: int = 8  # V2's channel rounding; TF DeepLab's narrow models use 1 (0.5 x 24 = 12)

    def __post_init__(self) -> None:
        validate_config(self)

    @property
    def drop_rate(self) -> float:
        return DEFAULT_DROPOUT[self.family] if self.dropout is None else self.dropout

    @property
    def name(self) -> str:
        """Canonical paper-style name, e.g. ``0.75-MobileNet-128`` or ``1.4-MobileNetV2-224``."""
        base = f"{format_alpha(self.alpha)}-MobileNet{'V2' if self.family == 'v2' else ''}-{self.resolution}"
        suffix = {"standard": "", "no_shortcut": "-noshortcut"}.get(self.variant, f"-{self.variant}")
        if self.expansion is not None:
            suffix += f"-t{self.expansion:g}"
        if self.output_stride != 32:
            suffix += f"-os{self.output_stride}"
        return base + suffix

    def replace(self, **changes: Any) -> ModelConfig:
        return replace(self, **changes)


#: Classifier dropout per family: TF-slim keep_prob 0.999 (V1) and 0.8 (V2), as drop probability.
DEFAULT_DROPOUT: dict[str, float] = {"v1": 1 - 0.999, "v2": 1 - 0.8}


def _choices(value: object, valid: tuple[str, ...], what: str) -> None:
    if value not in valid:
        raise ValueError(f"invalid {what} {value!r}; valid: {', '.join(valid)}")


def validate_config(cfg: ModelConfig) -> None:
    """Reject impossible values up front with what is valid."""
    _choices(cfg.family, FAMILIES, "family")
    _choices(cfg.variant, VARIANTS[cfg.family], f"variant for {cfg.family}")
    _choices(cfg.activation, ACTIVATIONS, "activation")
    _choices(cfg.padding, PADDINGS, "padding")
    if not (isinstance(cfg.alpha, (int, float)) and cfg.alpha > 0 and math.isfinite(cfg.alpha)):
        raise ValueError(f"invalid width multiplier alpha={cfg.alpha!r}; it must be > 0 (e.g. 1.0, 0.75)")
    check_input_size(cfg.resolution)
    if cfg.expansion is not None:
        if cfg.family != "v2":
            raise ValueError("expansion (t) applies only to MobileNetV2")
        if not cfg.expansion >= 1:
            raise ValueError(f"invalid expansion t={cfg.expansion!r}; it must be >= 1")
    if not isinstance(cfg.width_divisor, int) or cfg.width_divisor < 1:
        raise ValueError(f"invalid width_divisor {cfg.width_divisor!r}; it must be an integer >= 1")
    if cfg.output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"invalid output_stride {cfg.output_stride!r}; valid: {', '.join(map(str, OUTPUT_STRIDES))}")
    if not isinstance(cfg.num_classes, int) or cfg.num_classes < 0:
        raise ValueError(f"invalid num_classes {cfg.num_classes!r}; it must be >= 0 (0 = no classifier)")
    if not isinstance(cfg.in_chans, int) or cfg.in_chans < 1:
        raise ValueError(f"invalid in_chans {cfg.in_chans!r}; it must be >= 1")
    if cfg.dropout is not None and not 0 <= cfg.dropout < 1:
        raise ValueError(f"invalid dropout {cfg.dropout!r}; it is a drop probability in [0, 1)")
    if not cfg.bn_eps > 0:
        raise ValueError(f"invalid bn_eps {cfg.bn_eps!r}; it must be > 0")
    if not 0 <= cfg.bn_momentum <= 1:
        raise ValueError(
            f"invalid bn_momentum {cfg.bn_momentum!r}; PyTorch momentum is in [0, 1] "
            "(a TF decay d becomes 1 - d, see mobilenets.models.tf_compat)"
        )
    if len(cfg.std) != len(cfg.mean) or not all(v > 0 for v in cfg.std):
        raise ValueError("mean and std need one value per input channel, std > 0")


# --------------------------------------------------------------------------------------------
# Expansion of a table into concrete layers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    """One conv (+BN +activation) or the classifier, with its module path in the model."""

    name: str  # module path, e.g. "blocks.3.depthwise"; the state-dict prefix
    kind: str  # "conv" (full kxk), "depthwise", "pointwise" (1x1) or "fc"
    in_ch: int
    out_ch: int
    kernel: int = 1
    stride: int = 1
    act: bool = True  # the non-linearity after BN (or after the conv when it has no BN)
    bn: bool = True  # BatchNorm after the conv (the classifier and detection/segmentation logits: none)
    bias: bool = False  # convs followed by BN need none
    dilation: int = 1

    @property
    def groups(self) -> int:
        return self.in_ch if self.kind == "depthwise" else 1


@dataclass(frozen=True)
class Block:
    """One repeated unit of a table row: a separable pair, a bottleneck or a full conv."""

    index: int
    kind: str  # "separable", "bottleneck" or "conv"
    in_ch: int
    out_ch: int
    stride: int
    layers: tuple[Layer, ...]
    residual: bool = False
    row: int = 0  # index of the table row this block came from
    hidden: int = 0  # bottleneck: expanded width (t * in)


@dataclass(frozen=True)
class FeatureInfo:
    """A backbone output: the last block at each reduction (timm's convention)."""

    index: int
    module: str
    channels: int
    reduction: int


@dataclass(frozen=True)
class Arch:
    """A table expanded for one configuration: every layer with its channels and stride."""

    config: ModelConfig
    stem: Layer
    blocks: tuple[Block, ...]
    head: Layer | None
    num_features: int
    classifier: Layer | None
    features: tuple[FeatureInfo, ...] = field(default=())

    def layers(self) -> list[Layer]:
        """All layers in execution order (stem, blocks, head, classifier)."""
        out = [self.stem]
        for b in self.blocks:
            out.extend(b.layers)
        if self.head is not None:
            out.append(self.head)
        if self.classifier is not None:
            out.append(self.classifier)
        return out


def _table_for(cfg: ModelConfig) -> tuple[Row, ...]:
    rows = TABLES[cfg.family]
    if cfg.family == "v1" and cfg.variant == "shallow":
        # V1 paper Table 5: the five 14x14x512 separable layers removed.
        rows = tuple(r for r in rows if not (r.op == "separable" and r.n == 5))
    if cfg.family == "v2" and cfg.expansion is not None:
        rows = tuple(replace(r, t=cfg.expansion) if r.op == "bottleneck" and r.t != 1 else r for r in rows)
    return rows


def build_arch(cfg: ModelConfig) -> Arch:
    """Expand the family's table for ``cfg`` into concrete layers."""
    def width(c: int, alpha: float) -> int:
        return v1_width(c, alpha) if cfg.family == "v1" else v2_width(c, alpha, cfg.width_divisor)

    rows = _table_for(cfg)
    stem_row, body = rows[0], rows[1:]
    assert stem_row.op == "conv2d"
    c = width(stem_row.c, cfg.alpha)
    stem = Layer("stem", "conv", cfg.in_chans, c, stem_row.kernel, stem_row.s)
    blocks: list[Block] = []
    head: Layer | None = None
    # DeepLab's rule (TF-slim ``mobilenet_base``): once the output stride is reached, a stride
    # becomes 1 and multiplies the dilation of the layers after it
    current, rate = stem.stride, 1
    for r_idx, row in enumerate(body, start=1):
        if row.op == "conv2d_1x1":
            out = row.c if row.width == "grow_only" and cfg.alpha <= 1 else width(row.c, cfg.alpha)
            head = Layer("head", "pointwise", c, out)
            c = out
            continue
        out = width(row.c, cfg.alpha)
        for i in range(row.n):
            stride, dilation = row.s if i == 0 else 1, 1
            if current == cfg.output_stride:
                stride, dilation, rate = 1, rate, rate * stride
            else:
                current *= stride
            idx = len(blocks)
            blocks.append(_block(cfg, row, r_idx, idx, c, out, stride, dilation))
            c = out
    num_features = c
    classifier = Layer("classifier", "fc", c, cfg.num_classes, act=False, bn=False, bias=True) if cfg.num_classes \
        else None
    return Arch(cfg, stem, tuple(blocks), head, num_features, classifier, _feature_info(stem, blocks))


def _block(cfg: ModelConfig, row: Row, r_idx: int, idx: int, cin: int, cout: int, stride: int,
           dilation: int = 1) -> Block:
    p = f"blocks.{idx}"
    k = row.kernel
    if cfg.family == "v1":
        if cfg.variant == "conv":  # V1 paper Table 4: full convolutions instead of separable
            conv = Layer(f"{p}.conv", "conv", cin, cout, k, stride, dilation=dilation)
            return Block(idx, "conv", cin, cout, stride, (conv,), row=r_idx)
        layers = (
            Layer(f"{p}.depthwise", "depthwise", cin, cin, k, stride, dilation=dilation),
            Layer(f"{p}.pointwise", "pointwise", cin, cout),
        )
        return Block(idx, "separable", cin, cout, stride, layers, row=r_idx)
    t = row.t or 1
    hidden = int(round(cin * t))
    linear = cfg.variant != "nonlinear"
    expand = [Layer(f"{p}.expand", "pointwise", cin, hidden)] if hidden != cin else []  # t=1: no expansion conv
    bottleneck = (*expand, Layer(f"{p}.depthwise", "depthwise", hidden, hidden, k, stride, dilation=dilation),
                  Layer(f"{p}.project", "pointwise", hidden, cout, act=not linear))
    residual = stride == 1 and cin == cout and cfg.variant != "no_shortcut"
    return Block(idx, "bottleneck", cin, cout, stride, bottleneck, residual, r_idx, hidden)


def _feature_info(stem: Layer, blocks: list[Block]) -> tuple[FeatureInfo, ...]:
    """The last block at each reduction: V1 64..1024, V2 16..320 at 2, 4, 8, 16, 32."""
    feats: list[FeatureInfo] = []
    red = stem.stride
    for b in blocks:
        red *= b.stride
        if feats and feats[-1].reduction == red:
            feats.pop()
        feats.append(FeatureInfo(len(feats), f"blocks.{b.index}", b.out_ch, red))
    return tuple(feats)


def layer_shapes(arch: Arch, input_size: int | tuple[int, int]) -> list[tuple[Layer, tuple[int, int], tuple[int, int]]]:
    """Each layer with its input and output spatial size (the classifier sees 1x1)."""
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    out = []
    for layer in arch.layers():
        if layer.kind == "fc":
            out.append((layer, (1, 1), (1, 1)))
            continue
        oh, ow = conv_out_size(h, layer.stride), conv_out_size(w, layer.stride)
        out.append((layer, (h, w), (oh, ow)))
        h, w = oh, ow
    return out
