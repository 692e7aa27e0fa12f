"""Fine-tuning: start from any weights file we read (``--init``), optionally with a frozen backbone.

A detector or segmenter starts from a classifier's weights like the papers' start from ImageNet:
the classifier's tensors go where the model's ``backbone_key`` says (``backbone.*``; a Faster
R-CNN's later blocks are its box head); the classifier layer has no counterpart.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..tasks.backbone import HasBackbone
from ..weights import load_foreign_state


def init_from_weights(model: nn.Module, path: str | Path) -> tuple[int, list[str]]:
    """Load every tensor of ``path`` whose name and shape match; return (loaded, re-initialised names)."""
    headed = isinstance(model, HasBackbone)
    state = load_foreign_state(path, model.config.backbone if headed else model.config)
    own = model.state_dict()
    if headed and not any(k in own for k in state):
        state = {model.backbone_key(k): v for k, v in state.items()}  # a classifier's weights
    loaded = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(k for k in own if k not in loaded and not k.endswith("num_batches_tracked"))
    if not any(k.endswith(".weight") for k in loaded):
        raise ValueError(f"{path}: no tensor matches {model.config.name} (is it the same architecture?)")
    model.load_state_dict(loaded, strict=False)
    return len(loaded), skipped


def _frozen_modules(model: nn.Module) -> tuple[nn.Module, ...]:
    """A task model's backbone; a classifier's layers but the classifier."""
    return model.backbone_modules() if isinstance(model, HasBackbone) else (model.stem, model.blocks, model.head)


def freeze_backbone(model: nn.Module) -> None:
    frozen = {id(p) for m in _frozen_modules(model) for p in m.parameters()}
    for p in model.parameters():
        p.requires_grad = id(p) not in frozen


def set_train_mode(model: nn.Module, frozen_backbone: bool) -> None:
    model.train()
    if frozen_backbone:  # frozen layers keep their BN statistics
        for m in _frozen_modules(model):
            m.eval()
