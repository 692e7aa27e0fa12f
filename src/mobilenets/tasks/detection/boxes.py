"""Box coding and post-processing (decode, score, NMS), TF's conventions written once.

Anchors are ``(cy, cx, h, w)`` and encodings ``(ty, tx, th, tw)``, the TF Object Detection API's
``FasterRcnnBoxCoder`` order: ``ty = (y - ya) / ha * sy``, ``th = log(h / ha) * sh`` with scales
(10, 10, 5, 5). Everything after decoding uses torchvision's convention: ``(x1, y1, x2, y2)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.ops import box_convert, nms


def anchors_xyxy(anchors: torch.Tensor) -> torch.Tensor:
    """``(cy, cx, h, w)`` -> ``(x1, y1, x2, y2)``."""
    cy, cx, h, w = anchors.unbind(-1)
    return box_convert(torch.stack([cx, cy, w, h], -1), "cxcywh", "xyxy")


def encode(boxes: torch.Tensor, anchors: torch.Tensor, scales: tuple[float, ...]) -> torch.Tensor:
    """Regression targets of ``(x1, y1, x2, y2)`` boxes against their anchors."""
    cx, cy, w, h = box_convert(boxes, "xyxy", "cxcywh").clamp_min(1e-8).unbind(-1)
    acy, acx, ah, aw = anchors.unbind(-1)
    sy, sx, sh, sw = scales
    return torch.stack([(cy - acy) / ah * sy, (cx - acx) / aw * sx, torch.log(h / ah) * sh,
                        torch.log(w / aw) * sw], -1)


def decode(codes: torch.Tensor, anchors: torch.Tensor, scales: tuple[float, ...]) -> torch.Tensor:
    """``(x1, y1, x2, y2)`` boxes from encodings ``[..., A, 4]`` and anchors ``[A, 4]``."""
    ty, tx, th, tw = codes.unbind(-1)
    acy, acx, ah, aw = anchors.unbind(-1)
    sy, sx, sh, sw = scales
    cy, cx = ty / sy * ah + acy, tx / sx * aw + acx
    h, w = torch.exp(th / sh) * ah, torch.exp(tw / sw) * aw
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


PRE_NMS_TOP_K = 400  # candidates per image (torchvision's SSD: 400 per class; TF: 100 per class)


@dataclass
class Detections:
    """One image's detections: boxes ``(x1, y1, x2, y2)`` normalized to [0, 1], scores, and labels
    1..num_classes (0 is the background)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor


def select_detections(boxes: torch.Tensor, scores: torch.Tensor, score_threshold: float, iou_threshold: float,
                      max_detections: int, nms_mode: str = "per_class"
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """NMS of a batch: decoded ``boxes [N, A, 4]`` and class ``scores [N, A, C]`` (background
    dropped) -> boxes ``[N, K, 4]``, scores ``[N, K]``, labels ``[N, K]`` (1..C) and the number of
    detections ``[N]``, padded to ``K = max_detections``, best first. Traceable and exportable.

    ``per_class``: each class's boxes with a score >= the threshold go through NMS separately (TF's
    "regular" NMS). ``class_agnostic``: each anchor keeps only its best class and one NMS runs over
    all anchors (TFLite_Detection_PostProcess's default, ``max_classes_per_detection`` 1). Only the
    best :data:`PRE_NMS_TOP_K` (or ``max_detections``, if more) candidates of an image enter the
    NMS, which costs candidates x kept. Equal scores keep anchor order, as TFLite's stable sort
    does: with uint8 scores, ties are common, and which of two tied boxes survives decides which
    detections come out.
    """
    n, k = boxes.shape[0], max_detections
    agnostic = nms_mode == "class_agnostic"
    if agnostic:
        flat, cls = scores.max(-1)  # first maximum on ties, like TFLite's ArgMax
    else:
        flat = scores.flatten(1)  # candidate j: anchor j // C, class j % C
    top, index = flat.topk(min(max(PRE_NMS_TOP_K, k), flat.shape[1]), dim=1)
    index, order = index.sort(dim=1)  # back to anchor order (unique indices: no stable sort needed)
    top = top.gather(1, order)
    img, j = torch.nonzero(top >= score_threshold, as_tuple=True)
    score, index = top[img, j], index[img, j]
    if agnostic:
        anchor, label, group = index, cls[img, index], img
    else:
        c = scores.shape[-1]
        anchor, label = index // c, index % c
        group = img * c + label
    order = _best_first(score)
    keep = order[_grouped_nms(boxes[img, anchor][order], group[order], iou_threshold)]  # best first, all images
    key = img[keep] * len(keep) + torch.arange(len(keep), device=boxes.device)  # unique keys: no stable sort
    keep = keep[torch.argsort(key)]  # grouped by image, best first within
    counts = (img[keep][:, None] == torch.arange(n, device=boxes.device)[None]).sum(0)  # exports, unlike bincount
    rank = torch.arange(len(keep), device=boxes.device) - (torch.cumsum(counts, 0) - counts)[img[keep]]
    keep, rank = keep[rank < k], rank[rank < k]
    out_boxes = boxes.new_zeros(n, k, 4)
    out_scores = scores.new_zeros(n, k)
    out_labels = torch.zeros(n, k, dtype=torch.int64, device=boxes.device)
    out_boxes[img[keep], rank] = boxes[img[keep], anchor[keep]]
    out_scores[img[keep], rank] = score[keep]
    out_labels[img[keep], rank] = label[keep] + 1
    return out_boxes, out_scores, out_labels, counts.clamp(max=k)


def _best_first(score: torch.Tensor) -> torch.Tensor:
    """Indices of ``score`` in descending order, ties in index order. Exported, a stable sort
    cannot be converted, and ONNX's TopK is specified to break ties by the lower index."""
    if torch.compiler.is_exporting():
        return torch.topk(score, score.shape[0]).indices
    return torch.sort(score, descending=True, stable=True).indices


def _grouped_nms(boxes: torch.Tensor, groups: torch.Tensor, iou: float) -> torch.Tensor:
    """NMS within each group of boxes already sorted best first; returns kept positions in order.

    One NMS over boxes shifted apart by group (torchvision's batched_nms trick, without its
    size-dependent branch, which torch.export cannot trace), scored by rank so that the order
    given is the order used.
    """
    span = torch.cat([boxes.flatten(), boxes.new_zeros(1)]).max() + 1
    rank = torch.arange(len(boxes), 0, -1, device=boxes.device).to(boxes.dtype)
    return nms(boxes + (groups.to(boxes) * span)[:, None], rank, iou)


def unpad(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, counts: torch.Tensor) -> list[Detections]:
    """:func:`select_detections`' padded batch as one :class:`Detections` per image."""
    return [Detections(b[:c], s[:c], lab[:c]) for b, s, lab, c in zip(boxes, scores, labels, counts.tolist())]
