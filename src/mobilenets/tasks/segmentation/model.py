"""The Mobile DeepLabv3 module, built from :func:`build_segmenter_arch`.

State-dict keys: ``backbone.*`` (the classifier's own keys, without its last 1x1 conv and
classifier), ``aspp.pool``, ``aspp.conv``, ``aspp.atrous.<i>``, ``project`` and ``classifier``
(each ``.conv.*`` + ``.bn.*``; the classifier has a bias and no BN). ``forward`` returns logits
``[N, C, H, W]`` at the input size; ``forward_logits`` the low-resolution ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...models import MobileNet
from ...models.layers import ConvBNAct, init_weights
from ..backbone import HasBackbone
from .spec import SegmenterArch, SegmenterConfig, build_segmenter_arch


class ASPP(nn.Module):
    """Image pooling, a 1x1 branch and (with ASPP) three atrous 3x3 branches, concatenated."""

    def __init__(self, arch: SegmenterArch, head_cfg: object) -> None:
        super().__init__()
        self.pool = ConvBNAct(arch.pool, head_cfg)  # type: ignore[arg-type]
        self.conv = ConvBNAct(arch.conv, head_cfg)  # type: ignore[arg-type]
        self.atrous = nn.ModuleList(ConvBNAct(layer, head_cfg) for layer in arch.atrous)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self._image_pooling(x.mean((2, 3), keepdim=True))
        # a 1x1 map resized is the same value everywhere: a nearest-neighbour resize (which TFLite
        # converts cleanly; its BROADCAST_TO of an expand fails after the NHWC rewrite)
        branches = [F.interpolate(pooled, size=x.shape[-2:], mode="nearest"), self.conv(x)]
        return torch.cat(branches + [b(x) for b in self.atrous], 1)

    def _image_pooling(self, pooled: torch.Tensor) -> torch.Tensor:
        """A batch of one image (the tail of an epoch, or a batch whose other images were unreadable)
        has a single value per channel after pooling: BN uses its running statistics then."""
        bn = self.pool.bn
        if not (self.training and pooled.shape[0] == 1 and isinstance(bn, nn.BatchNorm2d)):
            return self.pool(pooled)
        bn.eval()
        try:
            return self.pool(pooled)
        finally:
            bn.train()


class DeepLabV3(HasBackbone, nn.Module):
    """Mobile DeepLabv3 (see :mod:`mobilenets.tasks.segmentation.spec`)."""

    def __init__(self, config: SegmenterConfig) -> None:
        super().__init__()
        self.config = config
        self.arch = build_segmenter_arch(config)
        self.backbone = MobileNet(config.backbone, features_only=True, out_indices=(-1,))
        head_cfg = config.backbone.replace(activation="relu")  # DeepLab's head uses ReLU
        self.aspp = ASPP(self.arch, head_cfg)
        self.project = ConvBNAct(self.arch.project, head_cfg)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = ConvBNAct(self.arch.classifier, head_cfg)
        for m in (self.aspp, self.project, self.classifier):
            init_weights(m)
        # Logits start near 0 (loss ln C), as TF DeepLab's N(0, 0.01) logits layer: He-normal on a fan-out
        # of C classes gave logits of std ~10 (2 classes), a first loss of 6 and held-out losses in the hundreds
        nn.init.normal_(self.classifier.conv.weight, 0.0, 0.01)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits at the backbone's output stride."""
        f = self.backbone(x)[-1]
        return self.classifier(self.dropout(self.project(self.aspp(f))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.forward_logits(x), size=x.shape[-2:], mode="bilinear",
                             align_corners=self.config.align_corners)

    def extra_repr(self) -> str:
        return f"name={self.config.name!r}"


class SegmentationPipeline(nn.Module):
    """A segmenter as exported: logits at the input size, or (``argmax=True``) the class of every
    pixel (int64 ``[N, H, W]``, like Google's DeepLab files)."""

    def __init__(self, model: DeepLabV3, argmax: bool = False) -> None:
        super().__init__()
        self.model, self.argmax = model, argmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        return logits.argmax(1) if self.argmax else logits
