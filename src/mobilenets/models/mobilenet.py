"""The MobileNet module, built from an expanded table (:func:`mobilenets.models.spec.build_arch`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .layers import ConvBNAct, build_block, init_weights
from .spec import Arch, FeatureInfo, ModelConfig, build_arch


class WeightsRecord:
    """What a model's weights file records (classes, preprocessing, dataset, metrics, source), kept
    with the module that holds them; empty for random weights."""

    @property
    def weights_meta(self) -> dict[str, Any]:
        return self.__dict__.setdefault("_weights_meta", {})

    @weights_meta.setter
    def weights_meta(self, meta: Mapping[str, Any]) -> None:
        self.__dict__["_weights_meta"] = dict(meta)


class MobileNet(WeightsRecord, nn.Module):
    """MobileNet V1 or V2 (and their paper ablations), one class for both.

    State-dict keys: ``stem``, ``blocks.<i>.{depthwise,pointwise}`` (V1),
    ``blocks.<i>.{expand,depthwise,project}`` (V2), ``head`` (V2's last 1x1 conv) and
    ``classifier``; each conv is ``<prefix>.conv.weight`` followed by ``<prefix>.bn.*``.

    With ``features_only=True`` the module has no head or classifier and ``forward`` returns the
    feature maps listed in ``feature_info`` (selected by ``out_indices``).
    """

    # properties TorchScript leaves out (it reads this list)
    __jit_unused_properties__ = ["feature_info", "default_input_size", "weights_meta", "num_classes"]  # noqa: RUF012

    def __init__(
        self,
        config: ModelConfig,
        *,
        features_only: bool = False,
        out_indices: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.arch: Arch = build_arch(config)
        self.features_only = features_only
        all_feats = self.arch.features
        if out_indices is None:
            out_indices = range(len(all_feats))
        out_indices = tuple(int(i) for i in out_indices)
        bad = [i for i in out_indices if not -len(all_feats) <= i < len(all_feats)]
        if bad or not out_indices:
            raise ValueError(
                f"invalid out_indices {list(out_indices)}; valid: 0..{len(all_feats) - 1} "
                f"(reductions {[f.reduction for f in all_feats]})"
            )
        self.out_indices = tuple(sorted({i % len(all_feats) for i in out_indices}))
        feature_blocks = [int(all_feats[i].module.split(".")[1]) for i in self.out_indices]
        self.stem = ConvBNAct(self.arch.stem, config)
        blocks = self.arch.blocks
        if features_only:
            blocks = blocks[: max(feature_blocks) + 1]
        self.blocks = nn.Sequential(*(build_block(b, config) for b in blocks))
        self._feature_blocks = feature_blocks
        self.num_features = self.arch.num_features
        if not features_only:
            self.head = ConvBNAct(self.arch.head, config) if self.arch.head is not None else nn.Identity()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.dropout = nn.Dropout(config.drop_rate)
            self.classifier = self._make_classifier(config.num_classes)
        init_weights(self)

    @property
    def feature_info(self) -> list[FeatureInfo]:
        """Channels, reduction and module of each feature map ``forward`` returns when features_only."""
        return [self.arch.features[i] for i in self.out_indices]

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def default_input_size(self) -> int:
        return self.config.resolution

    def _make_classifier(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier (e.g. for fine-tuning on another class count); 0 removes it."""
        if self.features_only:
            raise ValueError("a features_only model has no classifier")
        self.config = self.config.replace(num_classes=num_classes)
        self.arch = build_arch(self.config)
        self.classifier = self._make_classifier(num_classes)
        init_weights(self.classifier)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map before global pooling (V1: 1024 ch, V2: the 1280-ch head)."""
        x = self.blocks(self.stem(x))
        return x if self.features_only else self.head(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.dropout(torch.flatten(self.pool(x), 1))
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if not self.features_only:
            return self.forward_head(self.forward_features(x))
        feats: list[torch.Tensor] = []
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self._feature_blocks:
                feats.append(x)
        return feats

    def extra_repr(self) -> str:
        return f"name={self.config.name!r}"
