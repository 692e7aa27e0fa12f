"""Faster R-CNN on a MobileNet, built on torchvision's ``FasterRCNN`` from
:func:`build_faster_rcnn_arch`: torchvision's anchor generator, region proposal network, RoIAlign,
RoI heads (sampling, losses, per-class NMS) and box predictor; our backbone split in two
(:mod:`mobilenets.tasks.detection.faster_rcnn_spec`) and our RPN head, for readable keys.

Inputs are batches already preprocessed to the model's size (our :class:`~mobilenets.models.Preprocess`,
like every model here), so torchvision's own resize and normalization are left out. ``forward(x,
targets)`` returns torchvision's four losses in training and its detection dicts in eval mode
(boxes in pixels of ``x``); ``detect`` gives :class:`Detections` (normalized boxes) like the SSDs';
:class:`FasterRCNNPipeline` pads them into the four outputs of every detector session.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN as TorchvisionFasterRCNN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import AnchorGenerator
from torchvision.ops import MultiScaleRoIAlign

from ...models.layers import ConvBNAct, build_block, init_weights
from ...models.spec import Arch
from ..backbone import HasBackbone
from .boxes import Detections
from .faster_rcnn_spec import FasterRCNNArch, FasterRCNNConfig, build_faster_rcnn_arch


class Trunk(nn.Module):
    """The first stage's network on the image: the stem and the blocks up to the stride-16 map, with
    the classifier's keys (``stem``, ``blocks.<i>``)."""

    def __init__(self, arch: Arch, split: int) -> None:
        super().__init__()
        self.stem = ConvBNAct(arch.stem, arch.config)
        self.blocks = nn.Sequential(*(build_block(b, arch.config) for b in arch.blocks[:split]))
        self.out_channels = arch.blocks[split - 1].out_ch  # what torchvision's FasterRCNN reads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))


class BoxHead(nn.Module):
    """The second stage on each proposal's crop: the backbone's later blocks (keys ``blocks.<i>``,
    the classifier's indices; V2 also its ``head``), then global average pooling."""

    def __init__(self, arch: Arch, split: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleDict({str(b.index): build_block(b, arch.config) for b in arch.blocks[split:]})
        self.head = ConvBNAct(arch.head, arch.config) if arch.head is not None else nn.Identity()

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        x = crops
        for block in self.blocks.values():
            x = block(x)
        return self.head(x).mean((2, 3))


class RPNHead(nn.Module):
    """torchvision's RPN head interface (maps in, per-map objectness and box deltas out) with our
    layer records: ``shared`` (3x3 + ReLU6), ``objectness`` and ``box`` (1x1)."""

    def __init__(self, arch: FasterRCNNArch) -> None:
        super().__init__()
        shared, objectness, box = arch.rpn
        cfg = arch.backbone.config
        self.shared = ConvBNAct(shared, cfg)
        self.objectness = ConvBNAct(objectness, cfg)
        self.box = ConvBNAct(box, cfg)

    def forward(self, maps: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        hidden = [self.shared(m) for m in maps]
        return [self.objectness(h) for h in hidden], [self.box(h) for h in hidden]


class FasterRCNN(HasBackbone, TorchvisionFasterRCNN):
    """Faster R-CNN on MobileNet V1/V2 (see :mod:`mobilenets.tasks.detection.faster_rcnn_spec`)."""

    config: FasterRCNNConfig
    arch: FasterRCNNArch

    def __init__(self, config: FasterRCNNConfig) -> None:
        arch = build_faster_rcnn_arch(config)
        c, res = config, config.resolution
        super().__init__(
            Trunk(arch.backbone, arch.split), num_classes=None,
            min_size=res, max_size=res, image_mean=[0.0] * c.in_chans, image_std=[1.0] * c.in_chans,
            size_divisible=1,  # (torchvision's own input path; ours passes preprocessed batches)
            rpn_anchor_generator=AnchorGenerator((c.anchor_sizes,), (c.aspect_ratios,)),
            rpn_head=RPNHead(arch), rpn_post_nms_top_n_train=c.proposals, rpn_post_nms_top_n_test=c.proposals,
            box_roi_pool=MultiScaleRoIAlign(["0"], c.crop_size, sampling_ratio=2),
            box_head=BoxHead(arch.backbone, arch.split),
            box_predictor=FastRCNNPredictor(arch.box_features, c.num_classes + 1),
            box_batch_size_per_image=c.box_batch_size, box_score_thresh=c.score_threshold,
            box_nms_thresh=c.iou_threshold, box_detections_per_img=c.max_detections)
        self.config, self.arch = config, arch
        init_weights(self)
        for conv in (self.rpn.head.objectness.conv, self.rpn.head.box.conv):  # torchvision's RPN init
            nn.init.normal_(conv.weight, std=0.01)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def backbone_modules(self) -> tuple[nn.Module, ...]:
        """The modules that hold the classifier's layers (frozen by ``--freeze-backbone``)."""
        return self.backbone, self.roi_heads.box_head.blocks, self.roi_heads.box_head.head

    def backbone_key(self, classifier_key: str) -> str:
        """Where a classifier's tensor goes: the first stage's layers under ``backbone.``, the later
        blocks (and V2's head) under ``roi_heads.box_head.``."""
        parts = classifier_key.split(".")
        later = parts[0] == "head" or (parts[0] == "blocks" and int(parts[1]) >= self.arch.split)
        return ("roi_heads.box_head." if later else "backbone.") + classifier_key

    def stages(self, x: torch.Tensor, targets: list[dict[str, torch.Tensor]] | None = None
               ) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
        """Both stages on a batch: (losses, detections); which are computed follows each stage's
        ``training`` flag, as in torchvision."""
        images = ImageList(x, [(int(x.shape[-2]), int(x.shape[-1]))] * x.shape[0])
        features = OrderedDict([("0", self.backbone(x))])
        proposals, rpn_losses = self.rpn(images, features, targets)
        detections, roi_losses = self.roi_heads(features, proposals, images.image_sizes, targets)
        return {**rpn_losses, **roi_losses}, detections

    def forward(self, x: torch.Tensor, targets: list[dict[str, torch.Tensor]] | None = None) -> Any:
        """Training: torchvision's losses (``targets``: ``boxes`` in pixels of ``x``, ``labels``
        1..C); eval: one dict per image (``boxes`` in pixels of ``x``, ``scores``, ``labels``)."""
        losses, detections = self.stages(x, targets)
        return losses if self.training else detections

    @torch.no_grad()
    def detect(self, x: torch.Tensor) -> list[Detections]:
        """Detections per image, boxes normalized to [0, 1] of the input."""
        scale = x.new_tensor([x.shape[-1], x.shape[-2], x.shape[-1], x.shape[-2]])
        return [Detections(d["boxes"] / scale, d["scores"], d["labels"]) for d in self.stages(x)[1]]

    def loss(self, x: torch.Tensor, targets: list[dict[str, Any]],
             forward: Callable[..., Any] | None = None) -> torch.Tensor:
        """The training loss of a batch (our targets; boxes in pixels of ``x``): torchvision's four
        summed. ``forward``: this model as training wraps it (DDP, compiled)."""
        losses = (forward or self)(x, torchvision_targets(targets))
        return torch.stack(list(losses.values())).sum()

    def loss_and_detections(self, x: torch.Tensor, targets: list[dict[str, Any]]
                            ) -> tuple[torch.Tensor, list[Detections]]:
        """A held-out batch's training loss (:meth:`validation_losses`) and its detections."""
        losses = self.validation_losses(x, torchvision_targets(targets))
        return torch.stack(list(losses.values())).sum(), self.detect(x)

    def validation_losses(self, x: torch.Tensor, targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """The training losses on held-out images, with every BatchNorm in eval mode. The RPN and RoI
        heads sample anchors and proposals: from a fixed seed, so the number is repeatable, and with
        training's random state untouched."""
        with _heads_training(self), torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            torch.manual_seed(0)
            return self.stages(x, targets)[0]

    def extra_repr(self) -> str:
        return f"name={self.config.name!r}"


@contextlib.contextmanager
def _heads_training(model: FasterRCNN) -> Iterator[None]:
    """The RPN and RoI heads compute their losses (their own flags only: the BN layers below stay)."""
    before = model.rpn.training, model.roi_heads.training
    model.rpn.training = model.roi_heads.training = True
    try:
        yield
    finally:
        model.rpn.training, model.roi_heads.training = before


def torchvision_targets(targets: list[dict[str, Any]]) -> list[dict[str, torch.Tensor]]:
    """Our targets as torchvision's: boxes and labels, without the boxes marked ``ignore`` (COCO's
    crowds, VOC's difficult objects), which torchvision's matcher has no notion of."""
    out = []
    for t in targets:
        keep = ~t["ignore"].to(t["boxes"].device) if "ignore" in t else slice(None)
        out.append({"boxes": t["boxes"][keep].float(), "labels": t["labels"][keep].long()})
    return out


class FasterRCNNPipeline(nn.Module):
    """A Faster R-CNN as a detector session's module: ``x`` -> boxes ``[N, K, 4]`` (normalized
    ``x1, y1, x2, y2``), scores ``[N, K]``, labels ``[N, K]`` and the number of detections ``[N]``,
    padded to ``K = max_detections`` (as :class:`~mobilenets.tasks.detection.model.DetectionPipeline`)."""

    def __init__(self, model: FasterRCNN) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        k = self.model.config.max_detections
        boxes, scores, labels, counts = [], [], [], []
        for d in self.model.detect(x):
            n = d.scores.shape[0]
            boxes.append(torch.cat([d.boxes, d.boxes.new_zeros(k, 4)])[:k])
            scores.append(torch.cat([d.scores, d.scores.new_zeros(k)])[:k])
            labels.append(torch.cat([d.labels, d.labels.new_zeros(k)])[:k])
            counts.append(min(n, k))
        return (torch.stack(boxes), torch.stack(scores), torch.stack(labels),
                torch.tensor(counts, dtype=torch.int64, device=x.device))
