"""SSD anchors as the TF Object Detection API generates them (``multiple_grid_anchor_generator``).

Layer ``i`` of ``n`` gets the scale ``min + (max - min) * i / (n - 1)``; each aspect ratio ``a``
gives a box of height ``scale / sqrt(a)`` and width ``scale * sqrt(a)``, plus one square box at
the scale interpolated with the next layer's (``sqrt(s_i * s_{i+1})``, with ``s_n = 1``). The
lowest layer is reduced to three boxes: (0.1, 1), (s_0, 2) and (s_0, 1/2). Centres are at
``(i + 0.5) / grid`` in normalized image coordinates; boxes are ``(cy, cx, h, w)``, not clipped.
At 300 px with 6 layers (19, 10, 5, 3, 2, 1 cells) that makes 1917 anchors.

``finest`` is ours, not TF's: the boxes of one more map before those layers (a ``-p2`` detector's
stride-4 map, whose boxes are smaller than TF's lowest layer can make).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AnchorConfig:
    """``ssd_anchor_generator`` of a TF Object Detection API pipeline config, with its defaults."""

    min_scale: float = 0.2
    max_scale: float = 0.95
    aspect_ratios: tuple[float, ...] = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)
    interpolated_scale_aspect_ratio: float = 1.0
    reduce_boxes_in_lowest_layer: bool = True
    step: float = 0.0  # round the anchors to this step: TFLite files store them as uint8 with this scale
    lowest_scale: float = 0.1  # the square box of the reduced lowest layer (TF: 0.1, fixed)
    finest: tuple[tuple[float, float], ...] = ()  # (scale, aspect ratio) of each box of a map before the others

    def __post_init__(self) -> None:  # from JSON metadata, lists: tuples keep the config hashable
        object.__setattr__(self, "finest", tuple((float(s), float(a)) for s, a in self.finest))

    def box_specs(self, num_layers: int) -> list[list[tuple[float, float]]]:
        """(scale, aspect ratio) of every box of every layer."""
        if num_layers < 1 + bool(self.finest):
            raise ValueError(f"an SSD needs at least {1 + bool(self.finest)} feature map(s) for these anchors")
        if self.finest:
            rest = dataclasses.replace(self, finest=()).box_specs(num_layers - 1)
            return [list(self.finest), *rest]
        if num_layers == 1:
            scales = [self.min_scale]
        else:
            scales = [self.min_scale + (self.max_scale - self.min_scale) * i / (num_layers - 1)
                      for i in range(num_layers)]
        scales.append(1.0)
        specs = []
        for i in range(num_layers):
            if i == 0 and self.reduce_boxes_in_lowest_layer:
                specs.append([(self.lowest_scale, 1.0), (scales[0], 2.0), (scales[0], 0.5)])
                continue
            layer = [(scales[i], a) for a in self.aspect_ratios]
            if self.interpolated_scale_aspect_ratio > 0:
                layer.append((math.sqrt(scales[i] * scales[i + 1]), self.interpolated_scale_aspect_ratio))
            specs.append(layer)
        return specs

    def boxes_per_location(self, num_layers: int) -> list[int]:
        return [len(s) for s in self.box_specs(num_layers)]


def generate_anchors(cfg: AnchorConfig, grid_sizes: Sequence[tuple[int, int]]) -> torch.Tensor:
    """All anchors, ``(cy, cx, h, w)`` normalized, in the order of the heads' outputs: layer by
    layer, then row, column and box (TF's order, which the exported detectors rely on)."""
    out = []
    for (gh, gw), spec in zip(grid_sizes, cfg.box_specs(len(grid_sizes))):
        scale = torch.tensor([s for s, _ in spec], dtype=torch.float64)
        ratio = torch.tensor([a for _, a in spec], dtype=torch.float64).sqrt()
        h, w = scale / ratio, scale * ratio
        cy = (torch.arange(gh, dtype=torch.float64) + 0.5) / gh
        cx = (torch.arange(gw, dtype=torch.float64) + 0.5) / gw
        k = len(spec)
        grid = torch.stack([
            cy[:, None, None].expand(gh, gw, k), cx[None, :, None].expand(gh, gw, k),
            h[None, None, :].expand(gh, gw, k), w[None, None, :].expand(gh, gw, k)], dim=-1)
        out.append(grid.reshape(-1, 4))
    anchors = torch.cat(out)
    if cfg.step > 0:
        anchors = torch.round(anchors / cfg.step) * cfg.step
    return anchors.float()


#: Scales :func:`fit_anchors` tries: the lowest layer's square box, and ``min_scale``.
FIT_LOWEST = (0.1, 0.08, 0.065, 0.05, 0.04, 0.03)
FIT_MIN = (0.2, 0.15, 0.1)


def coverage(cfg: AnchorConfig, grid_sizes: Sequence[tuple[int, int]], boxes: torch.Tensor,
             threshold: float = 0.5) -> float:
    """The share of ``boxes`` (``x1, y1, x2, y2`` normalized) that some anchor overlaps with IoU >=
    ``threshold``: the boxes SSD's matcher can train on by overlap, not only as a box's forced best anchor."""
    from torchvision.ops import box_iou

    from .boxes import anchors_xyxy

    if not len(boxes):
        return 1.0
    anchors = anchors_xyxy(generate_anchors(cfg, grid_sizes))
    best = torch.cat([box_iou(b, anchors).max(1).values for b in boxes.split(2048)])
    return float((best >= threshold).float().mean())


def fit_anchors(cfg: AnchorConfig, grid_sizes: Sequence[tuple[int, int]], boxes: torch.Tensor) -> AnchorConfig:
    """The smallest anchors for a dataset's boxes (normalized to the input): of the lowest layer's
    square box and ``min_scale`` in :data:`FIT_LOWEST` x :data:`FIT_MIN`, the pair that gives the most
    boxes an anchor they overlap at IoU >= 0.5; TF's defaults unless another pair covers more. Small
    objects (faces, cells) otherwise match almost no anchor of TF's (0.1 and 0.2 of the image)."""
    best, best_cov = cfg, coverage(cfg, grid_sizes, boxes)
    for lowest in FIT_LOWEST:
        for low in FIT_MIN:
            if low <= lowest:
                continue
            cand = dataclasses.replace(cfg, lowest_scale=lowest, min_scale=low)
            cov = coverage(cand, grid_sizes, boxes)
            if cov > best_cov + 1e-9:
                best, best_cov = cand, cov
    return best
