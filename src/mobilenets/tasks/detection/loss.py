"""The SSD training loss, in TF's sigmoid variants.

Matching, ``matcher="argmax"`` (TF's argmax matcher, SSD's rule): an anchor is positive when its best
ground-truth box overlaps it with IoU >= 0.5, and every box also claims its best anchor. A box much
smaller than every anchor then gets that one anchor. ``matcher="atss"`` (the default; Zhang et al.
2020, "Bridging the Gap Between Anchor-based and Anchor-free Detection via Adaptive Training Sample
Selection"): each box's threshold is the mean plus the standard deviation of the IoUs of its 27 best
anchors, at most 0.5, and an anchor between it and 0.5 counts only if its centre lies inside the box
(ATSS proper takes 9 candidates per map by centre distance; here, the best by IoU over all maps). A
small box gets the few anchors that fit it best, a large one keeps every anchor at IoU >= 0.5; measured
on the facemask photos (a quarter of the faces under 15 px), held-out mAP@0.5 0.416 -> 0.49.

Classification, ``cls_loss="focal"`` (the default of our detectors; TF's choice for its FPN SSDs, Lin
et al. 2017): the sigmoid focal loss (alpha 0.25, gamma 2, torchvision's) over the object classes of
every anchor, a negative's targets all 0. ``cls_loss="hard_negatives"`` (``ssd_mobilenet_v1_coco``'s config):
sigmoid cross-entropy summed over the ``num_classes + 1`` outputs (background = index 0 for
negatives), with hard negative mining: per image, the 3 negatives per positive with the highest loss.

Localization, ``box_loss="giou"`` (the default of our detectors; ATSS's and GFL's choice): the
generalized IoU loss (Rezatofighi et al. 2019) of each positive's decoded box and its ground truth,
weighted :data:`GIOU_WEIGHT`. One pixel off is a large share of a 10-pixel face's IoU and a small
share of its encoding's smooth L1, and the IoU is what an evaluation at IoU 0.5 counts; measured on the
facemask photos, held-out mAP@0.5 0.570 / 0.545 / 0.571 (seeds 0, 1, 2) -> 0.594 / 0.596 / 0.595.
``box_loss="smooth_l1"`` (TF's SSDs): smooth L1 on the encoded boxes. Both losses are summed and
divided by the number of positives in the batch.

Why sigmoid and not SSD's softmax: Google's published detectors score with a sigmoid (their
TFLite graphs end in LOGISTIC before the post-processing op), so one score function serves the
ported models, ours, and the exported files.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchvision.ops import box_iou, generalized_box_iou_loss, sigmoid_focal_loss

from .boxes import anchors_xyxy, decode, encode

#: The GIoU loss's weight against the classification loss (ATSS's and GFL's).
GIOU_WEIGHT = 2.0


def match_anchors(gt: torch.Tensor, anchors_xy: torch.Tensor, threshold: float = 0.5,
                  matcher: str = "argmax", candidates: int = 27) -> tuple[torch.Tensor, torch.Tensor]:
    """For each anchor, the index of its ground-truth box and whether it is positive (``matcher``:
    see the module's docstring; ``candidates``: the IoUs ATSS's threshold is taken from)."""
    if len(gt) == 0:
        return (torch.zeros(len(anchors_xy), dtype=torch.long, device=anchors_xy.device),
                torch.zeros(len(anchors_xy), dtype=torch.bool, device=anchors_xy.device))
    iou = box_iou(gt, anchors_xy)  # [G, A]
    if matcher == "atss":
        top = iou.topk(min(candidates, iou.shape[1]), dim=1).values
        limit = (top.mean(1) + top.std(1)).clamp(max=threshold)[:, None]
        cx, cy = (anchors_xy[:, 0] + anchors_xy[:, 2]) / 2, (anchors_xy[:, 1] + anchors_xy[:, 3]) / 2
        inside = (cx > gt[:, :1]) & (cx < gt[:, 2:3]) & (cy > gt[:, 1:2]) & (cy < gt[:, 3:4])
        chosen = (iou >= limit) & (inside | (iou >= threshold))
        best_iou, best_gt = torch.where(chosen, iou, -1.0).max(0)
        positive = best_iou >= 0
    else:
        best_iou, best_gt = iou.max(0)
        positive = best_iou >= threshold
    forced = iou.argmax(1)  # each box's best anchor is positive, whatever its IoU
    best_gt[forced] = torch.arange(len(gt), device=gt.device)
    positive[forced] = True
    return best_gt, positive


def ssd_loss(codes: torch.Tensor, logits: torch.Tensor, targets: list[dict[str, Any]], anchors: torch.Tensor,
             input_size: tuple[int, int], box_scales: tuple[float, ...],
             neg_pos_ratio: int = 3, matcher: str = "argmax", cls_loss: str = "hard_negatives",
             box_loss: str = "smooth_l1") -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss of one batch; ``targets[i]["boxes"]`` are in pixels of the model's input. ``matcher``,
    ``cls_loss``, ``box_loss``: see the module's docstring (their defaults here are TF's)."""
    h, w = input_size
    anchors_xy = anchors_xyxy(anchors)
    scale = anchors.new_tensor([w, h, w, h])
    num_cls = logits.shape[-1]
    cls_sum = logits.new_zeros((), dtype=torch.float32)
    loc_sum = logits.new_zeros((), dtype=torch.float32)
    num_pos = logits.new_zeros((), dtype=torch.float32)
    for code, logit, t in zip(codes, logits, targets):
        gt = t["boxes"].to(anchors.device) / scale
        best_gt, pos = match_anchors(gt, anchors_xy, matcher=matcher)
        ignore = torch.zeros_like(pos)
        if len(gt):
            ignore = pos & t["ignore"].to(pos.device)[best_gt]  # matched to a crowd / difficult box
        pos = pos & ~ignore
        onehot = torch.zeros(len(anchors), num_cls, device=logit.device)
        labels = t["labels"].to(logit.device)
        onehot[pos, labels[best_gt[pos]] if len(gt) else 0] = 1.0
        n_pos = int(pos.sum())
        if cls_loss == "focal":  # every anchor but the ignored, the object classes only
            focal = sigmoid_focal_loss(logit[:, 1:].float(), onehot[:, 1:], alpha=0.25, gamma=2.0, reduction="none")
            cls_sum = cls_sum + focal[~ignore].sum()
        else:
            onehot[~pos, 0] = 1.0
            per_anchor = F.binary_cross_entropy_with_logits(logit.float(), onehot, reduction="none").sum(1)
            neg_loss = per_anchor.masked_fill(pos | ignore, float("-inf"))
            hard = neg_loss.topk(min(neg_pos_ratio * n_pos, int((~pos & ~ignore).sum()))).indices
            cls_sum = cls_sum + per_anchor[pos].sum() + per_anchor[hard].sum()
        if n_pos and box_loss == "giou":
            boxes = decode(code[pos].float(), anchors[pos], box_scales)
            loc_sum = loc_sum + GIOU_WEIGHT * generalized_box_iou_loss(boxes, gt[best_gt[pos]], reduction="sum")
        elif n_pos:
            target = encode(gt[best_gt[pos]], anchors[pos], box_scales)
            loc_sum = loc_sum + F.smooth_l1_loss(code[pos].float(), target, reduction="sum", beta=1.0)
        num_pos = num_pos + n_pos
    norm = num_pos.clamp_min(1.0)
    return (cls_sum + loc_sum) / norm, {"cls": cls_sum / norm, "loc": loc_sum / norm, "positives": num_pos}
