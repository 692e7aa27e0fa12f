"""Analytic cost model computed from the architecture spec, with no forward pass.

Conventions (the papers' and TF's; see the README):

* ``madds``: multiply-adds of conv and fully-connected layers only (no BN, bias, activation,
  pooling or residual add). ``torch.utils.flop_counter`` reports 2 x this number as FLOPs.
* ``params``: conv weights + FC weight and bias, no BatchNorm (the papers' "Million Parameters").
* ``trainable_params``: ``params`` + BN gamma and beta (PyTorch's ``sum(p.numel())``).
* ``bn_buffers``: BN running mean and variance (Keras counts them in "Total params").
* Atrous convs (``atrous``): ``"exact"`` counts their output map; ``"tf_space_to_batch"`` counts the
  padded grid TF computes them on (``tf_compat.space_to_batch_positions``), as TF's profiler and the
  V2 paper's Table 7 do.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from ..models.spec import Arch, Layer, ModelConfig, check_input_size, layer_shapes
from ..models.tf_compat import space_to_batch_positions
from ..tasks import TaskConfig, config_of, kind_of, parse_model_name

#: How an atrous conv's positions are counted (see the module docstring).
ATROUS_COUNTING = ("exact", "tf_space_to_batch")
Shapes = list[tuple[Layer, tuple[int, int], tuple[int, int]]]
Size = int | tuple[int, int] | None

#: Layer types in the V1 paper's Table 2 wording.
LAYER_TYPES = ("Conv 1x1", "Conv DW 3x3", "Conv 3x3", "Fully Connected")


@dataclass(frozen=True)
class LayerCost:
    name: str
    type: str
    input_shape: tuple[int, int, int]  # C, H, W
    output_shape: tuple[int, int, int]
    params: int  # weights + bias
    bias: int
    madds: int
    activations: int  # output elements per image
    runs: int = 1  # times per image (a Faster R-CNN's second stage: once per proposal); madds and activations count all

    @property
    def weights(self) -> int:
        return self.params - self.bias


@dataclass(frozen=True)
class TypeCost:
    type: str
    madds: int
    params: int
    weights: int
    madds_pct: float
    weights_pct: float


@dataclass
class Profile:
    """Cost of one model at one input size (per image)."""

    name: str
    input_size: tuple[int, int]
    madds: int
    params: int
    trainable_params: int
    bn_buffers: int
    layers: list[LayerCost] = field(default_factory=list)

    @property
    def by_type(self) -> list[TypeCost]:
        """MAdds and weights per layer type, as in the V1 paper's Table 2 (FC bias excluded)."""
        acc: dict[str, list[int]] = OrderedDict((t, [0, 0, 0]) for t in LAYER_TYPES)
        for row in self.layers:
            a = acc.setdefault(row.type, [0, 0, 0])
            a[0] += row.madds
            a[1] += row.params
            a[2] += row.weights
        total_w = sum(a[2] for a in acc.values()) or 1
        return [
            TypeCost(t, m, p, w, 100 * m / (self.madds or 1), 100 * w / total_w)
            for t, (m, p, w) in acc.items()
            if m or p
        ]

    @property
    def by_part(self) -> dict[str, tuple[int, int]]:
        """(MAdds, params) per top-level part: ``stem``, ``blocks``, ``head``, ``classifier`` for a
        classifier; ``backbone``, ``extras``, ``heads`` for an SSD; ``backbone``, ``rpn``,
        ``roi_heads`` for a Faster R-CNN; ``backbone``, ``aspp``, ``project``, ``classifier`` for a
        segmenter."""
        parts: dict[str, tuple[int, int]] = {}
        for row in self.layers:
            m, p = parts.get(row.name.split(".")[0], (0, 0))
            parts[row.name.split(".")[0]] = (m + row.madds, p + row.params)
        return parts

    def to_dict(self, layers: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "input_size": list(self.input_size),
            "madds": self.madds,
            "params": self.params,
            "trainable_params": self.trainable_params,
            "bn_buffers": self.bn_buffers,
            "by_type": [asdict(t) for t in self.by_type],
            "by_part": {k: {"madds": m, "params": p} for k, (m, p) in self.by_part.items()},
        }
        if layers:
            d["layers"] = [asdict(r) for r in self.layers]
        return d


def _layer_type(kind: str, kernel: int) -> str:
    if kind == "fc":
        return "Fully Connected"
    if kind == "depthwise":
        return f"Conv DW {kernel}x{kernel}"
    return f"Conv {kernel}x{kernel}"


def layer_cost(layer: Layer, in_hw: tuple[int, int], out_hw: tuple[int, int], atrous: str = "exact") -> LayerCost:
    """Params and MAdds of one layer: k*k*(C_in/groups)*C_out weights, each used once per output pixel
    (per computed position for an atrous conv counted as ``"tf_space_to_batch"``)."""
    w = layer.kernel * layer.kernel * (layer.in_ch // layer.groups) * layer.out_ch
    bias = layer.out_ch if layer.bias else 0
    oh, ow = out_hw
    ch, cw = out_hw
    if atrous == "tf_space_to_batch" and layer.dilation > 1:
        ch, cw = (space_to_batch_positions(side, layer.kernel, layer.dilation) for side in out_hw)
    return LayerCost(
        layer.name,
        _layer_type(layer.kind, layer.kernel),
        (layer.in_ch, *in_hw),
        (layer.out_ch, oh, ow),
        w + bias,
        bias,
        w * ch * cw,
        layer.out_ch * oh * ow,
    )


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    hw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    for side in hw:
        check_input_size(side)
    return hw


def _profile(name: str, hw: tuple[int, int], shapes: Shapes, repeats: dict[str, int] | None = None,
             atrous: str = "exact") -> Profile:
    """``repeats``: layers that run several times per image (a Faster R-CNN's per-proposal layers)."""
    rows = [_repeated(layer_cost(layer, in_hw, out_hw, atrous), (repeats or {}).get(layer.name, 1))
            for layer, in_hw, out_hw in shapes]
    bn = sum(layer.out_ch for layer, _, _ in shapes if layer.bn)
    params = sum(r.params for r in rows)
    return Profile(name, hw, sum(r.madds for r in rows), params, params + 2 * bn, 2 * bn, rows)


def _repeated(cost: LayerCost, n: int) -> LayerCost:
    return cost if n == 1 else dataclasses.replace(cost, madds=n * cost.madds, activations=n * cost.activations, runs=n)


def profile_arch(arch: Arch, input_size: Size = None, atrous: str = "exact") -> Profile:
    """Cost of an expanded architecture; ``input_size`` defaults to the config's resolution."""
    hw = _hw(arch.config.resolution if input_size is None else input_size)
    return _profile(arch.config.name, hw, layer_shapes(arch, hw), atrous=atrous)


def profile_config(cfg: TaskConfig, input_size: Size = None, atrous: str = "exact") -> Profile:
    """Cost of any model kind from its config, with the layer shapes its kind gives: a classifier's
    layers; a detector's backbone, extra layers and predictors; a Faster R-CNN's first stage on the
    image and its second once per proposal (``cfg.proposals``); a segmenter's backbone, image
    pooling / ASPP, projection and logits (see ``by_part``)."""
    kind = kind_of(cfg)
    hw = _hw(cfg.resolution if input_size is None else input_size)
    return _profile(cfg.name, hw, kind.layer_shapes(cfg, hw), kind.repeats(cfg), atrous)


def profile(
    name_or_model: str | TaskConfig | nn.Module,
    input_size: Size = None,
    variant: str | None = None,
    *,
    atrous: str = "exact",
    **overrides: Any,
) -> Profile:
    """Params and multiply-adds of a model, from its spec.

    ``name_or_model``: a model name (``"0.75-MobileNet-128"``, ``"0.75-SSD-MobileNet-300"``), a
    config, or a model. ``input_size`` defaults to the name's resolution. ``atrous``: how dilated
    convs are counted, ``"exact"`` or TF's ``"tf_space_to_batch"`` (the V2 paper's Table 7).
    """
    if atrous not in ATROUS_COUNTING:
        raise ValueError(f"invalid atrous counting {atrous!r}; valid: {', '.join(ATROUS_COUNTING)}")
    cfg = config_of(name_or_model) if isinstance(name_or_model, nn.Module) else \
        parse_model_name(name_or_model, **overrides)
    if variant is not None and isinstance(cfg, ModelConfig):
        cfg = cfg.replace(variant=variant)
    return profile_config(cfg, input_size, atrous)
