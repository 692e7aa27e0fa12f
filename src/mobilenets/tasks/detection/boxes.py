"""Box coding and post-processing (decode, score, NMS), TF's conventions written once.

Anchors are ``(cy, cx, h, w)`` and encodings ``(ty, tx, th, tw)``, the TF Object Detection API's
``FasterRcnnBoxCoder`` order: ``ty = (y - ya) / ha * sy``, ``th = log(h / ha) * sh`` with scales
(10, 10, 5, 5). Everything after decoding uses torchvision's convention: ``(x1, y1, x2, y2)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.ops import batched_nms, box_convert, nms


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


@dataclass
class Detections:
    """One image's detections: boxes ``(x1, y1, x2, y2)`` normalized to [0, 1], scores, and labels
    1..num_classes (0 is the background)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor


def postprocess(codes: torch.Tensor, logits: torch.Tensor, anchors: torch.Tensor, scales: tuple[float, ...],
                score_threshold: float, iou_threshold: float, max_detections: int,
                nms_mode: str = "per_class") -> list[Detections]:
    """Sigmoid scores, decoded boxes and NMS, per image.

    ``per_class``: each class's boxes above the threshold go through NMS separately (TF's
    "regular" NMS). ``class_agnostic``: each anchor keeps only its best class and one NMS runs
    over all anchors (TFLite_Detection_PostProcess's default, ``max_classes_per_detection`` 1).
    """
    scores = torch.sigmoid(logits.float())[..., 1:]  # drop the background column
    boxes = decode(codes.float(), anchors, scales)
    out = []
    for b, s in zip(boxes, scores):
        if nms_mode == "class_agnostic":
            best, label = s.max(-1)
            keep = torch.nonzero(best > score_threshold).squeeze(1)
            keep = keep[nms(b[keep], best[keep], iou_threshold)][:max_detections]
            out.append(Detections(b[keep], best[keep], label[keep] + 1))
            continue
        anchor_idx, cls = torch.nonzero(s > score_threshold, as_tuple=True)
        sc = s[anchor_idx, cls]
        keep = batched_nms(b[anchor_idx], sc, cls, iou_threshold)[:max_detections]
        out.append(Detections(b[anchor_idx[keep]], sc[keep], cls[keep] + 1))
    return out
